"""Streaming an OVA (a tar) into the work directory: each member checked before a byte is written.

The tar is read once. Every member is hashed while it is extracted (with the
manifest's algorithms once the manifest has gone by), and the OVA's own
sha256 is taken from the same bytes. The OVA's digest covers every byte of it,
so every byte is read: a member's padding to its 512-byte block and whatever
follows the end of the archive must be zeros (``tar -i`` or a lenient importer
would read a second archive appended there), and so must every byte of a
member's headers that readers skip (``tarheaders``); a member may have one
extended header, PAX or GNU long name, that agrees with its ustar header.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from certify.bundle import manifest
from certify.bundle.files import CHUNK, Digests, Limits, show
from certify.bundle.manifest import ManifestEntry
from certify.bundle.tarheaders import member_problem
from certify.errors import InputRejected


@dataclass
class OvaContents:
    sha256: str
    order: list[str] = field(default_factory=list)  # member names, as they came
    digests: Digests = field(default_factory=dict)
    manifest: str | None = None
    entries: list[ManifestEntry] | None = None


MAX_TAR_METADATA = 64 * 1024


_NOT_APPLIED_ALIKE = {
    tarfile.XGLTYPE: "a PAX global header",
    tarfile.SOLARIS_XHDTYPE: "a Solaris extended header",
    tarfile.GNUTYPE_LONGLINK: "a GNU long link-name header",
}


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses GNU long-name and PAX headers big enough to exhaust memory (tarfile reads them whole), a second
    extended header for one member (tarfile would recurse through any number of them), and extended headers
    readers apply differently."""

    def _proc_member(self, tarfile_obj):  # noqa: D102 - tarfile's extension point
        if self.type in _NOT_APPLIED_ALIKE:
            raise tarfile.HeaderError(f"{_NOT_APPLIED_ALIKE[self.type]} at byte {self.offset}, which readers apply differently")
        if self.type not in (tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME):
            return super()._proc_member(tarfile_obj)
        if getattr(tarfile_obj, "_certify_extended", False):
            raise tarfile.HeaderError(f"a second extended header at byte {self.offset} for one member")
        tarfile_obj._certify_extended = True
        try:
            return super()._proc_member(tarfile_obj)
        finally:
            tarfile_obj._certify_extended = False

    def _proc_gnulong(self, tarfile_obj):  # noqa: D102
        self._check_metadata_size()
        return super()._proc_gnulong(tarfile_obj)

    def _proc_pax(self, tarfile_obj):  # noqa: D102
        self._check_metadata_size()
        return super()._proc_pax(tarfile_obj)

    def _check_metadata_size(self) -> None:
        if self.size > MAX_TAR_METADATA:
            raise tarfile.HeaderError(f"a tar metadata header of {self.size} bytes (over {MAX_TAR_METADATA})")


class _HashingReader:
    """Feeds tarfile while hashing every byte, so the OVA is read exactly once."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.position = 0  # bytes handed to tarfile so far, some of them still in its buffer

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.sha256.update(data)
        self.position += len(data)
        return data

    def drain_zeros(self) -> int | None:
        """Read (and hash) the rest of the file; the offset of its first non-zero byte, or None."""
        while chunk := self.read(CHUNK):
            if chunk.count(0) != len(chunk):
                return self.position - len(chunk) + _first_non_zero(chunk)
        return None


def _first_non_zero(data: bytes) -> int:
    return len(data) - len(data.lstrip(b"\0"))


_MEMBER_TYPES = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.CONTTYPE: "a contiguous file",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
}


def check_member_name(name: str) -> str | None:
    """Why a tar member name is unsafe to extract, or None."""
    if not name or name in (".", "./"):
        return "is empty"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # tarfile keeps undecodable bytes as surrogates
        return "is not valid UTF-8"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "contains control characters"
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/"):
        return "is an absolute path"
    parts = name.rstrip("/").split("/")
    if ".." in parts:
        return "climbs out with '..'"
    if any(p in ("", ".") for p in parts):
        return "is not in normal form"
    if len(name) > 255:
        return "is longer than 255 characters"
    return None


# PAX keys a tar writer may set (POSIX, GNU tar, bsdtar); any other could change how tarfile reads a member.
_PAX_KEYS = {"path", "linkpath", "size", "uid", "gid", "uname", "gname", "mtime", "atime", "ctime", "comment", "charset", "hdrcharset"}
_PAX_PREFIXES = ("SCHILY.", "LIBARCHIVE.")  # extended attributes and file flags; tarfile ignores them


def _sparse_reason(member: tarfile.TarInfo) -> str | None:
    """Why a member is sparse though its type says regular file (PAX GNU.sparse.* headers), or None.

    tarfile fills a sparse member's holes on extraction, so a few bytes in the
    archive could become gigabytes on disk.
    """
    keys = sorted(k for k in member.pax_headers if k.startswith("GNU.sparse."))
    if keys:
        return f"PAX header {keys[0]}"
    if getattr(member, "sparse", None) is not None:
        return "GNU sparse map"
    return None


def _unexpected_pax_key(member: tarfile.TarInfo) -> str | None:
    return next((k for k in sorted(member.pax_headers) if k not in _PAX_KEYS and not k.startswith(_PAX_PREFIXES)), None)


def extract(path: str, root: str, limits: Limits, read_manifest: Callable[[str, Digests], list[ManifestEntry]]) -> OvaContents:
    """Extract every member of the OVA at ``path`` under ``root``; ``read_manifest`` parses the .mf as it lands."""
    contents = OvaContents(sha256="")
    digests, order = contents.digests, contents.order
    entries: list[ManifestEntry] | None = None
    mf_name: str | None = None
    seen_folded: set[str] = set()
    total = 0
    workdir = os.path.dirname(root)
    with open(path, "rb") as raw:
        magic = raw.read(4)
        raw.seek(0)
        if magic[:2] == b"\x1f\x8b" or magic[:3] == b"BZh" or magic == b"\xfd7zX" or magic[:2] == b"PK":
            raise InputRejected(f"{os.path.basename(path)}: compressed archive; an OVA must be an uncompressed tar")
        os.makedirs(root, mode=0o700)
        reader = _HashingReader(raw)
        try:
            with tarfile.open(fileobj=reader, mode="r|", tarinfo=_BoundedTarInfo) as tar:  # type: ignore[call-overload]
                for member in tar:
                    name = member.name
                    problem = check_member_name(name)
                    if problem:
                        raise InputRejected(f"OVA member {show(name)} {problem}")
                    if member.type in _MEMBER_TYPES or not (member.isfile() or member.isdir()):
                        what = _MEMBER_TYPES.get(member.type, f"of tar type {member.type!r}")
                        raise InputRejected(f"OVA member {show(name)} is {what}; only regular files are accepted")
                    sparse = _sparse_reason(member)
                    if sparse:
                        raise InputRejected(f"OVA member {show(name)} is a sparse file ({sparse}); only regular files are accepted")
                    key = _unexpected_pax_key(member)
                    if key is not None:
                        raise InputRejected(f"OVA member {show(name)} carries PAX header {show(key, 40)}, which is not accepted")
                    # tarfile has read these bytes (and the reader hashed them): read them again, whole, to judge them.
                    problem = member_problem(os.pread(raw.fileno(), member.offset_data - member.offset, member.offset))
                    if problem:
                        raise InputRejected(f"OVA member {show(name)}: {problem}")
                    name = name.rstrip("/")
                    if name.lower() in seen_folded:
                        raise InputRejected(f"OVA member {show(name)} appears twice (or differs only in case)")
                    seen_folded.add(name.lower())
                    if len(seen_folded) > limits.max_members:
                        raise InputRejected(f"OVA has more than {limits.max_members} members")
                    target = os.path.join(root, *name.split("/"))
                    if member.isdir():
                        _makedirs(target, name)
                        continue
                    total += member.size
                    if member.size > limits.max_member_bytes or total > limits.max_total_bytes:
                        raise InputRejected(f"OVA member {show(name)} takes the upload over its size limit")
                    if shutil.disk_usage(workdir).free - member.size < limits.min_free_bytes:
                        raise InputRejected(f"OVA member {show(name)} ({member.size} bytes) does not fit in the work directory")
                    _makedirs(os.path.dirname(target), name)
                    # Hash with what the manifest uses; before it is seen, with every algorithm it may use.
                    algorithms = {e.algorithm for e in entries} | {"SHA256"} if entries is not None else set(manifest.ALGORITHMS)
                    digests[name] = _extract(tar, member, target, algorithms)
                    _zero_padding(tar, member)
                    order.append(name)
                    if "/" not in name and name.lower().endswith(".mf"):
                        if mf_name is not None:
                            raise InputRejected(f"OVA holds two manifests ({mf_name}, {name})")
                        mf_name, entries = name, read_manifest(name, digests)
            # tarfile stops at the first zero block, and silently at a header it cannot read: everything from there is trailing.
            end = tar.offset
        except tarfile.TarError as exc:
            raise InputRejected(f"{os.path.basename(path)}: not a valid tar archive ({exc})") from None
        buffered = os.pread(raw.fileno(), reader.position - end, end) if reader.position > end else b""
        stray = end + _first_non_zero(buffered) if buffered.count(0) != len(buffered) else reader.drain_zeros()
        if stray is not None:
            raise InputRejected(f"{os.path.basename(path)}: data after the end of the tar archive (a non-zero byte at offset {stray}); "
                                "an OVA must end with its archive")  # fmt: skip
    contents.sha256, contents.manifest, contents.entries = reader.sha256.hexdigest(), mf_name, entries
    return contents


def _makedirs(path: str, member: str) -> None:
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError:  # a file already holds a name this member needs as a folder
        raise InputRejected(f"OVA member {show(member)} is both a file and a folder") from None


def _zero_padding(tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
    """The bytes that round a member up to whole 512-byte blocks: nobody reads them, so they must be zeros."""
    padding = -member.size % tarfile.BLOCKSIZE
    data = tar.fileobj.read(padding) if padding else b""  # type: ignore[union-attr]
    if data.count(0) != len(data):
        raise InputRejected(f"OVA member {show(member.name)}: non-zero bytes in its padding after byte {member.size}")


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, target: str, algorithms: set[str]) -> dict[str, str]:
    source = tar.extractfile(member)
    if source is None:
        raise InputRejected(f"OVA member {show(member.name)} has no data")
    hs = manifest.hashers(algorithms)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError:  # a folder of that name was made for an earlier member
        raise InputRejected(f"OVA member {show(member.name)} is both a file and a folder") from None
    written = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            if written > member.size:
                break
            for h in hs.values():
                h.update(chunk)
            out.write(chunk)
    if written != member.size:
        stored = f"more than {member.size}" if written > member.size else str(written)
        raise InputRejected(f"OVA member {show(member.name)} stores {stored} bytes, not the {member.size} its header declares")
    return {a: h.hexdigest() for a, h in hs.items()}
