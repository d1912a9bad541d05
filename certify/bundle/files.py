"""Files of an upload, read safely: one spelling per name, no symlinks, private copies.

Everything that opens a file of an upload goes through ``open_in_bundle``; a
bundle read from a directory is copied into the work directory by
``Staging`` before anything parses it, so what is checked is what qemu opens.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from typing import BinaryIO

from certify.bundle import manifest
from certify.bundle.descriptor import outside_bundle_reason
from certify.errors import InputRejected

CHUNK = 1024 * 1024
Digests = dict[str, dict[str, str]]  # file name -> {algorithm: hex digest}


@dataclass(frozen=True)
class Limits:
    max_members: int = 1000
    max_total_bytes: int = 512 * 1024**3
    max_member_bytes: int = 256 * 1024**3
    max_virtual_bytes: int = 16 * 1024**4  # a disk's virtual size: sparse images can claim far more than they hold
    min_free_bytes: int = 256 * 1024**2  # left free in the work directory


def show(name: str, limit: int = 80) -> str:
    """A name from the upload, quoted and cut short for a one-line message."""
    return repr(name if len(name) <= limit else name[:limit] + "...")



class MissingFile(InputRejected):
    """A name the bundle should hold but does not."""


def normal_name(name: str) -> str:
    """A bundle-relative name in one spelling ('./a', 'a\\b', 'x//y' included), or InputRejected."""
    if not name or "\0" in name or outside_bundle_reason(name):
        raise InputRejected(f"{show(name)} is not a name inside the bundle")
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts:
        raise InputRejected(f"{show(name)} is not a name inside the bundle")
    return "/".join(parts)


_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_NOT_REGULAR = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))  # fmt: skip


def open_in_bundle(root: str, name: str, what: str = "file") -> BinaryIO:
    """Open ``root/name`` read-only: a regular file under root, no symlink anywhere on the way.

    Each folder is opened relative to the one before with O_NOFOLLOW, so a
    folder swapped for a symlink mid-way cannot lead outside the bundle. A
    refusal names the file as ``what`` ('disk', 'manifest', ...) and says why.
    """
    label = f"{what} {show(name)}"
    parts = normal_name(name).split("/")
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise InputRejected(f"{label}: the bundle folder cannot be opened: {exc.strerror}") from None
    try:
        for part in parts[:-1]:
            try:
                next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                raise _refusal(label, fd, part, exc, folder=True) from None
            os.close(fd)
            fd = next_fd
        try:
            file_fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | _NONBLOCK, dir_fd=fd)
        except OSError as exc:
            raise _refusal(label, fd, parts[-1], exc, folder=False) from None
    finally:
        os.close(fd)
    mode = os.fstat(file_fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(file_fd)
        kind = next((k for test, k in _NOT_REGULAR if test(mode)), "not a regular file")
        raise InputRejected(f"{label}: refused: it is {kind}, not a regular file")
    return os.fdopen(file_fd, "rb")


def _refusal(label: str, dir_fd: int, part: str, exc: OSError, folder: bool) -> InputRejected:
    """Why ``part`` (a folder on the way, or the file itself) could not be opened, in words rather than errno."""
    if isinstance(exc, FileNotFoundError):
        return MissingFile(f"{label} is referenced but not in the bundle")
    try:
        mode = os.stat(part, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError:
        mode = 0
    if stat.S_ISLNK(mode):
        reason = f"folder {show(part)} on its path is a symbolic link" if folder else "it is a symbolic link"
    elif folder and mode and not stat.S_ISDIR(mode):
        reason = f"{show(part)} on its path is not a folder"
    else:
        reason = f"it cannot be opened ({exc.strerror})"
    return InputRejected(f"{label}: refused: {reason}")


class Staging:
    """The bundle's files inside the work directory, each hashed exactly once.

    Files of a directory upload are copied in (through ``_open_in_bundle``:
    regular files, no symlinks, nothing outside the bundle) before anything
    reads them, so what is checked is what qemu later opens, whatever happens
    to the upload meanwhile. An OVA's members are already here (``source`` None).
    Names are kept in their normal form, so two spellings are one file.
    """

    def __init__(self, source: str | None, root: str, limits: Limits, digests: Digests | None = None):
        self.source, self.root, self.limits = source, root, limits
        self.digests: Digests = digests if digests is not None else {}
        self.algorithms = {"SHA256"}
        self._copied = 0
        os.makedirs(root, mode=0o700, exist_ok=True)

    def path(self, name: str) -> str:
        return os.path.join(self.root, *normal_name(name).split("/"))

    def digest(self, name: str, algorithm: str = "SHA256") -> str:
        return self.digests[normal_name(name)][algorithm]

    def stage(self, name: str, max_bytes: int | None = None, what: str = "file") -> str:
        """The private copy of ``name``, copied and hashed the first time it is asked for; ``what`` names it in refusals."""
        key = normal_name(name)
        if self.source is None or key in self.digests:
            open_in_bundle(self.root, key, what).close()  # same checks on a member already in place
            return self.path(key)
        with open_in_bundle(self.source, key, what) as src:
            size = os.fstat(src.fileno()).st_size
            if max_bytes is not None and size > max_bytes:
                raise InputRejected(f"{show(name)} is {size} bytes, over its {max_bytes}-byte limit")
            self._copied += size
            if size > self.limits.max_member_bytes or self._copied > self.limits.max_total_bytes:
                raise InputRejected(f"{show(name)} takes the upload over its size limit")
            if shutil.disk_usage(self.root).free - size < self.limits.min_free_bytes:
                raise InputRejected(f"{show(name)} ({size} bytes) does not fit in the work directory")
            target = self.path(key)
            try:
                os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except OSError as exc:
                raise InputRejected(f"{show(name)} cannot be staged: {exc.strerror}") from None
            hs = manifest.hashers(self.algorithms)
            copied = 0
            with os.fdopen(fd, "wb") as out:
                while copied < size and (chunk := src.read(min(CHUNK, size - copied))):
                    for h in hs.values():
                        h.update(chunk)
                    out.write(chunk)
                    copied += len(chunk)
            if copied != size or os.fstat(src.fileno()).st_size != size:  # it changed while we read it
                raise InputRejected(f"{show(name)} changed while it was being read")
        self.digests[key] = {a: h.hexdigest() for a, h in hs.items()}
        return target

    def exists(self, name: str, what: str = "file") -> bool:
        """Whether the bundle holds a regular file of that name (nothing is copied); a symlink or device there is refused."""
        try:
            open_in_bundle(self.source or self.root, name, what).close()
            return True
        except MissingFile:
            return False

    def try_stage(self, name: str) -> None:
        """Stage ``name`` if the bundle has it: one it lacks is for the caller to report."""
        try:
            self.stage(name)
        except MissingFile:
            pass

    def open(self, name: str, max_bytes: int | None = None, what: str = "file") -> BinaryIO:
        self.stage(name, max_bytes, what)
        return open_in_bundle(self.root, name, what)
