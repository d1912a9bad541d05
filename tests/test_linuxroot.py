"""What libguestfs inspection says of a Linux root, from its files: certify's pure reading of them (no launch)."""

from __future__ import annotations

import pytest

from certify.guest.parsers import linuxroot
from certify.guest.parsers.linuxroot import BlockDevice, Devices, Doubt, OsFields

DEBIAN_OS_RELEASE = b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n'


def os_release(data: bytes) -> tuple[bool, OsFields]:
    fields = OsFields()
    return linuxroot.parse_os_release(data, fields), fields


@pytest.mark.parametrize("data, decided, expected", [
    (b'NAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\nPRETTY_NAME="Ubuntu 22.04.4 LTS"\n', True, ("ubuntu", "Ubuntu 22.04.4 LTS", (22, 4))),
    (b'ID="rocky"\nVERSION_ID="9.4"\nPRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"\n', True, ("rocky", "Rocky Linux 9.4 (Blue Onyx)", (9, 4))),
    (b"ID=alpine\nVERSION_ID=3.20.3\nPRETTY_NAME='Alpine Linux v3.20'\n", True, ("alpinelinux", "Alpine Linux v3.20", (3, 20))),
    (b'ID=arch\nPRETTY_NAME="Arch Linux"\n', True, ("archlinux", "Arch Linux", (0, 0))),  # rolling: no VERSION_ID
    (b"# comment\n\nID=fedora\nVERSION_ID=40\nPRETTY_NAME=\"Fedora Linux 40\"\n", True, ("fedora", "Fedora Linux 40", (40, 0))),
    # Debian's (and CentOS', Rocky's) VERSION_ID has no minor: release files decide, with these fields already set
    (DEBIAN_OS_RELEASE, False, ("debian", "Debian GNU/Linux 12 (bookworm)", (12, 0))),
    (b'ID=openwrt\nVERSION_ID="23.05.3"\nPRETTY_NAME="OpenWrt 23.05.3"\n', False, (None, "OpenWrt 23.05.3", (23, 5))),
    (b'ID=ubuntu\nPRETTY_NAME="Ubuntu"\n', False, ("ubuntu", "Ubuntu", None)),  # no version: release files decide
    (b'ID=neokylin\nVERSION_ID=V7Update6\nPRETTY_NAME="NeoKylin"\n', True, ("neokylin", "NeoKylin", (7, 6))),
    (b'ID=debian\nID=ubuntu\nVERSION_ID=24.04\nPRETTY_NAME=x\n', True, ("ubuntu", "x", (24, 4))),  # the last one counts
])  # fmt: skip
def test_os_release_is_read_as_libguestfs_reads_it(data, decided, expected):
    result, fields = os_release(data)
    assert result is decided
    assert (fields.distro, fields.product_name, fields.version) == expected


@pytest.mark.parametrize("data", [
    b'ID=ubuntu\r\nPRETTY_NAME="Ubuntu"\r\n',  # carriage returns: libguestfs keeps them in the values
    b'ID=ubuntu\nPRETTY_NAME="Ubuntu \\"LTS\\""\nVERSION_ID=22.04\n',  # shell escapes
    b"ID=ubuntu\nPRETTY_NAME=\xff\n",  # not UTF-8
])  # fmt: skip
def test_os_release_it_cannot_read_exactly_is_a_doubt(data):
    with pytest.raises(Doubt):
        os_release(data)


def test_debian_version_gives_the_minor_after_os_release_gave_the_major():
    decided, fields = os_release(DEBIAN_OS_RELEASE)
    assert not decided
    linuxroot.parse_debian_version(b"12.8\n", fields)
    assert (fields.distro, fields.product_name, fields.version) == ("debian", "12.8", (12, 8))
    fields = OsFields(version=(13, 0))
    linuxroot.parse_debian_version(b"trixie/sid\n", fields)  # no number: the version os-release gave stays
    assert (fields.product_name, fields.version) == ("trixie/sid", (13, 0))
    with pytest.raises(Doubt):
        linuxroot.parse_debian_version(b"\n12.8\n", OsFields())


def test_hostname_is_the_first_line_that_is_not_empty_or_a_comment():
    assert linuxroot.hostname_from(b"# set by the build\n\nweb-01\nignored\n", "/etc/hostname") == "web-01"
    assert linuxroot.hostname_from(b"\n# nothing\n", "/etc/hostname") is None


def elf(machine: int, elf_class: int = 2, data: int = 1) -> bytes:
    return b"\x7fELF" + bytes([elf_class, data, 1]) + bytes(9) + (2).to_bytes(2, "little") + machine.to_bytes(2, "little") + bytes(44)


def test_elf_architecture_from_the_header_or_none_to_ask_file():
    assert linuxroot.elf_arch(elf(62)) == "x86_64"
    assert linuxroot.elf_arch(elf(3, elf_class=1)) == "i386"
    assert linuxroot.elf_arch(elf(183)) == "aarch64"
    assert linuxroot.elf_arch(elf(21)) is None  # PowerPC: file(1) says which
    assert linuxroot.elf_arch(elf(62, data=2)) is None
    assert linuxroot.elf_arch(b"#!/bin/sh\n") is None
    assert linuxroot.elf_arch(b"") is None


def blkid_block(device: str, exit_status: int, *lines: str) -> str:
    return "\n".join([f"DEVNAME={device}", f"BLKID_EXIT={exit_status}", *lines]) + "\n\n"


def test_blkid_export_blocks_one_per_device_with_its_exit():
    text = (blkid_block("/dev/sda", 0, "DEVNAME=/dev/sda", "PTUUID=1234", "PTTYPE=dos")
            + blkid_block("/dev/sda1", 0, "DEVNAME=/dev/sda1", "UUID=0f3c", "LABEL=root", "TYPE=ext4",
                          "PART_ENTRY_NAME=Linux\\ filesystem")
            + blkid_block("/dev/sda2", 2)  # nothing on it
            + blkid_block("/dev/sdb", 0, "DEVNAME=/dev/sdb", "TYPE=LVM2_member", "UUID=abc"))  # fmt: skip
    found = linuxroot.parse_blkid_export(text)
    assert found["/dev/sda"] == BlockDevice("/dev/sda", None, None, None)
    assert found["/dev/sda1"] == BlockDevice("/dev/sda1", "ext4", "0f3c", "root")
    assert found["/dev/sda2"] == BlockDevice("/dev/sda2", None, None, None)
    assert found["/dev/sdb"].type == "LVM2_member"


@pytest.mark.parametrize("text", [
    blkid_block("/dev/sda1", 2, "blkid: error: /dev/sda1: Device or resource busy"),  # could not open: not "empty"
    blkid_block("/dev/sda1", 8),  # ambivalent probe: two signatures
    blkid_block("/dev/sda1", 0, "DEVNAME=/dev/sda1", "LABEL=my\\ disk", "TYPE=ext4"),
    blkid_block("/dev/sda1", 0, "DEVNAME=/dev/sdb1", "TYPE=ext4"),
    "TYPE=ext4\n",
    blkid_block("/dev/sda1", 0, "TYPE=ext4") + blkid_block("/dev/sda1", 0, "TYPE=xfs"),
])  # fmt: skip
def test_blkid_answers_it_cannot_be_sure_of_are_doubts(text):
    with pytest.raises(Doubt):
        linuxroot.parse_blkid_export(text)


DEVICES = Devices(
    disks=("/dev/sda", "/dev/sdb"),
    partitions=frozenset({"/dev/sda1", "/dev/sda2", "/dev/sdb1"}),
    filesystems={
        "/dev/sda1": BlockDevice("/dev/sda1", "ext4", "root-uuid", "root"),
        "/dev/sda2": BlockDevice("/dev/sda2", "swap", "swap-uuid", None),
        "/dev/sdb1": BlockDevice("/dev/sdb1", "LVM2_member", "pv", None),
        "/dev/vg0/data": BlockDevice("/dev/vg0/data", "xfs", "data-uuid", "appdata"),
    },
    logical_volumes=frozenset({"/dev/vg0/data"}),
    canonical_lv=lambda spec: {"/dev/mapper/vg0-data": "/dev/vg0/data"}.get(spec),
)


def test_fstab_resolves_as_libguestfs_does():
    fstab = (b"# /etc/fstab\nUUID=root-uuid / ext4 errors=remount-ro 0 1\nUUID=swap-uuid none swap sw 0 0\n"
             b"/dev/mapper/vg0-data /srv//data/ xfs defaults 0 2\nLABEL=appdata /var/lib/app xfs defaults\n"
             b"/dev/sdb1 /mnt/pv ext4 defaults 0 0\n/dev/sdc1 /mnt/missing ext4 defaults 0 0\n"
             b"tmpfs /tmp tmpfs defaults 0 0\nproc /proc proc defaults 0 0\n"
             b"PARTUUID=1234-01 /boot ext4 defaults 0 2\n/dev/cdrom /media/cdrom auto noauto 0 0\n")  # fmt: skip
    assert linuxroot.fstab_mountpoints(fstab, "/dev/sda1", DEVICES) == {
        "/": "/dev/sda1", "/srv/data": "/dev/vg0/data", "/var/lib/app": "/dev/vg0/data", "/mnt/pv": "/dev/sdb1",
        "/mnt/missing": "/dev/sdc1",  # not a partition: the name itself, and the mount then fails
    }  # fmt: skip
    assert linuxroot.fstab_mountpoints(b"# empty\n", "/dev/sda1", DEVICES) == {"/": "/dev/sda1"}


@pytest.mark.parametrize("line", [
    b"/dev/disk/by-uuid/x / ext4 defaults 0 1",  # a name libguestfs resolves in ways the probe does not follow
    b"/dev/md0 / ext4 defaults 0 1",
    b"UUID=root-uuid / btrfs subvol=@ 0 0",
    b"UUID=root-uuid / ext4 defaults 0 1 # trailing comment",
    b"UUID=root-uuid /",
    b"UUID=root-uuid / ext4 defaults x 1",
    b"UUID=root-uuid / ext4 defaults,,noatime 0 1",
    b"/dev/sda1 /space\\040here ext4 defaults 0 0",
    b"UUID=gone /opt ext4 defaults,nofail 0 2",  # inspect_os would skip it; so would a blkid that missed a device
])  # fmt: skip
def test_fstab_lines_it_is_not_certain_of_are_doubts(line):
    with pytest.raises(Doubt):
        linuxroot.fstab_mountpoints(line + b"\n", "/dev/sda1", DEVICES)


def test_two_filesystems_with_one_uuid_or_one_mountpoint_twice_are_doubts():
    twins = Devices(DEVICES.disks, DEVICES.partitions,
                    {**DEVICES.filesystems, "/dev/sdb2": BlockDevice("/dev/sdb2", "ext4", "root-uuid", None)},
                    DEVICES.logical_volumes, DEVICES.canonical_lv)  # fmt: skip
    with pytest.raises(Doubt):
        linuxroot.fstab_mountpoints(b"UUID=root-uuid / ext4 defaults 0 1\n", "/dev/sda1", twins)
    with pytest.raises(Doubt):
        linuxroot.fstab_mountpoints(b"/dev/sda1 / ext4 defaults 0 1\n/dev/sda2 / ext4 defaults 0 1\n", "/dev/sda1", DEVICES)
