"""OVF package signatures (``.cert``): the signer's signature over the manifest.

Format (DSP0243, as ovftool writes it): a first line
``SHA256(NAME.mf)= <hex signature of the manifest's bytes>``, then the
signer's X.509 certificate in PEM. The signature is RSA PKCS#1 v1.5 (or
ECDSA) with the named digest.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from certify.errors import ParseError

MAX_BYTES = 256 * 1024
_FIRST_LINE = re.compile(r"^(SHA1|SHA256|SHA512)\(([^()/\\]+)\)= ([0-9a-fA-F]+)\r?$")
_HASHES = {"SHA1": hashes.SHA1, "SHA256": hashes.SHA256, "SHA512": hashes.SHA512}


MAX_CHAIN = 6  # certificates from the signer to a trust anchor, both included
_PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]{1,65536}?-----END CERTIFICATE-----")


@dataclass(frozen=True)
class Signer:
    """Who signed the package, as the certificate says, and whether a trust store vouches for them."""

    subject: str
    issuer: str
    self_signed: bool
    not_before: str
    not_after: str
    expired: bool
    algorithm: str
    trusted: bool | None = None  # None: no trust store was given, so nobody was asked
    trust: str = ""  # how the chain ended: the anchor it reached, or why it reached none


@dataclass(frozen=True)
class SignatureFile:
    algorithm: str
    manifest: str
    signature: bytes
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()  # further certificates the file carries (intermediates)


def parse_pem_certificates(data: bytes, what: str = "PEM bundle") -> list[x509.Certificate]:
    """Every certificate of a PEM bundle, in order; ParseError when one is unreadable or there is none."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ParseError(f"{what} is not ASCII text") from None
    blocks = _PEM_CERTIFICATE.findall(text)
    if not blocks:
        raise ParseError(f"{what} holds no PEM certificate")
    certificates = []
    for number, block in enumerate(blocks, start=1):
        try:
            certificates.append(x509.load_pem_x509_certificate(block.encode()))
        except (ValueError, UnsupportedAlgorithm):
            raise ParseError(f"{what}: certificate {number} is not readable") from None
    return certificates


def parse_signature_file(data: bytes) -> SignatureFile:
    if len(data) > MAX_BYTES:
        raise ParseError(f"certificate file is larger than {MAX_BYTES} bytes")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ParseError("certificate file is not ASCII text") from None
    first, _, rest = text.partition("\n")
    match = _FIRST_LINE.match(first)
    if not match:
        raise ParseError("certificate file does not start with 'SHA256(NAME.mf)= <hex signature>'")
    algorithm, manifest, hexsig = match.groups()
    if len(hexsig) % 2:
        raise ParseError("certificate file: the signature has an odd number of hex digits")
    try:
        certificates = parse_pem_certificates(rest.encode(), "certificate file")
    except ParseError:
        raise ParseError("certificate file: no readable PEM certificate after the signature line") from None
    if len(certificates) > MAX_CHAIN:
        raise ParseError(f"certificate file carries {len(certificates)} certificates (at most {MAX_CHAIN})")
    return SignatureFile(algorithm=algorithm, manifest=manifest, signature=bytes.fromhex(hexsig), certificate=certificates[0],
                         chain=tuple(certificates[1:]))  # fmt: skip


def _verify(public_key: object, signature: bytes, data: bytes, digest: hashes.HashAlgorithm) -> None:
    if isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data, padding.PKCS1v15(), digest)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(digest))
    else:
        raise ParseError(f"certificate file: unsupported signer key type {type(public_key).__name__}")


def _validity(cert: x509.Certificate) -> tuple[datetime.datetime, datetime.datetime]:
    if hasattr(cert, "not_valid_before_utc"):  # cryptography 42 and later
        return cert.not_valid_before_utc, cert.not_valid_after_utc
    utc = datetime.timezone.utc
    return cert.not_valid_before.replace(tzinfo=utc), cert.not_valid_after.replace(tzinfo=utc)


_WEAK_SIGNATURE_HASHES = ("md5", "sha1")
MIN_RSA_BITS = 2048
# What reading a hostile certificate may raise: unknown algorithms, malformed or repeated extensions.
_CERTIFICATE_ERRORS = (UnsupportedAlgorithm, ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


def usable_certificate(cert: x509.Certificate, what: str) -> None:
    """ParseError unless every part a chain check reads (key, signature algorithm, extensions) can be read."""
    try:
        cert.public_key()
        cert.signature_hash_algorithm  # noqa: B018 - raises on an unknown algorithm
        cert.extensions  # noqa: B018 - raises on a repeated or malformed extension
    except _CERTIFICATE_ERRORS as exc:
        raise ParseError(f"{what} is not usable: {_reason(exc)}") from None


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s key made ``cert``'s signature (names first, then the signature itself)."""
    if cert.issuer != issuer.subject or cert.signature_hash_algorithm is None:
        return False
    try:
        _verify(issuer.public_key(), cert.signature, cert.tbs_certificate_bytes, cert.signature_hash_algorithm)
        return True
    except (InvalidSignature, ParseError, TypeError, ValueError):
        return False


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> Any:
    """The value of one extension of ``cert``, or None when it has none of that kind."""
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _is_ca(cert: x509.Certificate) -> bool:
    constraints = _extension(cert, x509.BasicConstraints)
    return bool(constraints and constraints.ca)


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def _cannot_issue(issuer: x509.Certificate, below: int) -> str | None:
    """Why ``issuer`` may not sign a certificate with ``below`` CA certificates between it and the signer, or None.

    An issuer (a trust anchor included) must be a CA by BasicConstraints, assert
    keyCertSign in KeyUsage, and allow that many CAs below it by its pathLen.
    """
    constraints = _extension(issuer, x509.BasicConstraints)
    if constraints is None:
        return f"{_name(issuer)} is not a CA (no BasicConstraints)"
    if not constraints.ca:
        return f"{_name(issuer)} is not a CA (BasicConstraints CA=false)"
    usage = _extension(issuer, x509.KeyUsage)
    if usage is None:
        return f"{_name(issuer)} has no KeyUsage allowing it to sign certificates (keyCertSign)"
    if not usage.key_cert_sign:
        return f"{_name(issuer)} has no keyCertSign in its KeyUsage"
    if constraints.path_length is not None and below > constraints.path_length:
        return f"{_name(issuer)} allows {constraints.path_length} CA certificate(s) below it (pathLen), the chain has {below}"
    return None


def _weak(cert: x509.Certificate) -> str | None:
    """Why ``cert``'s own key is too weak to be part of a chain, or None."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        return f"{_name(cert)} has a {key.key_size}-bit RSA key (at least {MIN_RSA_BITS} required)"
    return None


def _weak_signature(cert: x509.Certificate) -> str | None:
    algorithm = cert.signature_hash_algorithm
    if algorithm is not None and algorithm.name.lower() in _WEAK_SIGNATURE_HASHES:
        return f"{_name(cert)} is signed with {algorithm.name.upper()}, which no longer resists forgery"
    return None


def trust_path(cert: x509.Certificate, chain: tuple[x509.Certificate, ...], anchors: tuple[x509.Certificate, ...],
               now: datetime.datetime) -> tuple[bool, str]:  # fmt: skip
    """(trusted, how): does ``cert`` chain, through ``chain``, to one of ``anchors``, every link valid ``now``?

    A certificate equal to an anchor is trusted as given (a pinned signer).
    Any certificate that issues another, an anchor included, must be a CA
    with keyCertSign whose pathLen allows the CAs below it; no link may be
    signed with MD5 or SHA1, and no RSA key in the chain may be under 2048 bits.
    Unreadable certificates raise ParseError.
    """
    try:
        return _trust_path(cert, chain, anchors, now)
    except _CERTIFICATE_ERRORS as exc:
        raise ParseError(f"a certificate of the chain is not usable: {_reason(exc)}") from None


def _trust_path(cert: x509.Certificate, chain: tuple[x509.Certificate, ...], anchors: tuple[x509.Certificate, ...],
                now: datetime.datetime) -> tuple[bool, str]:  # fmt: skip
    current, seen = cert, 0
    while seen < MAX_CHAIN:
        before, after = _validity(current)
        if not before <= now <= after:
            return False, f"{_name(current)} is not valid now ({before.date()} to {after.date()})"
        weak = _weak(current)
        if weak:
            return False, weak
        if current in anchors:
            return True, f"chains to the trust store's {_name(current)}"
        issuers = [a for a in anchors if _issued_by(current, a)]
        if issuers:
            refusals = []
            for anchor in issuers:
                a_before, a_after = _validity(anchor)
                refused = _weak_signature(current) or _weak(anchor) or _cannot_issue(anchor, seen) or (
                    None if a_before <= now <= a_after else f"the trust store's {_name(anchor)} is not valid now")
                if not refused:
                    return True, f"chains to the trust store's {_name(anchor)}"
                refusals.append(refused)
            return False, refusals[0]
        parent = next((c for c in chain if c != current and _is_ca(c) and _issued_by(current, c)), None)
        if parent is None:
            return False, f"no certificate in the trust store issued {current.issuer.rfc4514_string()}'s certificate" \
                if current.issuer != current.subject else f"self-signed {_name(current)} is not in the trust store"
        refused = _weak_signature(current) or _cannot_issue(parent, seen)
        if refused:
            return False, refused
        current, seen = parent, seen + 1
    return False, f"no trust anchor within {MAX_CHAIN} certificates"


def _reason(exc: Exception) -> str:
    message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    text = message.splitlines()[0][:120] if message else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def verify_signature(sig: SignatureFile, manifest_bytes: bytes, now: datetime.datetime | None = None,
                     anchors: tuple[x509.Certificate, ...] | None = None) -> Signer:  # fmt: skip
    """The signer, once the signature over the manifest checks out; ParseError otherwise.

    With ``anchors`` (a trust store), the signer's certificate is also walked to one of them.
    """
    cert = sig.certificate
    try:
        _verify(cert.public_key(), sig.signature, manifest_bytes, _HASHES[sig.algorithm]())
    except InvalidSignature:
        raise ParseError("the package signature does not match the manifest") from None
    except _CERTIFICATE_ERRORS as exc:
        raise ParseError(f"the signer's certificate is not usable: {_reason(exc)}") from None
    self_signed = cert.issuer == cert.subject
    if self_signed:
        try:
            _verify(cert.public_key(), cert.signature, cert.tbs_certificate_bytes, cert.signature_hash_algorithm)
        except (InvalidSignature, ParseError, TypeError):
            self_signed = False  # names match but the certificate does not sign itself
        except _CERTIFICATE_ERRORS as exc:
            raise ParseError(f"the signer's certificate is not usable: {_reason(exc)}") from None
    now = now or datetime.datetime.now(datetime.timezone.utc)
    before, after = _validity(cert)
    trusted, trust = (None, "") if anchors is None else trust_path(cert, sig.chain, anchors, now)
    return Signer(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        self_signed=self_signed,
        not_before=before.isoformat(),
        not_after=after.isoformat(),
        expired=not before <= now <= after,
        algorithm=sig.algorithm,
        trusted=trusted,
        trust=trust,
    )
