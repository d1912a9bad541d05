"""Guest collectors and the guest session, against an in-memory fake of libguestfs (no launch)."""

from __future__ import annotations

import fnmatch
import stat

import pytest
from memguest import memory_reader

from certify.bundle.disk import BundleDisk
from certify.guest import reader as guest_reader
from certify.guest.collectors.ssh import collect_authorized_keys, collect_host_keys
from certify.guest.parsers import fstab
from certify.guest.reader import GuestNotInspectable, GuestReader, open_guest
from certify.model import FactUnavailable
from certify.sample import GuestSpec, ed25519_keypair


class FakeGuestFS:
    """Just the calls the reader and the session make, over a dict of files."""

    def __init__(self, files: dict[str, bytes], roots=("/dev/sda1",), mounts=None, unmountable=()):
        self.files, self.roots = files, list(roots)
        self.mounts = mounts or {"/": "/dev/sda1"}
        self.unmountable = set(unmountable)

    def glob_expand(self, pattern):
        return [p for p in self.files if fnmatch.fnmatchcase(p, pattern)]

    def statns(self, path):
        if path not in self.files:
            raise RuntimeError("no such file")
        return {"st_mode": stat.S_IFREG | 0o600, "st_uid": 0, "st_gid": 0, "st_size": len(self.files[path])}

    def pread(self, path, count, offset):
        return self.files[path][offset : offset + count]

    def device_index(self, device):
        return 0

    def list_devices(self):  # no block devices to probe: inspect_os decides, as for any guest the probe doubts
        raise RuntimeError("list_devices: a fake guest has no block devices")

    def inspect_os(self):
        return self.roots

    def inspect_get_mountpoints(self, root):
        return self.mounts

    def mount_ro(self, device, mountpoint):
        if mountpoint in self.unmountable:
            raise RuntimeError("mount: wrong fs type")

    def __getattr__(self, name):  # inspect_get_* details, shutdown, close
        return lambda *args: None


PASSWD = b"root:x:0:0:root:/root:/bin/bash\ntoor:x:0:0::/:/bin/sh\n"


def guest(tmp_path, files: dict[str, bytes]) -> GuestReader:
    spec = GuestSpec()
    for path, content in files.items():
        spec.add(path, content, 0o600)
    return memory_reader(spec, tmp_path)


def test_a_truncated_authorized_keys_file_still_counts(tmp_path):
    _, key = ed25519_keypair("late")
    padding = b"#" * (1024 * 1024) + b"\n"
    found = collect_authorized_keys(guest(tmp_path, {"/etc/passwd": PASSWD, "/root/.ssh/authorized_keys": padding + key.encode()}))
    assert [(f.path, f.entries, f.truncated) for f in found] == [("/root/.ssh/authorized_keys", (), True)]


def test_home_at_the_root_of_the_filesystem_is_searched(tmp_path):
    _, key = ed25519_keypair("slash")
    found = collect_authorized_keys(guest(tmp_path, {"/etc/passwd": PASSWD, "/.ssh/authorized_keys": key.encode()}))
    assert [(f.path, f.users) for f in found] == [("/.ssh/authorized_keys", ("toor",))]


def test_an_enormous_passwd_makes_the_fact_unavailable(tmp_path):
    big = PASSWD + b"x" * (16 * 1024 * 1024)
    with pytest.raises(FactUnavailable, match="over"):
        collect_authorized_keys(guest(tmp_path, {"/etc/passwd": big}))


def test_host_key_named_files_that_are_not_keys(tmp_path):
    private, public = ed25519_keypair("h")
    found = collect_host_keys(guest(tmp_path, {"/etc/ssh/ssh_host_ed25519_key": private, "/etc/ssh/ssh_host_ed25519_key.pub": public.encode()}))
    assert [(f.path, f.key.type) for f in found] == [("/etc/ssh/ssh_host_ed25519_key", "ssh-ed25519")]


def test_optional_removable_and_network_mounts_need_no_disk():
    text = ("UUID=1 / ext4 defaults 0 1\nUUID=2 /data ext4 defaults,nofail 0 2\n/dev/sr0 /media/cdrom udf,iso9660 user,noauto\n"
            "nas:/export /mnt/nas nfs defaults 0 0\ntmpfs /tmp tmpfs defaults 0 0\nUUID=3 none swap sw 0 0\n"
            "LABEL=logs /var/log\\040old ext4 defaults 0 2\n# UUID=4 /old ext4 defaults 0 2\n")  # fmt: skip
    assert [(e.mountpoint, e.line) for e in fstab.missing_mounts(text, {"/"})] == [("/var/log old", 7)]
    assert fstab.missing_mounts(text, {"/", "/var/log old"}) == []


@pytest.mark.parametrize(
    "fake, message",
    [
        (FakeGuestFS({}, roots=()), "no operating system"),
        (FakeGuestFS({}, roots=("/dev/sda1", "/dev/sdb1")), "2 operating systems"),
        (FakeGuestFS({}, mounts={"/": "/dev/sda1", "/home": "/dev/sdb1"}, unmountable={"/home"}), "/home"),
        (FakeGuestFS({"/etc/fstab": b"UUID=1 / ext4 defaults 0 1\nUUID=2 /srv/data xfs defaults 0 2\n"}),
         "/srv/data from UUID=2 .line 2. at boot, but no uploaded disk holds it"),
    ],
)
def test_guests_that_cannot_be_fully_seen_are_not_inspectable(monkeypatch, tmp_path, fake, message):
    monkeypatch.setattr(guest_reader, "_launch", lambda disks, workdir, settings: fake)
    with pytest.raises(GuestNotInspectable, match=message):
        with open_guest([BundleDisk("/x", "d.vmdk", "vmdk")], str(tmp_path)):
            pass
