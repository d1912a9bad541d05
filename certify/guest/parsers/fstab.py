"""/etc/fstab, parsed to tell which filesystems the guest expects to mount at boot."""

from __future__ import annotations

from dataclasses import dataclass

# Filesystems that live on a disk of the appliance; network, memory and pseudo filesystems do not.
DISK_FILESYSTEMS = frozenset("ext2 ext3 ext4 xfs btrfs jfs reiserfs f2fs vfat exfat ntfs ntfs3 auto".split())
DISK_SOURCES = ("UUID=", "LABEL=", "PARTUUID=", "PARTLABEL=", "/dev/")
REMOVABLE = ("/dev/cdrom", "/dev/sr", "/dev/fd", "/dev/dvd")
OPTIONAL = {"noauto", "nofail", "x-systemd.automount"}


@dataclass(frozen=True)
class MountEntry:
    source: str
    mountpoint: str
    fstype: str
    options: tuple[str, ...]
    line: int


def _unescape(field: str) -> str:
    """fstab writes a space in a path as \\040 (octal escapes)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit() and len(field[i + 1 : i + 4]) == 3:
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_fstab(text: str) -> list[MountEntry]:
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if len(fields) < 3 or fields[0].startswith("#"):
            continue
        options = tuple(fields[3].split(",")) if len(fields) > 3 else ("defaults",)
        entries.append(MountEntry(_unescape(fields[0]), _unescape(fields[1]), fields[2], options, number))
    return entries


def required_disk_mounts(entries: list[MountEntry]) -> list[MountEntry]:
    """Entries the guest mounts from one of its own disks at every boot (not optional, not removable, not swap)."""
    return [
        e for e in entries
        if e.fstype in DISK_FILESYSTEMS and e.mountpoint.startswith("/") and e.source.startswith(DISK_SOURCES)
        and not e.source.startswith(REMOVABLE) and not OPTIONAL & set(e.options)
    ]  # fmt: skip


def missing_mounts(fstab_text: str, mounted: set[str]) -> list[MountEntry]:
    """Disk filesystems /etc/fstab mounts at boot that were not found among the uploaded disks."""
    return [e for e in required_disk_mounts(parse_fstab(fstab_text)) if (e.mountpoint.rstrip("/") or "/") not in mounted]
