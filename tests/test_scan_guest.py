"""End to end through the CLI, with real appliances booted by libguestfs (shared per session)."""

from __future__ import annotations

import json

import pytest

from certify.plugins.manager import load_registry

pytestmark = pytest.mark.guest


def failing(report: dict) -> set[tuple]:
    return {
        (f["id"], f["severity"], f["location"]["layer"], f["location"].get("path") or f["location"].get("key"))
        for f in report["findings"]
        if f["status"] == "fail"
    }


def test_dirty_ova_fails_with_exactly_the_planted_findings(guest_scans, appliances):
    scan = guest_scans["dirty"]
    report = scan.report
    assert scan.returncode == 1, scan.stderr
    assert report["verdict"] == "fail"
    assert failing(report) == {
        ("ssh-host-keys-present", "high", "guest", "/etc/ssh/ssh_host_ed25519_key"),
        ("ssh-host-keys-present", "high", "guest", "/etc/ssh/ssh_host_rsa_key"),
        ("ssh-authorized-keys-present", "critical", "guest", "/root/.ssh/authorized_keys"),
        ("ssh-authorized-keys-present", "critical", "guest", "/home/alice/.ssh/authorized_keys2"),
        ("ssh-authorized-keys-present", "critical", "guest", "/home/we[ir]d/.ssh/authorized_keys"),
        ("scratch-and-crash-residue", "low", "guest", "/home/bob/.ssh/authorized_keys.bak"),  # a backup sshd ignores
        ("vmx-vnc-enabled", "critical", "descriptor", "RemoteDisplay.vnc.enabled"),
        ("descriptor-secret", "high", "descriptor", "RemoteDisplay.vnc.password"),
        ("extraconfig-smuggling", "high", "descriptor", "RemoteDisplay.vnc.enabled"),
        ("extraconfig-smuggling", "high", "descriptor", "RemoteDisplay.vnc.port"),
        ("extraconfig-smuggling", "high", "descriptor", "RemoteDisplay.vnc.password"),
        ("unsigned-bundle", "info", "bundle", None),
    }
    assert [f for f in report["findings"] if f["status"] != "fail"] == []
    failed = {"ssh-authorized-keys-present", "ssh-host-keys-present", "vmx-vnc-enabled", "descriptor-secret",
              "extraconfig-smuggling", "unsigned-bundle", "scratch-and-crash-residue"}  # fmt: skip
    assert report["check_status"] == {c: ("fail" if c in failed else "pass") for c in report["checks_run"]}
    assert len(report["checks_run"]) == 59


def test_dirty_findings_name_keys_by_fingerprint_and_never_repeat_secrets(guest_scans, appliances):
    report = guest_scans["dirty"].report
    by_path = {f["location"].get("path"): f for f in report["findings"] if f["location"]["layer"] == "guest"}
    planted = appliances.planted
    assert planted.host_ed25519_fp in by_path["/etc/ssh/ssh_host_ed25519_key"]["evidence"]
    assert by_path["/etc/ssh/ssh_host_rsa_key"]["evidence"].startswith("ssh-rsa SHA256:")
    assert planted.root_key_fp in by_path["/root/.ssh/authorized_keys"]["evidence"]
    alice = by_path["/home/alice/.ssh/authorized_keys2"]["evidence"]
    assert alice.startswith("2 keys for alice:") and all(fp in alice for fp in planted.alice_key_fps)
    assert planted.weird_key_fp in by_path["/home/we[ir]d/.ssh/authorized_keys"]["evidence"]
    for f in by_path.values():
        assert f["location"]["file"] == "dirty-appliance-disk1.vmdk"
    text = str(report)
    assert "PRIVATE KEY" not in text and "AAAA" not in text  # no key material, only fingerprints
    vnc = next(f for f in report["findings"] if f["id"] == "vmx-vnc-enabled")
    assert "vendor123" not in text
    assert vnc["location"] == {"layer": "descriptor", "file": "dirty-appliance.ovf", "key": "RemoteDisplay.vnc.enabled", "line": vnc["location"]["line"]}
    assert "RemoteDisplay.vnc.password" in vnc["evidence"]


def test_report_contract_fields(guest_scans):
    report = guest_scans["dirty"].report
    assert report["schema"] == "certify-report/1"
    assert report["tool"]["name"] == "certify"
    assert report["artifact"]["kind"] == "ova" and len(report["artifact"]["sha256"]) == 64
    assert report["profile"] == "default"
    assert report["checks_run"] == sorted(report["check_status"])
    assert set(report["timings"]) >= {"ingest", "guest", "checks", "total"}
    assert report["guest"]["distro"] == "debian" and report["guest"]["hostname"] == "vendor-build-07"
    assert [d["format"] for d in report["disks"]] == ["vmdk"]
    assert report["disks"][0]["subformat"] == "streamOptimized"
    for finding in report["findings"]:
        assert set(finding) == {"id", "severity", "title", "status", "location", "evidence", "remediation",
                                "code", "fingerprint", "waiver", "known"}  # fmt: skip
        assert finding["remediation"]


def test_artifact_sha256_is_the_uploads_bytes(guest_scans, appliances):
    import hashlib

    assert guest_scans["dirty"].report["artifact"]["sha256"] == hashlib.sha256(appliances.dirty_ova.read_bytes()).hexdigest()


def test_clean_ova_passes_and_third_party_plugin_runs_in_the_scan(guest_scans):
    scan = guest_scans["clean+plugin"]
    report = scan.report
    assert scan.returncode == 0, scan.stderr
    assert report["verdict"] == "pass"
    # The plugin's low-severity finding is reported without failing the appliance.
    assert failing(report) == {("acme-generic-hostname", "low", "guest", "/etc/hostname"), ("unsigned-bundle", "info", "bundle", None)}
    assert "acme-generic-hostname" in report["checks_run"]
    assert {"name": "acme", "distribution": "acme-certify-checks", "version": "1.2.0"} in report["plugins"]
    assert report["check_status"]["ssh-authorized-keys-present"] == "pass"


def test_bare_qcow2_disk_is_inspected_and_descriptor_checks_do_not_apply(guest_scans, appliances):
    scan = guest_scans["qcow2"]
    report = scan.report
    assert scan.returncode == 1
    assert report["artifact"]["kind"] == "disk"
    assert report["disks"][0]["format"] == "qcow2"
    assert failing(report) == {("ssh-host-keys-present", "high", "guest", "/etc/ssh/ssh_host_ed25519_key")}
    assert appliances.qcow2_host_fp in report["findings"][0]["evidence"]
    assert report["check_status"]["vmx-vnc-enabled"] == "not-applicable"
    assert report["check_status"]["storage-path-outside-bundle"] == "not-applicable"


def test_scans_fall_back_from_unusable_kvm_by_themselves(guest_scans):
    # No test sets LIBGUESTFS_BACKEND_SETTINGS: the product decides.
    for scan in guest_scans.values():
        assert "starting the inspection appliance (" in scan.stderr
        assert scan.report["errors"] == []


def test_disk_without_an_operating_system_never_passes(guest_scans):
    scan = guest_scans["no-os"]
    report = scan.report
    assert scan.returncode == 1 and report["verdict"] == "fail"
    statuses = report["check_status"]
    guest_checks = {c.id for c in load_registry().checks.values() if c.layer.value == "guest"}
    assert len(guest_checks) == 39 and {statuses[c] for c in guest_checks} == {"not-evaluated"}
    bundle_checks = ("bundle-extraneous-files", "dangling-reference", "disk-format-mismatch", "disk-external-reference",
                     "disk-corrupt", "disk-hidden-state")
    assert {statuses[c] for c in bundle_checks} == {"pass"}
    assert {c for c, s in statuses.items() if s == "not-applicable"} == {c for c in statuses if c not in (
        *guest_checks, *bundle_checks)}  # fmt: skip
    assert statuses["unsigned-bundle"] == "not-applicable"
    for finding in report["findings"]:
        assert finding["status"] == "not-evaluated"
        assert "no operating system found" in finding["evidence"]


def test_real_scan_in_every_format(guest_scans):
    import xml.etree.ElementTree as ET

    import jsonschema

    from test_report_formats import SARIF_SCHEMA

    outdir = guest_scans["dirty"].outdir
    assert sorted(p.name for p in outdir.iterdir()) == ["report.html", "report.json", "report.sarif", "report.txt", "report.xml"]
    sarif = json.loads((outdir / "report.sarif").read_text())
    jsonschema.validate(sarif, SARIF_SCHEMA)
    assert len(sarif["runs"][0]["results"]) == len(failing(guest_scans["dirty"].report))
    junit = ET.parse(outdir / "report.xml").getroot()
    assert junit.get("failures") == "7"
    html = (outdir / "report.html").read_text()
    assert "NOT CERTIFIED" in html and "/etc/ssh/ssh_host_ed25519_key" in html
    assert "NOT CERTIFIED" in (outdir / "report.txt").read_text()


def test_clean_ova_certificate_verifies_against_the_ova(guest_scans, appliances, signing_key):
    from conftest import run_certify

    cert = guest_scans["clean+plugin"].outdir / "cert.json"
    record = json.loads(cert.read_text())
    assert record["artifact"]["name"] == "clean-appliance.ova"
    assert record["disks"][0]["file"] == "clean-appliance-disk1.vmdk"
    assert "acme-generic-hostname" in record["checks_run"]
    result = run_certify("verify-certificate", str(cert), str(appliances.clean_ova), "--key", str(signing_key[1]))
    assert result.returncode == 0, result.stderr
    other = run_certify("verify-certificate", str(cert), str(appliances.dirty_ova), "--key", str(signing_key[1]))
    assert other.returncode == 1
