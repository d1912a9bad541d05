"""One read-only libguestfs appliance per upload, and the reader collectors use.

Every disk is added read-only with its verified format given explicitly;
the guest's filesystems are mounted read-only inside the appliance, never
on the host.
"""

from __future__ import annotations

import os
import re
import stat as statmod
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from certify import accel
from certify.errors import CertifyError
from certify.progress import SILENT, Progress

DEFAULT_READ_LIMIT = 1024 * 1024
_GLOB_SPECIAL = re.compile(r"([*?\[\]])")
_PARTITION = re.compile(r"^(/dev/[a-z]+?)(\d+)$")


class GuestLaunchError(CertifyError):
    """The appliance could not be started: an environment problem, not the upload's."""


class GuestNotInspectable(CertifyError):
    """The disks hold no operating system libguestfs can inspect and mount."""


@dataclass(frozen=True)
class GuestDisk:
    path: str  # host path, inside the work or bundle directory
    name: str  # name in the bundle, for reports
    format: str  # verified format, always explicit


@dataclass(frozen=True)
class Stat:
    mode: int
    uid: int
    gid: int
    size: int

    @property
    def is_file(self) -> bool:
        return statmod.S_ISREG(self.mode)

    @property
    def is_dir(self) -> bool:
        return statmod.S_ISDIR(self.mode)


def glob_escape(path: str) -> str:
    """Quote a path that came from the guest before it becomes part of a glob."""
    return _GLOB_SPECIAL.sub(r"[\1]", path)


class GuestReader:
    """What collectors see: read-only, bounded, in guest paths."""

    def __init__(self, g: Any, mounts: dict[str, str], disks: list[GuestDisk], os_info: dict[str, Any]):
        self._g = g
        self._mounts = mounts
        self._disks = disks
        self._disk_of_mount: dict[str, str | None] = {}
        self.os = os_info

    def glob(self, pattern: str) -> list[str]:
        return sorted(self._g.glob_expand(pattern))

    def stat(self, path: str) -> Stat | None:
        """Follows symlinks (inside the guest); None when the path does not exist."""
        try:
            st = self._g.statns(path)
        except RuntimeError:
            return None
        return Stat(mode=st["st_mode"], uid=st["st_uid"], gid=st["st_gid"], size=st["st_size"])

    def read(self, path: str, limit: int = DEFAULT_READ_LIMIT) -> bytes | None:
        """The first ``limit`` bytes of a regular file; None for anything else.

        Only regular files are read: a FIFO or device node in the guest would
        block or read appliance devices.
        """
        st = self.stat(path)
        if st is None or not st.is_file:
            return None
        chunks, offset, want = [], 0, min(st.size, limit)
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
        whole = _PARTITION.sub(r"\1", device)
        try:
            index = self._g.device_index(whole)
        except RuntimeError:
            index = 0 if len(self._disks) == 1 else -1  # LVM and the like: only certain with one disk
        return self._disks[index].name if 0 <= index < len(self._disks) else None


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


def describe_os(info: dict) -> str:
    """'debian 12.8 (hostname web-1)': libguestfs' product name is often just a version."""
    product = info.get("product_name") or ""
    name = product if any(c.isalpha() for c in product) else f"{info.get('distro') or info.get('type') or 'unknown OS'} {product}"
    return name.strip() + (f" (hostname {info['hostname']})" if info.get("hostname") else "")


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


def _launch(disks: list[GuestDisk], workdir: str, settings: list[str] | None) -> Any:
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


@contextmanager
def open_guest(
    disks: list[GuestDisk], workdir: str, progress: Progress = SILENT
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
        mounts = g.inspect_get_mountpoints(root)
        mounted: dict[str, str] = {}
        for mountpoint in sorted(mounts, key=len):
            try:
                g.mount_ro(mounts[mountpoint], mountpoint)
                mounted[mountpoint] = mounts[mountpoint]
            except RuntimeError as exc:  # files under it would go unseen: no fact is complete without it
                raise GuestNotInspectable(f"{mountpoint} ({mounts[mountpoint]}) does not mount: {exc}") from None
        info = _os_info(g, root)
        yield GuestReader(g, mounted, disks, info)
    finally:
        try:
            g.shutdown()
        except RuntimeError:
            pass
        g.close()
