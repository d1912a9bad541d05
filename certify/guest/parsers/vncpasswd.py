"""VNC password files: the fixed-key DES "obfuscation" every VNC server uses, undone.

vncpasswd (RealVNC, TightVNC, TigerVNC) and ``x11vnc -storepasswd`` store
the first 8 bytes of the password, NUL-padded, DES-encrypted with one key
known to everyone (each key byte bit-reversed, as VNC's d3des expects).
Anyone who reads the file has the password, so the checks only need to
know that it decodes, how long it is and whether it is a known default.

DES is implemented here (decrypt and encrypt of single blocks, ~100 lines):
``cryptography`` only offers it as a deprecated TripleDES that warns, and
this module must stay pure and warning-free. Nothing here is used to protect
anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

VNC_KEY = bytes([0x17, 0x52, 0x6B, 0x06, 0x23, 0x4E, 0x58, 0x07])
KNOWN_DEFAULTS = ("password", "vnc", "123456", "12345678", "vmware", "admin", "changeme", "secret", "root", "passw0rd", "vncpass")

# fmt: off
_PC1 = (57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18, 10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60, 52, 44, 36,
        63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22, 14, 6, 61, 53, 45, 37, 29, 21, 13, 5, 28, 20, 12, 4)
_PC2 = (14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10, 23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2,
        41, 52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48, 44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32)
_SHIFTS = (1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1)
_IP = (58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4, 62, 54, 46, 38, 30, 22, 14, 6, 64, 56, 48, 40, 32, 24, 16, 8,
       57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3, 61, 53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7)
_FP = (40, 8, 48, 16, 56, 24, 64, 32, 39, 7, 47, 15, 55, 23, 63, 31, 38, 6, 46, 14, 54, 22, 62, 30, 37, 5, 45, 13, 53, 21, 61, 29,
       36, 4, 44, 12, 52, 20, 60, 28, 35, 3, 43, 11, 51, 19, 59, 27, 34, 2, 42, 10, 50, 18, 58, 26, 33, 1, 41, 9, 49, 17, 57, 25)
_E = (32, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9, 8, 9, 10, 11, 12, 13, 12, 13, 14, 15, 16, 17,
      16, 17, 18, 19, 20, 21, 20, 21, 22, 23, 24, 25, 24, 25, 26, 27, 28, 29, 28, 29, 30, 31, 32, 1)
_P = (16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10, 2, 8, 24, 14, 32, 27, 3, 9, 19, 13, 30, 6, 22, 11, 4, 25)
_SBOX = (
    (14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7, 0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12, 11, 9, 5, 3, 8,
     4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0, 15, 12, 8, 2, 4, 9, 1, 7, 5, 11, 3, 14, 10, 0, 6, 13),
    (15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10, 3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1, 10, 6, 9, 11, 5,
     0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15, 13, 8, 10, 1, 3, 15, 4, 2, 11, 6, 7, 12, 0, 5, 14, 9),
    (10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8, 13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5, 14, 12, 11, 15, 1,
     13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7, 1, 10, 13, 0, 6, 9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12),
    (7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15, 13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2, 12, 1, 10, 14, 9,
     10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4, 3, 15, 0, 6, 10, 1, 13, 8, 9, 4, 5, 11, 12, 7, 2, 14),
    (2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9, 14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15, 10, 3, 9, 8, 6,
     4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14, 11, 8, 12, 7, 1, 14, 2, 13, 6, 15, 0, 9, 10, 4, 5, 3),
    (12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11, 10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13, 14, 0, 11, 3, 8,
     9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6, 4, 3, 2, 12, 9, 5, 15, 10, 11, 14, 1, 7, 6, 0, 8, 13),
    (4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1, 13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5, 12, 2, 15, 8, 6,
     1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2, 6, 11, 13, 8, 1, 4, 10, 7, 9, 5, 0, 15, 14, 2, 3, 12),
    (13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7, 1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6, 11, 0, 14, 9, 2,
     7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8, 2, 1, 14, 7, 4, 10, 8, 13, 15, 12, 9, 0, 3, 5, 6, 11),
)
# fmt: on


def _permute(value: int, table: tuple[int, ...], width: int) -> int:
    out = 0
    for position in table:
        out = (out << 1) | ((value >> (width - position)) & 1)
    return out


def _subkeys(key: bytes) -> list[int]:
    cd = _permute(int.from_bytes(key, "big"), _PC1, 64)
    c, d = cd >> 28, cd & 0xFFFFFFF
    keys = []
    for shift in _SHIFTS:
        c = ((c << shift) | (c >> (28 - shift))) & 0xFFFFFFF
        d = ((d << shift) | (d >> (28 - shift))) & 0xFFFFFFF
        keys.append(_permute((c << 28) | d, _PC2, 56))
    return keys


def _feistel(right: int, subkey: int) -> int:
    x = _permute(right, _E, 32) ^ subkey
    out = 0
    for i in range(8):
        six = (x >> (42 - 6 * i)) & 0x3F
        row = ((six >> 4) & 2) | (six & 1)
        out = (out << 4) | _SBOX[i][row * 16 + ((six >> 1) & 0xF)]
    return _permute(out, _P, 32)


def des_block(block: bytes, key: bytes, decrypt: bool = False) -> bytes:
    """One 8-byte DES-ECB block."""
    keys = _subkeys(key)
    if decrypt:
        keys.reverse()
    value = _permute(int.from_bytes(block, "big"), _IP, 64)
    left, right = value >> 32, value & 0xFFFFFFFF
    for subkey in keys:
        left, right = right, left ^ _feistel(right, subkey)
    return _permute((right << 32) | left, _FP, 64).to_bytes(8, "big")


def _reverse_bits(byte: int) -> int:
    return int(f"{byte:08b}"[::-1], 2)


_DES_KEY = bytes(_reverse_bits(b) for b in VNC_KEY)


def decode(data: bytes) -> str | None:
    """The password in a VNC password file (its first block), or None if it is not 8+ bytes."""
    if len(data) < 8:
        return None
    plain = des_block(data[:8], _DES_KEY, decrypt=True)
    return plain.split(b"\0", 1)[0].decode("latin-1")


def encode(password: str) -> bytes:
    """What vncpasswd writes for ``password`` (tests plant it)."""
    block = password.encode("latin-1")[:8].ljust(8, b"\0")
    return des_block(block, _DES_KEY)


@dataclass(frozen=True)
class VncPassword:
    """What may be said about a stored VNC password without repeating it."""

    length: int
    known_default: bool
    form: str  # "obfuscated" (vncpasswd format) or "plain text"

    def describe(self, size: int) -> str:
        what = "a known default password" if self.known_default else f"a password of {self.length} characters"
        if self.form == "obfuscated":
            return f"VNC password file ({size} bytes, decodes to {what})"
        return f"VNC password stored in plain text ({what})"


_HEX_PASSWORD = re.compile(r"^\s*Password(?:ViewOnly)?\s*=\s*([0-9A-Fa-f]{16})\s*$", re.MULTILINE)


def is_known_default(password: str, extra: tuple[str, ...] = ()) -> bool:
    """VNC keeps only 8 characters, so a default is compared on its first 8."""
    candidates = {d[:8] for d in (*KNOWN_DEFAULTS, *extra) if d}
    return password[:8] in candidates or password.lower()[:8] in candidates


def analyze(data: bytes, extra_defaults: tuple[str, ...] = (), password_file: bool = True) -> VncPassword | None:
    """A VNC password file or a RealVNC/TightVNC config line ``Password=<hex>``; None when it holds no password.

    ``extra_defaults`` adds names worth guessing (the guest's hostname).
    ``password_file`` False (a config file such as /etc/vnc.conf): only a ``Password=`` line counts.
    """
    printable = all(32 <= b < 127 or b in b"\r\n\t" for b in data)
    hex_line = _HEX_PASSWORD.search(data.decode("ascii")) if printable else None
    if hex_line is not None:
        blob, form = bytes.fromhex(hex_line.group(1)), "obfuscated"
    elif not password_file:
        return None
    elif printable:  # x11vnc -passwdfile and friends take the password in clear
        lines = [line.strip() for line in data.decode("ascii").splitlines()]
        plain = next((line for line in lines if line and not line.startswith("#")), "")
        if not plain:
            return None
        return VncPassword(len(plain), is_known_default(plain, extra_defaults), "plain text")
    elif len(data) >= 8:
        blob, form = data, "obfuscated"
    else:
        return None
    password = decode(blob)
    if password is None:
        return None
    return VncPassword(len(password), is_known_default(password, extra_defaults), form)
