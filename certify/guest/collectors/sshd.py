"""The guest's effective sshd configuration, resolved from its files (sshd never runs)."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from certify.guest.parsers.passwd import Account, parse_passwd
from certify.guest.parsers.sshd_config import MAIN_CONFIG, SSH_DIR, Defaults, EffectiveConfig, compiled_defaults, glob_paths, resolve
from certify.guest.reader import GuestReader
from certify.model import GuestCollector
from certify.plugins.hookspecs import hookimpl

CONFIG_LIMIT = 256 * 1024
ACCOUNTS_LIMIT = 16 * 1024 * 1024
SSHD_BINARIES = ("/usr/sbin/sshd", "/usr/bin/sshd", "/sbin/sshd", "/usr/local/sbin/sshd")
MEMO_KEY = "sshd-config"


@dataclass(frozen=True)
class SshdConfig:
    """What the sshd checks need: whether sshd is there, its resolved configuration, the defaults it falls back on."""

    installed: bool
    config: EffectiveConfig | None  # None when there is no configuration to resolve
    defaults: Defaults
    problem: str | None  # why the configuration cannot be evaluated (sshd would refuse it, or it cannot be read)
    accounts: tuple[Account, ...]
    root_groups: frozenset[str] | None  # None when /etc/group could not be read
    binary: str | None = None
    disks: dict[str, str | None] = field(default_factory=dict)  # each file read -> the bundle disk holding it

    @property
    def evaluable(self) -> bool:
        return self.config is not None and self.problem is None


def _groups_of(name: str, gid: int | None, group_text: str) -> frozenset[str]:
    groups = set()
    for line in group_text.splitlines():
        fields = line.split(":")
        if len(fields) < 4 or line.startswith("#"):
            continue
        members = {m.strip() for m in fields[3].split(",") if m.strip()}
        if (gid is not None and fields[2] == str(gid)) or name in members:
            groups.add(fields[0])
    return frozenset(groups)


def _static_prefix(pattern: str) -> str:
    parts = []
    for part in pattern.split("/")[1:]:
        if any(c in part for c in "*?["):
            break
        parts.append(part)
    return "/" + "/".join(parts)


def load_sshd_config(reader: GuestReader) -> SshdConfig:
    """Resolve the configuration once per scan: the sshd checks and the authorized_keys collector share it.

    The main file's existence is asked directly so a guest without sshd
    costs no walk; otherwise the files under /etc/ssh (except host keys and
    moduli) and the account databases come in one batched read, and files an
    ``Include`` names elsewhere are read one by one.
    """
    defaults = compiled_defaults(reader.os)
    if reader.stat(MAIN_CONFIG) is None:
        inventory = reader.inventory()
        binary = next((b for b in SSHD_BINARIES if inventory.get(b) is not None), None)
        problem = None if binary is None else f"{binary} is installed but {MAIN_CONFIG} is missing: sshd would not start as shipped"
        return SshdConfig(binary is not None, None, defaults, problem, (), None, binary)
    inventory = reader.inventory()
    wanted = ["/etc/passwd", "/etc/group", MAIN_CONFIG]
    for path in [*inventory.children(SSH_DIR), *inventory.children(SSH_DIR + "/sshd_config.d")]:
        base = posixpath.basename(path)
        st = inventory.get(path)
        if st is not None and st.is_file and not base.startswith("ssh_host_") and base != "moduli" and not base.endswith(".pub"):
            wanted.append(path)
    fetched = reader.read_many(wanted, max(CONFIG_LIMIT, ACCOUNTS_LIMIT))
    unreadable: dict[str, str] = {}

    def read(path: str) -> str | None:
        data = fetched.get(path)
        if data is None:
            st = inventory.get(path)
            if st is not None and st.is_dir:
                return ""  # sshd opens a directory a glob matched and reads nothing from it
            data = reader.read(path, CONFIG_LIMIT + 1)
        if data is None:
            unreadable[path] = "not a readable regular file"
            return None
        if len(data) > CONFIG_LIMIT:
            unreadable[path] = f"larger than {CONFIG_LIMIT // 1024} KiB"
            return None
        return data.decode("utf-8", "replace")

    def glob(pattern: str) -> list[str]:
        # Walk down from the literal prefix through the inventory's children: no scan of the whole guest.
        depth = len(posixpath.normpath(pattern).split("/"))
        level = [_static_prefix(pattern)]
        while level and len(level[0].split("/")) < depth:
            level = [c for d in level for c in inventory.children(d)]
        return glob_paths(pattern, (p for p in level if inventory.get(p) is not None))

    root_home = "/root"
    passwd = fetched.get("/etc/passwd")
    accounts = tuple(parse_passwd(passwd.decode("utf-8", "replace"))) if passwd else ()
    root = next((a for a in accounts if a.name == "root"), None)
    if root is not None and root.home:
        root_home = root.home
    config = resolve(read, glob, MAIN_CONFIG, root_home)
    problems = [f"{p} ({unreadable[p.split(': ', 1)[0]]})" if p.split(": ", 1)[0] in unreadable else p for p in config.problems]
    group = fetched.get("/etc/group")
    root_groups = _groups_of("root", 0 if root is None else root.uid, group.decode("utf-8", "replace")) if group is not None else None
    problem = "; ".join(problems) if problems else None
    disks = {path: reader.disk_file(path) for path in {MAIN_CONFIG, *config.files}}
    return SshdConfig(True, config, defaults, problem, accounts, root_groups, disks=disks)


def collect_sshd_config(reader: GuestReader) -> SshdConfig:
    return reader.memo(MEMO_KEY, load_sshd_config)


@hookimpl
def certify_guest_collectors() -> list[GuestCollector]:
    return [
        GuestCollector(os_types=("linux",), name="sshd_config", collect=collect_sshd_config,
                       description="effective sshd configuration: /etc/ssh/sshd_config, its Includes and Match blocks"),
    ]  # fmt: skip
