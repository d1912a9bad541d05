"""File mode and ownership rules, as pure functions of a path's stat.

A rule says which permission bits a path may have at most and which
accounts and groups may own it; ``problems`` names every way a stat breaks
it, in words a report can show.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from certify.guest.reader import Stat

_BIT_NAMES = (
    (0o4000, "setuid"), (0o2000, "setgid"), (0o1000, "sticky"),
    (0o400, "owner read"), (0o200, "owner write"), (0o100, "owner execute"),
    (0o040, "group read"), (0o020, "group write"), (0o010, "group execute"),
    (0o004, "other read"), (0o002, "other write"), (0o001, "other execute"),
)  # fmt: skip

GROUP_OR_OTHER_WRITE = 0o022
NO_GROUP_OR_OTHER_WRITE = 0o7777 & ~GROUP_OR_OTHER_WRITE


def octal(perms: int) -> str:
    return f"{perms:04o}"


def bit_names(bits: int) -> str:
    """0o022 -> 'group write, other write'."""
    return ", ".join(name for bit, name in _BIT_NAMES if bits & bit)


def describe(st: Stat) -> str:
    """'mode 0644, owner 0:42' (uid:gid)."""
    return f"mode {octal(st.perms)}, owner {st.uid}:{st.gid}"


@dataclass(frozen=True)
class ModeRule:
    """At most ``max_perms``; owned by one of ``uids``; group one of ``gids`` (None: any group)."""

    max_perms: int
    uids: frozenset[int] = frozenset({0})
    gids: frozenset[int] | None = None
    expected: str = ""  # how a report states the rule, e.g. "root:shadow 0640 or stricter"

    def problems(self, st: Stat) -> list[str]:
        out = []
        extra = st.perms & ~self.max_perms
        if extra:
            out.append(f"mode {octal(st.perms)} allows {bit_names(extra)}")
        if st.uid not in self.uids:
            out.append(f"owner uid {st.uid} (expected {_one_of(self.uids)})")
        if self.gids is not None and st.gid not in self.gids:
            out.append(f"group gid {st.gid} (expected {_one_of(self.gids)})")
        return out


def _one_of(ids: Iterable[int]) -> str:
    ordered = sorted(ids)
    return str(ordered[0]) if len(ordered) == 1 else " or ".join(map(str, ordered))


# -- account databases -------------------------------------------------------

SHADOW_FILES = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-")
PASSWD_FILES = ("/etc/passwd", "/etc/group", "/etc/passwd-", "/etc/group-")
OPASSWD = "/etc/security/opasswd"  # pam_pwhistory's old password hashes
ACCOUNT_FILES = (*PASSWD_FILES, *SHADOW_FILES, OPASSWD)


def account_file_rule(path: str, shadow_gid: int | None) -> ModeRule:
    """The bound for one account database.

    Hash files: Debian ships root:shadow 0640, RHEL root:root 0000; both pass,
    and anything that adds bits or another owner does not. passwd and group
    are world-readable by design but never writable by anyone but root.
    """
    if path in SHADOW_FILES:
        gids = frozenset({0} if shadow_gid is None else {0, shadow_gid})
        return ModeRule(0o640, gids=gids, expected="owner root, group root or shadow, 0640 or stricter")
    if path == OPASSWD:
        return ModeRule(0o600, gids=frozenset({0}), expected="root:root 0600 or stricter")
    return ModeRule(0o644, gids=frozenset({0}), expected="root:root 0644 or stricter")


# -- SSH host keys -------------------------------------------------------------


def host_key_rule(path: str, st: Stat, ssh_keys_gid: int | None) -> ModeRule:
    """Private keys: root 0600, or 0640 for group ssh_keys (RHEL's ssh-keysign); public keys (.pub, tinysshd's .pk): root, no group/other write."""
    if path.endswith((".pub", ".pk")):
        return ModeRule(NO_GROUP_OR_OTHER_WRITE, expected="owner root, not writable by group or other")
    if ssh_keys_gid is not None and st.gid == ssh_keys_gid:
        return ModeRule(0o640, expected="root 0600, or root:ssh_keys 0640")
    return ModeRule(0o600, expected="root 0600" + (", or root:ssh_keys 0640" if ssh_keys_gid is not None else ""))


# -- world-writable paths and setuid files ---------------------------------------


def world_writable(st: Stat) -> bool:
    """A regular file anyone may write, or a directory anyone may write in without the sticky bit.

    Symlinks always show 0777 and devices, sockets and FIFOs are not content.
    """
    if st.is_file:
        return bool(st.perms & 0o002)
    return st.is_dir and bool(st.perms & 0o002) and not st.perms & 0o1000


def set_id(st: Stat) -> bool:
    return st.is_file and bool(st.perms & 0o6000)


# -- homes ---------------------------------------------------------------------

DEFAULT_HOME_MAX_MODE = 0o750  # CIS "home directories 750 or more restrictive"; Lynis HOME-9304


def home_rule(uids: Iterable[int], max_mode: int) -> ModeRule:
    return ModeRule(max_mode, uids=frozenset(uids), expected=f"owned by its user, {octal(max_mode)} or stricter")


def ssh_dir_rule(uids: Iterable[int]) -> ModeRule:
    return ModeRule(0o700, uids=frozenset(uids), expected="owned by its user, 0700")


def authorized_keys_rule(uids: Iterable[int]) -> ModeRule:
    """sshd's StrictModes refuses a file others may write; who may read it is not a secret."""
    return ModeRule(NO_GROUP_OR_OTHER_WRITE, uids=frozenset({*uids, 0}),
                    expected="owned by its user or root, not writable by group or other")  # fmt: skip


def private_key_rule(uids: Iterable[int]) -> ModeRule:
    """ssh refuses a private key group or other may read ("UNPROTECTED PRIVATE KEY FILE")."""
    return ModeRule(0o700, uids=frozenset(uids), expected="owned by its user, 0600")
