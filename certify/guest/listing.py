"""The guest's whole file tree in one round trip: the appliance's own ``find`` over the mounted guest.

Walking the tree through libguestfs costs two round trips per directory;
under software emulation that is most of a scan on a guest with many files.
Here the appliance's ``find`` (the appliance's binary, never one of the
guest's: a hostile image could lie about itself) lists every path with its
lstat in one command. The listing is gzipped and base64'ed inside the
appliance, because a protocol message holds at most 4 MiB and the Python
binding only takes UTF-8 text back, and fetched in chunks when it is large.

``parse_listing`` is pure (bytes in, entries out) so it can be fuzzed; it
refuses anything it does not fully understand with ``ListingUnreadable``,
and the reader then falls back to its walk.
"""

from __future__ import annotations

import base64
import re
import stat as statmod
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from certify.errors import first_line

# One NUL-terminated record per path: "type mode uid gid size path", then the link target (empty unless a link).
FIND_FORMAT = r"%y %m %U %G %s %p\0%l\0"
CHUNK_BYTES = 2 * 1024 * 1024  # gzip bytes per reply: 2.7 MB once base64'ed, under the protocol's 4 MiB
MAX_LISTING_BYTES = 1536 * 1024 * 1024  # uncompressed; a listing this large is refused, never held in memory
_TEMP_DIR = re.compile(r"/tmp/tmp\.[A-Za-z0-9]+")
_ODD_COMPONENTS = {b"", b".", b".."}
_TYPES = {b"f": statmod.S_IFREG, b"d": statmod.S_IFDIR, b"l": statmod.S_IFLNK, b"b": statmod.S_IFBLK,
          b"c": statmod.S_IFCHR, b"p": statmod.S_IFIFO, b"s": statmod.S_IFSOCK}  # fmt: skip

# $root is the daemon's sysroot, where the guest is mounted. find's stderr goes to a file: the daemon folds
# stderr into what it returns, and that must stay base64. A status file carries find's exit (sh has no pipefail).
_LIST_SCRIPT = (
    'd=$(mktemp -d) && cd "$root" && '
    '{ find . -printf \'' + FIND_FORMAT + '\' 2>"$d/err"; echo $? >"$d/rc"; } | gzip -1 >"$d/gz" && '
    'echo "$d $(cat "$d/rc") $(wc -c <"$d/gz")" && head -c 300 "$d/err" | tr -c "[:print:]" " "'
)


class ListingUnavailable(Exception):
    """The appliance could not list the tree this way (no debug command, find failed): walk instead."""


class ListingUnreadable(ListingUnavailable):
    """The listing came back in a shape this parser does not accept."""


class ListingTooLarge(Exception):
    """More entries than the caller will hold: not a reason to walk instead."""

    def __init__(self, limit: int):
        super().__init__(f"more than {limit} entries")
        self.limit = limit


@dataclass(frozen=True)
class ListedEntry:
    path: str
    mode: int  # type and permission bits, as st_mode
    uid: int
    gid: int
    size: int
    target: str | None  # a symlink's target, unresolved; None for anything else


@dataclass(frozen=True)
class Listing:
    entries: list[ListedEntry]
    unstatable: list[str]  # paths that are not UTF-8 (a directory's stands for everything under it)


def _records(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    fields = data.split(b"\0")
    if fields[-1] != b"" or len(fields) % 2 != 1:
        raise ListingUnreadable("the listing does not end on a whole record")
    for i in range(0, len(fields) - 1, 2):
        yield fields[i], fields[i + 1]


def parse_listing(data: bytes, limit: int) -> Listing:
    """Entries of a ``FIND_FORMAT`` listing made from the guest's root ("." is "/"); at most ``limit`` of them.

    A path whose bytes are not UTF-8 cannot be handed back to libguestfs:
    it goes to ``unstatable`` and nothing under it is listed, as the walk does.
    """
    entries: list[ListedEntry] = []
    unstatable: set[str] = set()
    for head, target in _records(data):
        parts = head.split(b" ", 5)
        if len(parts) != 6 or parts[0] not in _TYPES or not all(p.isdigit() for p in parts[1:5]):
            raise ListingUnreadable(f"a record it cannot read: {head[:80]!r}")
        kind, perms, uid, gid, size, raw_path = parts
        if raw_path != b"." and (not raw_path.startswith(b"./") or _ODD_COMPONENTS & set(raw_path[2:].split(b"/"))):
            raise ListingUnreadable(f"a path find does not print: {raw_path[:80]!r}")
        if not all(48 <= c <= 55 for c in perms):
            raise ListingUnreadable(f"permission bits that are not octal: {perms[:20]!r}")
        try:
            path = "/" + raw_path[2:].decode("utf-8")
        except UnicodeDecodeError:
            unstatable.add(_first_undecodable(raw_path[2:]))
            continue
        mode = int(perms, 8)
        if mode > 0o7777:
            raise ListingUnreadable(f"permission bits {perms.decode()} for {path!r}")
        if len(entries) >= limit:
            raise ListingTooLarge(limit)
        link = None
        if kind == b"l":
            try:
                link = target.decode("utf-8")
            except UnicodeDecodeError:
                link = None  # as readlink gives none back for a target libguestfs cannot return
        entries.append(ListedEntry(path, _TYPES[kind] | mode, int(uid), int(gid), int(size), link))
    # Below an undecodable directory nothing decodes either; keep only the topmost name, as the walk does.
    return Listing(entries, sorted(p for p in unstatable if not _has_ancestor_in(p, unstatable)))


def _first_undecodable(relative: bytes) -> str:
    """The path down to the first component that is not UTF-8, as Python keeps such bytes."""
    parts = relative.split(b"/")
    for i, part in enumerate(parts):
        try:
            part.decode("utf-8")
        except UnicodeDecodeError:
            return "/" + b"/".join(parts[: i + 1]).decode("utf-8", "surrogateescape")
    return "/" + relative.decode("utf-8", "surrogateescape")


def _has_ancestor_in(path: str, paths: set[str]) -> bool:
    parent = path.rpartition("/")[0]
    while parent:
        if parent in paths:
            return True
        parent = parent.rpartition("/")[0]
    return False


def fetch_listing(g: Any) -> bytes:
    """Run ``find`` in the appliance over the mounted guest and bring its (uncompressed) listing back."""
    try:
        status = g.debug("sh", [_LIST_SCRIPT])
    except (RuntimeError, AttributeError) as exc:  # libguestfs built without debug, or no handle that has it
        raise ListingUnavailable(f"debug sh: {first_line(exc)}") from None
    first, _, error = status.partition("\n")
    fields = first.split()
    if len(fields) != 3 or not fields[1].isdigit() or not fields[2].isdigit():
        raise ListingUnavailable(f"unexpected reply from the appliance: {first[:120]!r}")
    directory, returncode, size = fields[0], int(fields[1]), int(fields[2])
    if not _TEMP_DIR.fullmatch(directory):
        raise ListingUnavailable(f"unexpected temporary directory in the appliance: {directory[:120]!r}")
    try:
        if returncode != 0:
            raise ListingUnavailable(f"find exited {returncode}: {error.strip()[:200]}")
        compressed = bytearray()
        for offset in range(0, size, CHUNK_BYTES):
            chunk = g.debug("sh", [f"tail -c +{offset + 1} {directory}/gz | head -c {CHUNK_BYTES} | base64 -w0"])
            compressed += base64.b64decode(chunk, validate=True)
        if len(compressed) != size:
            raise ListingUnavailable(f"fetched {len(compressed)} of {size} listing bytes")
    except (RuntimeError, ValueError) as exc:
        raise ListingUnavailable(f"fetching the listing failed: {exc}") from None
    finally:
        try:
            g.debug("sh", [f"rm -rf {directory}"])
        except RuntimeError:
            pass
    return _gunzip(bytes(compressed), MAX_LISTING_BYTES)


def _gunzip(data: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ListingUnreadable(f"the listing does not decompress: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise ListingUnavailable(f"the listing is larger than {limit} bytes")
    if not inflater.eof:
        raise ListingUnreadable("the listing ends early")
    return out
