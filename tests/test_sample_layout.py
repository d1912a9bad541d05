"""Sample image layouts and the RHEL-family and Alpine roots, without a launch."""

from __future__ import annotations

import pytest
from memguest import scan_spec

from certify import sample
from certify.model import Layer
from certify.sample import Disk, Layout

ROCKY = {"type": "linux", "distro": "rocky", "product_name": "Rocky Linux 9.4 (Blue Onyx)", "version": "9.4",
         "arch": "x86_64", "hostname": "appliance", "root": "/dev/rl/root"}  # fmt: skip
ALPINE = {"type": "linux", "distro": "alpinelinux", "product_name": "Alpine Linux v3.20", "version": "3.20",
          "arch": "x86_64", "hostname": "appliance", "root": "/dev/sda"}  # fmt: skip


def guest_check_ids() -> list[str]:
    from certify.plugins.manager import get_plugin_manager, load_registry

    registry = load_registry(get_plugin_manager(autoload=False))
    return sorted(i for i, c in registry.checks.items() if c.layer == Layer.GUEST)


def test_default_layout_is_one_mbr_disk_with_one_ext4_partition():
    assert Layout().disks == (Disk("/", "mbr", "ext4"),)
    assert Layout().fstab() == "/dev/sda1 / ext4 defaults 0 1\n"
    assert sample.base_system().files["/etc/fstab"][0] == b"/dev/sda1 / ext4 defaults 0 1\n"
    assert sample.disk_paths("/x/a.raw", Layout()) == ["/x/a.raw"]


def test_fstab_names_filesystems_the_way_installers_do():
    layout = Layout((Disk("/", "gpt", "xfs", lvm="rl/root"), Disk("/var/lib/app", None, "xfs", label="appdata"),
                     Disk("/srv/data", "mbr", "ext4", uuid="5b7a1c2e-8f3d-4e6a-9c0b-1d2e3f4a5b6c"), Disk("/opt", None, "btrfs")))  # fmt: skip
    assert layout.fstab().splitlines() == [
        "/dev/mapper/rl-root / xfs defaults 0 0",
        "/dev/sdd /opt btrfs defaults 0 0",
        "UUID=5b7a1c2e-8f3d-4e6a-9c0b-1d2e3f4a5b6c /srv/data ext4 defaults 0 2",
        "LABEL=appdata /var/lib/app xfs defaults 0 0",
    ]
    assert Disk(lvm="my-vg/my-lv").fstab_source(0) == "/dev/mapper/my--vg-my--lv"
    assert sample.disk_paths("/x/a.raw", layout) == ["/x/a.raw", "/x/a-2.raw", "/x/a-3.raw", "/x/a-4.raw"]


def test_disk_sizes_leave_room_for_what_mkfs_needs():
    assert Disk().byte_size(sample.DISK_BYTES) == sample.DISK_BYTES
    assert Disk(fs="xfs").byte_size(sample.DISK_BYTES) > 300 * sample.MiB
    assert Disk(fs="btrfs").byte_size(sample.DISK_BYTES) >= 128 * sample.MiB
    assert Disk(fs="xfs", size=999).byte_size(sample.DISK_BYTES) == 999


@pytest.mark.parametrize("bad", [
    lambda: Disk(partition_table="bsd"), lambda: Disk(fs="zfs"), lambda: Disk(lvm="root"), lambda: Disk(mountpoint="data"),
    lambda: Layout(()), lambda: Layout((Disk(), Disk())), lambda: Layout((Disk(), Disk("/a"), Disk("/a"))),
    lambda: Layout((Disk(lvm="vg0/root"), Disk("/data", lvm="vg0/data"))),
])  # fmt: skip
def test_impossible_layouts_are_refused(bad):
    with pytest.raises(ValueError):
        bad()


def test_set_layout_writes_the_fstab_that_mounts_it():
    layout = Layout((Disk("/", None, "btrfs"),))
    spec = sample.alpine_system().set_layout(layout)
    assert spec.layout is layout and spec.files["/etc/fstab"][0] == b"/dev/sda / btrfs defaults 0 0\n"


@pytest.mark.parametrize("make, os_info", [(sample.rhel_system, ROCKY), (sample.alpine_system, ALPINE)])
def test_rhel_and_alpine_roots_are_clean_for_every_guest_check(tmp_path, make, os_info):
    ids = guest_check_ids()
    scan = scan_spec(make(), tmp_path, ids, os_info)
    assert {i for i, s in scan["status"].items() if s != "pass"} == set(), scan["evidence"]


def test_rhel_and_alpine_keep_their_conventions():
    rocky = sample.rhel_system()
    assert rocky.files["/etc/shadow"][1] == 0o000 and "/etc/shadow" not in rocky.owners  # root:root 0000
    assert rocky.links["/bin"] == "usr/bin" and rocky.links["/etc/redhat-release"] == "rocky-release"
    assert b'ID="rocky"' in rocky.files["/etc/os-release"][0] and "/etc/sysconfig/network-scripts" in rocky.dirs
    alpine = sample.alpine_system()
    assert alpine.files["/etc/alpine-release"][0] == b"3.20.3\n" and b"ID=alpine\n" in alpine.files["/etc/os-release"][0]
    assert alpine.links["/bin/sh"] == "busybox" and alpine.files["/bin/busybox"][0].startswith(b"\x7fELF")
    assert not any(p.startswith(("/var/lib/dpkg", "/var/lib/rpm")) for p in [*alpine.files, *alpine.dirs])
