"""SSH key material: parsed into fingerprints so no report ever repeats a key.

Pure functions over untrusted bytes; they never raise on bad input, they
return less information instead.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass

_KEY_TYPE = re.compile(r"^(ssh-(rsa|dss|ed25519|ed448)|ecdsa-sha2-[a-z0-9-]+|sk-[a-z0-9@.-]+|[a-z0-9-]+-cert-v01@openssh\.com)$")
_OPENSSH_MAGIC = b"openssh-key-v1\0"


def fingerprint(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@dataclass(frozen=True)
class PublicKey:
    type: str
    fingerprint: str | None  # None when the base64 body does not decode
    comment: str = ""
    line: int = 0

    def describe(self) -> str:
        text = f"{self.type} {self.fingerprint or '(undecodable key)'}"
        return f"{text} {self.comment}" if self.comment else text


def tokens(line: str) -> list[str]:
    """Split on blanks outside double quotes, as sshd reads options; linear in the line."""
    out, current, quoted, escaped = [], [], False, False
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char in " \t" and not quoted:
            if current:
                out.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        out.append("".join(current))
    return out


def parse_public_key_line(line: str, number: int = 0) -> PublicKey | None:
    """One ``[options] type base64 [comment]`` line, or None if it holds no key type."""
    tokens_ = tokens(line)
    for i, token in enumerate(tokens_):
        if _KEY_TYPE.match(token):
            body = tokens_[i + 1] if i + 1 < len(tokens_) else ""
            try:
                blob = base64.b64decode(body, validate=True) if body else b""
            except (binascii.Error, ValueError):
                blob = b""
            comment = " ".join(tokens_[i + 2 :])
            return PublicKey(type=token, fingerprint=fingerprint(blob) if blob else None, comment=comment, line=number)
    return None


@dataclass(frozen=True)
class KeyEntry:
    """A non-comment line of an authorized_keys file."""

    line: int
    key: PublicKey | None  # None: the line grants something we could not parse


def parse_authorized_keys(text: str) -> list[KeyEntry]:
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entries.append(KeyEntry(line=number, key=parse_public_key_line(line, number)))
    return entries


def _ssh_string(data: bytes, offset: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from(">I", data, offset)
    end = offset + 4 + length
    if end > len(data):
        raise ValueError("truncated")
    return data[offset + 4 : end], end


def private_key_public(data: bytes) -> PublicKey | None:
    """The public half of a private key file, without decrypting anything.

    The OpenSSH format stores the public key in clear before the (possibly
    encrypted) private part; PEM keys are loaded with ``cryptography`` when
    unencrypted.
    """
    text = data.decode("ascii", "replace")
    if "BEGIN OPENSSH PRIVATE KEY" in text:
        body = "".join(
            line.strip() for line in text.splitlines() if line.strip() and not line.startswith("-----")
        )
        try:
            raw = base64.b64decode(body)
            if not raw.startswith(_OPENSSH_MAGIC):
                return None
            offset = len(_OPENSSH_MAGIC)
            for _ in range(3):  # cipher name, kdf name, kdf options
                _, offset = _ssh_string(raw, offset)
            offset += 4  # number of keys
            blob, _ = _ssh_string(raw, offset)
            key_type, _ = _ssh_string(blob, 0)
            return PublicKey(type=key_type.decode("ascii", "replace"), fingerprint=fingerprint(blob))
        except (ValueError, struct.error, binascii.Error):
            return None
    if "PRIVATE KEY-----" in text:
        return _pem_public(data)
    return None


def _pem_public(data: bytes) -> PublicKey | None:
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(data, password=None)
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    except Exception:  # encrypted, unsupported or corrupt: report without a fingerprint
        return None
    return parse_public_key_line(public.decode("ascii"))
