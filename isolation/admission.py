"""Admit a certified artifact into a vDC: certificate, isolation, proof, record.

Only bytes that match a valid, signed certification record are admitted; the
isolation is applied, verified with packets, and only then recorded. A failed
verification undoes the admission.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import Any

from certify.errors import CertifyError, UsageError
from certify.isolation import deploy, render
from certify.isolation import verify as verification
from certify.isolation.model import NAME, ModelError, Provider, Service, Workload, allocate_address, check_workload_fits, mac_for
from certify.isolation.registry import Registry
from certify.policy.certificate import CertificateInvalid, canonical, verify


class AdmissionRefused(CertifyError):
    """Not admitted (no valid certificate for these bytes, or isolation not proven): exit 1."""


@dataclass
class Admission:
    record: dict[str, Any]
    already: bool = False
    verification: verification.Result | None = None


def model_with_admissions(provider: Provider, registry: Registry) -> Provider:
    try:
        return provider.with_workloads(registry.workloads())
    except ModelError as exc:
        raise UsageError(f"the provider file and the admission registry {registry.path} disagree: {exc} "
                         "(give the provider file's workload an explicit address, or evict the admission)") from None


def default_name(artifact: str) -> str:
    stem = os.path.basename(os.path.normpath(artifact)).lower()
    stem = re.sub(r"\.(ova|ovf|vmx|qcow2|vmdk|img|raw|vhdx?)$", "", stem)
    stem = re.sub(r"[^a-z0-9-]+", "-", stem).strip("-")[:32].strip("-")
    if not stem or not stem[0].isalpha():
        stem = "w-" + stem
    return stem[:32].rstrip("-")


def _certificate(cert: str, artifact: str, keys: list[str]) -> dict[str, Any]:
    if not keys:
        raise UsageError("no certifier key: pass --key PUBLIC_KEY or list provider.certifier_keys in the provider file")
    reasons = []
    for key in keys:
        try:
            return verify(cert, artifact, key)
        except CertificateInvalid as exc:
            reasons.append(f"{key}: {exc}")
    raise AdmissionRefused(f"{cert}: no valid certification record for {artifact}: " + "; ".join(reasons))


def admit(provider: Provider, registry: Registry, artifact: str, cert: str, vdc: str, keys: list[str],
          name: str | None = None, services: tuple[Service, ...] = ()) -> Admission:  # fmt: skip
    if vdc not in provider.vdcs:
        raise UsageError(f"{vdc}: no such vDC in the provider file (have: {', '.join(sorted(provider.vdcs))})")
    name = name or default_name(artifact)
    if not NAME.fullmatch(name):
        raise UsageError(f"--name {name!r}: lower-case letters, digits and '-', at most 32, starting with a letter")
    record = _certificate(cert, artifact, keys)
    cert_id = "sha256:" + hashlib.sha256(canonical(record) + record["signature"]["value"].encode()).hexdigest()
    existing = registry.find(vdc, name)
    if existing is not None:
        if existing["artifact_sha256"] == record["artifact"]["sha256"] and existing["certificate_id"] == cert_id:
            return Admission(existing, already=True)
        raise UsageError(f"{name} is already admitted in {vdc} with other bytes or another certificate; evict it first")
    model = model_with_admissions(provider, registry)
    if model.workload(vdc, name) is not None:
        raise UsageError(f"{name} is a workload of the provider file in {vdc}; pick another --name")
    address = allocate_address(model.vdcs[vdc], [w.address for w in model.workloads])
    if address is None:
        raise UsageError(f"vDC {vdc} has no free address left for another workload")
    workload = Workload(name, vdc, address, mac_for(address), tuple(services), origin="admission")
    try:
        check_workload_fits(model, model.workloads, workload)
    except ModelError as exc:
        raise UsageError(str(exc)) from None
    after = deploy.admit(model, workload)
    try:
        result = verification.verify(after, focus=workload.key)
    except BaseException:
        deploy.undo(model, workload)
        raise
    if not result.ok:
        deploy.undo(model, workload)
        first = (result.problems + [f"{c.src} -> {c.dst} {c.service}" for c in result.mismatches + result.inconclusive]
                 + [f"spoof {s.case} from {s.sender}" for s in result.spoof_failures])  # fmt: skip
        registry.event("admit", vdc, name, "refused", f"verification failed: {first[:5]}")
        raise AdmissionRefused(f"{name}: isolation in {vdc} did not verify, admission undone: {'; '.join(first[:3])}")
    summary = {"cells": len(result.cells), "mismatches": 0, "spoof_cases": len(result.spoof),
               "anti_spoof_counted": result.anti_spoof_delta}  # fmt: skip
    saved = registry.record(workload, model.vdcs[vdc].account, record, cert_id, render.digest(after), summary)
    return Admission(saved, verification=result)


def evict(provider: Provider, registry: Registry, vdc: str, name: str) -> dict[str, Any]:
    """Evict from the registry row alone, so an admission the provider file no longer agrees with
    (an address the file now allocates, a vDC it dropped) can still be removed."""
    found = registry.find(vdc, name)
    if found is None:
        if provider.workload(vdc, name) is not None:
            raise UsageError(f"{name} in {vdc} comes from the provider file: remove it there and run 'certify isolation apply'")
        raise UsageError(f"{name}: not admitted in {vdc} (see 'certify admissions')")
    admitted = registry.workloads()
    workload = next(w for w in admitted if (w.vdc, w.name) == (vdc, name))
    try:
        after = provider.with_workloads(w for w in admitted if w is not workload)
    except ModelError as exc:
        raise UsageError(f"the provider file and the admission registry {registry.path} disagree: {exc}") from None
    deploy.evict(after, workload)
    registry.evicted(vdc, name)
    return found
