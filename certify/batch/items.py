"""What a batch scans: the paths given or listed, and a digest of each upload's content."""

from __future__ import annotations

import hashlib
import json
import os
import sys

from certify.errors import UsageError

LIST_LIMIT = 64 * 1024 * 1024  # bytes of a --from-list file: millions of paths, not an accident
_BUNDLE_DESCRIPTORS = (".ovf", ".vmx")


def read_list(path: str) -> list[str]:
    """Paths from a list file (``-``: standard input): one a line; blank lines and ``#`` comments skipped."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(LIST_LIMIT + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(LIST_LIMIT + 1)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the list of uploads: {exc.strerror or exc}") from None
    if len(data) > LIST_LIMIT:
        raise UsageError(f"{path}: the list of uploads is larger than {LIST_LIMIT >> 20} MiB")
    if b"\0" in data:
        raise UsageError(f"{path}: the list of uploads holds a NUL byte; it is one path a line, as text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: the list of uploads is not UTF-8 text (byte {exc.start})") from None
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def upload_digest(path: str) -> str:
    """``sha256:<hex>`` of what the scan reads: the file, or for an OVF/VMX bundle every file of its folder.

    A scan's ``artifact_sha256`` covers only the descriptor of a bundle read in
    place; a re-run must not skip a bundle whose disks changed beside the same
    descriptor, so a folder is hashed whole. Raises OSError when unreadable.
    """
    if os.path.isdir(path):
        return _folder_digest(path)
    if not os.path.lexists(path):
        raise FileNotFoundError(2, "no such file or directory")
    if path.lower().endswith(_BUNDLE_DESCRIPTORS):
        return _folder_digest(os.path.dirname(os.path.abspath(path)))
    if not os.path.isfile(path):
        raise OSError(f"not a regular file")
    return "sha256:" + _file_sha256(path)


def _file_sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _folder_digest(folder: str) -> str:
    entries = []
    for root, dirs, files in os.walk(folder):  # symbolic links are listed by their target, never followed
        dirs.sort()
        for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            full = os.path.join(root, name)
            relative = os.path.relpath(full, folder)
            if os.path.islink(full):
                entries.append([relative, "link", os.readlink(full)])
            elif os.path.isfile(full):
                entries.append([relative, "file", _file_sha256(full)])
            else:
                entries.append([relative, "other", ""])
    text = json.dumps(entries, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
