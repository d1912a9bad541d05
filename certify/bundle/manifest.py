"""OVF manifests (``.mf``): ``ALGO(name)= hexdigest`` lines, parsed strictly.

Strict on purpose: ESXi refused ``SHA1 (x) = ...`` with spaces that
Workstation wrote, and a lenient reader here would accept what the deploying
hypervisor does not.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from certify.errors import InputRejected, ParseError

MAX_BYTES = 1024 * 1024
ALGORITHMS = {"SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512"}
_DIGEST_HEX = {"SHA1": 40, "SHA256": 64, "SHA512": 128}
_LINE = re.compile(r"^(SHA1|SHA256|SHA512)\((.+)\)= ([0-9a-fA-F]+)\r?$")


@dataclass(frozen=True)
class ManifestEntry:
    algorithm: str  # SHA1, SHA256 or SHA512
    name: str
    digest: str  # lower-case hex
    line: int


def parse_manifest(data: bytes) -> list[ManifestEntry]:
    if len(data) > MAX_BYTES:
        raise ParseError(f"manifest is larger than {MAX_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("manifest is not UTF-8 text") from None
    entries: list[ManifestEntry] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        match = _LINE.match(raw)
        if not match:
            raise ParseError(f"manifest line {number} is not 'SHA256(name)= hex' (MD5 and other forms are refused)")
        algorithm, name, digest = match.groups()
        if len(digest) != _DIGEST_HEX[algorithm]:
            raise ParseError(f"manifest line {number}: a {algorithm} digest has {_DIGEST_HEX[algorithm]} hex digits")
        if "/" in name or "\\" in name or name in (".", "..") or any(ord(c) < 32 for c in name):
            raise ParseError(f"manifest line {number}: {name!r} is not a plain file name")
        if name in seen:
            raise ParseError(f"manifest line {number}: {name!r} is listed twice")
        seen.add(name)
        entries.append(ManifestEntry(algorithm=algorithm, name=name, digest=digest.lower(), line=number))
    if not entries:
        raise ParseError("manifest lists no file")
    return entries


def hashers(algorithms: set[str]) -> dict[str, hashlib._Hash]:
    return {a: hashlib.new(ALGORITHMS[a]) for a in algorithms}


def verify(entries: list[ManifestEntry], members: dict[str, dict[str, str]], exempt: set[str]) -> list[str]:
    """Check a manifest against the bundle's files and their digests.

    ``members`` maps each file name to its digests by algorithm; ``exempt``
    names the files a manifest does not list (itself and the certificate).
    Raises InputRejected on any mismatch; returns notes (weak algorithms).
    """
    listed = {e.name for e in entries}
    for entry in entries:
        if entry.name not in members:
            raise InputRejected(f"manifest line {entry.line} lists {entry.name!r}, which is not in the bundle")
        actual = members[entry.name].get(entry.algorithm)
        if actual is None:
            raise InputRejected(f"manifest line {entry.line}: no {entry.algorithm} digest was computed for {entry.name!r}")
        if actual != entry.digest:
            raise InputRejected(f"{entry.name}: {entry.algorithm} digest does not match the manifest (line {entry.line})")
    missing = sorted(set(members) - listed - exempt)
    if missing:
        raise InputRejected(f"the manifest does not cover {', '.join(missing)}")
    weak = sorted({e.algorithm for e in entries if e.algorithm == "SHA1"})
    return [f"the manifest uses {', '.join(weak)}, which no longer resists forgery; prefer SHA256"] if weak else []
