"""Guest facts about SSH keys: host keys and authorized_keys files (the usual names and every AuthorizedKeysFile sshd is configured with)."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from certify.guest.collectors.sshd import MEMO_KEY as SSHD_MEMO_KEY
from certify.guest.collectors.sshd import load_sshd_config
from certify.guest.parsers.passwd import PASSWD_LIMIT, Account, guest_accounts
from certify.guest.parsers.sshd_config import MAIN_CONFIG
from certify.guest.parsers.sshkeys import KeyEntry, PublicKey, parse_authorized_keys, parse_public_key_line, private_key_public
from certify.guest.reader import GuestReader, glob_escape
from certify.model import FactUnavailable, GuestCollector
from certify.plugins.hookspecs import hookimpl

KEY_FILE_LIMIT = 64 * 1024
AUTHORIZED_KEYS_LIMIT = 1024 * 1024
HOST_KEY_GLOBS = ("/etc/ssh/ssh_host_*_key", "/etc/ssh/ssh_host_key")
AUTHORIZED_KEYS_NAMES = ("authorized_keys", "authorized_keys2")


@dataclass(frozen=True)
class HostKeyFile:
    path: str
    disk: str | None
    key: PublicKey | None  # from the .pub beside it, or the private key's public half


@dataclass(frozen=True)
class AuthorizedKeysFile:
    path: str
    disk: str | None
    users: tuple[str, ...]  # accounts whose home holds it
    entries: tuple[KeyEntry, ...]
    truncated: bool


def collect_host_keys(reader: GuestReader) -> list[HostKeyFile]:
    found = []
    for path in sorted({p for pattern in HOST_KEY_GLOBS for p in reader.glob(pattern)}):
        data = reader.read(path, KEY_FILE_LIMIT)
        if data is None:  # a directory or device named like a key is not a key
            continue
        pub_text = reader.read_text(path + ".pub", KEY_FILE_LIMIT)
        key = parse_public_key_line(pub_text.strip()) if pub_text else None
        found.append(HostKeyFile(path=path, disk=reader.disk_file(path), key=key or private_key_public(data)))
    return found


def expand_authorized_keys_path(pattern: str, account: Account) -> str | None:
    """An AuthorizedKeysFile value for one account: %h home, %u name, %U uid, %% a '%'; relative to the home."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "%" and i + 1 < len(pattern):
            token = pattern[i + 1]
            if token == "%":
                out.append("%")
            elif token == "h":
                out.append(account.home)
            elif token == "u":
                out.append(account.name)
            elif token == "U":
                if account.uid is None:
                    return None
                out.append(str(account.uid))
            else:
                return None  # a token sshd does not know: it refuses the path
            i += 2
            continue
        out.append(c)
        i += 1
    path = "".join(out)
    if not path.startswith("/"):
        if not account.home:
            return None
        path = posixpath.join(account.home, path)
    return posixpath.normpath(path)


def configured_authorized_keys(reader: GuestReader, accounts: list[Account]) -> dict[str, list[str]]:
    """path -> accounts, for every AuthorizedKeysFile value of the effective sshd configuration.

    The startup value (or the default) and every value inside a Match block
    count: any of them may be the one sshd consults for some connection.
    """
    if reader.stat(MAIN_CONFIG) is None:
        return {}
    sshd = reader.memo(SSHD_MEMO_KEY, load_sshd_config)
    if sshd.config is None:
        return {}
    startup = sshd.config.startup("AuthorizedKeysFile")
    patterns = list(startup.args) if startup else sshd.defaults.get("AuthorizedKeysFile").split()
    for directive in sshd.config.directives:
        if directive.keyword == "authorizedkeysfile" and directive.in_match:
            patterns.extend(directive.args)
    paths: dict[str, list[str]] = {}
    for pattern in dict.fromkeys(p for p in patterns if p.lower() != "none"):
        for account in accounts:
            path = expand_authorized_keys_path(pattern, account)
            if path is not None and account.name not in paths.setdefault(path, []):
                paths[path].append(account.name)
    return paths


def collect_authorized_keys(reader: GuestReader) -> list[AuthorizedKeysFile]:
    owners: dict[str, list[str]] = {"/root": []}
    passwd_stat = reader.stat("/etc/passwd")
    if passwd_stat is not None and passwd_stat.size > PASSWD_LIMIT:
        raise FactUnavailable(f"/etc/passwd is {passwd_stat.size} bytes, over {PASSWD_LIMIT}: homes cannot all be listed")
    accounts = list(guest_accounts(reader))  # a copy: root may be added below
    for account in accounts:
        if account.home:
            owners.setdefault(account.home, []).append(account.name)
    if not any(a.name == "root" for a in accounts):
        accounts.append(Account(name="root", uid=0, home="/root", shell="", line=0))
    found = []
    for home in sorted(owners):
        for path in reader.glob(glob_escape(posixpath.join(home, ".ssh")) + "/authorized_keys*"):
            if path.rsplit("/", 1)[-1] not in AUTHORIZED_KEYS_NAMES:
                continue
            data = reader.read(path, AUTHORIZED_KEYS_LIMIT)
            if data is None:
                continue
            stat = reader.stat(path)
            found.append(
                AuthorizedKeysFile(
                    path=path,
                    disk=reader.disk_file(path),
                    users=tuple(owners[home]) or ("root",),
                    entries=tuple(parse_authorized_keys(data.decode("utf-8", "replace"))),
                    truncated=stat is not None and stat.size > len(data),
                )
            )
    found.extend(_configured_files(reader, accounts, {f.path for f in found}))
    return found


def _configured_files(reader: GuestReader, accounts: list[Account], seen: set[str]) -> list[AuthorizedKeysFile]:
    """The AuthorizedKeysFile paths of the sshd configuration not already read: one batched read."""
    configured = {p: users for p, users in configured_authorized_keys(reader, accounts).items() if p not in seen}
    if not configured:
        return []
    inventory = reader.inventory()
    existing = [p for p in configured if (st := inventory.get(p)) is not None and st.is_file]
    contents = reader.read_many(existing, AUTHORIZED_KEYS_LIMIT)
    out = []
    for path in sorted(contents):
        data = contents[path]
        users = configured[path]
        out.append(
            AuthorizedKeysFile(
                path=path,
                disk=reader.disk_file(path),
                users=("every account",) if len(accounts) > 1 and len(users) == len(accounts) else tuple(users),
                entries=tuple(parse_authorized_keys(data.decode("utf-8", "replace"))),
                truncated=inventory.entries[path].size > len(data),
            )
        )
    return out


@hookimpl
def certify_guest_collectors() -> list[GuestCollector]:
    return [
        GuestCollector(os_types=("linux",), name="ssh_host_keys", collect=collect_host_keys,
                       description="SSH host key files under /etc/ssh"),
        GuestCollector(os_types=("linux",), name="authorized_keys", collect=collect_authorized_keys,
                       description="authorized_keys files in /root and every home in /etc/passwd"),
    ]  # fmt: skip
