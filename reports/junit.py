"""JUnit XML: one testcase per check, so any CI system can show the scan.

fail -> <failure> carrying every finding; not-evaluated and crashed checks ->
<error>; not-applicable -> <skipped>; waived findings pass and say so.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from certify.model import Finding, Report, Reporter, Status
from certify.plugins.hookspecs import hookimpl

_NOT_XML = re.compile(r"[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]|[\x7f-\x9f]")


def xml_text(value: object) -> str:
    """Characters XML 1.0 cannot carry (and C1 controls) shown escaped, as in the text report."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def _describe(f: Finding) -> str:
    loc = f.location
    where = "" if loc is None else " ".join(str(x) for x in (loc.file, loc.path or loc.key) if x)
    line = f"[{f.severity.label}] " + (f"{where}: " if where else "") + f.evidence
    if f.waiver:
        line += f" (waived until {f.waiver.expires.isoformat()}: {f.waiver.reason})"
    return line


def to_xml(report: Report) -> ET.Element:
    by_check: dict[str, list[Finding]] = {}
    for f in report.findings:
        by_check.setdefault(f.check_id, []).append(f)
    suites = ET.Element("testsuites", name="certify")
    suite = ET.SubElement(suites, "testsuite", name=xml_text(f"certify {report.artifact_path}"))
    props = ET.SubElement(suite, "properties")
    for name, value in (("verdict", report.verdict.value), ("profile", report.profile), ("threshold", report.threshold.label),
                        ("artifact.sha256", report.artifact_sha256 or ""), ("rejection", report.rejection or "")):  # fmt: skip
        ET.SubElement(props, "property", name=name, value=xml_text(value))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for check_id, status in sorted(report.check_status.items()):
        meta = report.catalog.get(check_id, {})
        case = ET.SubElement(suite, "testcase", classname=f"certify.{meta.get('layer', 'check')}", name=check_id)
        counts["tests"] += 1
        findings = by_check.get(check_id, [])
        body = "\n".join(xml_text(_describe(f)) for f in findings)
        unwaived = [f for f in findings if f.status is Status.FAIL and not f.waiver]
        if status is Status.FAIL and unwaived:
            counts["failures"] += 1
            worst = max(f.severity for f in unwaived)
            el = ET.SubElement(case, "failure", type=worst.label, message=xml_text(meta.get("title", check_id)))
            el.text = body + "\n\nHow to fix: " + xml_text(meta.get("remediation", ""))
        elif status in (Status.NOT_EVALUATED, Status.ERROR):
            counts["errors"] += 1
            ET.SubElement(case, "error", type=status.value, message=status.value).text = body
        elif status is Status.NOT_APPLICABLE:
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message="not applicable to this upload")
        elif findings:
            ET.SubElement(case, "system-out").text = body
    if report.rejection:
        counts["tests"] += 1
        counts["errors"] += 1
        case = ET.SubElement(suite, "testcase", classname="certify.bundle", name="ingest")
        ET.SubElement(case, "error", type="rejected", message=xml_text(report.rejection))
    for element in (suites, suite):
        for key, value in counts.items():
            element.set(key, str(value))
        element.set("time", f"{report.timings.get('total', 0):.3f}")
    return suites


def render(report: Report, **_options: Any) -> str:
    tree = to_xml(report)
    ET.indent(tree)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(tree, encoding="unicode") + "\n"


@hookimpl
def certify_reporters() -> list[Reporter]:
    return [Reporter(name="junit", extension=".xml", render=render)]
