"""Guest facts about file modes and owners: account databases, host keys, world-writable and setuid files, homes.

Everything comes from the reader's one-walk inventory (lstat of every path);
contents are read only for the few small files that need it (/etc/group,
/etc/passwd, /etc/login.defs, the package database, the setuid files the
package database records a digest for).
"""

from __future__ import annotations

import fnmatch
import hashlib
import posixpath
from dataclasses import dataclass

from certify.guest.collectors.ssh import find_host_keys, public_sibling
from certify.guest.parsers.accounts import parse_group, parse_login_defs
from certify.guest.parsers.passwd import guest_accounts
from certify.guest.parsers.perms import ACCOUNT_FILES, set_id, world_writable
from certify.guest.parsers.pkgdb import Digest, package_database
from certify.guest.reader import GuestReader, Stat
from certify.model import FactUnavailable, GuestCollector
from certify.plugins.hookspecs import hookimpl

ACCOUNT_DB_LIMIT = 16 * 1024 * 1024
SETID_READ_LIMIT = 64 * 1024 * 1024
PSEUDO_FS = ("/proc/", "/sys/", "/dev/", "/run/")  # empty mountpoints offline; anything under them is not the image's files
HOST_KEY_PATTERNS = ("ssh_host_*key", "*.pub")
AUTHORIZED_KEYS_NAMES = ("authorized_keys", "authorized_keys2")


@dataclass(frozen=True)
class PathMode:
    path: str
    disk: str | None
    stat: Stat
    via_link: bool = False  # the path is a symlink; ``stat`` is its target's


@dataclass(frozen=True)
class AccountFileModes:
    files: tuple[PathMode, ...]  # the account databases that exist (their targets, for symlinks)
    shadow_gid: int | None  # gid of group 'shadow' in /etc/group, when there is one


@dataclass(frozen=True)
class HostKeyModes:
    files: tuple[PathMode, ...]  # /etc/ssh/ssh_host_*key and /etc/ssh/*.pub, regular files
    ssh_keys_gid: int | None  # RHEL's group allowed to read host keys


@dataclass(frozen=True)
class WorldWritablePaths:
    paths: tuple[PathMode, ...]
    unexamined: tuple[str, ...]  # names that are not UTF-8: their modes are unknown


@dataclass(frozen=True)
class SetIdFile:
    path: str
    disk: str | None
    stat: Stat
    package: str | None  # the package that owns it
    recorded_mode: int | None  # as the package database records it (rpm, apk)
    recorded: Digest | None  # the digest the package database records
    actual: str | None  # this file's digest with the recorded algorithm
    unread: str | None = None  # why ``actual`` is missing although ``recorded`` is known


@dataclass(frozen=True)
class SetIdInventory:
    database: str | None  # dpkg, rpm, apk
    problem: str | None  # why there is no database to compare with
    incomplete: str | None  # why some packages' files may be missing from the database
    files: tuple[SetIdFile, ...]
    unexamined: tuple[str, ...]


@dataclass(frozen=True)
class HomePath:
    path: str
    disk: str | None
    stat: Stat
    kind: str  # home, ssh-dir, authorized-keys, private-key
    users: tuple[str, ...]  # accounts whose home holds it
    uids: tuple[int, ...]


@dataclass(frozen=True)
class HomeModes:
    paths: tuple[HomePath, ...]
    uid_min: int


def _group_ids(reader: GuestReader) -> dict[str, int]:
    return reader.memo("perms:group-ids", lambda r: group_ids(r.read_text("/etc/group", ACCOUNT_DB_LIMIT) or ""))


def _mode_scan(reader: GuestReader) -> tuple[list[tuple[str, Stat]], list[tuple[str, Stat]]]:
    """(world-writable paths, setuid/setgid files): one pass over the inventory for both facts."""

    def scan(r: GuestReader):
        writable, setid = [], []
        for path, st in r.inventory().entries.items():
            if not st.mode & 0o6002 or path.startswith(PSEUDO_FS):  # most paths: neither other-write nor set-id
                continue
            if world_writable(st):
                writable.append((path, st))
            if set_id(st):
                setid.append((path, st))
        return sorted(writable), sorted(setid)

    return reader.memo("perms:mode-scan", scan)


def collect_account_files(reader: GuestReader) -> AccountFileModes:
    inventory = reader.inventory()
    if inventory.get("/etc/passwd") is None:
        raise FactUnavailable("the guest has no /etc/passwd: its account databases cannot be judged")
    files = []
    for path in ACCOUNT_FILES:
        st, via_link = inventory.get(path), False
        if st is not None and st.is_link:  # judge what the name leads to: a link can expose a copy elsewhere
            st, via_link = reader.stat(path), True
        if st is not None and st.is_file:
            files.append(PathMode(path, reader.disk_file(path), st, via_link))
    return AccountFileModes(tuple(sorted(files, key=lambda f: f.path)), _group_ids(reader).get("shadow"))


def collect_host_key_modes(reader: GuestReader) -> HostKeyModes:
    """/etc/ssh's keys and public keys, and every other host key ssh-host-keys-present finds with its public key."""
    inventory = reader.inventory()
    paths = {p for p in inventory.children("/etc/ssh") if any(fnmatch.fnmatchcase(posixpath.basename(p), n) for n in HOST_KEY_PATTERNS)}
    for key in find_host_keys(reader):
        paths.update((key.path, public_sibling(key.path)))
    files = [PathMode(p, reader.disk_file(p), st) for p in sorted(paths) if (st := inventory.get(p)) is not None and st.is_file]
    gid = _group_ids(reader).get("ssh_keys") if files else None
    return HostKeyModes(tuple(files), gid)


def collect_world_writable(reader: GuestReader) -> WorldWritablePaths:
    writable, _ = _mode_scan(reader)
    paths = tuple(PathMode(path, reader.disk_file(path), st) for path, st in writable)
    return WorldWritablePaths(paths, reader.inventory().unstatable)


def collect_setid_files(reader: GuestReader) -> SetIdInventory:
    _, setid = _mode_scan(reader)
    unexamined = reader.inventory().unstatable
    if not setid:  # nothing to tell apart: the package database is not needed
        return SetIdInventory(None, None, None, (), unexamined)
    db = package_database(reader)
    if db.kind is None:
        files = tuple(SetIdFile(p, reader.disk_file(p), st, None, None, None, None) for p, st in setid)
        return SetIdInventory(None, db.problem, None, files, unexamined)
    recorded = db.digests(p for p, _ in setid)
    to_read = [p for p, st in setid if p in recorded and st.size <= SETID_READ_LIMIT]
    contents = reader.read_many(to_read, SETID_READ_LIMIT) if to_read else {}
    files = []
    for path, st in setid:
        actual, unread = None, None
        if path in recorded:
            data = contents.get(path)
            if st.size > SETID_READ_LIMIT:
                unread = f"{st.size} bytes, over the {SETID_READ_LIMIT}-byte read limit"
            elif data is None or len(data) != st.size:
                unread = "its content could not be read"
            else:
                actual = hashlib.new(recorded[path][0], data).hexdigest()
        files.append(SetIdFile(path, reader.disk_file(path), st, db.owner(path), db.mode(path), recorded.get(path), actual, unread))
    return SetIdInventory(db.kind, None, db.incomplete, tuple(files), unexamined)


def collect_home_modes(reader: GuestReader) -> HomeModes:
    inventory = reader.inventory()
    passwd_stat = inventory.get("/etc/passwd")
    if passwd_stat is None:
        raise FactUnavailable("the guest has no /etc/passwd: its homes are unknown")
    if passwd_stat.size > ACCOUNT_DB_LIMIT:
        raise FactUnavailable(f"/etc/passwd is {passwd_stat.size} bytes, over {ACCOUNT_DB_LIMIT}: homes cannot all be listed")
    uid_min = parse_login_defs(reader.read_text("/etc/login.defs", ACCOUNT_DB_LIMIT) or "").uid_min
    owners: dict[str, list[tuple[str, int]]] = {}
    for account in guest_accounts(reader):
        # System accounts' homes (/usr/sbin, /var/www, /run/sshd) belong to packages, not to people.
        if account.uid is not None and (account.uid == 0 or account.uid >= uid_min) and account.home not in ("", "/"):
            owners.setdefault(account.home, []).append((account.name, account.uid))
    owners.setdefault("/root", [("root", 0)])
    paths = []
    for home, accounts in sorted(owners.items()):
        users, uids = tuple(a[0] for a in accounts), tuple(sorted({a[1] for a in accounts}))

        def entry(path: str, st: Stat, kind: str, users=users, uids=uids) -> HomePath:
            return HomePath(path, reader.disk_file(path), st, kind, users, uids)

        st = inventory.get(home)
        if st is None or not st.is_dir:  # a missing home (/nonexistent) has nothing to expose; a symlinked one is judged where it lies
            continue
        paths.append(entry(home, st, "home"))
        ssh_dir = posixpath.join(home, ".ssh")
        ssh_stat = inventory.get(ssh_dir)
        if ssh_stat is None or not ssh_stat.is_dir:
            continue
        paths.append(entry(ssh_dir, ssh_stat, "ssh-dir"))
        for path in inventory.children(ssh_dir):
            child = inventory.entries[path]
            name = posixpath.basename(path)
            if not child.is_file:
                continue
            if name in AUTHORIZED_KEYS_NAMES:
                paths.append(entry(path, child, "authorized-keys"))
            elif name.startswith("id_") and not name.endswith(".pub"):
                paths.append(entry(path, child, "private-key"))
    return HomeModes(tuple(paths), uid_min)


def group_ids(text: str) -> dict[str, int]:
    """/etc/group -> {name: gid}; the first line for a name wins, as getgrnam's does."""
    out: dict[str, int] = {}
    for group in parse_group(text):
        if group.gid is not None:
            out.setdefault(group.name, group.gid)
    return out


@hookimpl
def certify_guest_collectors() -> list[GuestCollector]:
    return [
        GuestCollector(os_types=("linux",), name="account_file_modes", collect=collect_account_files,
                       description="mode and owner of /etc/passwd, group, shadow, gshadow, their - backups and opasswd"),
        GuestCollector(os_types=("linux",), name="ssh_host_key_modes", collect=collect_host_key_modes,
                       description="mode and owner of /etc/ssh/ssh_host_*key, /etc/ssh/*.pub and every other host key "
                                   "ssh_host_keys finds (dropbear, tinysshd, configured keys) with its public key"),
        GuestCollector(os_types=("linux",), name="world_writable_paths", collect=collect_world_writable,
                       description="files others may write and directories others may write without the sticky bit"),
        GuestCollector(os_types=("linux",), name="setid_files", collect=collect_setid_files,
                       description="setuid/setgid files with their package owner and recorded digest"),
        GuestCollector(os_types=("linux",), name="home_modes", collect=collect_home_modes,
                       description="mode and owner of homes (UID_MIN and up, root), ~/.ssh, authorized_keys, id_* keys"),
    ]  # fmt: skip
