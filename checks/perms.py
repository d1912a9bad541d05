"""Checks on file modes and owners inside the guest."""

from __future__ import annotations

import fnmatch
import posixpath
from collections import Counter

from certify.checkdef import check
from certify.guest.collectors.perms import AccountFileModes, HomeModes, HostKeyModes, SetIdFile, SetIdInventory, WorldWritablePaths
from certify.guest.parsers.perms import (
    OPASSWD,
    SHADOW_FILES,
    account_file_rule,
    authorized_keys_rule,
    describe,
    home_rule,
    host_key_rule,
    octal,
    private_key_rule,
    ssh_dir_rule,
)  # fmt: skip
from certify.model import Layer, Location, Result, Severity, Status, fail, not_evaluated
from certify.plugins.hookspecs import hookimpl

# Setuid/setgid on any of these is a root shell for every local user (GTFOBins "SUID" list); no package sets it.
NEVER_SET_ID = (
    "sh", "bash", "dash", "zsh", "ksh", "ksh93", "mksh", "csh", "tcsh", "fish", "busybox",
    "python*", "perl*", "ruby*", "php*", "lua*", "node", "nodejs", "tclsh*", "wish*", "gdb",
    "find", "xargs", "env", "awk", "gawk", "mawk", "nawk", "sed", "vi", "vim*", "nvim", "nano", "ed", "emacs*",
    "less", "more", "cp", "mv", "dd", "tee", "cat", "chmod", "chown", "tar", "zip", "unzip", "rsync",
    "nmap", "socat", "nc", "ncat", "netcat", "curl", "wget", "git", "make", "docker", "systemctl", "journalctl",
)  # fmt: skip


def _where(path: str | None, disk: str | None = None) -> Location:
    return Location(layer=Layer.GUEST, file=disk, path=path)


def _unexamined(names: tuple[str, ...]) -> Result | None:
    """Names the walk could not stat: the check cannot say they are fine."""
    if not names:
        return None
    shown = ", ".join(ascii(n) for n in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return not_evaluated(f"{len(names)} path(s) whose names are not UTF-8 could not be examined: {shown}", Layer.GUEST)


@check(
    id="account-file-permissions",
    severity=Severity.HIGH,
    layer=Layer.GUEST,
    title="Account databases with unsafe mode or owner",
    remediation=(
        "Reset owner and mode: chown root:shadow /etc/shadow /etc/gshadow /etc/shadow- /etc/gshadow- and chmod 0640 "
        "(root:root 0000 on RHEL-family systems); chown root:root /etc/passwd /etc/group /etc/passwd- /etc/group- and "
        "chmod 0644; chown root:root /etc/security/opasswd and chmod 0600. A readable shadow file hands every password "
        "hash to any local user for offline cracking; a writable passwd file lets anyone add a uid-0 account."
    ),
    references=(
        "CIS (SSG) file_permissions_etc_shadow, file_owner_etc_shadow, file_groupowner_etc_shadow, "
        "file_permissions_etc_gshadow, file_permissions_etc_passwd, file_permissions_etc_group",
        "CIS (SSG) file_permissions_backup_etc_shadow, file_owner_backup_etc_shadow, file_permissions_backup_etc_passwd, "
        "file_permissions_backup_etc_group, file_permissions_backup_etc_gshadow",
        "CIS (SSG) file_permissions_etc_security_opasswd",
        "Lynis default.prf permfile entries for /etc/passwd and /etc/group",
    ),
)
def account_file_permissions(account_file_modes: AccountFileModes):
    """Owner, group and mode of passwd, group, shadow, gshadow, their ``-`` backups and opasswd.

    Hash-bearing files (shadow, gshadow, their backups, opasswd) report at the
    check's high severity; passwd and group (and their backups) report medium:
    they hold no hashes, but whoever can write them can add a root account.
    """
    for entry in account_file_modes.files:
        rule = account_file_rule(entry.path, account_file_modes.shadow_gid)
        problems = rule.problems(entry.stat)
        if not problems:
            continue
        hashes = entry.path in SHADOW_FILES or entry.path == OPASSWD
        link = " (through a symlink; the target's mode and owner)" if entry.via_link else ""
        yield fail(
            _where(entry.path, entry.disk),
            f"{'; '.join(problems)}{link}; expected {rule.expected}",
            severity=None if hashes else Severity.MEDIUM,
        )


@check(
    id="ssh-host-key-permissions",
    severity=Severity.HIGH,
    layer=Layer.GUEST,
    title="SSH host key files with unsafe mode or owner",
    remediation=(
        "chown root:root and chmod 0600 /etc/ssh/ssh_host_*_key (root:ssh_keys 0640 on RHEL-family systems); "
        "chown root and chmod 0644 /etc/ssh/*.pub; the same for dropbear's /etc/dropbear/dropbear_*_host_key, "
        "tinysshd's .ed25519.sk and other servers' keys (0600 root). Better still, ship no host keys and let them "
        "be generated at first boot (ssh-host-keys-present)."
    ),
    references=(
        "CIS (SSG) file_permissions_sshd_private_key, file_ownership_sshd_private_key",
        "CIS (SSG) file_permissions_sshd_pub_key, file_ownership_sshd_pub_key",
    ),
)
def ssh_host_key_permissions(ssh_host_key_modes: HostKeyModes):
    """Host private keys readable by others, or host public keys others may replace: every host key ssh-host-keys-present finds."""
    for entry in ssh_host_key_modes.files:
        rule = host_key_rule(entry.path, entry.stat, ssh_host_key_modes.ssh_keys_gid)
        problems = rule.problems(entry.stat)
        if problems:
            yield fail(_where(entry.path, entry.disk), f"{'; '.join(problems)}; expected {rule.expected}")


@check(
    id="world-writable-files",
    severity=Severity.MEDIUM,
    layer=Layer.GUEST,
    title="World-writable files, and world-writable directories without the sticky bit",
    remediation=(
        "chmod o-w the files; give shared directories the sticky bit (chmod +t, like /tmp) or take away other's "
        "write. Anyone on the system can change a world-writable script or config, and anyone can delete or "
        "replace another user's files in a world-writable directory without the sticky bit."
    ),
    references=(
        "CIS (SSG) file_permissions_unauthorized_world_writable",
        "CIS (SSG) dir_perms_world_writable_sticky_bits",
    ),
    params={"max_findings": 50},
)
def world_writable_files(world_writable_paths: WorldWritablePaths, params):
    """Regular files with other-write anywhere but /proc, /sys, /dev, /run; directories with other-write and no sticky bit.

    Symlinks are not judged (their mode is always 0777). The first
    ``max_findings`` paths are reported one by one and the rest in one
    summary finding, so an image with thousands of them stays readable.
    """
    limit = max(0, int(params["max_findings"]))
    paths = world_writable_paths.paths
    for entry in paths[:limit]:
        what = "directory anyone may create, rename and delete files in (no sticky bit)" if entry.stat.is_dir \
            else "file anyone may write"  # fmt: skip
        yield fail(_where(entry.path, entry.disk), f"{what}: {describe(entry.stat)}")
    rest = paths[limit:]
    if rest:
        tops = Counter("/".join(e.path.split("/")[:3]) or "/" for e in rest)
        spread = ", ".join(f"{n} under {top}" for top, n in sorted(tops.items(), key=lambda t: (-t[1], t[0]))[:5])
        yield fail(_where(None, rest[0].disk),
                   f"{len(rest)} more world-writable path(s) not listed one by one ({spread}); first: {rest[0].path}")  # fmt: skip
    if (result := _unexamined(world_writable_paths.unexamined)) is not None:
        yield result


def _set_id_text(entry: SetIdFile) -> str:
    bits = entry.stat.perms & 0o6000
    kinds = [k for bit, k in ((0o4000, f"setuid (uid {entry.stat.uid})"), (0o2000, f"setgid (gid {entry.stat.gid})")) if bits & bit]
    return f"{' and '.join(kinds)}, mode {octal(entry.stat.perms)}, {entry.stat.size} bytes"


@check(
    id="suid-sgid-inventory",
    severity=Severity.MEDIUM,
    layer=Layer.GUEST,
    title="setuid/setgid files no package installed, or changed since",
    remediation=(
        "Remove the setuid/setgid bit (chmod u-s,g-s) from files the distribution did not ship that way, reinstall "
        "packages whose setuid files were modified, and delete added setuid helpers; a vendor binary that truly "
        "needs it is declared with a waiver. Every setuid file is a way from any local account to its owner's "
        "privileges."
    ),
    references=(
        "CIS (SSG) file_permissions_unauthorized_suid, file_permissions_unauthorized_sgid",
        "CIS \"Audit SUID executables\", \"Audit SGID executables\"",
        "GTFOBins SUID list (shell-escape binaries)",
    ),
    params={"never_set_id": list(NEVER_SET_ID)},
)
def suid_sgid_inventory(setid_files: SetIdInventory, params):
    """Every setuid/setgid regular file, compared with the package database (dpkg, rpm, apk or opkg).

    A file no package owns, one whose content differs from the digest its
    package recorded, or one whose setuid/setgid bit the package did not
    record (rpm and apk record modes; dpkg does not) fails: high for setuid,
    medium for setgid only. opkg records ownership only: a file it owns is
    not evaluated (its content cannot be verified). A package-owned,
    unmodified file passes, so there
    is no allow-list to maintain; because dpkg records no modes, shells,
    interpreters and other shell-escape tools (``never_set_id``) fail
    whatever the database says. Without a package database the check is
    not evaluated and lists the files it could not judge.
    """
    never = tuple(params["never_set_id"])
    unjudged = []
    for entry in setid_files.files:
        severity = Severity.HIGH if entry.stat.perms & 0o4000 else None
        where, text = _where(entry.path, entry.disk), _set_id_text(entry)
        db = setid_files.database
        if any(fnmatch.fnmatchcase(posixpath.basename(entry.path), p) for p in never):
            yield fail(where, f"{text}: a shell, interpreter or shell-escape tool that must never be setuid/setgid", severity=severity)
        elif db is None:
            unjudged.append(entry)
        elif entry.package is None:
            if setid_files.incomplete:
                yield Result(status=Status.NOT_EVALUATED, location=where,
                             evidence=f"{text}; no {db} package owns it, but {setid_files.incomplete}")  # fmt: skip
            else:
                yield fail(where, f"{text}; no {db} package owns it: added after installation", severity=severity)
        elif entry.recorded_mode is not None and entry.stat.perms & 0o6000 & ~entry.recorded_mode:
            yield fail(where, f"{text}; {db} package {entry.package} records mode {octal(entry.recorded_mode & 0o7777)}: "
                              "the bit was set after installation", severity=severity)  # fmt: skip
        elif entry.recorded is None:
            yield Result(status=Status.NOT_EVALUATED, location=where,
                         evidence=f"{text}; owned by {db} package {entry.package}, which records no digest for it: "
                                  "its content cannot be verified")  # fmt: skip
        elif entry.actual is None:
            yield Result(status=Status.NOT_EVALUATED, location=where,
                         evidence=f"{text}; owned by {db} package {entry.package}, but {entry.unread}")  # fmt: skip
        elif entry.actual != entry.recorded[1]:
            algo, recorded = entry.recorded
            yield fail(where, f"{text}; owned by {db} package {entry.package}, but its {algo} {entry.actual[:16]}… differs "
                              f"from the recorded {recorded[:16]}…: modified after installation", severity=severity)  # fmt: skip
    if unjudged:
        shown = ", ".join(f"{e.path} ({octal(e.stat.perms)})" for e in unjudged[:10])
        more = f" and {len(unjudged) - 10} more" if len(unjudged) > 10 else ""
        yield not_evaluated(f"{setid_files.problem}; {len(unjudged)} setuid/setgid file(s) not judged: {shown}{more}", Layer.GUEST)
    if (result := _unexamined(setid_files.unexamined)) is not None:
        yield result


_HOME_KINDS = {"home": "home", "ssh-dir": "~/.ssh", "authorized-keys": "authorized_keys", "private-key": "private key"}


@check(
    id="home-and-ssh-dir-permissions",
    severity=Severity.MEDIUM,
    layer=Layer.GUEST,
    title="Homes, ~/.ssh and SSH key files others may read or write",
    remediation=(
        "chown each home, ~/.ssh and its files to their user; chmod 0750 (or 0700) the homes, including /root, "
        "0700 ~/.ssh, 0600 private keys, and take group/other write away from authorized_keys. Whoever can write "
        "a home or ~/.ssh can plant an authorized_keys file or a shell startup file and become that user."
    ),
    references=(
        "CIS \"Ensure users' home directories permissions are 750 or more restrictive\"; "
        "SSG file_permissions_home_directories, file_ownership_home_directories",
        "Lynis HOME-9304 (home directory permissions), HOME-9306 (home directory ownership), "
        "default.prf permdir /root/.ssh rwx------",
        "AWS EC2 shared AMI guide (chmod 700 /root/.ssh)",
        "sshd StrictModes (refuses group/other-writable ~/.ssh and authorized_keys)",
    ),
    params={"home_max_mode": 0o750},
)
def home_and_ssh_dir_permissions(home_modes: HomeModes, params):
    """Homes of root and of accounts from UID_MIN up (existing directories), their ~/.ssh, authorized_keys and id_* keys.

    Homes (/root included) may be at most ``home_max_mode`` (0750, CIS) and
    owned by their account; ~/.ssh must be 0700 and its user's; private keys
    must not be group/other readable; authorized_keys must not be
    group/other writable (sshd's StrictModes). Homes of system accounts
    (below UID_MIN) belong to packages and are not judged here.
    """
    max_mode = int(params["home_max_mode"])
    rules = {"home": lambda u: home_rule(u, max_mode), "ssh-dir": ssh_dir_rule,
             "authorized-keys": authorized_keys_rule, "private-key": private_key_rule}  # fmt: skip
    for entry in home_modes.paths:
        rule = rules[entry.kind](entry.uids)
        problems = rule.problems(entry.stat)
        if problems:
            whose = f"{_HOME_KINDS[entry.kind]} of {', '.join(entry.users)} (uid {', '.join(map(str, entry.uids))})"
            yield fail(_where(entry.path, entry.disk), f"{whose}: {'; '.join(problems)}; expected {rule.expected}")


@hookimpl
def certify_checks():
    return [account_file_permissions, ssh_host_key_permissions, world_writable_files, suid_sgid_inventory,
            home_and_ssh_dir_permissions]  # fmt: skip
