"""The reader's batch calls (inventory, read_many) against the in-memory guest."""

from __future__ import annotations

import stat

from memguest import memory_reader

from certify import guest
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
    assert guest._tar_root("/etc/ssh/sshd_config") == "/etc"
    assert guest._tar_root("/home/alice/.ssh/id_rsa") == "/home/alice"
    assert guest._tar_root("/vmlinuz") == "/"
    inventory = guest.Inventory({"/": guest.Stat(stat.S_IFDIR, 0, 0, 0), "/d": guest.Stat(stat.S_IFDIR, 0, 0, 0),
                                 "/d/a*b": guest.Stat(stat.S_IFREG, 0, 0, 1), "/d/keep": guest.Stat(stat.S_IFREG, 0, 0, 1)})  # fmt: skip
    assert guest._excludes(inventory, "/d", {"/d/keep"}) == ["./a\\*b"]


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
