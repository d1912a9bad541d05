"""Checks on the disks a descriptor names: present, of the declared format, self-contained, whole.

Ingestion never hands qemu a disk that fails one of these; the checks say
why it was left unopened. A disk left unopened also leaves every guest check
not-evaluated, so none of them can pass on a partial view of the guest.
"""

from __future__ import annotations

from collections.abc import Iterator

from certify.bundle.ingest import BundleFacts
from certify.checkdef import check
from certify.model import Layer, Result, Severity, fail
from certify.plugins.hookspecs import hookimpl


def _issues(bundle: BundleFacts, check_id: str) -> Iterator[Result]:
    for issue in bundle.disk_issues:
        if issue.check == check_id:
            yield fail(issue.location, issue.evidence)


@check(
    id="dangling-reference",
    severity=Severity.HIGH,
    layer=Layer.DESCRIPTOR,
    title="Descriptor names a file the bundle does not hold",
    remediation="Ship every file the descriptor names (disks, extents, CD-ROM images) in the bundle, or remove the reference.",
    references=("COT tests/invalid.ovf: a Disk whose fileRef names no File",),
)
def dangling_reference(bundle: BundleFacts) -> Iterator[Result]:
    """A disk, extent, image or File id the descriptor names that is not in the upload."""
    yield from _issues(bundle, "dangling-reference")


@check(
    id="disk-format-mismatch",
    severity=Severity.CRITICAL,
    layer=Layer.DISK,
    title="Disk bytes are not the format the bundle declares",
    remediation=(
        "Export the disk in the format the descriptor declares (ovf:format, the file extension, the VMDK "
        "extent type). A declared format the bytes deny is how image probing attacks start."
    ),
    references=("CVE-2026-24708: a raw disk with a qcow2 header", "libguestfs guestfs-security: never let qemu probe"),
)
def disk_format_mismatch(bundle: BundleFacts) -> Iterator[Result]:
    """The format read from the disk's header differs from the one declared for it."""
    yield from _issues(bundle, "disk-format-mismatch")


@check(
    id="disk-external-reference",
    severity=Severity.CRITICAL,
    layer=Layer.DISK,
    title="Disk image names other files",
    remediation=(
        "Flatten the image: no qcow2 backing or external data file, no VMDK parent or extents outside the "
        "bundle, no device-mapping VMDK, no differencing VHD/VHDX (qemu-img convert to a standalone image)."
    ),
    references=("CVE-2022-47951: a VMDK descriptor naming a host file", "CVE-2024-32498: qcow2 external data file"),
)
def disk_external_reference(bundle: BundleFacts) -> Iterator[Result]:
    """A backing file, parent, data file or extent that would make qemu open a file outside the disk."""
    yield from _issues(bundle, "disk-external-reference")


@check(
    id="disk-hidden-state",
    severity=Severity.CRITICAL,
    layer=Layer.DISK,
    title="Disk image holds guest state the inspection would not read",
    remediation=(
        "Ship only the state you mean to certify: delete internal snapshots (qemu-img snapshot -d) or convert the "
        "image (qemu-img convert -O qcow2), and close a VHDX cleanly (or replay its log with qemu-img check -r all) "
        "before export."
    ),
    references=("qemu docs/interop/qcow2.txt: snapshot table", "MS-VHDX 2.3: the log, replayed on open"),
)
def disk_hidden_state(bundle: BundleFacts) -> Iterator[Result]:
    """An internal snapshot or an unreplayed log: guest state a user can bring back that no check saw."""
    yield from _issues(bundle, "disk-hidden-state")


@check(
    id="disk-corrupt",
    severity=Severity.HIGH,
    layer=Layer.DISK,
    title="Disk image is truncated or its tables lie outside the file",
    remediation=(
        "Upload the disk again, whole: its header promises tables or data the file does not hold (an interrupted "
        "copy or export). qemu-img check on the original says more."
    ),
    references=("qemu block/vmdk.c: 'File truncated', block/vpc.c: 'The image has been truncated'",),
)
def disk_corrupt(bundle: BundleFacts) -> Iterator[Result]:
    """The file is empty, shorter than its header says, or its tables point outside it: never handed to qemu."""
    yield from _issues(bundle, "disk-corrupt")


@hookimpl
def certify_checks():
    return [dangling_reference, disk_format_mismatch, disk_external_reference, disk_hidden_state, disk_corrupt]
