"""Builds small sample appliances by code: for the demo and for the tests.

``python -m certify.sample OUTDIR`` writes ``clean-appliance.ova`` and
``dirty-appliance.ova`` (host keys, a vendor's authorized key, root's password
left at a common default, password SSH in a drop-in, a shell history holding a
cloud key, a VNC console with a stored password), both made in one libguestfs
launch.

A spec's ``Layout`` says how its files sit on disks: partition table or
none, ext4/xfs/btrfs, root on LVM, data disks mounted by /etc/fstab.
"""

from __future__ import annotations

import hashlib
import html
import io
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from certify.guest import accel

DISK_BYTES = 64 * 1024 * 1024
MiB = 1024 * 1024
# mkfs.xfs (xfsprogs >= 5.19) refuses filesystems under 300 MiB; btrfs wants room for its chunks.
MIN_FILESYSTEM_BYTES = {"xfs": 320 * MiB, "btrfs": 128 * MiB}
PARTITION_TABLES = ("mbr", "gpt", None)
FILESYSTEMS = ("ext4", "xfs", "btrfs")


@dataclass(frozen=True)
class Disk:
    """One disk of an image, holding one filesystem that the guest mounts at ``mountpoint``."""

    mountpoint: str = "/"
    partition_table: str | None = "mbr"  # "mbr", "gpt", or None: the filesystem on the whole disk
    fs: str = "ext4"
    lvm: str | None = None  # "vg0/root": the filesystem on that LV, the disk (or its one partition) the only PV
    uuid: str | None = None  # given to the filesystem, so /etc/fstab can name it
    label: str | None = None
    size: int | None = None  # bytes; None: the build's default, raised to what the filesystem needs

    def __post_init__(self) -> None:
        if self.partition_table not in PARTITION_TABLES:
            raise ValueError(f"partition table {self.partition_table!r}: expected one of {PARTITION_TABLES}")
        if self.fs not in FILESYSTEMS:
            raise ValueError(f"filesystem {self.fs!r}: expected one of {FILESYSTEMS}")
        if self.lvm is not None and not re.fullmatch(r"[A-Za-z0-9_.+-]+/[A-Za-z0-9_.+-]+", self.lvm):
            raise ValueError(f"lvm {self.lvm!r}: expected VG/LV")
        if not self.mountpoint.startswith("/"):
            raise ValueError(f"mountpoint {self.mountpoint!r} is not absolute")

    def fstab_source(self, index: int) -> str:
        """How /etc/fstab names this disk's filesystem, the way installers write it."""
        if self.uuid:
            return f"UUID={self.uuid}"
        if self.label:
            return f"LABEL={self.label}"
        if self.lvm:
            vg, lv = self.lvm.split("/")
            return f"/dev/mapper/{vg.replace('-', '--')}-{lv.replace('-', '--')}"
        return f"/dev/sd{chr(ord('a') + index)}" + ("1" if self.partition_table else "")

    def byte_size(self, default: int) -> int:
        if self.size is not None:
            return self.size
        need = MIN_FILESYSTEM_BYTES.get(self.fs, 0)
        return max(default, need + 16 * MiB if need else 0)  # room for the partition table and LVM metadata


@dataclass(frozen=True)
class Layout:
    """The disks of an image, in bundle order; the default is one MBR disk with one ext4 partition."""

    disks: tuple[Disk, ...] = (Disk(),)

    def __post_init__(self) -> None:
        mountpoints = [d.mountpoint for d in self.disks]
        if mountpoints.count("/") != 1 or len(set(mountpoints)) != len(mountpoints):
            raise ValueError(f"a layout needs exactly one root and distinct mountpoints: {mountpoints}")
        vgs = [d.lvm.split("/")[0] for d in self.disks if d.lvm]
        if len(set(vgs)) != len(vgs):
            raise ValueError(f"each LVM disk needs its own volume group: {vgs}")

    def fstab(self) -> str:
        """/etc/fstab for these disks: root first, then the others by mountpoint."""
        order = sorted(range(len(self.disks)), key=lambda i: (self.disks[i].mountpoint != "/", self.disks[i].mountpoint))
        lines = []
        for i in order:
            disk = self.disks[i]
            passno = 0 if disk.fs != "ext4" else (1 if disk.mountpoint == "/" else 2)  # xfs and btrfs are not fsck'd at boot
            lines.append(f"{disk.fstab_source(i)} {disk.mountpoint} {disk.fs} defaults 0 {passno}\n")
        return "".join(lines)


@dataclass
class GuestSpec:
    """Files of a tiny root filesystem: path -> (content, mode), laid out on disks as ``layout`` says."""

    hostname: str = "appliance"
    layout: Layout = field(default_factory=Layout)
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    dirs: dict[str, int] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)  # path -> symlink target
    owners: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (uid, gid); root otherwise

    def add(self, path: str, content: bytes | str, mode: int = 0o644, owner: tuple[int, int] | None = None) -> GuestSpec:
        self.files[path] = (content.encode() if isinstance(content, str) else content, mode)
        if owner is not None:
            self.owners[path] = owner
        return self

    def mkdir(self, path: str, mode: int = 0o755, owner: tuple[int, int] | None = None) -> GuestSpec:
        self.dirs[path] = mode
        if owner is not None:
            self.owners[path] = owner
        return self

    def symlink(self, path: str, target: str) -> GuestSpec:
        self.links[path] = target
        return self

    def remove(self, path: str) -> GuestSpec:
        for table in (self.files, self.dirs, self.links, self.owners):
            table.pop(path, None)
        return self

    def set_layout(self, layout: Layout) -> GuestSpec:
        """Lay the files out on ``layout``'s disks, with the /etc/fstab that mounts them."""
        self.layout = layout
        return self.add("/etc/fstab", layout.fstab())


SHADOW_GID = 42  # Debian's 'shadow' group: /etc/shadow is root:shadow 0640


def base_system(hostname: str = "appliance", users: tuple[str, ...] = ("alice",)) -> GuestSpec:
    """A small Debian 12 root a careful vendor would ship: inspectable, and clean for every guest check.

    Accounts are locked (``*`` for system accounts, ``!`` for people), the
    account databases have Debian's owners and modes, sshd is key-only, and
    nothing per-instance (host keys, machine-id, leases) is baked in.
    """
    spec = GuestSpec(hostname=hostname)
    passwd = ["root:x:0:0:root:/root:/bin/bash", "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
              "sshd:x:100:65534::/run/sshd:/usr/sbin/nologin"]  # fmt: skip
    shadow = ["root:*:19700:0:99999:7:::", "daemon:*:19700:0:99999:7:::", "sshd:!:19700::::::"]
    group = ["root:x:0:", "daemon:x:1:", f"shadow:x:{SHADOW_GID}:", "sudo:x:27:", "nogroup:x:65534:"]
    for i, user in enumerate(users):
        uid = 1000 + i
        passwd.append(f"{user}:x:{uid}:{uid}:{user}:/home/{user}:/bin/bash")
        shadow.append(f"{user}:!:19700:0:99999:7:::")
        group.append(f"{user}:x:{uid}:")
    spec.add("/etc/os-release", 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
             'VERSION_ID="12"\nVERSION="12 (bookworm)"\nID=debian\n')  # fmt: skip
    spec.add("/etc/debian_version", "12.8\n")
    spec.add("/etc/hostname", hostname + "\n")
    spec.add("/etc/hosts", f"127.0.0.1 localhost\n127.0.1.1 {hostname}\n")
    spec.add("/etc/fstab", spec.layout.fstab())
    spec.add("/etc/passwd", "\n".join(passwd) + "\n")
    spec.add("/etc/group", "\n".join(group) + "\n")
    spec.add("/etc/shadow", "\n".join(shadow) + "\n", 0o640, owner=(0, SHADOW_GID))
    spec.add("/etc/gshadow", "".join(f"{line.split(':')[0]}:*::\n" for line in group), 0o640, owner=(0, SHADOW_GID))
    spec.add("/etc/login.defs", "UID_MIN 1000\nUID_MAX 60000\nSYS_UID_MAX 999\nENCRYPT_METHOD YESCRYPT\n")
    spec.add("/etc/machine-id", "")  # empty: systemd generates one at first boot
    spec.add("/etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin prohibit-password\n"
             "PasswordAuthentication no\nKbdInteractiveAuthentication no\nX11Forwarding no\n")  # fmt: skip
    spec.mkdir("/etc/ssh/sshd_config.d")
    for d in ("/bin", "/sbin", "/usr/bin", "/usr/sbin", "/var/log", "/var/lib", "/var/cache", "/etc/cron.d"):
        spec.mkdir(d)
    spec.mkdir("/tmp", 0o1777)
    spec.mkdir("/var/tmp", 0o1777)
    spec.mkdir("/root", 0o700)
    for i, user in enumerate(users):
        spec.mkdir(f"/home/{user}", 0o750, owner=(1000 + i, 1000 + i))
    return spec


def rhel_system(hostname: str = "appliance", users: tuple[str, ...] = ("alice",)) -> GuestSpec:
    """A small Rocky Linux 9 root, clean for every guest check, with RHEL's conventions.

    Merged /usr (/bin is a link to usr/bin), the account databases mode 0000
    root:root, root's home 0550, people's homes 0700, the wheel group,
    /etc/sysconfig and NetworkManager keyfiles instead of ifupdown.
    """
    spec = GuestSpec(hostname=hostname)
    passwd = ["root:x:0:0:root:/root:/bin/bash", "bin:x:1:1:bin:/bin:/sbin/nologin",
              "daemon:x:2:2:daemon:/sbin:/sbin/nologin", "nobody:x:65534:65534:Kernel Overflow User:/:/sbin/nologin",
              "sshd:x:74:74:Privilege-separated SSH:/usr/share/empty.sshd:/sbin/nologin"]  # fmt: skip
    shadow = ["root:!!:19700:0:99999:7:::", "bin:*:19700:0:99999:7:::", "daemon:*:19700:0:99999:7:::",
              "nobody:*:19700:0:99999:7:::", "sshd:!!:19700::::::"]  # fmt: skip
    group = ["root:x:0:", "bin:x:1:", "daemon:x:2:", "wheel:x:10:", "sshd:x:74:", "nobody:x:65534:"]
    for i, user in enumerate(users):
        uid = 1000 + i
        passwd.append(f"{user}:x:{uid}:{uid}::/home/{user}:/bin/bash")
        shadow.append(f"{user}:!!:19700:0:99999:7:::")
        group.append(f"{user}:x:{uid}:")
    release = "Rocky Linux release 9.4 (Blue Onyx)\n"
    spec.add("/etc/os-release", 'NAME="Rocky Linux"\nVERSION="9.4 (Blue Onyx)"\nID="rocky"\nID_LIKE="rhel centos fedora"\n'
             'VERSION_ID="9.4"\nPLATFORM_ID="platform:el9"\nPRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"\n')  # fmt: skip
    spec.add("/etc/rocky-release", release)
    spec.symlink("/etc/redhat-release", "rocky-release")
    spec.symlink("/etc/system-release", "rocky-release")
    spec.add("/etc/hostname", hostname + "\n")
    spec.add("/etc/hosts", "127.0.0.1   localhost localhost.localdomain\n::1         localhost localhost.localdomain\n")
    spec.add("/etc/fstab", spec.layout.fstab())
    spec.add("/etc/passwd", "\n".join(passwd) + "\n")
    spec.add("/etc/group", "\n".join(group) + "\n")
    spec.add("/etc/shadow", "\n".join(shadow) + "\n", 0o000)
    spec.add("/etc/gshadow", "".join(f"{line.split(':')[0]}:!::\n" for line in group), 0o000)
    spec.add("/etc/login.defs", "UID_MIN 1000\nUID_MAX 60000\nSYS_UID_MAX 999\nENCRYPT_METHOD SHA512\n")
    spec.add("/etc/machine-id", "")
    spec.add("/etc/selinux/config", "SELINUX=enforcing\nSELINUXTYPE=targeted\n")
    spec.add("/etc/sysconfig/network", "# Created by anaconda\n")
    spec.mkdir("/etc/sysconfig/network-scripts")
    spec.mkdir("/etc/NetworkManager/system-connections", 0o700)
    spec.add("/etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin prohibit-password\n"
             "PasswordAuthentication no\nKbdInteractiveAuthentication no\n")  # fmt: skip
    spec.add("/etc/ssh/sshd_config.d/50-redhat.conf", "SyslogFacility AUTHPRIV\nUsePAM yes\nPrintMotd no\n", 0o600)
    for d in ("/usr/bin", "/usr/sbin", "/usr/lib", "/usr/lib64", "/var/log", "/var/lib/rpm", "/var/cache", "/etc/cron.d"):
        spec.mkdir(d)
    for top in ("bin", "sbin", "lib", "lib64"):  # merged /usr
        spec.symlink(f"/{top}", f"usr/{top}")
    spec.mkdir("/tmp", 0o1777)
    spec.mkdir("/var/tmp", 0o1777)
    spec.mkdir("/root", 0o550)
    for i, user in enumerate(users):
        spec.mkdir(f"/home/{user}", 0o700, owner=(1000 + i, 1000 + i))
    return spec


# The first 64 bytes of an x86-64 ELF executable: enough for file(1) and libguestfs to tell the architecture.
ELF_X86_64_HEADER = (b"\x7fELF\x02\x01\x01" + bytes(9) + (2).to_bytes(2, "little") + (0x3E).to_bytes(2, "little")
                     + (1).to_bytes(4, "little") + bytes(24) + (64).to_bytes(2, "little") + bytes(10))  # fmt: skip


def alpine_system(hostname: str = "appliance", users: tuple[str, ...] = ("alice",)) -> GuestSpec:
    """A small Alpine 3.20 root, clean for every guest check: busybox, OpenRC, apk, no systemd.

    /bin/sh and friends are links to /bin/busybox, there is no dpkg or rpm
    database (apk's lives in /lib/apk/db), no machine-id, and ifupdown-style
    /etc/network/interfaces.
    """
    spec = GuestSpec(hostname=hostname)
    passwd = ["root:x:0:0:root:/root:/bin/sh", "bin:x:1:1:bin:/bin:/sbin/nologin", "daemon:x:2:2:daemon:/sbin:/sbin/nologin",
              "sshd:x:22:22:sshd:/dev/null:/sbin/nologin", "nobody:x:65534:65534:nobody:/:/sbin/nologin"]  # fmt: skip
    shadow = ["root:*::0:::::", "bin:!::0:::::", "daemon:!::0:::::", "sshd:!::0:::::", "nobody:!::0:::::"]
    group = ["root:x:0:root", "bin:x:1:root,bin,daemon", "daemon:x:2:root,bin,daemon", "wheel:x:10:root",
             "sshd:x:22:", f"shadow:x:{SHADOW_GID}:", "nogroup:x:65533:", "nobody:x:65534:"]  # fmt: skip
    for i, user in enumerate(users):
        uid = 1000 + i
        passwd.append(f"{user}:x:{uid}:{uid}::/home/{user}:/bin/sh")
        shadow.append(f"{user}:!:19700:0:99999:7:::")
        group.append(f"{user}:x:{uid}:{user}")
    spec.add("/etc/os-release", 'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.20.3\nPRETTY_NAME="Alpine Linux v3.20"\n'
             'HOME_URL="https://alpinelinux.org/"\n')  # fmt: skip
    spec.add("/etc/alpine-release", "3.20.3\n")
    spec.add("/etc/hostname", hostname + "\n")
    spec.add("/etc/hosts", f"127.0.0.1\t{hostname} localhost.localdomain localhost\n::1\t\tlocalhost localhost.localdomain\n")
    spec.add("/etc/fstab", spec.layout.fstab())
    spec.add("/etc/passwd", "\n".join(passwd) + "\n")
    spec.add("/etc/group", "\n".join(group) + "\n")
    spec.add("/etc/shadow", "\n".join(shadow) + "\n", 0o640, owner=(0, SHADOW_GID))
    spec.add("/etc/network/interfaces", "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n")
    spec.add("/etc/apk/world", "alpine-base\nopenssh\n")
    spec.add("/etc/apk/repositories", "https://dl-cdn.alpinelinux.org/alpine/v3.20/main\n")
    spec.add("/lib/apk/db/installed", "P:busybox\nV:1.36.1-r29\nA:x86_64\nF:bin\nR:busybox\n\n")
    spec.add("/etc/inittab", "::sysinit:/sbin/openrc sysinit\n::wait:/sbin/openrc default\n::shutdown:/sbin/openrc shutdown\n")
    spec.mkdir("/etc/runlevels/default")
    spec.add("/etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\nAuthorizedKeysFile .ssh/authorized_keys\n"
             "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n")  # fmt: skip
    spec.mkdir("/etc/ssh/sshd_config.d")
    spec.add("/bin/busybox", ELF_X86_64_HEADER, 0o755)
    for applet in ("sh", "ash", "ls", "cat", "echo", "rm"):
        spec.symlink(f"/bin/{applet}", "busybox")
    for d in ("/sbin", "/usr/bin", "/usr/sbin", "/var/log", "/var/lib", "/var/cache", "/etc/periodic/daily"):
        spec.mkdir(d)
    spec.mkdir("/tmp", 0o1777)
    spec.mkdir("/var/tmp", 0o1777)
    spec.mkdir("/root", 0o700)
    for i, user in enumerate(users):
        spec.mkdir(f"/home/{user}", 0o750, owner=(1000 + i, 1000 + i))
    return spec


# The part of OpenWrt's /etc/init.d/dropbear that certify reads: the UCI options and their defaults.
OPENWRT_DROPBEAR_INIT = """#!/bin/sh /etc/rc.common
START=19
USE_PROCD=1
PROG=/usr/sbin/dropbear
validate_section_dropbear()
{
	uci_load_validate dropbear dropbear "$1" "$2" \\
		'PasswordAuth:bool:1' 'enable:bool:1' 'Interface:string' 'GatewayPorts:bool:0' \\
		'RootPasswordAuth:bool:1' 'RootLogin:bool:1' 'rsakeyfile:file' 'keyfile:list(file)' \\
		'BannerFile:file' 'Port:port:22' 'SSHKeepAlive:uinteger:300' 'IdleTimeout:uinteger:0' \\
		'MaxAuthTries:uinteger:3' 'RecvWindowSize:uinteger:0' 'mdns:bool:1'
}
"""


def openwrt_system(hostname: str = "OpenWrt") -> GuestSpec:
    """A small OpenWrt 23.05 x86 root, clean for every guest check: BusyBox, procd, UCI, dropbear, no systemd.

    No /etc/fstab (OpenWrt mounts from /etc/config/fstab) and no
    /etc/hostname (the host name is in /etc/config/system); /var is a link
    to /tmp; root's home is /root and its shell /bin/ash. Clean means what
    a careful vendor changes from OpenWrt's defaults: root's password locked
    instead of empty, and dropbear refusing passwords.
    """
    spec = GuestSpec(hostname=hostname)
    passwd = ["root:x:0:0:root:/root:/bin/ash", "daemon:*:1:1:daemon:/var:/bin/false", "ftp:*:55:55:ftp:/home/ftp:/bin/false",
              "network:*:101:101:network:/var:/bin/false", "nobody:*:65534:65534:nobody:/var:/bin/false",
              "dnsmasq:x:453:453:dnsmasq:/var/run/dnsmasq:/bin/false", "ubus:x:81:81:ubus:/var/run/ubus:/bin/false"]  # fmt: skip
    shadow = ["root:*:19700:0:99999:7:::", "daemon:*:0:0:99999:7:::", "ftp:*:0:0:99999:7:::", "network:*:0:0:99999:7:::",
              "nobody:*:0:0:99999:7:::", "dnsmasq:x:0:0:99999:7:::", "ubus:x:0:0:99999:7:::"]  # fmt: skip
    group = ["root:x:0:", "daemon:x:1:", "adm:x:4:", "mail:x:8:", "dialout:x:20:", "audio:x:29:", "www-data:x:33:",
             "ftp:x:55:", "users:x:100:", "network:x:101:", "nogroup:x:65534:", "dnsmasq:x:453:dnsmasq", "ubus:x:81:ubus"]  # fmt: skip
    release = "DISTRIB_ID='OpenWrt'\nDISTRIB_RELEASE='23.05.5'\nDISTRIB_TARGET='x86/64'\nDISTRIB_DESCRIPTION='OpenWrt 23.05.5'\n"
    spec.add("/etc/openwrt_release", release)
    spec.add("/etc/openwrt_version", "r24106-10cc5fcd00\n")
    spec.add("/etc/os-release", 'NAME="OpenWrt"\nVERSION="23.05.5"\nID="openwrt"\nID_LIKE="lede openwrt"\n'
             'PRETTY_NAME="OpenWrt 23.05.5"\nVERSION_ID="23.05.5"\nOPENWRT_BOARD="x86/64"\n')  # fmt: skip
    spec.add("/etc/hosts", "127.0.0.1 localhost\n\n::1     localhost ip6-localhost ip6-loopback\n")
    spec.add("/etc/passwd", "\n".join(passwd) + "\n")
    spec.add("/etc/group", "\n".join(group) + "\n")
    spec.add("/etc/shadow", "\n".join(shadow) + "\n", 0o600)
    spec.add("/etc/config/system", f"config system\n\toption hostname '{hostname}'\n\toption timezone 'UTC'\n\toption ttylogin '0'\n")
    spec.add("/etc/config/dropbear", "config dropbear\n\toption PasswordAuth 'off'\n\toption RootPasswordAuth 'off'\n\toption Port '22'\n")
    spec.add("/etc/init.d/dropbear", OPENWRT_DROPBEAR_INIT, 0o755)
    spec.symlink("/etc/rc.d/S19dropbear", "../init.d/dropbear")
    spec.add("/etc/inittab", "::sysinit:/etc/init.d/rcS S boot\n::shutdown:/etc/init.d/rcS K shutdown\n::askconsole:/usr/libexec/login.sh\n")
    spec.add("/etc/banner", "OpenWrt 23.05.5\n")
    spec.mkdir("/etc/dropbear", 0o700)  # the init script generates the host keys at first boot
    spec.add("/bin/busybox", ELF_X86_64_HEADER, 0o755)
    for applet in ("/bin/sh", "/bin/ash", "/bin/ls", "/bin/cat", "/bin/echo", "/bin/rm", "/bin/login", "/usr/sbin/crond"):
        spec.symlink(applet, "busybox" if applet.startswith("/bin/") else "../../bin/busybox")
    spec.add("/usr/sbin/dropbear", ELF_X86_64_HEADER, 0o755)
    for d in ("/sbin", "/usr/bin", "/lib", "/overlay", "/rom"):
        spec.mkdir(d)
    spec.symlink("/var", "tmp")
    spec.mkdir("/tmp", 0o1777)
    spec.mkdir("/root", 0o700)
    return spec


def ed25519_keypair(comment: str) -> tuple[bytes, str]:
    """(OpenSSH private key, public key line)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, f"{public.decode()} {comment}"


def _wire_string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _wire_mpint(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return _wire_string(b"\0" + raw if raw and raw[0] & 0x80 else raw)


def dropbear_keypair(key_type: str = "ssh-ed25519", comment: str = "") -> tuple[bytes, str]:
    """(a private key in dropbear's own format, as dropbearkey writes it; its OpenSSH public key line).

    Fields as dropbear's buf_put_priv_key lays them out: the type, then
    rsa e n d p q, dss p q g y x, ecdsa curve Q k, ed25519 seed||public.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

    name = _wire_string(key_type.encode())
    if key_type == "ssh-ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
        raw = serialization.Encoding.Raw
        seed = key.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        body = _wire_string(seed + key.public_key().public_bytes(raw, serialization.PublicFormat.Raw))
    elif key_type == "ssh-rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        n = key.private_numbers()
        body = b"".join(_wire_mpint(v) for v in (n.public_numbers.e, n.public_numbers.n, n.d, n.p, n.q))
    elif key_type == "ssh-dss":
        key = dsa.generate_private_key(key_size=1024)
        n = key.private_numbers()
        p = n.public_numbers.parameter_numbers
        body = b"".join(_wire_mpint(v) for v in (p.p, p.q, p.g, n.public_numbers.y, n.x))
    elif key_type.startswith("ecdsa-sha2-nistp"):
        bits = key_type.rsplit("nistp", 1)[1]
        key = ec.generate_private_key({"256": ec.SECP256R1(), "384": ec.SECP384R1(), "521": ec.SECP521R1()}[bits])
        point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        body = _wire_string(f"nistp{bits}".encode()) + _wire_string(point) + _wire_mpint(key.private_numbers().private_value)
    else:
        raise ValueError(f"dropbear writes no {key_type!r} keys")
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return name + body, f"{public} {comment}".rstrip()


def tinyssh_keypair(comment: str = "") -> tuple[bytes, bytes, str]:
    """(.ed25519.sk: NaCl's seed||public, ed25519.pk: the raw public key, its OpenSSH public key line), as tinysshd-makekey writes them."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    raw = serialization.Encoding.Raw
    public = key.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
    seed = key.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return seed + public, public, f"{line} {comment}".rstrip()


def rsa_pem_private_key() -> bytes:
    """An old-style PEM host key, the kind found on appliances built years ago."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())


def disk_paths(path: str, layout: Layout) -> list[str]:
    """Where build_images writes an image's raw disks: ``path`` for the first, ``NAME-2.EXT``... for the others."""
    stem, ext = os.path.splitext(path)
    return [path] + [f"{stem}-{i}{ext}" for i in range(2, len(layout.disks) + 1)]


def build_images(images: Mapping[str, GuestSpec], size: int = DISK_BYTES) -> dict[str, list[str]]:
    """Write every spec's raw disks as its layout says, all images in one launch; image path -> its disk paths.

    Every disk of every image is added to the one appliance. Volume groups
    are made with the LVM filter narrowed to the image's own disks, so two
    images may both have a ``vg0``, as real appliances do.
    """
    import guestfs

    paths = {image: disk_paths(image, spec.layout) for image, spec in images.items()}
    g = guestfs.GuestFS(python_return_dict=True, close_on_exit=False)
    g.set_backend("direct")
    choice = accel.choose()
    if choice.backend_settings is not None:
        g.set_backend_settings(choice.backend_settings)
    for image, spec in images.items():
        for path, disk in zip(paths[image], spec.layout.disks):
            with open(path, "wb") as f:
                f.truncate(disk.byte_size(size))
            g.add_drive_opts(path, format="raw", readonly=False)
    g.launch()
    try:
        _require_features(g, {d.fs for spec in images.values() for d in spec.layout.disks} | (
            {"lvm2"} if any(d.lvm for spec in images.values() for d in spec.layout.disks) else set()))  # fmt: skip
        devices = iter(g.list_devices())
        for spec in images.values():
            _make_image(g, spec, [next(devices) for _ in spec.layout.disks])
        g.shutdown()
    finally:
        g.close()
    return paths


def _require_features(g, features: set[str]) -> None:
    """Fail with the package to install rather than with a mkfs error from inside the appliance."""
    wanted = sorted(f for f in features if f != "ext4")  # ext4 is always there
    missing = [f for f in wanted if not g.feature_available([f])]
    if missing:
        packages = {"xfs": "libguestfs-xfs", "btrfs": "btrfs-progs", "lvm2": "lvm2"}
        raise RuntimeError(f"the libguestfs appliance lacks {', '.join(missing)}: install "
                           f"{', '.join(packages.get(f, f) for f in missing)} (make setup does)")  # fmt: skip


def _make_image(g, spec: GuestSpec, devices: list[str]) -> None:
    """Partition, format and mount one image's disks as its guest would, then write its files through the mounts."""
    volumes = []
    filesystems: dict[str, str] = {}  # mountpoint -> device
    holders = [device + "1" if disk.partition_table else device for disk, device in zip(spec.layout.disks, devices)]
    for disk, device in zip(spec.layout.disks, devices):
        if disk.partition_table:
            g.part_disk(device, disk.partition_table)
    if any(disk.lvm for disk in spec.layout.disks):
        g.lvm_set_filter(sorted(set(devices + holders)))  # this image's disks only: another image's vg0 stays out of sight
    for disk, holder in zip(spec.layout.disks, holders):
        fs_device = holder
        if disk.lvm:
            vg, lv = disk.lvm.split("/")
            g.pvcreate(holder)
            g.vgcreate(vg, [holder])
            g.lvcreate_free(lv, vg, 100)
            volumes.append(vg)
            fs_device = f"/dev/{vg}/{lv}"
        if disk.label:
            g.mkfs(disk.fs, fs_device, label=disk.label)
        else:
            g.mkfs(disk.fs, fs_device)
        if disk.uuid:
            g.set_uuid(fs_device, disk.uuid)
        filesystems[disk.mountpoint] = fs_device
    for mountpoint in sorted(filesystems, key=lambda m: (m.count("/") if m != "/" else 0, m)):
        if mountpoint != "/":
            g.mkdir_p(mountpoint)
        g.mount(filesystems[mountpoint], mountpoint)
    write_tree(g, spec)
    g.umount_all()
    if volumes:
        g.vg_activate(False, volumes)


def write_tree(g, spec: GuestSpec) -> None:
    """Write a spec's directories, files, links and owners into the mounted filesystem."""
    for d, mode in sorted(spec.dirs.items()):
        g.mkdir_p(d)
        g.chmod(mode, d)
    for path, (content, mode) in sorted(spec.files.items()):
        g.mkdir_p(os.path.dirname(path))
        g.write(path, content)
        g.chmod(mode, path)  # after write: chmod keeps setuid bits that a write would clear
    for path, target in sorted(spec.links.items()):
        g.mkdir_p(os.path.dirname(path))
        g.ln_s(target, path)
    for path, (uid, gid) in sorted(spec.owners.items()):
        g.lchown(uid, gid, path)
        if path in spec.files:  # chown clears setuid/setgid: put the mode back
            g.chmod(spec.files[path][1], path)


def to_vmdk(raw: str, vmdk: str) -> None:
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, vmdk], check=True)


def ovf_descriptor(name: str, disk_file: str, disk_size: int | None, capacity: int, extra_config: Mapping[str, str] = {},
                   more_disks: Sequence[tuple[str, int | None, int]] = ()) -> str:
    """An OVF envelope for one VM; ``more_disks`` are further (file, size, capacity) on the same SCSI controller."""
    disks = [(disk_file, disk_size, capacity), *more_disks]
    files = "".join(f'    <File ovf:id="file{i}" ovf:href="{html.escape(f)}"' + ("" if size is None else f' ovf:size="{size}"') + "/>\n"
                    for i, (f, size, _c) in enumerate(disks, 1))  # fmt: skip
    disk_entries = "".join(
        f'    <Disk ovf:diskId="vmdisk{i}" ovf:fileRef="file{i}" ovf:capacity="{cap}"\n'
        '        ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>\n'
        for i, (_f, _s, cap) in enumerate(disks, 1)
    )
    disk_items = "".join(
        f'      <Item><rasd:AddressOnParent>{i - 1}</rasd:AddressOnParent><rasd:ElementName>Hard disk {i}</rasd:ElementName>\n'
        f'        <rasd:HostResource>ovf:/disk/vmdisk{i}</rasd:HostResource><rasd:InstanceID>{3 + i}</rasd:InstanceID>\n'
        '        <rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>\n'
        for i in range(1, len(disks) + 1)
    )
    extra = "".join(
        f'      <vmw:ExtraConfig ovf:required="false" vmw:key="{html.escape(k)}" vmw:value="{html.escape(v)}"/>\n'
        for k, v in extra_config.items()
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
    xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
    xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References>
{files}  </References>
  <DiskSection>
    <Info>Virtual disks</Info>
{disk_entries}  </DiskSection>
  <NetworkSection>
    <Info>Networks</Info>
    <Network ovf:name="VM Network"><Description>The appliance network</Description></Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{html.escape(name)}">
    <Info>A sample appliance</Info>
    <OperatingSystemSection ovf:id="96"><Info>Guest OS</Info></OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware</Info>
      <System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName><vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemType>vmx-19</vssd:VirtualSystemType></System>
      <Item><rasd:ElementName>1 CPU</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:ElementName>512 MB</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>512</rasd:VirtualQuantity></Item>
      <Item><rasd:ElementName>SCSI controller</rasd:ElementName><rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType><rasd:ResourceType>6</rasd:ResourceType></Item>
{disk_items}{extra}    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"""


def make_ova(ova: str, raw_disk: str | Sequence[str], extra_config: Mapping[str, str] = {}) -> None:
    """OVF + SHA256 manifest + streamOptimized VMDKs (one per raw disk, in order), as a USTAR archive in spec order."""
    raws = [raw_disk] if isinstance(raw_disk, str) else list(raw_disk)
    name = os.path.basename(ova).rsplit(".", 1)[0]
    disks = []  # (name, bytes, capacity)
    for i, raw in enumerate(raws, 1):
        vmdk = f"{os.path.splitext(ova)[0]}-disk{i}.vmdk"
        to_vmdk(raw, vmdk)
        with open(vmdk, "rb") as f:
            disks.append((os.path.basename(vmdk), f.read(), os.path.getsize(raw)))
        os.unlink(vmdk)
    (first, first_bytes, first_capacity), rest = disks[0], disks[1:]
    ovf = ovf_descriptor(name, first, len(first_bytes), first_capacity, extra_config,
                         [(n, len(d), cap) for n, d, cap in rest]).encode()  # fmt: skip
    members = [(f"{name}.ovf", ovf)]
    manifest = "".join(f"SHA256({n})= {hashlib.sha256(d).hexdigest()}\n" for n, d in members + [(n, d) for n, d, _c in disks])
    members += [(f"{name}.mf", manifest.encode()), *((n, d) for n, d, _c in disks)]
    with tarfile.open(ova, "w", format=tarfile.USTAR_FORMAT) as tar:
        for member_name, data in members:
            info = tarfile.TarInfo(member_name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))


def make_vmx(vmx: str, raw_disks: Sequence[str], guest_os: str = "other5xlinux-64") -> None:
    """A VMware Workstation/ESXi bundle: ``vmx`` plus one monolithic sparse VMDK per raw disk beside it."""
    stem = os.path.splitext(vmx)[0]
    lines = ['.encoding = "UTF-8"', 'config.version = "8"', 'virtualHW.version = "19"', f'guestOS = "{guest_os}"',
             'memSize = "512"', 'scsi0.present = "TRUE"', 'scsi0.virtualDev = "pvscsi"']  # fmt: skip
    for i, raw in enumerate(raw_disks):
        disk = f"{stem}-disk{i + 1}.vmdk"
        subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "vmdk", raw, disk], check=True)
        lines += [f'scsi0:{i}.present = "TRUE"', f'scsi0:{i}.fileName = "{os.path.basename(disk)}"']
    with open(vmx, "w") as f:
        f.write("\n".join(lines) + "\n")


def _leave_vendor_residue(spec: GuestSpec) -> None:
    """What a rushed vendor build leaves behind besides keys: a default password, password SSH, a history."""
    from certify.guest.parsers.crypt import make_hash

    _replace_line(spec, "/etc/shadow", "root:", f"root:{make_hash('changeme', '$y$')}:19700:0:99999:7:::")
    spec.add("/etc/ssh/sshd_config.d/10-support.conf", "# remote support\nPasswordAuthentication yes\n")
    spec.add("/root/.bash_history", "apt-get install -y nginx\n"
             "export AWS_SECRET_ACCESS_KEY=Zq8mXv2Lp9Rt4Wn6Yb1Kc3Hd5Jf7Gs0Ae2Ui4Oy6\n", 0o600)  # a made-up key


def _replace_line(spec: GuestSpec, path: str, prefix: str, line: str) -> None:
    content, mode = spec.files[path]
    lines = [line if old.startswith(prefix) else old for old in content.decode().splitlines()]
    spec.files[path] = ("\n".join(lines) + "\n").encode(), mode


def demo_specs() -> dict[str, tuple[GuestSpec, dict[str, str]]]:
    clean = base_system("clean-appliance")
    clean.mkdir("/root/.ssh", 0o700)
    clean.mkdir("/home/alice/.ssh", 0o700, owner=(1000, 1000))
    clean.add("/home/alice/.ssh/authorized_keys", "# keys are added at first boot by cloud-init\n", 0o600, owner=(1000, 1000))

    dirty = base_system("vendor-build-07")
    host_private, host_public = ed25519_keypair("root@vendor-build-07")
    dirty.add("/etc/ssh/ssh_host_ed25519_key", host_private, 0o600)
    dirty.add("/etc/ssh/ssh_host_ed25519_key.pub", host_public + "\n")
    dirty.add("/etc/ssh/ssh_host_rsa_key", rsa_pem_private_key(), 0o600)
    _, vendor_key = ed25519_keypair("packer@vendor-ci")
    dirty.mkdir("/root/.ssh", 0o700)
    dirty.add("/root/.ssh/authorized_keys", vendor_key + "\n", 0o600)
    _leave_vendor_residue(dirty)
    vnc = {"RemoteDisplay.vnc.enabled": "TRUE", "RemoteDisplay.vnc.port": "5901", "RemoteDisplay.vnc.password": "vendor123"}
    return {"clean-appliance": (clean, {}), "dirty-appliance": (dirty, vnc)}


def main(outdir: str) -> int:
    os.makedirs(outdir, exist_ok=True)
    specs = demo_specs()
    raws = {os.path.join(outdir, f"{name}.raw"): spec for name, (spec, _extra) in specs.items()}
    print(f"building {len(raws)} sample appliances in {outdir} (one libguestfs launch)...", file=sys.stderr)
    build_images(raws)
    for name, (_spec, extra) in specs.items():
        raw = os.path.join(outdir, f"{name}.raw")
        make_ova(os.path.join(outdir, f"{name}.ova"), raw, extra)
        os.unlink(raw)
        print(f"  {os.path.join(outdir, name)}.ova", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m certify.sample OUTDIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
