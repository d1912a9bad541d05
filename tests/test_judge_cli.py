"""`certify scan --save-facts` and `certify judge`: same verdicts and exit codes, one-line errors. No guest launch."""

from __future__ import annotations

import json
import os
import stat
import textwrap

import pytest
from conftest import run_certify


def _vmx(tmp_path):
    (tmp_path / "vm").mkdir()
    vmx = tmp_path / "vm" / "appliance.vmx"
    vmx.write_text(textwrap.dedent("""\
        config.version = "8"
        scsi0:0.present = "TRUE"
        scsi0:0.fileName = "/etc/shadow"
        RemoteDisplay.vnc.enabled = "TRUE"
    """))
    return vmx


@pytest.fixture
def saved(tmp_path):
    """A scan's JSON report and the facts it saved."""
    facts, report = tmp_path / "facts.json", tmp_path / "report.json"
    result = run_certify("scan", str(_vmx(tmp_path)), "-q", "--format", "json", "-o", str(report), "--save-facts", str(facts))
    assert result.returncode == 1, result.stderr
    return facts, json.loads(report.read_text())


def _essence(report: dict) -> dict:
    return {k: report[k] for k in ("verdict", "findings", "check_status", "checks_run", "summary", "errors", "notes", "artifact",
                                   "profile", "profile_digest", "threshold")}  # fmt: skip


def test_saved_facts_are_private_and_judge_to_the_same_report(saved, tmp_path):
    facts, scanned = saved
    assert stat.S_IMODE(os.stat(facts).st_mode) == 0o600
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".certify-")]  # the atomic write left no temporary file
    result = run_certify("judge", str(facts), "--format", "json")
    assert result.returncode == 1, result.stderr
    judged = json.loads(result.stdout)
    assert _essence(judged) == _essence(scanned)
    assert judged["reevaluated"] is True and "reevaluated" not in scanned
    assert judged["timings"]["reevaluated"] is True and judged["timings"]["gathered"]["ingest"] == scanned["timings"]["ingest"]


def test_judge_takes_the_profile_waivers_and_fail_on_of_scan(saved, tmp_path):
    facts, scanned = saved
    waivers = tmp_path / "waivers.yaml"
    blocking = sorted({f["id"] for f in scanned["findings"] if f["status"] in ("fail", "not-evaluated")})
    waivers.write_text("waivers:\n" + "".join(f"  - check: {i}\n    reason: accepted\n    expires: 2999-01-01\n" for i in blocking))
    result = run_certify("judge", str(facts), "--format", "json", "--waivers", str(waivers), "--profile", "aws-marketplace", "-q")
    report = json.loads(result.stdout)
    assert (result.returncode, report["verdict"], report["profile"]) == (0, "pass", "aws-marketplace")
    assert all(f["waiver"] for f in report["findings"] if f["status"] in ("fail", "not-evaluated"))
    low = run_certify("judge", str(facts), "--fail-on", "critical", "--format", "json", "-q")
    assert low.returncode == (1 if any(f["severity"] == "critical" for f in scanned["findings"] if f["status"] == "fail") else 0)


def test_several_formats_go_to_a_directory_as_with_scan(saved, tmp_path):
    facts, _ = saved
    out = tmp_path / "reports"
    result = run_certify("judge", str(facts), "--format", "json,sarif,text", "-o", str(out), "-q")
    assert result.returncode == 1 and sorted(os.listdir(out)) == ["report.json", "report.sarif", "report.txt"]


def test_a_rejected_upload_judges_rejected_with_exit_2(tmp_path):
    import io
    import tarfile

    ova = tmp_path / "evil.ova"
    with tarfile.open(ova, "w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("../evil")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    facts = tmp_path / "facts.json"
    scanned = run_certify("scan", str(ova), "-q", "--format", "json", "--save-facts", str(facts))
    judged = run_certify("judge", str(facts), "-q", "--format", "json")
    assert scanned.returncode == judged.returncode == 2
    assert json.loads(judged.stdout)["rejection"] == json.loads(scanned.stdout)["rejection"]
    assert "rejected:" in judged.stderr


def _one_line_usage_error(result, *needles):
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_bad_facts_files_are_one_line_usage_errors(saved, tmp_path):
    facts, _ = saved
    doc = json.loads(facts.read_text())
    cases = {
        "missing.json": None,
        "garbage.json": b"\xff\xfe not json",
        "list.json": b"[]",
        "newer.json": json.dumps({**doc, "format_version": 99}).encode(),
        "deep.json": b"[" * 200_000,
    }
    unknown = json.loads(facts.read_text())
    name = next(iter(unknown["facts"]["values"]))
    unknown["facts"]["values"][name] = {"$": "dc", "type": "os:system", "fields": {}}
    cases["unknown-type.json"] = json.dumps(unknown).encode()
    for file, content in cases.items():
        path = tmp_path / file
        if content is not None:
            path.write_bytes(content)
        _one_line_usage_error(run_certify("judge", str(path), "-q"), str(path))
    _one_line_usage_error(run_certify("judge", str(tmp_path / "newer.json"), "-q"), "facts format version 99 is not one this certify reads")
    _one_line_usage_error(run_certify("judge", str(tmp_path / "unknown-type.json"), "-q"), "'os:system' is not a known fact type")
    _one_line_usage_error(run_certify("judge", str(tmp_path), "-q"), "a directory, not a facts file")


def test_outputs_never_replace_the_facts_or_each_other(saved, tmp_path):
    facts, _ = saved
    before = facts.read_bytes()
    _one_line_usage_error(run_certify("judge", str(facts), "--format", "json", "-o", str(facts), "-q"), "would overwrite the upload")
    assert facts.read_bytes() == before
    vmx = tmp_path / "vm" / "appliance.vmx"
    same = tmp_path / "same.json"
    _one_line_usage_error(run_certify("scan", str(vmx), "-q", "--format", "json", "-o", str(same), "--save-facts", str(same)),
                          "would be written to the same file")  # fmt: skip
    assert not same.exists()


def test_facts_gathered_under_a_stricter_ingest_are_not_judged_under_a_laxer_one(tmp_path):
    vmx = _vmx(tmp_path)
    strict = tmp_path / "strict.yaml"
    strict.write_text("extends: default\nreject_sha1_manifest: true\n")
    facts = tmp_path / "facts.json"
    assert run_certify("scan", str(vmx), "-q", "--profile", str(strict), "--save-facts", str(facts)).returncode == 1
    assert run_certify("judge", str(facts), "-q", "--profile", str(strict)).returncode == 1
    _one_line_usage_error(run_certify("judge", str(facts), "-q"), "reject_sha1_manifest off", "scan again")


def test_saved_facts_never_replace_a_file_of_a_bundle_read_in_place(tmp_path):
    vmx = _vmx(tmp_path)  # scanned as its directory: which file is the descriptor is only known once read
    before = vmx.read_bytes()
    report = tmp_path / "report.json"
    result = run_certify("scan", str(vmx.parent), "-q", "--format", "json", "-o", str(report), "--save-facts", str(vmx))
    _one_line_usage_error(result, "would overwrite a file of the upload; nothing written")
    assert vmx.read_bytes() == before and not report.exists()


def test_no_output_replaces_a_disk_of_the_upload_that_was_refused(tmp_path):
    """A disk refused unopened is still a file of the upload: neither a report nor the facts may replace it."""
    import subprocess

    (tmp_path / "vm").mkdir()
    disk = tmp_path / "vm" / "disk.vmdk"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "4M"], check=True)  # not the VMDK it claims to be
    (tmp_path / "vm" / "appliance.vmx").write_text('virtualHW.version = "19"\nscsi0:0.fileName = "disk.vmdk"\n')
    before = disk.read_bytes()
    for option in ("-o", "--save-facts"):
        result = run_certify("scan", str(tmp_path / "vm"), "-q", "--format", "json", option, str(disk))
        _one_line_usage_error(result, "would overwrite a file of the upload; nothing written")
        assert disk.read_bytes() == before
