"""What libguestfs inspection would say of a Linux root, computed from the files it reads: pure, no handle.

``inspect_os`` probes every filesystem for every OS family; on a plain Linux
guest most of that is spent ruling out families it is not. certify's probe
(certify/guest/identify.py) reads the few files that decide a Linux root and
computes the same answer with these functions, which follow libguestfs
1.48's daemon (inspect_fs_unix.ml, inspect_fs_unix_fstab.ml, inspect_utils.ml)
for the cases they accept. Anything they are not certain of raises
``Doubt``, and the probe then lets ``inspect_os`` decide.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass


class Doubt(Exception):
    """The probe cannot be certain it gives inspect_os's answer: inspect_os decides."""


SMALL_FILE = 2 * 1048 * 1024  # libguestfs' is_small_file: larger release files are not read
FSTAB_LIMIT = 100 * 1000  # augeas is not given a larger /etc/fstab
RELEASE_FILES_BEFORE_DEBIAN = ("/etc/lsb-release", "/etc/openmandriva-release", "/etc/oracle-release", "/etc/centos-release",
                               "/etc/rocky-release", "/etc/altlinux-release", "/etc/redhat-release")  # fmt: skip
ARCH_BINARIES = ("/bin/bash", "/bin/ls", "/bin/echo", "/bin/rm", "/bin/sh")
HOSTNAME_FILES = ("/etc/HOSTNAME", "/etc/hostname")

# os-release ID -> libguestfs distro name (inspect_fs_unix.ml distro_of_os_release_id, inspect_types.ml)
DISTROS = {"alpine": "alpinelinux", "altlinux": "altlinux", "arch": "archlinux", "centos": "centos", "coreos": "coreos",
           "debian": "debian", "fedora": "fedora", "frugalware": "frugalware", "gentoo": "gentoo", "kali": "kalilinux",
           "kylin": "kylin", "mageia": "mageia", "neokylin": "neokylin", "openmandriva": "openmandriva",
           "opensuse": "opensuse", "pardus": "pardus", "pld": "pldlinux", "rhel": "rhel", "rocky": "rocky",
           "sles": "sles", "sled": "sles", "ubuntu": "ubuntu", "void": "voidlinux"}  # fmt: skip
ROLLING = {"archlinux", "gentoo", "voidlinux"}
MAJOR_ONLY_IN_OS_RELEASE = {"debian", "centos", "rocky"}  # their VERSION_ID lacks the minor: release files decide
_MAJOR_MINOR = re.compile(r"(\d+)\.(\d+)")
_MAJOR = re.compile(r"(\d+)")
_NEOKYLIN = re.compile(r"^V(\d+)Update(\d+)$")


@dataclass
class OsFields:
    distro: str | None = None
    product_name: str | None = None
    version: tuple[int, int] | None = None


def _text(data: bytes, what: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Doubt(f"{what} is not UTF-8") from None
    if "\r" in text or "\0" in text:
        raise Doubt(f"{what} holds carriage returns or NULs")
    return text


def _version_from(text: str, fields: OsFields) -> None:
    """libguestfs' parse_version_from_major_minor: the first N.M anywhere, else the first N; else unchanged."""
    if m := _MAJOR_MINOR.search(text):
        fields.version = (int(m.group(1)), int(m.group(2)))
    elif m := _MAJOR.search(text):
        fields.version = (int(m.group(1)), 0)


def _shell_unquote(value: str, what: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    if any(c in value for c in "\\\"'$`"):  # escapes whose unquoting this does not repeat exactly
        raise Doubt(f"{what} quotes a value in a way the probe does not read")
    return value


def parse_os_release(data: bytes, fields: OsFields) -> bool:
    """libguestfs' parse_os_release: fills ``fields`` (even when it then says no) and says whether it decided."""
    text = _text(data, "/etc/os-release")
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        if key == "ID":
            distro = DISTROS.get(_shell_unquote(value, "/etc/os-release"))
            if distro is not None:
                fields.distro = distro
        elif key == "PRETTY_NAME":
            fields.product_name = _shell_unquote(value, "/etc/os-release")
        elif key == "VERSION_ID":
            version = _shell_unquote(value, "/etc/os-release")
            if m := _NEOKYLIN.match(version):
                fields.version = (int(m.group(1)), int(m.group(2)))
            else:
                _version_from(version, fields)
    if fields.distro is None or fields.product_name is None:
        return False
    if fields.distro in MAJOR_ONLY_IN_OS_RELEASE and fields.version is not None and fields.version[1] == 0:
        return False
    if fields.version is None:
        if fields.distro in ROLLING:
            fields.version = (0, 0)
            return True
        return False
    return True


def parse_debian_version(data: bytes, fields: OsFields) -> None:
    """libguestfs' parse_generic for /etc/debian_version: the first line is the product name and holds the version."""
    first = _text(data, "/etc/debian_version").split("\n", 1)[0]
    if not first:
        raise Doubt("/etc/debian_version is empty")  # libguestfs goes on to release files the probe does not read
    fields.product_name, fields.distro = first, "debian"
    _version_from(first, fields)


def hostname_from(data: bytes, path: str) -> str | None:
    """The first line that is neither empty nor a comment (libguestfs' check_hostname_from_file)."""
    for line in _text(data, path).split("\n"):
        if line and not line.startswith("#"):
            return line
    return None


# e_machine -> libguestfs' architecture name, for the ELF classes file(1) reports them under
_ELF_MACHINES = {(62, 2): "x86_64", (3, 1): "i386", (183, 2): "aarch64"}


def elf_arch(header: bytes) -> str | None:
    """The architecture libguestfs names for a little-endian ELF binary's header; None to ask file(1) instead."""
    if len(header) < 20 or header[:4] != b"\x7fELF" or header[5] != 1:
        return None
    return _ELF_MACHINES.get((int.from_bytes(header[18:20], "little"), header[4]))


@dataclass(frozen=True)
class BlockDevice:
    device: str
    type: str | None
    uuid: str | None
    label: str | None


def parse_blkid_export(text: str) -> dict[str, BlockDevice]:
    """``blkid -p -o export`` of each device, each block led by DEVNAME= and BLKID_EXIT= (its exit status).

    Exit 0 is an identified device, exit 2 with nothing printed an empty
    one; anything else (an error message, an ambivalent probe) is a Doubt.
    """
    devices: dict[str, BlockDevice] = {}
    for block in text.strip().split("\n\n"):
        if not block.strip():
            continue
        lines = block.splitlines()
        if len(lines) < 2 or not lines[0].startswith("DEVNAME=") or not lines[1].startswith("BLKID_EXIT="):
            raise Doubt(f"blkid printed a block the probe does not read: {block[:80]!r}")
        name, status = lines[0][len("DEVNAME="):], lines[1][len("BLKID_EXIT="):]
        body = [line for line in lines[2:] if line]
        if status == "2" and not body:
            devices[name] = BlockDevice(name, None, None, None)
            continue
        if status != "0" or not all("=" in line for line in body) or name in devices:
            raise Doubt(f"blkid on {name} exited {status}: {' '.join(body)[:120]}")
        values = dict(line.partition("=")[::2] for line in body)
        if values.get("DEVNAME", name) != name:
            raise Doubt(f"blkid answered for {values['DEVNAME']} when asked about {name}")
        if any("\\" in values.get(key, "") for key in ("TYPE", "UUID", "LABEL")):
            raise Doubt(f"blkid escaped a value of {name}")  # (a partition entry's name may be escaped: not read)
        devices[name] = BlockDevice(name, values.get("TYPE"), values.get("UUID"), values.get("LABEL"))
    return devices


_FSTAB_OPTIONS = re.compile(r"[^,=\s#]+(=[^,\s#]*)?(,[^,=\s#]+(=[^,\s#]*)?)*")
_XDEV = re.compile(r"^/dev/(h|s|v|xv)d([a-z]+)(\d*)$")
_IGNORED_SPECS = re.compile(r"^(/dev/fd\d|/dev/cd\d|/dev/floppy$|/dev/cdrom$|/dev/iso9660/)")
_IGNORED_MOUNTPOINTS = re.compile(r"^(/dev|/proc|/selinux|/sys)(/|$)|^/media/")


def _canonical(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    return ("/" if path.startswith("/") else "") + "/".join(parts)


def _drive_index(letters: str) -> int:
    index = 0
    for c in letters:
        index = index * 26 + (ord(c) - ord("a") + 1)
    return index - 1


@dataclass(frozen=True)
class Devices:
    """The guest's block devices as the appliance sees them, for resolving fstab's names."""

    disks: tuple[str, ...]  # list_devices order: /dev/sda, /dev/sdb, ...
    partitions: frozenset[str]
    filesystems: Mapping[str, BlockDevice]  # every device (partition, whole disk, LV) blkid identified
    logical_volumes: frozenset[str]  # /dev/VG/LV
    canonical_lv: Callable[[str], str | None]  # /dev/mapper/VG-LV -> /dev/VG/LV (a round trip: only when asked)


def fstab_mountpoints(data: bytes, root: str, devices: Devices) -> dict[str, str]:
    """Mountpoint -> device, as libguestfs' check_fstab and inspect_get_mountpoints give them for this fstab."""
    if len(data) > FSTAB_LIMIT:
        raise Doubt(f"/etc/fstab is {len(data)} bytes: augeas is not given it")
    entries: list[tuple[str, str]] = []
    for number, line in enumerate(_text(data, "/etc/fstab").split("\n"), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if not 3 <= len(fields) <= 6 or any(f.startswith("#") for f in fields[1:]) or "\\" in line:
            raise Doubt(f"/etc/fstab line {number} is not one augeas is certain to read the same")
        if len(fields) > 3 and not _FSTAB_OPTIONS.fullmatch(fields[3]) or not all(f.isdigit() for f in fields[4:]):
            raise Doubt(f"/etc/fstab line {number} has options or numbers augeas may refuse")
        spec, mountpoint, vfstype = fields[0], _canonical(fields[1]), fields[2]
        if _IGNORED_SPECS.match(spec) or _IGNORED_MOUNTPOINTS.match(mountpoint) or mountpoint == "/dev":
            continue
        device = _resolve(spec, root, devices, number)
        if device is None:
            continue
        if vfstype == "btrfs" and len(fields) > 3 and any(o.startswith("subvol") for o in fields[3].split(",")):
            raise Doubt(f"/etc/fstab line {number} mounts a btrfs subvolume")
        entries.append((mountpoint, device))
    if not entries:
        return {"/": root}
    mounts = [(mp, dev) for mp, dev in entries if mp.startswith("/")]
    if len({mp for mp, _ in mounts}) != len(mounts):
        raise Doubt("/etc/fstab mounts one mountpoint twice")
    return dict(mounts)  # "/" may name another device than the root probed: inspect_os says so too


def _resolve(spec: str, root: str, devices: Devices, number: int) -> str | None:
    """The device an fstab spec names, as libguestfs resolves it; None where it ignores the entry."""
    for prefix, attribute in (("UUID=", "uuid"), ("LABEL=", "label")):
        if spec.startswith(prefix):
            wanted = _shell_unquote(spec[len(prefix):], "/etc/fstab")
            found = sorted(d.device for d in devices.filesystems.values() if getattr(d, attribute) == wanted)
            if len(found) > 1:
                raise Doubt(f"/etc/fstab line {number}: {len(found)} filesystems carry {spec}")
            if not found:  # libguestfs' findfs would ignore it; a device blkid missed would be missed twice
                raise Doubt(f"/etc/fstab line {number}: no filesystem carries {spec}")
            return found[0]
    if spec == "/dev/root":
        return root
    if spec.startswith("/dev/mapper/"):
        return devices.canonical_lv(spec) or spec
    if m := _XDEV.match(spec):
        index = _drive_index(m.group(2))
        if 0 <= index < len(devices.disks) and devices.disks[index] + m.group(3) in devices.partitions:
            return devices.disks[index] + m.group(3)
        return spec
    if spec in devices.logical_volumes:
        return spec
    if spec.startswith("/dev/"):
        raise Doubt(f"/etc/fstab line {number} names {spec}, a device name the probe does not resolve")
    return None  # tmpfs, proc, PARTUUID=, ...: libguestfs ignores them too
