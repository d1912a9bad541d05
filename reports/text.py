"""The text report, for people at a terminal.

Findings grouped by severity, each saying where it is and how to fix it.
Strings that came from the upload are untrusted: control characters are shown
escaped so a guest cannot move the cursor or recolour the terminal.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

from certify.model import Finding, Location, Report, Reporter, Severity, Status, Verdict, describe_os
from certify.plugins.hookspecs import hookimpl

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_COLORS = {
    Severity.CRITICAL: "1;31",
    Severity.HIGH: "31",
    Severity.MEDIUM: "33",
    Severity.LOW: "36",
    Severity.INFO: "2",
}
_VERDICT_TEXT = {
    Verdict.PASS: ("CERTIFIED", "1;32"),
    Verdict.FAIL: ("NOT CERTIFIED", "1;31"),
    Verdict.REJECTED: ("REJECTED", "1;31"),
    Verdict.ERROR: ("ERROR", "1;35"),
}
WIDTH = 100


def verdict_label(report: Report) -> str:
    return _VERDICT_TEXT[report.verdict][0]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def verdict_reason(report: Report) -> str:
    """Why the verdict is what it is, in a few words (every human-facing report says it the same way).

    Findings and checks that could not be evaluated are counted apart: one tells
    the vendor what to fix, the other what could not be looked at.
    """
    if report.verdict is Verdict.REJECTED:
        return "the upload could not be processed safely"
    if report.verdict is Verdict.ERROR:
        return "the scan did not complete; the result cannot be trusted"
    failing = sum(1 for f in report.blocking() if f.status is Status.FAIL)
    found = _plural(failing, "finding") if failing else "no finding"
    reason = f"{found} at or above {report.threshold.label}"
    unevaluated = sum(1 for s in report.check_status.values() if s is Status.NOT_EVALUATED)
    if unevaluated:
        reason += f"; {_plural(unevaluated, 'check')} could not be evaluated"
    return reason


def clean(text: object) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


class _Style:
    def __init__(self, color: bool):
        self.color = color

    def __call__(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text


def where(loc: Location | None) -> str:
    if loc is None:
        return "-"
    if loc.layer.value == "guest":
        disk = f" (disk {loc.file})" if loc.file else ""
        return f"guest {loc.path or '(whole guest)'}{disk}"
    text = loc.file or loc.layer.value
    if loc.line:
        text += f":{loc.line}"
    if loc.key:
        text += f" {loc.key}"
    if loc.path and loc.path != loc.key:
        text += f" -> {loc.path}"
    return text


def _wrap(label: str, text: str) -> str:
    prefix = f"      {label:<7}"
    return textwrap.fill(clean(text), width=WIDTH, initial_indent=prefix, subsequent_indent=" " * len(prefix))


def _tags(f: Finding) -> str:
    tags = [] if f.status is Status.FAIL else [f.status.value]
    if f.code:
        tags.append(f.code)
    if f.waiver:
        tags.append(f"waived until {f.waiver.expires.isoformat()}")
    if f.known:
        tags.append("known")
    return "".join(f" [{t}]" for t in tags)


def _finding(f: Finding, style: _Style) -> list[str]:
    lines = [f"  {style(f.check_id, '1')}{_tags(f)}  {clean(f.title)}"]
    lines.append(_wrap("where", where(f.location)))
    if f.evidence:
        lines.append(_wrap("what", f.evidence))
    if f.waiver:
        by = f" (approved by {f.waiver.approved_by})" if f.waiver.approved_by else ""
        lines.append(_wrap("waiver", f.waiver.reason + by))
    elif f.status is Status.FAIL:
        lines.append(_wrap("fix", f.remediation))
    return lines


def unevaluated(report: Report) -> list[Finding]:
    """The unwaived not-evaluated findings: human reports list them by reason, apart from the real findings."""
    return [f for f in report.findings if f.status is Status.NOT_EVALUATED and f.waiver is None]


def unevaluated_lines(report: Report) -> list[str]:
    """One line per reason: forty checks that lack the same disk are one thing to fix, not forty."""
    groups: dict[str, list[Finding]] = {}
    for f in unevaluated(report):
        groups.setdefault(f.reason, []).append(f)
    lines = []
    for reason, group in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])):
        ids = sorted({f.check_id for f in group})
        layers = {f.location.layer.value for f in group if f.location}
        kind = f"{layers.pop()} check" if len(layers) == 1 else "check"
        named = f" ({', '.join(ids)})" if len(ids) <= 3 else ""
        lines.append(f"{_plural(len(ids), kind)} not evaluated{named}: {reason}")
    return lines


# Stages in pipeline order, with the parts the guest stage is made of; anything else the timings hold comes after.
_STAGE_ORDER = ("ingest", "guest", "checks")
_GUEST_PARTS = (("guest_open", "launch, inspect, mount"), ("inventory_walk", "inventory"))
_TOP_COLLECTORS = 8
_NOT_STAGES = {*_STAGE_ORDER, "total", "collectors", *(part for part, _ in _GUEST_PARTS)}


def timing_lines(timings: dict[str, Any]) -> list[str]:
    """Where a scan's time went, stage by stage, slowest guest collectors first: the section ``--timings`` adds."""
    if not timings:
        return ["  no timings recorded"]
    if timings.get("reevaluated"):
        lines = [f"  judged from stored facts in {_seconds(timings.get('total'))} (checks {_seconds(timings.get('checks'))});"
                 " when the facts were gathered:"]
        gathered = timings.get("gathered")
        return lines + ["  " + line for line in timing_lines(gathered if isinstance(gathered, dict) else {})]
    total = _number(timings.get("total"))
    others = sorted(k for k, v in timings.items() if k not in _NOT_STAGES and _number(v) is not None)
    lines = []
    for key in [k for k in _STAGE_ORDER if k in timings] + others:
        lines.append(f"  {key:<10} {_seconds(timings[key]):>9}{_share(timings[key], total)}")
        if key == "guest":
            methods = timings.get("methods") if isinstance(timings.get("methods"), dict) else {}
            for part, label in _GUEST_PARTS:
                if _number(timings.get(part)) is not None:
                    lines.append(f"    {label:<22} {_seconds(timings[part]):>9}{_share(timings[part], total)}")
                    lines += _method_lines(methods, _PART_METHOD[part])
            collectors = timings.get("collectors")
            if isinstance(collectors, dict) and collectors:
                lines += _collector_lines(collectors, total)
    lines.append(f"  {'total':<10} {_seconds(total):>9}")
    return lines


_PART_METHOD = {"guest_open": "inspection", "inventory_walk": "inventory"}


def _method_lines(methods: dict[str, Any], kind: str) -> list[str]:
    """How that part was done (probe or inspect_os, find or walk), and why the cheaper way was not taken."""
    if not methods.get(kind):
        return []
    lines = [f"      {kind} by {clean(str(methods[kind]))}"]
    if methods.get(f"{kind}_fallback"):
        lines[0] += f": {clean(str(methods[kind + '_fallback']))}"
    return lines


def _collector_lines(collectors: dict[str, Any], total: float | None) -> list[str]:
    spent = {name: _number(seconds) or 0.0 for name, seconds in collectors.items()}
    lines = [f"    {'collectors':<22} {_seconds(sum(spent.values())):>9}{_share(sum(spent.values()), total)}"]
    slowest = sorted(spent.items(), key=lambda item: (-item[1], item[0]))
    lines += [f"      {clean(str(name)):<20} {_seconds(seconds):>9}" for name, seconds in slowest[:_TOP_COLLECTORS]]
    if len(slowest) > _TOP_COLLECTORS:
        rest = slowest[_TOP_COLLECTORS:]
        lines.append(f"      ({len(rest)} more, {_seconds(sum(seconds for _, seconds in rest))} together)")
    return lines


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _seconds(value: Any) -> str:
    seconds = _number(value)
    return "-" if seconds is None else f"{seconds:.2f} s"


def _share(value: Any, total: float | None) -> str:
    part = _number(value)
    return f"  {100 * part / total:3.0f}%" if part is not None and total else ""


def render(report: Report, *, color: bool = False, display_min: Severity = Severity.INFO, timings: bool = False,
           **_options: Any) -> str:
    style = _Style(color)
    out = [f"certify {report.tool_version}: {clean(report.artifact_path)}" + (f" ({report.artifact_kind})" if report.artifact_kind else "")]
    if report.artifact_sha256:
        out.append(f"  sha256 {report.artifact_sha256}")
    for disk in report.disks:
        out.append(f"  disk   {clean(disk['file'])}: {disk['format']} {clean(disk.get('subformat') or '')}".rstrip())
    if report.guest:
        out.append(f"  guest  {clean(describe_os(report.guest))}")
    out.append("")

    label, code = _VERDICT_TEXT[report.verdict]
    if report.verdict is Verdict.REJECTED:
        out.append(f"{style(label, code)}: {clean(report.rejection)}")
        if timings:
            out += ["", style("TIMINGS", "1"), *timing_lines(report.timings)]
        return "\n".join(out) + "\n"
    out.append(f"{style(label, code)}: {verdict_reason(report)} (profile {report.profile})")
    for error in report.errors:
        out.append(f"  error: {clean(error)}")
    for note in report.notes:
        out.append(f"  note:  {clean(note)}")

    apart = unevaluated(report)
    for severity in sorted(Severity, reverse=True):
        group = [f for f in report.findings if f.severity is severity and f not in apart]
        if group and severity >= display_min:
            out.append("")
            out.append(style(severity.label.upper(), _COLORS[severity]))
            for f in group:
                out.extend(_finding(f, style))
    if apart:
        out.append("")
        out.append(style("NOT EVALUATED", "1"))
        out.extend(textwrap.fill(clean(line), width=WIDTH, initial_indent="  ", subsequent_indent="      ")
                   for line in unevaluated_lines(report))  # fmt: skip

    counts: dict[str, int] = {}
    for status in report.check_status.values():
        counts[status.value] = counts.get(status.value, 0) + 1
    tally = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    out.append("")
    out.append(f"{len(report.check_status)} checks run: {tally}" if counts else "no checks run")
    hidden = sum(1 for f in report.findings if f.severity < display_min and f not in apart)
    if hidden:
        out.append(f"{hidden} finding(s) below {display_min.label} not shown")
    waived = sum(1 for f in report.findings if f.waiver)
    known = sum(1 for f in report.findings if f.known)
    if waived or known:
        out.append(f"{waived} waived, {known} already known from the baseline")
    if timings:
        out += ["", style("TIMINGS", "1"), *timing_lines(report.timings)]
    return "\n".join(out) + "\n"


@hookimpl
def certify_reporters() -> list[Reporter]:
    return [Reporter(name="text", extension=".txt", render=render)]
