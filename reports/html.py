"""A self-contained HTML report (jinja2, autoescaped, no script, prints well).

Everything that came from the upload is untrusted and only ever reaches the
page through autoescaping; the page's CSP forbids scripts and remote loads.
"""

from __future__ import annotations

from typing import Any

import jinja2

from certify.model import Report, Reporter, Severity, describe_os
from certify.plugins.hookspecs import hookimpl
from certify.reports.text import clean, unevaluated, unevaluated_lines, verdict_label, verdict_reason, where

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("certify.reports", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    finalize=lambda value: clean(value) if isinstance(value, str) else value,  # control bytes shown, not sent
)


def render(report: Report, *, display_min: Severity = Severity.INFO, **_options: Any) -> str:
    apart = unevaluated(report)
    groups = [(s, [f for f in report.findings if f.severity is s and f not in apart])
              for s in sorted(Severity, reverse=True) if s >= display_min]  # fmt: skip
    return _ENV.get_template("report.html.j2").render(
        report=report,
        verdict_label=verdict_label(report),
        verdict_reason=verdict_reason(report),
        severities=sorted(Severity, reverse=True),
        counts=report.failing_by_severity(),
        groups=[(s, g) for s, g in groups if g],
        unevaluated=unevaluated_lines(report),
        hidden=sum(1 for f in report.findings if f.severity < display_min and f not in apart),
        display_min=display_min,
        checks=sorted(report.check_status.items()),
        catalog=report.catalog,
        guest=describe_os(report.guest) if report.guest else "",
        where=where,
    )


@hookimpl
def certify_reporters() -> list[Reporter]:
    return [Reporter(name="html", extension=".html", render=render)]
