"""Checks on the bundle as a whole: what a package must carry besides its disks."""

from __future__ import annotations

from certify.checkdef import check
from certify.ingest import BundleFacts
from certify.model import Layer, Location, Severity, fail, not_applicable
from certify.plugins.hookspecs import hookimpl


@check(
    id="manifest-missing",
    severity=Severity.MEDIUM,
    layer=Layer.BUNDLE,
    title="OVF package carries no manifest of digests",
    remediation=(
        "Export the package with a manifest: NAME.mf beside NAME.ovf with a SHA256 (or SHA512) line for "
        "the descriptor and every file it references (ovftool writes one; so does 'ovftool --shaAlgorithm=SHA256')."
    ),
    references=(
        "DMTF DSP0243 (OVF): the manifest lists a digest of every file in the package",
        "vSphere and ovftool verify a manifest when present and warn when a file is missing from it",
    ),
)
def manifest_missing(bundle: BundleFacts):
    """Without a manifest nothing ties the disks to the descriptor that describes them.

    When a manifest is present every digest in it has already been verified
    while the upload was read; a mismatch rejects the upload outright.
    """
    if bundle.kind not in ("ova", "ovf"):
        yield not_applicable("only OVF packages carry manifests")
    elif bundle.manifest is None:
        yield fail(Location(layer=Layer.BUNDLE, file=bundle.descriptor), "no .mf in the package: disk integrity rests on the transport alone")


@hookimpl
def certify_checks():
    return [manifest_missing]
