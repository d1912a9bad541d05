"""What every disk-format reader shares: the header summary, bounded reads, and the corruption error.

A header promises tables (qcow2 L1 and refcount tables, a VMDK grain
directory, a VHD block table, VHDX regions) and, through them, data. A
truncated or damaged upload promises bytes the file does not have: qemu would
then read offsets an attacker chose and the report would blame the guest ("no
operating system found"). The readers (``qcow2``, ``vmdk``, ``vhd``) check
each promise through ``Image``, which reads via the same ``read(offset, n)``
callback as the sniffer.

A top-level table (a qcow2 L1 or refcount table, a grain directory, a VHD or
VHDX block table) is always read and checked whole: qemu's own limits bound
it (a 32 MiB L1 table at most), and it is read in chunks whose entries are
judged at C speed (``largest``). The tables those entries name (L2 tables,
grain tables, bitmap tables) are read through ``Image.lower``, at most
``LOWER_TABLE_BUDGET`` bytes of them per image, each read counted as at least
one sector: that covers every table of a fully allocated 2 TiB image with
64 KiB clusters, and an image needing more is refused as one this tool
cannot verify rather than certified with tables nobody read.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from certify.errors import ParseError

Reader = Callable[[int, int], bytes]  # read(offset, length) -> at most length bytes

# qemu's names for the formats libguestfs can be told about.
RAW, QCOW2, VMDK, VPC, VHDX = "raw", "qcow2", "vmdk", "vpc", "vhdx"

LOWER_TABLE_BUDGET = 256 * 1024 * 1024  # bytes of second-level tables read per image (a few seconds at most)
SECTOR = 512  # the smallest read a second-level table is charged for
_CHUNK = 4 * 1024 * 1024  # a top-level table is read this many bytes at a time


class CorruptDisk(ParseError):
    """The file does not hold what its header promises (truncated, or tables outside it)."""

    format: str | None = None  # what its header says it is, once known


@dataclass(frozen=True)
class Extent:
    type: str  # FLAT, SPARSE, ZERO, VMFS...
    file: str
    sectors: int = 0  # how many 512-byte sectors of the disk it holds
    offset: int = 0  # a FLAT extent's first sector in its file
    access: str = "RW"  # RW, RDONLY or NOACCESS: qemu maps RW extents only


@dataclass(frozen=True)
class DiskHeader:
    format: str  # qemu driver name, or the name of a format we refuse (qed, vdi, luks, cowd)
    subformat: str = ""  # e.g. streamOptimized, dynamic
    virtual_size: int | None = None
    references: tuple[str, ...] = ()  # other files this image would make qemu open
    extents: tuple[Extent, ...] = ()  # extents a VMDK text descriptor names
    hidden_state: tuple[str, ...] = ()  # guest state inspection would not read (internal snapshots, a log to replay)
    own_name: str | None = None  # the file a sparse VMDK's embedded descriptor says it is


_TYPECODE = {4: next(c for c in "IL" if array(c).itemsize == 4), 8: "Q"}


class Image:
    """A disk file seen through ``read(offset, n)``, with checks that name what overruns it."""

    def __init__(self, read: Reader, size: int):
        self.read, self.size = read, size
        self._lower_left = LOWER_TABLE_BUDGET

    def need(self, what: str, offset: int, length: int) -> None:
        """A header or table: all of it must lie inside the file."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise CorruptDisk(f"{what} at byte {offset} ({length} bytes) beyond end of file ({self.size} bytes)")

    def holds(self, what: str, offset: int, length: int) -> None:
        """Data of a known length: all of it must lie inside the file, or the file was cut short."""
        if offset + length > self.size:
            raise CorruptDisk(f"disk truncated: {what} at byte {offset} ({length} bytes) beyond end of file ({self.size} bytes)")

    def starts(self, what: str, offset: int) -> None:
        """Data: it must start inside the file (a compressed cluster may end anywhere)."""
        if offset >= self.size:
            raise CorruptDisk(f"disk truncated: {what} at byte {offset} beyond end of file ({self.size} bytes)")

    def table(self, what: str, offset: int, length: int, width: int) -> Iterator[tuple[int, bytes]]:
        """A top-level table, all of it inside the file, in chunks: (index of the chunk's first entry, its bytes)."""
        self.need(what, offset, length)
        step = _CHUNK // width * width
        for start in range(0, length, step):
            data = self.read(offset + start, min(step, length - start))
            yield start // width, data[: len(data) // width * width]

    def lower(self, what: str, offset: int, length: int) -> bytes:
        """A table a top-level entry names, read within the image's budget of second-level tables."""
        self._lower_left -= max(length, SECTOR)
        if self._lower_left < 0:
            raise CorruptDisk(f"{what} at byte {offset}: the image's second-level tables run past {LOWER_TABLE_BUDGET // 1024**2} MiB, "
                              "this tool's budget for checking one image, so it cannot be verified")  # fmt: skip
        return self.read(offset, length)


def entries(data: bytes, width: int, big_endian: bool) -> array:
    """The unsigned ``width``-byte entries of a table's bytes."""
    table = array(_TYPECODE[width])
    table.frombytes(data[: len(data) // width * width])
    if big_endian != (sys.byteorder == "big"):
        table.byteswap()
    return table


def _and(a: bytes, b: bytes) -> bytes:
    """Byte-wise AND of two equal-length strings, at C speed (through two big integers)."""
    return (int.from_bytes(a, "big") & int.from_bytes(b, "big")).to_bytes(len(a), "big")


_NONZERO_TO_FF = bytes([0] + [0xFF] * 255)
_MASKS: dict[int, bytes] = {}


def _masked(column: bytes, mask: int) -> bytes:
    if mask == 0xFF:
        return column
    if mask not in _MASKS:
        _MASKS[mask] = bytes(b & mask for b in range(256))
    return column.translate(_MASKS[mask])


def largest(data: bytes, width: int, big_endian: bool, mask: int, where: tuple[int, int] | None = None, keep: bool = True) -> int:
    """The largest ``entry & mask`` over a table's entries, or 0; with ``where=(m, v)``, over the entries with
    ``entry & m == v`` only (``keep=False``: the others only).

    A top-level table may hold millions of entries: each byte column of the table
    is masked with ``bytes.translate`` and selected with one big-integer AND, so
    no Python code runs per entry.
    """
    order = "big" if big_endian else "little"
    count = len(data) // width
    if not count:
        return 0
    columns = [data[j : count * width : width] for j in range(width)]
    selected = None
    if where is not None:
        select_mask, select_value = (v.to_bytes(width, order) for v in where)
        differs = 0
        for column, m, v in zip(columns, select_mask, select_value):
            differs |= int.from_bytes(_masked(column, m), "big") ^ int.from_bytes(bytes([v]) * count, "big")
        marks = differs.to_bytes(count, "big").translate(_NONZERO_TO_FF)  # 0xFF where the entry is not selected
        selected = marks if not keep else marks.translate(bytes(255 - b for b in range(256)))
    masked = bytearray(count * width)
    for j, (column, m) in enumerate(zip(columns, mask.to_bytes(width, order))):
        column = _masked(column, m)
        masked[j::width] = _and(column, selected) if selected is not None else column
    return max(entries(bytes(masked), width, big_endian))


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        for _ in range(8):
            n = (n >> 1) ^ (0x82F63B78 if n & 1 else 0)
        table.append(n)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum of VHDX headers and region tables."""
    crc, table = 0xFFFFFFFF, _CRC32C
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
