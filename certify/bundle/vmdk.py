"""VMDK text descriptors and hosted sparse extents (qemu block/vmdk.c, VMware's Virtual Disk Format 5.0).

A text descriptor is held to what qemu reads from it: its text up to the
first NUL (nothing may follow), ``createType`` where qemu finds it (the
first ``createType`` anywhere in the text), and extent lines qemu maps
exactly as VMware does: ``RW`` access, ASCII digits, an upper-case type,
no blank line before one (qemu's sscanf would read the extent from the
blank line too, and map it twice). An extent line qemu leaves out (RDONLY,
NOACCESS, ZERO) is refused, and so is a key given twice or in another case
(readers disagree on which counts). The disk's size is the sum of its
extents, as qemu computes it.

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
_ACCESS = ("RW", "RDONLY", "NOACCESS")
# ASCII only: qemu's sscanf reads ASCII digits, and maps only the upper-case types it knows.
_EXTENT = re.compile(r'(RW|RDONLY|NOACCESS) +([0-9]{1,16}) +([A-Z]+)(?: +"([^"\r]*)"(?: +([0-9]{1,16}))?)?', re.ASCII)
_KV = re.compile(r'^([A-Za-z0-9_.]+) *= *(?:"([^"]*)"|(\S*))$')
_C_SPACE = " \t\r\v\f"  # what C's isspace() skips on a line (strip() would also take Unicode spaces qemu does not)
_NEEDS_OFFSET, _TAKES_NO_OFFSET = ("FLAT",), ("SPARSE", "VMFS", "VMFSSPARSE", "SESPARSE")
_MAX_SECTORS = 1 << 54  # qemu keeps sectors and offsets in int64 and shifts them by 9
_MAX_EXTENT_NAME = 511  # bytes: qemu's sscanf reads "%511[^\n\r\"]"
# Keys qemu looks for by case-sensitive search: another spelling would be read by VMware and not by qemu.
_CANONICAL_KEYS = {k.lower(): k for k in ("version", "CID", "parentCID", "createType", "parentFileNameHint")}
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


def descriptor_text(raw: bytes, what: str = "VMDK descriptor") -> str:
    """The text of a descriptor: up to its first NUL, where qemu's C string ends; only NULs may follow."""
    end = raw.find(b"\0")
    if end != -1 and raw.count(0, end) != len(raw) - end:
        stray = end + len(raw[end:]) - len(raw[end:].lstrip(b"\0"))
        raise CorruptDisk(f"{what}: a non-zero byte at offset {stray}, after the NUL at {end} that ends the text qemu reads")
    return (raw if end == -1 else raw[:end]).decode("utf-8", "replace")


def parse_vmdk_descriptor(text: str, extents_mapped: bool = True) -> tuple[str, tuple[Extent, ...], tuple[str, ...]]:
    """(createType, extents, references to parents) of a VMDK text descriptor.

    Every extent line counts, a file-less one (``RW 2048 ZERO``) with an empty file name.
    Raises CorruptDisk for an extent line qemu and VMware could read differently and
    for a key given twice; ParseError for a line that is neither key nor extent.
    ``extents_mapped`` is False for the descriptor a sparse file embeds, whose extent
    lines qemu never parses.
    """
    create_type, extents, refs = "", [], []
    if _PARENT_HINT.decode() in text:
        refs.append("parent disk (parentFileNameHint)")
    keys: dict[str, tuple[int, str]] = {}
    blank_before = False
    for number, raw in enumerate(text.split("\n"), 1):
        if len(raw) > MAX_DESCRIPTOR_LINE:
            raise ParseError(f"VMDK descriptor line longer than {MAX_DESCRIPTOR_LINE} characters")
        line = raw.strip(_C_SPACE).replace("\t", " ")
        blank, blank_before = blank_before, not line
        if not line or line.startswith("#"):
            continue
        if line.split(" ", 1)[0].upper() in _ACCESS:
            extents.append(_extent_line(number, line, blank and extents_mapped))
            continue
        kv = _KV.match(line)
        if not kv:
            raise ParseError(f"VMDK descriptor line not understood: {line[:60]!r}")
        key, value = kv.group(1), kv.group(2) if kv.group(2) is not None else kv.group(3)
        if key.lower() in keys:
            first, spelled = keys[key.lower()]
            raise CorruptDisk(f"VMDK descriptor key {key!r} on line {number} repeats {spelled!r} of line {first}: "
                              "readers disagree on which one counts")  # fmt: skip
        keys[key.lower()] = (number, key)
        canonical = _CANONICAL_KEYS.get(key.lower(), key)
        if key != canonical:
            raise CorruptDisk(f"VMDK descriptor line {number}: key {key!r} is read as {canonical!r} by VMware, "
                              "and not at all by qemu, which looks for that spelling only")  # fmt: skip
        if key == "createType":
            create_type = value
        elif key == "parentFileNameHint":
            refs.append(f"parent {value!r}")
        elif key == "parentCID" and value.lower() != "ffffffff":
            refs.append("parent disk (parentCID is set)")
    return create_type, tuple(extents), tuple(refs)


def _extent_line(number: int, line: str, blank_before: bool) -> Extent:
    """An extent line, held to what qemu's sscanf("%10s %ld %10s \"%511[^\n\r\"]\" %ld") reads the way VMware does."""
    match = _EXTENT.fullmatch(line)
    if not match:
        raise CorruptDisk(f"VMDK descriptor line {number} is an extent line qemu would not read as VMware does "
                          f"(access RW, RDONLY or NOACCESS, ASCII digits, an upper-case type): {line[:60]!r}")  # fmt: skip
    access, sectors, kind, name, offset = match.groups()
    label = f"VMDK descriptor line {number} ({kind} extent)"
    if blank_before:
        raise CorruptDisk(f"{label} follows a blank line: qemu reads the extent from the blank line too, and maps it twice")
    if not 0 < int(sectors) < _MAX_SECTORS or int(offset or 0) >= _MAX_SECTORS:
        raise CorruptDisk(f"{label}: {sectors} sectors at offset {offset or 0} is out of range")
    if name is not None and not 0 < len(name.encode("utf-8", "surrogateescape")) <= _MAX_EXTENT_NAME:
        raise CorruptDisk(f"{label}: a file name of {len(name.encode('utf-8', 'surrogateescape'))} bytes (qemu reads 1-{_MAX_EXTENT_NAME})")
    if kind in _NEEDS_OFFSET + _TAKES_NO_OFFSET and name is None:
        raise CorruptDisk(f"{label} names no file")
    if kind in _NEEDS_OFFSET and offset is None or kind in _TAKES_NO_OFFSET and offset is not None:
        raise CorruptDisk(f"{label}: qemu refuses a {kind} extent {'without' if offset is None else 'with'} a sector offset")
    return Extent(type=kind, file=name or "", sectors=int(sectors), offset=int(offset or 0), access=access)


def qemu_create_type(text: str) -> str | None:
    """The createType qemu reads: after the first 'createType' anywhere in the text (a comment too) and two more characters, up to a quote."""
    at = text.find("createType")
    if at == -1:
        return None
    start = at + len("createType") + 2
    end = text.find('"', start)
    return text[start:end] if start < len(text) and end != -1 else None


def read_descriptor_file(img: Image) -> DiskHeader:
    if img.size >= MAX_DESCRIPTOR:
        raise CorruptDisk(f"a VMDK text descriptor of {img.size} bytes: qemu reads only its first {MAX_DESCRIPTOR - 1}")
    text = descriptor_text(img.read(0, img.size))
    create_type, extents, refs = parse_vmdk_descriptor(text)
    qemu_reads = qemu_create_type(text)
    if qemu_reads is None and create_type:
        raise CorruptDisk(f"qemu finds no createType in the VMDK descriptor (it reads one spelled createType=\"...\"), "
                          f"its createType line says {create_type!r}")  # fmt: skip
    if qemu_reads != create_type and qemu_reads is not None:
        raise CorruptDisk(f"qemu reads createType {qemu_reads!r} from the first 'createType' in the VMDK descriptor "
                          f"(a comment or another line counts), its createType line says {create_type!r}")  # fmt: skip
    refs = list(refs)
    for extent in extents:
        if extent.type == "ZERO":
            raise CorruptDisk(f"a ZERO extent of {extent.sectors} sectors, which qemu leaves out of the disk (VMware reads zeros "
                              "there): the two would read different disks")  # fmt: skip
        if extent.access != "RW":
            refs.append(f"{extent.access} extent {extent.file!r}, which qemu does not map (it maps RW extents only)")
    virtual_size = sum(e.sectors for e in extents) * SECTOR
    return DiskHeader(format=VMDK, subformat=create_type or "descriptor", virtual_size=virtual_size or None,
                      references=tuple(refs), extents=extents)  # fmt: skip


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
    create_type, extents, desc_refs = parse_vmdk_descriptor(descriptor_text(raw, "embedded VMDK descriptor"), extents_mapped=False)
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
    return extent.type == "SPARSE" and extent.access == "RW" and bool(name) and name not in (".", "..") and not any(c in name for c in "/\\:\0")


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
