"""Reporters on a hand-made report: stable JSON, readable and safe text."""

from __future__ import annotations

import json

from certify.model import Finding, Layer, Location, Report, Severity, Status, Verdict
from certify.reports import json as json_report
from certify.reports import text as text_report


def report(**kw) -> Report:
    finding = Finding(
        check_id="ssh-host-keys-present",
        severity=Severity.HIGH,
        title="SSH host keys shipped in the image",
        status=Status.FAIL,
        location=Location(layer=Layer.GUEST, file="d.vmdk", path="/etc/ssh/\x1b[31mevil\x07"),
        evidence="ssh-rsa SHA256:x comment\x1b]0;pwned\x07",
        remediation="Delete them.",
    )
    base = dict(tool_version="0.1.0", artifact_path="a.ova", artifact_kind="ova", artifact_sha256="0" * 64,
                verdict=Verdict.FAIL, profile="default", threshold=Severity.HIGH, findings=[finding],
                check_status={"ssh-host-keys-present": Status.FAIL, "vmx-vnc-enabled": Status.PASS})  # fmt: skip
    return Report(**(base | kw))


def test_text_report_groups_by_severity_and_escapes_control_characters():
    out = text_report.render(report())
    assert "NOT CERTIFIED" in out and "\nHIGH\n" in out
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[31mevil\\x07" in out
    assert "fix    Delete them." in out
    assert "2 checks run: 1 fail, 1 pass" in out


def test_text_report_colour_only_when_asked():
    assert "\x1b[" in text_report.render(report(), color=True)
    assert "\x1b[" not in text_report.render(report(), color=False)


def test_rejected_text_and_json():
    rejected = report(verdict=Verdict.REJECTED, findings=[], check_status={}, rejection="member climbs out", artifact_sha256=None)
    assert "REJECTED: member climbs out" in text_report.render(rejected)
    data = json.loads(json_report.render(rejected))
    assert data["rejection"] == {"reason": "member climbs out"} and data["verdict"] == "rejected"


def test_json_is_sorted_and_stable():
    first, second = json_report.render(report()), json_report.render(report())
    assert first == second
    data = json.loads(first)
    assert list(data) == sorted(data)
    assert data["summary"]["high"] == 1
    assert data["findings"][0]["location"] == {"layer": "guest", "file": "d.vmdk", "path": "/etc/ssh/\x1b[31mevil\x07"}


def _unevaluated(check_id: str, fact: str, reason: str, severity: Severity = Severity.HIGH) -> Finding:
    from certify.model import fact_unavailable

    return Finding(check_id=check_id, severity=severity, title=check_id, status=Status.NOT_EVALUATED,
                   location=Location(layer=Layer.GUEST), evidence=fact_unavailable(fact, reason), remediation="")  # fmt: skip


def test_text_report_counts_findings_and_unevaluated_checks_apart_and_says_each_reason_once():
    no_disk = "the bundle holds no disk that could be inspected"
    guest = [_unevaluated(f"guest-check-{i:02}", f"fact{i % 3}", no_disk, Severity(i % 5)) for i in range(39)]
    budget = _unevaluated("private-key-material", "content_scan", "the content scan ran out of its budget")
    real = report().findings
    status = {f.check_id: Status.NOT_EVALUATED for f in [*guest, budget]} | {"ssh-host-keys-present": Status.FAIL}
    out = text_report.render(report(findings=[*real, *guest, budget], check_status=status))
    assert "NOT CERTIFIED: 1 finding at or above high; 40 checks could not be evaluated (profile default)" in out
    assert "\n  39 guest checks not evaluated: the bundle holds no disk that could be inspected\n" in out
    assert "\n  1 guest check not evaluated (private-key-material): the content scan ran out of its budget\n" in out
    assert out.count("guest-check-") == 0 and "ssh-host-keys-present" in out  # the real finding is shown in full
    assert out.index("ssh-host-keys-present") < out.index("NOT EVALUATED")


def test_text_headline_when_only_unevaluated_checks_block():
    blocked = [_unevaluated("account-empty-password", "accounts", "no operating system found on the disk(s)", Severity.CRITICAL)]
    out = text_report.render(report(findings=blocked, check_status={"account-empty-password": Status.NOT_EVALUATED}))
    assert "NOT CERTIFIED: no finding at or above high; 1 check could not be evaluated" in out
    assert "1 guest check not evaluated (account-empty-password): no operating system found on the disk(s)" in out
    data = json.loads(json_report.render(report(findings=blocked, check_status={"account-empty-password": Status.NOT_EVALUATED})))
    assert data["findings"][0]["status"] == "not-evaluated"  # JSON keeps every check's own finding


def test_html_report_lists_unevaluated_checks_by_reason_after_the_findings():
    from certify.reports import html as html_report

    no_disk = "the bundle holds no disk that could be inspected"
    guest = [_unevaluated(f"guest-check-{i:02}", "accounts", no_disk) for i in range(5)]
    status = {f.check_id: Status.NOT_EVALUATED for f in guest} | {"ssh-host-keys-present": Status.FAIL}
    page = html_report.render(report(findings=[*report().findings, *guest], check_status=status))
    assert "1 finding at or above high; 5 checks could not be evaluated" in page
    assert "<li>5 guest checks not evaluated: the bundle holds no disk that could be inspected</li>" in page
    assert page.count('class="finding') == 1 and page.index("ssh-host-keys-present") < page.index('id="not-evaluated"')
