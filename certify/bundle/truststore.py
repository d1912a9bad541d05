"""The provider's trust store: the CA (or pinned signer) certificates that vouch for package signers."""

from __future__ import annotations

from cryptography import x509

from certify.bundle.signature import parse_pem_certificates, usable_certificate
from certify.errors import ParseError, UsageError

MAX_BYTES = 4 * 1024 * 1024


def load_trust_store(path: str) -> tuple[x509.Certificate, ...]:
    """Every certificate of a PEM bundle; a one-line UsageError when the file is unusable."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the trust store: {exc.strerror}") from None
    if len(data) > MAX_BYTES:
        raise UsageError(f"{path}: the trust store is larger than {MAX_BYTES} bytes")
    try:
        certificates = tuple(parse_pem_certificates(data, "the trust store"))
        for number, certificate in enumerate(certificates, start=1):
            usable_certificate(certificate, f"the trust store: certificate {number}")
    except ParseError as exc:
        raise UsageError(f"{path}: {exc}") from None
    return certificates
