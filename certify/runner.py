"""Runs checks over facts and turns their results into findings."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from certify.checkdef import PARAMS
from certify.model import Check, Facts, Finding, Location, Result, Severity, Status, fact_unavailable


def _finding(check: Check, result: Result, severity: Severity | None) -> Finding:
    """``severity`` is the profile's override; it wins over the check's own and the result's."""
    if severity is None:
        severity = result.severity if result.severity is not None else check.severity
    return Finding(
        check_id=check.id,
        severity=severity,
        title=check.title,
        status=result.status,
        location=result.location,
        evidence=result.evidence,
        remediation=check.remediation,
    )


def _outcome(check: Check, facts: Facts, params: dict[str, Any]) -> tuple[Status, list[Result]]:
    for name in check.facts:
        if name in facts.not_applicable:
            return Status.NOT_APPLICABLE, []
    for name in check.facts:
        if name in facts.unavailable:
            reason = fact_unavailable(name, facts.unavailable[name])
            return Status.NOT_EVALUATED, [Result(status=Status.NOT_EVALUATED, location=Location(layer=check.layer), evidence=reason)]
    try:
        kwargs = {name: facts.values[name] for name in check.facts}
        if PARAMS in inspect.signature(check.evaluate).parameters:
            kwargs[PARAMS] = {**check.params, **params}
        results = list(check.evaluate(**kwargs))
    except Exception as exc:  # a crashed check is reported, and can never pass
        evidence = f"check crashed: {type(exc).__name__}: {exc}"
        return Status.ERROR, [Result(status=Status.ERROR, location=Location(layer=check.layer), evidence=evidence)]
    statuses = {r.status for r in results}
    for status in (Status.ERROR, Status.FAIL, Status.NOT_EVALUATED):
        if status in statuses:
            return status, [r for r in results if r.status in (Status.FAIL, Status.NOT_EVALUATED, Status.ERROR)]
    if results and statuses == {Status.NOT_APPLICABLE}:
        return Status.NOT_APPLICABLE, []
    return Status.PASS, []


def run_checks(
    checks: Iterable[Check],
    facts: Facts,
    *,
    severity: Mapping[str, Severity] | None = None,
    params: Mapping[str, dict[str, Any]] | None = None,
) -> tuple[list[Finding], dict[str, Status]]:
    """Run each check once; ``severity`` and ``params`` are the profile's per-check overrides."""
    severity, params = severity or {}, params or {}
    findings: list[Finding] = []
    status: dict[str, Status] = {}
    for check in sorted(checks, key=lambda c: c.id):
        status[check.id], results = _outcome(check, facts, params.get(check.id, {}))
        findings.extend(_finding(check, r, severity.get(check.id)) for r in results)
    return sorted(findings, key=Finding.sort_key), status
