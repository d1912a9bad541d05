"""VMDK text descriptors and hosted sparse extents (qemu block/vmdk.c, VMware's Virtual Disk Format 5.0).

A sparse file (``KDMV``) is its own single extent: an embedded descriptor
listing any other extent is a reference, whether or not qemu follows it,
because other readers do. It must be a whole number of sectors (qemu reads
the file rounded up to one, so a footer's place would depend on the reader).
Its grain directory, read whole, the grain tables it names (within the
image's budget, ``diskimage``) and the grains they map must lie inside the
file, and a stream-optimized file must end with its end-of-stream marker
(and, when its grain directory is "at the end", the footer before it).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from certify.bundle.diskimage import SECTOR, VMDK, CorruptDisk, DiskHeader, Extent, Image, entries
from certify.errors import ParseError

SPARSE_MAGIC = b"KDMV"
DESCRIPTOR_MAGIC = b"# Disk DescriptorFile"
MAX_DESCRIPTOR = 1024 * 1024

MAX_DESCRIPTOR_LINE = 4096  # every line is bounded before a regex sees it
_EXTENT = re.compile(r'^(RW|RDONLY|NOACCESS) +(\d+) +(\w+)(?: +"([^"]*)"(?: +(\d+))?)?$')
_KV = re.compile(r'^([A-Za-z0-9_.]+) *= *(?:"([^"]*)"|(\S*))$')
# qemu looks for a parent hint anywhere in the descriptor text, comments included.
_PARENT_HINT = b"parentFileNameHint"
# qemu reads a sparse file's descriptor text from here whatever the header says.
_SPARSE_DESCRIPTOR_AREA = (0x200, 64 * 1024)

_GD_AT_END = 0xFFFFFFFFFFFFFFFF
_FLAG_REDUNDANT_GD, _FLAG_COMPRESSED, _FLAG_MARKERS = 0x2, 0x10000, 0x20000
_MAX_GRAIN = 0x200000  # sectors: qemu's bound ("Invalid granularity")
_MAX_GTES = 512  # qemu's bound ("L2 table size too big")
_MAX_GD_ENTRIES = 32 * 1024 * 1024  # qemu's bound ("L1 size too big")
_MARKER_EOS, _MARKER_FOOTER = 0, 3


def parse_vmdk_descriptor(text: str) -> tuple[str, tuple[Extent, ...], tuple[str, ...]]:
    """(createType, extents, references to parents) of a VMDK text descriptor.

    Every extent line counts, a file-less one (``RW 2048 ZERO``) with an empty file name.
    """
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
            extents.append(Extent(type=extent.group(3).upper(), file=extent.group(4) or "",
                                  sectors=int(extent.group(2)), offset=int(extent.group(5) or 0)))  # fmt: skip
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


def read_descriptor_file(img: Image) -> DiskHeader:
    text = img.read(0, MAX_DESCRIPTOR).decode("utf-8", "replace")
    create_type, extents, refs = parse_vmdk_descriptor(text)
    return DiskHeader(format=VMDK, subformat=create_type or "descriptor", references=refs, extents=extents)


@dataclass(frozen=True)
class _SparseHeader:
    """The fields of a VMDK4 sparse header (at byte 0, or in a stream's footer)."""

    version: int
    flags: int
    capacity: int  # sectors
    grain: int  # sectors
    descriptor_offset: int  # sector
    descriptor_size: int  # sectors
    gtes: int  # entries per grain table
    rgd: int  # sector of the redundant grain directory
    gd: int  # sector of the grain directory, or _GD_AT_END
    grain_offset: int  # sector where grains may start
    compression: int

    @classmethod
    def unpack(cls, block: bytes) -> _SparseHeader:
        version, flags, capacity, grain, doff, dsize, gtes, rgd, gd, grain_offset = struct.unpack_from("<IIQQQQIQQQ", block, 4)
        return cls(version, flags, capacity, grain, doff, dsize, gtes, rgd, gd, grain_offset, struct.unpack_from("<H", block, 77)[0])

    def check(self) -> None:
        if self.version not in (1, 2, 3):
            raise ParseError(f"VMDK sparse version {self.version} is not 1, 2 or 3")
        if self.flags & _FLAG_COMPRESSED and self.compression != 1:
            raise ParseError(f"VMDK compressed grains use algorithm {self.compression}, not deflate (1)")


def read_sparse(img: Image) -> DiskHeader:
    head = img.read(0, 512)
    if len(head) < 79:
        raise CorruptDisk("disk truncated: the VMDK sparse header is incomplete")
    if img.size % SECTOR:
        raise CorruptDisk(f"the sparse VMDK is {img.size} bytes, not a whole number of 512-byte sectors (cut short?): qemu "
                          f"reads it as {-(-img.size // SECTOR) * SECTOR} bytes, zeros added, and would find its end elsewhere")  # fmt: skip
    header = _SparseHeader.unpack(head)
    header.check()
    if header.capacity == 0:
        # qemu then reads the embedded text as a full descriptor, extents and all.
        raise ParseError("VMDK sparse header has zero capacity (its embedded descriptor would name the extents)")
    if header.descriptor_offset not in (0, 1) or header.descriptor_size > 2047:
        raise ParseError(f"VMDK sparse descriptor at sector {header.descriptor_offset} ({header.descriptor_size} sectors): "
                         "it belongs at sector 1, under 1 MiB")  # fmt: skip
    create_type, refs, own = _embedded_descriptor(img, header)
    result = DiskHeader(format=VMDK, subformat=create_type or "sparse", virtual_size=header.capacity * 512,
                        references=tuple(refs), own_name=own.file if own else None)  # fmt: skip
    if refs:  # refused for what it names; its tables are not judged
        return result
    if own and own.sectors != header.capacity:
        raise CorruptDisk(f"the embedded VMDK descriptor gives its extent {own.sectors} sectors, the header {header.capacity}")
    _layout(img, _footer(img, header) if header.gd == _GD_AT_END else header)
    return result


def _footer(img: Image, header: _SparseHeader) -> _SparseHeader:
    """A stream's footer header, which qemu reads instead of the one at byte 0: it must be there and agree.

    qemu reads it 1536 bytes before the end of the file rounded up to a sector (read_sparse refuses a file that is not).
    """
    end = -(-img.size // SECTOR) * SECTOR
    footer = img.read(end - 1536, 1536) if img.size >= 2048 else b""
    marker = struct.unpack_from("<QII", footer, 0) if len(footer) == 1536 else None
    eos = struct.unpack_from("<QII", footer, 1024) if marker else None
    if not marker or marker[1:] != (0, _MARKER_FOOTER) or footer[512:516] != SPARSE_MAGIC or eos != (0, 0, _MARKER_EOS):
        raise CorruptDisk("disk truncated: a streamOptimized VMDK keeps its grain directory in a footer, but the file has no footer "
                          "and end-of-stream marker at its end")  # fmt: skip
    tables = _SparseHeader.unpack(footer[512:1024])
    tables.check()
    if tables.gd == _GD_AT_END:
        raise CorruptDisk("the VMDK footer, too, says the grain directory is at the end")
    if tables.capacity != header.capacity:
        raise CorruptDisk(f"the VMDK footer declares {tables.capacity} sectors, the header {header.capacity}")
    return tables


def _embedded_descriptor(img: Image, header: _SparseHeader) -> tuple[str, list[str], Extent | None]:
    """(createType, references, the extent naming this file) of the descriptor text a sparse file carries."""
    refs: list[str] = []
    start, length = _SPARSE_DESCRIPTOR_AREA
    if _PARENT_HINT in img.read(start, length):
        refs.append("parent disk (parentFileNameHint)")
    if not header.descriptor_offset:
        return "", refs, None
    if header.descriptor_size * 512 > MAX_DESCRIPTOR:
        raise ParseError("embedded VMDK descriptor is larger than 1 MiB")
    img.need("embedded VMDK descriptor", header.descriptor_offset * 512, header.descriptor_size * 512)
    raw = img.read(header.descriptor_offset * 512, header.descriptor_size * 512)
    if _PARENT_HINT in raw and not refs:
        refs.append("parent disk (parentFileNameHint)")
    create_type, extents, desc_refs = parse_vmdk_descriptor(raw.decode("utf-8", "replace"))
    refs += [r for r in desc_refs if r not in refs]
    if not extents:  # the extent files of a split VMDK carry an empty descriptor
        return create_type, refs, None
    if len(extents) > 1 or not _bare_sparse(extents[0]):
        listed = ", ".join(f"{e.type} {e.file!r}" if e.file else e.type for e in extents[:4]) + (", ..." if len(extents) > 4 else "")
        refs.append(f"its embedded descriptor lists {listed}; a sparse VMDK must be its own single extent")
        return create_type, refs, None
    return create_type, refs, extents[0]


def _bare_sparse(extent: Extent) -> bool:
    """A SPARSE extent named by a plain file name: the only way a sparse file can name itself."""
    name = extent.file
    return extent.type == "SPARSE" and bool(name) and name not in (".", "..") and not any(c in name for c in "/\\:\0")


def _layout(img: Image, h: _SparseHeader) -> None:
    if not 1 <= h.grain <= _MAX_GRAIN:
        raise CorruptDisk(f"VMDK grain size of {h.grain} sectors is outside 1-{_MAX_GRAIN}")
    if not 1 <= h.gtes <= _MAX_GTES:
        raise CorruptDisk(f"VMDK grain tables of {h.gtes} entries are outside 1-{_MAX_GTES}")
    directory_entries = -(-h.capacity // (h.gtes * h.grain))
    if directory_entries > _MAX_GD_ENTRIES:
        raise ParseError(f"VMDK grain directory of {directory_entries} entries is over qemu's {_MAX_GD_ENTRIES}")
    if h.grain_offset * 512 > img.size:
        raise CorruptDisk(f"disk truncated: grains start at byte {h.grain_offset * 512}, beyond end of file ({img.size} bytes)")
    directories = [("grain directory", h.gd)]
    if h.flags & _FLAG_REDUNDANT_GD:
        directories.append(("redundant grain directory", h.rgd))
    for what, sector in directories:  # every entry of both, whatever the budget
        for first, data in img.table(what, sector * 512, directory_entries * 4, 4):
            table = entries(data, 4, big_endian=False)
            last = max(table, default=0)
            if last:
                img.need(f"grain table {first + table.index(last)} of the {what}", last * 512, h.gtes * 4)
    walked: set[int] = set()  # qemu reads grains through the primary directory only; each table once
    for first, data in img.table("grain directory", h.gd * 512, directory_entries * 4, 4):
        table = entries(data, 4, big_endian=False)
        if not max(table, default=0):
            continue
        for i, sector in enumerate(table, first):
            if not sector or sector in walked:
                continue
            walked.add(sector)
            grains = entries(img.lower(f"grain table {i}", sector * 512, h.gtes * 4), 4, big_endian=False)
            last = max(grains, default=0)
            if last and h.flags & _FLAG_COMPRESSED:  # a compressed grain is as long as its marker says
                img.starts("grain", last * 512)
            elif last:
                img.holds("grain", last * 512, h.grain * 512)
    # The marker is a whole sector: a stream that does not end with one was cut short.
    if h.flags & _FLAG_MARKERS and (img.size % 512 or img.read(img.size - 512, 16) != bytes(16)):
        raise CorruptDisk(f"disk truncated: the stream does not end with an end-of-stream marker (file of {img.size} bytes)")
