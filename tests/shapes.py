"""Appliance shapes that must work: several disks, LVM, xfs/btrfs, GPT/MBR/no partition table, four distro families.

Each shape is a real image built in the session's one build launch
(tests/conftest.py) and scanned once; tests/test_guest_shapes.py asserts
what the scan saw. Every shape plants SSH findings where its layout makes
them interesting (on LVM, on a data disk mounted by /etc/fstab), with the
bundle disk file each must be reported on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from certify import sample
from certify.guest.parsers.sshkeys import parse_public_key_line
from certify.sample import Disk, Layout


@dataclass
class Shape:
    name: str
    kind: str  # how it is uploaded: "ova", "vmx" or "qcow2" (a bare disk)
    spec: sample.GuestSpec
    distro: str  # what libguestfs inspection must call it
    version: str
    # (check id, guest path, severity, bundle disk file) of every failing guest finding
    failing: set[tuple[str, str, str, str]]
    # what the raw disks hold, read on the host before packaging: (partition table or None, first signature)
    disk_signatures: list[tuple[str | None, str]]
    fingerprints: dict[str, str] = field(default_factory=dict)  # guest path -> planted key's fingerprint
    hostname: str | None = None  # what inspection reports, when it is not spec.hostname (libguestfs says 'unknown')

    @property
    def artifact_name(self) -> str:
        return {"ova": f"{self.name}.ova", "vmx": f"{self.name}/{self.name}.vmx", "qcow2": f"{self.name}.qcow2"}[self.kind]

    def disk_file(self, index: int) -> str:
        """The name the bundle gives disk ``index`` (0-based): what findings carry as location.file."""
        return f"{self.name}.qcow2" if self.kind == "qcow2" else f"{self.name}-disk{index + 1}.vmdk"


def add_account(spec: sample.GuestSpec, passwd: str, shadow: str, group: str) -> None:
    """Append one account to the spec's passwd, shadow and group, keeping their modes and owners."""
    for path, line in (("/etc/passwd", passwd), ("/etc/shadow", shadow), ("/etc/group", group)):
        content, mode = spec.files[path]
        spec.files[path] = (content + line.encode() + b"\n", mode)


def rocky_lvm_two_disks() -> Shape:
    """Rocky 9 OVA: GPT + LVM (rl/root) xfs root, and an MBR ext4 data disk mounted by UUID at /srv/data."""
    name = "rocky-appliance"
    spec = sample.rhel_system("rocky-build-3", users=("alice",))
    spec.set_layout(Layout((Disk("/", "gpt", "xfs", lvm="rl/root"),
                            Disk("/srv/data", "mbr", "ext4", uuid="5b7a1c2e-8f3d-4e6a-9c0b-1d2e3f4a5b6c"))))  # fmt: skip
    add_account(spec, "app:x:990:990:application:/srv/data/app:/sbin/nologin", "app:!!:19700::::::", "app:x:990:")
    spec.mkdir("/srv/data/app", 0o700, owner=(990, 990))
    spec.mkdir("/srv/data/app/.ssh", 0o700, owner=(990, 990))
    _, vendor = sample.ed25519_keypair("deploy@vendor-ci")
    spec.add("/srv/data/app/.ssh/authorized_keys", vendor + "\n", 0o600, owner=(990, 990))
    host_private, host_public = sample.ed25519_keypair("root@rocky-build-3")
    spec.add("/etc/ssh/ssh_host_ed25519_key", host_private, 0o600)
    spec.add("/etc/ssh/ssh_host_ed25519_key.pub", host_public + "\n")
    shape = Shape(name, "ova", spec, "rocky", "9.4", set(), [("gpt", "LVM2_member"), ("dos", "ext4")])
    shape.failing = {
        ("ssh-host-keys-present", "/etc/ssh/ssh_host_ed25519_key", "high", shape.disk_file(0)),  # root on LVM
        ("ssh-authorized-keys-present", "/srv/data/app/.ssh/authorized_keys", "critical", shape.disk_file(1)),
    }
    return shape


def ubuntu_two_disks_vmx() -> Shape:
    """Ubuntu 22.04 VMX: GPT ext4 root by UUID, and an xfs data disk without a partition table, by LABEL at /var/lib/app."""
    name = "ubuntu-appliance"
    spec = sample.base_system("ubuntu-build-9", users=("alice",))
    spec.add("/etc/os-release", 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\n'
             'VERSION="22.04.4 LTS (Jammy Jellyfish)"\nVERSION_CODENAME=jammy\nID=ubuntu\nID_LIKE=debian\n')  # fmt: skip
    spec.add("/etc/lsb-release", "DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=22.04\nDISTRIB_CODENAME=jammy\n"
             'DISTRIB_DESCRIPTION="Ubuntu 22.04.4 LTS"\n')  # fmt: skip
    spec.add("/etc/debian_version", "bookworm/sid\n")
    spec.set_layout(Layout((Disk("/", "gpt", "ext4", uuid="0f3c6a52-7d1e-4b9a-8e2f-3a4b5c6d7e8f"),
                            Disk("/var/lib/app", None, "xfs", label="appdata"))))  # fmt: skip
    add_account(spec, "app:x:998:998:application:/var/lib/app:/usr/sbin/nologin", "app:!:19700::::::", "app:x:998:")
    spec.mkdir("/var/lib/app", 0o750, owner=(998, 998))
    spec.mkdir("/var/lib/app/.ssh", 0o700, owner=(998, 998))
    _, vendor = sample.ed25519_keypair("support@vendor")
    spec.add("/var/lib/app/.ssh/authorized_keys", vendor + "\n", 0o600, owner=(998, 998))
    spec.add("/etc/ssh/ssh_host_rsa_key", sample.rsa_pem_private_key(), 0o600)
    shape = Shape(name, "vmx", spec, "ubuntu", "22.4", set(), [("gpt", "ext4"), (None, "xfs")])
    shape.failing = {
        ("ssh-host-keys-present", "/etc/ssh/ssh_host_rsa_key", "high", shape.disk_file(0)),
        ("ssh-authorized-keys-present", "/var/lib/app/.ssh/authorized_keys", "critical", shape.disk_file(1)),
    }
    return shape


def alpine_btrfs_whole_disk() -> Shape:
    """Alpine 3.20 bare qcow2: btrfs on the whole disk (no partition table), busybox, no package database at all.

    Its one finding is a host key with no .pub beside it (named by the
    private key's public half): tests/test_scan_guest.py's bare-qcow2 test
    reads this same scan.
    """
    name = "alpine-appliance"
    spec = sample.alpine_system("alpine-build-1", users=("alice",))
    spec.set_layout(Layout((Disk("/", None, "btrfs", uuid="9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"),)))
    host_private, host_public = sample.ed25519_keypair("root@alpine-build-1")
    spec.add("/etc/ssh/ssh_host_ed25519_key", host_private, 0o600)
    # A busybox build with its package database stripped (as buildroot-style images ship): the setuid
    # busybox cannot be told from an added one, so suid-sgid-inventory must say so, not pass.
    spec.remove("/lib/apk/db/installed")
    spec.add("/bin/bbsuid", sample.ELF_X86_64_HEADER, 0o4755)
    shape = Shape(name, "qcow2", spec, "alpinelinux", "3.20", set(), [(None, "btrfs")])
    shape.failing = {("ssh-host-keys-present", "/etc/ssh/ssh_host_ed25519_key", "high", shape.disk_file(0))}
    shape.fingerprints["/etc/ssh/ssh_host_ed25519_key"] = parse_public_key_line(host_public).fingerprint
    return shape


def openwrt_dropbear() -> Shape:
    """OpenWrt 23.05 OVA as a vendor built it: BusyBox, procd, UCI, dropbear; no /etc/fstab, no /etc/hostname, no package database.

    Everything the catalog would miss on a full-distribution reading:
    dropbear's host keys in its binary format (named by fingerprint),
    root's key in /etc/dropbear/authorized_keys, OpenWrt's shipped dropbear
    section (passwords on, root's too), a default root password in
    md5crypt, telnet enabled by an /etc/rc.d link to BusyBox's telnetd, and
    OpenWrt's saved random seed. libguestfs knows neither the distribution
    (ID=openwrt) nor the host name (it is in /etc/config/system).
    """
    from certify.guest.parsers.crypt import make_hash

    name = "openwrt-appliance"
    spec = sample.openwrt_system("edge-gw-5")
    content, mode = spec.files["/etc/shadow"]
    spec.files["/etc/shadow"] = (content.replace(b"root:*:", f"root:{make_hash('admin', '$1$')}:".encode()), mode)
    spec.add("/etc/config/dropbear", "config dropbear\n\toption PasswordAuth 'on'\n\toption RootPasswordAuth 'on'\n\toption Port '22'\n")
    ed25519, ed25519_public = sample.dropbear_keypair("ssh-ed25519")
    rsa, _ = sample.dropbear_keypair("ssh-rsa")
    spec.add("/etc/dropbear/dropbear_ed25519_host_key", ed25519, 0o600)
    spec.add("/etc/dropbear/dropbear_rsa_host_key", rsa, 0o600)
    _, vendor = sample.ed25519_keypair("noc@vendor")
    spec.add("/etc/dropbear/authorized_keys", vendor + "\n", 0o600)
    spec.symlink("/usr/sbin/telnetd", "../../bin/busybox")
    spec.add("/etc/init.d/telnet", "#!/bin/sh /etc/rc.common\nSTART=50\nstart_service() { procd_open_instance; procd_set_param command "
             "/usr/sbin/telnetd -F -l /bin/login.sh; procd_close_instance; }\n", 0o755)  # fmt: skip
    spec.symlink("/etc/rc.d/S50telnet", "../init.d/telnet")
    spec.add("/etc/urandom.seed", bytes(range(256)) * 2, 0o600)
    shape = Shape(name, "ova", spec, "unknown", "23.5", set(), [("dos", "ext4")], hostname="unknown")
    disk = shape.disk_file(0)
    shape.failing = {(check, path, severity, disk) for check, path, severity in (
        ("ssh-host-keys-present", "/etc/dropbear/dropbear_ed25519_host_key", "high"),
        ("ssh-host-keys-present", "/etc/dropbear/dropbear_rsa_host_key", "high"),
        ("ssh-authorized-keys-present", "/etc/dropbear/authorized_keys", "critical"),
        ("sshd-permit-root-login", "/etc/config/dropbear", "high"),
        ("sshd-password-authentication", "/etc/config/dropbear", "high"),
        ("account-usable-password", "/etc/shadow", "high"),
        ("default-or-weak-password", "/etc/shadow", "critical"),
        ("root-login-not-locked", "/etc/shadow", "high"),
        ("cleartext-remote-services", "/usr/sbin/telnetd", "high"),
        ("cleartext-remote-services", "/etc/rc.d/S50telnet", "high"),
        ("instance-identity-and-entropy", "/etc/urandom.seed", "medium"),
    )}  # fmt: skip
    shape.fingerprints["/etc/dropbear/dropbear_ed25519_host_key"] = parse_public_key_line(ed25519_public).fingerprint
    return shape


def shapes() -> dict[str, Shape]:
    return {s.name: s for s in (rocky_lvm_two_disks(), ubuntu_two_disks_vmx(), alpine_btrfs_whole_disk(), openwrt_dropbear())}
