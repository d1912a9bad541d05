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
    unencrypted; dropbear's binary format is read field by field.
    """
    if data[:4] != b"-----" and (dropbear := dropbear_private_key_public(data)) is not None:
        return dropbear
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


# -- dropbear and tinyssh key files ---------------------------------------------------------------

MAX_KEY_FILE = 64 * 1024
_EC_POINT_BYTES = {"nistp256": 65, "nistp384": 97, "nistp521": 133}  # uncompressed: 0x04 || X || Y


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _mpint(data: bytes, offset: int) -> tuple[int, int]:
    raw, offset = _ssh_string(data, offset)
    if raw and raw[0] & 0x80:
        raise ValueError("negative mpint")
    return int.from_bytes(raw, "big"), offset


def _mpint_bytes(value: int) -> bytes:
    """An SSH mpint in its one canonical form: what a server sends, whatever padding its file had."""
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    if raw and raw[0] & 0x80:
        raw = b"\0" + raw
    return _string(raw)


def dropbear_private_key_public(data: bytes) -> PublicKey | None:
    """The public half of a key in dropbear's own format (dropbearkey's output, /etc/dropbear/dropbear_*_host_key).

    The file is a run of SSH wire fields (dropbear's buf_put_priv_key): the
    key type, then ssh-rsa: mpint e, n, d, p, q; ssh-dss: mpint p, q, g, y,
    x; ecdsa-sha2-CURVE: string CURVE, string Q, mpint k; ssh-ed25519: one
    64-byte string, the private seed then the public key. The fingerprint is
    of the public blob dropbear sends: the public fields re-encoded in
    canonical form. None unless the private field is there too: a file that
    stops short is not a usable key.
    """
    if len(data) > MAX_KEY_FILE:
        return None
    try:
        name, offset = _ssh_string(data, 0)
        key_type = name.decode("ascii")
        if key_type == "ssh-rsa":
            e, offset = _mpint(data, offset)
            n, offset = _mpint(data, offset)
            for _ in range(3):  # d, p, q: dropbear refuses a key without them ("RSA key format is ancient")
                _, offset = _mpint(data, offset)
            blob = _string(name) + _mpint_bytes(e) + _mpint_bytes(n)
        elif key_type == "ssh-dss":
            values = []
            for _ in range(4):  # p, q, g, y
                value, offset = _mpint(data, offset)
                values.append(value)
            _mpint(data, offset)  # x
            blob = _string(name) + b"".join(_mpint_bytes(v) for v in values)
        elif key_type.startswith("ecdsa-sha2-"):
            curve, offset = _ssh_string(data, offset)
            point, offset = _ssh_string(data, offset)
            _mpint(data, offset)  # k
            curve_name = curve.decode("ascii")
            if key_type != "ecdsa-sha2-" + curve_name or len(point) != _EC_POINT_BYTES.get(curve_name) or point[0] != 4:
                return None
            blob = _string(name) + _string(curve) + _string(point)
        elif key_type == "ssh-ed25519":
            both, offset = _ssh_string(data, offset)
            if len(both) != 64:
                return None
            blob = _string(name) + _string(both[32:])
        else:
            return None
    except (ValueError, struct.error, UnicodeDecodeError):
        return None
    return PublicKey(type=key_type, fingerprint=fingerprint(blob))


# tinysshd's key directory (tinysshd-makekey): raw public keys in NAME.pk, secret keys in .NAME.sk.
TINYSSH_PUBLIC = {"ed25519.pk": ("ssh-ed25519", 32), "nistp256ecdsa.pk": ("ecdsa-sha2-nistp256", 64)}
TINYSSH_SECRET = {".ed25519.sk": "ed25519.pk", ".nistp256ecdsa.sk": "nistp256ecdsa.pk"}


def tinyssh_public_key(name: str, data: bytes) -> PublicKey | None:
    """A tinysshd public key file (ed25519.pk: 32 raw bytes; nistp256ecdsa.pk: X || Y, 64 raw bytes)."""
    key_type, size = TINYSSH_PUBLIC.get(name, ("", -1))
    if len(data) != size:
        return None
    if key_type == "ssh-ed25519":
        blob = _string(b"ssh-ed25519") + _string(data)
    else:
        blob = _string(key_type.encode()) + _string(b"nistp256") + _string(b"\x04" + data)
    return PublicKey(type=key_type, fingerprint=fingerprint(blob))


def tinyssh_secret_key_public(name: str, data: bytes) -> PublicKey | None:
    """.ed25519.sk holds NaCl's 64-byte secret key, seed then public key: the public half is its second half."""
    if name == ".ed25519.sk" and len(data) == 64:
        return tinyssh_public_key("ed25519.pk", data[32:])
    return None
