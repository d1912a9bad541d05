"""Baselines: a previous JSON report marks the findings that are already known."""

from __future__ import annotations

import json
from dataclasses import replace

from certify.errors import UsageError
from certify.model import Finding, fingerprint

SCHEMA = "certify-report/1"


def load_baseline(path: str) -> set[str]:
    """Fingerprints of the findings in a previous report (computed, so older reports work too)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UsageError(f"{path}: cannot read baseline report: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("findings"), list):
        raise UsageError(f"{path}: not a certify JSON report ({SCHEMA})")
    known = set()
    for f in data["findings"]:
        if isinstance(f, dict) and isinstance(f.get("id"), str):
            location = f.get("location") if isinstance(f.get("location"), dict) else None
            known.add(fingerprint(f["id"], location))
    return known


def mark_known(findings: list[Finding], known: set[str]) -> list[Finding]:
    return [replace(f, known=True) if f.fingerprint in known else f for f in findings]
