"""One read-only libguestfs appliance per upload, and the reader collectors use.

Every disk is added read-only with its verified format given explicitly;
the guest's filesystems are mounted read-only inside the appliance, never
on the host.
"""

from __future__ import annotations

import bisect
import os
import posixpath
import re
import signal
import stat as statmod
import tarfile
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from certify.bundle.disk import BundleDisk
from certify.errors import CertifyError
from certify.guest import accel, identify, listing
from certify.guest.parsers import fstab, lvmlabel
from certify.model import FactUnavailable
from certify.progress import SILENT, Progress

DEFAULT_READ_LIMIT = 1024 * 1024
MAX_INVENTORY = 3_000_000  # entries; beyond this the walk is refused rather than exhausting memory
TAR_MIN_FILES = 8  # fewer wanted files than this under one root are cheaper read one by one
_GLOB_SPECIAL = re.compile(r"([*?\[\]])")
_PARTITION = re.compile(r"^(/dev/[a-z]+?)(\d+)$")


class GuestLaunchError(CertifyError):
    """The appliance could not be started: an environment problem, not the upload's."""


class GuestNotInspectable(CertifyError):
    """The disks hold no operating system libguestfs can inspect and mount."""


@dataclass(frozen=True)
class Stat:
    mode: int
    uid: int
    gid: int
    size: int
    target: str | None = None  # a symlink's target text, unresolved, when the inventory read it

    @property
    def is_file(self) -> bool:
        return statmod.S_ISREG(self.mode)

    @property
    def is_dir(self) -> bool:
        return statmod.S_ISDIR(self.mode)

    @property
    def is_link(self) -> bool:
        return statmod.S_ISLNK(self.mode)

    @property
    def perms(self) -> int:
        return statmod.S_IMODE(self.mode)


class Inventory:
    """Every path in the guest with its lstat, gathered in one walk.

    Names the guest holds that are not UTF-8 cannot be passed back to
    libguestfs; they are kept in ``unstatable`` (a directory's name stands
    for everything under it) so checks that need every file can say what
    they could not see instead of passing.
    """

    def __init__(self, entries: dict[str, Stat], unstatable: Iterable[str] = ()):
        self.entries = entries
        self.unstatable = tuple(sorted(unstatable))
        self._sorted: list[str] | None = None
        self._children: dict[str, list[str]] | None = None

    def _paths(self) -> list[str]:
        if self._sorted is None:
            self._sorted = sorted(self.entries)
        return self._sorted

    def __iter__(self) -> Iterator[tuple[str, Stat]]:
        return ((p, self.entries[p]) for p in self._paths())

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, path: str) -> Stat | None:
        return self.entries.get(path)

    def children(self, directory: str) -> list[str]:
        if self._children is None:
            children: dict[str, list[str]] = defaultdict(list)
            for path in self._paths():
                if path != "/":
                    children[path.rpartition("/")[0] or "/"].append(path)
            self._children = dict(children)
        return self._children.get(directory, [])

    def under(self, directory: str) -> Iterator[tuple[str, Stat]]:
        """Entries strictly below ``directory``, in path order (a range of the sorted paths, not a scan)."""
        prefix = directory.rstrip("/") + "/"
        paths = self._paths()
        # '/' sorts before every other character a path may continue with, so the prefix's
        # entries are one contiguous run, ending before prefix with its '/' bumped to '0'.
        for path in paths[bisect.bisect_left(paths, prefix) : bisect.bisect_left(paths, prefix[:-1] + "0")]:
            yield path, self.entries[path]


def glob_escape(path: str) -> str:
    """Quote a path that came from the guest before it becomes part of a glob."""
    return _GLOB_SPECIAL.sub(r"[\1]", path)


class GuestReader:
    """What collectors see: read-only, bounded, in guest paths."""

    def __init__(self, g: Any, mounts: dict[str, str], disks: list[BundleDisk], os_info: dict[str, Any], workdir: str | None = None):
        self._g = g
        self._mounts = mounts
        self._disks = disks
        self._disk_of_mount: dict[str, str | None] = {}
        self._inventory: Inventory | None = None
        self._workdir = workdir
        self._memo: dict[str, Any] = {}
        self.os = os_info
        self.walk_seconds: float | None = None  # what the one inventory walk cost, once it has run
        self.inspection_method: str | None = None  # "probe" (certain of a plain Linux root) or "inspect_os"
        self.inspection_fallback: str | None = None  # why the probe left it to inspect_os
        self.inventory_method: str | None = None  # "find" (one listing by the appliance) or "walk" (round trips)
        self.inventory_fallback: str | None = None  # why the listing was not used, when it was not

    def memo(self, key: str, compute: Callable[[GuestReader], Any]) -> Any:
        """Something several collectors derive from the guest (the package database), computed once."""
        if key not in self._memo:
            self._memo[key] = compute(self)
        return self._memo[key]

    @property
    def workdir(self) -> str | None:
        """Host directory for copies a collector must open with a host library (the rpm sqlite database)."""
        return self._workdir

    @property
    def mounts(self) -> dict[str, str]:
        """Guest mountpoint -> device, as mounted for this scan."""
        return dict(self._mounts)

    def glob(self, pattern: str) -> list[str]:
        return sorted(self._g.glob_expand(pattern))

    def stat(self, path: str) -> Stat | None:
        """Follows symlinks (inside the guest); None when the path does not exist."""
        try:
            st = self._g.statns(path)
        except RuntimeError:
            return None
        return Stat(mode=st["st_mode"], uid=st["st_uid"], gid=st["st_gid"], size=st["st_size"])

    def lstat(self, path: str) -> Stat | None:
        """The path itself, a symlink not followed; None when it does not exist."""
        entry = self._inventory.get(path) if self._inventory is not None else None
        if entry is not None:
            return entry
        try:
            st = self._g.lstatns(path)
        except RuntimeError:
            return None
        return Stat(mode=st["st_mode"], uid=st["st_uid"], gid=st["st_gid"], size=st["st_size"])

    def readlink(self, path: str) -> str | None:
        """A symlink's target text, unresolved (in an offline image /dev/null itself is absent); None if not a link."""
        entry = self._inventory.get(path) if self._inventory is not None else None
        if entry is not None and entry.target is not None:
            return entry.target
        try:
            return self._g.readlink(path)
        except (RuntimeError, UnicodeDecodeError):
            return None

    def inventory(self) -> Inventory:
        """Every file in the guest, lstat'ed, with each symlink's target.

        First as one listing made by the appliance's ``find`` (one round trip
        whatever the size of the guest); when the appliance cannot give one,
        by walking: a ``readdir`` and an ``lstatnslist`` per directory. Both
        give the same entries (tests/test_guest_parity.py). Cached: every
        collector shares the one inventory.
        """
        if self._inventory is None:
            started = time.monotonic()
            try:
                self._inventory = self._listed()
                self.inventory_method = "find"
            except listing.ListingUnavailable as exc:
                self.inventory_fallback = str(exc)
                self._inventory = self._walk()
                self.inventory_method = "walk"
            self.walk_seconds = time.monotonic() - started
        return self._inventory

    def _listed(self) -> Inventory:
        data = listing.fetch_listing(self._g)
        try:
            listed = listing.parse_listing(data, MAX_INVENTORY)
        except listing.ListingTooLarge:
            raise FactUnavailable(f"the guest holds more than {MAX_INVENTORY} files: not walked") from None
        entries = {e.path: Stat(e.mode, e.uid, e.gid, e.size, e.target) for e in listed.entries}
        if "/" not in entries:
            raise listing.ListingUnreadable("the listing does not hold the guest's root")
        return Inventory(entries, listed.unstatable)

    def _walk(self) -> Inventory:
        # Not find0: it sends one protocol chunk per path, which under software
        # emulation costs more than the stats (benchmarks/guest_bench.py --probe-walk).
        # readdir answers a whole directory in one reply. Recursion follows lstat's
        # S_ISDIR, so a symlink to a directory is listed, never entered.
        entries: dict[str, Stat] = {"/": self.lstat("/") or Stat(statmod.S_IFDIR | 0o755, 0, 0, 0)}
        unstatable: list[str] = []
        pending = ["/"]
        while pending:
            directory = pending.pop()
            names = self._list_directory(directory, unstatable)
            if not names:
                continue
            if len(entries) + len(names) > MAX_INVENTORY:
                raise FactUnavailable(f"the guest holds more than {MAX_INVENTORY} files: not walked")
            stats = [(base, st) for base, st in zip(names, self._g.lstatnslist(directory, names))
                     if not (st["st_ino"] < 0 and st["st_mode"] < 0)]  # fmt: skip  (vanished between listing and lstat)
            links = [base for base, st in stats if statmod.S_ISLNK(st["st_mode"])]
            targets = self._link_targets(directory, links) if links else {}
            for base, st in stats:
                path = posixpath.join(directory, base)
                entries[path] = Stat(st["st_mode"], st["st_uid"], st["st_gid"], st["st_size"], targets.get(base) or None)
                if statmod.S_ISDIR(st["st_mode"]):
                    pending.append(path)
        return Inventory(entries, unstatable)

    def _link_targets(self, directory: str, links: list[str]) -> dict[str, str]:
        """Each link's target text, in one round trip; a target that is not UTF-8 is left out (readlink gives none)."""
        try:
            return dict(zip(links, self._g.readlinklist(directory, links)))
        except UnicodeDecodeError:  # the binding refuses the whole reply: ask link by link
            pass
        targets = {}
        for base in links:
            try:
                targets[base] = self._g.readlink(posixpath.join(directory, base))
            except (RuntimeError, UnicodeDecodeError):
                continue
        return targets

    def _list_directory(self, directory: str, unstatable: list[str]) -> list[str]:
        """The names in one directory; names that are not UTF-8 go to ``unstatable`` (libguestfs cannot take them back)."""
        try:
            return [d["name"] for d in self._g.readdir(directory) if d["name"] not in (".", "..")]
        except UnicodeDecodeError:  # the binding refuses the whole reply: list it again as bytes
            pass
        with tempfile.NamedTemporaryFile(dir=self._workdir, prefix="ls0-") as listing:
            self._g.ls0(directory, listing.name)
            raw = listing.read()
        names = []
        for name in raw.split(b"\0"):
            if not name:
                continue
            try:
                names.append(name.decode("utf-8"))
            except UnicodeDecodeError:
                unstatable.append(posixpath.join(directory, name.decode("utf-8", "surrogateescape")))
        return names

    def read_many(self, paths: Iterable[str], limit: int = DEFAULT_READ_LIMIT) -> dict[str, bytes]:
        """The first ``limit`` bytes of each regular file in ``paths``, in as few round trips as possible.

        Files are grouped under a common root and streamed as one tar per
        root, with everything else under it excluded; small groups are read
        one by one. Paths that are not regular files are left out.
        """
        inventory = self.inventory()
        wanted = sorted({p for p in paths if (st := inventory.get(p)) is not None and st.is_file})
        groups: dict[str, list[str]] = defaultdict(list)
        for path in wanted:
            groups[_tar_root(path)].append(path)
        out: dict[str, bytes] = {}
        for root, members in sorted(groups.items()):
            if len(members) < TAR_MIN_FILES or self._workdir is None:
                # the inventory already says each is a regular file and its size: no stat round trip
                out.update((path, self._pread(path, min(inventory.entries[path].size, limit))) for path in members)
                continue
            out.update(self._tar_read(root, set(members), limit))
        return out

    def _tar_read(self, root: str, members: set[str], limit: int) -> dict[str, bytes]:
        excludes = _excludes(self.inventory(), root, members)
        out: dict[str, bytes] = {}
        with tempfile.NamedTemporaryFile(dir=self._workdir, prefix="tar-", suffix=".tar") as stream:
            self._g.tar_out(root, stream.name, excludes=excludes)
            with tarfile.open(stream.name, "r:", errorlevel=0) as tar:
                for member in tar:
                    path = posixpath.normpath(posixpath.join(root, member.name))
                    if path not in members or not member.isreg():
                        continue
                    handle = tar.extractfile(member)
                    if handle is not None:
                        out[path] = handle.read(limit)
        entries = self.inventory().entries
        for path in sorted(members - out.keys()):  # a name tar could not carry: read it directly
            out[path] = self._pread(path, min(entries[path].size, limit))
        return out

    def read(self, path: str, limit: int = DEFAULT_READ_LIMIT) -> bytes | None:
        """The first ``limit`` bytes of a regular file; None for anything else.

        Only regular files are read: a FIFO or device node in the guest would
        block or read appliance devices.
        """
        st = self.stat(path)
        if st is None or not st.is_file:
            return None
        return self._pread(path, min(st.size, limit))

    def _pread(self, path: str, want: int) -> bytes:
        chunks, offset = [], 0
        while offset < want:
            chunk = self._g.pread(path, min(want - offset, DEFAULT_READ_LIMIT), offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)

    def read_text(self, path: str, limit: int = DEFAULT_READ_LIMIT) -> str | None:
        data = self.read(path, limit)
        return None if data is None else data.decode("utf-8", "replace")

    def disk_file(self, path: str) -> str | None:
        """The bundle file of the disk that holds ``path``, when it can be told."""
        mount = max((m for m in self._mounts if _under(path, m)), key=len, default="/")
        if mount not in self._disk_of_mount:
            self._disk_of_mount[mount] = self._device_disk(self._mounts.get(mount, ""))
        return self._disk_of_mount[mount]

    def _device_disk(self, device: str) -> str | None:
        """The bundle disk under a mounted device: a partition's disk, or the one disk an LV's volume group sits on."""
        if device.startswith("btrfsvol:"):  # btrfsvol:/dev/sda1/subvolume
            device = "/dev/" + device[len("btrfsvol:/dev/"):].split("/", 1)[0]
        whole = _PARTITION.sub(r"\1", device)
        try:
            index = self._g.device_index(whole)
        except RuntimeError:
            # An LV: the disk its volume group sits on. One spread over several disks has no one file;
            # anything else (md, dm) is only certain when there is one disk.
            indexes = self._volume_group_disks(device) or ({0} if len(self._disks) == 1 else set())
            index = indexes.pop() if len(indexes) == 1 else -1
        return self._disks[index].name if 0 <= index < len(self._disks) else None

    def _volume_group_disks(self, device: str) -> set[int]:
        """Indexes of the disks holding the physical volumes of the LV ``device``; empty when it is no LV.

        Each partition and whole disk is asked for its PV label directly: the
        ``pv_name`` LVM reports is its own view of the device names, which
        libguestfs does not translate, and with several disks it was seen
        naming the wrong one.
        """
        try:
            vg = self._g.lvm_canonical_lv_name(device).split("/")[2]  # /dev/VG/LV
            wanted = {u.replace("-", "") for u in self._g.vgpvuuids(vg)}
            candidates = [*self._g.list_partitions(), *self._g.list_devices()]
        except (RuntimeError, IndexError):
            return set()
        found = set()
        for candidate in candidates:
            try:
                if lvmlabel.pv_uuid(self._g.pread_device(candidate, lvmlabel.LABEL_SCAN_BYTES, 0)) in wanted:
                    found.add(self._g.device_index(_PARTITION.sub(r"\1", candidate)))
            except RuntimeError:
                continue
        return found


_TWO_LEVEL_TOPS = {"home", "usr", "var", "opt", "srv", "mnt", "media"}


def _tar_root(path: str) -> str:
    """Where a tar for ``path`` starts: /etc, /root, or two levels down in trees shared by many owners (/home/alice, /usr/share)."""
    parts = path.strip("/").split("/")[:-1]
    depth = 2 if parts and parts[0] in _TWO_LEVEL_TOPS else 1
    return "/" + "/".join(parts[:depth]) if parts else "/"


_TAR_SPECIAL = re.compile(r"([\\*?\[\]])")


def _excludes(inventory: Inventory, root: str, members: set[str]) -> list[str]:
    """tar exclusion patterns that leave only ``members`` (and the directories leading to them) under ``root``."""
    keep_dirs = {root}
    for path in members:
        parent = posixpath.dirname(path)
        while parent not in keep_dirs and parent != "/":
            keep_dirs.add(parent)
            parent = posixpath.dirname(parent)
    patterns, pending = [], [root]
    while pending:
        directory = pending.pop()
        for child in inventory.children(directory):
            if child in members:
                continue
            if child in keep_dirs:
                pending.append(child)
            elif "\n" not in child:  # one pattern per line: such a name is carried and ignored
                relative = posixpath.relpath(child, root)
                patterns.append("./" + _TAR_SPECIAL.sub(r"\\\1", relative))
    return sorted(patterns)


def _under(path: str, mount: str) -> bool:
    return mount == "/" or path == mount or path.startswith(mount.rstrip("/") + "/")


def _os_info(g: Any, root: str) -> dict[str, Any]:
    def safe(fn: Callable[[str], Any]) -> Any:
        try:
            return fn(root)
        except RuntimeError:
            return None

    major, minor = safe(g.inspect_get_major_version), safe(g.inspect_get_minor_version)
    return {
        "type": safe(g.inspect_get_type),
        "distro": safe(g.inspect_get_distro),
        "product_name": safe(g.inspect_get_product_name),
        "version": f"{major}.{minor}" if major is not None else None,
        "arch": safe(g.inspect_get_arch),
        "hostname": safe(g.inspect_get_hostname),
        "root": root,
    }


@contextmanager
def _ticker(progress: Progress, message: str) -> Iterator[None]:
    """Show elapsed seconds while something slow runs (the appliance boot)."""
    done = threading.Event()
    start = time.monotonic()

    def tick() -> None:
        while not done.wait(1.0):
            progress.tick(f"{message} {time.monotonic() - start:.0f}s")

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _launch(disks: list[BundleDisk], workdir: str, settings: list[str] | None) -> Any:
    import guestfs  # Debian's python3-guestfs, through --system-site-packages

    g = guestfs.GuestFS(python_return_dict=True, close_on_exit=False)
    if "LIBGUESTFS_BACKEND" not in os.environ:
        g.set_backend("direct")
    if settings is not None:
        g.set_backend_settings(settings)
    g.set_tmpdir(workdir)  # the read-only overlays live in the work directory
    for disk in disks:
        g.add_drive_opts(disk.path, readonly=True, format=disk.format)
    try:
        g.launch()
    except RuntimeError:
        g.close()
        raise
    return g


def stop_appliance(workdir: str) -> list[int]:
    """SIGKILL the qemu of every appliance launched for ``workdir``; the pids it killed.

    Safe from any thread and at any moment, even while another thread waits in a
    libguestfs call (the handle itself is never touched): libguestfs keeps its
    overlays in the work directory, so our qemu children name it on their command
    line, which tells them from the appliances of other scans in this process.
    """
    marker = os.path.join(os.path.realpath(workdir), "").encode()
    me, killed = os.getpid(), []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError, IndexError):
            continue  # gone already, or not ours to read
        if ppid == me and marker in cmdline:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
            except ProcessLookupError:
                pass
    return killed


FSTAB_LIMIT = 1024 * 1024


def _require_every_disk_mount(g: Any, mounted: dict[str, str]) -> None:
    """Inspection skips an fstab entry whose disk is not there; files the guest keeps on it would go unseen."""
    try:
        st = g.statns("/etc/fstab")
        text = g.pread("/etc/fstab", FSTAB_LIMIT, 0).decode("utf-8", "replace") if statmod.S_ISREG(st["st_mode"]) else ""
    except RuntimeError:
        return  # no fstab: inspection found the filesystems by itself
    missing = fstab.missing_mounts(text, set(mounted))
    if missing:
        shown = ", ".join(f"{e.mountpoint} from {e.source} (line {e.line})" for e in missing[:3])
        raise GuestNotInspectable(f"/etc/fstab mounts {shown} at boot, but no uploaded disk holds it: "
                                  "what the guest keeps there could not be seen")  # fmt: skip


def _inspect(g: Any) -> identify.Inspection:
    """The probe's answer where it is certain of one Linux root; inspect_os's otherwise, with why."""
    answer = identify.certain_root(identify.probe(g))
    if isinstance(answer, identify.Inspection):
        return answer
    try:
        roots = g.inspect_os()
    except RuntimeError as exc:  # the untrusted disk confused inspection: not our bug, not a pass
        raise GuestNotInspectable(f"inspection of the disk(s) failed: {exc}") from None
    if not roots:
        raise GuestNotInspectable("no operating system found on the disk(s)")
    if len(roots) > 1:  # checking one would pass an appliance whose other system nobody looked at
        raise GuestNotInspectable(f"the disks hold {len(roots)} operating systems ({', '.join(sorted(roots))}); "
                                  "only single-system appliances can be certified")  # fmt: skip
    root = roots[0]
    return identify.Inspection(root, g.inspect_get_mountpoints(root), _os_info(g, root), "inspect_os", answer)


@contextmanager
def open_guest(
    disks: list[BundleDisk], workdir: str, progress: Progress = SILENT
) -> Iterator[GuestReader]:
    """Launch once, inspect, mount read-only, yield a reader, shut down."""
    choice = accel.choose()
    progress.step(f"starting the inspection appliance ({choice.description}) with {len(disks)} disk(s)")
    try:
        with _ticker(progress, "  appliance booting"):
            try:
                g = _launch(disks, workdir, choice.backend_settings)
            except RuntimeError:
                if choice.backend_settings is None or choice.tcg:
                    raise
                # The probe said KVM works but the launch disagrees: remember and retry once.
                accel.remember(False, "appliance launch failed on KVM")
                progress.step("launch on KVM failed; retrying with software emulation")
                g = _launch(disks, workdir, [accel.FORCE_TCG])
    except RuntimeError as exc:
        raise GuestLaunchError(f"libguestfs appliance failed to start: {exc}") from None
    try:
        inspection = _inspect(g)
        mounted: dict[str, str] = {}
        for mountpoint in sorted(inspection.mountpoints, key=len):
            device = inspection.mountpoints[mountpoint]
            try:
                g.mount_ro(device, mountpoint)
                mounted[mountpoint] = device
            except RuntimeError as exc:  # files under it would go unseen: no fact is complete without it
                raise GuestNotInspectable(f"{mountpoint} ({device}) does not mount: {exc}") from None
        _require_every_disk_mount(g, mounted)
        reader = GuestReader(g, mounted, disks, inspection.os_info, workdir)
        reader.inspection_method, reader.inspection_fallback = inspection.method, inspection.fallback
        yield reader
    finally:
        try:
            g.shutdown()
        except RuntimeError:
            pass
        g.close()
