"""``certify reevaluate``: stored scans judged again from stored facts under the installed ruleset.

A scan "judged under an older ruleset" is a row with another ruleset digest and
the verdict that ruleset gave; the facts come from a real scan by a worker.
"""

from __future__ import annotations

import json
import os

import pytest

from certify.policy.profile import load_profile
from certify.service.store import ScanRequest, bare_digest
from conftest import run_certify
from pgserver import db_url, postgres_server  # noqa: F401 - fixtures
from proctools import processes_naming
from test_service_worker import VNC_VMX, InThreadWorker, Service, wait_for

OLD_RULESET = "sha256:" + "0" * 64


@pytest.fixture
def service(db_url, tmp_path):
    s = Service(tmp_path, db_url)
    yield s
    s.store.close()


def judged_long_ago(service: Service, sha: str, filename: str, verdict: str):
    """A succeeded scan that an older ruleset judged ``verdict``."""
    row, _ = service.store.submit_scan(ScanRequest(
        tenant="acme", artifact_sha256=sha, filename=filename, profile_name="default",
        profile_digest="sha256:" + "1" * 64, ruleset_digest=OLD_RULESET, certify_version="0.0.1"))
    claim = service.store.claim_next("old-worker", 30)
    assert claim.scan.id == row.id
    return service.store.complete(row.id, "old-worker", claim.attempt, json.dumps({"verdict": verdict}), verdict)


def scanned_by_another_tenant(service: Service, body: bytes, filename: str) -> str:
    """Facts of ``body`` kept from a real scan under the installed ruleset, by a tenant other than acme's.

    (Facts are the artifact's, whoever uploaded it; a scan of acme's own under the installed ruleset
    would already be acme's current verdict, with nothing left to judge again.)
    """
    sha = service.upload(body, filename, tenant="beta")
    first = service.submit(sha, filename, tenant="beta")
    with InThreadWorker(service.settings()):
        done = wait_for("the scan ends", lambda: service.settled(first.id, tenant="beta"))
    assert done.verdict == "fail"
    return sha


def reevaluate(service: Service, *args: str):
    result = run_certify("reevaluate", *args, "--db", service.url)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_verdict_the_new_ruleset_changes_is_a_new_linked_scan_and_the_old_one_stays(service):
    sha = scanned_by_another_tenant(service, VNC_VMX, "app.vmx")
    old = judged_long_ago(service, service.upload(VNC_VMX, "app.vmx"), "app.vmx", "pass")
    unknown = judged_long_ago(service, service.upload(VNC_VMX + b"# other\n", "other.vmx"), "other.vmx", "fail")

    out = reevaluate(service, "--all")
    assert f"{old.id} " in out and "pass -> fail" in out
    assert f"{unknown.id} " in out and "needs a new scan" in out
    assert "1 scan(s) judged again" in out and "1 verdict(s) changed" in out

    kept = service.scan(old.id)
    assert (kept.verdict, kept.ruleset_digest) == ("pass", bare_digest(OLD_RULESET))  # as issued
    assert json.loads(service.store.get_report("acme", old.id)) == {"verdict": "pass"}
    new = next(r for r in service.store.list_scans("acme", limit=50)[0] if r.reevaluation_of == old.id)
    assert (new.state, new.verdict, new.reevaluated) == ("succeeded", "fail", True)
    assert new.ruleset_digest == bare_digest(service.ruleset)
    # Under the key an API submission has (bare hex digests): a submission now finds the re-judged scan.
    assert service.store.submit_scan(ScanRequest(
        tenant="acme", artifact_sha256=sha, filename="app.vmx", profile_name="default",
        profile_digest=load_profile("default").digest.removeprefix("sha256:"),
        ruleset_digest=bare_digest(service.ruleset), certify_version=new.certify_version)) == (new, False)
    report = json.loads(service.store.get_report("acme", new.id))
    assert report["verdict"] == "fail" and report["reevaluated"] is True
    assert service.store.get_rendering("acme", new.id, "json") == service.store.get_report("acme", new.id)
    assert service.store.get_rendering("acme", new.id, "sarif")
    latest = {v.profile_name: v for v in service.store.latest_verdicts("acme", sha)}
    assert latest["default"].verdict == "fail"

    again = reevaluate(service, "--all", "--format", "json")
    lines = [json.loads(line) for line in again.splitlines()]
    assert not any(line["changed"] for line in lines)
    assert len([r for r in service.store.list_scans("acme", limit=50)[0] if r.reevaluation_of]) == 1


def test_a_scan_whose_key_was_scanned_again_under_the_installed_ruleset_is_left_alone(service):
    sha = service.upload(VNC_VMX, "app.vmx")
    old = judged_long_ago(service, sha, "app.vmx", "pass")
    assert [r.id for r in service.store.reevaluation_candidates(service.ruleset)] == [old.id]
    service.submit(sha, "app.vmx")  # queued under the installed ruleset: its verdict will be the current one
    assert service.store.reevaluation_candidates(service.ruleset) == []
    out = reevaluate(service, "--all")
    assert old.id not in out and "0 scan(s) judged again" in out


def test_since_leaves_older_scans_alone(service):
    sha = service.upload(VNC_VMX, "app.vmx")
    old = judged_long_ago(service, sha, "app.vmx", "pass")
    out = reevaluate(service, "--since", "2999-01-01")
    assert old.id not in out and "0 scan(s) judged again" in out


@pytest.mark.parametrize("args, message", [((), "one of the arguments --all --since is required"),
                                           (("--since", "yesterday"), "is not a date"),
                                           (("--all", "--since", "2026-01-01"), "not allowed with")])
def test_reevaluate_needs_all_or_a_date(args, message, tmp_path):
    result = run_certify("reevaluate", *args, "--data", str(tmp_path / "data"))
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "data").exists()  # nothing made for a refused command line


def test_serve_rejudges_scans_of_an_older_ruleset_on_start_in_the_background(tmp_path):
    from test_service_e2e import Services

    service = Service(tmp_path, f"sqlite:///{tmp_path / 'data' / 'certify.db'}")
    services = Services(tmp_path)
    try:
        sha = scanned_by_another_tenant(service, VNC_VMX, "app.vmx")
        old = judged_long_ago(service, service.upload(VNC_VMX, "app.vmx"), "app.vmx", "pass")

        served = services.start("--workers", "0")
        wait_for("serve says so", lambda: any("judging them again in the background" in line for line in served.log))
        for pid in processes_naming(f"reevaluate\0--all\0--data\0{service.data}"):
            # Found while it runs: it must be at the lowest priority. Then back to normal, so that a loaded
            # machine cannot starve it past this test's patience (that it would wait is the point of nice 19).
            assert os.getpriority(os.PRIO_PROCESS, pid) == 19
            os.setpriority(os.PRIO_PROCESS, pid, 0)
        new = wait_for("the old scan is judged again",
                       lambda: next((r for r in service.store.list_scans("acme", limit=50)[0]
                                     if r.reevaluation_of == old.id), None))
        assert (new.state, new.verdict, new.reevaluated) == ("succeeded", "fail", True)
        wait_for("the change is logged", lambda: any("pass -> fail" in line for line in served.log))
        assert services.stop(served) == 0

        again = services.start("--workers", "0")  # nothing left to re-judge: nothing started
        assert services.stop(again) == 0
        assert not any("judging them again" in line for line in again.log)
        assert len([r for r in service.store.list_scans("acme", limit=50)[0] if r.reevaluation_of]) == 1
    finally:
        left = services.leftovers()
        services.close()
        service.store.close()
    assert not left, left
