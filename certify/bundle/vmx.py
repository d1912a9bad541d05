"""A strict VMX parser: bytes in, plain data out, only ParseError escapes.

VMX is ``key = "value"``, one entry per line, ``#`` comments, case-insensitive
keys, ``|XX`` byte escapes in values, and an optional ``.encoding`` entry that
names the charset of the whole file.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from certify.errors import ParseError

MAX_BYTES = 1024 * 1024
MAX_ENTRIES = 20_000
MAX_LINE = 64 * 1024

KEY = re.compile(r"^[A-Za-z0-9_.:\-\[\]]+$")
_ESCAPE = re.compile(r"\|([0-9A-Fa-f]{2})")
_ENCODING_LINE = re.compile(rb'^[ \t]*\.encoding[ \t]*=[ \t]*"?([A-Za-z0-9_.:\-]+)"?[ \t]*\r?$', re.MULTILINE)
# Codecs Python knows that are transforms or special cases, not charsets a VMX could be written in.
_NOT_CHARSETS = {"undefined", "idna", "punycode", "utf-7", "raw-unicode-escape", "unicode-escape"}
_NOT_VMX_MAGIC = (b"KDMV", b"VMDK", b"# Disk DescriptorFile")


@dataclass(frozen=True)
class VmxEntry:
    key: str  # as written
    value: str  # unescaped
    line: int

    @property
    def norm(self) -> str:
        return self.key.lower()


@dataclass(frozen=True)
class VmxFile:
    entries: tuple[VmxEntry, ...]
    encoding: str

    def get(self, key: str) -> VmxEntry | None:
        """The first entry for ``key`` (case-insensitive), as virt-v2v resolves it."""
        key = key.lower()
        return next((e for e in self.entries if e.norm == key), None)

    def duplicates(self) -> dict[str, list[VmxEntry]]:
        seen: dict[str, list[VmxEntry]] = {}
        for entry in self.entries:
            seen.setdefault(entry.norm, []).append(entry)
        return {k: v for k, v in seen.items() if len(v) > 1}


def unescape(value: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)


def _decode(data: bytes) -> tuple[str, str]:
    match = _ENCODING_LINE.search(data)
    name = match.group(1).decode("ascii") if match else "utf-8"
    try:
        codec = codecs.lookup(name)
    except LookupError:
        raise ParseError(f"unknown .encoding {name!r}") from None
    if not getattr(codec, "_is_text_encoding", True) or codec.name in _NOT_CHARSETS:
        raise ParseError(f".encoding {name!r} is not a character set")
    try:
        return data.decode(codec.name), codec.name
    except UnicodeDecodeError as exc:
        raise ParseError(f"bytes at offset {exc.start} are not valid {name}") from None
    except (UnicodeError, ValueError, LookupError):
        raise ParseError(f".encoding {name!r} cannot decode this file") from None


def parse_vmx(data: bytes, *, max_bytes: int = MAX_BYTES) -> VmxFile:
    if len(data) > max_bytes:
        raise ParseError(f"VMX is {len(data)} bytes, over the {max_bytes}-byte limit")
    if data.lstrip().startswith(_NOT_VMX_MAGIC):
        raise ParseError("this is a VMDK, not a VMX")
    if b"\0" in data:
        raise ParseError("VMX contains NUL bytes")
    text, encoding = _decode(data)
    entries: list[VmxEntry] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        if len(raw) > MAX_LINE:
            raise ParseError(f"line {number} is over {MAX_LINE} characters")
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not KEY.match(key):
            raise ParseError(f"line {number} is not 'key = \"value\"'")
        if value.startswith('"'):
            if len(value) < 2 or not value.endswith('"'):
                raise ParseError(f"line {number}: unterminated quoted value")
            value = value[1:-1]
            if '"' in value:
                raise ParseError(f"line {number}: stray quote inside a value")
        entries.append(VmxEntry(key=key, value=unescape(value), line=number))
        if len(entries) > MAX_ENTRIES:
            raise ParseError(f"more than {MAX_ENTRIES} entries")
    return VmxFile(entries=tuple(entries), encoding=encoding)
