"""Certification records: what was certified, by which rules, signed with Ed25519.

The signature covers the canonical JSON of the record without its
``signature`` member. Admission later requires a valid record for the exact
bytes being admitted, so verification re-hashes the artifact.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from certify.bundle.ingest import identify
from certify.errors import CertifyError, UsageError
from certify.model import Report, Verdict

SCHEMA = "certify-certificate/1"


class CertificateInvalid(CertifyError):
    """The record does not verify: bad signature, wrong key, or other bytes."""


def canonical(record: dict[str, Any]) -> bytes:
    body = {k: v for k, v in record.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


def keygen(prefix: str) -> tuple[str, str]:
    """Write PREFIX (private, 0600) and PREFIX.pub; never overwrite."""
    public_path = prefix + ".pub"
    for path in (prefix, public_path):
        if os.path.lexists(path):
            raise UsageError(f"{path}: already exists; not overwriting a key")
    if not prefix or not os.path.isdir(os.path.dirname(os.path.abspath(prefix))):
        raise UsageError(f"{prefix!r}: the directory for the key does not exist")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        fd = os.open(prefix, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private)
        with open(public_path, "xb") as f:
            f.write(public)
    except OSError as exc:
        raise UsageError(f"{prefix}: cannot write the key pair: {exc.strerror}") from None
    return prefix, public_path


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(1024 * 1024)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read {what}: {exc.strerror}") from None


def _load_key(path: str, what: str, parse: Callable[[bytes], object], cls: type) -> Any:
    try:
        key = parse(_read(path, what))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise UsageError(f"{path}: not an unencrypted PEM {what} (make a pair with 'certify keygen')") from None
    if not isinstance(key, cls):
        raise UsageError(f"{path}: not an Ed25519 {what} (make a pair with 'certify keygen')")
    return key


def load_private_key(path: str) -> Ed25519PrivateKey:
    return _load_key(path, "private key", lambda data: serialization.load_pem_private_key(data, password=None), Ed25519PrivateKey)


def load_public_key(path: str) -> Ed25519PublicKey:
    return _load_key(path, "public key", serialization.load_pem_public_key, Ed25519PublicKey)


def catalog_version(report: Report) -> str:
    """Changes whenever a check run, its severity or a plugin version changes."""
    material = json.dumps(
        {"checks": {i: report.catalog.get(i, {}).get("severity") for i in report.checks_run}, "plugins": report.plugins},
        sort_keys=True,
    )
    return "sha256:" + hashlib.sha256(material.encode()).hexdigest()[:16]


def build_record(report: Report, key: Ed25519PrivateKey, now: datetime.datetime | None = None) -> dict[str, Any]:
    if report.verdict is not Verdict.PASS:
        raise CertifyError(f"no certificate for a verdict of {report.verdict.value}")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "artifact": {"name": os.path.basename(os.path.normpath(report.artifact_path)), "kind": report.artifact_kind,
                     "sha256": report.artifact_sha256},  # fmt: skip
        "disks": [{"file": d["file"], "format": d["format"], "sha256": d["sha256"]} for d in report.disks],
        "profile": report.profile,
        "profile_digest": report.profile_digest,
        "threshold": report.threshold.label,
        "tool": {"name": "certify", "version": report.tool_version},
        "catalog_version": catalog_version(report),
        "checks_run": report.checks_run,
        "waivers_applied": [w for w in report.waivers if w["state"] == "applied"],
        "issued_at": now.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "verdict": report.verdict.value,
    }
    record["signature"] = {
        "algorithm": "ed25519",
        "key_id": key_id(key.public_key()),
        "value": base64.b64encode(key.sign(canonical(record))).decode(),
    }
    return record


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _artifact_digest(path: str) -> tuple[str, str | None]:
    """(sha256 the scan records for ARTIFACT, the bundle directory when its disks lie beside it)."""
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file or directory")
    kind = identify(path)
    if kind in ("ova", "disk"):
        return _sha256(path), None  # the disks are inside these bytes
    if kind == "directory":
        names = sorted(n for n in os.listdir(path) if n.lower().endswith((".ovf", ".vmx")))
        if len(names) != 1:
            raise UsageError(f"{path}: expected exactly one .ovf or .vmx in the directory")
        path = os.path.join(path, names[0])
    return _sha256(path), os.path.dirname(os.path.abspath(path))


def verify(cert_path: str, artifact_path: str, public_key_path: str) -> dict[str, Any]:
    """The verified record; CertificateInvalid says exactly what does not hold."""
    public = load_public_key(public_key_path)
    try:
        record = json.loads(_read(cert_path, "certificate"))
    except (ValueError, RecursionError):
        raise UsageError(f"{cert_path}: not a JSON certificate") from None
    if not isinstance(record, dict) or "signature" not in record:
        raise UsageError(f"{cert_path}: not a certify certificate ({SCHEMA})")
    signature = record["signature"]
    if not isinstance(signature, dict) or not isinstance(signature.get("value"), str):
        raise CertificateInvalid("the signature member is malformed")
    if signature.get("algorithm") != "ed25519" or signature.get("key_id") != key_id(public):
        raise CertificateInvalid("signed with another key or algorithm than the one given")
    try:
        public.verify(base64.b64decode(signature["value"], validate=True), canonical(record))
    except (InvalidSignature, ValueError):
        raise CertificateInvalid("signature does not verify with this public key (record altered, or another key)") from None
    if record.get("schema") != SCHEMA or not isinstance(record.get("artifact"), dict):
        raise CertificateInvalid(f"not a {SCHEMA} record")
    digest, bundle_root = _artifact_digest(artifact_path)
    if digest != record["artifact"]["sha256"]:
        raise CertificateInvalid(f"{artifact_path}: sha256 {digest} is not the certified {record['artifact']['sha256']}")
    if bundle_root is not None:
        for disk in record.get("disks", []):
            disk_path = os.path.join(bundle_root, *disk["file"].split("/"))
            if not os.path.isfile(disk_path) or _sha256(disk_path) != disk["sha256"]:
                raise CertificateInvalid(f"disk {disk['file']}: missing or not the certified bytes")
    if record.get("verdict") != "pass":
        raise CertificateInvalid(f"the record's verdict is {record.get('verdict')!r}, not pass")
    return record
