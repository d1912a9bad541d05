"""The reader's batch calls (inventory, read_many) against the in-memory guest."""

from __future__ import annotations

import stat

from memguest import memory_reader

from certify.guest import reader as guest_reader
from certify.sample import GuestSpec


def spec_with_many_files() -> GuestSpec:
    spec = GuestSpec()
    for i in range(12):
        spec.add(f"/etc/app/conf{i}.ini", f"value={i}\n")
    spec.add("/etc/app/big.bin", b"x" * 5000)
    spec.add("/etc/app/we*ird[1].conf", "odd=1\n")
    spec.add("/etc/other/skip.conf", "no\n")
    spec.add("/usr/bin/tool", b"\x7fELF", 0o4755, owner=(0, 0))
    spec.symlink("/root/.bash_history", "/dev/null")
    return spec


def test_inventory_lstats_every_path_once(tmp_path):
    reader = memory_reader(spec_with_many_files(), tmp_path)
    inventory = reader.inventory()
    assert reader.inventory() is inventory
    assert stat.S_IMODE(inventory.get("/usr/bin/tool").mode) == 0o4755
    assert inventory.get("/root/.bash_history").is_link
    assert inventory.children("/etc") == ["/etc/app", "/etc/other"]
    assert [p for p, _ in inventory.under("/etc/other")] == ["/etc/other/skip.conf"]


def test_read_many_streams_one_tar_and_leaves_out_the_rest(tmp_path, monkeypatch):
    reader = memory_reader(spec_with_many_files(), tmp_path)
    wanted = [f"/etc/app/conf{i}.ini" for i in range(12)] + ["/etc/app/we*ird[1].conf", "/root/.bash_history", "/nope"]
    calls = []
    real_tar_out = reader._g.tar_out
    monkeypatch.setattr(reader._g, "tar_out", lambda *a, **kw: calls.append((a, kw)) or real_tar_out(*a, **kw))
    got = reader.read_many(wanted, limit=3)
    assert sorted(got) == sorted(wanted[:13])  # the symlink and the missing path are not regular files
    assert got["/etc/app/conf7.ini"] == b"val"
    assert len(calls) == 1 and calls[0][0][0] == "/etc"
    excludes = calls[0][1]["excludes"]
    assert excludes == ["./app/big.bin", "./other"]


def test_tar_root_and_exclude_escaping():
    assert guest_reader._tar_root("/etc/ssh/sshd_config") == "/etc"
    assert guest_reader._tar_root("/home/alice/.ssh/id_rsa") == "/home/alice"
    assert guest_reader._tar_root("/vmlinuz") == "/"
    inventory = guest_reader.Inventory({"/": guest_reader.Stat(stat.S_IFDIR, 0, 0, 0), "/d": guest_reader.Stat(stat.S_IFDIR, 0, 0, 0),
                                 "/d/a*b": guest_reader.Stat(stat.S_IFREG, 0, 0, 1), "/d/keep": guest_reader.Stat(stat.S_IFREG, 0, 0, 1)})  # fmt: skip
    assert guest_reader._excludes(inventory, "/d", {"/d/keep"}) == ["./a\\*b"]


class _LvmGuestFS:
    """Just the calls disk_file makes: vg0/root on the second disk's partition, data on the first disk, vg1 on both."""

    def device_index(self, device):
        return {"/dev/sda": 0, "/dev/sdb": 1, "/dev/sdc": 2}[device] if device in ("/dev/sda", "/dev/sdb", "/dev/sdc") else self._fail()

    def _fail(self):
        raise RuntimeError("device_index: not a device")

    def lvm_canonical_lv_name(self, name):
        lvs = {"/dev/mapper/vg0-root": "/dev/vg0/root", "/dev/vg0/root": "/dev/vg0/root", "/dev/vg1/big": "/dev/vg1/big"}
        if name not in lvs:
            raise RuntimeError("lvm_canonical_lv_name: not a logical volume")
        return lvs[name]

    def vgpvuuids(self, vg):
        return {"vg0": ["AA-AA" + "x" * 28], "vg1": ["BBBB" + "x" * 28, "CCCC" + "x" * 28]}[vg]

    def list_partitions(self):
        return ["/dev/sda1", "/dev/sda2", "/dev/sdb1"]

    def list_devices(self):
        return ["/dev/sda", "/dev/sdb", "/dev/sdc"]

    def pread_device(self, device, count, offset):
        uuids = {"/dev/sdb1": "AAAA", "/dev/sda2": "BBBB", "/dev/sdc": "CCCC"}
        return pv_label(uuids[device].ljust(32, "x")) if device in uuids else bytes(count)

    def pvs_full(self):  # LVM's own device names, which libguestfs does not translate: not to be trusted
        return [{"pv_name": "/dev/sda1", "pv_uuid": "AAAA"}]


def pv_label(uuid: str, sector: int = 1) -> bytes:
    """The first 2 KiB of a PV as pvcreate writes them: LABELONE in sector 1, the PV header 32 bytes on."""
    label = b"LABELONE" + (sector).to_bytes(8, "little") + bytes(4) + (32).to_bytes(4, "little") + b"LVM2 001"
    head = bytearray(2048)
    head[sector * 512 : sector * 512 + len(label)] = label
    head[sector * 512 + 32 : sector * 512 + 64] = uuid.encode()
    return bytes(head)


def test_pv_label_gives_the_uuid_only_for_an_lvm2_label():
    from certify.guest.parsers.lvmlabel import pv_uuid

    uuid = "XUvF01jsyGzzfsla3mYnfspXCjI10LJ8"
    assert pv_uuid(pv_label(uuid)) == uuid
    assert pv_uuid(pv_label(uuid, sector=3)) == uuid
    assert pv_uuid(bytes(2048)) is None
    assert pv_uuid(pv_label(uuid)[:560]) is None  # cut short inside the UUID
    assert pv_uuid(pv_label(uuid).replace(b"LVM2 001", b"LVM1 001")) is None
    assert pv_uuid(pv_label("bad uuid with spaces!!".ljust(32))) is None


def test_disk_file_follows_a_logical_volume_to_the_disk_of_its_volume_group():
    from certify.bundle.disk import BundleDisk
    from certify.guest.reader import GuestReader

    disks = [BundleDisk(f"/x{i}", f"vm-disk{i}.vmdk", "vmdk") for i in (1, 2, 3)]
    mounts = {"/": "/dev/vg0/root", "/srv/data": "/dev/sda1", "/var/lib/big": "/dev/vg1/big", "/mnt/md": "/dev/md0",
              "/home": "btrfsvol:/dev/sdc/@home"}  # fmt: skip
    reader = GuestReader(_LvmGuestFS(), mounts, disks, {})
    assert reader.disk_file("/etc/passwd") == "vm-disk2.vmdk"  # root on LVM, its only PV on the second disk
    assert reader.disk_file("/srv/data/app/.ssh/authorized_keys") == "vm-disk1.vmdk"
    assert reader.disk_file("/home/alice/x") == "vm-disk3.vmdk"  # a btrfs subvolume of a whole disk
    assert reader.disk_file("/var/lib/big/x") is None  # spread over two disks: no one file to name
    assert reader.disk_file("/mnt/md/x") is None  # not a partition, not an LV, several disks
    single = GuestReader(_LvmGuestFS(), {"/": "/dev/md0"}, disks[:1], {})
    assert single.disk_file("/etc/passwd") == "vm-disk1.vmdk"


def test_pv_label_parser_takes_any_bytes():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from certify.guest.parsers.lvmlabel import pv_uuid

    seed = pv_label("XUvF01jsyGzzfsla3mYnfspXCjI10LJ8")

    @settings(max_examples=300, deadline=2000)
    @given(st.one_of(st.binary(max_size=4096), st.tuples(st.integers(0, 2047), st.integers(0, 255)).map(
        lambda flip: seed[: flip[0]] + bytes([flip[1]]) + seed[flip[0] + 1 :])))  # fmt: skip
    def never_raises(head):
        uuid = pv_uuid(head)
        assert uuid is None or (len(uuid) == 32 and uuid.isalnum())

    never_raises()


def test_inventory_walks_by_directory_and_keeps_names_it_cannot_pass_back(tmp_path):
    spec = spec_with_many_files()
    spec.add("/srv/data/ok.txt", "fine\n")
    spec.add("/srv/data/caf\udce9.txt", "latin-1 name\n")  # not UTF-8 in the guest
    spec.add("/srv/caf\udce9/inner.txt", "under a latin-1 directory\n")
    spec.symlink("/srv/data/loop", "/srv")  # listed, never entered
    reader = memory_reader(spec, tmp_path)
    inventory = reader.inventory()
    assert inventory.get("/srv/data/ok.txt").is_file
    assert inventory.get("/srv/data/loop").is_link
    assert not any(p.startswith("/srv/data/loop/") for p, _ in inventory)
    assert inventory.unstatable == ("/srv/caf\udce9", "/srv/data/caf\udce9.txt")
    expected = {p for p in reader._g.nodes if "\udce9" not in p}
    assert set(inventory.entries) == expected
