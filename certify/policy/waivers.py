"""Waivers: accepted risks, each with a scope, a reason and an expiry.

A waived finding stays in every report, marked with its waiver; it only stops
counting toward the verdict. An expired waiver stops applying and is itself
reported, and so is a waiver that matched nothing.
"""

from __future__ import annotations

import datetime
import fnmatch
from dataclasses import replace
from typing import Any

import yaml

from certify.errors import UsageError, first_line
from certify.model import Finding, Status, Waiver

_KEYS = {"check", "path", "key", "disk", "reason", "expires", "approved_by"}
WAIVABLE = (Status.FAIL, Status.NOT_EVALUATED)  # a crashed check is never waived


class WaiverError(UsageError):
    """An unusable waiver file: exit 2, never a traceback."""


def parse_waivers(text: str, source: str = "waivers") -> list[Waiver]:
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as exc:  # ValueError: a date like 2020-02-30
        raise WaiverError(f"{source}: not valid YAML ({first_line(exc)})") from None
    if isinstance(data, dict) and set(data) == {"waivers"}:
        data = data["waivers"]
        node = node.value[0][1]
    if data is None:
        return []
    if not isinstance(data, list):
        raise WaiverError(f"{source}: expected a list of waivers (or 'waivers:' holding one)")
    return [_waiver(item, source, item_node.start_mark.line + 1) for item, item_node in zip(data, node.value)]


def _waiver(item: Any, source: str, line: int) -> Waiver:
    where = f"{source}:{line}"
    if not isinstance(item, dict):
        raise WaiverError(f"{where}: a waiver is a mapping")
    unknown = sorted(set(map(str, item)) - _KEYS)
    if unknown:
        raise WaiverError(f"{where}: unknown waiver key(s) {', '.join(unknown)}")
    for required in ("check", "reason", "expires"):
        value = item.get(required)
        if not value or (isinstance(value, str) and not value.strip()):
            raise WaiverError(f"{where}: a waiver needs '{required}'")
    expires = item["expires"]
    if isinstance(expires, str):
        try:
            expires = datetime.date.fromisoformat(expires)
        except ValueError:
            raise WaiverError(f"{where}: expires must be a date (YYYY-MM-DD)") from None
    if isinstance(expires, datetime.datetime):
        expires = expires.date()
    if not isinstance(expires, datetime.date):
        raise WaiverError(f"{where}: expires must be a date (YYYY-MM-DD)")
    text = {k: item.get(k) for k in ("check", "path", "key", "disk", "reason", "approved_by")}
    for k, v in text.items():
        if v is not None and not isinstance(v, str):
            raise WaiverError(f"{where}: {k} must be text")
    return Waiver(expires=expires, line=line, **text)


def load_waivers(path: str) -> list[Waiver]:
    try:
        with open(path, encoding="utf-8") as f:
            return parse_waivers(f.read(1024 * 1024), path)
    except (OSError, UnicodeDecodeError) as exc:
        raise WaiverError(f"{path}: cannot read waivers: {exc}") from None


def matches(waiver: Waiver, finding: Finding) -> bool:
    if finding.status not in WAIVABLE or not fnmatch.fnmatchcase(finding.check_id, waiver.check):
        return False
    loc = finding.location
    for scope, value in ((waiver.path, loc and loc.path), (waiver.key, loc and loc.key), (waiver.disk, loc and loc.file)):
        if scope is not None and (value is None or not fnmatch.fnmatchcase(value, scope)):
            return False
    return True


def apply_waivers(findings: list[Finding], waivers: list[Waiver], today: datetime.date) -> tuple[list[Finding], list[dict[str, Any]]]:
    """(findings with waivers attached, every waiver with its state and counts).

    States: applied (it waived findings), shadowed (it matched only findings an
    earlier waiver already took), expired, unused (it matched nothing).
    """
    matched = [0] * len(waivers)
    applied = [0] * len(waivers)
    out = []
    for finding in findings:
        for i, waiver in enumerate(waivers):
            if matches(waiver, finding):
                matched[i] += 1
                if waiver.expires >= today and finding.waiver is None:  # the first live waiver wins
                    finding = replace(finding, waiver=waiver)
                    applied[i] += 1
        out.append(finding)
    states = []
    for waiver, m, a in zip(waivers, matched, applied):
        state = "expired" if waiver.expires < today else "applied" if a else "shadowed" if m else "unused"
        states.append({**waiver.as_dict(), "line": waiver.line, "state": state, "matched": m, "applied": a})
    return out, states
