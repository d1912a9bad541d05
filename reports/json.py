"""The JSON report: the machine-readable contract (schema certify-report/1).

Shape (keys sorted, findings in a stable order)::

    schema, tool {name, version}, artifact {path, kind, sha256}, verdict
    (pass|fail|rejected|error), profile, threshold, findings [{id, severity,
    title, status, location {layer, file, path|key, line?}, evidence,
    remediation, code, fingerprint, waiver {check, reason, expires, ...} | null,
    known}], rejection {reason} (only when rejected), checks_run [ids],
    check_status {id: status}, summary {severity: unwaived failing findings},
    errors [text], notes [text], disks [{file, format, subformat, size,
    virtual_size, sha256}], guest {type, distro, ...} | null, plugins
    [{name, distribution, version}], timings {stage: seconds, guest_open: seconds,
    inventory_walk: seconds, collectors {name: seconds}, methods {inspection:
    probe|inspect_os, inventory: find|walk, inspection_fallback/inventory_fallback:
    why the cheaper way was not taken}}, waivers [{check,
    reason, expires, ..., line, state (applied|expired|unused), matched}],
    baseline (path of the --baseline report) | null, reevaluated (true, only on a
    report judged from stored facts, whose timings then hold "checks", "total"
    and "gathered": the stages of the scan that gathered them)
"""

from __future__ import annotations

import json
from typing import Any

from certify.model import Reporter, Report
from certify.plugins.hookspecs import hookimpl

SCHEMA = "certify-report/1"


def to_dict(report: Report) -> dict[str, Any]:
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "tool": {"name": "certify", "version": report.tool_version},
        "artifact": {"path": report.artifact_path, "kind": report.artifact_kind, "sha256": report.artifact_sha256},
        "verdict": report.verdict.value,
        "profile": report.profile,
        "profile_digest": report.profile_digest,
        "threshold": report.threshold.label,
        "findings": [f.as_dict() for f in report.findings],
        "checks_run": report.checks_run,
        "check_status": {k: v.value for k, v in sorted(report.check_status.items())},
        "summary": report.failing_by_severity(),
        "errors": list(report.errors),
        "notes": list(report.notes),
        "disks": list(report.disks),
        "guest": report.guest,
        "plugins": list(report.plugins),
        "timings": dict(report.timings),
        "waivers": list(report.waivers),
        "baseline": report.baseline,
    }
    if report.rejection is not None:
        out["rejection"] = {"reason": report.rejection}
    if report.reevaluated:  # an extension: present only on reports judged from stored facts
        out["reevaluated"] = True
    return out


def render(report: Report, **_options: Any) -> str:
    return json.dumps(to_dict(report), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@hookimpl
def certify_reporters() -> list[Reporter]:
    return [Reporter(name="json", extension=".json", render=render)]
