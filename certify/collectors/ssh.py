"""Guest facts about SSH keys: host keys and authorized_keys files."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from certify.guest import GuestReader, glob_escape
from certify.model import FactUnavailable, GuestCollector
from certify.passwd import parse_passwd
from certify.plugins.hookspecs import hookimpl
from certify.sshkeys import KeyEntry, PublicKey, parse_authorized_keys, parse_public_key_line, private_key_public

KEY_FILE_LIMIT = 64 * 1024
PASSWD_LIMIT = 16 * 1024 * 1024
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


def collect_authorized_keys(reader: GuestReader) -> list[AuthorizedKeysFile]:
    owners: dict[str, list[str]] = {"/root": []}
    passwd_stat = reader.stat("/etc/passwd")
    if passwd_stat is not None and passwd_stat.size > PASSWD_LIMIT:
        raise FactUnavailable(f"/etc/passwd is {passwd_stat.size} bytes, over {PASSWD_LIMIT}: homes cannot all be listed")
    passwd = reader.read_text("/etc/passwd", PASSWD_LIMIT) or ""
    for account in parse_passwd(passwd):
        if account.home:
            owners.setdefault(account.home, []).append(account.name)
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
    return found


@hookimpl
def certify_guest_collectors() -> list[GuestCollector]:
    return [
        GuestCollector(name="ssh_host_keys", collect=collect_host_keys,
                       description="SSH host key files under /etc/ssh"),
        GuestCollector(name="authorized_keys", collect=collect_authorized_keys,
                       description="authorized_keys files in /root and every home in /etc/passwd"),
    ]  # fmt: skip
