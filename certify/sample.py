"""Builds small sample appliances by code: for the demo and for the tests.

``python -m certify.sample OUTDIR`` writes ``clean-appliance.ova`` and
``dirty-appliance.ova`` (host keys, a vendor's authorized key, a VNC console
with a stored password), both made in one libguestfs launch.
"""

from __future__ import annotations

import hashlib
import html
import io
import os
import subprocess
import sys
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field

from certify import accel

DISK_BYTES = 64 * 1024 * 1024


@dataclass
class GuestSpec:
    """Files of a tiny Debian-shaped root filesystem: path -> (content, mode)."""

    hostname: str = "appliance"
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
    spec.add("/etc/fstab", "/dev/sda1 / ext4 defaults 0 1\n")
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


def ed25519_keypair(comment: str) -> tuple[bytes, str]:
    """(OpenSSH private key, public key line)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, f"{public.decode()} {comment}"


def rsa_pem_private_key() -> bytes:
    """An old-style PEM host key, the kind found on appliances built years ago."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())


def build_images(images: Mapping[str, GuestSpec], size: int = DISK_BYTES) -> None:
    """Write one raw disk per spec (MBR, one ext4 partition), all in one launch."""
    import guestfs

    g = guestfs.GuestFS(python_return_dict=True, close_on_exit=False)
    g.set_backend("direct")
    choice = accel.choose()
    if choice.backend_settings is not None:
        g.set_backend_settings(choice.backend_settings)
    for path in images:
        with open(path, "wb") as f:
            f.truncate(size)
        g.add_drive_opts(path, format="raw", readonly=False)
    g.launch()
    try:
        for device, spec in zip(g.list_devices(), images.values()):
            g.part_disk(device, "mbr")
            g.mkfs("ext4", device + "1")
            g.mount(device + "1", "/")
            write_tree(g, spec)
            g.umount_all()
        g.shutdown()
    finally:
        g.close()


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


def ovf_descriptor(name: str, disk_file: str, disk_size: int | None, capacity: int, extra_config: Mapping[str, str] = {}) -> str:
    size = "" if disk_size is None else f' ovf:size="{disk_size}"'
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
    <File ovf:id="file1" ovf:href="{html.escape(disk_file)}"{size}/>
  </References>
  <DiskSection>
    <Info>Virtual disks</Info>
    <Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="{capacity}"
        ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
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
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
{extra}    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"""


def make_ova(ova: str, raw_disk: str, extra_config: Mapping[str, str] = {}) -> None:
    """OVF + SHA256 manifest + streamOptimized VMDK, as a USTAR archive in spec order."""
    name = os.path.basename(ova).rsplit(".", 1)[0]
    vmdk = f"{os.path.splitext(ova)[0]}-disk1.vmdk"
    to_vmdk(raw_disk, vmdk)
    disk_name = os.path.basename(vmdk)
    with open(vmdk, "rb") as f:
        disk_bytes = f.read()
    ovf = ovf_descriptor(name, disk_name, len(disk_bytes), os.path.getsize(raw_disk), extra_config).encode()
    members = [(f"{name}.ovf", ovf)]
    manifest = "".join(f"SHA256({n})= {hashlib.sha256(d).hexdigest()}\n" for n, d in members + [(disk_name, disk_bytes)])
    members += [(f"{name}.mf", manifest.encode()), (disk_name, disk_bytes)]
    with tarfile.open(ova, "w", format=tarfile.USTAR_FORMAT) as tar:
        for member_name, data in members:
            info = tarfile.TarInfo(member_name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    os.unlink(vmdk)


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
