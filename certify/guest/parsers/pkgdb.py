"""The guest's package database: which package owns a path, and the digest it recorded.

Three formats are read, each by a pure parser:

- dpkg: ``/var/lib/dpkg/info/<package>.list`` (owned paths) and
  ``<package>.md5sums`` (MD5 of each shipped file, paths relative to /);
- RPM: ``rpmdb.sqlite``, whose ``Packages`` table holds one rpm header blob per
  package (the older BerkeleyDB and ndb formats are not read);
- apk: ``/lib/apk/db/installed`` (``P:`` package, ``F:`` directory, ``R:`` file,
  ``Z:`` checksum, ``a:`` owner:group:mode of the file just named);
- opkg (OpenWrt, Yocto): ``<dir>/info/<package>.list`` beside ``<dir>/status``,
  one owned path a line (a tab and more after it in some versions); opkg
  records no digests, so ownership is all it tells.

``package_database(reader)`` finds whichever the guest has, once per scan.
Checks use it to tell files a distribution shipped from files someone added
or changed afterwards.
"""

from __future__ import annotations

import base64
import binascii
import os
import posixpath
import re
import sqlite3
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from certify.guest.reader import GuestReader

DPKG_STATUS = "/var/lib/dpkg/status"
DPKG_INFO = "/var/lib/dpkg/info"
RPM_DIRS = ("/usr/lib/sysimage/rpm", "/var/lib/rpm")  # Fedora 36+ moved it; /var/lib/rpm is then a symlink
APK_INSTALLED = "/lib/apk/db/installed"
OPKG_DIRS = ("/usr/lib/opkg", "/var/lib/opkg", "/usr/lib/ipkg")  # OpenWrt, Yocto's default, ipkg before it
LIST_LIMIT = 64 * 1024 * 1024  # one package's file list; kernel module and doc packages run to megabytes
APK_LIMIT = 256 * 1024 * 1024
RPMDB_LIMIT = 1024 * 1024 * 1024
NO_DATABASE = "no package database (dpkg, rpm, apk or opkg) to tell package files from added ones"

# Merged /usr: /bin is a symlink to usr/bin, so a file dpkg lists as /bin/su is walked as /usr/bin/su.
MERGED_USR_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")

# rpm's PGPHASHALGO numbers (FILEDIGESTALGO) -> hashlib names; a header without the tag means MD5.
RPM_DIGEST_ALGOS = {1: "md5", 2: "sha1", 8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224"}

Digest = tuple[str, str]  # (hashlib algorithm name, lower-case hex)


# -- dpkg ------------------------------------------------------------------


def parse_dpkg_list(data: bytes) -> list[str]:
    """Paths of a ``.list`` file: one absolute path a line (``/.`` included)."""
    out = []
    for raw in data.decode("utf-8", "replace").splitlines():
        path = raw.rstrip("\r")
        if path.startswith("/"):
            out.append(posixpath.normpath(path) if path != "/." else "/")
    return out


_MD5SUMS_LINE = re.compile(r"^([0-9a-fA-F]{32}) [ *](.+)$")


def parse_dpkg_md5sums(data: bytes) -> dict[str, str]:
    """``<md5>  <path relative to />`` lines -> {absolute path: md5 hex}; other lines are skipped."""
    out = {}
    for raw in data.decode("utf-8", "replace").splitlines():
        match = _MD5SUMS_LINE.match(raw.rstrip("\r"))
        if match:
            out[posixpath.normpath("/" + match.group(2).lstrip("/"))] = match.group(1).lower()
    return out


def parse_opkg_list(data: bytes) -> list[str]:
    """An opkg ``.list``: an absolute path a line, optionally followed by a tab and the file's mode or link target."""
    return parse_dpkg_list(b"\n".join(line.split(b"\t", 1)[0] for line in data.splitlines()))


def dpkg_package_name(list_path: str) -> str:
    """/var/lib/dpkg/info/libc6:amd64.list -> libc6:amd64."""
    return posixpath.basename(list_path).rsplit(".", 1)[0]


# -- rpm -------------------------------------------------------------------

RPMTAG_NAME = 1000
RPMTAG_FILEMODES = 1030
RPMTAG_FILEDIGESTS = 1035
RPMTAG_DIRINDEXES = 1116
RPMTAG_BASENAMES = 1117
RPMTAG_DIRNAMES = 1118
RPMTAG_FILEDIGESTALGO = 5011

_INT16, _INT32, _STRING, _STRING_ARRAY, _I18NSTRING = 3, 4, 6, 8, 9
MAX_HEADER_ENTRIES = 1 << 16  # rpm's own header sanity limit is of this order


class RpmHeaderError(ValueError):
    """A header blob that does not parse: its package's files stay unowned rather than guessed."""


@dataclass(frozen=True)
class RpmFile:
    path: str
    mode: int | None
    digest: Digest | None  # None for files without one (ghosts, directories, links)


@dataclass(frozen=True)
class RpmPackage:
    name: str
    files: tuple[RpmFile, ...]


def _header_tags(blob: bytes, wanted: set[int]) -> dict[int, tuple[int, int, int, bytes]]:
    """{tag: (type, offset, count, data store)} for the wanted tags of an rpmdb header blob (no lead magic)."""
    if len(blob) < 8:
        raise RpmHeaderError("header shorter than its 8-byte preamble")
    index_count, data_length = struct.unpack(">II", blob[:8])
    if index_count > MAX_HEADER_ENTRIES:
        raise RpmHeaderError(f"header claims {index_count} index entries")
    store_start = 8 + 16 * index_count
    if store_start + data_length > len(blob):
        raise RpmHeaderError("header index or data store runs past the blob")
    store = blob[store_start : store_start + data_length]
    tags = {}
    for i in range(index_count):
        tag, kind, offset, count = struct.unpack(">IIII", blob[8 + 16 * i : 24 + 16 * i])
        if tag in wanted and tag not in tags:
            if offset > len(store):
                raise RpmHeaderError(f"tag {tag} points past the data store")
            tags[tag] = (kind, offset, count, store)
    return tags


def _strings(entry: tuple[int, int, int, bytes] | None) -> list[str]:
    if entry is None:
        return []
    kind, offset, count, store = entry
    if kind not in (_STRING, _STRING_ARRAY, _I18NSTRING):
        raise RpmHeaderError(f"expected strings, found type {kind}")
    out, pos = [], offset
    for _ in range(count if kind != _STRING else 1):
        end = store.find(b"\0", pos)
        if end < 0:
            raise RpmHeaderError("unterminated string in header")
        out.append(store[pos:end].decode("utf-8", "replace"))
        pos = end + 1
    return out


def _ints(entry: tuple[int, int, int, bytes] | None) -> list[int]:
    if entry is None:
        return []
    kind, offset, count, store = entry
    size = {_INT16: 2, _INT32: 4}.get(kind)
    if size is None:
        raise RpmHeaderError(f"expected integers, found type {kind}")
    if offset + size * count > len(store):
        raise RpmHeaderError("integer array runs past the data store")
    return list(struct.unpack(f">{count}{'H' if size == 2 else 'I'}", store[offset : offset + size * count]))


def parse_rpm_header(blob: bytes) -> RpmPackage:
    """One package's name and files from an rpmdb header blob (``il``, ``dl``, index entries, data store)."""
    wanted = {RPMTAG_NAME, RPMTAG_FILEMODES, RPMTAG_FILEDIGESTS, RPMTAG_DIRINDEXES, RPMTAG_BASENAMES,
              RPMTAG_DIRNAMES, RPMTAG_FILEDIGESTALGO}  # fmt: skip
    tags = _header_tags(blob, wanted)
    names = _strings(tags.get(RPMTAG_NAME))
    basenames = _strings(tags.get(RPMTAG_BASENAMES))
    dirnames = _strings(tags.get(RPMTAG_DIRNAMES))
    dirindexes = _ints(tags.get(RPMTAG_DIRINDEXES))
    modes = _ints(tags.get(RPMTAG_FILEMODES))
    digests = _strings(tags.get(RPMTAG_FILEDIGESTS))
    algo_numbers = _ints(tags.get(RPMTAG_FILEDIGESTALGO))
    algo = RPM_DIGEST_ALGOS.get(algo_numbers[0] if algo_numbers else 1)
    if len(dirindexes) != len(basenames):
        raise RpmHeaderError(f"{len(basenames)} basenames but {len(dirindexes)} directory indexes")
    files = []
    for i, (base, index) in enumerate(zip(basenames, dirindexes)):
        if index >= len(dirnames):
            raise RpmHeaderError(f"directory index {index} past {len(dirnames)} directories")
        digest = digests[i] if i < len(digests) else ""
        files.append(RpmFile(
            path=posixpath.normpath(dirnames[index] + base) if (dirnames[index] + base).startswith("/") else "",
            mode=modes[i] if i < len(modes) else None,
            digest=(algo, digest.lower()) if digest and algo else None,
        ))  # fmt: skip
    return RpmPackage(name=names[0] if names else "", files=tuple(f for f in files if f.path))


def read_rpm_sqlite(path: str) -> Iterator[RpmPackage | RpmHeaderError]:
    """Every package in an rpmdb.sqlite copy on the host; a blob that does not parse is yielded as its error.

    The file came from the guest: the schema is not trusted (no functions
    from it run) and nothing is written back to it.
    """
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA trusted_schema = OFF")
        connection.execute("PRAGMA query_only = ON")
        for (blob,) in connection.execute("SELECT blob FROM Packages ORDER BY hnum"):
            if not isinstance(blob, bytes):
                yield RpmHeaderError("Packages row without a blob")
                continue
            try:
                yield parse_rpm_header(blob)
            except RpmHeaderError as exc:
                yield exc
    finally:
        connection.close()


# -- apk -------------------------------------------------------------------


@dataclass(frozen=True)
class ApkFile:
    package: str
    path: str
    mode: int
    digest: Digest | None


def _apk_checksum(text: str) -> Digest | None:
    """``Q1<base64 sha1>`` (``Q2``: sha256) -> (algo, hex); other forms are not understood."""
    algo = {"Q1": "sha1", "Q2": "sha256"}.get(text[:2])
    if algo is None:
        return None
    try:
        return algo, base64.b64decode(text[2:], validate=True).hex()
    except (binascii.Error, ValueError):
        return None


def parse_apk_installed(data: bytes) -> list[ApkFile]:
    """Files of every package in apk's ``installed`` database.

    A file without an ``a:`` line has apk's default ACL, root:root 0644.
    """
    out: list[ApkFile] = []
    package, directory = "", ""
    current: dict | None = None

    def flush() -> None:
        nonlocal current
        if current is not None:
            out.append(ApkFile(**current))
            current = None

    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.rstrip("\r")
        if not line:  # a blank line ends a package's block
            flush()
            package, directory = "", ""
            continue
        key, _, value = line.partition(":")
        if key == "P":
            flush()
            package, directory = value, ""
        elif key == "F":
            flush()
            directory = value.strip("/")
        elif key == "R":
            flush()
            current = {"package": package, "path": posixpath.normpath("/" + posixpath.join(directory, value)),
                       "mode": 0o644, "digest": None}  # fmt: skip
        elif key == "a" and current is not None:
            mode = value.rsplit(":", 1)[-1]
            if re.fullmatch(r"[0-7]{1,6}", mode):
                current["mode"] = int(mode, 8)
        elif key == "Z" and current is not None:
            current["digest"] = _apk_checksum(value)
    flush()
    return out


# -- the database a guest has ------------------------------------------------


def merged_usr_aliases(is_link: Callable[[str], bool]) -> tuple[str, ...]:
    """Top-level directories that are symlinks into /usr (merged /usr), e.g. ('bin', 'lib')."""
    return tuple(d for d in MERGED_USR_DIRS if is_link("/" + d))


def canonical(path: str, aliases: Iterable[str]) -> str:
    """/bin/su -> /usr/bin/su when /bin is a symlink to usr/bin: the name the walk sees."""
    for top in aliases:
        prefix = f"/{top}/"
        if path.startswith(prefix):
            return "/usr" + path
    return path


@dataclass
class PackageDatabase:
    """Ownership and recorded digests of package files; ``kind`` None when the guest has none readable."""

    kind: str | None  # "dpkg", "rpm", "apk", "opkg"
    problem: str | None = None  # why there is none: missing, or a format that is not read
    incomplete: str | None = None  # why some packages' files may be missing from ``owners``
    aliases: tuple[str, ...] = ()
    owners: dict[str, str] = field(default_factory=dict)  # canonical path -> package
    modes: dict[str, int] = field(default_factory=dict)  # recorded file modes (rpm, apk; dpkg keeps none)
    _digests: dict[str, Digest] = field(default_factory=dict)
    _load_digests: Callable[[set[str]], dict[str, Digest]] | None = None  # dpkg: read the few .md5sums needed
    _loaded_packages: set[str] = field(default_factory=set)

    def owner(self, path: str) -> str | None:
        return self.owners.get(canonical(path, self.aliases))

    def mode(self, path: str) -> int | None:
        return self.modes.get(canonical(path, self.aliases))

    def digest(self, path: str) -> Digest | None:
        return self.digests([path]).get(path)

    def digests(self, paths: Iterable[str]) -> dict[str, Digest]:
        """Recorded digests of ``paths`` (those the database has one for), loading what is needed in one batch."""
        wanted = {p: canonical(p, self.aliases) for p in paths}
        if self._load_digests is not None:
            packages = {self.owners[c] for c in wanted.values() if c in self.owners} - self._loaded_packages
            if packages:
                for path, digest in self._load_digests(packages).items():
                    self._digests.setdefault(canonical(path, self.aliases), digest)
                self._loaded_packages |= packages
        return {p: self._digests[c] for p, c in wanted.items() if c in self._digests}


def package_database(reader: GuestReader) -> PackageDatabase:
    """The guest's package database, read once per scan and shared by every collector."""
    return reader.memo("pkgdb", _load)


def _load(reader: GuestReader) -> PackageDatabase:
    inventory = reader.inventory()
    aliases = merged_usr_aliases(lambda p: (st := inventory.get(p)) is not None and st.is_link)
    status = reader.stat(DPKG_STATUS)
    if status is not None and status.is_file:
        return _load_dpkg(reader, aliases)
    for directory in RPM_DIRS:
        sqlite_stat = reader.stat(directory + "/rpmdb.sqlite")
        if sqlite_stat is not None and sqlite_stat.is_file:
            return _load_rpm(reader, directory + "/rpmdb.sqlite", sqlite_stat.size, aliases)
    for directory in RPM_DIRS:
        for name, fmt in (("Packages", "BerkeleyDB"), ("Packages.db", "ndb")):
            legacy = reader.stat(f"{directory}/{name}")
            if legacy is not None and legacy.is_file:
                return PackageDatabase(None, f"the RPM database is {fmt} ({directory}/{name}), which is not read; "
                                             "only rpmdb.sqlite (RHEL 9, Fedora 33 and later) is")  # fmt: skip
    installed = reader.stat(APK_INSTALLED)
    if installed is not None and installed.is_file:
        data = reader.read(APK_INSTALLED, APK_LIMIT) or b""
        if installed.size > len(data):
            return PackageDatabase(None, f"{APK_INSTALLED} is {installed.size} bytes, over {APK_LIMIT}: not read")
        db = PackageDatabase("apk", aliases=aliases)
        for entry in parse_apk_installed(data):
            path = canonical(entry.path, aliases)
            db.owners.setdefault(path, entry.package)
            db.modes.setdefault(path, entry.mode)
            if entry.digest is not None:
                db._digests.setdefault(path, entry.digest)
        return db
    for directory in OPKG_DIRS:
        opkg_status = reader.stat(directory + "/status")
        if opkg_status is not None and opkg_status.is_file:
            return _load_opkg(reader, directory, aliases)
    return PackageDatabase(None, NO_DATABASE)


def _file_lists(reader: GuestReader, kind: str, info: str, parse: Callable[[bytes], Iterable[str]],
                aliases: tuple[str, ...]) -> PackageDatabase:  # fmt: skip
    """Ownership from one ``PACKAGE.list`` per package in ``info`` (dpkg and opkg keep them alike)."""
    inventory = reader.inventory()
    lists = [p for p in inventory.children(info) if p.endswith(".list") and inventory.entries[p].is_file]
    db = PackageDatabase(kind, aliases=aliases)
    contents = reader.read_many(lists, LIST_LIMIT)
    for list_path, data in sorted(contents.items()):
        package = dpkg_package_name(list_path)
        for path in parse(data):
            db.owners.setdefault(canonical(path, aliases), package)
    unread = sorted(p for p in lists if p not in contents or len(contents[p]) < inventory.entries[p].size)
    if unread:
        db.incomplete = f"{len(unread)} {kind} file list(s) not read in full ({', '.join(unread[:3])})"
    elif not lists:  # a status file without file lists (a stripped image): ownership is unknown, not absent
        db.incomplete = f"{info} holds no package file lists"
    return db


def _load_opkg(reader: GuestReader, directory: str, aliases: tuple[str, ...]) -> PackageDatabase:
    return _file_lists(reader, "opkg", directory + "/info", parse_opkg_list, aliases)


def _load_dpkg(reader: GuestReader, aliases: tuple[str, ...]) -> PackageDatabase:
    db = _file_lists(reader, "dpkg", DPKG_INFO, parse_dpkg_list, aliases)

    def load_md5sums(packages: set[str]) -> dict[str, Digest]:
        files = reader.read_many([f"{DPKG_INFO}/{p}.md5sums" for p in packages], LIST_LIMIT)
        out: dict[str, Digest] = {}
        for md5sums_path, data in sorted(files.items()):
            package = dpkg_package_name(md5sums_path)
            for path, md5 in parse_dpkg_md5sums(data).items():
                # Only the owner's record counts: another package's md5sums naming the path is a conflict, not proof.
                if db.owners.get(canonical(path, aliases)) == package:
                    out[path] = ("md5", md5)
        return out

    db._load_digests = load_md5sums
    return db


def _load_rpm(reader: GuestReader, path: str, size: int, aliases: tuple[str, ...]) -> PackageDatabase:
    if size > RPMDB_LIMIT:
        return PackageDatabase(None, f"{path} is {size} bytes, over {RPMDB_LIMIT}: not read")
    with tempfile.TemporaryDirectory(dir=reader.workdir, prefix="rpmdb-") as tmp:
        copy = os.path.join(tmp, "rpmdb.sqlite")
        for suffix in ("", "-wal"):  # an image shut down uncleanly keeps recent transactions in the WAL
            data = reader.read(path + suffix, RPMDB_LIMIT)
            if data is not None:
                with open(copy + suffix, "wb") as f:
                    f.write(data)
        db = PackageDatabase("rpm", aliases=aliases)
        broken = 0
        try:
            for package in read_rpm_sqlite(copy):
                if isinstance(package, RpmHeaderError):
                    broken += 1
                    continue
                for entry in package.files:
                    canon = canonical(entry.path, aliases)
                    db.owners.setdefault(canon, package.name)
                    if entry.mode is not None:
                        db.modes.setdefault(canon, entry.mode)
                    if entry.digest is not None:
                        db._digests.setdefault(canon, entry.digest)
        except sqlite3.DatabaseError as exc:
            return PackageDatabase(None, f"{path} does not open as an SQLite rpm database: {exc}")
    if broken and not db.owners:
        return PackageDatabase(None, f"{path}: none of its {broken} package headers parse")
    if broken:
        db.incomplete = f"{broken} package header(s) in {path} do not parse"
    return db
