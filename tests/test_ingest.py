"""Ingestion of every artifact kind, and refusal of hostile bundles (no guest launch)."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile

import pytest

from certify import sample
from certify.bundle.ingest import IngestPolicy, Limits, identify, ingest
from certify.bundle.ova import check_member_name
from certify.errors import InputRejected, UsageError


def refused(bundle, check: str, match: str) -> None:
    """The disk was left unopened, for the reason a check will report."""
    import re

    assert bundle.disks == []
    assert [i.check for i in bundle.disk_issues] == [check], bundle.disk_issues
    assert re.search(match, bundle.disk_issues[0].evidence), bundle.disk_issues[0].evidence


def fresh(tmp_path) -> str:
    """A new, empty work directory, as every scan gets."""
    import tempfile

    return tempfile.mkdtemp(dir=tmp_path, prefix="work-")


def qemu_img(*args):
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def raw_disk(path, size=4 * 1024 * 1024):
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def make_tar(path, members, fmt=tarfile.USTAR_FORMAT):
    """members: (TarInfo-or-name, bytes-or-None)."""
    with tarfile.open(path, "w", format=fmt) as tar:
        for info, data in members:
            if isinstance(info, str):
                info = tarfile.TarInfo(info)
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def ovf_for(disk_name, size=None, capacity=4 * 1024 * 1024, extra=None):
    return sample.ovf_descriptor("vm", disk_name, size, capacity, extra or {}).encode()


@pytest.fixture
def vmdk_bytes(tmp_path):
    raw = raw_disk(tmp_path / "d.raw")
    sample.to_vmdk(str(raw), str(tmp_path / "d.vmdk"))
    return (tmp_path / "d.vmdk").read_bytes()


def test_ova_is_extracted_hashed_and_its_disk_verified(tmp_path, vmdk_bytes):
    ova = make_tar(tmp_path / "a.ova", [("vm.ovf", ovf_for("vm-disk1.vmdk")), ("vm-disk1.vmdk", vmdk_bytes)])
    work = tmp_path / "work"
    work.mkdir()
    bundle = ingest(str(ova), str(work))
    assert bundle.kind == "ova"
    assert bundle.sha256 == hashlib.sha256(ova.read_bytes()).hexdigest()
    assert [(d.name, d.format) for d in bundle.disks] == [("vm-disk1.vmdk", "vmdk")]
    assert bundle.disks[0].path.startswith(str(work))
    assert bundle.disk_facts[0]["sha256"] == hashlib.sha256(vmdk_bytes).hexdigest()
    assert bundle.disk_facts[0]["subformat"] == "streamOptimized"
    assert bundle.descriptor.kind == "ovf" and bundle.notes == []


def test_ovf_not_first_is_noted(tmp_path, vmdk_bytes):
    ova = make_tar(tmp_path / "a.ova", [("vm-disk1.vmdk", vmdk_bytes), ("vm.ovf", ovf_for("vm-disk1.vmdk"))])
    (tmp_path / "w").mkdir()
    assert "not the first member" in ingest(str(ova), str(tmp_path / "w")).notes[0]


def _rejected(tmp_path, members, match, **kw):
    ova = make_tar(tmp_path / "evil.ova", members, **kw)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(InputRejected, match=match):
        ingest(str(ova), str(work))
    return work


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    "members, match",
    [
        ([("../escape", b"x")], "climbs out"),
        ([("/etc/passwd", b"x")], "absolute path"),
        ([("a\\..\\b", b"x")], "backslash"),
        ([("vm.ovf", b"x"), ("VM.OVF", b"y")], "appears twice"),
        ([(_link("vm.ovf", "/etc/shadow"), None)], "symbolic link"),
        ([(_link("disk.vmdk", "vm.ovf", tarfile.LNKTYPE), None)], "hard link"),
        ([(_link("dev", "", tarfile.CHRTYPE), None)], "character device"),
        ([(_link("fifo", "", tarfile.FIFOTYPE), None)], "FIFO"),
        ([("a/./b", b"x")], "normal form"),
        ([("readme.txt", b"x")], r"exactly one \.ovf"),
        ([("a.ovf", b"<x/>"), ("b.ovf", b"<x/>")], r"exactly one \.ovf"),
    ],
)
def test_hostile_ova_members_are_refused(tmp_path, members, match):
    work = _rejected(tmp_path, members, match)
    assert not (tmp_path / "escape").exists()
    assert not any(p.is_symlink() for p in work.rglob("*"))


def test_pax_rename_cannot_escape(tmp_path):
    info = tarfile.TarInfo("innocent.ovf")
    info.pax_headers = {"path": "../../pax-escape"}
    _rejected(tmp_path, [(info, b"x")], "climbs out", fmt=tarfile.PAX_FORMAT)
    assert not (tmp_path / "pax-escape").exists()


def test_member_limits(tmp_path):
    ova = make_tar(tmp_path / "many.ova", [(f"f{i}", b"x") for i in range(5)])
    for work, limits, match in [("w1", Limits(max_members=3), "more than 3 members"), ("w2", Limits(max_total_bytes=2), "size limit")]:
        (tmp_path / work).mkdir()
        with pytest.raises(InputRejected, match=match):
            ingest(str(ova), str(tmp_path / work), limits)


def test_compressed_and_garbage_ovas_are_refused(tmp_path):
    gz = tmp_path / "a.ova"
    with tarfile.open(gz, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("vm.ovf"))
    (tmp_path / "w").mkdir()
    with pytest.raises(InputRejected, match="compressed archive"):
        ingest(str(gz), str(tmp_path / "w"))
    junk = tmp_path / "b.ova"
    junk.write_bytes(os.urandom(4096))
    (tmp_path / "w2").mkdir()
    with pytest.raises(InputRejected, match="not a valid tar"):
        ingest(str(junk), str(tmp_path / "w2"))


def test_disk_whose_bytes_disagree_with_the_ovf_is_refused(tmp_path):
    qemu_img("create", "-q", "-f", "qcow2", str(tmp_path / "q.qcow2"), "4M")
    ova = make_tar(tmp_path / "a.ova", [("vm.ovf", ovf_for("d.vmdk")), ("d.vmdk", (tmp_path / "q.qcow2").read_bytes())])
    (tmp_path / "w").mkdir()
    refused(ingest(str(ova), str(tmp_path / "w")), "disk-format-mismatch", "declared vmdk but its bytes are qcow2")


def test_ovf_disk_missing_from_ova_is_refused(tmp_path):
    ova = make_tar(tmp_path / "a.ova", [("vm.ovf", ovf_for("gone.vmdk"))])
    (tmp_path / "w").mkdir()
    refused(ingest(str(ova), str(tmp_path / "w")), "dangling-reference", "not in the bundle")


def test_ovf_href_outside_bundle_is_left_to_the_check_and_never_opened(tmp_path):
    ova = make_tar(tmp_path / "a.ova", [("vm.ovf", ovf_for("/etc/shadow"))])
    (tmp_path / "w").mkdir()
    bundle = ingest(str(ova), str(tmp_path / "w"))
    assert bundle.disks == []
    assert [r.value for r in bundle.descriptor.storage_refs] == ["/etc/shadow"]


def test_ovf_directory_and_symlinked_disk(tmp_path, vmdk_bytes):
    bundle_dir = tmp_path / "bundle"
    bundle_dir.mkdir()
    (bundle_dir / "vm.ovf").write_bytes(ovf_for("vm-disk1.vmdk"))
    (bundle_dir / "vm-disk1.vmdk").write_bytes(vmdk_bytes)
    bundle = ingest(str(bundle_dir), fresh(tmp_path))
    assert bundle.kind == "ovf" and [d.name for d in bundle.disks] == ["vm-disk1.vmdk"]
    (bundle_dir / "vm-disk1.vmdk").unlink()
    (tmp_path / "elsewhere.vmdk").write_bytes(vmdk_bytes)
    (bundle_dir / "vm-disk1.vmdk").symlink_to(tmp_path / "elsewhere.vmdk")
    with pytest.raises(InputRejected, match="^disk 'vm-disk1.vmdk': refused: it is a symbolic link$"):
        ingest(str(bundle_dir), fresh(tmp_path))


def test_vmx_bundle_with_split_vmdk(tmp_path):
    raw = raw_disk(tmp_path / "d.raw")
    bundle_dir = tmp_path / "vm"
    bundle_dir.mkdir()
    qemu_img("convert", "-q", "-f", "raw", "-O", "vmdk", "-o", "subformat=monolithicFlat", str(raw), str(bundle_dir / "disk.vmdk"))
    (bundle_dir / "vm.vmx").write_text('scsi0:0.fileName = "disk.vmdk"\nide1:0.deviceType = "cdrom-image"\nide1:0.fileName = "tools.iso"\n')
    bundle = ingest(str(bundle_dir / "vm.vmx"), fresh(tmp_path))
    assert bundle.kind == "vmx"
    assert [(d.name, d.format) for d in bundle.disks] == [("disk.vmdk", "vmdk")]
    assert bundle.disk_facts[0]["subformat"] == "monolithicFlat"


def test_vmdk_descriptor_with_host_extent_is_refused(tmp_path):
    bundle_dir = tmp_path / "vm"
    bundle_dir.mkdir()
    (bundle_dir / "disk.vmdk").write_text(
        '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n'
        'RW 2048 FLAT "/etc/passwd" 0\n'
    )
    (bundle_dir / "vm.vmx").write_text('scsi0:0.fileName = "disk.vmdk"\n')
    refused(ingest(str(bundle_dir / "vm.vmx"), fresh(tmp_path)), "disk-external-reference", "extent '/etc/passwd'")


def test_bare_disks_by_extension_and_bytes(tmp_path):
    raw = raw_disk(tmp_path / "disk.img")
    assert ingest(str(raw), fresh(tmp_path)).disks[0].format == "raw"
    qemu_img("create", "-q", "-f", "qcow2", str(tmp_path / "ok.qcow2"), "4M")
    bundle = ingest(str(tmp_path / "ok.qcow2"), fresh(tmp_path))
    assert bundle.kind == "disk" and bundle.descriptor is None and bundle.disks[0].format == "qcow2"
    assert bundle.sha256 == hashlib.sha256((tmp_path / "ok.qcow2").read_bytes()).hexdigest()
    # A "raw" upload carrying a qcow2 header that names a host file (the CVE-2026-24708 shape).
    qemu_img("create", "-q", "-f", "qcow2", "-b", "/etc/shadow", "-F", "raw", str(tmp_path / "trap.img"), "4M")
    refused(ingest(str(tmp_path / "trap.img"), fresh(tmp_path)), "disk-format-mismatch", "declared raw but its bytes are qcow2")
    qemu_img("create", "-q", "-f", "qcow2", "-b", "/etc/shadow", "-F", "raw", str(tmp_path / "trap.qcow2"), "4M")
    refused(ingest(str(tmp_path / "trap.qcow2"), fresh(tmp_path)), "disk-external-reference", "backing file '/etc/shadow'")


def test_identify_and_usage_errors(tmp_path):
    assert identify("x.OVA") == "ova" and identify("x.vhdx") == "disk" and identify(str(tmp_path)) == "directory"
    with pytest.raises(UsageError, match="no .ovf or .vmx"):
        ingest(str(tmp_path), fresh(tmp_path))
    (tmp_path / "a.vmx").write_text("")
    (tmp_path / "b.ovf").write_text("")
    with pytest.raises(UsageError, match="several descriptors"):
        ingest(str(tmp_path), fresh(tmp_path))


@pytest.mark.parametrize("name", ["ok.ovf", "dir/disk.vmdk", "dir/"])
def test_member_names_accepted(name):
    assert check_member_name(name) is None


# --- manifests -----------------------------------------------------------------------


def mf(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def sha(algorithm, data):
    return hashlib.new(algorithm, data).hexdigest()


def _manifest_ova(tmp_path, vmdk_bytes, manifest_lines, *, manifest_last=False, extra=()):
    ovf = ovf_for("vm-disk1.vmdk")
    members = [("vm.ovf", ovf), ("vm-disk1.vmdk", vmdk_bytes), *extra]
    manifest_member = ("vm.mf", mf(*manifest_lines(ovf, vmdk_bytes)))
    members.insert(len(members) if manifest_last else 1, manifest_member)
    work = tmp_path / "work"
    work.mkdir()
    return make_tar(tmp_path / "a.ova", members), work


def test_manifest_verified_while_streaming_in_any_algorithm_and_position(tmp_path, vmdk_bytes):
    for i, (algorithm, last) in enumerate([("SHA256", False), ("SHA512", True), ("SHA1", False)]):
        d = tmp_path / str(i)
        d.mkdir()
        lines = lambda ovf, disk: [f"{algorithm}(vm.ovf)= {sha(algorithm.lower(), ovf)}",  # noqa: E731
                                   f"{algorithm}(vm-disk1.vmdk)= {sha(algorithm.lower(), disk).upper()}"]  # fmt: skip
        ova, work = _manifest_ova(d, vmdk_bytes, lines, manifest_last=last)
        bundle = ingest(str(ova), str(work))
        assert bundle.manifest == "vm.mf"
        assert bundle.disk_facts[0]["sha256"] == sha("sha256", vmdk_bytes)
        assert any("SHA1" in n for n in bundle.notes) == (algorithm == "SHA1")


@pytest.mark.parametrize(
    "lines, extra, match",
    [
        (lambda o, d: [f"SHA256(vm.ovf)= {sha('sha256', o)}", f"SHA256(vm-disk1.vmdk)= {'0' * 64}"], (), "does not match"),
        (lambda o, d: [f"SHA256(vm.ovf)= {sha('sha256', o)}"], (), "does not cover vm-disk1.vmdk"),
        (lambda o, d: [f"SHA256(vm.ovf)= {sha('sha256', o)}", f"SHA256(vm-disk1.vmdk)= {sha('sha256', d)}",
                       f"SHA256(ghost.vmdk)= {'0' * 64}"], (), "ghost.vmdk"),
        (lambda o, d: [f"SHA256(vm.ovf)= {sha('sha256', o)}", f"SHA256(vm-disk1.vmdk)= {sha('sha256', d)}"],
         (("extra.iso", b"x"),), "does not cover extra.iso"),
        (lambda o, d: [f"MD5(vm.ovf)= {'0' * 32}"], (), "MD5 and other forms are refused"),
        (lambda o, d: [f"SHA256 (vm.ovf) = {sha('sha256', o)}"], (), "is not 'SHA256"),
        (lambda o, d: [f"SHA256(../vm.ovf)= {sha('sha256', o)}"], (), "not a plain file name"),
        (lambda o, d: [f"SHA256(vm.ovf)= {sha('sha256', o)}"] * 2, (), "listed twice"),
        (lambda o, d: [f"SHA256(vm.ovf)= {'0' * 63}"], (), "64 hex digits"),
    ],
)
def test_manifest_mismatches_are_rejected(tmp_path, vmdk_bytes, lines, extra, match):
    ova, work = _manifest_ova(tmp_path, vmdk_bytes, lines, extra=extra)
    with pytest.raises(InputRejected, match=match):
        ingest(str(ova), str(work))


def test_a_file_name_that_is_not_utf8_beside_the_descriptor_is_refused(tmp_path, vmdk_bytes):
    bundle_dir = tmp_path / "bundle"
    bundle_dir.mkdir()
    (bundle_dir / "vm.ovf").write_bytes(ovf_for("vm-disk1.vmdk"))
    (bundle_dir / "vm-disk1.vmdk").write_bytes(vmdk_bytes)
    with open(os.path.join(os.fsencode(bundle_dir), b"x\xff.log"), "wb") as f:
        f.write(b"hi")
    with pytest.raises(InputRejected, match=r"file 'x\\udcff.log' beside the descriptor: its name is not valid UTF-8"):
        ingest(str(bundle_dir / "vm.ovf"), fresh(tmp_path))
    from conftest import run_certify

    for fmt in ("json", "sarif"):
        result = run_certify("scan", str(bundle_dir / "vm.ovf"), "-q", "--format", fmt, "-o", str(tmp_path / f"r.{fmt}"))
        assert result.returncode == 2 and "not valid UTF-8" in result.stderr and "internal error" not in result.stderr, result.stderr


def test_ova_without_manifest_and_ovf_directory_with_one(tmp_path, vmdk_bytes):
    ova = make_tar(tmp_path / "a.ova", [("vm.ovf", ovf_for("vm-disk1.vmdk")), ("vm-disk1.vmdk", vmdk_bytes)])
    (tmp_path / "w").mkdir()
    assert ingest(str(ova), str(tmp_path / "w")).manifest is None
    bundle_dir = tmp_path / "dir"
    bundle_dir.mkdir()
    ovf = ovf_for("vm-disk1.vmdk")
    (bundle_dir / "vm.ovf").write_bytes(ovf)
    (bundle_dir / "vm-disk1.vmdk").write_bytes(vmdk_bytes)
    (bundle_dir / "vm.mf").write_bytes(mf(f"SHA256(vm.ovf)= {sha('sha256', ovf)}", f"SHA256(vm-disk1.vmdk)= {sha('sha256', vmdk_bytes)}"))
    assert ingest(str(bundle_dir), fresh(tmp_path)).manifest == "vm.mf"
    (bundle_dir / "vm-disk1.vmdk").write_bytes(vmdk_bytes[:-1] + b"\1")
    with pytest.raises(InputRejected, match="vm-disk1.vmdk: SHA256 digest does not match"):
        ingest(str(bundle_dir), fresh(tmp_path))


def test_two_manifests_are_refused(tmp_path, vmdk_bytes):
    ova = make_tar(tmp_path / "a.ova", [("vm.ovf", ovf_for("vm-disk1.vmdk")), ("a.mf", mf(f"SHA256(vm.ovf)= {'0' * 64}")),
                                        ("b.mf", b"x"), ("vm-disk1.vmdk", vmdk_bytes)])  # fmt: skip
    (tmp_path / "w").mkdir()
    with pytest.raises(InputRejected, match="two manifests"):
        ingest(str(ova), str(tmp_path / "w"))


# --- VMDKs crafted so qemu would open a host file (each once accepted by a looser reader) ------


def _sparse_vmdk(path, patch=None):
    qemu_img("create", "-q", "-f", "vmdk", str(path), "1M")
    data = bytearray(path.read_bytes())
    if patch:
        patch(data)
    path.write_bytes(bytes(data))
    return path


def _zero_capacity_with_host_extent(data: bytearray):
    data[12:20] = (0).to_bytes(8, "little")  # capacity 0: qemu reads the embedded text as a full descriptor
    desc = data[0x200:0x200 + 1024].split(b"\0")[0]
    desc = desc.replace(desc[desc.index(b"RW "):desc.index(b"\n", desc.index(b"RW "))], b'RW 2048 FLAT "/etc/passwd" 0')
    data[0x200:0x200 + len(desc) + 1] = desc + b"\0"


def _hint_behind_zero_descriptor_offset(data: bytearray):
    data[28:36] = (0).to_bytes(8, "little")  # header says "no descriptor"; qemu still reads 0x200
    data[0x200:0x200 + 40] = b'# parentFileNameHint="/etc/passwd"\n'.ljust(40, b" ")


def test_zero_capacity_sparse_vmdk_is_refused(tmp_path):
    _sparse_vmdk(tmp_path / "emb.vmdk", _zero_capacity_with_host_extent)
    with pytest.raises(InputRejected, match="zero capacity"):
        ingest(str(tmp_path / "emb.vmdk"), fresh(tmp_path))


def test_parent_hint_anywhere_qemu_looks_is_refused(tmp_path):
    _sparse_vmdk(tmp_path / "sp0.vmdk", _hint_behind_zero_descriptor_offset)
    refused(ingest(str(tmp_path / "sp0.vmdk"), fresh(tmp_path)), "disk-external-reference", "parentFileNameHint")
    (tmp_path / "text.vmdk").write_text('# Disk DescriptorFile\n# parentFileNameHint="/etc/passwd"\ncreateType="monolithicSparse"\n')
    refused(ingest(str(tmp_path / "text.vmdk"), fresh(tmp_path)), "disk-external-reference", "parentFileNameHint")


@pytest.mark.parametrize("extent_kind", ["zero-capacity-sparse", "qcow2-as-flat", "descriptor-as-sparse"])
def test_extents_are_sniffed_as_their_declared_type(tmp_path, extent_kind):
    bundle = tmp_path / "vm"
    bundle.mkdir()
    if extent_kind == "zero-capacity-sparse":
        _sparse_vmdk(bundle / "ext.vmdk", _zero_capacity_with_host_extent)
        line = 'RW 2048 SPARSE "ext.vmdk"'
    elif extent_kind == "qcow2-as-flat":
        qemu_img("create", "-q", "-f", "qcow2", "-b", "/etc/passwd", "-F", "raw", str(bundle / "ext.vmdk"), "1M")
        line = 'RW 2048 FLAT "ext.vmdk" 0'
    else:
        (bundle / "ext.vmdk").write_text('# Disk DescriptorFile\ncreateType="monolithicFlat"\nRW 2048 FLAT "/etc/passwd" 0\n')
        line = 'RW 2048 SPARSE "ext.vmdk"'
    (bundle / "top.vmdk").write_text(f'# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="twoGbMaxExtentSparse"\n{line}\n')
    (bundle / "vm.vmx").write_text('scsi0:0.fileName = "top.vmdk"\n')
    if extent_kind == "zero-capacity-sparse":  # a corrupt header: the whole upload is refused
        with pytest.raises(InputRejected, match="ext.vmdk"):
            ingest(str(bundle / "vm.vmx"), fresh(tmp_path))
    else:
        refused(ingest(str(bundle / "vm.vmx"), fresh(tmp_path)), "disk-external-reference", "ext.vmdk")


def test_device_mapping_vmdk_is_refused(tmp_path):
    (tmp_path / "rdm.vmdk").write_text('# Disk DescriptorFile\ncreateType="fullDevice"\nRW 2048 FLAT "disk-flat.vmdk" 0\n')
    (tmp_path / "disk-flat.vmdk").write_bytes(b"\0" * 4096)
    (tmp_path / "vm.vmx").write_text('scsi0:0.fileName = "rdm.vmdk"\n')
    refused(ingest(str(tmp_path / "vm.vmx"), fresh(tmp_path)), "disk-external-reference", "fullDevice")


def test_pathological_descriptor_lines_fail_fast(tmp_path):
    import time

    path = tmp_path / "slow.vmdk"
    path.write_text("# Disk DescriptorFile\na = b" + " " * 400_000 + '"x\n' + "RW 1 FLAT" + " " * 400_000 + "x\n")
    start = time.monotonic()
    with pytest.raises(InputRejected):
        ingest(str(path), fresh(tmp_path))
    assert time.monotonic() - start < 2


def test_file_and_directory_of_one_name_is_refused(tmp_path):
    for i, members in enumerate([[("d", b"x"), ("d/e", b"y")], [("d/e", b"y"), ("d", b"x")]]):
        ova = make_tar(tmp_path / f"{i}.ova", members)
        (tmp_path / f"w{i}").mkdir()
        with pytest.raises(InputRejected):
            ingest(str(ova), str(tmp_path / f"w{i}"))


def test_oversized_tar_metadata_is_refused_before_it_is_read(tmp_path):
    info = tarfile.TarInfo("x" * (2 * 1024 * 1024))
    info.size = 0
    ova = make_tar(tmp_path / "long.ova", [(info, b"")], fmt=tarfile.GNU_FORMAT)
    (tmp_path / "w").mkdir()
    with pytest.raises(InputRejected, match="header"):
        ingest(str(ova), str(tmp_path / "w"))


def test_directory_uploads_are_copied_into_the_work_directory_and_left_untouched(tmp_path):
    bundle = tmp_path / "vm"
    bundle.mkdir()
    raw = raw_disk(tmp_path / "d.raw")
    qemu_img("convert", "-q", "-f", "raw", "-O", "vmdk", "-o", "subformat=monolithicFlat", str(raw), str(bundle / "disk.vmdk"))
    (bundle / "vm.vmx").write_text('scsi0:0.fileName = "disk.vmdk"\n')
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in bundle.iterdir()}
    work = fresh(tmp_path)
    result = ingest(str(bundle / "vm.vmx"), work)
    assert result.disks[0].path.startswith(work) and os.path.isfile(os.path.join(work, "bundle", "disk-flat.vmdk"))
    assert result.source == str(bundle) and result.root.startswith(work)
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in bundle.iterdir()} == before
    # What qemu will open is the checked copy: changing the upload now changes nothing.
    (bundle / "disk-flat.vmdk").write_bytes(b"QFI\xfb" + b"\0" * 100)
    assert open(os.path.join(work, "bundle", "disk-flat.vmdk"), "rb").read(4) == b"\0\0\0\0"


# --- signatures (.cert) ---------------------------------------------------------------------


def _signer(common_name="ACME Appliances", issuer_key=None, issuer_name=None, days=(-1, 365)):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name or subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=days[0])).not_valid_after(now + datetime.timedelta(days=days[1]))
            .sign(issuer_key or key, hashes.SHA256()))  # fmt: skip
    return key, cert


def _cert_file(key, cert, manifest_bytes: bytes, name="vm.mf") -> bytes:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    signature = key.sign(manifest_bytes, padding.PKCS1v15(), hashes.SHA256())
    return f"SHA256({name})= {signature.hex()}\n".encode() + cert.public_bytes(serialization.Encoding.PEM)


def _signed_ova(tmp_path, vmdk_bytes, cert_bytes_for, with_manifest=True):
    ovf = ovf_for("vm-disk1.vmdk")
    mf_bytes = mf(f"SHA256(vm.ovf)= {sha('sha256', ovf)}", f"SHA256(vm-disk1.vmdk)= {sha('sha256', vmdk_bytes)}")
    members = [("vm.ovf", ovf)] + ([("vm.mf", mf_bytes)] if with_manifest else []) + [("vm.cert", cert_bytes_for(mf_bytes)), ("vm-disk1.vmdk", vmdk_bytes)]
    return make_tar(tmp_path / "signed.ova", members)


def test_signed_ova_records_its_signer(tmp_path, vmdk_bytes):
    ca_key, ca_cert = _signer("ACME Root CA")
    key, cert = _signer("ACME Appliances", issuer_key=ca_key, issuer_name=ca_cert.subject)
    ova = _signed_ova(tmp_path, vmdk_bytes, lambda mf_bytes: _cert_file(key, cert, mf_bytes))
    bundle = ingest(str(ova), fresh(tmp_path))
    assert bundle.signer.subject == "CN=ACME Appliances" and bundle.signer.issuer == "CN=ACME Root CA"
    assert not bundle.signer.self_signed and not bundle.signer.expired
    assert not any("DSP0243" in n for n in bundle.notes)


def test_self_signed_and_expired_signers_are_told_apart(tmp_path, vmdk_bytes):
    key, cert = _signer(days=(-400, -30))
    bundle = ingest(str(_signed_ova(tmp_path, vmdk_bytes, lambda m: _cert_file(key, cert, m))), fresh(tmp_path))
    assert bundle.signer.self_signed and bundle.signer.expired


@pytest.mark.parametrize(
    "make, with_manifest, match",
    [
        (lambda key, cert, m: _cert_file(key, cert, m + b"tampered"), True, "does not match the manifest"),
        (lambda key, cert, m: _cert_file(key, cert, m, name="other.mf"), True, "signs 'other.mf'"),
        (lambda key, cert, m: b"SHA256(vm.mf)= zz\n", True, "does not start with"),
        (lambda key, cert, m: _cert_file(key, cert, m).split(b"-----BEGIN")[0], True, "no readable PEM"),
        (lambda key, cert, m: _cert_file(key, cert, m), False, "without a manifest"),
    ],
)
def test_bad_signatures_reject_the_upload(tmp_path, vmdk_bytes, make, with_manifest, match):
    key, cert = _signer()
    ova = _signed_ova(tmp_path, vmdk_bytes, lambda m: make(key, cert, m), with_manifest=with_manifest)
    with pytest.raises(InputRejected, match=match):
        ingest(str(ova), fresh(tmp_path))


# --- one file, several spellings; what a manifest must cover ---------------------------------


def test_two_spellings_of_one_file_are_one_file(tmp_path, vmdk_bytes):
    ova = make_tar(tmp_path / "a.ova", [("vm.ovf", ovf_for("./vm-disk1.vmdk")), ("vm-disk1.vmdk", vmdk_bytes)])
    assert [d.name for d in ingest(str(ova), fresh(tmp_path)).disks] == ["./vm-disk1.vmdk"]
    bundle = tmp_path / "vm"
    bundle.mkdir()
    (bundle / "disk.vmdk").write_bytes(vmdk_bytes)
    (bundle / "vm.vmx").write_text('scsi0:0.fileName = "disk.vmdk"\nscsi0:1.fileName = "./disk.vmdk"\n')
    result = ingest(str(bundle / "vm.vmx"), fresh(tmp_path))
    assert len({d.path for d in result.disks}) == 1


def test_manifest_of_an_ovf_directory_must_cover_vmdk_extents(tmp_path):
    bundle = tmp_path / "vm"
    bundle.mkdir()
    raw = raw_disk(tmp_path / "d.raw")
    qemu_img("convert", "-q", "-f", "raw", "-O", "vmdk", "-o", "subformat=monolithicFlat", str(raw), str(bundle / "disk.vmdk"))
    ovf = ovf_for("disk.vmdk").replace(b"#streamOptimized", b"#monolithicFlat")
    (bundle / "x.ovf").write_bytes(ovf)
    (bundle / "x.mf").write_bytes(mf(f"SHA256(x.ovf)= {sha('sha256', ovf)}",
                                     f"SHA256(disk.vmdk)= {sha('sha256', (bundle / 'disk.vmdk').read_bytes())}"))  # fmt: skip
    with pytest.raises(InputRejected, match="does not cover disk-flat.vmdk"):
        ingest(str(bundle), fresh(tmp_path))


def test_a_folder_swapped_for_a_symlink_leads_nowhere(tmp_path, vmdk_bytes):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "d.vmdk").write_bytes(vmdk_bytes)
    bundle = tmp_path / "vm"
    bundle.mkdir()
    (bundle / "sub").symlink_to(outside)
    (bundle / "vm.vmx").write_text('scsi0:0.fileName = "sub/d.vmdk"\n')
    with pytest.raises(InputRejected, match="^disk 'sub/d.vmdk': refused: folder 'sub' on its path is a symbolic link$"):
        ingest(str(bundle / "vm.vmx"), fresh(tmp_path))


def test_a_file_that_grows_while_copied_is_refused(tmp_path, monkeypatch):
    from certify.bundle import files

    bundle = tmp_path / "vm"
    bundle.mkdir()
    disk = raw_disk(bundle / "disk.img", 2 * 1024 * 1024)
    real_open = files.open_in_bundle

    class Growing:
        """The uploader appends once the copy has started (after the size was taken)."""

        def __init__(self, f):
            self.f, self.grown = f, False

        def read(self, n=-1):
            if not self.grown:
                self.grown = True
                with open(disk, "ab") as grow:
                    grow.write(b"\0" * 4096)
            return self.f.read(n)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def opener(root, name, what="file"):
        f = real_open(root, name, what)
        return Growing(f) if root == str(bundle) else f

    monkeypatch.setattr(files, "open_in_bundle", opener)
    with pytest.raises(InputRejected, match="changed while it was being read"):
        ingest(str(disk), fresh(tmp_path))


def test_ovf_sizes_and_capacities_are_held_to_the_bytes(tmp_path, vmdk_bytes):
    members = lambda ovf: [("vm.ovf", ovf), ("vm-disk1.vmdk", vmdk_bytes)]  # noqa: E731
    assert ingest(str(make_tar(tmp_path / "ok.ova", members(ovf_for("vm-disk1.vmdk", size=len(vmdk_bytes))))), fresh(tmp_path)).disks
    with pytest.raises(InputRejected, match="ovf:size says 1"):
        ingest(str(make_tar(tmp_path / "size.ova", members(ovf_for("vm-disk1.vmdk", size=1)))), fresh(tmp_path))
    small = ovf_for("vm-disk1.vmdk", capacity=1024 * 1024)  # the image holds 4 MiB: a quota dodge
    refused(ingest(str(make_tar(tmp_path / "cap.ova", members(small))), fresh(tmp_path)), "disk-format-mismatch", "more than the 1048576")
    with pytest.raises(InputRejected, match="quota"):
        ingest(str(make_tar(tmp_path / "q.ova", members(ovf_for("vm-disk1.vmdk")))), fresh(tmp_path), Limits(max_virtual_bytes=1024))


def test_capacity_units():
    from certify.bundle.ovf import OvfDisk, capacity_bytes

    def disk(capacity, units):
        return OvfDisk(disk_id="d", file_ref="f", capacity=capacity, format=None, line=1, capacity_units=units)

    assert capacity_bytes(disk("10", "byte * 2^30")) == 10 * 2**30
    assert capacity_bytes(disk("4096", None)) == 4096
    assert capacity_bytes(disk("${SIZE}", "byte")) is None and capacity_bytes(disk("1", "furlongs")) is None


def test_manifest_placement_is_a_note_or_with_strict_order_a_rejection(tmp_path, vmdk_bytes):
    ovf, readme = ovf_for("vm-disk1.vmdk"), b"hello\n"
    manifest = mf(*(f"SHA256({n})= {sha('sha256', d)}" for n, d in (("vm.ovf", ovf), ("vm-disk1.vmdk", vmdk_bytes), ("readme.txt", readme))))
    ova = make_tar(tmp_path / "a.ova", [("vm.ovf", ovf), ("vm-disk1.vmdk", vmdk_bytes), ("vm.mf", manifest), ("readme.txt", readme)])
    assert any("not where DSP0243 puts them" in n for n in ingest(str(ova), fresh(tmp_path)).notes)
    with pytest.raises(InputRejected, match="not where DSP0243 puts them .* requires DSP0243 member order"):
        ingest(str(ova), fresh(tmp_path), policy=IngestPolicy(strict_ova_order=True))
    in_order = make_tar(tmp_path / "b.ova", [("vm.ovf", ovf), ("vm.mf", manifest), ("vm-disk1.vmdk", vmdk_bytes), ("readme.txt", readme)])
    assert ingest(str(in_order), fresh(tmp_path), policy=IngestPolicy(strict_ova_order=True)).notes == []


# --- bytes nobody reads: after the end of an OVA, in member padding (issue #12) -------------


def _end_of_members(data: bytes) -> int:
    """Where the last member's data, rounded up to whole blocks, ends: the end-of-archive blocks start there."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        last = tar.getmembers()[-1]
    return last.offset_data + -(-last.size // 512) * 512


def test_data_after_the_end_of_an_ova_is_refused(tmp_path, vmdk_bytes):
    clean = make_tar(tmp_path / "clean.ova", [("vm.ovf", ovf_for("vm-disk1.vmdk")), ("vm-disk1.vmdk", vmdk_bytes)]).read_bytes()
    end = _end_of_members(clean)
    path = tmp_path / "a.ova"
    path.write_bytes(clean + bytes(3 * 10240))  # more zero records, as tar writers pad: nothing to read there
    assert ingest(str(path), fresh(tmp_path)).disks
    second = make_tar(tmp_path / "second.tar", [("vm.ovf", ovf_for("/etc/shadow"))]).read_bytes()
    for data, offset in [(clean + second, len(clean)),  # a second archive, as `tar -i` would read it
                         (clean + bytes(30_000) + b"x", len(clean) + 30_000),  # far past what tarfile buffered
                         (clean[:end] + b"GARBAGE" + bytes(600), end),  # no end-of-archive blocks, a header tarfile skips
                         (clean[:end] + b"junk", end)]:  # fmt: skip
        path.write_bytes(data)
        with pytest.raises(InputRejected, match=rf"^a.ova: data after the end of the tar archive \(a non-zero byte at offset {offset}\)"):
            ingest(str(path), fresh(tmp_path))


def test_non_zero_padding_after_a_member_is_refused(tmp_path, vmdk_bytes):
    ovf = ovf_for("vm-disk1.vmdk")
    data = bytearray(make_tar(tmp_path / "clean.ova", [("vm.ovf", ovf), ("vm-disk1.vmdk", vmdk_bytes)]).read_bytes())
    assert len(ovf) % 512, "the descriptor must leave padding in its last block"
    data[512 + len(ovf) + 3] = ord("x")  # header block, then the descriptor's data
    (tmp_path / "a.ova").write_bytes(bytes(data))
    with pytest.raises(InputRejected, match=rf"^OVA member 'vm.ovf': non-zero bytes in its padding after byte {len(ovf)}$"):
        ingest(str(tmp_path / "a.ova"), fresh(tmp_path))


# --- header bytes nobody reads, extended headers that contradict the ustar one (issue #12 review) ---

OVF = b'<?xml version="1.0"?><Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"/>'
HIDDEN = b"HIDDEN PAYLOAD " * 60


def _header(name: str, size: int, kind: bytes = tarfile.REGTYPE, fmt: int = tarfile.USTAR_FORMAT) -> bytearray:
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    return bytearray(info.tobuf(fmt))


def _sealed(header: bytearray) -> bytearray:
    """A header whose checksum is right again after a change, as a writer would leave it."""
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return header


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


def _pax(records: list[tuple[bytes, bytes]], tail: bytes = b"") -> bytes:
    """A PAX header block and its data: the records, then ``tail`` inside the size it declares."""
    body = b""
    for key, value in records:
        line = b" %s=%s\n" % (key, value)
        length = len(line) + len(str(len(line)))
        length += len(str(length)) - len(str(len(line)))
        body += b"%d%s" % (length, line)
    body += tail
    return bytes(_header("PaxHeaders/x", len(body), tarfile.XHDTYPE)) + _padded(body)


def _ova_of(tmp_path, *members: bytes) -> str:
    path = tmp_path / f"o{len(list(tmp_path.iterdir()))}.ova"
    path.write_bytes(b"".join(members) + bytes(1024))
    return str(path)


def _ovf_member(header: bytearray | None = None) -> bytes:
    return bytes(_sealed(header if header is not None else _header("a.ovf", len(OVF)))) + _padded(OVF)


def _changed(offset: int, value: bytes, name: str = "a.ovf", kind: bytes = tarfile.REGTYPE, fmt: int = tarfile.USTAR_FORMAT) -> bytearray:
    header = _header(name, len(OVF) if kind == tarfile.REGTYPE else 0, kind, fmt)
    header[offset : offset + len(value)] = value
    return header


HIDDEN_IN_HEADERS = [
    ("pax-after-its-records", _pax([(b"comment", b"x")], b"\0" + HIDDEN) + _ovf_member(),
     "OVA member 'a.ovf': non-zero bytes after the PAX records in its PAX header$"),
    ("gnu-long-name-after-its-nul",
     bytes(_sealed(_header("././@LongLink", 126 + len(HIDDEN), tarfile.GNUTYPE_LONGNAME, tarfile.GNU_FORMAT)))
     + _padded(b"a" * 120 + b".ovf\0" + b"\0" + HIDDEN) + _ovf_member(_header("a" * 100, len(OVF), fmt=tarfile.GNU_FORMAT)),
     "non-zero bytes after the NUL that ends its GNU long name$"),
    ("bytes-500-511", _ovf_member(_changed(500, HIDDEN[:12])), "non-zero bytes in the unused bytes 500-511 of its header$"),
    ("link-name-of-a-file", _ovf_member(_changed(157, HIDDEN[:100])),
     "its header sets a link name or a device number, which a file or folder does not have$"),
    ("device-of-a-file", _ovf_member(_changed(329, b"0000007\0")), "its header sets a link name or a device number"),
    ("after-the-name", _ovf_member(_changed(10, HIDDEN[:80])), "non-zero bytes after the NUL that ends the name in its header$"),
    ("after-the-user-name", _ovf_member(_changed(275, b"x")), "non-zero bytes after the NUL that ends the user name in its header$"),
    ("after-the-prefix", _ovf_member(_changed(360, HIDDEN[:100])), "non-zero bytes after the NUL that ends the name prefix in its header$"),
    ("after-a-number", _ovf_member(_changed(100, b"000644\0X")), r"the mode field of its header, b'000644\\x00X', is not a plain number$"),
    ("gnu-times-read-as-a-prefix", _ovf_member(_changed(345, b"14723456765\0", fmt=tarfile.GNU_FORMAT)),
     "non-zero bytes in the unused bytes 345-511 of its header$"),
    ("folder-with-a-size", _ovf_member() + bytes(_sealed(_changed(124, b"%011o\0" % 1024, "d/", tarfile.DIRTYPE))) + bytes(1024),
     "OVA member 'd': it is a folder that declares a size: readers disagree on whether data follows$"),
    ("pax-size-contradicting-ustar", _ovf_member() + _pax([(b"size", b"1024")]) + bytes(_sealed(_header("disk.img", 512))) + bytes(1024),
     "OVA member 'disk.img': its PAX header says 1024 bytes, its ustar header 512: readers that ignore PAX would read another archive$"),
    ("pax-path-contradicting-ustar", _ovf_member() + _pax([(b"path", b"disk.img")]) + bytes(_sealed(_header("other.img", 512))) + bytes(512),
     "OVA member 'disk.img': its PAX path b'disk.img' and its ustar name b'other.img' differ$"),
    ("pax-key-twice", _pax([(b"comment", b"a"), (b"comment", b"b")]) + _ovf_member(), "its PAX header sets 'comment' twice$"),
    ("pax-size-not-a-number", _ovf_member() + _pax([(b"size", b"5_12")]) + bytes(_sealed(_header("disk.img", 512))) + bytes(512),
     "its PAX size b'5_12' is not a number$"),
]


@pytest.mark.parametrize("data, match", [c[1:] for c in HIDDEN_IN_HEADERS], ids=[c[0] for c in HIDDEN_IN_HEADERS])
def test_bytes_no_reader_looks_at_and_headers_readers_read_apart_are_refused(tmp_path, data, match):
    with pytest.raises(InputRejected, match=match):
        ingest(_ova_of(tmp_path, data), fresh(tmp_path))


def test_the_pax_size_contradiction_hides_a_second_archive_from_tarfile(tmp_path):
    """The reviewer's case: a reader that ignores PAX (as POSIX lets an old reader) finds evil.img where tarfile
    finds the bytes of disk.img, so the upload must not be accepted by either reading."""
    evil = bytes(_sealed(_header("evil.img", 512))) + b"EVIL".ljust(512, b"!")
    carried = b"CLEAN".ljust(512, b".") + evil
    data = _ovf_member() + _pax([(b"size", str(len(carried)).encode()), (b"path", b"disk.img")])
    data += bytes(_sealed(_header("junk.bin", 512))) + carried
    with tarfile.open(fileobj=io.BytesIO(data + bytes(1024))) as tar:  # tarfile alone sees no evil.img
        assert [m.name for m in tar] == ["a.ovf", "disk.img"]
    with pytest.raises(InputRejected, match="OVA member 'disk.img': its PAX header says 1536 bytes, its ustar header 512"):
        ingest(_ova_of(tmp_path, data), fresh(tmp_path))


@pytest.mark.parametrize(
    "data, match",
    [(_pax([(b"comment", b"x")]) * 3000 + _ovf_member(), r"not a valid tar archive \(a second extended header at byte 1024 for one member\)"),
     (_pax([(b"comment", b"x")]) + bytes(_sealed(_header("././@LongLink", 6, tarfile.GNUTYPE_LONGNAME, tarfile.GNU_FORMAT))) + _padded(b"a.ovf\0")
      + _ovf_member(), "a second extended header at byte 1024"),
     (bytes(_sealed(_header("g", 12, tarfile.XGLTYPE))) + _padded(b"12 path=x.a\n") + _ovf_member(),
      r"not a valid tar archive \(a PAX global header at byte 0, which readers apply differently\)")],
    ids=["pax-headers-chained", "pax-then-gnu-long-name", "pax-global-header"],
)
def test_one_member_has_at_most_one_extended_header(tmp_path, data, match):
    """tarfile follows a chain of extended headers recursively: 3000 of them were a RecursionError, not a refusal."""
    with pytest.raises(InputRejected, match=match):
        ingest(_ova_of(tmp_path, data), fresh(tmp_path))


def test_what_tar_writers_make_passes(tmp_path):
    """GNU tar in each format and tarfile in each, with long, non-ASCII and split names and folders."""
    from certify.bundle.ova import extract

    src = tmp_path / "src"
    names = ["vm.ovf", "\u00e9t\u00e9.txt", "sub/" + "a" * 130 + ".txt", "d" * 60 + "/" + "f" * 60]
    for name in names:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(name.encode())
    archives = []
    for fmt in ("gnu", "oldgnu", "posix", "ustar"):  # ustar cannot hold the 134-byte name: tar leaves it out
        archives.append(tmp_path / f"gnu-tar-{fmt}.ova")
        subprocess.run(["tar", f"--format={fmt}", "-cf", str(archives[-1]), "vm.ovf", "\u00e9t\u00e9.txt", "sub", "d" * 60],
                       cwd=src, capture_output=True)  # fmt: skip
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        archives.append(tmp_path / f"tarfile-{fmt}.ova")
        with tarfile.open(archives[-1], "w", format=fmt) as tar:
            for name in names:
                tar.add(src / name, arcname=name)
    for archive in archives:
        contents = extract(str(archive), fresh(tmp_path) + "/bundle", Limits(), lambda name, digests: [])
        assert set(contents.order) == set(names) - ({names[2]} if archive.name == "gnu-tar-ustar.ova" else set()), archive.name


# --- symlinks and other non-files in a directory upload are refused by name -----------------


def test_symlinked_descriptor_manifest_iso_and_extent_are_refused_by_name(tmp_path, vmdk_bytes):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "real.ovf").write_bytes(ovf_for("vm-disk1.vmdk"))
    one = tmp_path / "one"
    one.mkdir()
    (one / "vm.ovf").symlink_to(outside / "real.ovf")
    (one / "vm-disk1.vmdk").write_bytes(vmdk_bytes)
    for given in (one, one / "vm.ovf"):  # found by a directory scan, or named
        with pytest.raises(InputRejected, match=r"^descriptor 'vm.ovf': refused: it is a symbolic link$"):
            ingest(str(given), fresh(tmp_path))

    two = tmp_path / "two"
    two.mkdir()
    (two / "vm.ovf").write_bytes(ovf_for("vm-disk1.vmdk"))
    (two / "vm-disk1.vmdk").write_bytes(vmdk_bytes)
    (outside / "vm.mf").write_bytes(mf(f"SHA256(vm-disk1.vmdk)= {sha('sha256', vmdk_bytes)}"))
    (two / "vm.mf").symlink_to(outside / "vm.mf")
    with pytest.raises(InputRejected, match=r"^manifest 'vm.mf': refused: it is a symbolic link$"):
        ingest(str(two), fresh(tmp_path))

    three = tmp_path / "three"
    three.mkdir()
    (outside / "tools.iso").write_bytes(b"\0" * 4096)
    (three / "tools.iso").symlink_to(outside / "tools.iso")
    (three / "vm.vmx").write_text('ide1:0.deviceType = "cdrom-image"\nide1:0.fileName = "tools.iso"\n')
    with pytest.raises(InputRejected, match=r"^CD-ROM image 'tools.iso': refused: it is a symbolic link$"):
        ingest(str(three / "vm.vmx"), fresh(tmp_path))

    four = tmp_path / "four"
    four.mkdir()
    (four / "disk.vmdk").write_text('# Disk DescriptorFile\ncreateType="monolithicFlat"\nRW 8 FLAT "disk-flat.vmdk" 0\n')
    (outside / "disk-flat.vmdk").write_bytes(b"\0" * 4096)
    (four / "disk-flat.vmdk").symlink_to(outside / "disk-flat.vmdk")
    (four / "vm.vmx").write_text('scsi0:0.fileName = "disk.vmdk"\n')
    with pytest.raises(InputRejected, match=r"^disk 'disk.vmdk': extent 'disk-flat.vmdk': refused: it is a symbolic link$"):
        ingest(str(four / "vm.vmx"), fresh(tmp_path))


def test_a_file_on_the_path_a_fifo_and_a_symlinked_bare_disk_are_refused_by_name(tmp_path, vmdk_bytes):
    bundle = tmp_path / "vm"
    bundle.mkdir()
    (bundle / "sub").write_bytes(b"a file, not a folder")
    (bundle / "vm.vmx").write_text('scsi0:0.fileName = "sub/d.vmdk"\n')
    with pytest.raises(InputRejected, match=r"^disk 'sub/d.vmdk': refused: 'sub' on its path is not a folder$"):
        ingest(str(bundle / "vm.vmx"), fresh(tmp_path))
    (bundle / "vm.vmx").write_text('scsi0:0.fileName = "d.vmdk"\n')
    os.mkfifo(bundle / "d.vmdk")
    with pytest.raises(InputRejected, match=r"^disk 'd.vmdk': refused: it is a FIFO, not a regular file$"):
        ingest(str(bundle / "vm.vmx"), fresh(tmp_path))
    (tmp_path / "real.vmdk").write_bytes(vmdk_bytes)
    (tmp_path / "link.vmdk").symlink_to(tmp_path / "real.vmdk")
    with pytest.raises(InputRejected, match=r"^disk 'link.vmdk': refused: it is a symbolic link$"):
        ingest(str(tmp_path / "link.vmdk"), fresh(tmp_path))
