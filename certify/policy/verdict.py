"""Findings to verdict. Fail-closed: a pass needs every blocking check to have run clean."""

from __future__ import annotations

from certify.model import Finding, Severity, Status, Verdict


def decide(findings: list[Finding], threshold: Severity, errors: list[str]) -> Verdict:
    if errors or any(f.status is Status.ERROR for f in findings):
        return Verdict.ERROR
    if any(f.counts and f.severity >= threshold for f in findings):
        return Verdict.FAIL
    return Verdict.PASS
