"""Password hashes: what scheme and cost a crypt(3) string declares, and the system crypt to test it.

The scheme and cost are read from the hash text alone (pure, fuzzable), so
a guest cannot make the scanner spend minutes on one hash: a hash whose
declared cost is over a bound is refused before any crypt call. Hashing
itself uses the host's libxcrypt through ctypes, the same library the
guest's PAM uses, so yescrypt, sha-crypt, bcrypt, md5-crypt and DES are
computed exactly as at login.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hmac
import re
import threading
from dataclasses import dataclass

_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ATOI64 = {c: i for i, c in enumerate(_ITOA64)}
_DES = re.compile(r"^[./0-9A-Za-z]{13}$")
_BSDI = re.compile(r"^_[./0-9A-Za-z]{19}$")
_SHA = re.compile(r"^\$([56])\$(?:rounds=([0-9]{1,12})\$)?[^$]{0,16}\$[./0-9A-Za-z]*$")
_BCRYPT = re.compile(r"^\$2[abxy]\$([0-9]{2})\$[./0-9A-Za-z]{53}$")
_SUNMD5 = re.compile(r"^\$md5(?:,rounds=([0-9]{1,12}))?\$")
_SHA1 = re.compile(r"^\$sha1\$([0-9]{1,12})\$")

SHA_DEFAULT_ROUNDS = 5000  # sha256crypt/sha512crypt without rounds=
SHA_MIN_ROUNDS, SHA_MAX_ROUNDS = 1000, 999_999_999  # what the algorithm clamps a declared count to
# Rare iterated schemes (BSDi DES, Sun MD5, NetBSD sha1crypt) are bounded by one fixed count:
# each iteration is one DES/MD5/HMAC-SHA1 step of 1-2 us, so this is under half a second a guess
# and still admits sha1crypt's default (about 2^18).
OTHER_MAX_ITERATIONS = 300_000
MIB = 1024 * 1024

# crypt_rn needs sizeof(struct crypt_data): CRYPT_OUTPUT_SIZE 384 + setting 384 + input 512 +
# reserved 767 + initialized 1 + internal 30720 = 32768 in libxcrypt's <crypt.h>. glibc's old
# libcrypt has only crypt_r with a larger struct (~128 KiB): the buffer covers both.
_CRYPT_DATA_SIZE = 32768
_CRYPT_R_DATA_SIZE = 256 * 1024


@dataclass(frozen=True)
class HashInfo:
    """What a crypt string declares about itself (never the hash text)."""

    scheme: str  # 'yescrypt', 'sha512crypt', 'bcrypt', 'md5crypt', 'descrypt', ...
    weak: bool  # a legacy algorithm (DES, MD5 and the like): fast to crack whatever the password
    cost: str = ""  # the declared cost in words, for evidence: 'rounds=5000', 'cost 12', 'N=4096 r=32 (16 MiB)'
    sha_rounds: int | None = None
    bcrypt_cost: int | None = None
    memory_work_mib: float | None = None  # memory-hard schemes: memory x passes, in MiB
    iterations: int | None = None  # other iterated schemes


def identify(text: str) -> HashInfo | None:
    """The scheme and declared cost of a crypt(3) string; None when it is no hash crypt knows."""
    if _DES.match(text):
        return HashInfo("descrypt", weak=True)
    if _BSDI.match(text):
        count = sum(_ATOI64[c] << (6 * i) for i, c in enumerate(text[1:5]))
        return HashInfo("bsdicrypt", weak=True, cost=f"{count} iterations", iterations=count)
    if m := _SHA.match(text):
        rounds = SHA_DEFAULT_ROUNDS if m.group(2) is None else min(max(int(m.group(2)), SHA_MIN_ROUNDS), SHA_MAX_ROUNDS)
        return HashInfo(f"sha{'256' if m.group(1) == '5' else '512'}crypt", weak=False, cost=f"rounds={rounds}",
                        sha_rounds=rounds)  # fmt: skip
    if m := _BCRYPT.match(text):
        cost = int(m.group(1))
        return HashInfo("bcrypt", weak=False, cost=f"cost {cost}", bcrypt_cost=cost)
    if text.startswith("$1$"):
        return HashInfo("md5crypt", weak=True)
    if text.startswith("$3$"):
        return HashInfo("nthash", weak=True)
    if m := _SUNMD5.match(text):
        count = 4096 + int(m.group(1) or 0)
        return HashInfo("sunmd5", weak=True, cost=f"{count} iterations", iterations=count)
    if m := _SHA1.match(text):
        count = int(m.group(1))
        return HashInfo("sha1crypt", weak=True, cost=f"{count} iterations", iterations=count)
    if text.startswith(("$y$", "$gy$")):
        params = _yescrypt_params(text[4 if text.startswith("$gy$") else 3 :])
        if params is None:
            return None
        n_log2, r, p, t = params
        memory = 128 * r * (1 << n_log2)
        scheme = "gost-yescrypt" if text.startswith("$gy$") else "yescrypt"
        return HashInfo(scheme, weak=False, cost=_memory_cost(n_log2, r, p, t), memory_work_mib=memory * p * (t + 1) / MIB)
    if text.startswith("$7$"):
        params = _scrypt_params(text[3:])
        if params is None:
            return None
        n_log2, r, p = params
        return HashInfo("scrypt", weak=False, cost=_memory_cost(n_log2, r, p, 0), memory_work_mib=128 * r * (1 << n_log2) * p / MIB)
    return None


def _memory_cost(n_log2: int, r: int, p: int, t: int) -> str:
    extra = (f" p={p}" if p != 1 else "") + (f" t={t}" if t else "")
    return f"N=2^{n_log2} r={r}{extra} ({128 * r * (1 << n_log2) / MIB:g} MiB)"


def _decode64_uint32(src: str, pos: int, minimum: int) -> tuple[int, int] | None:
    """yescrypt's variable-length number encoding (yescrypt-common.c decode64_uint32)."""
    start, end, chars, bits = 0, 47, 1, 0
    if pos >= len(src) or src[pos] not in _ATOI64:
        return None
    c = _ATOI64[src[pos]]
    pos += 1
    value = minimum
    while c > end:
        value += (end + 1 - start) << bits
        start = end + 1
        end = start + (62 - end) // 2
        chars += 1
        bits += 6
    value += (c - start) << bits
    while chars > 1:
        chars -= 1
        if pos >= len(src) or src[pos] not in _ATOI64:
            return None
        bits -= 6
        value += _ATOI64[src[pos]] << bits
        pos += 1
    return value, pos


def _yescrypt_params(src: str) -> tuple[int, int, int, int] | None:
    """(N_log2, r, p, t) from the parameter field after '$y$'."""
    fields = []
    pos = 0
    for minimum in (0, 1, 1):  # flavor, N_log2, r
        decoded = _decode64_uint32(src, pos, minimum)
        if decoded is None:
            return None
        value, pos = decoded
        fields.append(value)
    _flavor, n_log2, r = fields
    p, t = 1, 0
    if pos < len(src) and src[pos] != "$":
        decoded = _decode64_uint32(src, pos, 1)
        if decoded is None:
            return None
        have, pos = decoded
        for bit, minimum in ((1, 2), (2, 1), (4, 1), (8, 1)):  # p, t, g, NROM
            if have & bit:
                decoded = _decode64_uint32(src, pos, minimum)
                if decoded is None:
                    return None
                value, pos = decoded
                if bit == 1:
                    p = value
                elif bit == 2:
                    t = value
    if pos >= len(src) or src[pos] != "$" or n_log2 > 63 or r < 1:
        return None
    return n_log2, r, p, t


def _scrypt_params(src: str) -> tuple[int, int, int] | None:
    """(N_log2, r, p) from '$7$': one char N_log2, then r and p as five little-endian base-64 chars each."""
    if len(src) < 11 or any(c not in _ATOI64 for c in src[:11]):
        return None
    n_log2 = _ATOI64[src[0]]
    r = sum(_ATOI64[c] << (6 * i) for i, c in enumerate(src[1:6]))
    p = sum(_ATOI64[c] << (6 * i) for i, c in enumerate(src[6:11]))
    return (n_log2, r, p) if r and p else None


@dataclass(frozen=True)
class CostBounds:
    max_sha_rounds: int = 100_000  # 20x the sha-crypt default: about 50 ms a guess
    max_bcrypt_cost: int = 12  # about 250 ms a guess
    max_memory_work_mib: float = 64  # yescrypt/scrypt memory x passes; Debian's default is 16 MiB, ~35 ms


def too_expensive(info: HashInfo, bounds: CostBounds) -> str | None:
    """Why testing candidates against this hash would cost too much, or None when it is within the bounds."""
    if info.sha_rounds is not None and info.sha_rounds > bounds.max_sha_rounds:
        return f"{info.scheme} with {info.cost} is over the bound of {bounds.max_sha_rounds} rounds"
    if info.bcrypt_cost is not None and info.bcrypt_cost > bounds.max_bcrypt_cost:
        return f"bcrypt {info.cost} is over the bound of cost {bounds.max_bcrypt_cost}"
    if info.memory_work_mib is not None and info.memory_work_mib > bounds.max_memory_work_mib:
        return f"{info.scheme} {info.cost} is over the bound of {bounds.max_memory_work_mib:g} MiB of memory work"
    if info.iterations is not None and info.iterations > OTHER_MAX_ITERATIONS:
        return f"{info.scheme} with {info.cost} is over the bound of {OTHER_MAX_ITERATIONS} iterations"
    return None


class CryptUnavailable(Exception):
    """The host has no usable crypt library."""


class _Library:
    def __init__(self) -> None:
        name = ctypes.util.find_library("crypt")
        if name is None:
            raise CryptUnavailable("no crypt library (libxcrypt) on the scanning host")
        try:
            lib = ctypes.CDLL(name)  # CDLL releases the GIL during calls: threads hash in parallel
        except OSError as exc:
            raise CryptUnavailable(f"the crypt library {name} does not load: {exc}") from None
        self.rn = getattr(lib, "crypt_rn", None)
        self.r = getattr(lib, "crypt_r", None)
        self.gensalt_rn = getattr(lib, "crypt_gensalt_rn", None)
        if self.rn is not None:
            self.rn.restype = ctypes.c_char_p
            self.rn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
        elif self.r is not None:
            self.r.restype = ctypes.c_char_p
            self.r.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]
        else:
            raise CryptUnavailable(f"the crypt library {name} has neither crypt_rn nor crypt_r")
        if self.gensalt_rn is not None:
            self.gensalt_rn.restype = ctypes.c_char_p
            self.gensalt_rn.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int,
                                        ctypes.c_char_p, ctypes.c_int]  # fmt: skip


_library: _Library | None = None
_library_lock = threading.Lock()


def _lib() -> _Library:
    global _library
    with _library_lock:
        if _library is None:
            _library = _Library()
        return _library


def ensure_available() -> None:
    """Load the crypt library now; raises CryptUnavailable when the host has none."""
    _lib()


def crypt(phrase: str, setting: str) -> str | None:
    """crypt(3) of ``phrase`` with ``setting`` (a hash or salt string); None when the library refuses it.

    Thread-safe: every call has its own ``struct crypt_data``.
    """
    lib = _lib()
    phrase_bytes, setting_bytes = phrase.encode("utf-8"), setting.encode("utf-8", "surrogateescape")
    if b"\0" in phrase_bytes or b"\0" in setting_bytes:
        return None
    if lib.rn is not None:
        data = ctypes.create_string_buffer(_CRYPT_DATA_SIZE)
        out = lib.rn(phrase_bytes, setting_bytes, data, _CRYPT_DATA_SIZE)
    else:
        data = ctypes.create_string_buffer(_CRYPT_R_DATA_SIZE)
        out = lib.r(phrase_bytes, setting_bytes, data)
    if not out or out.startswith(b"*"):  # crypt_r signals failure with '*0'/'*1'
        return None
    return out.decode("utf-8", "surrogateescape")


def verify(phrase: str, hashed: str) -> bool | None:
    """Whether ``phrase`` hashes to ``hashed``; None when the library cannot compute this scheme."""
    computed = crypt(phrase, hashed)
    if computed is None:
        return None
    return hmac.compare_digest(computed.encode("utf-8", "surrogateescape"), hashed.encode("utf-8", "surrogateescape"))


def make_hash(phrase: str, prefix: str | None = None, count: int = 0) -> str:
    """A new hash of ``phrase`` (prefix '$y$', '$6$', '$1$', '$2b$'...; None = the library's default, yescrypt)."""
    lib = _lib()
    if lib.gensalt_rn is None:
        raise CryptUnavailable("the crypt library has no crypt_gensalt_rn")
    out = ctypes.create_string_buffer(256)
    setting = lib.gensalt_rn(None if prefix is None else prefix.encode(), count, None, 0, out, len(out))
    if not setting:
        raise ValueError(f"the crypt library cannot make a setting for prefix {prefix!r} count {count}")
    hashed = crypt(phrase, setting.decode())
    if hashed is None:
        raise ValueError(f"the crypt library refused the setting for prefix {prefix!r}")
    return hashed


@dataclass(frozen=True)
class Guess:
    """The outcome of testing candidates against one hash."""

    match: int | None  # index of the first candidate that matches
    tried: int  # candidates tested before the deadline
    unsupported: bool  # the crypt library cannot compute this hash


def first_match(hashed: str, candidates: list[str], deadline: float, workers: int = 1) -> Guess:
    """Test ``candidates`` against ``hashed`` until one matches or ``deadline`` (time.monotonic) passes.

    Candidates are hashed on ``workers`` threads (ctypes releases the GIL).
    They start in list order and none starts after a match, so every
    candidate before the matching one has been tested: the reported match is
    always the first in the list, whatever the thread timing.
    """
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    found = threading.Event()

    def attempt(candidate: str) -> bool | None | str:
        if found.is_set():
            return "skipped"
        if time.monotonic() >= deadline:
            return "late"
        outcome = verify(candidate, hashed)
        if outcome:
            found.set()
        return outcome

    if not candidates:
        return Guess(None, 0, False)
    first = attempt(candidates[0])  # alone first: an unsupported scheme costs one call, not a pool's worth
    if first is None:
        return Guess(None, 0, True)
    if first is True or first == "late":
        return Guess(0 if first is True else None, 1 if first is True else 0, False)
    outcomes: list[bool | None | str] = [first]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        outcomes += list(pool.map(attempt, candidates[1:]))
    match = next((i for i, o in enumerate(outcomes) if o is True), None)
    return Guess(match, sum(1 for o in outcomes if o not in ("late", "skipped")), False)
