"""Disk image format detection from header bytes, without qemu.

Never let qemu guess the format of an untrusted image: the format handed to
libguestfs is the one declared by the bundle, verified here against the
bytes. Formats that can name other files (backing files, parents, extents)
report those names so the caller can refuse them.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

from certify.errors import ParseError

Reader = Callable[[int, int], bytes]  # read(offset, length) -> at most length bytes

MAX_DESCRIPTOR = 1024 * 1024

MAX_DESCRIPTOR_LINE = 4096  # every line is bounded before a regex sees it
_EXTENT = re.compile(r'^(RW|RDONLY|NOACCESS) +(\d+) +(\w+)(?: +"([^"]*)"(?: +(\d+))?)?$')
_KV = re.compile(r'^([A-Za-z0-9_.]+) *= *(?:"([^"]*)"|(\S*))$')
# qemu looks for a parent hint anywhere in the descriptor text, comments included.
_PARENT_HINT = b"parentFileNameHint"
# qemu reads a sparse file's descriptor text from here whatever the header says.
_SPARSE_DESCRIPTOR_AREA = (0x200, 64 * 1024)

# qemu's names for the formats libguestfs can be told about.
RAW, QCOW2, VMDK, VPC, VHDX = "raw", "qcow2", "vmdk", "vpc", "vhdx"


@dataclass(frozen=True)
class Extent:
    type: str  # FLAT, SPARSE, ZERO, VMFS...
    file: str


@dataclass(frozen=True)
class DiskHeader:
    format: str  # qemu driver name, or the name of a format we refuse (qed, vdi, luks, cowd)
    subformat: str = ""  # e.g. streamOptimized, dynamic
    virtual_size: int | None = None
    references: tuple[str, ...] = ()  # other files this image would make qemu open
    extents: tuple[Extent, ...] = ()  # extents a VMDK text descriptor names


def _u32be(b: bytes, off: int) -> int:
    return struct.unpack_from(">I", b, off)[0]


def _u64be(b: bytes, off: int) -> int:
    return struct.unpack_from(">Q", b, off)[0]


def _qcow2(read: Reader) -> DiskHeader:
    head = read(0, 112)
    if len(head) < 72:
        raise ParseError("qcow2 header is truncated")
    version = _u32be(head, 4)
    if version not in (2, 3):
        raise ParseError(f"qcow2 version {version} is not 2 or 3")
    backing_offset, backing_size = _u64be(head, 8), _u32be(head, 16)
    refs: list[str] = []
    if backing_offset:
        name = read(backing_offset, min(backing_size, 1023)).decode("utf-8", "replace")
        refs.append(f"backing file {name!r}")
    if _u32be(head, 32):
        raise ParseError("qcow2 image is encrypted")
    cluster_bits = _u32be(head, 20)
    if not 9 <= cluster_bits <= 21:  # qemu's own bounds: 512 bytes to 2 MiB clusters
        raise ParseError(f"qcow2 cluster_bits {cluster_bits} is outside 9-21")
    if version == 3 and len(head) >= 104:
        incompatible = _u64be(head, 72)
        if incompatible & 0x04:
            refs.append("external data file")
        if incompatible & 0x02:
            raise ParseError("qcow2 image is marked corrupt")
        if incompatible & ~0x1F:
            raise ParseError(f"qcow2 has unknown incompatible features {incompatible:#x}")
        if _u64be(head, 88) & 0x02:
            refs.append("raw external data file")
        refs += [r for r in _qcow2_extensions(read, _u32be(head, 100), 1 << cluster_bits) if r not in refs]
    return DiskHeader(format=QCOW2, subformat=f"v{version}", virtual_size=_u64be(head, 24), references=tuple(refs))


_QCOW2_DATA_FILE_EXTENSION = 0x44415441
_MAX_QCOW2_EXTENSIONS = 64


def _qcow2_extensions(read: Reader, start: int, cluster: int) -> list[str]:
    """Header extensions (type, length, data padded to 8) up to the end marker, inside the first cluster.

    The external data file name (0x44415441) is a reference even without the
    incompatible bit that should go with it: a reader must not have to guess.
    """
    if start < 104 or start % 8:
        raise ParseError(f"qcow2 header_length {start} is not a multiple of 8 of at least 104")
    area = read(start, max(0, min(cluster, 64 * 1024) - start))
    refs, offset = [], 0
    for _ in range(_MAX_QCOW2_EXTENSIONS):
        if offset + 8 > len(area):
            raise ParseError("qcow2 header extensions run past the first cluster")
        kind, length = struct.unpack_from(">II", area, offset)
        if kind == 0:
            return refs
        if kind == _QCOW2_DATA_FILE_EXTENSION:
            name = area[offset + 8 : offset + 8 + min(length, 1023)].decode("utf-8", "replace")
            refs.append(f"external data file {name!r}")
        offset += 8 + (length + 7) // 8 * 8
    raise ParseError(f"qcow2 has more than {_MAX_QCOW2_EXTENSIONS} header extensions")


def parse_vmdk_descriptor(text: str) -> tuple[str, tuple[Extent, ...], tuple[str, ...]]:
    """(createType, extents, references to parents) of a VMDK text descriptor."""
    create_type, extents, refs = "", [], []
    if _PARENT_HINT.decode() in text:
        refs.append("parent disk (parentFileNameHint)")
    for raw in text.split("\n"):
        line = raw.strip().rstrip("\0").replace("\t", " ")
        if len(line) > MAX_DESCRIPTOR_LINE:
            raise ParseError(f"VMDK descriptor line longer than {MAX_DESCRIPTOR_LINE} characters")
        if not line or line.startswith("#"):
            continue
        extent = _EXTENT.match(line)
        if extent:
            if extent.group(4) is not None:
                extents.append(Extent(type=extent.group(3).upper(), file=extent.group(4)))
            continue
        kv = _KV.match(line)
        if not kv:
            raise ParseError(f"VMDK descriptor line not understood: {line[:60]!r}")
        key = kv.group(1).lower()
        value = kv.group(2) if kv.group(2) is not None else kv.group(3)
        if key == "createtype":
            create_type = value
        elif key == "parentfilenamehint":
            refs.append(f"parent {value!r}")
        elif key == "parentcid" and value.lower() != "ffffffff":
            refs.append("parent disk (parentCID is set)")
    return create_type, tuple(extents), tuple(refs)


_GD_AT_END = 0xFFFFFFFFFFFFFFFF


def _vmdk_sparse(read: Reader, size: int) -> DiskHeader:
    head = read(0, 512)
    if len(head) < 77:
        raise ParseError("VMDK sparse header is truncated")
    version, _flags, capacity = struct.unpack_from("<IIQ", head, 4)
    desc_offset, desc_size = struct.unpack_from("<QQ", head, 28)
    if version not in (1, 2, 3):
        raise ParseError(f"VMDK sparse version {version} is not 1, 2 or 3")
    if capacity == 0:
        # qemu then reads the embedded text as a full descriptor, extents and all.
        raise ParseError("VMDK sparse header has zero capacity (its embedded descriptor would name the extents)")
    if desc_offset not in (0, 1) or desc_size > 2047:
        raise ParseError(f"VMDK sparse descriptor at sector {desc_offset} ({desc_size} sectors): it belongs at sector 1, under 1 MiB")
    flags, gd_offset = struct.unpack_from("<I", head, 8)[0], struct.unpack_from("<Q", head, 56)[0]
    if flags & 0x10000 and struct.unpack_from("<H", head, 77)[0] != 1:
        raise ParseError(f"VMDK compressed grains use algorithm {struct.unpack_from('<H', head, 77)[0]}, not deflate (1)")
    if gd_offset == _GD_AT_END and read(size - 1024, 4) != b"KDMV":
        raise ParseError("streamOptimized VMDK puts its grain directory in a footer, but has no footer")
    create_type, refs = "", []
    start, length = _SPARSE_DESCRIPTOR_AREA
    if _PARENT_HINT in read(start, length):
        refs.append("parent disk (parentFileNameHint)")
    if desc_offset:
        if desc_size * 512 > MAX_DESCRIPTOR:
            raise ParseError("embedded VMDK descriptor is larger than 1 MiB")
        raw = read(desc_offset * 512, desc_size * 512)
        if _PARENT_HINT in raw and not refs:
            refs.append("parent disk (parentFileNameHint)")
        create_type, _extents, desc_refs = parse_vmdk_descriptor(raw.decode("utf-8", "replace"))
        refs += [r for r in desc_refs if r not in refs]
    return DiskHeader(format=VMDK, subformat=create_type or "sparse", virtual_size=capacity * 512, references=tuple(refs))


def _vhdx(read: Reader) -> DiskHeader:
    region = read(192 * 1024, 64 * 1024)
    if region[:4] != b"regi":
        raise ParseError("VHDX region table is missing")
    count = struct.unpack_from("<I", region, 8)[0]
    if count > 2047:
        raise ParseError("VHDX region table is corrupt")
    metadata_guid = bytes.fromhex("06A27C8B90479A4BB8FE575F050F886E")
    for i in range(count):
        entry = region[16 + 32 * i : 48 + 32 * i]
        if len(entry) == 32 and entry[:16] == metadata_guid:
            offset, length = struct.unpack_from("<QI", entry, 16)
            return DiskHeader(format=VHDX, references=_vhdx_parent(read(offset, min(length, 1024 * 1024))))
    raise ParseError("VHDX has no metadata region")


def _vhdx_parent(meta: bytes) -> tuple[str, ...]:
    if meta[:8] != b"metadata":
        raise ParseError("VHDX metadata table is missing")
    file_params = bytes.fromhex("3767A1CA36FA434DB3B633F0AA44E76B")
    parent_locator = bytes.fromhex("2D5FD3A80BB34D45ABF7D3D84834AB0C")
    count = struct.unpack_from("<H", meta, 10)[0]
    refs: list[str] = []
    for i in range(min(count, 2047)):
        entry = meta[32 + 32 * i : 64 + 32 * i]
        if len(entry) < 32:
            break
        guid, offset = entry[:16], struct.unpack_from("<I", entry, 16)[0]
        if guid == parent_locator:
            refs.append("parent locator")
        elif guid == file_params and len(meta) >= offset + 8 and struct.unpack_from("<I", meta, offset + 4)[0] & 2:
            refs.append("parent disk (HasParent)")
    return tuple(refs)


def _vhd(footer: bytes, subformat: str) -> DiskHeader:
    disk_type = _u32be(footer, 60)
    refs = ("parent disk (differencing VHD)",) if disk_type == 4 else ()
    kind = {2: "fixed", 3: "dynamic", 4: "differencing"}.get(disk_type, subformat)
    return DiskHeader(format=VPC, subformat=kind, virtual_size=_u64be(footer, 48), references=refs)


def sniff(read: Reader, size: int) -> DiskHeader:
    """Identify an image by its bytes. ``read(offset, n)`` gives its content."""
    try:
        return _sniff(read, size)
    except (struct.error, ValueError, OverflowError) as exc:
        raise ParseError(f"corrupt disk header: {exc}") from None


def _sniff(read: Reader, size: int) -> DiskHeader:
    head = read(0, 1024)
    if head[:4] == b"QFI\xfb":
        return _qcow2(read)
    if head[:4] == b"KDMV":
        return _vmdk_sparse(read, size)
    if head[:4] == b"COWD":
        return DiskHeader(format="cowd", references=("VMDK3 parent disk",))
    if head.startswith(b"# Disk DescriptorFile"):
        text = read(0, MAX_DESCRIPTOR).decode("utf-8", "replace")
        create_type, extents, refs = parse_vmdk_descriptor(text)
        return DiskHeader(format=VMDK, subformat=create_type or "descriptor", references=refs, extents=extents)
    if head[:8] == b"vhdxfile":
        return _vhdx(read)
    if head[:8] == b"conectix" and len(head) >= 512:
        return _vhd(head[:512], "dynamic")
    if head[:4] == b"QED\0":
        return DiskHeader(format="qed")
    if head[:6] == b"LUKS\xba\xbe":
        return DiskHeader(format="luks")
    if len(head) >= 0x44 and struct.unpack_from("<I", head, 0x40)[0] == 0xBEDA107F:
        return DiskHeader(format="vdi")
    if size >= 512:
        footer = read(size - 512, 512)
        if footer[:8] == b"conectix":
            return _vhd(footer, "fixed")
    return DiskHeader(format=RAW, virtual_size=size)


def sniff_bytes(data: bytes) -> DiskHeader:
    """``sniff`` over an in-memory image: what tests and fuzzers call."""
    return sniff(lambda off, n: data[off : off + n], len(data))


EXTENSION_FORMATS = {".qcow2": QCOW2, ".vmdk": VMDK, ".img": RAW, ".raw": RAW, ".vhd": VPC, ".vhdx": VHDX}


def format_from_ovf(url: str | None) -> str | None:
    """The qemu format an OVF ``Disk/@ovf:format`` URL declares."""
    text = (url or "").lower()
    for needle, fmt in (("vmdk", VMDK), ("qcow", QCOW2), ("vhdx", VHDX), ("vhd", VPC), ("raw", RAW)):
        if needle in text:
            return fmt
    return None
