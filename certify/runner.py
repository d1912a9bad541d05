"""Runs checks over facts and turns their results into findings."""

from __future__ import annotations

from collections.abc import Iterable

from certify.model import Check, Facts, Finding, Location, Result, Status


def _finding(check: Check, result: Result) -> Finding:
    return Finding(
        check_id=check.id,
        severity=result.severity if result.severity is not None else check.severity,
        title=check.title,
        status=result.status,
        location=result.location,
        evidence=result.evidence,
        remediation=check.remediation,
    )


def _outcome(check: Check, facts: Facts) -> tuple[Status, list[Result]]:
    for name in check.facts:
        if name in facts.not_applicable:
            return Status.NOT_APPLICABLE, []
    for name in check.facts:
        if name in facts.unavailable:
            reason = f"fact {name!r} unavailable: {facts.unavailable[name]}"
            return Status.NOT_EVALUATED, [Result(status=Status.NOT_EVALUATED, location=Location(layer=check.layer), evidence=reason)]
    try:
        results = list(check.evaluate(**{name: facts.values[name] for name in check.facts}))
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


def run_checks(checks: Iterable[Check], facts: Facts) -> tuple[list[Finding], dict[str, Status]]:
    findings: list[Finding] = []
    status: dict[str, Status] = {}
    for check in sorted(checks, key=lambda c: c.id):
        status[check.id], results = _outcome(check, facts)
        findings.extend(_finding(check, r) for r in results)
    return sorted(findings, key=Finding.sort_key), status
