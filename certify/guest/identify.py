"""Which system the disks hold and where its filesystems mount: a cheap probe where it is certain, inspect_os otherwise.

``inspect_os`` lists every filesystem (an LVM scan and a blkid per device)
and checks each for every OS family it knows. On a plain Linux guest the
probe answers the same with one ``blkid`` by the appliance, one mount per
filesystem and the handful of files that decide a Linux root
(certify/guest/parsers/linuxroot.py). Any doubt (a filesystem type it does
not expect, a second root, a release file or fstab line it does not read
exactly as libguestfs does, Windows, BSD, md, LUKS, btrfs subvolumes) and
``inspect_os`` decides, as it always did. tests/test_guest_parity.py
runs both on every test image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from certify.errors import first_line
from certify.guest.parsers import linuxroot
from certify.guest.parsers.linuxroot import BlockDevice, Devices, Doubt, OsFields

LINUX_FILESYSTEMS = {"ext2", "ext3", "ext4", "xfs", "btrfs"}
HARMLESS = {"swap", "LVM2_member", "vfat", None}  # probed (vfat) or not a filesystem a system lives on
_WINDOWS_OR_DOS = {"windows", "winnt", "win32", "win", "fdos", "dos"}
_PARTITION_OF = re.compile(r"(/dev/[a-z]+?)\d+")
_SAFE_DEVICE = re.compile(r"/dev/[A-Za-z0-9/_.+-]+")


@dataclass(frozen=True)
class Inspection:
    root: str
    mountpoints: dict[str, str]
    os_info: dict[str, Any]
    method: str  # "probe" or "inspect_os"
    fallback: str | None = None  # why the probe left it to inspect_os


@dataclass
class Probe:
    """What the probe made of every filesystem: certain roots, and the doubts that stop it."""

    roots: dict[str, Inspection] = field(default_factory=dict)
    doubts: list[str] = field(default_factory=list)


def probe(g: Any) -> Probe:
    """Every Linux root the disks hold, each as inspect_os would describe it, and every doubt met on the way."""
    result = Probe()
    try:
        devices = _devices(g)
    except (Doubt, RuntimeError, UnicodeDecodeError) as exc:
        result.doubts.append(first_line(exc))
        return result
    for device, info in sorted(devices.filesystems.items()):
        if info.type not in LINUX_FILESYSTEMS and info.type != "vfat":
            continue
        try:
            g.mount_ro(device, "/")
        except RuntimeError as exc:
            result.doubts.append(f"{device} ({info.type}) does not mount: {str(exc).splitlines()[0]}")
            continue
        try:
            if _is_linux_root(g, device, info):
                result.roots[device] = _describe_root(g, device, devices)
        except (Doubt, RuntimeError, UnicodeDecodeError) as exc:  # a call that failed is a doubt too
            result.doubts.append(f"{device}: {first_line(exc)}")
        finally:
            g.umount_all()
    return result


def certain_root(found: Probe) -> Inspection | str:
    """The one root the probe is certain of, or why inspect_os must decide."""
    if found.doubts:
        return found.doubts[0]
    if len(found.roots) != 1:
        return "no Linux root found" if not found.roots else f"{len(found.roots)} Linux roots"
    return next(iter(found.roots.values()))


def _blkid(g: Any, devices: list[str]) -> dict[str, BlockDevice]:
    """What blkid reads on each device, in one round trip; every device accounted for, or a Doubt."""
    if not all(_SAFE_DEVICE.fullmatch(d) for d in devices):
        raise Doubt("a device name the probe will not put on a command line")
    # -p: read the superblocks now, no cache. Device by device, with its exit and its errors: blkid exits 2
    # both for "nothing there" and for a device it could not open, and only the message tells them apart.
    script = ('for d in ' + " ".join(devices) + '; do out=$(blkid -p -o export "$d" 2>&1); '
              'printf "DEVNAME=%s\\nBLKID_EXIT=%s\\n%s\\n\\n" "$d" "$?" "$out"; done')  # fmt: skip
    try:
        out = g.debug("sh", [script])
    except (RuntimeError, AttributeError) as exc:
        raise Doubt(f"blkid in the appliance: {first_line(exc)}") from None
    found = linuxroot.parse_blkid_export(out)
    if set(found) != set(devices):
        raise Doubt("blkid did not describe every device it was asked about")
    return found


def _devices(g: Any) -> Devices:
    disks = g.list_devices()
    partitions = g.list_partitions()
    if g.list_md_devices():
        raise Doubt("the disks hold md RAID devices")
    # As list_filesystems: a partitioned disk is read through its partitions, never as a whole.
    partitioned = {m[1] for p in partitions if (m := _PARTITION_OF.fullmatch(p))}
    if not partitioned <= set(disks):
        raise Doubt("a partition of a disk libguestfs does not list")
    filesystems = _blkid(g, [*(d for d in disks if d not in partitioned), *partitions])
    lvs: list[str] = []
    if any(info.type == "LVM2_member" for info in filesystems.values()):
        lvs = g.lvs()
        if lvs:
            filesystems.update(_blkid(g, lvs))
    for info in filesystems.values():
        if info.type not in LINUX_FILESYSTEMS and info.type not in HARMLESS:
            raise Doubt(f"{info.device} holds {info.type}, which the probe leaves to inspect_os")
    return Devices(tuple(disks), frozenset(partitions), filesystems, frozenset(lvs), lambda spec: _canonical_lv(g, spec))


def _canonical_lv(g: Any, spec: str) -> str | None:
    try:
        return g.lvm_canonical_lv_name(spec)
    except RuntimeError:
        return None


def _is_symlink_to(g: Any, path: str, target: str) -> bool:
    return g.is_symlink(path) and g.readlink(path) == target


def _is_linux_root(g: Any, device: str, info: BlockDevice) -> bool:
    """libguestfs' check_filesystem, in its order, for the roles a Linux guest's filesystems take; Doubt for any other."""
    if info.type == "btrfs" and g.btrfs_subvolume_list("/"):
        raise Doubt("btrfs with subvolumes (each one is inspected on its own)")
    if any(g.is_file(p) for p in ("/grub/menu.lst", "/grub/grub.conf", "/grub2/grub.cfg")):
        return False  # a /boot
    if any(g.is_file(p) for p in ("/etc/freebsd-update.conf", "/netbsd", "/bsd", "/hurd/console", "/service/vm")):
        raise Doubt("BSD, Hurd or Minix signs")
    if g.is_dir("/etc") and (g.is_dir("/bin") or _is_symlink_to(g, "/bin", "usr/bin")) and (
        g.is_file("/etc/fstab") or g.is_file("/etc/hosts")
    ):
        if info.type == "vfat":
            raise Doubt("a Linux root on FAT")
        return True
    if g.is_file("/etc/coreos/update.conf") or (g.is_dir("/bin") and g.is_dir("/share") and g.is_dir("/local")):
        raise Doubt("a CoreOS root or a separate /usr (inspect_os merges those)")
    if any(name.lower() in _WINDOWS_OR_DOS for name in g.ls("/")):
        raise Doubt("Windows or DOS signs")
    return False


def _small_file(g: Any, path: str) -> bytes | None:
    """libguestfs' read_small_file: a regular file (symlinks followed) of at most 2 MiB; None otherwise."""
    if not g.is_file(path, followsymlinks=True):
        return None
    if g.statns(path)["st_size"] > linuxroot.SMALL_FILE:
        raise Doubt(f"{path} is too large for inspection to read")
    return g.read_file(path)


def _os_fields(g: Any) -> OsFields:
    """libguestfs' check_tests over the release files, for the cases the probe follows exactly."""
    fields = OsFields()
    os_release = _small_file(g, "/etc/os-release")
    if os_release is not None and linuxroot.parse_os_release(os_release, fields):
        return fields
    for path in linuxroot.RELEASE_FILES_BEFORE_DEBIAN:
        if g.is_file(path, followsymlinks=True):
            raise Doubt(f"{path} decides the release (not followed by the probe)")
    debian_version = _small_file(g, "/etc/debian_version")
    if debian_version is None:
        raise Doubt("no os-release or debian_version the probe can decide from")
    linuxroot.parse_debian_version(debian_version, fields)
    return fields


def _arch(g: Any) -> str | None:
    for binary in linuxroot.ARCH_BINARIES:
        if not g.is_file(binary, followsymlinks=True):
            continue
        try:
            resolved = g.realpath(binary)
            return linuxroot.elf_arch(g.pread(resolved, 64, 0)) or g.file_architecture(resolved)
        except RuntimeError:
            continue  # as inspection does: the next binary
    return None


def _hostname(g: Any) -> str | None:
    for path in linuxroot.HOSTNAME_FILES:
        data = _small_file(g, path)
        if data is not None and (name := linuxroot.hostname_from(data, path)) is not None:
            return name
    if g.is_file("/etc/sysconfig/network"):
        raise Doubt("the host name is in /etc/sysconfig/network (read with augeas)")
    return None


def _describe_root(g: Any, device: str, devices: Devices) -> Inspection:
    fields = _os_fields(g)
    for conf in ("/etc/mdadm.conf", "/etc/mdadm/mdadm.conf"):
        if g.is_file(conf, followsymlinks=True):
            raise Doubt(f"{conf} (md devices in fstab are mapped through it)")
    fstab = g.read_file("/etc/fstab") if g.is_file("/etc/fstab", followsymlinks=True) else None
    mountpoints = {"/": device} if fstab is None else linuxroot.fstab_mountpoints(fstab, device, devices)
    major, minor = fields.version or (0, 0)
    info = {
        "type": "linux",
        "distro": fields.distro or "unknown",
        "product_name": fields.product_name or "unknown",
        "version": f"{major}.{minor}",
        "arch": _arch(g) or "unknown",
        "hostname": _hostname(g) or "unknown",
        "root": device,
    }
    return Inspection(device, mountpoints, info, "probe")
