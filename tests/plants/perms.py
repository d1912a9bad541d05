"""File modes and owners: account databases, host key files, world-writable and setuid files, homes.

Cross-effects on other topics' checks, by design:
- /etc/gshadow- exists in the dirty image (a backup another topic's
  passwd-backup-files check reports by its mere existence);
- /etc/passwd 0666, /etc/ssh/ssh_host_ecdsa_key.pub 0666 and /home/alice 0777
  are also world-writable, so world-writable-files reports them beside the
  more specific check;
- both images get a minimal dpkg database (/var/lib/dpkg: status, passwd.list,
  passwd.md5sums) owning /usr/bin/passwd, so checks that read the package
  database find one package there instead of none.
"""

from __future__ import annotations

import hashlib

from certify import sample

CHECKS = ("account-file-permissions", "ssh-host-key-permissions", "world-writable-files", "suid-sgid-inventory",
          "home-and-ssh-dir-permissions")  # fmt: skip

# A stand-in for shadow's passwd binary: an ELF header, then text. Only its digest matters here.
PASSWD_BINARY = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"stand-in for /usr/bin/passwd from Debian's passwd package\n"
DPKG_STATUS = """\
Package: passwd
Status: install ok installed
Priority: required
Section: admin
Installed-Size: 2900
Maintainer: Shadow package maintainers <pkg-shadow-devel@lists.alioth.debian.org>
Architecture: amd64
Source: shadow
Version: 1:4.13+dfsg1-1+b1
Description: change and administer password and group data

"""


def ecdsa_public_key(comment: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + f" {comment}"


def plant_dpkg_passwd(spec: sample.GuestSpec, binary: bytes) -> None:
    """The passwd package as dpkg records it (digest of the pristine binary), with ``binary`` installed setuid root."""
    spec.add("/var/lib/dpkg/status", DPKG_STATUS)
    spec.add("/var/lib/dpkg/info/passwd.list", "/.\n/usr\n/usr/bin\n/usr/bin/passwd\n")
    spec.add("/var/lib/dpkg/info/passwd.md5sums", f"{hashlib.md5(PASSWD_BINARY).hexdigest()}  usr/bin/passwd\n")
    spec.add("/usr/bin/passwd", binary, 0o4755)


def plant_dirty(spec: sample.GuestSpec) -> None:
    # Account databases: a world-readable group-password backup, a world-writable passwd.
    spec.add("/etc/gshadow-", spec.files["/etc/gshadow"][0], 0o644, owner=(0, sample.SHADOW_GID))
    content, _ = spec.files["/etc/passwd"]  # keep whatever content earlier topics gave it
    spec.files["/etc/passwd"] = (content, 0o666)
    # A host public key anyone may replace (ssh-host-keys-present reports private keys only).
    spec.add("/etc/ssh/ssh_host_ecdsa_key.pub", ecdsa_public_key("root@vendor-build-42") + "\n", 0o666)
    # World-writable: a script, and a shared directory without the sticky bit.
    spec.add("/opt/app/run.sh", "#!/bin/sh\nexec /opt/app/bin/server --config /etc/app.conf\n", 0o777)
    spec.mkdir("/srv/upload", 0o777)
    # setuid: a helper no package installed, and dpkg's passwd changed after installation.
    spec.add("/usr/local/bin/helper", b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"vendor helper\n", 0o4755)
    plant_dpkg_passwd(spec, PASSWD_BINARY + b"patched by the vendor\n")
    # Homes: one anyone may write, one with a root-owned, world-readable ~/.ssh.
    spec.mkdir("/home/alice", 0o777, owner=(1000, 1000))
    spec.mkdir("/home/bob/.ssh", 0o755, owner=(0, 0))


def plant_clean(spec: sample.GuestSpec) -> None:
    plant_dpkg_passwd(spec, PASSWD_BINARY)  # setuid, package-owned, unmodified
    spec.add("/etc/security/opasswd", "", 0o600)  # pam_pwhistory's file, as libpam-modules creates it
    spec.mkdir("/home/bob/.ssh", 0o700, owner=(1001, 1001))
    spec.mkdir("/srv/shared", 0o1777)  # world-writable with the sticky bit, like /tmp
    spec.add("/opt/app/run.sh", "#!/bin/sh\nexec /opt/app/bin/server --config /etc/app.conf\n", 0o755)
    spec.symlink("/usr/local/bin/run-app", "/opt/app/run.sh")  # a symlink's 0777 is not a mode


DIRTY = {
    ("account-file-permissions", "/etc/gshadow-", "high"),
    ("account-file-permissions", "/etc/passwd", "medium"),
    ("ssh-host-key-permissions", "/etc/ssh/ssh_host_ecdsa_key.pub", "high"),
    ("world-writable-files", "/etc/passwd", "medium"),
    ("world-writable-files", "/etc/ssh/ssh_host_ecdsa_key.pub", "medium"),
    ("world-writable-files", "/home/alice", "medium"),
    ("world-writable-files", "/opt/app/run.sh", "medium"),
    ("world-writable-files", "/srv/upload", "medium"),
    ("suid-sgid-inventory", "/usr/bin/passwd", "high"),
    ("suid-sgid-inventory", "/usr/local/bin/helper", "high"),
    ("home-and-ssh-dir-permissions", "/home/alice", "medium"),
    ("home-and-ssh-dir-permissions", "/home/bob/.ssh", "medium"),
}
