"""The package database readers: dpkg info files, an rpm sqlite database with hand-made headers, apk's installed file."""

from __future__ import annotations

import base64
import hashlib
import sqlite3
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from memguest import memory_reader

from certify import sample
from certify.guest.parsers.pkgdb import (
    NO_DATABASE,
    RpmHeaderError,
    canonical,
    package_database,
    parse_apk_installed,
    parse_dpkg_list,
    parse_dpkg_md5sums,
    parse_rpm_header,
    read_rpm_sqlite,
)  # fmt: skip

BIN, INT16, INT32, STRING, STRING_ARRAY = 7, 3, 4, 6, 8


def rpm_header(entries: list[tuple[int, int, object]]) -> bytes:
    """An rpmdb header blob as rpm stores it: il, dl, 16-byte index entries, aligned data store."""
    index, store = [], b""
    for tag, kind, value in [(63, BIN, b"\0" * 16), *entries]:  # a region trailer first, as rpm writes it
        if kind == INT32:
            store += b"\0" * (-len(store) % 4)
            data, count = struct.pack(f">{len(value)}I", *value), len(value)
        elif kind == INT16:
            store += b"\0" * (-len(store) % 2)
            data, count = struct.pack(f">{len(value)}H", *value), len(value)
        elif kind == STRING:
            data, count = value.encode() + b"\0", 1
        elif kind == STRING_ARRAY:
            data, count = b"".join(v.encode() + b"\0" for v in value), len(value)
        else:
            data, count = value, len(value)
        index.append(struct.pack(">IIII", tag, kind, len(store), count))
        store += data
    return struct.pack(">II", len(index), len(store)) + b"".join(index) + store


def package_header(name: str, files: dict[str, tuple[int, str]], algo: int | None = 8) -> bytes:
    """files: path -> (mode, hex digest or '')."""
    dirs = sorted({p.rsplit("/", 1)[0] + "/" for p in files})
    entries = [
        (1000, STRING, name),
        (1030, INT16, [mode for mode, _ in files.values()]),
        (1035, STRING_ARRAY, [digest for _, digest in files.values()]),
        (1116, INT32, [dirs.index(p.rsplit("/", 1)[0] + "/") for p in files]),
        (1117, STRING_ARRAY, [p.rsplit("/", 1)[1] for p in files]),
        (1118, STRING_ARRAY, dirs),
    ]
    if algo is not None:
        entries.append((5011, INT32, [algo]))
    return rpm_header(entries)


def rpm_sqlite(path, blobs: list[bytes]) -> bytes:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
    connection.executemany("INSERT INTO Packages (blob) VALUES (?)", [(b,) for b in blobs])
    connection.commit()
    connection.close()
    return path.read_bytes()


SU = b"\x7fELF su binary"
SU_SHA256 = hashlib.sha256(SU).hexdigest()


# -- dpkg --------------------------------------------------------------------


def test_dpkg_list_and_md5sums_parse():
    assert parse_dpkg_list(b"/.\n/usr\n/usr/bin/passwd\r\nnot a path\n/usr/share/doc/a b\n") == [
        "/", "/usr", "/usr/bin/passwd", "/usr/share/doc/a b"]  # fmt: skip
    md5 = "0123456789abcdef0123456789ABCDEF"
    text = f"{md5}  usr/bin/passwd\n{md5} *usr/share/x y\ngarbage\n{md5[:31]}  short\n"
    assert parse_dpkg_md5sums(text.encode()) == {"/usr/bin/passwd": md5.lower(), "/usr/share/x y": md5.lower()}


def dpkg_spec(merged_usr: bool = True) -> sample.GuestSpec:
    spec = sample.base_system()
    spec.add("/var/lib/dpkg/status", "Package: login\nStatus: install ok installed\n\n")
    # Enough packages that read_many streams them as one tar.
    for i in range(12):
        spec.add(f"/var/lib/dpkg/info/lib{i}:amd64.list", f"/.\n/usr/lib/lib{i}.so\n")
        spec.add(f"/var/lib/dpkg/info/lib{i}:amd64.md5sums", f"{'0' * 32}  usr/lib/lib{i}.so\n")
        spec.add(f"/usr/lib/lib{i}.so", b"\x7fELF")
    # bookworm's login still lists /bin/su; on merged /usr the walk sees /usr/bin/su.
    spec.add("/var/lib/dpkg/info/login.list", "/.\n/bin\n/bin/su\n/usr/bin/newgrp\n")
    spec.add("/var/lib/dpkg/info/login.md5sums", f"{hashlib.md5(SU).hexdigest()}  bin/su\n{'1' * 32}  usr/bin/newgrp\n")
    spec.add("/var/lib/dpkg/info/other.md5sums", f"{'2' * 32}  usr/bin/newgrp\n")  # not the owner: ignored
    spec.add("/usr/bin/su", SU, 0o4755)
    if merged_usr:
        spec.symlink("/bin", "usr/bin")
    else:
        spec.remove("/bin")
    return spec


def test_dpkg_ownership_and_lazy_digests_through_merged_usr(tmp_path):
    reader = memory_reader(dpkg_spec(), tmp_path)
    db = package_database(reader)
    assert db is package_database(reader)  # memoized for every collector of the scan
    assert (db.kind, db.problem, db.incomplete, db.aliases) == ("dpkg", None, None, ("bin",))
    assert db.owner("/usr/bin/su") == db.owner("/bin/su") == "login"
    assert db.owner("/usr/lib/lib3.so") == "lib3:amd64"
    assert db.owner("/usr/local/bin/tool") is None
    assert db.mode("/usr/bin/su") is None  # dpkg records no modes
    assert db._loaded_packages == set()  # nothing read until a digest is asked for
    assert db.digests(["/usr/bin/su", "/usr/bin/newgrp", "/usr/local/bin/tool"]) == {
        "/usr/bin/su": ("md5", hashlib.md5(SU).hexdigest()), "/usr/bin/newgrp": ("md5", "1" * 32)}  # fmt: skip
    assert db._loaded_packages == {"login"}
    assert db.digest("/usr/lib/lib0.so") == ("md5", "0" * 32)


def test_dpkg_without_merged_usr_keeps_paths(tmp_path):
    spec = dpkg_spec(merged_usr=False)
    spec.add("/bin/su", SU, 0o4755)
    db = package_database(memory_reader(spec, tmp_path))
    assert db.aliases == () and db.owner("/bin/su") == "login" and db.owner("/usr/bin/su") is None


def test_no_database(tmp_path):
    db = package_database(memory_reader(sample.base_system(), tmp_path))
    assert (db.kind, db.problem) == (None, NO_DATABASE)
    assert db.owner("/usr/bin/passwd") is None and db.digest("/usr/bin/passwd") is None


def test_canonical_only_rewrites_aliased_tops():
    assert canonical("/bin/su", ("bin",)) == "/usr/bin/su"
    assert canonical("/binary/x", ("bin",)) == "/binary/x"
    assert canonical("/sbin/x", ("bin",)) == "/sbin/x"


# -- rpm ---------------------------------------------------------------------


def test_rpm_header_files_modes_and_digests():
    header = package_header("util-linux", {"/usr/bin/su": (0o104755, SU_SHA256), "/usr/bin/more": (0o100755, "AB" * 32),
                                           "/var/log/lastlog": (0o100644, "")})  # fmt: skip
    package = parse_rpm_header(header)
    assert package.name == "util-linux"
    assert [(f.path, f.mode, f.digest) for f in package.files] == [
        ("/usr/bin/su", 0o104755, ("sha256", SU_SHA256)),
        ("/usr/bin/more", 0o100755, ("sha256", "ab" * 32)),
        ("/var/log/lastlog", 0o100644, None),  # a %ghost has no digest
    ]


def test_rpm_header_without_digest_algo_is_md5():
    package = parse_rpm_header(package_header("old", {"/usr/bin/x": (0o100755, "c" * 32)}, algo=None))
    assert package.files[0].digest == ("md5", "c" * 32)


@pytest.mark.parametrize(
    "blob",
    [
        b"\0\0\0",  # shorter than il + dl
        struct.pack(">II", 1 << 20, 0),  # absurd entry count
        struct.pack(">II", 1, 100) + b"\0" * 16,  # data store past the blob
        rpm_header([(1000, STRING, "x"), (1117, STRING_ARRAY, ["a"]), (1116, INT32, [5]), (1118, STRING_ARRAY, ["/"])]),
        rpm_header([(1117, STRING_ARRAY, ["a", "b"]), (1116, INT32, [0]), (1118, STRING_ARRAY, ["/"])]),
        rpm_header([(1000, INT32, [1])]),  # a name that is not a string
        struct.pack(">II", 1, 2) + struct.pack(">IIII", 1117, STRING_ARRAY, 0, 1) + b"ab",  # unterminated
    ],
)
def test_malformed_rpm_headers_are_refused(blob):
    with pytest.raises(RpmHeaderError):
        parse_rpm_header(blob)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_rpm_header_parser_only_raises_its_own_error(blob):
    try:
        parse_rpm_header(blob)
    except RpmHeaderError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_text_database_parsers_never_raise(data):
    parse_dpkg_list(data)
    parse_dpkg_md5sums(data)
    for entry in parse_apk_installed(data):
        assert entry.path.startswith("/")


def test_rpm_sqlite_yields_packages_and_broken_headers(tmp_path):
    rpm_sqlite(tmp_path / "rpmdb.sqlite", [package_header("a", {"/usr/bin/a": (0o100755, "1" * 64)}), b"\0\0"])
    got = list(read_rpm_sqlite(str(tmp_path / "rpmdb.sqlite")))
    assert got[0].name == "a" and isinstance(got[1], RpmHeaderError)


def rpm_spec(tmp_path, blobs, where="/var/lib/rpm/rpmdb.sqlite") -> sample.GuestSpec:
    spec = sample.base_system()
    spec.add(where, rpm_sqlite(tmp_path / "built.sqlite", blobs))
    spec.symlink("/bin", "usr/bin")
    spec.add("/usr/bin/su", SU, 0o4755)
    return spec


def test_rpm_database_in_the_guest(tmp_path):
    blobs = [package_header("util-linux", {"/usr/bin/su": (0o104755, SU_SHA256)}),
             package_header("coreutils", {"/bin/cat": (0o100755, "2" * 64)})]  # fmt: skip
    spec = rpm_spec(tmp_path, blobs, where="/usr/lib/sysimage/rpm/rpmdb.sqlite")
    (work := tmp_path / "work").mkdir()
    db = package_database(memory_reader(spec, work))
    assert (db.kind, db.incomplete) == ("rpm", None)
    assert db.owner("/usr/bin/su") == "util-linux" and db.owner("/usr/bin/cat") == "coreutils"
    assert db.mode("/usr/bin/su") == 0o104755
    assert db.digest("/usr/bin/su") == ("sha256", SU_SHA256)
    assert list(work.iterdir()) == []  # the copy of the database is gone


def test_rpm_database_with_a_broken_header_is_incomplete(tmp_path):
    db = package_database(memory_reader(rpm_spec(tmp_path, [package_header("a", {"/usr/bin/a": (0o100755, "")}), b"junk"]), tmp_path))
    assert db.kind == "rpm" and "1 package header(s)" in db.incomplete


def test_rpm_file_that_is_not_sqlite(tmp_path):
    spec = sample.base_system().add("/var/lib/rpm/rpmdb.sqlite", b"not a database" * 100)
    db = package_database(memory_reader(spec, tmp_path))
    assert db.kind is None and "does not open as an SQLite rpm database" in db.problem


def test_berkeley_db_rpm_database_is_not_read(tmp_path):
    spec = sample.base_system().add("/var/lib/rpm/Packages", b"\0" * 4096)
    db = package_database(memory_reader(spec, tmp_path))
    assert db.kind is None and "BerkeleyDB (/var/lib/rpm/Packages)" in db.problem


# -- apk ---------------------------------------------------------------------


def q1(data: bytes) -> str:
    return "Q1" + base64.b64encode(hashlib.sha1(data).digest()).decode()


APK_INSTALLED = f"""\
C:Q1abc=
P:busybox
V:1.36.1-r5
F:bin
R:busybox
a:0:0:755
Z:{q1(b"busybox")}
R:sh
a:0:0:777
Z:Q1bad!!

C:Q1def=
P:bbsuid
F:bin
R:bbsuid
a:0:0:4111
Z:{q1(b"bbsuid")}
F:etc/apk
M:0:0:755
R:world
Z:{q1(b"world")}
""".encode()


def test_apk_installed_parse():
    files = {f.path: f for f in parse_apk_installed(APK_INSTALLED)}
    assert set(files) == {"/bin/busybox", "/bin/sh", "/bin/bbsuid", "/etc/apk/world"}
    assert (files["/bin/bbsuid"].package, files["/bin/bbsuid"].mode) == ("bbsuid", 0o4111)
    assert files["/bin/bbsuid"].digest == ("sha1", hashlib.sha1(b"bbsuid").hexdigest())
    assert files["/bin/sh"].digest is None  # a checksum that does not decode is no checksum
    assert files["/etc/apk/world"].mode == 0o644  # no a: line: apk's default


def test_apk_database_in_the_guest(tmp_path):
    spec = sample.base_system().add("/lib/apk/db/installed", APK_INSTALLED)
    db = package_database(memory_reader(spec, tmp_path))
    assert db.kind == "apk" and db.owner("/bin/bbsuid") == "bbsuid" and db.mode("/bin/bbsuid") == 0o4111
    assert db.digest("/bin/busybox") == ("sha1", hashlib.sha1(b"busybox").hexdigest())


def test_dpkg_wins_over_a_stray_rpm_database(tmp_path):
    spec = dpkg_spec().add("/var/lib/rpm/Packages", b"\0" * 64)
    assert package_database(memory_reader(spec, tmp_path)).kind == "dpkg"



def test_dpkg_status_without_file_lists_is_incomplete(tmp_path):
    spec = sample.base_system().add("/var/lib/dpkg/status", "Package: login\nStatus: install ok installed\n\n")
    db = package_database(memory_reader(spec, tmp_path))
    assert db.kind == "dpkg" and db.incomplete == "/var/lib/dpkg/info holds no package file lists"
