"""Disks must hold what their headers promise, and nothing a scan would leave unread (issue #12).

Every image here is made by qemu-img from a small raw file written by the
test, then cut short or patched the way a damaged or hostile upload would be.
Images qemu-img writes, in every subformat, must pass; each damaged variant
must be refused before qemu sees it, with the reason in the evidence.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import uuid

import pytest
from test_descriptor_checks import REGISTRY
from test_ingest import fresh, qemu_img, refused

from certify.bundle.diskformat import sniff_bytes
from certify.bundle.ingest import ingest
from certify.errors import InputRejected
from certify.model import Facts, Severity
from certify.runner import run_checks

MIB = 1024 * 1024
# Where the raw disk holds data: a grain, cluster or block at each, the last one in a partial final cluster.
DATA_AT = (0, 70_000, MIB, 3 * MIB + 4096, 6 * MIB + 512)
RAW_SIZE = 6 * MIB + 3 * 512

SUBFORMATS = {
    "qcow2-v2.qcow2": ["-O", "qcow2", "-o", "compat=0.10"],
    "qcow2-v3.qcow2": ["-O", "qcow2", "-o", "compat=1.1"],
    "qcow2-compressed.qcow2": ["-O", "qcow2", "-c"],
    "qcow2-extended-l2.qcow2": ["-O", "qcow2", "-o", "extended_l2=on,cluster_size=16k"],
    "qcow2-512-byte-clusters.qcow2": ["-O", "qcow2", "-o", "cluster_size=512"],
    "qcow2-2m-clusters.qcow2": ["-O", "qcow2", "-o", "cluster_size=2M"],
    "monolithic-sparse.vmdk": ["-O", "vmdk", "-o", "subformat=monolithicSparse"],
    "zeroed-grain.vmdk": ["-O", "vmdk", "-o", "subformat=monolithicSparse,zeroed_grain=on"],
    "stream.vmdk": ["-O", "vmdk", "-o", "subformat=streamOptimized"],
    "monolithic-flat.vmdk": ["-O", "vmdk", "-o", "subformat=monolithicFlat"],
    "split-sparse.vmdk": ["-O", "vmdk", "-o", "subformat=twoGbMaxExtentSparse"],
    "split-flat.vmdk": ["-O", "vmdk", "-o", "subformat=twoGbMaxExtentFlat"],
    "dynamic.vhd": ["-O", "vpc", "-o", "subformat=dynamic"],
    "fixed.vhd": ["-O", "vpc", "-o", "subformat=fixed"],
    "dynamic-force-size.vhd": ["-O", "vpc", "-o", "subformat=dynamic,force_size=on"],
    "fixed-force-size.vhd": ["-O", "vpc", "-o", "subformat=fixed,force_size=on"],
    "dynamic.vhdx": ["-O", "vhdx", "-o", "subformat=dynamic"],
    "fixed.vhdx": ["-O", "vhdx", "-o", "subformat=fixed"],
}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """name -> path of each qemu-img subformat, each in its own folder (split VMDKs bring their extents)."""
    root = tmp_path_factory.mktemp("images")
    raw = root / "base.raw"
    with open(raw, "wb") as f:
        f.truncate(RAW_SIZE)
        for i, offset in enumerate(DATA_AT):
            f.seek(offset)
            f.write(bytes([i + 1]) * 512 + os.urandom(3584)[: min(3584, RAW_SIZE - offset - 512)])
    made = {}
    for name, args in SUBFORMATS.items():
        folder = root / name.replace(".", "-")
        folder.mkdir()
        qemu_img("convert", "-q", "-f", "raw", *args, str(raw), str(folder / name))
        made[name] = folder / name
    return made


def copy_of(images, name, tmp_path, patch=None, cut=None, to=None):
    """A copy of a made image (and its extents) in a fresh folder, patched or cut short."""
    folder = tmp_path / f"copy-{len(list(tmp_path.iterdir()))}"
    shutil.copytree(images[name].parent, folder)
    path = folder / name
    data = bytearray(path.read_bytes())
    if patch:
        patch(data)
    if cut is not None:
        del data[cut:]
    path.write_bytes(bytes(data))
    if to:
        path = path.rename(folder / to)
    return path


def scan(path, tmp_path):
    return ingest(str(path), fresh(tmp_path))


def qemu_info(path, fmt: str) -> dict | None:
    """What qemu makes of an image (the oracle the checks must agree with), or None when it cannot open it."""
    done = subprocess.run(["qemu-img", "info", "--output=json", "-f", fmt, str(path)], capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else None


@pytest.mark.parametrize("name", SUBFORMATS)
def test_every_subformat_qemu_img_writes_passes(images, tmp_path, name):
    bundle = scan(images[name], tmp_path)
    assert bundle.disk_issues == [] and [d.name for d in bundle.disks] == [name]
    virtual_size = bundle.disk_facts[0]["virtual_size"]
    assert virtual_size == qemu_info(images[name], bundle.disks[0].format)["virtual-size"]  # the size qemu gives it
    assert virtual_size == RAW_SIZE or name in ("dynamic.vhd", "fixed.vhd")  # a VHD made by 'qemu' rounds up to its geometry
    if not name.startswith("split-") and name != "monolithic-flat.vmdk":
        assert sniff_bytes(images[name].read_bytes()).format in ("qcow2", "vmdk", "vpc", "vhdx")


def test_a_zero_byte_disk_is_said_to_be_empty(tmp_path):
    for name in ("a.vmdk", "b.qcow2", "c.img", "d.vhd", "e.vhdx"):
        (tmp_path / name).write_bytes(b"")
        refused(scan(tmp_path / name, tmp_path), "disk-corrupt", f"^disk '{name}': the disk file is empty$")


# --- cut short -----------------------------------------------------------------------

TRUNCATED = [
    ("qcow2-v3.qcow2", 0.5, r"disk truncated: qcow2 data cluster at byte \d+ beyond end of file"),
    ("qcow2-v2.qcow2", 0.2, r"qcow2 refcount block 0 at byte 131072 \(65536 bytes\) beyond end of file"),
    ("qcow2-compressed.qcow2", 0.9, r"qcow2 L2 table 0 at byte \d+ \(65536 bytes\) beyond end of file"),
    ("qcow2-512-byte-clusters.qcow2", 0.5, r"qcow2 L2 table \d+ at byte \d+ \(512 bytes\) beyond end of file"),
    ("qcow2-v3.qcow2", 0.01, r"qcow2 refcount table at byte 65536 \(65536 bytes\) beyond end of file \(\d+ bytes\)"),
    ("qcow2-v3.qcow2", 116, r"disk truncated: qcow2 header extensions run past the end of the file \(116 bytes\)"),
    ("qcow2-v3.qcow2", 80, r"disk truncated: the qcow2 v3 header is incomplete"),
    ("monolithic-sparse.vmdk", 0.9, r"disk truncated: grain at byte \d+ \(65536 bytes\) beyond end of file"),
    ("monolithic-sparse.vmdk", 2048, r"embedded VMDK descriptor at byte 512 \(10240 bytes\) beyond end of file \(2048 bytes\)"),
    ("stream.vmdk", 0.5, r"disk truncated: grain at byte \d+ beyond end of file"),
    ("stream.vmdk", 0.2, r"disk truncated: grains start at byte 65536, beyond end of file"),
    ("dynamic.vhd", 0.5, r"disk truncated: the VHD has no footer at its end \(\d+ bytes\), only the copy at byte 0"),
    ("dynamic.vhdx", 0.9, r"disk truncated: VHDX payload block 0 at byte 8388608 \(8388608 bytes\) beyond end of file"),
    ("fixed.vhdx", 0.5, r"disk truncated: VHDX payload block 0 at byte \d+ \(8388608 bytes\) beyond end of file"),
    ("dynamic.vhdx", 0.2, r"VHDX metadata region at byte 3145728 \(1048576 bytes\) beyond end of file"),
    ("dynamic.vhdx", 200_000, r"VHDX headers at byte 0 \(262144 bytes\) beyond end of file \(200000 bytes\)"),
    # Cut inside a sector: qemu reads the file rounded up to a sector, zeros added, so its end is not where it was.
    ("monolithic-sparse.vmdk", 70_000, r"the sparse VMDK is 70000 bytes, not a whole number of 512-byte sectors \(cut short\?\): "
                                       r"qemu reads it as 70144 bytes, zeros added"),
    ("stream.vmdk", 4_000, r"the sparse VMDK is 4000 bytes, not a whole number of 512-byte sectors"),
    ("dynamic.vhd", 70_000, r"the VHD is 70000 bytes, not a whole number of 512-byte sectors \(cut short\?\): qemu reads its "
                            r"last sector, zeros added, from byte 69632, not from 69488"),
]


@pytest.mark.parametrize("name, cut, match", TRUNCATED, ids=[f"{n}-{c}" for n, c, _ in TRUNCATED])
def test_a_disk_cut_short_is_refused_with_the_reason(images, tmp_path, name, cut, match):
    size = images[name].stat().st_size
    path = copy_of(images, name, tmp_path, cut=cut if isinstance(cut, int) else int(size * cut) // 512 * 512)
    refused(scan(path, tmp_path), "disk-corrupt", f"^disk '{name}': {match}")


def test_a_damaged_disk_of_another_format_than_declared_is_a_mismatch_first(images, tmp_path):
    path = copy_of(images, "qcow2-v3.qcow2", tmp_path, cut=images["qcow2-v3.qcow2"].stat().st_size // 2, to="disk.img")
    refused(scan(path, tmp_path), "disk-format-mismatch", "^disk 'disk.img': declared raw but its bytes are qcow2$")


def test_a_fixed_vhd_cut_short_has_lost_its_footer_and_says_so(images, tmp_path):
    path = copy_of(images, "fixed.vhd", tmp_path, cut=images["fixed.vhd"].stat().st_size - 1)
    refused(scan(path, tmp_path), "disk-format-mismatch", "declared vpc but its bytes are raw .*was it cut short")


def _put(offset: int, fmt: str, value: int):
    def patch(data: bytearray):
        struct.pack_into(fmt, data, offset, value)

    return patch


def _vmdk_gd_at(sector: int):
    return _put(56, "<Q", sector)


PATCHED = [
    ("monolithic-sparse.vmdk", _vmdk_gd_at(4000), r"grain directory at byte 2048000 \(4 bytes\) beyond end of file \(\d+ bytes\)"),
    ("monolithic-sparse.vmdk", _put(48, "<Q", 5000), r"redundant grain directory at byte 2560000 \(4 bytes\) beyond end of file"),
    ("monolithic-sparse.vmdk", _put(20, "<Q", 0), r"VMDK grain size of 0 sectors is outside 1-2097152"),
    ("monolithic-sparse.vmdk", _put(44, "<I", 4096), r"VMDK grain tables of 4096 entries are outside 1-512"),
    ("monolithic-sparse.vmdk", _put(64, "<Q", 10**6), r"disk truncated: grains start at byte 512000000, beyond end of file"),
    ("qcow2-v3.qcow2", _put(40, ">Q", 64 * MIB), r"qcow2 L1 table at byte 67108864 \(8 bytes\) beyond end of file"),
    ("qcow2-v3.qcow2", _put(40, ">Q", 0x30200), r"qcow2 L1 table at byte 197120 is not aligned to a cluster"),
    ("qcow2-v3.qcow2", _put(36, ">I", 0), r"qcow2 L1 table of 0 entries cannot map the \d+ bytes the header declares"),
    ("qcow2-v3.qcow2", _put(48, ">Q", 64 * MIB), r"qcow2 refcount table at byte 67108864 \(65536 bytes\) beyond end of file"),
    ("qcow2-v3.qcow2", _put(56, ">I", 0), r"qcow2 image has no refcount table"),
    ("qcow2-v3.qcow2", lambda d: (_put(60, ">I", 1)(d), _put(64, ">Q", 64 * MIB)(d)),
     r"qcow2 snapshot table at byte 67108864 \(40 bytes\) beyond end of file"),
    ("dynamic.vhd", lambda d: d.__setitem__(slice(28, 32), b"evil"), r"VHD footer: checksum 0x[0-9a-f]{8} does not match its bytes \(0x[0-9a-f]{8}\)$"),
    ("stream.vmdk", lambda d: d.__setitem__(slice(len(d) - 512, len(d) - 496), b"\x01" * 16),
     r"disk truncated: the stream does not end with an end-of-stream marker"),
]


@pytest.mark.parametrize("name, patch, match", PATCHED, ids=[f"{n}-{i}" for i, (n, _p, _m) in enumerate(PATCHED)])
def test_a_header_promising_what_the_file_lacks_is_refused(images, tmp_path, name, patch, match):
    refused(scan(copy_of(images, name, tmp_path, patch), tmp_path), "disk-corrupt", f"^disk '{name}': {match}")


def _vhd_checksum(block: bytearray, at: int) -> None:
    block[at : at + 4] = bytes(4)
    block[at : at + 4] = struct.pack(">I", ~sum(block) & 0xFFFFFFFF)


def test_vhd_footers_and_block_table_are_held_to_the_file(images, tmp_path):
    def end_footer_differs(data: bytearray):  # only the copy at the end says 8 GiB: two readers, two disks
        footer = bytearray(data[-512:])
        struct.pack_into(">Q", footer, 48, 8 << 30)
        _vhd_checksum(footer, 64)
        data[-512:] = footer

    path = copy_of(images, "dynamic.vhd", tmp_path, end_footer_differs)
    refused(scan(path, tmp_path), "disk-corrupt", "the VHD footer at the end and its copy at byte 0 disagree")

    def block_table_outside(data: bytearray):
        dynamic = bytearray(data[512:1536])
        struct.pack_into(">Q", dynamic, 16, 64 * MIB)
        _vhd_checksum(dynamic, 36)
        data[512:1536] = dynamic

    path = copy_of(images, "dynamic.vhd", tmp_path, block_table_outside)
    refused(scan(path, tmp_path), "disk-corrupt", r"VHD block table at byte 67108864 \(16 bytes\) beyond end of file")

    def block_past_footer(data: bytearray):
        table = struct.unpack_from(">Q", data, 512 + 16)[0]
        struct.pack_into(">I", data, table, (len(data) - 512) // 512)

    path = copy_of(images, "dynamic.vhd", tmp_path, block_past_footer)
    refused(scan(path, tmp_path), "disk-corrupt", r"disk truncated: VHD block 0 at byte \d+ \(2097664 bytes\) runs past the footer")


# --- VHDX ----------------------------------------------------------------------------


def _crc32c(data: bytes) -> int:
    """Bit by bit, independent of the table-driven one under test."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _vhdx_headers(change):
    """Apply ``change(header)`` to both VHDX headers and seal them again."""

    def patch(data: bytearray):
        for offset in (64 * 1024, 128 * 1024):
            header = bytearray(data[offset : offset + 4096])
            change(header)
            header[4:8] = bytes(4)
            header[4:8] = struct.pack("<I", _crc32c(bytes(header)))
            data[offset : offset + 4096] = header

    return patch


def test_vhdx_headers_and_region_table_are_checked(images, tmp_path):
    def break_both(data: bytearray):
        data[64 * 1024 + 100] ^= 0xFF
        data[128 * 1024 + 100] ^= 0xFF

    refused(scan(copy_of(images, "dynamic.vhdx", tmp_path, break_both), tmp_path), "disk-corrupt", "VHDX has no valid header")
    one_left = copy_of(images, "dynamic.vhdx", tmp_path, lambda d: d.__setitem__(64 * 1024 + 100, d[64 * 1024 + 100] ^ 0xFF))
    assert scan(one_left, tmp_path).disks  # the other copy is valid, as qemu and Hyper-V read it
    path = copy_of(images, "dynamic.vhdx", tmp_path, lambda d: d.__setitem__(192 * 1024 + 40, d[192 * 1024 + 40] ^ 1))
    refused(scan(path, tmp_path), "disk-corrupt", "VHDX region table checksum does not match")
    path = copy_of(images, "dynamic.vhdx", tmp_path, _vhdx_headers(lambda h: struct.pack_into("<Q", h, 72, 2 * MIB)))
    refused(scan(path, tmp_path), "disk-corrupt", r"VHDX block table region at byte 2097152 \(1048576 bytes\) overlaps the VHDX log")


def test_a_vhdx_with_a_log_to_replay_is_hidden_state(images, tmp_path):
    guid = uuid.uuid4().bytes_le

    def pending(data: bytearray):
        _vhdx_headers(lambda h: h.__setitem__(slice(48, 64), guid))(data)
        log = struct.unpack_from("<Q", data, 64 * 1024 + 72)[0]
        data[log : log + 4] = b"loge"
        data[log + 32 : log + 48] = guid

    refused(scan(copy_of(images, "dynamic.vhdx", tmp_path, pending), tmp_path), "disk-hidden-state",
            "VHDX log holding writes not yet applied")  # fmt: skip
    # A log GUID with no entry of it in the log: nothing to replay.
    assert scan(copy_of(images, "dynamic.vhdx", tmp_path, _vhdx_headers(lambda h: h.__setitem__(slice(48, 64), guid))), tmp_path).disks


def test_a_vhdx_claiming_more_than_the_quota_is_held_to_it(images, tmp_path):
    from certify.bundle.ingest import Limits

    with pytest.raises(InputRejected, match=r"claims 6292992 bytes, over the 1048576-byte quota"):
        ingest(str(images["dynamic.vhdx"]), fresh(tmp_path), Limits(max_virtual_bytes=MIB))


# --- qcow2 internal snapshots ----------------------------------------------------------


def test_qcow2_internal_snapshots_are_refused_and_fail_the_scan(images, tmp_path):
    path = copy_of(images, "qcow2-v3.qcow2", tmp_path)
    qemu_img("snapshot", "-c", "before-cleanup", str(path))
    qemu_img("snapshot", "-c", "second", str(path))
    bundle = scan(path, tmp_path)
    refused(bundle, "disk-hidden-state", r"^disk 'qcow2-v3.qcow2' holds guest state this scan would not read: "
                                         r"2 internal qcow2 snapshots \('before-cleanup', 'second'\), which `qemu-img snapshot -a` would restore$")  # fmt: skip
    findings, _ = run_checks([REGISTRY.checks["disk-hidden-state"]], Facts(values={"bundle": bundle.facts()}))
    assert [(f.check_id, f.status.value, f.severity) for f in findings] == [("disk-hidden-state", "fail", Severity.CRITICAL)]
    qemu_img("snapshot", "-d", "before-cleanup", str(path))
    qemu_img("snapshot", "-d", "second", str(path))
    assert scan(path, tmp_path).disks  # deleted snapshots leave nothing behind


# --- VMDK: a sparse file is its own single extent --------------------------------------


def _embedded(change):
    """Rewrite the descriptor text a sparse VMDK carries at sector 1."""

    def patch(data: bytearray):
        end = data.index(b"\0", 512)
        text = change(data[512:end].decode()).encode()
        data[512 : 512 + max(len(text), end - 512)] = text.ljust(end - 512, b"\0")

    return patch


def _extent_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("RW "))


@pytest.mark.parametrize("name", ["monolithic-sparse.vmdk", "stream.vmdk"])
@pytest.mark.parametrize(
    "change, match",
    [(lambda t: t.replace(_extent_line(t), _extent_line(t) + '\nRW 2048 FLAT "/etc/shadow" 0'), r"lists SPARSE '[a-z-]+\.vmdk', FLAT '/etc/shadow'"),
     (lambda t: t.replace(_extent_line(t), _extent_line(t) + '\nRDONLY 2048 FLAT "disk-flat.vmdk" 0'), "lists SPARSE .*, FLAT 'disk-flat.vmdk'"),
     (lambda t: t.replace(_extent_line(t), 'RW 12291 SPARSE "/etc/shadow"'), "lists SPARSE '/etc/shadow'"),
     (lambda t: t.replace(_extent_line(t), 'RW 12291 FLAT "x.vmdk" 0'), "lists FLAT 'x.vmdk'"),
     (lambda t: t.replace(_extent_line(t), 'RW 12291 SPARSE "nbd:host:1"'), "lists SPARSE 'nbd:host:1'")],
    ids=["host-flat-extent", "read-only-extent", "absolute-self", "flat-self", "protocol"],
)
def test_an_embedded_descriptor_naming_anything_but_itself_is_an_external_reference(images, tmp_path, name, change, match):
    bundle = scan(copy_of(images, name, tmp_path, _embedded(change)), tmp_path)
    refused(bundle, "disk-external-reference", f"embedded descriptor {match}; a sparse VMDK must be its own single extent")


def test_the_sole_extent_may_carry_any_plain_name_but_another_files(images, tmp_path):
    renamed = copy_of(images, "stream.vmdk", tmp_path, to="vm-disk1.vmdk")  # exports keep the name they were made under
    assert scan(renamed, tmp_path).disks
    folder = renamed.parent
    shutil.copy(images["monolithic-sparse.vmdk"], folder / "stream.vmdk")  # now the name it gives is another disk's
    (folder / "vm.vmx").write_text('scsi0:0.fileName = "vm-disk1.vmdk"\n')
    refused(scan(folder / "vm.vmx", tmp_path), "disk-external-reference",
            "^disk 'vm-disk1.vmdk': its embedded descriptor names 'stream.vmdk', another file of the bundle, as its extent$")  # fmt: skip


def test_sparse_and_split_vmdk_capacities_must_agree(images, tmp_path):
    path = copy_of(images, "monolithic-sparse.vmdk", tmp_path, _embedded(lambda t: t.replace("RW 12291 ", "RW 99999 ")))
    refused(scan(path, tmp_path), "disk-corrupt", "the embedded VMDK descriptor gives its extent 99999 sectors, the header 12291")
    path = copy_of(images, "split-sparse.vmdk", tmp_path)
    path.write_text(path.read_text().replace("RW 12291 ", "RW 12290 "))
    refused(scan(path, tmp_path), "disk-corrupt", r"extent 'split-sparse-s001.vmdk' holds 6292992 bytes, the descriptor says 6292480")
    path = copy_of(images, "split-flat.vmdk", tmp_path)
    extent = path.parent / "split-flat-f001.vmdk"
    extent.write_bytes(extent.read_bytes()[: -4096])
    refused(scan(path, tmp_path), "disk-corrupt", r"extent 'split-flat-f001.vmdk': disk truncated: the descriptor maps sectors 0 to 12291 of it, and it holds 12283")
    extent.write_bytes(b"")
    refused(scan(path, tmp_path), "disk-corrupt", r"^disk 'split-flat.vmdk': extent 'split-flat-f001.vmdk': the disk file is empty$")


def test_a_stream_with_its_grain_directory_in_a_footer(images, tmp_path):
    """VMware's layout: the header says "at the end", a footer after the grains says where."""
    made = images["stream.vmdk"].read_bytes()
    header = bytearray(made[:512])

    def with_footer(capacity=None):
        footer_header = bytearray(header)
        if capacity is not None:
            struct.pack_into("<Q", footer_header, 12, capacity)
        head = bytearray(made)
        struct.pack_into("<Q", head, 56, 0xFFFFFFFFFFFFFFFF)
        return bytes(head) + struct.pack("<QII", 1, 0, 3).ljust(512, b"\0") + bytes(footer_header) + bytes(512)

    path = tmp_path / "footer.vmdk"
    path.write_bytes(with_footer())
    assert scan(path, tmp_path).disks
    path.write_bytes(with_footer()[:-1024])
    refused(scan(path, tmp_path), "disk-corrupt", "disk truncated: a streamOptimized VMDK keeps its grain directory in a footer, but the file has no footer")
    path.write_bytes(with_footer(capacity=1 << 40))  # the footer, which qemu reads, claims 512 TiB
    refused(scan(path, tmp_path), "disk-corrupt", f"the VMDK footer declares {1 << 40} sectors, the header 12291")


# --- where qemu reads: a file rounded up to a sector (review of issue #12) ---------------

GD_AT_END = 0xFFFFFFFFFFFFFFFF


def _sparse_header(block: bytes, **fields) -> bytes:
    """A VMDK sparse header with some fields changed: capacity (sectors) or gd (sector of the grain directory)."""
    header = bytearray(block)
    for name, value in fields.items():
        struct.pack_into("<Q", header, {"capacity": 12, "gd": 56}[name], value)
    return bytes(header)


def _footer(header: bytes) -> bytes:
    """The three sectors a stream ends with: footer marker, footer header, end-of-stream marker."""
    return struct.pack("<QII", 0, 0, 3).ljust(512, b"\0") + header + bytes(512)


def test_a_sparse_vmdk_that_is_not_whole_sectors_could_carry_two_footers_and_is_refused(images, tmp_path):
    """qemu reads the footer 1536 bytes before the end rounded up to a sector: a file of 512n + 256 bytes can hold
    one footer there and another 1536 bytes before its true end, each valid for a reader that looks there."""
    made = bytearray(images["monolithic-sparse.vmdk"].read_bytes())
    header = bytes(made[:512])
    made[:512] = _sparse_header(header, gd=GD_AT_END)
    size = len(made) + 1536 + 256
    data = bytearray(made) + bytearray(size - len(made))
    ours = size - 1536
    data[ours : ours + 1536] = _footer(header)
    theirs = -(-size // 512) * 512 - 1536  # 17 TiB, its grain directory at 1 TiB
    data[theirs : theirs + 1536] = _footer(_sparse_header(header, capacity=17 * 1024**4 // 512, gd=(1 << 40) // 512))
    path = tmp_path / "two-footers.vmdk"
    path.write_bytes(bytes(data[:size]))  # the rest of the last sector is zeros only as qemu reads it
    assert qemu_info(path, "vmdk")["virtual-size"] == 17 * 1024**4  # qemu read the second footer
    refused(scan(path, tmp_path), "disk-corrupt", rf"^disk 'two-footers.vmdk': the sparse VMDK is {size} bytes, not a whole "
                                                  r"number of 512-byte sectors \(cut short\?\): qemu reads it as \d+ bytes")


def _vhd_footer_patch(creator: bytes, geometry: tuple[int, int, int], size: int | None = None, at: tuple[int, ...] = (-512,)):
    """Set a VHD footer's creator application, CHS geometry and (optionally) current size, at each place it is kept."""

    def patch(data: bytearray):
        for offset in at:
            footer = bytearray(data[offset:][:512])
            footer[28:32] = creator
            struct.pack_into(">HBB", footer, 56, *geometry)
            if size is not None:
                struct.pack_into(">QQ", footer, 40, size, size)
            _vhd_checksum(footer, 64)
            data[offset : offset + 512 or None] = footer

    return patch


@pytest.mark.parametrize("name, at", [("fixed-force-size.vhd", (-512,)), ("dynamic-force-size.vhd", (0, -512))])
def test_a_vhd_qemu_sizes_by_its_geometry_must_have_the_size_hyperv_reads(images, tmp_path, name, at):
    """qemu sizes a disk made by Virtual PC ('vpc ') or old qemu by its CHS geometry, Hyper-V and Azure by its current
    size: the data between the two would be certified and never read."""
    geometry = (96, 4, 17)  # 6528 sectors: 3342336 bytes, less than the 6292992 the current size says
    path = copy_of(images, name, tmp_path, _vhd_footer_patch(b"vpc ", geometry, at=at))
    assert qemu_info(path, "vpc")["virtual-size"] == 96 * 4 * 17 * 512
    refused(scan(path, tmp_path), "disk-corrupt", r"VHD footer: qemu sizes a VHD made by 'vpc ' from its geometry \(C/H/S 96/4/17: "
                                                  r"3342336 bytes\), Hyper-V and Azure from its current size \(6292992 bytes\)")
    # Made by Hyper-V: qemu, too, reads the current size, whatever the geometry says.
    hyperv = copy_of(images, name, tmp_path, _vhd_footer_patch(b"win ", geometry, at=at))
    assert qemu_info(hyperv, "vpc")["virtual-size"] == RAW_SIZE
    assert scan(hyperv, tmp_path).disk_facts[0]["virtual_size"] == RAW_SIZE


def test_a_fixed_vhd_with_a_footer_copy_at_byte_0_is_refused(images, tmp_path):
    """qemu reads a VHD that starts with a footer as dynamic, whatever its type: this one it cannot open, and its
    1 TiB current size was never held to the 8.5 KiB file."""
    made = images["fixed.vhd"].read_bytes()
    footer = bytearray(made[-512:])
    struct.pack_into(">QQ", footer, 40, 1 << 40, 1 << 40)
    struct.pack_into(">HBB", footer, 56, 65535, 16, 255)  # the largest geometry: every reader takes the current size
    _vhd_checksum(footer, 64)
    path = tmp_path / "front.vhd"
    path.write_bytes(bytes(footer) + made[512:8192] + bytes(footer))
    assert qemu_info(path, "vpc") is None
    refused(scan(path, tmp_path), "disk-corrupt", "^disk 'front.vhd': a fixed VHD with a copy of its footer at byte 0: qemu reads "
                                                  "a VHD that starts with a footer as dynamic, and cannot open this one$")


# --- top-level tables whole, the tables they name within a budget -----------------------


def _qcow2_with_a_long_l1_table(bad_entry: int) -> bytes:
    """512-byte clusters, qemu's largest refcount table (8 MiB) and a 16 MiB L1 table: 3 Mi top-level entries, all
    zero but one, which names an L2 table at 1 TiB."""
    cluster_bits, cluster = 9, 512
    refcount_clusters, l1_entries = 8 * MIB // cluster, 2 * MIB
    refcount_table, l1_table = cluster, cluster + 8 * MIB
    data = bytearray(l1_table + l1_entries * 8)
    struct.pack_into(">4sIQIIQIIQQIIQQQQII", data, 0, b"QFI\xfb", 3, 0, 0, cluster_bits, l1_entries * cluster * (cluster // 8), 0,
                     l1_entries, l1_table, refcount_table, refcount_clusters, 0, 0, 0, 0, 0, 4, 104)  # fmt: skip
    struct.pack_into(">Q", data, l1_table + 8 * bad_entry, (1 << 40) | (1 << 63))
    return bytes(data)


def _sparse_vmdk_with_a_long_directory(capacity: int, grain_tables: int, gtes: int, first_table: int, bad_entry: int | None) -> bytes:
    """A monolithicSparse VMDK of 1-sector grains whose grain directory names ``grain_tables`` grain tables of ``gtes``
    entries, one sector apart from ``first_table`` on (they overlap: all zeros, nothing allocated), and, at
    ``bad_entry``, a grain table at 1 TiB."""
    directory = 21
    tables_end = first_table + grain_tables + gtes * 4 // 512
    data = bytearray(max(directory * 512 + -(-capacity // gtes) * 4, tables_end * 512))
    struct.pack_into("<4sIIQQQQIQQQB4sH", data, 0, b"KDMV", 1, 0, capacity, 1, 1, 20, gtes, 0, directory, directory, 0, b"\n \r\n", 0)
    text = f'# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="monolithicSparse"\nRW {capacity} SPARSE "d.vmdk"\n'
    data[512 : 512 + len(text)] = text.encode()
    if grain_tables:
        data[directory * 512 : directory * 512 + grain_tables * 4] = struct.pack(f"<{grain_tables}I", *range(first_table, first_table + grain_tables))
    if bad_entry is not None:
        struct.pack_into("<I", data, directory * 512 + 4 * bad_entry, 1 << 31)
    return bytes(data)


@pytest.mark.parametrize("bad_entry", [100, 1_500_000])
def test_every_l1_entry_is_checked_however_long_the_tables_before_it(tmp_path, bad_entry):
    """Before, the first 2 Mi top-level entries were all a walk read: the 1M-entry refcount table spent half of it."""
    path = tmp_path / "long-l1.qcow2"
    path.write_bytes(_qcow2_with_a_long_l1_table(bad_entry))
    refused(scan(path, tmp_path), "disk-corrupt", rf"^disk 'long-l1.qcow2': qcow2 L2 table {bad_entry} at byte 1099511627776 "
                                                  r"\(512 bytes\) beyond end of file \(25166336 bytes\)$")


@pytest.mark.parametrize("bad_entry", [100, 3_000_000])
def test_every_grain_directory_entry_is_checked_however_long_the_directory(tmp_path, bad_entry):
    path = tmp_path / "d.vmdk"
    path.write_bytes(_sparse_vmdk_with_a_long_directory(4 * MIB, 0, 1, 0, bad_entry))
    refused(scan(path, tmp_path), "disk-corrupt", rf"^disk 'd.vmdk': grain table {bad_entry} of the grain directory at byte "
                                                  r"1099511627776 \(4 bytes\) beyond end of file")


def test_grain_tables_past_the_budget_make_an_image_unverifiable(tmp_path):
    """256 MiB of second-level tables are read per image (every grain table of a fully allocated 4 TiB VMDK); one
    more table and the image is refused rather than certified with a table nobody read."""
    from certify.bundle.diskimage import LOWER_TABLE_BUDGET

    tables = LOWER_TABLE_BUDGET // 2048  # 512 entries of 4 bytes each
    path = tmp_path / "d.vmdk"
    path.write_bytes(_sparse_vmdk_with_a_long_directory(tables * 512, tables, 512, 2 * 1024, None))
    assert scan(path, tmp_path).disks  # exactly the budget: every table read
    path.write_bytes(_sparse_vmdk_with_a_long_directory((tables + 1) * 512, tables + 1, 512, 2 * 1024, None))
    refused(scan(path, tmp_path), "disk-corrupt", rf"^disk 'd.vmdk': grain table {tables} at byte \d+: the image's second-level "
                                                  r"tables run past 256 MiB, this tool's budget for checking one image, so it "
                                                  r"cannot be verified$")


# --- qcow2 bitmaps: a directory qemu reads on every open -------------------------------


def _bitmaps_extension(data: bytearray) -> int:
    """Offset of the bitmaps header extension's data in a qcow2 v3 image."""
    offset = struct.unpack_from(">I", data, 100)[0]
    while True:
        kind, length = struct.unpack_from(">II", data, offset)
        assert kind, "no bitmaps extension"
        if kind == 0x23852875:
            return offset + 8
        offset += 8 + (length + 7) // 8 * 8


def _bitmap_patch(change):
    def patch(data: bytearray):
        extension = _bitmaps_extension(data)
        count, _, size, directory = struct.unpack_from(">IIQQ", data, extension)
        change(data, extension, directory)

    return patch


@pytest.fixture
def with_bitmap(images, tmp_path):
    path = copy_of(images, "qcow2-v3.qcow2", tmp_path, to="bitmap.qcow2")
    qemu_img("bitmap", "--add", str(path), "backup-0")
    return path


@pytest.mark.parametrize(
    "change, match",
    [(lambda d, ext, _dir: struct.pack_into(">Q", d, ext + 16, 1 << 40), r"qcow2 bitmap directory at byte 1099511627776 \(32 bytes\) beyond end of file"),
     (lambda d, ext, _dir: struct.pack_into(">Q", d, ext + 16, 4096 + 8), r"qcow2 bitmap directory at byte 4104 is not aligned to a cluster"),
     (lambda d, ext, _dir: struct.pack_into(">I", d, ext, 2), r"qcow2 bitmap directory of 32 bytes ends inside entry 1 of 2"),
     (lambda d, _ext, dr: struct.pack_into(">Q", d, dr, 1 << 40), r"qcow2 bitmap 'backup-0' table at byte 1099511627776 \(8 bytes\) beyond end of file"),
     (lambda d, _ext, dr: struct.pack_into(">B", d, dr + 16, 2), r"qcow2 bitmap 'backup-0' is not a dirty-tracking bitmap qemu loads \(type 2"),
     (lambda d, _ext, dr: struct.pack_into(">Q", d, struct.unpack_from(">Q", d, dr)[0], 1 << 40),
      r"qcow2 bitmap 'backup-0' cluster 0 at byte 1099511627776 \(65536 bytes\) beyond end of file"),
     (lambda d, _ext, dr: struct.pack_into(">Q", d, struct.unpack_from(">Q", d, dr)[0], 2), r"qcow2 bitmap 'backup-0' table entry 0 \(0x2\) sets reserved bits")],
    ids=["directory-beyond-eof", "directory-unaligned", "more-bitmaps-than-entries", "table-beyond-eof", "not-dirty-tracking",
         "cluster-beyond-eof", "reserved-bits"],
)  # fmt: skip
def test_the_qcow2_bitmap_directory_and_tables_are_held_to_the_file(with_bitmap, tmp_path, change, match):
    assert scan(with_bitmap, tmp_path).disks  # as qemu-img made it
    data = bytearray(with_bitmap.read_bytes())
    _bitmap_patch(change)(data)
    with_bitmap.write_bytes(bytes(data))
    refused(scan(with_bitmap, tmp_path), "disk-corrupt", f"^disk 'bitmap.qcow2': {match}")


def test_a_qcow2_bitmap_beyond_the_file_is_what_qemu_fails_on(with_bitmap):
    data = bytearray(with_bitmap.read_bytes())
    _bitmap_patch(lambda d, ext, _dir: struct.pack_into(">Q", d, ext + 16, 1 << 40))(data)
    with_bitmap.write_bytes(bytes(data))
    assert qemu_info(with_bitmap, "qcow2") is None  # qemu parses that directory even to say what the image is


# --- VMDK text descriptors, as qemu reads them ------------------------------------------

HEAD = '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n'
EXTENT_A, EXTENT_B = 'RW 2048 FLAT "a-flat.vmdk" 0\n', 'RW 2048 FLAT "b-flat.vmdk" 0\n'


def _descriptor_bundle(tmp_path, text: str | bytes) -> os.PathLike:
    """A descriptor disk.vmdk beside two 1 MiB flat extents, each marked, in a fresh folder."""
    folder = tmp_path / f"d{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    for name in ("a-flat.vmdk", "b-flat.vmdk"):
        (folder / name).write_bytes(name.encode().ljust(MIB, b"\0"))
    (folder / "disk.vmdk").write_bytes(text.encode() if isinstance(text, str) else text)
    return folder / "disk.vmdk"


REFUSED_DESCRIPTORS = [
    ("unicode-digits", HEAD + EXTENT_A + 'RW \u0662\u0660\u0664\u0668 FLAT "b-flat.vmdk" 0\n', MIB, "disk-corrupt",
     r"VMDK descriptor line 7 is an extent line qemu would not read as VMware does \(access RW, RDONLY or NOACCESS, ASCII digits, "
     r"an upper-case type\): 'RW \u0662\u0660\u0664\u0668 FLAT"),
    ("read-only", HEAD + EXTENT_A + EXTENT_B.replace("RW", "RDONLY"), MIB, "disk-external-reference",
     r"refers to other files \(RDONLY extent 'b-flat.vmdk', which qemu does not map \(it maps RW extents only\)\)"),
    ("no-access", HEAD + EXTENT_A + EXTENT_B.replace("RW", "NOACCESS"), MIB, "disk-external-reference", "NOACCESS extent 'b-flat.vmdk'"),
    ("lower-case-type", HEAD + EXTENT_A + 'RW 2048 sparse "b-flat.vmdk"\n', MIB, "disk-corrupt", "line 7 is an extent line qemu would not read"),
    ("lower-case-access", HEAD + EXTENT_A + EXTENT_B.replace("RW", "rw"), MIB, "disk-corrupt", "line 7 is an extent line qemu would not read"),
    ("zero-extent", HEAD + "RW 2048 ZERO\n" + EXTENT_A, MIB, "disk-corrupt",
     "a ZERO extent of 2048 sectors, which qemu leaves out of the disk"),
    ("blank-line-before", HEAD + "\n" + EXTENT_A, 2 * MIB, "disk-corrupt",
     r"VMDK descriptor line 7 \(FLAT extent\) follows a blank line: qemu reads the extent from the blank line too, and maps it twice"),
    ("spaces-line-before", HEAD + " \t \n" + EXTENT_A, 2 * MIB, "disk-corrupt", r"line 7 \(FLAT extent\) follows a blank line"),
    ("create-type-twice", HEAD + 'createType="twoGbMaxExtentFlat"\n' + EXTENT_A, MIB, "disk-corrupt",
     "VMDK descriptor key 'createType' on line 6 repeats 'createType' of line 5: readers disagree on which one counts"),
    ("create-type-upper-case", HEAD + 'CREATETYPE="twoGbMaxExtentFlat"\n' + EXTENT_A, MIB, "disk-corrupt",
     "key 'CREATETYPE' on line 6 repeats 'createType' of line 5"),
    ("create-type-spelled-otherwise", HEAD.replace("createType", "CreateType") + EXTENT_A, None, "disk-corrupt",
     "key 'CreateType' is read as 'createType' by VMware, and not at all by qemu"),
    ("create-type-in-a-comment", HEAD.replace("version=1", '# createType="fullDevice"\nversion=1') + EXTENT_A, None, "disk-corrupt",
     r"qemu reads createType 'fullDevice' from the first 'createType' in the VMDK descriptor \(a comment or another line counts\), "
     "its createType line says 'monolithicFlat'"),
    ("text-after-a-nul", HEAD + EXTENT_A + "\0" + EXTENT_B, MIB, "disk-corrupt", r"a non-zero byte at offset \d+, after the NUL at \d+"),
    ("long-file-name", HEAD + f'RW 2048 FLAT "{"x" * 600}" 0\n', None, "disk-corrupt", r"a file name of 600 bytes \(qemu reads 1-511\)"),
    ("no-sectors", HEAD + EXTENT_A + EXTENT_B.replace("2048", "0"), MIB, "disk-corrupt", "0 sectors at offset 0 is out of range"),
    ("flat-without-offset", HEAD + 'RW 2048 FLAT "a-flat.vmdk"\n', None, "disk-corrupt",
     "qemu refuses a FLAT extent without a sector offset"),
]


@pytest.mark.parametrize("text, qemu_size, check, match", [r[1:] for r in REFUSED_DESCRIPTORS], ids=[r[0] for r in REFUSED_DESCRIPTORS])
def test_a_descriptor_qemu_would_read_otherwise_than_vmware_is_refused(tmp_path, text, qemu_size, check, match):
    """``qemu_size`` is what qemu makes of each (None: it cannot open it): never the disk this tool would have checked."""
    path = _descriptor_bundle(tmp_path, text)
    info = qemu_info(path, "vmdk")
    assert (info and info["virtual-size"]) == qemu_size
    refused(scan(path, tmp_path), check, match)


def test_a_unicode_space_before_an_extent_is_a_line_no_reader_understands(tmp_path):
    path = _descriptor_bundle(tmp_path, HEAD + EXTENT_A + "\u0085" + EXTENT_B)  # NEL: Python's strip() takes it, qemu does not
    assert qemu_info(path, "vmdk")["virtual-size"] == MIB
    with pytest.raises(InputRejected, match="VMDK descriptor line not understood"):
        scan(path, tmp_path)


ACCEPTED_DESCRIPTORS = [
    ("two-extents", HEAD + EXTENT_A + EXTENT_B),
    ("crlf-tabs-and-indents", (HEAD + "  " + EXTENT_A.replace(" 2048 ", "\t2048\t") + "\t" + EXTENT_B).replace("\n", "\r\n")),
    ("as-qemu-img-writes", HEAD + "\n# Extent description\n" + EXTENT_A + '\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = "4"\n'),
    ("nul-padded", (HEAD + EXTENT_A).encode() + bytes(3000)),
]


@pytest.mark.parametrize("text", [r[1] for r in ACCEPTED_DESCRIPTORS], ids=[r[0] for r in ACCEPTED_DESCRIPTORS])
def test_a_descriptor_is_as_large_as_qemu_makes_it(tmp_path, text):
    path = _descriptor_bundle(tmp_path, text)
    bundle = scan(path, tmp_path)
    assert bundle.disk_issues == [] and bundle.disk_facts[0]["virtual_size"] == qemu_info(path, "vmdk")["virtual-size"]


def test_a_descriptor_is_held_to_the_quota_and_the_ovf_capacity(images, tmp_path):
    """The sum of its extents is a descriptor's size: --max-virtual-size and ovf:capacity apply to it as to any disk."""
    from test_ingest import ovf_for

    from certify.bundle.files import Limits

    with pytest.raises(InputRejected, match=r"^disk 'split-sparse.vmdk' claims 6292992 bytes, over the 1048576-byte quota$"):
        ingest(str(images["split-sparse.vmdk"]), fresh(tmp_path), Limits(max_virtual_bytes=MIB))
    path = copy_of(images, "split-flat.vmdk", tmp_path)
    (path.parent / "vm.ovf").write_bytes(ovf_for("split-flat.vmdk", capacity=MIB))
    refused(ingest(str(path.parent / "vm.ovf"), fresh(tmp_path)), "disk-format-mismatch",
            "^disk 'split-flat.vmdk' holds 6292992 bytes, more than the 1048576 the OVF declares$")  # fmt: skip
