"""Guest facts about SSH keys: host keys and authorized_keys files.

Host keys of every SSH server an image may run: OpenSSH's (/etc/ssh and
every ``HostKey`` of the effective sshd_config), dropbear's
(/etc/dropbear/dropbear_*_host_key in dropbear's own binary format,
dropbear-initramfs's, and every -r of a dropbear started at boot),
tinysshd's key directories (.ed25519.sk), libssh servers' and Gitea's
configured keys, and any file named like a host key that holds a private
key. authorized_keys: the usual names in every home, every
AuthorizedKeysFile sshd is configured with, and dropbear's places
(/etc/dropbear/authorized_keys for root on OpenWrt, -D directories,
dropbear-initramfs).
"""

from __future__ import annotations

import fnmatch
import posixpath
from dataclasses import dataclass

from certify.guest.collectors.dropbear import MEMO_KEY as DROPBEAR_MEMO_KEY
from certify.guest.collectors.dropbear import load_dropbear
from certify.guest.collectors.sshd import MEMO_KEY as SSHD_MEMO_KEY
from certify.guest.collectors.sshd import load_sshd_config
from certify.guest.parsers.dropbear import DEFAULT_AUTHORIZED_KEYS_DIR
from certify.guest.parsers.hostkeys import LIBSSH_CONFIGS, gitea_host_keys, libssh_host_keys, named_like_host_key
from certify.guest.parsers.passwd import PASSWD_LIMIT, Account, guest_accounts
from certify.guest.parsers.sshd_config import MAIN_CONFIG
from certify.guest.parsers.sshkeys import (
    TINYSSH_SECRET,
    KeyEntry,
    PublicKey,
    parse_authorized_keys,
    parse_public_key_line,
    private_key_public,
    tinyssh_public_key,
    tinyssh_secret_key_public,
)
from certify.guest.reader import GuestReader, glob_escape
from certify.model import FactUnavailable, GuestCollector
from certify.plugins.hookspecs import hookimpl

KEY_FILE_LIMIT = 64 * 1024
AUTHORIZED_KEYS_LIMIT = 1024 * 1024
AUTHORIZED_KEYS_NAMES = ("authorized_keys", "authorized_keys2")
OPENSSH_KEY_NAMES = ("ssh_host_*_key", "ssh_host_key")
# dropbear's compiled-in key directory, and dropbear-initramfs's (Debian 12+, and before it)
DROPBEAR_KEY_DIRS = ("/etc/dropbear", "/etc/dropbear/initramfs", "/etc/dropbear-initramfs")
DROPBEAR_KEY_NAME = "dropbear_*_host_key"
# Trees swept for files named like host keys: configuration and application data, not homes (user keys are
# ssh-user-private-keys') nor the system's code.
NAMED_KEY_TREES = ("/etc", "/opt", "/srv", "/var/lib", "/usr/local", "/data")
_SWEEP_SKIP = frozenset({"node_modules", "site-packages", "dist-packages", "__pycache__", ".git", "doc", "docs", "test", "tests"})
GITEA_CONFIGS = ("/etc/gitea/app.ini", "/etc/forgejo/app.ini", "/etc/gogs/app.ini")
# Where a root login's keys live besides ~/.ssh: OpenWrt's dropbear reads root's from /etc/dropbear
# (its 100-pubkey_path patch); dropbear-initramfs (unlocking disks at boot) from its own directory.
DROPBEAR_ROOT_KEYS = {
    "/etc/dropbear/authorized_keys": "root (OpenWrt's dropbear reads root's keys here)",
    "/etc/dropbear/initramfs/authorized_keys": "root of the initramfs (dropbear-initramfs)",
    "/etc/dropbear-initramfs/authorized_keys": "root of the initramfs (dropbear-initramfs)",
}
HOST_KEYS_MEMO = "ssh:host-keys"


@dataclass(frozen=True)
class HostKeyFile:
    path: str
    disk: str | None
    key: PublicKey | None  # from the public key beside it, or the private key's public half
    source: str = ""  # which server's key it is and what names it, when not OpenSSH's default location


@dataclass(frozen=True)
class AuthorizedKeysFile:
    path: str
    disk: str | None
    users: tuple[str, ...]  # accounts whose home holds it
    entries: tuple[KeyEntry, ...]
    truncated: bool


def _host_key_candidates(reader: GuestReader) -> dict[str, tuple[str, bool]]:
    """path -> (source for evidence, whether the file counts even when it holds no recognisable key).

    Files at a server's own key locations, or named by its configuration,
    are host keys whatever they hold (the server would load them); files
    found only by their name count when they hold a private key.
    """
    inventory = reader.inventory()
    found: dict[str, tuple[str, bool]] = {}

    def add(path: str, source: str, certain: bool = True) -> None:
        st = inventory.get(path)
        if st is not None and (st.is_file or st.is_link) and path not in found:
            found[path] = (source, certain)

    for path in inventory.children("/etc/ssh"):
        if any(fnmatch.fnmatchcase(posixpath.basename(path), n) for n in OPENSSH_KEY_NAMES):
            add(path, "")
    for directory in DROPBEAR_KEY_DIRS:
        for path in inventory.children(directory):
            if fnmatch.fnmatchcase(posixpath.basename(path), DROPBEAR_KEY_NAME):
                add(path, "dropbear host key" + (", dropbear-initramfs" if directory != "/etc/dropbear" else ""))
    if reader.stat(MAIN_CONFIG) is not None:
        sshd = reader.memo(SSHD_MEMO_KEY, load_sshd_config)
        for directive in sshd.config.directives if sshd.config is not None else ():
            if directive.keyword == "hostkey" and directive.args:
                path = posixpath.normpath(posixpath.join("/", directive.args[0]))
                add(path, f"named by 'HostKey {directive.args[0]}' at {directive.origin}")
    dropbear = reader.memo(DROPBEAR_MEMO_KEY, load_dropbear)
    for instance in dropbear.instances:
        for path, origin in instance.options.host_keys:
            add(posixpath.normpath(posixpath.join("/", path)), f"dropbear host key, named by {origin.describe()}")
    configs = [p for p in (*LIBSSH_CONFIGS, *GITEA_CONFIGS) if inventory.get(p) is not None]
    configs += [p for p, st in inventory if p.endswith("/custom/conf/app.ini") and st.is_file]
    for config, data in reader.read_many(configs, KEY_FILE_LIMIT).items():
        text = data.decode("utf-8", "replace")
        named = libssh_host_keys(config, text) if config in LIBSSH_CONFIGS else gitea_host_keys(config, text)
        server = "libssh server" if config in LIBSSH_CONFIGS else "Gitea built-in SSH server"
        for key in named:
            add(key.path, f"{server} host key, {key.describe()}")
    for path, st in inventory:
        name = posixpath.basename(path)
        if name in TINYSSH_SECRET:
            add(path, f"tinysshd key directory {posixpath.dirname(path)}")
        elif (st.is_file and st.size <= KEY_FILE_LIMIT and named_like_host_key(path)
              and any(path.startswith(t + "/") for t in NAMED_KEY_TREES)
              and not _SWEEP_SKIP.intersection(path.split("/")[1:-1])):  # fmt: skip
            add(path, "named like a host key", certain=False)
    return found


def find_host_keys(reader: GuestReader) -> list[HostKeyFile]:
    """Every host key file, read in one batch with the public keys beside them; computed once per scan."""
    return reader.memo(HOST_KEYS_MEMO, _find_host_keys)


def public_sibling(path: str) -> str:
    """The public key file beside a private one: KEY.pub, or tinysshd's NAME.pk beside .NAME.sk."""
    name = posixpath.basename(path)
    if name in TINYSSH_SECRET:
        return posixpath.join(posixpath.dirname(path), TINYSSH_SECRET[name])
    return path + ".pub"


def _find_host_keys(reader: GuestReader) -> list[HostKeyFile]:
    candidates = _host_key_candidates(reader)
    inventory = reader.inventory()
    siblings = [s for p in candidates if inventory.get(s := public_sibling(p)) is not None]
    contents = reader.read_many([*candidates, *siblings], KEY_FILE_LIMIT)
    for path in candidates:  # a symlinked key: read through the link (the server would)
        entry = inventory.get(path)
        if path not in contents and entry is not None and entry.is_link and (data := reader.read(path, KEY_FILE_LIMIT)) is not None:
            contents[path] = data
    found = []
    for path in sorted(candidates):
        data = contents.get(path)
        if data is None:  # a directory or device named like a key is not a key
            continue
        source, certain = candidates[path]
        key = _public_half(path, data, contents.get(public_sibling(path)))
        if not certain and key is None and b"PRIVATE KEY-----" not in data:
            continue
        found.append(HostKeyFile(path=path, disk=reader.disk_file(path), key=key, source=source))
    return found


def _public_half(path: str, private: bytes, public: bytes | None) -> PublicKey | None:
    name = posixpath.basename(path)
    if name in TINYSSH_SECRET:
        from_pk = tinyssh_public_key(TINYSSH_SECRET[name], public) if public is not None else None
        return from_pk or tinyssh_secret_key_public(name, private)
    key = None
    if public:
        text = public.decode("utf-8", "replace").strip()
        key = parse_public_key_line(text.splitlines()[0]) if text else None
    return key or private_key_public(private)


def collect_host_keys(reader: GuestReader) -> list[HostKeyFile]:
    return find_host_keys(reader)


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
    configured = configured_authorized_keys(reader, accounts)
    for path, users in dropbear_authorized_keys(reader, accounts).items():
        configured.setdefault(path, []).extend(u for u in users if u not in configured.get(path, []))
    found.extend(_configured_files(reader, accounts, configured, {f.path for f in found}))
    return found


def dropbear_authorized_keys(reader: GuestReader, accounts: list[Account]) -> dict[str, list[str]]:
    """path -> accounts, for the keys dropbear reads outside ~/.ssh: OpenWrt's and dropbear-initramfs's root keys, -D DIR."""
    paths = {path: [who] for path, who in DROPBEAR_ROOT_KEYS.items()}
    dropbear = reader.memo(DROPBEAR_MEMO_KEY, load_dropbear)
    for directory, _instance in dropbear.authorized_keys_dirs:
        if directory == DEFAULT_AUTHORIZED_KEYS_DIR:
            continue
        for account in accounts:
            if directory.startswith("~"):  # dropbear expands ~ to each user's home
                if not account.home:
                    continue
                base = account.home + directory[1:]
            else:
                base = posixpath.join("/", directory)
            path = posixpath.normpath(posixpath.join(base, "authorized_keys"))
            if account.name not in paths.setdefault(path, []):
                paths[path].append(account.name)
    return paths


def _configured_files(reader: GuestReader, accounts: list[Account], paths: dict[str, list[str]], seen: set[str]) -> list[AuthorizedKeysFile]:
    """The configured authorized_keys paths not already read: one batched read."""
    configured = {p: users for p, users in paths.items() if p not in seen}
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
                       description="SSH host keys: /etc/ssh, sshd's HostKey, dropbear's (/etc/dropbear, -r), tinysshd "
                                   "key directories, libssh and Gitea configured keys, files named like host keys"),
        GuestCollector(os_types=("linux",), name="authorized_keys", collect=collect_authorized_keys,
                       description="authorized_keys files in /root and every home in /etc/passwd, sshd's AuthorizedKeysFile, "
                                   "dropbear's /etc/dropbear/authorized_keys and -D directories"),
    ]  # fmt: skip
