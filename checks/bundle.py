"""Checks on the bundle as a whole: what a package must carry besides its disks."""

from __future__ import annotations

import fnmatch

from certify.bundle.descriptor import Descriptor
from certify.bundle.ingest import BundleFacts
from certify.checkdef import check
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


@check(
    id="unsigned-bundle",
    severity=Severity.INFO,
    layer=Layer.BUNDLE,
    title="OVF package is not signed by a vouched-for signer",
    remediation=(
        "Sign the package (ovftool --privateKey=KEY.pem writes NAME.cert) with a certificate from an authority "
        "the provider trusts, and keep it within its validity period."
    ),
    references=("DMTF DSP0243: NAME.cert signs the manifest; vCenter warns on SELF_SIGNED, EXPIRED, UNTRUSTED",),
)
def unsigned_bundle(bundle: BundleFacts):
    """No signature, or one whose certificate is self-signed, outside its validity period, (with
    --trust-store) not chained to the trust store, or (without one) issued by an authority nobody verified.

    A signature that does not match the manifest never gets here: it rejects the upload. A profile with
    require_trusted_signer rejects every upload this would fail.
    """
    if bundle.kind not in ("ova", "ovf"):
        yield not_applicable("only OVF packages are signed")
        return
    where = Location(layer=Layer.BUNDLE, file=bundle.descriptor)
    signer = bundle.signer
    if signer is None:
        yield fail(where, "no .cert: nothing ties the package to its vendor")
        return
    if signer.self_signed and not signer.trusted:
        yield fail(where, f"signed by a self-signed certificate ({signer.subject}) that no authority vouches for")
    if signer.expired:
        yield fail(where, f"the signing certificate is valid {signer.not_before} to {signer.not_after}, not now")
    elif signer.trusted is False and not signer.self_signed:
        yield fail(where, f"the signer {signer.subject} is not vouched for by the trust store: {signer.trust}")
    elif signer.trusted is None and not signer.self_signed:
        # Any issuer name can be written into a certificate; without a trust store nothing checked it.
        yield fail(where, f"issuer not verified: the signer {signer.subject} names {signer.issuer} as its issuer, "
                          "and no trust store (--trust-store) was given to verify it")  # fmt: skip


SAVED_STATE = (".vmss", ".vmem", ".vmsn", ".vmsd", ".nvram")


@check(
    id="saved-memory-state",
    severity=Severity.HIGH,
    layer=Layer.BUNDLE,
    title="Bundle ships saved memory or firmware state",
    remediation=(
        "Power the VM off (not suspend) and export without .vmss/.vmem/.vmsn/.vmsd/.nvram files; clear "
        "checkpoint.vmState. A suspended state is loaded straight into the hypervisor and may hold the "
        "vendor's secrets from memory; vendor NVRAM pre-seeds firmware variables."
    ),
    references=("libvirt-gsx VMX (corpus): checkpoint.vmState", "vSphere: .vmss/.vmem hold a suspended VM's memory"),
)
def saved_memory_state(bundle: BundleFacts, descriptor: Descriptor):
    """A suspend image or snapshot memory in the upload, or a VMX that resumes from one."""
    for name in bundle.members:
        if name.lower().endswith(SAVED_STATE):
            yield fail(Location(layer=Layer.BUNDLE, file=name), f"{name} is saved memory or firmware state")
    for entry, _ in descriptor.matching(r"^checkpoint\.vmstate$"):
        if entry.value.strip():
            yield fail(entry.location, f"{entry.key} = {entry.value!r}: the VM would resume from saved state")


EXTRANEOUS = ("*.log", "*.lck", "*.lck/*", "*.vswp", "*.vmx~", "*.vmx.bak", "*.scoreboard", "*.hlog")


@check(
    id="bundle-extraneous-files",
    severity=Severity.MEDIUM,
    layer=Layer.BUNDLE,
    title="Bundle holds files a clean export does not",
    remediation=(
        "Export from a powered-off VM with the hypervisor's export tool; leave out vmware.log and other logs, "
        "lock files, swap files and editor backups. They leak build-host details and have no use on deploy."
    ),
    references=("VMware Ready matrix 0505: no extraneous files such as vmware.log",),
)
def bundle_extraneous_files(bundle: BundleFacts):
    """Logs, locks, swap and backup files left beside the appliance's own files."""
    for name in bundle.members:
        if any(fnmatch.fnmatch(name.lower(), pattern) for pattern in EXTRANEOUS):
            yield fail(Location(layer=Layer.BUNDLE, file=name), f"{name} does not belong in an export")


@hookimpl
def certify_checks():
    return [manifest_missing, unsigned_bundle, saved_memory_state, bundle_extraneous_files]
