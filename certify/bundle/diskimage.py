"""What every disk-format reader shares: the header summary, bounded reads, and the corruption error.

A header promises tables (qcow2 L1 and refcount tables, a VMDK grain
directory, a VHD block table, VHDX regions) and, through them, data. A
truncated or damaged upload promises bytes the file does not have: qemu would
then read offsets an attacker chose and the report would blame the guest ("no
operating system found"). The readers (``qcow2``, ``vmdk``, ``vhd``) check
each promise through ``Image``, which reads via the same ``read(offset, n)``
callback as the sniffer and walks at most ``WALK_ENTRIES`` table entries per
image, whatever the header claims: a 100 GB upload costs a few megabytes of
reads, and a header claiming more tables than that has only the first of them
checked (every table's own extent is always checked).
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from certify.errors import ParseError

Reader = Callable[[int, int], bytes]  # read(offset, length) -> at most length bytes

# qemu's names for the formats libguestfs can be told about.
RAW, QCOW2, VMDK, VPC, VHDX = "raw", "qcow2", "vmdk", "vpc", "vhdx"

WALK_ENTRIES = 2 * 1024 * 1024  # table entries read per image: 16 MiB at most, ~0.2 s of Python


class CorruptDisk(ParseError):
    """The file does not hold what its header promises (truncated, or tables outside it)."""

    format: str | None = None  # what its header says it is, once known


@dataclass(frozen=True)
class Extent:
    type: str  # FLAT, SPARSE, ZERO, VMFS...
    file: str
    sectors: int = 0  # how many 512-byte sectors of the disk it holds
    offset: int = 0  # a FLAT extent's first sector in its file


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
        self._walk_left = WALK_ENTRIES

    @property
    def walk_left(self) -> int:
        """Table entries the walks of this image may still read."""
        return self._walk_left

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

    def entries(self, offset: int, count: int, width: int, big_endian: bool) -> array:
        """Unsigned ``width``-byte entries of a table inside the file, as many as the walk budget still allows."""
        count = max(0, min(count, self._walk_left))
        self._walk_left -= count
        data = self.read(offset, count * width) if count else b""
        table = array(_TYPECODE[width])
        table.frombytes(data[: len(data) // width * width])
        if big_endian != (sys.byteorder == "big"):
            table.byteswap()
        return table


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
