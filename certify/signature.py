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

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from certify.errors import ParseError

MAX_BYTES = 256 * 1024
_FIRST_LINE = re.compile(r"^(SHA1|SHA256|SHA512)\(([^()/\\]+)\)= ([0-9a-fA-F]+)\r?$")
_HASHES = {"SHA1": hashes.SHA1, "SHA256": hashes.SHA256, "SHA512": hashes.SHA512}


@dataclass(frozen=True)
class Signer:
    """Who signed the package, as the certificate says (not yet who vouches for them)."""

    subject: str
    issuer: str
    self_signed: bool
    not_before: str
    not_after: str
    expired: bool
    algorithm: str


@dataclass(frozen=True)
class SignatureFile:
    algorithm: str
    manifest: str
    signature: bytes
    certificate: x509.Certificate


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
        certificate = x509.load_pem_x509_certificate(rest.strip().encode())
    except (ValueError, UnsupportedAlgorithm):
        raise ParseError("certificate file: no readable PEM certificate after the signature line") from None
    return SignatureFile(algorithm=algorithm, manifest=manifest, signature=bytes.fromhex(hexsig), certificate=certificate)


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


def verify_signature(sig: SignatureFile, manifest_bytes: bytes, now: datetime.datetime | None = None) -> Signer:
    """The signer, once the signature over the manifest checks out; ParseError otherwise."""
    cert = sig.certificate
    try:
        _verify(cert.public_key(), sig.signature, manifest_bytes, _HASHES[sig.algorithm]())
    except InvalidSignature:
        raise ParseError("the package signature does not match the manifest") from None
    self_signed = cert.issuer == cert.subject
    if self_signed:
        try:
            _verify(cert.public_key(), cert.signature, cert.tbs_certificate_bytes, cert.signature_hash_algorithm)
        except (InvalidSignature, ParseError, TypeError):
            self_signed = False  # names match but the certificate does not sign itself
    now = now or datetime.datetime.now(datetime.timezone.utc)
    before, after = _validity(cert)
    return Signer(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        self_signed=self_signed,
        not_before=before.isoformat(),
        not_after=after.isoformat(),
        expired=not before <= now <= after,
        algorithm=sig.algorithm,
    )
