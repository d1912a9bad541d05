"""Content-addressed blob directory: ``<data>/sha256/ab/cd/<hex>``.

An upload is streamed into a temporary file beside its final place, hashed as
it arrives, checked against the digest the client named, its size limit and
the free-space reserve while it is written, flushed to disk, then renamed into
place in one step: a blob path holds the complete, verified bytes or nothing.
Every failure removes the temporary file. The digest is validated before it
becomes a path, so nothing is written outside the data directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from certify.errors import CertifyError

_HEX = re.compile(r"[0-9a-f]{64}")
# Free space is looked up again after this many bytes: often enough to stop well
# before the disk is full, rarely enough to cost nothing next to the writes.
RECHECK_BYTES = 1 << 20
DEFAULT_RESERVE = 1 << 30


class BlobError(CertifyError):
    """An upload refused; the message names the blob and the reason."""


class InvalidDigest(BlobError):
    """The name given is not a sha256 digest (the API answers 400)."""


class DigestMismatch(BlobError):
    """The bytes do not hash to the digest named, or fewer arrived than announced (400)."""


class BlobTooLarge(BlobError):
    """The upload is (or announces it will be) over the size limit (413)."""


class InsufficientStorage(BlobError):
    """Writing would bring free space under the reserve (507)."""


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int
    path: Path
    created: bool  # False when the blob was already there


def check_digest(hex_digest: str) -> str:
    if not isinstance(hex_digest, str) or not _HEX.fullmatch(hex_digest):
        raise InvalidDigest(f"{str(hex_digest)[:80]!r} is not a sha256 digest (64 lowercase hex digits)")
    return hex_digest


class BlobStore:
    """The blob directory under ``data_dir``; ``reserve`` bytes of free space are never written into."""

    def __init__(self, data_dir: str | os.PathLike[str], reserve: int = DEFAULT_RESERVE) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "sha256"
        self.reserve = reserve

    def path_for(self, hex_digest: str) -> Path:
        check_digest(hex_digest)
        return self.root / hex_digest[:2] / hex_digest[2:4] / hex_digest

    def exists(self, hex_digest: str) -> bool:
        return self.path_for(hex_digest).is_file()

    def open(self, hex_digest: str) -> BinaryIO:
        return self.path_for(hex_digest).open("rb")

    def free_bytes(self) -> int:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.data_dir).free

    def writer(self, expected_sha256: str, max_size: int, declared_size: int | None = None) -> BlobWriter:
        """A writer for one upload; refuses at once what the declared size already rules out."""
        target = self.path_for(expected_sha256)
        if declared_size is not None and declared_size > max_size:
            raise BlobTooLarge(f"blob sha256:{expected_sha256}: {declared_size} bytes announced, over the {max_size}-byte limit")
        free = self.free_bytes()
        if free - (declared_size or 0) < self.reserve:
            raise InsufficientStorage(f"blob sha256:{expected_sha256}: {free} bytes free, "
                                      f"{self.reserve} must stay free; the upload would not fit")
        return BlobWriter(self, expected_sha256, target, max_size, declared_size)

    def put(self, chunks: Iterable[bytes], expected_sha256: str, max_size: int,
            declared_size: int | None = None) -> StoredBlob:
        """Write a whole stream; on any failure nothing of it is left."""
        writer = self.writer(expected_sha256, max_size, declared_size)
        with writer:
            for chunk in chunks:
                writer.write(chunk)
            return writer.commit()


class BlobWriter:
    """One upload in progress: ``write`` each chunk as it arrives, then ``commit``; ``abort`` (or leaving
    the ``with`` block uncommitted) removes what was written."""

    def __init__(self, store: BlobStore, expected: str, target: Path, max_size: int, declared_size: int | None) -> None:
        self.store = store
        self.expected = expected
        self.target = target
        self.max_size = max_size
        self.declared_size = declared_size
        self.size = 0
        self._hash = hashlib.sha256()
        self._since_check = 0
        self._made_dirs = [d for d in (target.parent.parent, target.parent) if not d.exists()]
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".upload-", dir=target.parent)
        self._tmp = Path(name)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        self._done = False

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._done:
            self.abort()

    def _name(self) -> str:
        return f"blob sha256:{self.expected}"

    def write(self, chunk: bytes) -> None:
        if self._file is None:
            raise BlobError(f"{self._name()}: the upload was already ended")
        try:
            self.size += len(chunk)
            if self.size > self.max_size:
                raise BlobTooLarge(f"{self._name()}: over the {self.max_size}-byte limit")
            if self.declared_size is not None and self.size > self.declared_size:
                raise DigestMismatch(f"{self._name()}: more than the {self.declared_size} bytes announced")
            self._since_check += len(chunk)
            if self._since_check >= RECHECK_BYTES:
                self._since_check = 0
                self._check_space()
            self._hash.update(chunk)
            try:
                self._file.write(chunk)
            except OSError as exc:
                raise self._os_error(exc) from None
        except BaseException:
            self.abort()
            raise

    def _check_space(self) -> None:
        free = shutil.disk_usage(self.target.parent).free
        if free < self.store.reserve:
            raise InsufficientStorage(f"{self._name()}: free space fell to {free} bytes, under the "
                                      f"{self.store.reserve}-byte reserve, after {self.size} bytes")

    def _os_error(self, exc: OSError) -> BlobError:
        if exc.errno in (28, 122):  # ENOSPC, EDQUOT
            return InsufficientStorage(f"{self._name()}: the disk is full after {self.size} bytes")
        return BlobError(f"{self._name()}: cannot write: {exc.strerror or exc}")

    def commit(self) -> StoredBlob:
        """Verify, flush and move into place; raises (having removed the temporary file) if anything is off."""
        try:
            if self._file is None:
                raise BlobError(f"{self._name()}: the upload was already ended")
            if self.declared_size is not None and self.size != self.declared_size:
                raise DigestMismatch(f"{self._name()}: {self.size} bytes arrived of the {self.declared_size} announced")
            actual = self._hash.hexdigest()
            if actual != self.expected:
                raise DigestMismatch(f"{self._name()}: the {self.size} bytes received hash to sha256:{actual}")
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
                self._file = None
                if self.target.is_file():
                    # The same bytes are already there (same digest): keep the first copy.
                    self._tmp.unlink()
                    self._done = True
                    return StoredBlob(self.expected, self.size, self.target, created=False)
                os.chmod(self._tmp, 0o640)
                os.replace(self._tmp, self.target)
                _fsync_dir(self.target.parent)
            except OSError as exc:
                raise self._os_error(exc) from None
            self._done = True
            return StoredBlob(self.expected, self.size, self.target, created=True)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Remove the temporary file and any directory made for it."""
        self._done = True
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()
        for directory in reversed(self._made_dirs):
            with contextlib.suppress(OSError):
                directory.rmdir()  # only if empty: a concurrent upload may be using it


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
