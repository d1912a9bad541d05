"""Accounts and passwords: empty, usable and default passwords, root, UID 0, system shells, database copies, sudo."""

from __future__ import annotations

import secrets

from certify import sample
from certify.guest.parsers.crypt import make_hash

CHECKS = (
    "account-empty-password",
    "account-usable-password",
    "default-or-weak-password",
    "root-login-not-locked",
    "extra-uid0-accounts",
    "system-accounts-login",
    "passwd-backup-files",
    "sudo-config",
)
DAY = "19700"  # days since 1970 of the last password change, as base_system writes


def append(spec: sample.GuestSpec, path: str, *lines: str) -> None:
    """Add lines to a file base_system wrote, keeping its mode and owner."""
    content, mode = spec.files[path]
    spec.files[path] = (content + "".join(line + "\n" for line in lines).encode(), mode)


def replace_line(spec: sample.GuestSpec, path: str, prefix: str, line: str) -> None:
    """Replace the line starting with ``prefix`` (an account's entry)."""
    content, mode = spec.files[path]
    lines = [line if old.startswith(prefix) else old for old in content.decode().splitlines()]
    spec.files[path] = ("\n".join(lines) + "\n").encode(), mode


def strong_password() -> str:
    return secrets.token_urlsafe(24)


def sudoers(spec: sample.GuestSpec) -> None:
    """Debian's stock /etc/sudoers: the sudo group with a password, and the drop-in directory."""
    spec.add("/etc/sudoers", "Defaults\tenv_reset\nDefaults\tmail_badpass\n"
             'Defaults\tsecure_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"\n\n'
             "root\tALL=(ALL:ALL) ALL\n%sudo\tALL=(ALL:ALL) ALL\n\n@includedir /etc/sudoers.d\n", 0o440)  # fmt: skip
    spec.mkdir("/etc/sudoers.d", 0o755)
    spec.add("/etc/sudoers.d/README", "# Files in this directory are read by sudo unless their name has a '.'\n"
             "# or ends in '~'. Keep them 0440 root:root.\n", 0o440)  # fmt: skip


def plant_dirty(spec: sample.GuestSpec) -> None:
    # root with a usable (strong, random) password: usable and not locked, but no default
    replace_line(spec, "/etc/shadow", "root:", f"root:{make_hash(strong_password(), '$6$')}:{DAY}:0:99999:7:::")
    append(spec, "/etc/passwd",
           "games:x:5:60:games:/usr/games:/bin/bash",  # a system account with a shell (its password locked)
           "toor:x:0:0:root backdoor:/root:/bin/bash",  # a second root
           "vendor:x:1002:1002:vendor support:/home/vendor:/bin/bash",
           "deploy:x:1003:1003:deploy:/home/deploy:/bin/bash",
           "kiosk:x:1004:1004:kiosk:/home/kiosk:/bin/bash")  # fmt: skip
    append(spec, "/etc/shadow",
           f"games:*:{DAY}:0:99999:7:::",
           f"toor:{make_hash('toor', '$y$')}:{DAY}:0:99999:7:::",  # a default password (and its own name)
           f"vendor:{make_hash('changeme', '$y$')}:{DAY}:0:99999:7:::",  # a default password, yescrypt
           f"deploy:{make_hash(strong_password(), '$6$')}:{DAY}:0:99999:7:::",  # usable, not a default
           f"kiosk::{DAY}:0:99999:7:::")  # an empty password  # fmt: skip
    append(spec, "/etc/group", "games:x:60:", "vendor:x:1002:", "deploy:x:1003:", "kiosk:x:1004:")
    # Copies: passwd- as shadow-utils leaves it, shadow- still holding alice's former password.
    spec.add("/etc/passwd-", spec.files["/etc/passwd"][0])
    shadow_old = spec.files["/etc/shadow"][0].decode().replace("alice:!:", f"alice:{make_hash(strong_password(), '$6$')}:")
    spec.add("/etc/shadow-", shadow_old, 0o640, owner=(0, sample.SHADOW_GID))
    sudoers(spec)
    spec.add("/etc/sudoers.d/vendor", "# vendor remote support\nvendor ALL=(ALL) NOPASSWD: ALL\n", 0o440)


def plant_clean(spec: sample.GuestSpec) -> None:
    # System accounts as Debian ships them: nologin or their own command, locked.
    append(spec, "/etc/passwd", "sync:x:4:65534:sync:/bin:/bin/sync",
           "www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin")  # fmt: skip
    append(spec, "/etc/shadow", f"sync:*:{DAY}:0:99999:7:::", f"www-data:*:{DAY}:0:99999:7:::")
    append(spec, "/etc/group", "www-data:x:33:")
    # bob's password locked with passwd -l: the hash stays behind a '!', unusable.
    replace_line(spec, "/etc/shadow", "bob:", f"bob:!{make_hash(strong_password(), '$y$')}:{DAY}:0:99999:7:::")
    sudoers(spec)
    # A rule switched off by its name: sudo skips @includedir files with a '.' in the name.
    spec.add("/etc/sudoers.d/vendor.disabled", "vendor ALL=(ALL) NOPASSWD: ALL\n", 0o440)


DIRTY = {
    ("account-empty-password", "/etc/shadow", "critical"),
    ("account-usable-password", "/etc/shadow", "high"),
    ("default-or-weak-password", "/etc/shadow", "critical"),
    ("root-login-not-locked", "/etc/shadow", "high"),
    ("extra-uid0-accounts", "/etc/passwd", "critical"),
    ("system-accounts-login", "/etc/passwd", "medium"),
    ("passwd-backup-files", "/etc/passwd-", "medium"),
    ("passwd-backup-files", "/etc/shadow-", "high"),
    ("passwd-backup-files", "/etc/gshadow-", "medium"),  # planted by the permissions topic (world-readable)
    ("sudo-config", "/etc/sudoers.d/vendor", "medium"),
}
