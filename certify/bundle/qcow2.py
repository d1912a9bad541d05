"""qcow2 headers (qemu docs/interop/qcow2.txt): the files an image would make qemu open, and whether it holds its tables.

Every table the header names (L1, refcount table, snapshot table, header
extensions) must lie inside the file, every L2 table and refcount block an
entry names too, and every data cluster an L2 entry names must start inside
it; internal snapshots are reported as hidden state, since ``qemu-img
snapshot -a`` restores guest state the inspection never saw. The L1 and
refcount tables are checked whole, the L2 tables within the image's budget
(``diskimage``).
"""

from __future__ import annotations

import struct
from dataclasses import replace

from certify.bundle.diskimage import QCOW2, CorruptDisk, DiskHeader, Image, entries, largest
from certify.errors import ParseError

MAGIC = b"QFI\xfb"
_DATA_FILE_EXTENSION = 0x44415441
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
    refs += [r for r in _extensions(img, header_length, cluster) if r not in refs]
    header = DiskHeader(format=QCOW2, subformat=f"v{version}", virtual_size=_u64(head, 24), references=tuple(refs))
    if refs:  # refused for what it names; its tables are not judged
        return header
    _tables(img, head, cluster_bits, extended_l2=bool(incompatible & 0x10))
    return replace(header, hidden_state=_snapshots(img, _u32(head, 60), _u64(head, 64), cluster))


def _extensions(img: Image, start: int, cluster: int) -> list[str]:
    """Header extensions (type, length, data padded to 8) up to the end marker, inside the first cluster.

    The external data file name (0x44415441) is a reference even without the
    incompatible bit that should go with it: a reader must not have to guess.
    """
    area = img.read(start, max(0, min(cluster, _EXTENSION_AREA) - start))
    refs, offset = [], 0
    for _ in range(_MAX_EXTENSIONS):
        if offset + 8 > len(area):
            if start + len(area) >= img.size:
                raise CorruptDisk(f"disk truncated: qcow2 header extensions run past the end of the file ({img.size} bytes)")
            raise ParseError("qcow2 header extensions run past the first cluster")
        kind, length = struct.unpack_from(">II", area, offset)
        if kind == 0:
            return refs
        if kind == _DATA_FILE_EXTENSION:
            name = area[offset + 8 : offset + 8 + min(length, 1023)].decode("utf-8", "replace")
            refs.append(f"external data file {name!r}")
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
