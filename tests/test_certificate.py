"""Signed certification records: keygen, issue on a pass only, verify signature and bytes."""

from __future__ import annotations

import json

import pytest

from conftest import run_certify

DESCRIPTOR_ONLY = "include: [vmx-vnc-enabled, storage-path-outside-bundle]\n"


@pytest.fixture
def keys(tmp_path):
    result = run_certify("keygen", "-o", str(tmp_path / "signing"))
    assert result.returncode == 0, result.stderr
    private = tmp_path / "signing"
    assert oct(private.stat().st_mode & 0o777) == "0o600"
    return private, tmp_path / "signing.pub"


@pytest.fixture
def clean_vmx(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "vm.vmx").write_text('config.version = "8"\nvirtualHW.version = "19"\n')
    profile = tmp_path / "descriptor-only.yaml"
    profile.write_text(DESCRIPTOR_ONLY)
    return bundle / "vm.vmx", profile


def issue(tmp_path, artifact, profile, private, *extra):
    cert = tmp_path / "cert.json"
    result = run_certify("scan", str(artifact), "--profile", str(profile), "--certificate", str(cert), "--key", str(private), "-q", *extra)
    return result, cert


def test_pass_issues_a_certificate_that_verifies(tmp_path, keys, clean_vmx):
    private, public = keys
    vmx, profile = clean_vmx
    result, cert = issue(tmp_path, vmx, profile, private)
    assert result.returncode == 0, result.stderr
    record = json.loads(cert.read_text())
    assert record["schema"] == "certify-certificate/1" and record["verdict"] == "pass"
    assert record["profile"] == "descriptor-only" and record["checks_run"] == ["storage-path-outside-bundle", "vmx-vnc-enabled"]
    assert record["signature"]["algorithm"] == "ed25519" and record["catalog_version"].startswith("sha256:")
    ok = run_certify("verify-certificate", str(cert), str(vmx), "--key", str(public))
    assert ok.returncode == 0 and ok.stdout.startswith("valid: vm.vmx"), ok.stderr
    # The directory form names the same bundle.
    assert run_certify("verify-certificate", str(cert), str(vmx.parent), "--key", str(public)).returncode == 0


def test_changed_bytes_altered_record_or_other_key_do_not_verify(tmp_path, keys, clean_vmx):
    private, public = keys
    vmx, profile = clean_vmx
    _, cert = issue(tmp_path, vmx, profile, private)

    record = json.loads(cert.read_text())
    record["profile"] = "aws-marketplace"
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(record))
    result = run_certify("verify-certificate", str(forged), str(vmx), "--key", str(public))
    assert result.returncode == 1 and "signature does not verify" in result.stderr

    other = tmp_path / "other"
    run_certify("keygen", "-o", str(other))
    assert run_certify("verify-certificate", str(cert), str(vmx), "--key", f"{other}.pub").returncode == 1

    vmx.write_text(vmx.read_text() + 'RemoteDisplay.vnc.enabled = "TRUE"\n')
    result = run_certify("verify-certificate", str(cert), str(vmx), "--key", str(public))
    assert result.returncode == 1 and "is not the certified" in result.stderr


def test_failing_scan_writes_no_certificate(tmp_path, keys, clean_vmx):
    private, _ = keys
    vmx, profile = clean_vmx
    vmx.write_text('RemoteDisplay.vnc.enabled = "TRUE"\n')
    result, cert = issue(tmp_path, vmx, profile, private)
    assert result.returncode == 1 and not cert.exists()
    assert "no certificate written: the verdict is fail" in result.stderr


def test_key_handling_errors(tmp_path, keys, clean_vmx):
    private, public = keys
    vmx, profile = clean_vmx
    assert "already exists" in run_certify("keygen", "-o", str(private)).stderr
    result, _ = issue(tmp_path, vmx, profile, public)  # a public key cannot sign
    assert result.returncode == 2 and "not an unencrypted PEM private key" in result.stderr
    lone = run_certify("scan", str(vmx), "--certificate", str(tmp_path / "c.json"))
    assert lone.returncode == 2 and "--certificate and --key go together" in lone.stderr
    junk = tmp_path / "junk.json"
    junk.write_text("{}")
    assert run_certify("verify-certificate", str(junk), str(vmx), "--key", str(public)).returncode == 2


def test_explain():
    result = run_certify("explain", "storage-path-outside-bundle")
    assert result.returncode == 0
    assert "How to fix" in result.stdout and "allow_subdirectories = True" in result.stdout
    missing = run_certify("explain", "no-such-check")
    assert missing.returncode == 2 and "no such check" in missing.stderr


def test_unsigned_fields_and_malformed_signatures_are_invalid(tmp_path, keys, clean_vmx):
    private, public = keys
    vmx, profile = clean_vmx
    _, cert = issue(tmp_path, vmx, profile, private)
    record = json.loads(cert.read_text())
    assert record["profile_digest"].startswith("sha256:")
    for tamper in ({"key_id": "SHA256:someone-else"}, {"algorithm": "rsa"}, "abc", {"value": 5}):
        changed = dict(record)
        changed["signature"] = {**record["signature"], **tamper} if isinstance(tamper, dict) else tamper
        path = tmp_path / "t.json"
        path.write_text(json.dumps(changed))
        result = run_certify("verify-certificate", str(path), str(vmx), "--key", str(public))
        assert result.returncode == 1 and "Traceback" not in result.stderr, (tamper, result.stderr)


def test_keygen_bad_prefix_is_a_usage_error(tmp_path):
    for prefix in ("", str(tmp_path / "missing" / "k")):
        result = run_certify("keygen", "-o", prefix)
        assert result.returncode == 2 and "Traceback" not in result.stderr
