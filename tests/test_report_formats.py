"""SARIF against the official schema, JUnit as CI reads it, HTML as a person sees it (headless Chromium)."""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET

import jsonschema
import pytest

from certify.model import Finding, Layer, Location, Report, Severity, Status, Verdict, Waiver
from certify.reports import html as html_report
from certify.reports import junit as junit_report
from certify.reports import sarif as sarif_report
from conftest import SHARED, run_certify

SARIF_SCHEMA = json.loads((SHARED / "corpus" / "schemas" / "sarif-schema-2.1.0.json").read_text())
HOSTILE = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">\x1b[2J"
CATALOG = {
    "ssh-host-keys-present": {"id": "ssh-host-keys-present", "severity": "high", "layer": "guest", "title": "SSH host keys shipped",
                              "remediation": "Delete them.", "description": "Shared keys.", "references": []},
    "vmx-vnc-enabled": {"id": "vmx-vnc-enabled", "severity": "high", "layer": "descriptor", "title": "VNC enabled",
                        "remediation": "Remove RemoteDisplay.vnc.*.", "description": "", "references": []},
    "ssh-authorized-keys-present": {"id": "ssh-authorized-keys-present", "severity": "critical", "layer": "guest",
                                    "title": "authorized keys", "remediation": "Remove.", "description": "", "references": []},
}  # fmt: skip


def sample_report() -> Report:
    waiver = Waiver(check="vmx-*", reason="installer console", expires=datetime.date(2999, 1, 1), approved_by="sec")
    findings = [
        Finding(check_id="ssh-host-keys-present", severity=Severity.HIGH, title="SSH host keys shipped", status=Status.FAIL,
                location=Location(layer=Layer.GUEST, file="d.vmdk", path="/etc/ssh/" + HOSTILE), evidence="ssh-rsa SHA256:x " + HOSTILE,
                remediation="Delete them.", code="S01", known=True),
        Finding(check_id="vmx-vnc-enabled", severity=Severity.CRITICAL, title="VNC enabled", status=Status.FAIL,
                location=Location(layer=Layer.DESCRIPTOR, file="a.ovf", key="RemoteDisplay.vnc.enabled", line=35),
                evidence="RemoteDisplay.vnc.enabled = 'TRUE'", remediation="Remove RemoteDisplay.vnc.*.", waiver=waiver),
        Finding(check_id="ssh-authorized-keys-present", severity=Severity.CRITICAL, title="authorized keys", status=Status.NOT_EVALUATED,
                location=Location(layer=Layer.GUEST), evidence="no operating system found", remediation="Remove."),
    ]  # fmt: skip
    return Report(tool_version="0.1.0", artifact_path="a.ova", artifact_kind="ova", artifact_sha256="ab" * 32,
                  verdict=Verdict.FAIL, profile="default", threshold=Severity.HIGH, findings=findings,
                  check_status={"ssh-host-keys-present": Status.FAIL, "vmx-vnc-enabled": Status.FAIL,
                                "ssh-authorized-keys-present": Status.NOT_EVALUATED},
                  disks=[{"file": "d.vmdk", "format": "vmdk", "subformat": "streamOptimized", "sha256": "cd" * 32}],
                  waivers=[{**waiver.as_dict(), "line": 1, "state": "applied", "matched": 1}], catalog=CATALOG,
                  timings={"total": 1.5})  # fmt: skip


def test_sarif_is_valid_and_maps_findings():
    sarif = json.loads(sarif_report.render(sample_report()))
    jsonschema.validate(sarif, SARIF_SCHEMA)
    run = sarif["runs"][0]
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == sorted(CATALOG)
    by_rule = {r["ruleId"]: r for r in run["results"]}
    assert by_rule["ssh-host-keys-present"]["level"] == "error" and by_rule["ssh-host-keys-present"]["kind"] == "fail"
    assert by_rule["ssh-host-keys-present"]["baselineState"] == "unchanged"
    assert by_rule["ssh-host-keys-present"]["properties"]["code"] == "S01"
    assert by_rule["vmx-vnc-enabled"]["suppressions"][0]["justification"] == "installer console"
    assert by_rule["vmx-vnc-enabled"]["locations"][0]["physicalLocation"]["region"] == {"startLine": 35}
    assert by_rule["ssh-authorized-keys-present"]["kind"] == "open" and by_rule["ssh-authorized-keys-present"]["level"] == "none"
    assert run["properties"]["verdict"] == "fail"


def test_sarif_of_a_rejected_upload_is_valid():
    rejected = Report(tool_version="0.1.0", artifact_path="a.ova", artifact_kind=None, artifact_sha256=None,
                      verdict=Verdict.REJECTED, profile="default", threshold=Severity.HIGH, rejection="bad tar")  # fmt: skip
    sarif = json.loads(sarif_report.render(rejected))
    jsonschema.validate(sarif, SARIF_SCHEMA)
    assert sarif["runs"][0]["invocations"][0]["executionSuccessful"] is False


def test_junit_one_testcase_per_check():
    root = ET.fromstring(junit_report.render(sample_report()).encode())
    suite = root.find("testsuite")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == set(CATALOG)
    assert cases["ssh-host-keys-present"].find("failure").get("type") == "high"
    assert "\\x1b" in cases["ssh-host-keys-present"].find("failure").text  # escaped, not raw control bytes
    assert cases["vmx-vnc-enabled"].find("failure") is None  # waived: passes, and says so
    assert "waived until 2999-01-01" in cases["vmx-vnc-enabled"].find("system-out").text
    assert cases["ssh-authorized-keys-present"].find("error").get("type") == "not-evaluated"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "1", "1")


CHROMIUM = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--enable-logging=stderr", "--v=0"]  # fmt: skip


def chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium")
    assert binary, "chromium is installed by 'make setup' (Debian package chromium)"
    profile = tmp_path / "chromium-profile"
    return subprocess.run([binary, *CHROMIUM, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def html_page(tmp_path_factory):
    path = tmp_path_factory.mktemp("html") / "report.html"
    path.write_text(html_report.render(sample_report()))
    return path


def test_html_loads_in_chromium_shows_verdict_and_runs_nothing_from_the_guest(tmp_path, html_page):
    result = chromium(tmp_path, "--dump-dom", html_page.as_uri())
    dom = result.stdout
    assert "NOT CERTIFIED" in dom and 'id="verdict"' in dom
    assert "<title>certify: NOT CERTIFIED" in dom  # an injected script would have renamed the page
    assert "pwned" in dom and "<script" not in dom and "<img" not in dom  # shown as text, never as markup
    assert "Uncaught" not in result.stderr and "Refused to execute" not in result.stderr
    assert "S01" in dom and "waived until 2999-01-01" in dom and "installer console" in dom
    assert "\x1b" not in dom and "\\x1b[2J" in dom


def test_html_screenshot(tmp_path, html_page):
    shot = tmp_path / "report.png"
    result = chromium(tmp_path, "--window-size=1200,1600", f"--screenshot={shot}", html_page.as_uri())
    assert shot.exists() and shot.stat().st_size > 20_000, result.stderr


def test_several_formats_in_one_run(tmp_path):
    vmx = tmp_path / "vm.vmx"
    vmx.write_text('RemoteDisplay.vnc.enabled = "TRUE"\n')
    out = tmp_path / "reports"
    out.mkdir()
    result = run_certify("scan", str(vmx), "--format", "json,sarif,junit,html,text", "-o", str(out), "-q")
    assert result.returncode == 1, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.sarif", "report.txt", "report.xml"]
    jsonschema.validate(json.loads((out / "report.sarif").read_text()), SARIF_SCHEMA)
    assert json.loads((out / "report.json").read_text())["verdict"] == "fail"
    assert run_certify("scan", str(vmx), "--format", "json,sarif", "-q").returncode == 2  # needs -o DIR
    assert "unknown report format yaml" in run_certify("scan", str(vmx), "--format", "json,yaml", "-o", str(out)).stderr


def test_severity_filter_is_for_display_only(tmp_path):
    vmx = tmp_path / "vm.vmx"
    vmx.write_text('RemoteDisplay.vnc.enabled = "TRUE"\n')
    result = run_certify("scan", str(vmx), "-q", "--severity", "critical")
    assert result.returncode == 1
    assert "vmx-vnc-enabled" not in result.stdout and "below critical not shown" in result.stdout
