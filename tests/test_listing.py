"""The appliance's one-call listing, parsed: the records ``find`` writes, built here by code (no launch)."""

from __future__ import annotations

import gzip
import random
import stat

import pytest

from certify.guest import listing
from certify.guest.listing import ListedEntry, ListingTooLarge, ListingUnavailable, ListingUnreadable, parse_listing


def record(kind: str, perms: int, path: bytes, target: bytes = b"", uid: int = 0, gid: int = 0, size: int = 0) -> bytes:
    return f"{kind} {perms:o} {uid} {gid} {size} ".encode() + path + b"\0" + target + b"\0"


def test_every_type_mode_owner_size_and_link_target():
    data = b"".join([
        record("d", 0o755, b"."),
        record("d", 0o1777, b"./tmp"),
        record("f", 0o4755, b"./usr/bin/su", uid=0, gid=0, size=71912),
        record("l", 0o777, b"./bin", b"usr/bin", size=7),
        record("c", 0o666, b"./dev/null"),
        record("b", 0o660, b"./dev/sda", gid=6),
        record("p", 0o600, b"./run/fifo", uid=1000, gid=1000),
        record("s", 0o755, b"./run/sock"),
    ])  # fmt: skip
    listed = parse_listing(data, 100)
    assert listed.unstatable == []
    by_path = {e.path: e for e in listed.entries}
    assert by_path["/"] == ListedEntry("/", stat.S_IFDIR | 0o755, 0, 0, 0, None)
    assert by_path["/tmp"].mode == stat.S_IFDIR | 0o1777
    assert by_path["/usr/bin/su"] == ListedEntry("/usr/bin/su", stat.S_IFREG | 0o4755, 0, 0, 71912, None)
    assert by_path["/bin"] == ListedEntry("/bin", stat.S_IFLNK | 0o777, 0, 0, 7, "usr/bin")
    assert stat.S_ISCHR(by_path["/dev/null"].mode) and stat.S_ISBLK(by_path["/dev/sda"].mode)
    assert by_path["/run/fifo"] == ListedEntry("/run/fifo", stat.S_IFIFO | 0o600, 1000, 1000, 0, None)
    assert stat.S_ISSOCK(by_path["/run/sock"].mode)


def test_names_with_newlines_spaces_and_long_paths_come_back_whole():
    long_dir = b"./" + b"/".join([b"d" * 200] * 20)  # 4 KiB of path
    data = b"".join([
        record("d", 0o755, b"."),
        record("f", 0o644, b"./etc/two\nlines", size=3),
        record("f", 0o644, b"./srv/a name with  spaces", size=1),
        record("l", 0o777, b"./srv/link\nname", b"target with\nnewline"),
        record("d", 0o700, long_dir),
    ])  # fmt: skip
    paths = {e.path: e for e in parse_listing(data, 100).entries}
    assert "/etc/two\nlines" in paths and "/srv/a name with  spaces" in paths
    assert paths["/srv/link\nname"].target == "target with\nnewline"
    assert "/" + long_dir[2:].decode() in paths


def test_names_that_are_not_utf8_are_unstatable_and_hide_what_is_below():
    data = b"".join([
        record("d", 0o755, b"."),
        record("d", 0o755, b"./srv"),
        record("d", 0o755, b"./srv/caf\xe9"),
        record("f", 0o644, b"./srv/caf\xe9/inner.txt"),
        record("d", 0o755, b"./srv/caf\xe9/ok/deeper\xff"),
        record("f", 0o644, b"./srv/data/caf\xe9.txt"),
        record("l", 0o777, b"./srv/latin-link", b"caf\xe9"),
    ])  # fmt: skip
    listed = parse_listing(data, 100)
    assert listed.unstatable == ["/srv/caf\udce9", "/srv/data/caf\udce9.txt"]
    assert {e.path for e in listed.entries} == {"/", "/srv", "/srv/latin-link"}
    assert [e.target for e in listed.entries if e.path == "/srv/latin-link"] == [None]  # readlink gives none back either


@pytest.mark.parametrize("data", [
    b"d 755 0 0 4096 .",  # no terminator
    b"d 755 0 0 4096 .\0",  # no target field
    b"x 755 0 0 0 ./odd\0\0",  # a type find does not print
    b"f 75x 0 0 0 ./a\0\0",
    b"f 644 0 0 ./a\0\0",  # a field missing
    b"f 644 0 -1 0 ./a\0\0",
    b"f 644 0 0 0 /etc/passwd\0\0",  # not under the listed root
    b"f 644 0 0 0 ../escape\0\0",
    b"f 644 0 0 0 ./a/../../etc\0\0",
    b"f 644 0 0 0 ./a//b\0\0",
    b"f 17777 0 0 0 ./a\0\0",  # more than permission bits
])  # fmt: skip
def test_anything_else_is_refused_so_the_reader_walks_instead(data):
    with pytest.raises(ListingUnreadable):
        parse_listing(data, 100)
    assert issubclass(ListingUnreadable, ListingUnavailable)


def test_more_entries_than_the_limit_is_its_own_error():
    data = record("d", 0o755, b".") + b"".join(record("f", 0o644, f"./f{i}".encode()) for i in range(10))
    assert len(parse_listing(data, 11).entries) == 11
    with pytest.raises(ListingTooLarge):
        parse_listing(data, 10)


def test_parser_never_raises_anything_else_on_random_bytes():
    rng = random.Random(7)
    good = record("d", 0o755, b".") + record("f", 0o644, b"./etc/passwd", size=10) + record("l", 0o777, b"./x", b"y")
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.choice(b"\0 ./0123456789fdlx\xff\n")
        try:
            parse_listing(bytes(data), 100)
        except ListingUnavailable:
            pass


class FakeAppliance:
    """What the daemon's ``debug sh`` answers, served from bytes: the fetch's chunking and cleanup, no launch."""

    def __init__(self, listing_bytes: bytes, status: str = "0", chunk_fail: bool = False):
        self.gz = gzip.compress(listing_bytes)
        self.status, self.chunk_fail, self.calls = status, chunk_fail, []

    def debug(self, sub, args):
        import base64
        import re

        (script,) = args
        self.calls.append(script)
        if "find ." in script:
            return f"/tmp/tmp.Ab12 {self.status} {len(self.gz)}\nfind: './lost+found': Input/output error\n"
        if script.startswith("rm -rf"):
            return ""
        if self.chunk_fail:
            raise RuntimeError("sh: out of memory")
        start, count = map(int, re.match(r"tail -c \+(\d+) \S+ \| head -c (\d+)", script).groups())
        return base64.b64encode(self.gz[start - 1 : start - 1 + count]).decode()


def test_fetch_brings_a_large_listing_back_in_chunks_and_cleans_up(monkeypatch):
    monkeypatch.setattr(listing, "CHUNK_BYTES", 4096)
    data = b"".join(record("f", 0o644, f"./srv/{random.Random(i).getrandbits(128):032x}".encode()) for i in range(3000))
    appliance = FakeAppliance(data)
    assert listing.fetch_listing(appliance) == data
    chunks = [c for c in appliance.calls if c.startswith("tail")]
    assert len(chunks) == -(-len(appliance.gz) // 4096) > 1
    assert appliance.calls[-1] == "rm -rf /tmp/tmp.Ab12"


def test_fetch_falls_back_when_find_failed_or_a_chunk_did_not_come():
    with pytest.raises(ListingUnavailable, match="find exited 1: find: './lost\\+found': Input/output error"):
        listing.fetch_listing(FakeAppliance(b"", status="1"))
    failing = FakeAppliance(record("d", 0o755, b"."), chunk_fail=True)
    with pytest.raises(ListingUnavailable, match="out of memory"):
        listing.fetch_listing(failing)
    assert failing.calls[-1].startswith("rm -rf")

    class NoDebug:
        def debug(self, sub, args):
            raise RuntimeError("debug: the debug command is not available in this build")

    with pytest.raises(ListingUnavailable, match="not available"):
        listing.fetch_listing(NoDebug())
