"""The raw headers of one OVA member, held to what every tar reader reads the same way.

tarfile, GNU tar, libarchive and a pre-POSIX reader that ignores extended
headers all read the fields they know and skip the rest: bytes after the NUL
that ends a name, a number or a list of PAX records, in the unused tail of a
header, in fields a regular file does not use, would be covered by the OVA's
digest yet read by nobody; a PAX ``size`` or ``path`` the ustar header
contradicts gives readers different members with different bytes. The
headers of a member (its one PAX or GNU long-name header, with its data, then
its own 512-byte header) are judged here, as bytes: ``member_problem`` says
what is wrong, or None.
"""

from __future__ import annotations

import re

BLOCK = 512
POSIX_MAGIC, GNU_MAGIC = b"ustar\x0000", b"ustar  \x00"
_STRINGS = (("name", 0, 100), ("link name", 157, 257), ("user name", 265, 297), ("group name", 297, 329))
_NUMBERS = (("mode", 100, 108), ("uid", 108, 116), ("gid", 116, 124), ("size", 124, 136), ("mtime", 136, 148),
            ("checksum", 148, 156), ("device major", 329, 337), ("device minor", 337, 345))  # fmt: skip
_BASE_256 = ("uid", "gid", "size", "mtime")  # GNU tar's encoding of numbers too large for octal digits
_OCTAL = re.compile(rb" *[0-7]* *(?:\0[\0 ]*)?")  # what tarfile and GNU tar read as a number, and nothing after
_RECORD = re.compile(rb"([0-9]{1,20}) ")
_USTAR_SIZE_LIMIT = 8**11  # a size of 11 octal digits; beyond it a writer puts the size in PAX and 0 (or 7s) here
_FILE, _OLD_FILE, _FOLDER = b"0", b"\0", b"5"
_EXTENDED = {b"x": "PAX header", b"L": "GNU long-name header"}


def _nul_ended(field: bytes) -> tuple[bytes, bool]:
    """A string field's value (up to its first NUL) and whether only NULs follow it."""
    value, _, rest = field.partition(b"\0")
    return value, rest.count(0) == len(rest)


def number(field: bytes) -> int | None:
    """A numeric header field as tarfile reads it, or None when something hides in it."""
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    if not _OCTAL.fullmatch(field):
        return None
    digits = field.partition(b"\0")[0].strip()
    return int(digits, 8) if digits else 0


def _fields_problem(header: bytes, whose: str) -> str | None:
    """Bytes of a 512-byte header no reader looks at, or fields that are not what readers parse."""
    magic = header[257:265]
    if magic not in (POSIX_MAGIC, GNU_MAGIC):
        return f"{whose} is neither POSIX ustar nor GNU tar (magic {magic!r})"
    strings = _STRINGS + ((("name prefix", 345, 500),) if magic == POSIX_MAGIC else ())
    for what, start, end in strings:
        if not _nul_ended(header[start:end])[1]:
            return f"non-zero bytes after the NUL that ends the {what} in {whose}"
    for what, start, end in _NUMBERS:
        field = header[start:end]
        if number(field) is None or field[:1] == b"\x80" and what not in _BASE_256:
            return f"the {what} field of {whose}, {field!r}, is not a plain number"
    unused = header[345:512] if magic == GNU_MAGIC else header[500:512]  # GNU keeps times and sparse maps there
    if unused.count(0) != len(unused):
        return f"non-zero bytes in the unused bytes {512 - len(unused)}-511 of {whose}"
    if header[157:257].count(0) != 100 or number(header[329:337]) or number(header[337:345]):
        return f"{whose} sets a link name or a device number, which a file or folder does not have"
    return None


def _pax_records(data: bytes, size: int) -> tuple[dict[bytes, bytes] | None, str | None]:
    """The records of a PAX header's data (``size`` bytes, then padding), or why they hide bytes or repeat a key."""
    records: dict[bytes, bytes] = {}
    pos = 0
    while pos < size and data[pos] != 0:
        match = _RECORD.match(data, pos)
        length = int(match.group(1)) if match else 0
        record = data[match.end() : pos + length] if match else b""
        key, equals, value = record[:-1].partition(b"=")
        if length < 5 or pos + length > size or not record.endswith(b"\n") or not equals or not key:
            return None, f"a malformed PAX record at byte {pos} of its PAX header"
        if key in records:
            return None, f"its PAX header sets {key.decode('utf-8', 'replace')!r} twice"
        records[key] = value
        pos += length
    if data[pos:].count(0) != len(data) - pos:
        return None, "non-zero bytes after the PAX records in its PAX header"
    return records, None


def _long_name(data: bytes, size: int) -> tuple[bytes | None, str | None]:
    """The name a GNU long-name header carries, or why bytes hide after it."""
    name, _, rest = data.partition(b"\0")
    if len(name) > size or rest.count(0) != len(rest):
        return None, "non-zero bytes after the NUL that ends its GNU long name"
    return name, None


def _size_problem(records: dict[bytes, bytes], header: bytes) -> str | None:
    """A PAX size must be the ustar size, unless that field cannot hold it (then writers leave 0, or all 7s)."""
    if b"size" not in records:
        return None
    text, ustar = records[b"size"], number(header[124:136]) or 0
    if not re.fullmatch(rb"[0-9]{1,20}", text):
        return f"its PAX size {text[:30]!r} is not a number"
    size = int(text)
    overflowed = ustar == 0 or header[124:135] == b"7" * 11
    if size != ustar and not (size >= _USTAR_SIZE_LIMIT and overflowed):
        return f"its PAX header says {size} bytes, its ustar header {ustar}: readers that ignore PAX would read another archive"
    return None


def _path_problem(records: dict[bytes, bytes], header: bytes) -> str | None:
    """A PAX path that fits the ustar name field must be that name: a reader ignoring PAX reads the name field."""
    path = records.get(b"path")
    if path is None:
        return None
    name, prefix = _nul_ended(header[0:100])[0], _nul_ended(header[345:500])[0] if header[257:265] == POSIX_MAGIC else b""
    ustar = prefix + b"/" + name if prefix else name
    fits = path.isascii() and len(path) <= 100
    if (fits or prefix) and ustar.rstrip(b"/") != path.rstrip(b"/"):
        return f"its PAX path {path[:60]!r} and its ustar name {ustar[:60]!r} differ"
    return None


def member_problem(raw: bytes) -> str | None:
    """Why the headers of one member (``raw``: from its first header to where its data begins) hide or contradict, or None."""
    if not raw or len(raw) % BLOCK:
        return f"its headers take {len(raw)} bytes, not whole 512-byte blocks"
    pos, kind, extended = 0, None, None
    while True:
        header = raw[pos : pos + BLOCK]
        problem = _fields_problem(header, f"its {_EXTENDED.get(header[156:157], 'header')}")
        size = number(header[124:136]) or 0
        if problem:
            return problem
        if header[156:157] not in _EXTENDED:
            break
        if kind is not None:
            return "it has two extended headers"
        kind = header[156:157]
        data = raw[pos + BLOCK : pos + BLOCK + -(-size // BLOCK) * BLOCK]
        if len(data) < size:  # the extended header's data would run into the member's own
            return "its headers do not end where its data begins"
        extended, problem = _pax_records(data, size) if kind == b"x" else _long_name(data, size)
        if problem:
            return problem
        pos += BLOCK + len(data)
    if pos + BLOCK != len(raw):
        return "its headers do not end where its data begins"
    if header[156:157] not in (_FILE, _OLD_FILE, _FOLDER):
        return f"its header has type {header[156:157]!r}, not a file or folder"
    if header[156:157] == _FOLDER and (size or isinstance(extended, dict) and extended.get(b"size", b"0").strip(b"0")):
        return "it is a folder that declares a size: readers disagree on whether data follows"
    if kind == b"x":
        return _size_problem(extended, header) or _path_problem(extended, header)
    if kind == b"L" and not extended.startswith(_nul_ended(header[0:100])[0]):  # GNU tar keeps its first 99 or 100 bytes there
        return f"its GNU long name {extended[:60]!r} does not begin with the name in its header"
    return None
