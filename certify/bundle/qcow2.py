"""qcow2 headers (qemu docs/interop/qcow2.txt): the files an image would make qemu open, and whether it holds its tables.

Every table the header names (L1, refcount table, snapshot table, header
extensions, the bitmap directory) must lie inside the file, every L2 table,
refcount block and bitmap table an entry names too, and every data cluster an
L2 entry names must start inside it; internal snapshots are reported as
hidden state, since ``qemu-img snapshot -a`` restores guest state the
inspection never saw. The L1 and refcount tables are checked whole, the L2
and bitmap tables within the image's budget (``diskimage``).
"""

from __future__ import annotations

import struct
from dataclasses import replace

from certify.bundle.diskimage import QCOW2, CorruptDisk, DiskHeader, Image, entries, largest
from certify.errors import ParseError

MAGIC = b"QFI\xfb"
_DATA_FILE_EXTENSION = 0x44415441
_BITMAPS_EXTENSION = 0x23852875
_MAX_EXTENSIONS = 64
_EXTENSION_AREA = 64 * 1024  # extensions beyond this are refused rather than read
_MAX_L1_BYTES = 32 * 1024 * 1024  # qemu's QCOW_MAX_L1_SIZE
_MAX_REFTABLE_BYTES = 8 * 1024 * 1024  # qemu's QCOW_MAX_REFTABLE_SIZE
_MAX_SNAPSHOTS = 65536  # qemu's QCOW_MAX_SNAPSHOTS
_SNAPSHOTS_NAMED = 3  # how many snapshot names a refusal quotes
_TABLE_OFFSET = 0x00FFFFFFFFFFFE00  # bits 9-55 of an L1 or standard L2 entry
_COMPRESSED = 1 << 62
_COMPRESSED_FLAG = bytes(b & 0x40 for b in range(256))  # bit 62 of a big-endian entry, in its first byte
_REFCOUNT_BLOCK = 0xFFFFFFFFFFFFFE00  # a refcount table entry's offset bits
# Persistent dirty bitmaps (docs/interop/qcow2.txt, "Bitmaps extension"), with qemu's bounds (block/qcow2.h, qcow2-bitmap.c).
_MAX_BITMAPS = 65535
_MAX_BITMAP_DIRECTORY = 1024 * _MAX_BITMAPS
_MAX_BITMAP_TABLE = 0x8000000  # entries
_MAX_BITMAP_NAME = 1023
_BITMAP_FLAGS = 0x3  # in_use, auto; every other flag bit is reserved
_BITMAP_ENTRY_RESERVED = 0xFF000000000001FE


def _u32(b: bytes, off: int) -> int:
    return struct.unpack_from(">I", b, off)[0]


def _u64(b: bytes, off: int) -> int:
    return struct.unpack_from(">Q", b, off)[0]


def read_qcow2(img: Image) -> DiskHeader:
    head = img.read(0, 112)
    if len(head) < 72:
        raise CorruptDisk("disk truncated: the qcow2 header is incomplete")
    version = _u32(head, 4)
    if version not in (2, 3):
        raise ParseError(f"qcow2 version {version} is not 2 or 3")
    backing_offset, backing_size = _u64(head, 8), _u32(head, 16)
    refs: list[str] = []
    if backing_offset:
        name = img.read(backing_offset, min(backing_size, 1023)).decode("utf-8", "replace")
        refs.append(f"backing file {name!r}")
    if _u32(head, 32):
        raise ParseError("qcow2 image is encrypted")
    cluster_bits = _u32(head, 20)
    if not 9 <= cluster_bits <= 21:  # qemu's own bounds: 512 bytes to 2 MiB clusters
        raise ParseError(f"qcow2 cluster_bits {cluster_bits} is outside 9-21")
    cluster = 1 << cluster_bits
    incompatible, header_length = 0, 72
    if version == 3:
        if len(head) < 104:
            raise CorruptDisk("disk truncated: the qcow2 v3 header is incomplete")
        incompatible, header_length = _u64(head, 72), _u32(head, 100)
        if incompatible & 0x04:
            refs.append("external data file")
        if incompatible & 0x02:
            raise ParseError("qcow2 image is marked corrupt")
        if incompatible & ~0x1F:
            raise ParseError(f"qcow2 has unknown incompatible features {incompatible:#x}")
        if _u64(head, 88) & 0x02:
            refs.append("raw external data file")
        if header_length < 104 or header_length % 8:
            raise ParseError(f"qcow2 header_length {header_length} is not a multiple of 8 of at least 104")
        if _u32(head, 96) > 6:
            raise ParseError(f"qcow2 refcount_order {_u32(head, 96)} is over 6 (64-bit refcounts)")
    if header_length > cluster:
        raise ParseError(f"qcow2 header ({header_length} bytes) is larger than a cluster ({cluster})")
    named, bitmaps = _extensions(img, header_length, cluster)
    refs += [r for r in named if r not in refs]
    header = DiskHeader(format=QCOW2, subformat=f"v{version}", virtual_size=_u64(head, 24), references=tuple(refs))
    if refs:  # refused for what it names; its tables are not judged
        return header
    _tables(img, head, cluster_bits, extended_l2=bool(incompatible & 0x10))
    if bitmaps is not None:
        _bitmaps(img, bitmaps, cluster, header.virtual_size or 0)
    return replace(header, hidden_state=_snapshots(img, _u32(head, 60), _u64(head, 64), cluster))


def _extensions(img: Image, start: int, cluster: int) -> tuple[list[str], bytes | None]:
    """Header extensions (type, length, data padded to 8) up to the end marker, inside the first cluster: the
    files they name, and the bitmaps extension's data if there is one.

    The external data file name (0x44415441) is a reference even without the
    incompatible bit that should go with it: a reader must not have to guess.
    """
    area = img.read(start, max(0, min(cluster, _EXTENSION_AREA) - start))
    refs, offset, bitmaps = [], 0, None
    for _ in range(_MAX_EXTENSIONS):
        if offset + 8 > len(area):
            if start + len(area) >= img.size:
                raise CorruptDisk(f"disk truncated: qcow2 header extensions run past the end of the file ({img.size} bytes)")
            raise ParseError("qcow2 header extensions run past the first cluster")
        kind, length = struct.unpack_from(">II", area, offset)
        if kind == 0:
            return refs, bitmaps
        if kind == _DATA_FILE_EXTENSION:
            name = area[offset + 8 : offset + 8 + min(length, 1023)].decode("utf-8", "replace")
            refs.append(f"external data file {name!r}")
        if kind == _BITMAPS_EXTENSION:
            if bitmaps is not None or length != 24 or offset + 32 > len(area):
                raise CorruptDisk(f"qcow2 bitmaps extension of {length} bytes is not the one 24-byte extension qemu reads")
            bitmaps = area[offset + 8 : offset + 32]
        offset += 8 + (length + 7) // 8 * 8
    raise ParseError(f"qcow2 has more than {_MAX_EXTENSIONS} header extensions")


def _aligned(what: str, offset: int, cluster: int) -> None:
    if offset % cluster:
        raise CorruptDisk(f"{what} at byte {offset} is not aligned to a cluster ({cluster} bytes)")


def _tables(img: Image, head: bytes, cluster_bits: int, extended_l2: bool) -> None:
    """The L1 and refcount tables, the L2 tables and refcount blocks they name, and the clusters the L2 tables map."""
    cluster = 1 << cluster_bits
    virtual_size, l1_size, l1_offset = _u64(head, 24), _u32(head, 36), _u64(head, 40)
    reftable_offset, reftable_clusters = _u64(head, 48), _u32(head, 56)
    l2_width = 16 if extended_l2 else 8  # an extended L2 entry carries a subcluster bitmap
    per_l1 = cluster * (cluster // l2_width)
    if l1_size * 8 > _MAX_L1_BYTES:
        raise ParseError(f"qcow2 L1 table of {l1_size} entries is over qemu's {_MAX_L1_BYTES // 8}")
    if l1_size < -(-virtual_size // per_l1):
        raise CorruptDisk(f"qcow2 L1 table of {l1_size} entries cannot map the {virtual_size} bytes the header declares")
    if reftable_clusters == 0:
        raise CorruptDisk("qcow2 image has no refcount table")
    if reftable_clusters * cluster > _MAX_REFTABLE_BYTES:
        raise ParseError(f"qcow2 refcount table of {reftable_clusters} clusters is over qemu's {_MAX_REFTABLE_BYTES} bytes")
    _aligned("qcow2 refcount table", reftable_offset, cluster)
    _clusters_named(img, "qcow2 refcount table", "qcow2 refcount block", reftable_offset, reftable_clusters * cluster, _REFCOUNT_BLOCK, cluster)
    if not l1_size:
        return
    _aligned("qcow2 L1 table", l1_offset, cluster)
    _clusters_named(img, "qcow2 L1 table", "qcow2 L2 table", l1_offset, l1_size * 8, _TABLE_OFFSET, cluster)
    compressed_offset = (1 << (62 - (cluster_bits - 8))) - 1  # the low bits of a compressed entry
    walked: set[int] = set()  # each L2 table read once however many entries name it
    for first, data in img.table("qcow2 L1 table", l1_offset, l1_size * 8, 8):
        if not largest(data, 8, True, _TABLE_OFFSET):
            continue
        for i, entry in enumerate(entries(data, 8, True), first):
            table = entry & _TABLE_OFFSET
            if table and table not in walked:
                walked.add(table)
                _l2_table(img, img.lower(f"qcow2 L2 table {i}", table, cluster), l2_width, compressed_offset)


def _clusters_named(img: Image, what: str, item: str, offset: int, length: int, mask: int, cluster: int) -> None:
    """Every cluster a top-level table names (``entry & mask``, 0 for none) is aligned and inside the file: the
    whole table, judged chunk by chunk at C speed; the first entry that fails is named."""
    for first, data in img.table(what, offset, length, 8):
        if _inside(img, largest(data, 8, True, mask), cluster) and not largest(data, 8, True, mask & (cluster - 1)):
            continue
        for i, entry in enumerate(entries(data, 8, True), first):
            if entry & mask:
                _aligned(f"{item} {i}", entry & mask, cluster)
                img.need(f"{item} {i}", entry & mask, cluster)


def _inside(img: Image, last: int, cluster: int) -> bool:
    """Whether the cluster at ``last`` (0: none) lies inside the file."""
    return not last or last + cluster <= img.size


def _l2_table(img: Image, data: bytes, l2_width: int, compressed_offset: int) -> None:
    """The clusters an L2 table maps must start inside the file."""
    if l2_width == 16:  # keep each entry's first 8 bytes: the rest is its subcluster bitmap
        halves = bytearray(len(data) // 2)
        for j in range(8):
            halves[j::8] = data[j::16]
        data = bytes(halves)
    flags = data[0::8]
    if flags.translate(_COMPRESSED_FLAG).count(0) == len(flags):  # no compressed cluster: the common case
        last = largest(data, 8, True, _TABLE_OFFSET)
    else:
        last = largest(data, 8, True, _TABLE_OFFSET, where=(_COMPRESSED, 0))
        compressed = largest(data, 8, True, compressed_offset, where=(_COMPRESSED, _COMPRESSED))
        if compressed:
            img.starts("qcow2 compressed cluster", compressed)
    if last:
        img.starts("qcow2 data cluster", last)


def _bitmaps(img: Image, extension: bytes, cluster: int, virtual_size: int) -> None:
    """The bitmap directory qemu reads on every open (read-only included), each bitmap table and the clusters it names.

    Checked as qemu's qcow2-bitmap.c checks it (bitmap_list_load, check_dir_entry,
    check_table_entry), and the directory, tables and clusters must lie inside the file.
    """
    count, reserved, size, offset = struct.unpack(">IIQQ", extension)
    if reserved or not 1 <= count <= _MAX_BITMAPS or not 0 < size <= _MAX_BITMAP_DIRECTORY:
        raise CorruptDisk(f"qcow2 bitmaps extension names {count} bitmaps in a directory of {size} bytes "
                          f"(qemu reads 1-{_MAX_BITMAPS} bitmaps, at most {_MAX_BITMAP_DIRECTORY} bytes)")  # fmt: skip
    _aligned("qcow2 bitmap directory", offset, cluster)
    img.need("qcow2 bitmap directory", offset, size)
    directory = img.read(offset, size)
    at = 0
    for n in range(count):
        if at + 24 > size:
            raise CorruptDisk(f"qcow2 bitmap directory of {size} bytes ends inside entry {n} of {count}")
        table_offset, table_size, flags, kind, granularity, name_size, extra = struct.unpack_from(">QIIBBHI", directory, at)
        end = at + (24 + extra + name_size + 7) // 8 * 8
        name = directory[at + 24 + extra : at + 24 + extra + name_size].decode("utf-8", "replace")
        label = f"qcow2 bitmap {name!r}"
        if end > size:
            raise CorruptDisk(f"{label} runs past the end of the bitmap directory ({size} bytes)")
        if extra or kind != 1 or flags & ~_BITMAP_FLAGS or not 9 <= granularity <= 31 or not 0 < name_size <= _MAX_BITMAP_NAME:
            raise CorruptDisk(f"{label} is not a dirty-tracking bitmap qemu loads (type {kind}, flags {flags:#x}, "
                              f"granularity bits {granularity}, {extra} bytes of extra data)")  # fmt: skip
        if not 0 < table_size <= _MAX_BITMAP_TABLE:
            raise CorruptDisk(f"{label} has a bitmap table of {table_size} entries (qemu reads 1-{_MAX_BITMAP_TABLE})")
        if not flags & 1 and table_size * cluster * 8 << granularity < virtual_size:
            raise CorruptDisk(f"{label}: a bitmap table of {table_size} entries cannot cover the {virtual_size}-byte disk")
        _aligned(f"{label} table", table_offset, cluster)
        img.need(f"{label} table", table_offset, table_size * 8)
        _bitmap_table(img, label, img.lower(f"{label} table", table_offset, table_size * 8), cluster)
        at = end
    if at != size:
        raise CorruptDisk(f"qcow2 bitmap directory of {size} bytes holds {size - at} bytes after its {count} bitmaps")


def _bitmap_table(img: Image, label: str, data: bytes, cluster: int) -> None:
    """A bitmap table's entries: no reserved bit set, each cluster it names aligned and inside the file."""
    if not largest(data, 8, True, _BITMAP_ENTRY_RESERVED) and _inside(img, largest(data, 8, True, _TABLE_OFFSET), cluster) \
            and not largest(data, 8, True, _TABLE_OFFSET & (cluster - 1)):  # fmt: skip
        return
    for i, entry in enumerate(entries(data, 8, True)):
        if entry & _BITMAP_ENTRY_RESERVED or (entry & _TABLE_OFFSET and entry & 1):
            raise CorruptDisk(f"{label} table entry {i} ({entry:#x}) sets reserved bits")
        if entry & _TABLE_OFFSET:
            _aligned(f"{label} cluster {i}", entry & _TABLE_OFFSET, cluster)
            img.need(f"{label} cluster {i}", entry & _TABLE_OFFSET, cluster)


def _snapshots(img: Image, count: int, offset: int, cluster: int) -> tuple[str, ...]:
    """Internal snapshots, by name: each is a guest state ``qemu-img snapshot -a`` brings back."""
    if not count:
        return ()
    if count > _MAX_SNAPSHOTS:
        raise ParseError(f"qcow2 claims {count} internal snapshots, over qemu's {_MAX_SNAPSHOTS}")
    _aligned("qcow2 snapshot table", offset, cluster)
    img.need("qcow2 snapshot table", offset, count * 40)  # each entry is at least 40 bytes
    names = []
    for _ in range(min(count, _SNAPSHOTS_NAMED)):
        entry = img.read(offset, 40)
        img.need("qcow2 snapshot table entry", offset, 40)
        id_size, name_size = struct.unpack_from(">HH", entry, 12)
        extra = _u32(entry, 36)
        length = 40 + extra + id_size + name_size
        img.need("qcow2 snapshot table entry", offset, length)
        names.append(repr(img.read(offset + 40 + extra + id_size, min(name_size, 64)).decode("utf-8", "replace")))
        offset += (length + 7) // 8 * 8
    more = ", ..." if count > len(names) else ""
    plural = "s" if count > 1 else ""
    return (f"{count} internal qcow2 snapshot{plural} ({', '.join(names)}{more}), which `qemu-img snapshot -a` would restore",)
