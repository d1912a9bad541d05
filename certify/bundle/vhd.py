"""VHD (qemu block/vpc.c) and VHDX (MS-VHDX, qemu block/vhdx.c) headers, checked against the file.

VHD: a whole number of sectors (qemu looks for the footer in the file's
last sector, rounded up); the footer's checksum; a size every reader agrees
on (qemu sizes a disk by its CHS geometry or its current size, depending on
the creator application and its version; Hyper-V and Azure by the current
size); a dynamic disk's copy of the footer at byte 0 and the footer at the
end must agree, and a fixed disk must have no such copy (qemu would read it
as dynamic); the dynamic header and the whole block table must lie inside
the file, and every block (bitmap and data) before the footer, which is
qemu's own truncation test. VHDX: the current header (valid checksum,
highest sequence number), the region table, the metadata items, the block
table and the payload blocks it maps must lie inside the file without
overlapping; a log holding entries for the current log GUID is guest state
not yet applied (qemu refuses to open it read-only), reported as hidden.
"""

from __future__ import annotations

import struct
import uuid

from certify.bundle.diskimage import SECTOR, VHDX, VPC, CorruptDisk, DiskHeader, Image, crc32c, entries, largest
from certify.errors import ParseError

VHD_COOKIE = b"conectix"
VHDX_MAGIC = b"vhdxfile"
_UNALLOCATED = 0xFFFFFFFF
_MIB = 1024 * 1024
_VHD_TYPES = {2: "fixed", 3: "dynamic", 4: "differencing"}
# block/vpc.c: qemu sizes a disk by its CHS geometry unless the creator application is one of these (up to 9.2;
# from 10.0, unless it is 'vpc ' or 'qemu'), or the geometry is the largest there is; Hyper-V and Azure always
# by the footer's current size.
_CURRENT_SIZE_CREATORS = (b"win ", b"qem2", b"d2v ", b"CTXS", b"tap\0")
_MAX_GEOMETRY = 65535 * 16 * 255  # sectors
_MAX_BLOCKS = 8 * 1024 * 1024  # block table entries read: a 2 TiB disk (VHD's largest) in 256 KiB blocks


def _vhd_checksum(what: str, block: bytes, at: int) -> None:
    stored = struct.unpack_from(">I", block, at)[0]
    computed = ~(sum(block) - sum(block[at : at + 4])) & 0xFFFFFFFF
    if stored != computed:
        raise CorruptDisk(f"{what}: checksum {stored:#010x} does not match its bytes ({computed:#010x})")


def read_vhd(img: Image, footer: bytes, at_front: bool) -> DiskHeader:
    """A VHD whose footer was found at byte 0 (dynamic or differencing: a copy) or only at the end (fixed)."""
    if img.size % SECTOR:
        raise CorruptDisk(f"the VHD is {img.size} bytes, not a whole number of 512-byte sectors (cut short?): qemu reads "
                          f"its last sector, zeros added, from byte {img.size // SECTOR * SECTOR}, not from {img.size - 512}")  # fmt: skip
    disk_type = struct.unpack_from(">I", footer, 60)[0]
    if disk_type not in _VHD_TYPES:
        raise ParseError(f"VHD disk type {disk_type} is not fixed (2), dynamic (3) or differencing (4)")
    header = DiskHeader(format=VPC, subformat=_VHD_TYPES[disk_type], virtual_size=struct.unpack_from(">Q", footer, 48)[0])
    if disk_type == 4:
        return DiskHeader(format=VPC, subformat=header.subformat, virtual_size=header.virtual_size,
                          references=("parent disk (differencing VHD)",))  # fmt: skip
    _vhd_checksum("VHD footer", footer, 64)
    _agreed_size("VHD footer", footer)
    if not at_front:
        if disk_type != 2:  # qemu reads it as fixed, Hyper-V as dynamic: two different disks
            raise CorruptDisk("a dynamic VHD has no copy of its footer at byte 0")
        if header.virtual_size > img.size - 512:
            raise CorruptDisk(f"disk truncated: a fixed VHD of {header.virtual_size} bytes needs {header.virtual_size + 512}, "
                              f"the file has {img.size}")  # fmt: skip
        return header
    if disk_type == 2:
        raise CorruptDisk("a fixed VHD with a copy of its footer at byte 0: qemu reads a VHD that starts with a footer as "
                          "dynamic, and cannot open this one")  # fmt: skip
    end = img.read(img.size - 512, 512) if img.size >= 1024 else b""
    if end[:8] != VHD_COOKIE:
        raise CorruptDisk(f"disk truncated: the VHD has no footer at its end ({img.size} bytes), only the copy at byte 0")
    _vhd_checksum("VHD footer at the end", end, 64)
    if end[16:24] != footer[16:24] or end[40:64] != footer[40:64]:
        raise CorruptDisk("the VHD footer at the end and its copy at byte 0 disagree (sizes, geometry or disk type)")
    _agreed_size("VHD footer at the end", end)
    _vhd_blocks(img, struct.unpack_from(">Q", footer, 16)[0], header.virtual_size)
    return header


def _agreed_size(what: str, footer: bytes) -> None:
    """The footer's current size must be the size qemu gives the disk, whichever way it computes it."""
    current = struct.unpack_from(">Q", footer, 48)[0]
    cylinders, heads, sectors = struct.unpack_from(">HBB", footer, 56)
    geometry = cylinders * heads * sectors
    if current % SECTOR:
        raise CorruptDisk(f"{what}: a current size of {current} bytes is not a whole number of 512-byte sectors")
    creator = footer[28:32]
    if geometry * SECTOR != current and geometry != _MAX_GEOMETRY and creator not in _CURRENT_SIZE_CREATORS:
        raise CorruptDisk(f"{what}: qemu sizes a VHD made by {creator.decode('latin-1')!r} from its geometry (C/H/S "
                          f"{cylinders}/{heads}/{sectors}: {geometry * SECTOR} bytes), Hyper-V and Azure from its current size "
                          f"({current} bytes): two readers, two disks")  # fmt: skip


def _vhd_blocks(img: Image, offset: int, virtual_size: int) -> None:
    img.need("VHD dynamic disk header", offset, 1024)
    dynamic = img.read(offset, 1024)
    if dynamic[:8] != b"cxsparse":
        raise CorruptDisk(f"VHD dynamic disk header at byte {offset} has no 'cxsparse' cookie")
    _vhd_checksum("VHD dynamic disk header", dynamic, 36)
    table, count, block = struct.unpack_from(">QxxxxII", dynamic, 16)
    if block < 512 or block & (block - 1):
        raise CorruptDisk(f"VHD block size {block} is not a power of two of at least 512")
    if count * block < virtual_size:
        raise CorruptDisk(f"VHD block table of {count} blocks of {block} bytes cannot map the {virtual_size} bytes the footer declares")
    if count > _MAX_BLOCKS:
        raise CorruptDisk(f"VHD block table of {count} entries: over the {_MAX_BLOCKS} this tool reads to check an image "
                          "(a 2 TiB disk in 256 KiB blocks), so it cannot be verified")  # fmt: skip
    bitmap = (block // (8 * 512) + 511) & ~511
    for first, data in img.table("VHD block table", table, count * 4, 4):  # qemu reads every entry, so does this
        bat = entries(data, 4, big_endian=True)
        if bat.count(_UNALLOCATED) == len(bat):
            continue
        last = largest(data, 4, True, _UNALLOCATED, where=(_UNALLOCATED, _UNALLOCATED), keep=False)
        if last * 512 + bitmap + block > img.size - 512:
            raise CorruptDisk(f"disk truncated: VHD block {first + bat.index(last)} at byte {last * 512} ({bitmap + block} bytes) "
                              f"runs past the footer at byte {img.size - 512}")  # fmt: skip


# --- VHDX ------------------------------------------------------------------------------

_HEADERS = (64 * 1024, 128 * 1024)
_REGION_TABLE = 192 * 1024
_BAT_REGION = uuid.UUID("2DC27766-F623-4200-9D64-115E9BFD4A08").bytes_le
_METADATA_REGION = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E").bytes_le
_FILE_PARAMETERS = uuid.UUID("CAA16737-FA36-4D43-B3B6-33F0AA44E76B").bytes_le
_VIRTUAL_SIZE = uuid.UUID("2FA54224-CD1B-4876-B211-5DBED83BF4B8").bytes_le
_LOGICAL_SECTOR = uuid.UUID("8141BF1D-A96F-4709-BA47-F233A8FAAB5F").bytes_le
_PARENT_LOCATOR = uuid.UUID("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C").bytes_le
_PAGE_83 = uuid.UUID("BECA12AB-B2E6-4523-93EF-C309E000C746").bytes_le
_PHYSICAL_SECTOR = uuid.UUID("CDA348C7-445D-4471-9CC9-E9885251C556").bytes_le
_KNOWN_ITEMS = {_FILE_PARAMETERS, _VIRTUAL_SIZE, _LOGICAL_SECTOR, _PARENT_LOCATOR, _PAGE_83, _PHYSICAL_SECTOR}
_MAX_METADATA = _MIB  # qemu reads at most 1 MiB of metadata items
_LOG_SCANNED = 16 * _MIB  # a longer log is not scanned entry by entry: it is refused as hidden state
_PRESENT = (6, 7)  # BAT states: payload fully / partially present (6 is also "sector bitmap present")
_PRESENT_STATE = bytes(1 if b & 7 in _PRESENT else 0 for b in range(256))  # an entry's first (little-endian) byte -> present?


def read_vhdx(img: Image) -> DiskHeader:
    current = _vhdx_header(img)
    log_guid, log_version, _version, log_length, log_offset = struct.unpack_from("<16sHHIQ", current, 48)
    if log_version != 0:
        raise ParseError(f"VHDX log version {log_version} is not 0")
    if log_length % _MIB or log_offset % _MIB or (log_length and log_offset < _MIB):
        raise CorruptDisk(f"VHDX log at byte {log_offset} ({log_length} bytes) is not placed on 1 MiB boundaries after the headers")
    regions = {"header section": (0, _MIB)}
    if log_length:
        img.need("VHDX log", log_offset, log_length)
        regions["log"] = (log_offset, log_length)
    bat_region, metadata_region = _region_table(img, regions)
    meta = img.read(metadata_region[0], min(metadata_region[1], _MAX_METADATA))
    items = _metadata_items(meta)
    refs = []
    if _PARENT_LOCATOR in items:
        refs.append("parent locator")
    params = _item(meta, items, _FILE_PARAMETERS, 8)
    if params and struct.unpack_from("<I", params, 4)[0] & 2:
        refs.append("parent disk (HasParent)")
    if refs:
        return DiskHeader(format=VHDX, references=tuple(refs))
    if not params:
        raise CorruptDisk("VHDX metadata has no file parameters")
    block, flags = struct.unpack_from("<II", params)
    virtual = struct.unpack_from("<Q", _item(meta, items, _VIRTUAL_SIZE, 8, required=True))[0]
    sector = struct.unpack_from("<I", _item(meta, items, _LOGICAL_SECTOR, 4, required=True))[0]
    if not _MIB <= block <= 256 * _MIB or block & (block - 1):
        raise CorruptDisk(f"VHDX block size {block} is not a power of two from 1 MiB to 256 MiB")
    if sector not in (512, 4096):
        raise CorruptDisk(f"VHDX logical sector size {sector} is not 512 or 4096")
    _payload_blocks(img, bat_region, regions, virtual, block, sector)
    hidden = _pending_log(img, log_guid, log_offset, log_length)
    return DiskHeader(format=VHDX, subformat="fixed" if flags & 1 else "dynamic", virtual_size=virtual, hidden_state=hidden)


def _vhdx_header(img: Image) -> bytes:
    """The header qemu and Hyper-V use: a valid one with the highest sequence number."""
    img.need("VHDX headers", 0, _REGION_TABLE + 64 * 1024)
    valid = []
    for offset in _HEADERS:
        block = img.read(offset, 4096)
        if block[:4] == b"head" and struct.unpack_from("<H", block, 66)[0] == 1 and _crc_ok(block):
            valid.append(block)
    if not valid:
        raise CorruptDisk("VHDX has no valid header (neither copy has its signature, version 1 and checksum)")
    valid.sort(key=lambda b: struct.unpack_from("<Q", b, 8)[0])
    if len(valid) == 2 and valid[0][8:16] == valid[1][8:16] and valid[0] != valid[1]:
        raise CorruptDisk("VHDX has two different headers of one sequence number")
    return valid[-1]


def _crc_ok(block: bytes) -> bool:
    return struct.unpack_from("<I", block, 4)[0] == crc32c(block[:4] + bytes(4) + block[8:])


def _region_table(img: Image, regions: dict[str, tuple[int, int]]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(BAT region, metadata region), each inside the file and clear of every other region."""
    table = img.read(_REGION_TABLE, 64 * 1024)
    if table[:4] != b"regi":
        raise CorruptDisk("VHDX region table is missing")
    if not _crc_ok(table):
        raise CorruptDisk("VHDX region table checksum does not match")
    count = struct.unpack_from("<I", table, 8)[0]
    if count > 2047:
        raise CorruptDisk(f"VHDX region table claims {count} entries (at most 2047)")
    found: dict[bytes, tuple[int, int]] = {}
    for i in range(count):
        guid = table[16 + 32 * i : 32 + 32 * i]
        offset, length, required = struct.unpack_from("<QII", table, 32 + 32 * i)
        name = {_BAT_REGION: "block table", _METADATA_REGION: "metadata"}.get(guid)
        if name is None:
            if required & 1:
                raise ParseError(f"VHDX requires region {guid.hex()}, which this tool does not know")
            name = f"region {guid.hex()}"
        if guid in found:
            raise CorruptDisk(f"VHDX region table lists the {name} region twice")
        if offset % _MIB or length % _MIB or offset < _MIB:
            raise CorruptDisk(f"VHDX {name} region at byte {offset} ({length} bytes) is not on 1 MiB boundaries after the headers")
        img.need(f"VHDX {name} region", offset, length)
        _clear_of(f"VHDX {name} region", offset, length, regions)
        regions[name] = (offset, length)
        found[guid] = (offset, length)
    if _BAT_REGION not in found or _METADATA_REGION not in found:
        raise CorruptDisk("VHDX has no block table or no metadata region")
    return found[_BAT_REGION], found[_METADATA_REGION]


def _clear_of(what: str, offset: int, length: int, regions: dict[str, tuple[int, int]]) -> None:
    for name, (start, size) in regions.items():
        if offset < start + size and start < offset + length:
            raise CorruptDisk(f"{what} at byte {offset} ({length} bytes) overlaps the VHDX {name}")


def _metadata_items(meta: bytes) -> dict[bytes, tuple[int, int]]:
    if meta[:8] != b"metadata":
        raise CorruptDisk("VHDX metadata table is missing")
    count = struct.unpack_from("<H", meta, 10)[0]
    if count > 2047:
        raise CorruptDisk(f"VHDX metadata table claims {count} items (at most 2047)")
    items: dict[bytes, tuple[int, int]] = {}
    for i in range(count):
        entry = meta[32 + 32 * i : 64 + 32 * i]
        if len(entry) < 32:
            raise CorruptDisk("disk truncated: the VHDX metadata table is cut short")
        guid, (offset, length, flags) = entry[:16], struct.unpack_from("<III", entry, 16)
        if guid in items:
            raise CorruptDisk(f"VHDX metadata lists item {guid.hex()} twice")
        if guid not in _KNOWN_ITEMS and flags & 4:
            raise ParseError(f"VHDX requires metadata item {guid.hex()}, which this tool does not know")
        items[guid] = (offset, length)
    return items


def _item(meta: bytes, items: dict[bytes, tuple[int, int]], guid: bytes, size: int, required: bool = False) -> bytes:
    """A metadata item's first ``size`` bytes, which must lie inside the metadata region read."""
    if guid not in items:
        if required:
            raise CorruptDisk(f"VHDX metadata lacks required item {guid.hex()}")
        return b""
    offset, length = items[guid]
    if length < size or offset < 64 * 1024 or offset + size > len(meta):
        raise CorruptDisk(f"VHDX metadata item {guid.hex()} at {offset} ({length} bytes) lies outside the metadata region")
    return meta[offset : offset + size]


def _payload_blocks(img: Image, bat_region: tuple[int, int], regions: dict[str, tuple[int, int]],
                    virtual: int, block: int, sector: int) -> None:  # fmt: skip
    """Every block the BAT says is present lies inside the file, clear of headers, log and regions."""
    if virtual % sector or virtual > 64 * 1024**4:
        raise CorruptDisk(f"VHDX virtual size {virtual} is not a multiple of its {sector}-byte sectors up to 64 TiB")
    chunk = (1 << 23) * sector // block  # payload entries between two sector-bitmap entries
    blocks = -(-virtual // block)
    entries_needed = blocks + (blocks - 1) // chunk if blocks else 0
    if entries_needed * 8 > bat_region[1]:
        raise CorruptDisk(f"VHDX block table region holds {bat_region[1] // 8} entries, {entries_needed} needed")
    spans: dict[int, tuple[int, str]] = {}  # each place a block lies, judged once however many entries name it
    for first, data in img.table("VHDX block table", bat_region[0], entries_needed * 8, 8):  # every entry, whatever their number
        present = data[0::8].translate(_PRESENT_STATE)  # 1 where an entry's state says its block is in the file
        at = present.find(1)
        bat = entries(data, 8, big_endian=False) if at != -1 else None
        while at != -1:
            i, entry = first + at, bat[at]
            offset = entry & ~0xFFFFF
            if offset not in spans:
                length, what = (_MIB, f"sector bitmap {i}") if i % (chunk + 1) == chunk else (block, f"payload block {i}")
                if offset + length > img.size:  # before it is kept: only blocks inside the file are, a bounded number
                    raise CorruptDisk(f"disk truncated: VHDX {what} at byte {offset} ({length} bytes) beyond end of file ({img.size} bytes)")
                spans[offset] = (length, what)
            at = present.find(1, at + 1)
    for offset, (length, what) in spans.items():
        _clear_of(f"VHDX {what}", offset, length, regions)


def _pending_log(img: Image, log_guid: bytes, offset: int, length: int) -> tuple[str, ...]:
    """A log entry carrying the header's log GUID is a write Hyper-V replays on open and a read-only reader never sees."""
    if log_guid == bytes(16) or not length:
        return ()
    if length > _LOG_SCANNED:
        return (f"a VHDX log of {length} bytes that may hold writes not yet applied (too long to scan)",)
    for entry in range(offset, offset + length, 4096):
        head = img.read(entry, 48)
        if head[:4] == b"loge" and head[32:48] == log_guid:
            return ("a VHDX log holding writes not yet applied to the disk (it was not closed cleanly); "
                    "`qemu-img check -r all` replays it",)  # fmt: skip
    return ()
