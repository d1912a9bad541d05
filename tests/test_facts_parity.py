"""Stored facts judge as the fresh scan did, on every image the session scans (no launch of its own).

Each session scan (conftest ``guest_scans``) saved its facts; here they are read
back and judged again, in this process (or, for the scan that ran with the
example plugin, by ``certify judge`` in the plugin's environment).
"""

from __future__ import annotations

import json

import pytest
from conftest import BARE_QCOW2_SHAPE, run_certify

from certify.factsjson import FactTypes
from certify.gathered import Gathered
from certify.model import Severity
from certify.pipeline import ScanOptions, ingest_switches, judge
from certify.plugins.manager import load_registry
from certify.policy.profile import load_profile

SECOND_PROFILE = "aws-marketplace"  # severity overrides and a lower threshold, no params: the statuses stay, severities move
COMPARED = ("verdict", "findings", "check_status", "checks_run", "summary", "errors", "notes", "artifact", "guest", "disks",
            "profile", "profile_digest", "threshold", "waivers")  # fmt: skip


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def _scans(guest_scans) -> dict:
    return {name: scan for name, scan in guest_scans.items() if name != f"shape:{BARE_QCOW2_SHAPE}"}  # that one is "qcow2"


def _profile_of(scan) -> str:
    return scan.args[scan.args.index("--profile") + 1] if "--profile" in scan.args else "default"


def _judged(scan, profile: str, registry) -> dict:
    """The JSON report of the stored facts judged under ``profile``."""
    if scan.env is not None:  # the example plugin's scan: its collector and check live in that environment
        result = run_certify("judge", str(scan.facts), "--profile", profile, "--format", "json", "-q", env=scan.env)
        assert result.returncode in (0, 1, 2, 3) and result.stdout, result.stderr
        return json.loads(result.stdout)
    types = FactTypes.for_collectors(registry.collectors.values())
    gathered = Gathered.from_json(json.loads(scan.facts.read_text()), types)
    report = judge(gathered, ScanOptions(profile=load_profile(profile)), registry)
    return json.loads(registry.reporters["json"].render(report))


def test_stored_facts_come_back_exactly(guest_scans, registry):
    types = FactTypes.for_collectors(registry.collectors.values())
    for name, scan in _scans(guest_scans).items():
        if scan.env is not None:
            continue  # its plugin's fact types are not installed here; judged by its own certify below
        doc = json.loads(scan.facts.read_text())
        gathered = Gathered.from_json(doc, types)
        assert gathered.to_json(types) == doc, name
        assert doc["artifact"]["sha256"] == scan.report["artifact"]["sha256"], name


def test_stored_facts_judge_as_the_fresh_scan_did(guest_scans, registry):
    for name, scan in _scans(guest_scans).items():
        judged = _judged(scan, _profile_of(scan), registry)
        for key in COMPARED:
            assert judged[key] == scan.report[key], f"{name}: {key} differs"
        assert judged["reevaluated"] is True and "reevaluated" not in scan.report
        gathered_timings = judged["timings"]["gathered"]  # the stages of the scan that gathered, as it timed them
        assert set(gathered_timings) == set(scan.report["timings"]) - {"checks"}, name
        assert gathered_timings["total"] <= scan.report["timings"]["total"], name


def test_stored_facts_judge_under_a_second_profile(guest_scans, registry):
    """What the fresh scan found, with the second profile's severities and threshold.

    Both profiles select every check and ingest alike, so a fresh scan under the
    second one gathers the same facts; only its severities and threshold differ.
    """
    second = load_profile(SECOND_PROFILE)
    assert second.params == {} and second.include == ("*",) and not second.exclude
    for name, scan in _scans(guest_scans).items():
        first = load_profile(_profile_of(scan))
        assert ingest_switches(first) == ingest_switches(second) and first.include == second.include and first.severity == {}
        judged = _judged(scan, SECOND_PROFILE, registry)
        fresh = scan.report
        assert judged["check_status"] == fresh["check_status"], name
        assert judged["errors"] == fresh["errors"], name

        def severity(finding):
            override = second.severity_for(finding["id"])
            return override.label if override is not None else finding["severity"]

        expected = sorted((f["id"], f["fingerprint"], f["status"], f["evidence"], severity(f)) for f in fresh["findings"])
        got = sorted((f["id"], f["fingerprint"], f["status"], f["evidence"], f["severity"]) for f in judged["findings"])
        assert got == expected, name
        blocking = any(f["status"] in ("fail", "not-evaluated") and f["waiver"] is None
                       and Severity.parse(f["severity"]) >= second.fail_on for f in judged["findings"])  # fmt: skip
        errored = bool(judged["errors"]) or any(f["status"] == "error" for f in judged["findings"])
        assert judged["verdict"] == ("error" if errored else "fail" if blocking else "pass"), name
        assert (judged["profile"], judged["threshold"]) == (SECOND_PROFILE, second.fail_on.label)
