"""The service's workers against the store directly (no HTTP): real worker processes, real scan children.

Uploads are VMX descriptors built here (a real scan of one needs no guest
launch); the queue tests use the fake scan engine (``fake:SECONDS``), a child
that sleeps, so that a scan can be caught in progress. Leases are seconds long.
Waiting is polling with a generous deadline that only keeps a broken test from
hanging; the one timed assertion is the issue's "child gone within 5 s".
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from certify.catalog import installed_ruleset_digest
from certify.plugins.manager import load_registry
from certify.policy.profile import load_profile
from certify.service.blobs import BlobStore
from certify.service.db import renderings, reports
from certify.service.fakescan import parse_engine
from certify.service.settings import ServiceSettings
from certify.service.store import LeaseLost, ScanRequest, Store
from certify.service.worker import facts_key, run_worker, runtime_dir
from conftest import run_certify
from pgserver import db_url, postgres_server  # noqa: F401 - fixtures
from proctools import DEADLINE, gone, scan_children, wait_for

VNC_VMX = b'config.version = "8"\nvirtualHW.version = "19"\nRemoteDisplay.vnc.enabled = "TRUE"\n'
CLEAN_VMX = b'config.version = "8"\nvirtualHW.version = "19"\n'
# Only descriptor checks: a VMX without disks can pass, so a certificate can be issued without a guest launch.
DESCRIPTOR_ONLY = "name: descriptor-only\ninclude: ['vmx-*', 'storage-*', 'extraconfig-*', 'host-*']\n"
LEASE = 2.0


class Service:
    """A data directory, its store and blob directory, and helpers to feed them."""

    def __init__(self, root: Path, url: str) -> None:
        self.data = root / "data"
        self.url = url
        self.store = Store.open(url)
        self.blobs = BlobStore(self.data)
        self.ruleset = installed_ruleset_digest()

    def upload(self, body: bytes, filename: str, tenant: str = "acme") -> str:
        sha = hashlib.sha256(body).hexdigest()
        if not self.blobs.exists(sha):
            self.blobs.put([body], sha, 1 << 20)
        self.store.record_blob(tenant, sha, len(body), filename)
        return sha

    def submit(self, sha: str, filename: str, profile: str = "default", tenant: str = "acme", force: bool = False,
               **extra):
        row, _ = self.store.submit_scan(ScanRequest(
            tenant=tenant, artifact_sha256=sha, filename=filename, profile_name=profile,
            profile_digest=load_profile(profile).digest, ruleset_digest=self.ruleset, certify_version="test",
            **extra), force=force)
        return row

    def scan(self, scan_id: str, tenant: str = "acme"):
        return self.store.get_scan(tenant, scan_id)

    def settled(self, scan_id: str, tenant: str = "acme"):
        row = self.scan(scan_id, tenant)
        return row if row.state in ("succeeded", "failed", "cancelled") else None

    def count(self, table, scan_id: str) -> int:
        with self.store.engine.connect() as c:
            return c.execute(sa.select(sa.func.count()).select_from(table).where(table.c.scan_id == scan_id)).scalar_one()

    def settings(self, **kw) -> ServiceSettings:
        return ServiceSettings(data_dir=self.data, db_url=self.url, lease_seconds=LEASE, **kw)

    def worker_process(self, worker_id: str, engine: str, *extra: str, log: Path, lease: float = LEASE) -> subprocess.Popen:
        with open(log, "ab") as err:
            return subprocess.Popen([sys.executable, "-m", "certify.service.worker", "--data", str(self.data),
                                     "--db", self.url, "--id", worker_id, "--engine", engine, "--lease", str(lease),
                                     *extra], stdout=subprocess.DEVNULL, stderr=err)


class InThreadWorker:
    """``run_worker`` in a thread of the test process, stopped on exit."""

    def __init__(self, settings: ServiceSettings, worker_id: str = "w-thread") -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=run_worker, args=(settings, worker_id, self.stop), daemon=True)

    def __enter__(self) -> InThreadWorker:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=DEADLINE)


@pytest.fixture
def service(db_url, tmp_path):
    s = Service(tmp_path, db_url)
    yield s
    s.store.close()


@pytest.fixture
def sqlite_service(tmp_path):
    """The process tests: one database is enough to show the worker's behaviour; the store's own suite covers both."""
    s = Service(tmp_path, f"sqlite:///{tmp_path / 'data' / 'certify.db'}")
    yield s
    s.store.close()


@pytest.fixture
def descriptor_only(tmp_path) -> str:
    profile = tmp_path / "descriptor-only.yaml"
    profile.write_text(DESCRIPTOR_ONLY)
    return str(profile)


@pytest.fixture
def workers():
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:  # only what this test started, by pid
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def leftovers(service: Service, scan_id: str) -> list[Path]:
    return [p for p in [Path(runtime_dir(scan_id)), *(service.data / "work").glob(f"scan-{scan_id}-*")] if p.exists()]


# -- the store's renderings -----------------------------------------------------------------------


def claimed(service: Service, body: bytes = VNC_VMX, worker: str = "w1"):
    sha = service.upload(body, "app.vmx")
    row = service.submit(sha, "app.vmx")
    claim = service.store.claim_next(worker, 30)
    assert claim is not None and claim.scan.id == row.id
    return claim


def test_renderings_are_stored_with_the_report_and_seen_only_by_their_tenant(service):
    claim = claimed(service)
    service.store.complete(claim.scan.id, "w1", claim.attempt, '{"r": 1}', "fail",
                           renderings={"json": '{"r": 1}', "text": "verdict: fail\n"})
    assert service.store.get_rendering("acme", claim.scan.id, "text") == "verdict: fail\n"
    assert service.store.get_rendering("acme", claim.scan.id, "json") == service.store.get_report("acme", claim.scan.id)
    assert service.store.get_rendering("acme", claim.scan.id, "sarif") is None
    assert service.store.get_rendering("other", claim.scan.id, "text") is None
    service.store.put_rendering(claim.scan.id, "html", "<p>é</p>")
    service.store.put_rendering(claim.scan.id, "html", "<p>second</p>")  # a re-render replaces
    assert service.store.get_rendering("acme", claim.scan.id, "html") == "<p>second</p>"


def test_a_refused_completion_leaves_no_renderings_behind(service):
    claim = claimed(service)
    with pytest.raises(LeaseLost):
        service.store.complete(claim.scan.id, "intruder", claim.attempt, "{}", "pass", renderings={"text": "pass"})
    assert service.count(renderings, claim.scan.id) == 0
    assert service.store.get_report("acme", claim.scan.id) is None


def test_release_gives_a_scan_back_at_the_same_attempt_unless_its_cancel_was_asked(service):
    claim = claimed(service)
    assert service.store.release(claim.scan.id, "w1", claim.attempt) is True
    row = service.scan(claim.scan.id)
    assert (row.state, row.attempt, row.lease_owner) == ("queued", 1, None)
    assert service.store.release(claim.scan.id, "w1", claim.attempt) is False  # no longer held
    again = service.store.claim_next("w2", 30)
    service.store.request_cancel("acme", again.scan.id)
    assert service.store.release(again.scan.id, "w2", again.attempt) is True
    assert service.scan(again.scan.id).state == "cancelled"


# -- real scans: index once, judge many ----------------------------------------------------------


def test_a_real_scan_stores_report_renderings_and_facts_and_another_profile_is_judged_from_them(service, tmp_path):
    sha = service.upload(VNC_VMX, "app.vmx")
    first = service.submit(sha, "app.vmx", "default")
    with InThreadWorker(service.settings()):
        done = wait_for("the scan ends", lambda: service.settled(first.id))
        assert (done.state, done.reevaluated) == ("succeeded", False), done.failure_message
        report = json.loads(service.store.get_report("acme", first.id))
        assert report["verdict"] == done.verdict and report["artifact"]["path"] == "app.vmx"
        registry = load_registry()
        for fmt in registry.reporters:
            assert service.store.get_rendering("acme", first.id, fmt), fmt
        assert service.store.get_rendering("acme", first.id, "json") == service.store.get_report("acme", first.id)
        assert service.store.get_rendering("acme", first.id, "certificate") is None  # no signing key
        kept = service.store.facts_for(sha)
        assert len(kept) == 1
        # every installed check's facts were gathered, not only the default profile's
        assert set(registry.collectors) <= set(kept[0].collector_versions)

        other = service.submit(sha, "app.vmx", "aws-marketplace")
        judged = wait_for("the second scan ends", lambda: service.settled(other.id))
    assert (judged.state, judged.reevaluated) == ("succeeded", True), judged.failure_message
    assert len(service.store.facts_for(sha)) == 1  # nothing gathered again
    upload = tmp_path / "app.vmx"
    upload.write_bytes(VNC_VMX)
    fresh = run_certify("scan", str(upload), "--profile", "aws-marketplace", "--format", "json", "-q")
    expected = json.loads(fresh.stdout)
    stored = json.loads(service.store.get_report("acme", other.id))
    assert stored["verdict"] == expected["verdict"] == judged.verdict
    assert stored["reevaluated"] is True
    assert stored["findings"] == expected["findings"]
    assert stored["check_status"] == expected["check_status"]


def test_a_pass_with_a_signing_key_stores_a_certificate_that_verifies(service, descriptor_only, signing_key, tmp_path):
    sha = service.upload(CLEAN_VMX, "clean.vmx")
    row = service.submit(sha, "clean.vmx", descriptor_only)
    failing = service.submit(service.upload(VNC_VMX, "vnc.vmx"), "vnc.vmx", descriptor_only)
    with InThreadWorker(service.settings(signing_key=str(signing_key[0]))):
        done = wait_for("the scan ends", lambda: service.settled(row.id))
        failed = wait_for("the other scan ends", lambda: service.settled(failing.id))
    assert (done.state, done.verdict) == ("succeeded", "pass"), done.failure_message
    certificate = tmp_path / "cert.json"
    certificate.write_text(service.store.get_rendering("acme", row.id, "certificate"))
    upload = tmp_path / "clean.vmx"
    upload.write_bytes(CLEAN_VMX)
    assert run_certify("verify-certificate", str(certificate), str(upload), "--key", str(signing_key[1])).returncode == 0
    assert failed.verdict == "fail"
    assert service.store.get_rendering("acme", failing.id, "certificate") is None  # never for anything but a pass


def test_a_changed_collector_version_invalidates_only_its_own_facts(service, descriptor_only, tmp_path):
    upload = tmp_path / "app.vmx"
    upload.write_bytes(VNC_VMX)
    facts_file = tmp_path / "facts.json"
    assert run_certify("scan", str(upload), "--every-fact", "--save-facts", str(facts_file), "-q",
                       "--format", "json").returncode in (0, 1)
    document = json.loads(facts_file.read_text())
    registry = load_registry()
    default = load_profile("default")
    read_by_default = sorted({name for c in registry.checks.values() if default.selects(c.id) for name in c.facts}
                             & set(registry.collectors))
    changed = read_by_default[0]
    document["collector_versions"][changed] = "0-older"  # as if gathered by an earlier version of that collector
    sha = service.upload(VNC_VMX, "app.vmx")
    from certify.gathered import Gathered
    service.store.put_facts(sha, facts_key(Gathered.from_json(document)), document)

    untouched = service.submit(sha, "app.vmx", descriptor_only)  # reads no guest fact: the stored facts stand
    reading = service.submit(sha, "app.vmx", "default")  # reads the changed collector's fact: scan again
    with InThreadWorker(service.settings()):
        a = wait_for("the descriptor-only scan ends", lambda: service.settled(untouched.id))
        b = wait_for("the default scan ends", lambda: service.settled(reading.id))
    assert (a.state, a.reevaluated) == ("succeeded", True)
    assert (b.state, b.reevaluated) == ("succeeded", False)
    versions = sorted(r.collector_versions[changed] for r in service.store.facts_for(sha))
    assert versions == sorted(["0-older", registry.collectors[changed].version])


def test_every_fact_gathers_what_no_check_of_the_profile_reads(descriptor_only, tmp_path):
    upload = tmp_path / "app.vmx"
    upload.write_bytes(VNC_VMX)
    some, every = tmp_path / "some.json", tmp_path / "every.json"
    run_certify("scan", str(upload), "--profile", descriptor_only, "--save-facts", str(some), "-q")
    run_certify("scan", str(upload), "--profile", descriptor_only, "--every-fact", "--save-facts", str(every), "-q")
    assert json.loads(some.read_text())["collector_versions"] == {}
    assert set(json.loads(every.read_text())["collector_versions"]) == set(load_registry().collectors)


def test_an_upload_ingest_cannot_name_fails_with_the_reason(service):
    sha = service.upload(VNC_VMX, "app.weird")
    row = service.submit(sha, "app.weird")
    with InThreadWorker(service.settings()):
        done = wait_for("the scan ends", lambda: service.settled(row.id))
    assert (done.state, done.failure_reason) == ("failed", "error")
    assert "not a recognised appliance" in done.failure_message
    assert service.store.get_report("acme", row.id) is None


# -- the fake engine --------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["fake", "fake:", "fake:x", "fake:-1", "real", "fake:1e9"])
def test_the_fake_engine_must_be_named_exactly(engine):
    with pytest.raises(ValueError):
        parse_engine(engine)


def test_the_real_engine_is_the_default():
    assert parse_engine(ServiceSettings(data_dir=Path("d")).scan_engine) is None
    assert parse_engine("fake:0.5") == 0.5


def test_a_fake_scan_is_a_real_report_that_never_passes_and_whose_facts_are_never_reused(service, descriptor_only):
    sha = service.upload(CLEAN_VMX, "clean.vmx")
    row = service.submit(sha, "clean.vmx", descriptor_only)  # a real scan of it would pass
    with InThreadWorker(service.settings(scan_engine="fake:0")):
        done = wait_for("the fake scan ends", lambda: service.settled(row.id))
    assert done.state == "succeeded" and done.verdict != "pass"
    assert "fake scan engine" in " ".join(json.loads(service.store.get_report("acme", row.id))["notes"])
    real = service.submit(sha, "clean.vmx", descriptor_only, force=True)
    with InThreadWorker(service.settings()):
        again = wait_for("the real scan ends", lambda: service.settled(real.id))
    assert (again.verdict, again.reevaluated) == ("pass", False)


# -- worker processes: kills, cancel, timeout, sharing --------------------------------------------


def running_at(service: Service, scan_id: str, stage: str):
    row = service.scan(scan_id)
    return row if row.state == "running" and row.stage == stage else None


def test_a_worker_killed_mid_scan_is_rerun_as_attempt_2_with_exactly_one_report(sqlite_service, workers, tmp_path):
    s = sqlite_service
    row = s.submit(s.upload(VNC_VMX, "app.vmx"), "app.vmx")
    first = s.worker_process("w-a", "fake:60", log=tmp_path / "w-a.log")
    workers.append(first)
    wait_for("the scan is under way", lambda: running_at(s, row.id, "collectors"))
    children = wait_for("its scan child", lambda: scan_children(row.id))
    first.send_signal(signal.SIGKILL)
    first.wait()
    wait_for("the scan child dies with its worker", lambda: all(gone(pid) for pid in children))
    workers.append(s.worker_process("w-b", "fake:0", log=tmp_path / "w-b.log"))
    done = wait_for("the scan runs again", lambda: s.settled(row.id))
    assert (done.state, done.attempt) == ("succeeded", 2), done.failure_message
    assert s.count(reports, row.id) == 1
    assert not leftovers(s, row.id)  # what the killed worker left was cleared by the next
    assert f"scan {row.id} (attempt 2)" in (tmp_path / "w-b.log").read_text()


def test_a_scan_whose_workers_keep_dying_fails_worker_lost_after_max_attempts(sqlite_service, workers, tmp_path):
    s = sqlite_service
    row = s.submit(s.upload(VNC_VMX, "app.vmx"), "app.vmx", max_attempts=2)
    for attempt in (1, 2):
        worker = s.worker_process(f"w-{attempt}", "fake:60", log=tmp_path / "w.log")
        workers.append(worker)
        wait_for(f"attempt {attempt} is under way",
                 lambda: (r := running_at(s, row.id, "collectors")) is not None and r.attempt == attempt)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    workers.append(s.worker_process("w-reaper", "fake:0", log=tmp_path / "w.log"))
    done = wait_for("the scan ends", lambda: s.settled(row.id))
    assert (done.state, done.failure_reason, done.attempt) == ("failed", "worker_lost", 2)
    assert not leftovers(s, row.id)  # cleared by the worker that reaped it
    assert s.store.get_report("acme", row.id) is None


def test_cancel_of_a_running_scan_takes_the_child_down_within_5_s(sqlite_service, workers, tmp_path):
    s = sqlite_service
    row = s.submit(s.upload(VNC_VMX, "app.vmx"), "app.vmx")
    # A lease far longer than 5 s: the cancel must not wait for a renewal to be seen.
    workers.append(s.worker_process("w-c", "fake:120", log=tmp_path / "w.log", lease=60))
    wait_for("the scan is under way", lambda: running_at(s, row.id, "collectors"))
    children = wait_for("its scan child", lambda: scan_children(row.id))
    asked = time.monotonic()
    s.store.request_cancel("acme", row.id)
    wait_for("the child ends", lambda: all(gone(pid) for pid in children))
    assert time.monotonic() - asked < 5.0
    done = wait_for("the scan ends", lambda: s.settled(row.id))
    assert (done.state, done.failure_reason, done.verdict) == ("cancelled", "cancelled", None)
    assert s.store.get_report("acme", row.id) is None and s.count(renderings, row.id) == 0


def test_a_scan_past_the_timeout_fails_timeout_never_a_pass(sqlite_service, workers, tmp_path):
    s = sqlite_service
    row = s.submit(s.upload(VNC_VMX, "app.vmx"), "app.vmx")
    workers.append(s.worker_process("w-t", "fake:120", "--scan-timeout", "2", log=tmp_path / "w.log"))
    done = wait_for("the scan ends", lambda: s.settled(row.id))
    assert (done.state, done.failure_reason, done.verdict) == ("failed", "timeout", None)
    assert "wall-clock limit" in done.failure_message
    assert s.store.get_report("acme", row.id) is None
    assert not scan_children(row.id)


def test_two_workers_never_run_one_job(sqlite_service, workers, tmp_path):
    s = sqlite_service
    rows = [s.submit(s.upload(VNC_VMX + f"# {i}\n".encode(), f"app{i}.vmx"), f"app{i}.vmx") for i in range(6)]
    logs = [tmp_path / "w-1.log", tmp_path / "w-2.log"]
    workers.extend(s.worker_process(f"w-{i}", "fake:0.5", log=log) for i, log in enumerate(logs, 1))
    for row in rows:
        done = wait_for(f"scan {row.id} ends", lambda: s.settled(row.id))
        assert (done.state, done.attempt) == ("succeeded", 1)
        assert s.count(reports, row.id) == 1
    ran = [{r.id for r in rows if f"scan {r.id} (attempt" in log.read_text()} for log in logs]
    assert ran[0] | ran[1] == {r.id for r in rows}
    assert not ran[0] & ran[1]


def test_sigterm_gives_the_running_scan_back_without_using_an_attempt(sqlite_service, workers, tmp_path):
    s = sqlite_service
    row = s.submit(s.upload(VNC_VMX, "app.vmx"), "app.vmx")
    worker = s.worker_process("w-s", "fake:120", log=tmp_path / "w.log")
    workers.append(worker)
    wait_for("the scan is under way", lambda: running_at(s, row.id, "collectors"))
    children = wait_for("its scan child", lambda: scan_children(row.id))
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=DEADLINE) == 0
    assert all(gone(pid) for pid in children)
    back = s.scan(row.id)
    assert (back.state, back.attempt, back.lease_owner) == ("queued", 1, None)
    workers.append(s.worker_process("w-next", "fake:0", log=tmp_path / "w.log"))
    done = wait_for("another worker runs it", lambda: s.settled(row.id))
    assert (done.state, done.attempt) == ("succeeded", 1)


def test_the_worker_refuses_a_bad_engine_in_one_line(sqlite_service, tmp_path):
    result = subprocess.run([sys.executable, "-m", "certify.service.worker", "--data", str(sqlite_service.data),
                             "--id", "w", "--engine", "fast"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "scan engine 'fast'" in result.stderr


def test_a_missing_upload_fails_its_job_and_the_worker_goes_on(service):
    sha = service.upload(VNC_VMX, "app.vmx")
    service.blobs.path_for(sha).unlink()  # the blob directory lost it
    lost = service.submit(sha, "app.vmx")
    fine = service.submit(service.upload(CLEAN_VMX, "clean.vmx"), "clean.vmx")
    with InThreadWorker(service.settings()):
        a = wait_for("the first scan ends", lambda: service.settled(lost.id))
        b = wait_for("the second scan ends", lambda: service.settled(fine.id))
    assert (a.state, a.failure_reason) == ("failed", "error")
    assert f"sha256:{sha} is missing" in a.failure_message
    assert b.state == "succeeded"


def test_stored_facts_this_certify_cannot_read_are_passed_over_for_a_scan(service):
    sha = service.upload(VNC_VMX, "app.vmx")
    service.store.put_facts(sha, {"x": "1"}, {"format": "certify-facts", "format_version": 99})
    row = service.submit(sha, "app.vmx")
    with InThreadWorker(service.settings()):
        done = wait_for("the scan ends", lambda: service.settled(row.id))
    assert (done.state, done.reevaluated) == ("succeeded", False)


def test_a_worker_that_lost_its_lease_stops_its_child_and_discards_the_result(sqlite_service, workers, tmp_path):
    s = sqlite_service
    row = s.submit(s.upload(VNC_VMX, "app.vmx"), "app.vmx")
    log = tmp_path / "w.log"
    workers.append(s.worker_process("w-l", "fake:120", log=log))
    wait_for("the scan is under way", lambda: running_at(s, row.id, "collectors"))
    children = wait_for("its scan child", lambda: scan_children(row.id))
    # As a reaper would that saw the lease run out (a worker stalled past it): the scan goes to attempt 2,
    # held back far in the future so that this test sees it unclaimed.
    later = datetime.now(timezone.utc) + timedelta(days=1)
    assert [r.action for r in s.store.reap_expired(now=later)] == ["requeued"]
    wait_for("the child is stopped", lambda: all(gone(pid) for pid in children))
    wait_for("the worker gives the result up", lambda: "the result is discarded" in log.read_text())
    row = s.scan(row.id)
    assert (row.state, row.attempt) == ("queued", 2)
    assert s.store.get_report("acme", row.id) is None and s.count(renderings, row.id) == 0


def test_the_jobs_waivers_reach_the_scan_and_the_judgement_from_stored_facts(service, descriptor_only):
    waivers = "waivers:\n  - check: vmx-vnc-enabled\n    reason: console on a private network\n    expires: 2999-01-01\n"
    sha = service.upload(VNC_VMX, "app.vmx")
    plain = service.submit(sha, "app.vmx", descriptor_only)
    with InThreadWorker(service.settings()):
        assert wait_for("the scan ends", lambda: service.settled(plain.id)).verdict == "fail"
        waived = service.submit(sha, "app.vmx", descriptor_only, waivers=waivers, force=True)
        done = wait_for("the waived scan ends", lambda: service.settled(waived.id))
        assert (done.verdict, done.reevaluated) == ("pass", True)
        fresh = service.submit(service.upload(VNC_VMX + b"# fresh\n", "fresh.vmx"), "fresh.vmx", descriptor_only,
                               waivers=waivers)
        scanned = wait_for("the fresh waived scan ends", lambda: service.settled(fresh.id))
    assert (scanned.verdict, scanned.reevaluated) == ("pass", False)
    applied = json.loads(service.store.get_report("acme", fresh.id))["waivers"]
    assert [w["state"] for w in applied] == ["applied"]


def test_a_rejected_upload_is_a_rejected_verdict_judged_again_from_its_facts(service):
    bad = b"this is not a tar archive\n" * 30
    sha = service.upload(bad, "bad.ova")
    first = service.submit(sha, "bad.ova", "default")
    with InThreadWorker(service.settings()):
        a = wait_for("the scan ends", lambda: service.settled(first.id))
        second = service.submit(sha, "bad.ova", "aws-marketplace")  # the same ingest switches as default
        b = wait_for("the second scan ends", lambda: service.settled(second.id))
    assert (a.state, a.verdict, a.reevaluated) == ("succeeded", "rejected", False)
    assert (b.state, b.verdict, b.reevaluated) == ("succeeded", "rejected", True)
