"""Disk image format detection from header bytes, without qemu.

Never let qemu guess the format of an untrusted image: the format handed to
libguestfs is the one declared by the bundle, verified here against the
bytes. Formats that can name other files (backing files, parents, extents)
report those names so the caller can refuse them; guest state inspection
would not read (qcow2 internal snapshots, a VHDX log to replay) is reported
too; and a file that does not hold what its header promises raises
CorruptDisk. The readers live in ``qcow2``, ``vmdk`` and ``vhd``, their shared
pieces in ``diskimage``.
"""

from __future__ import annotations

import struct

from certify.bundle.diskimage import QCOW2, RAW, VHDX, VMDK, VPC, CorruptDisk, DiskHeader, Extent, Image, Reader
from certify.bundle.qcow2 import MAGIC as QCOW2_MAGIC
from certify.bundle.qcow2 import read_qcow2
from certify.bundle.vhd import VHD_COOKIE, VHDX_MAGIC, read_vhd, read_vhdx
from certify.bundle.vmdk import DESCRIPTOR_MAGIC, MAX_DESCRIPTOR, SPARSE_MAGIC, parse_vmdk_descriptor, read_descriptor_file, read_sparse

__all__ = ["QCOW2", "RAW", "VHDX", "VMDK", "VPC", "CorruptDisk", "DiskHeader", "Extent", "Reader", "MAX_DESCRIPTOR",
           "parse_vmdk_descriptor", "sniff", "sniff_bytes", "format_from_ovf", "EXTENSION_FORMATS"]  # fmt: skip


def sniff(read: Reader, size: int) -> DiskHeader:
    """Identify an image by its bytes and check it holds what its header promises. ``read(offset, n)`` gives its content.

    Raises CorruptDisk when it does not (truncated, tables outside the file), ParseError when it is not safe to interpret.
    """
    img = Image(read, size)
    if size == 0:
        raise CorruptDisk("the disk file is empty")
    head = img.read(0, 1024)
    try:
        return _sniff(img, head)
    except CorruptDisk as exc:  # what the header says it is still decides a format mismatch
        exc.format = _magic_format(head)
        raise
    except (struct.error, ValueError, OverflowError) as exc:  # a field read past what the file holds
        corrupt = CorruptDisk(f"corrupt disk header: {exc}")
        corrupt.format = _magic_format(head)
        raise corrupt from None


def _magic_format(head: bytes) -> str | None:
    for magic, fmt in ((QCOW2_MAGIC, QCOW2), (SPARSE_MAGIC, VMDK), (DESCRIPTOR_MAGIC, VMDK), (VHDX_MAGIC, VHDX), (VHD_COOKIE, VPC)):
        if head.startswith(magic):
            return fmt
    return VPC  # only a fixed VHD, known by its footer, is read without a magic at byte 0


def _sniff(img: Image, head: bytes) -> DiskHeader:
    if head[:4] == QCOW2_MAGIC:
        return read_qcow2(img)
    if head[:4] == SPARSE_MAGIC:
        return read_sparse(img)
    if head[:4] == b"COWD":
        return DiskHeader(format="cowd", references=("VMDK3 parent disk",))
    if head.startswith(DESCRIPTOR_MAGIC):
        return read_descriptor_file(img)
    if head[:8] == VHDX_MAGIC:
        return read_vhdx(img)
    if head[:8] == VHD_COOKIE and len(head) >= 512:
        return read_vhd(img, head[:512], at_front=True)
    if head[:4] == b"QED\0":
        return DiskHeader(format="qed")
    if head[:6] == b"LUKS\xba\xbe":
        return DiskHeader(format="luks")
    if len(head) >= 0x44 and struct.unpack_from("<I", head, 0x40)[0] == 0xBEDA107F:
        return DiskHeader(format="vdi")
    if img.size >= 512:
        footer = img.read(img.size - 512, 512)
        if footer[:8] == VHD_COOKIE:
            return read_vhd(img, footer, at_front=False)
    return DiskHeader(format=RAW, virtual_size=img.size)


def sniff_bytes(data: bytes) -> DiskHeader:
    """``sniff`` over an in-memory image: what tests and fuzzers call."""
    return sniff(lambda off, n: data[off : off + n] if off >= 0 else b"", len(data))


EXTENSION_FORMATS = {".qcow2": QCOW2, ".vmdk": VMDK, ".img": RAW, ".raw": RAW, ".vhd": VPC, ".vhdx": VHDX}


def format_from_ovf(url: str | None) -> str | None:
    """The qemu format an OVF ``Disk/@ovf:format`` URL declares."""
    text = (url or "").lower()
    for needle, fmt in (("vmdk", VMDK), ("qcow", QCOW2), ("vhdx", VHDX), ("vhd", VPC), ("raw", RAW)):
        if needle in text:
            return fmt
    return None
