"""Guest facts about accounts: the account databases (and their backups) and the sudo/doas rules.

The effective password is the one PAM's pam_unix reads: /etc/passwd's
field, or /etc/shadow's when that field is 'x'. BusyBox's login and su
(BusyBox, Buildroot and OpenWrt images, Alpine's login) also read
/etc/shadow when the passwd field is a lone '*', so on such an image a
'*' in /etc/passwd locks nothing if /etc/shadow holds a hash or nothing.
"""

from __future__ import annotations

import posixpath
from collections import deque
from dataclasses import dataclass, field, replace

from certify.guest.parsers.accounts import (
    INVALID,
    USABLE,
    DoasRule,
    Group,
    LoginDefs,
    Sudoers,
    backup_of,
    includedir_member,
    parse_doas,
    parse_group,
    parse_login_defs,
    parse_shadow,
    parse_sudoers,
    password_state,
    resolve_include,
)
from certify.guest.parsers.passwd import parse_passwd
from certify.guest.parsers.uci import parse_uci
from certify.guest.reader import GuestReader, Stat
from certify.model import FactUnavailable, GuestCollector
from certify.plugins.hookspecs import hookimpl

DATABASE_LIMIT = 16 * 1024 * 1024
SUDOERS_LIMIT = 1024 * 1024
MAX_SUDOERS_FILES = 128  # sudo itself stops at 128 nested includes
MAX_INCLUDE_DEPTH = 8
UNKNOWN = "unknown"
PASSWD, SHADOW, GROUP, GSHADOW, LOGIN_DEFS = "/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow", "/etc/login.defs"
BACKUP_DIRS = ("/etc", "/var/backups")
HASHED_DATABASES = (PASSWD, SHADOW, GROUP, GSHADOW)  # subuid/subgid copies hold no passwords


@dataclass(frozen=True)
class PasswordField:
    """An account's effective password field: /etc/passwd's, or /etc/shadow's when passwd says 'x'."""

    state: str  # empty, locked, usable, invalid (no crypt output: as good as locked), unknown
    source: str  # the file it was read from
    line: int
    hash: str = field(default="", repr=False)  # only for 'usable'; checks test it, reports never show it
    reason: str = ""  # why the state is unknown
    note: str = ""  # why this file decides, when it is not the usual one


@dataclass(frozen=True)
class UserAccount:
    name: str
    uid: int | None
    gid: int | None
    shell: str
    line: int  # in /etc/passwd
    password: PasswordField


@dataclass(frozen=True)
class BackupFile:
    path: str
    live: str  # the database it copies
    disk: str | None
    stat: Stat | None
    former_hashes: tuple[str, ...]  # names whose usable hash here the live databases no longer hold
    truncated: bool


@dataclass(frozen=True)
class AccountDatabase:
    accounts: tuple[UserAccount, ...]
    groups: tuple[Group, ...]
    login_defs: LoginDefs
    hostname: str
    shadow_present: bool
    disks: dict[str, str | None]  # /etc/passwd and /etc/shadow -> the bundle disk holding them
    backups: tuple[BackupFile, ...]

    def named(self, name: str) -> UserAccount | None:
        return next((a for a in self.accounts if a.name == name), None)


def _read_files(reader: GuestReader, paths: list[str], limit: int) -> dict[str, bytes]:
    """One batched read; a path that is a symlink (read-only roots link /etc/passwd elsewhere) read through it."""
    inventory = reader.inventory()
    out = reader.read_many(paths, limit)
    for path in paths:
        entry = inventory.get(path)
        if path not in out and entry is not None and entry.is_link:
            data = reader.read(path, limit)
            if data is not None:
                out[path] = data
    return out


def _stat(reader: GuestReader, path: str) -> Stat | None:
    """From the one inventory walk; only a symlink costs a round trip (to stat what it points to)."""
    entry = reader.inventory().get(path)
    return reader.stat(path) if entry is not None and entry.is_link else entry


def _text(data: bytes | None) -> str:
    return "" if data is None else data.decode("utf-8", "surrogateescape")


BUSYBOX_LOGIN_PROGRAMS = ("/bin/login", "/usr/bin/login", "/bin/su", "/usr/bin/su")
BUSYBOX_NAMES = frozenset({"busybox", "busybox.suid", "busybox.nosuid", "bbsuid"})
UCI_SYSTEM = "/etc/config/system"  # OpenWrt keeps the host name here, not in /etc/hostname


def busybox_login(reader: GuestReader) -> str | None:
    """'/bin/login -> /bin/busybox' when the guest's login or su is a BusyBox applet; None otherwise."""
    inventory = reader.inventory()
    for path in BUSYBOX_LOGIN_PROGRAMS:
        entry = inventory.get(path)
        if entry is not None and entry.is_link and (target := reader.readlink(path)) is not None:
            if posixpath.basename(target) in BUSYBOX_NAMES:
                return f"{path} -> {target}"
    return None


def _inspected_hostname(reader: GuestReader) -> str:
    """The host name inspection found; libguestfs says 'unknown' when it found none (OpenWrt keeps it in UCI)."""
    name = reader.os.get("hostname") or ""
    return "" if name == "unknown" else name


def _uci_hostname(data: bytes | None) -> str:
    for section in parse_uci(_text(data)).of_type("system"):
        if (value := section.options.get("hostname")) is not None and value.value:
            return value.value
    return ""


def collect_accounts(reader: GuestReader) -> AccountDatabase:
    inventory = reader.inventory()
    backups = sorted(p for d in BACKUP_DIRS for p in inventory.children(d) if backup_of(p) is not None)
    files = _read_files(reader, [PASSWD, SHADOW, GROUP, GSHADOW, LOGIN_DEFS, "/etc/hostname", UCI_SYSTEM, *backups], DATABASE_LIMIT)
    if PASSWD not in files:
        raise FactUnavailable("no /etc/passwd in the guest: its accounts cannot be listed")
    for path in (PASSWD, SHADOW):
        if len(files.get(path, b"")) >= DATABASE_LIMIT:
            raise FactUnavailable(f"{path} is over {DATABASE_LIMIT} bytes: not read")
    shadow_present = SHADOW in files
    shadow: dict[str, tuple[str, int]] = {}
    for entry in parse_shadow(_text(files.get(SHADOW))):
        shadow.setdefault(entry.name, (entry.password, entry.line))  # getspnam returns the first
    accounts = []
    login = busybox_login(reader) if any(a.password == "*" for a in parse_passwd(_text(files[PASSWD]))) else None
    for account in parse_passwd(_text(files[PASSWD])):
        password = _effective_password(account.password, account.line, account.name, shadow, shadow_present)
        if login is not None and account.password == "*" and account.name in shadow:
            # BusyBox's correct_password(): a lone '*' (like 'x') sends it to /etc/shadow
            password = _effective_password("x", account.line, account.name, shadow, shadow_present)
            password = replace(password, note=f"/etc/passwd holds '*', and BusyBox login/su ({login}) then read /etc/shadow")
        accounts.append(UserAccount(account.name, account.uid, account.gid, account.shell, account.line, password))
    live_hashes = {(e.name, e.password) for p in HASHED_DATABASES for e in parse_shadow(_text(files.get(p)))}
    hostname = (_inspected_hostname(reader) or (_text(files.get("/etc/hostname")).strip().splitlines() or [""])[0]
                or _uci_hostname(files.get(UCI_SYSTEM)))  # fmt: skip
    return AccountDatabase(
        accounts=tuple(accounts),
        groups=tuple(parse_group(_text(files.get(GROUP)))),
        login_defs=parse_login_defs(_text(files.get(LOGIN_DEFS))),
        hostname=hostname,
        shadow_present=shadow_present,
        disks={p: reader.disk_file(p) for p in (PASSWD, SHADOW)},
        backups=tuple(_backup(reader, path, files.get(path), live_hashes) for path in backups),
    )


def _effective_password(value: str, line: int, name: str, shadow: dict[str, tuple[str, int]], shadow_present: bool) -> PasswordField:
    """What PAM's pam_unix compares against: the passwd field, unless it is 'x' and defers to shadow."""
    if value != "x":
        state = password_state(value)
        return PasswordField(state, PASSWD, line, value if state == USABLE else "")
    if not shadow_present:
        return PasswordField(UNKNOWN, SHADOW, 0, reason="no /etc/shadow")
    if name not in shadow:  # 'x' with no shadow entry: nothing any password could match
        return PasswordField(INVALID, SHADOW, 0)
    value, shadow_line = shadow[name]
    state = password_state(value)
    return PasswordField(state, SHADOW, shadow_line, value if state == USABLE else "")


def _backup(reader: GuestReader, path: str, data: bytes | None, live_hashes: set[tuple[str, str]]) -> BackupFile:
    live = backup_of(path) or ""
    former: list[str] = []
    if data is not None and live in HASHED_DATABASES:
        for entry in parse_shadow(_text(data)):
            usable = password_state(entry.password) == USABLE
            if usable and (entry.name, entry.password) not in live_hashes and entry.name not in former:
                former.append(entry.name)
    stat = _stat(reader, path)
    return BackupFile(path=path, live=live, disk=reader.disk_file(path), stat=stat, former_hashes=tuple(former),
                      truncated=data is not None and len(data) >= DATABASE_LIMIT)  # fmt: skip


# -- sudo and doas --------------------------------------------------------------------------------

SUDOERS, SUDOERS_D, DOAS, DOAS_D = "/etc/sudoers", "/etc/sudoers.d", "/etc/doas.conf", "/etc/doas.d"


@dataclass(frozen=True)
class SudoFile:
    path: str
    kind: str  # 'sudoers' or 'doas'
    disk: str | None
    stat: Stat | None  # of the file sudo opens (a symlink followed)
    sudoers: Sudoers | None = None
    doas: tuple[DoasRule, ...] = ()
    included_from: str = ""  # 'file:line' of the include that reached it


@dataclass(frozen=True)
class SudoConfig:
    files: tuple[SudoFile, ...]
    unread: tuple[str, ...]  # includes not followed because they went past the bounds
    cmnd_aliases: dict[str, tuple[str, ...]]  # sudo's aliases are global across the files it reads


def collect_sudo(reader: GuestReader) -> SudoConfig:
    """Every sudoers file sudo would read, following includes from /etc/sudoers, and doas.conf.

    With no /etc/sudoers at all, /etc/sudoers.d is read as the distributions'
    default '@includedir /etc/sudoers.d' would: installing sudo later turns it on.
    """
    inventory = reader.inventory()
    if inventory.get(PASSWD) is None:
        raise FactUnavailable("no /etc/passwd in the guest: not a Linux root filesystem")
    prefetch = [SUDOERS, DOAS]
    prefetch += [p for p in inventory.children(SUDOERS_D) if includedir_member(posixpath.basename(p))]
    prefetch += [p for p in inventory.children(DOAS_D) if p.endswith(".conf")]
    contents = _read_files(reader, prefetch, SUDOERS_LIMIT)
    hostname = _inspected_hostname(reader)
    files: list[SudoFile] = []
    unread: list[str] = []
    aliases: dict[str, tuple[str, ...]] = {}
    seen: set[str] = set()
    queue: deque[tuple[str, int, str]] = deque()
    if SUDOERS in contents:
        queue.append((SUDOERS, 0, ""))
    elif inventory.get(SUDOERS_D) is not None:
        queue.extend((p, 1, "the default @includedir (no /etc/sudoers)") for p in _dir_members(reader, SUDOERS_D))
    while queue:
        path, depth, origin = queue.popleft()
        if path in seen:
            continue
        if len(seen) >= MAX_SUDOERS_FILES:
            unread.append(f"more than {MAX_SUDOERS_FILES} sudoers files: {path} and later ones not read")
            break
        seen.add(path)
        data = contents.get(path)
        if data is None:
            data = reader.read(path, SUDOERS_LIMIT)
        if data is None:
            continue  # sudo's own error (a missing include), not a grant
        parsed = parse_sudoers(_text(data))
        aliases.update(parsed.cmnd_aliases)
        files.append(SudoFile(path, "sudoers", reader.disk_file(path), _stat(reader, path), sudoers=parsed, included_from=origin))
        for include in parsed.includes:
            target = resolve_include(include.path, path, hostname)
            where = f"{path}:{include.line}"
            if depth + 1 > MAX_INCLUDE_DEPTH:
                unread.append(f"{where}: includes nest deeper than {MAX_INCLUDE_DEPTH}: {target} not read")
                continue
            members = _dir_members(reader, target) if include.directory else [target]
            queue.extend((m, depth + 1, where) for m in members)
    for path in [DOAS] + sorted(p for p in contents if p.startswith(DOAS_D + "/")):
        if path in contents:
            rules = tuple(parse_doas(_text(contents[path])))
            files.append(SudoFile(path, "doas", reader.disk_file(path), _stat(reader, path), doas=rules))
    return SudoConfig(tuple(files), tuple(unread), aliases)


def _dir_members(reader: GuestReader, directory: str) -> list[str]:
    """The files of an @includedir sudo reads, in its (lexical) order."""
    inventory = reader.inventory()
    members = []
    for path in inventory.children(directory):
        entry = inventory.get(path)
        if includedir_member(posixpath.basename(path)) and entry is not None and (entry.is_file or entry.is_link):
            members.append(path)
    return sorted(members)


@hookimpl
def certify_guest_collectors() -> list[GuestCollector]:
    return [
        GuestCollector(os_types=("linux",), name="accounts", collect=collect_accounts,
                       description="/etc/passwd, /etc/shadow, /etc/group, /etc/login.defs and copies of them "
                                   "(/etc/shadow-, *.bak, /var/backups/*.bak)"),
        GuestCollector(os_types=("linux",), name="sudo_rules", collect=collect_sudo,
                       description="/etc/sudoers and the files it includes, /etc/doas.conf"),
    ]  # fmt: skip
