"""SARIF 2.1.0: one rule per check run, one result per failing finding.

Waived findings carry a ``suppressions`` entry; findings whose check could not
be evaluated are results of kind ``open``; crashed checks and failed launches
are tool execution notifications.
"""

from __future__ import annotations

import json
from typing import Any

from certify.model import Finding, Report, Reporter, Severity, Status, Verdict
from certify.plugins.hookspecs import hookimpl

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
LEVELS = {Severity.CRITICAL: "error", Severity.HIGH: "error", Severity.MEDIUM: "warning", Severity.LOW: "note", Severity.INFO: "note"}
# GitHub code scanning reads this property to rank security results.
SECURITY_SEVERITY = {Severity.CRITICAL: "9.5", Severity.HIGH: "8.0", Severity.MEDIUM: "5.5", Severity.LOW: "3.0", Severity.INFO: "0.0"}


def _rule(meta: dict[str, Any]) -> dict[str, Any]:
    severity = Severity.parse(meta["severity"])
    rule: dict[str, Any] = {
        "id": meta["id"],
        "name": "".join(part.capitalize() for part in meta["id"].split("-")),
        "shortDescription": {"text": meta["title"]},
        "help": {"text": meta["remediation"], "markdown": f"**How to fix:** {meta['remediation']}"},
        "defaultConfiguration": {"level": LEVELS[severity]},
        "properties": {"security-severity": SECURITY_SEVERITY[severity], "tags": ["security", meta["layer"]]},
    }
    if meta.get("description"):
        rule["fullDescription"] = {"text": meta["description"]}
    references = meta.get("references") or []
    if references:
        rule["properties"]["references"] = list(references)
        urls = [r for r in references if r.startswith(("https://", "http://"))]
        if urls:
            rule["helpUri"] = urls[0]
    return rule


def _location(f: Finding) -> dict[str, Any]:
    loc = f.location
    out: dict[str, Any] = {}
    if loc is None:
        return out
    if loc.file:
        physical: dict[str, Any] = {"artifactLocation": {"uri": loc.file, "uriBaseId": "BUNDLE"}}
        if loc.line:
            physical["region"] = {"startLine": loc.line}
        out["physicalLocation"] = physical
    inner = loc.path or loc.key
    if inner:
        kind = "member" if loc.key and not loc.path else "resource"
        out["logicalLocations"] = [{"fullyQualifiedName": f"{loc.layer.value}:{inner}", "kind": kind}]
    return out


def _result(f: Finding, index: dict[str, int], baseline: bool) -> dict[str, Any]:
    failing = f.status is Status.FAIL
    text = f.evidence or f.title
    result: dict[str, Any] = {
        "ruleId": f.check_id,
        "ruleIndex": index[f.check_id],
        "kind": "fail" if failing else "open",
        "level": LEVELS[f.severity] if failing else "none",
        "message": {"text": text if failing else f"not evaluated: {text}"},
        "partialFingerprints": {"certify/v1": f.fingerprint},
        "properties": {"severity": f.severity.label, "known": f.known},
    }
    location = _location(f)
    if location:
        result["locations"] = [location]
    if f.code:
        result["properties"]["code"] = f.code
    if f.known:
        result["baselineState"] = "unchanged"
    elif baseline:
        result["baselineState"] = "new"
    if f.waiver:
        result["suppressions"] = [{"kind": "external", "status": "accepted", "justification": f.waiver.reason,
                                   "properties": f.waiver.as_dict()}]  # fmt: skip
    return result


def to_sarif(report: Report) -> dict[str, Any]:
    rules = [_rule(report.catalog[i]) for i in report.checks_run if i in report.catalog]
    index = {r["id"]: n for n, r in enumerate(rules)}
    results = [_result(f, index, report.baseline is not None) for f in report.findings if f.status in (Status.FAIL, Status.NOT_EVALUATED) and f.check_id in index]
    notifications = [{"level": "error", "message": {"text": e}} for e in report.errors]
    notifications += [{"level": "error", "message": {"text": f.evidence}, "associatedRule": {"id": f.check_id}}
                      for f in report.findings if f.status is Status.ERROR]  # fmt: skip
    invocation: dict[str, Any] = {"executionSuccessful": report.verdict not in (Verdict.ERROR, Verdict.REJECTED)}
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    if report.rejection:
        invocation["exitCodeDescription"] = f"rejected: {report.rejection}"
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "certify", "version": report.tool_version, "rules": rules}},
                "invocations": [invocation],
                "originalUriBaseIds": {"BUNDLE": {"description": {"text": "the files of the scanned bundle"}}},
                "artifacts": [{"location": {"uri": d["file"], "uriBaseId": "BUNDLE"}, "hashes": {"sha-256": d["sha256"]}}
                              for d in report.disks],  # fmt: skip
                "results": results,
                "properties": {
                    "verdict": report.verdict.value,
                    "profile": report.profile,
                    "threshold": report.threshold.label,
                    "artifact": {"path": report.artifact_path, "kind": report.artifact_kind, "sha256": report.artifact_sha256},
                },
            }
        ],
    }


def render(report: Report, **_options: Any) -> str:
    return json.dumps(to_sarif(report), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@hookimpl
def certify_reporters() -> list[Reporter]:
    return [Reporter(name="sarif", extension=".sarif", render=render)]
