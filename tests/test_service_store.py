"""The service job store, on SQLite and on a throwaway PostgreSQL alike.

Concurrency is exercised with real threads and processes; lease expiry with
explicit ``now=`` values, never by sleeping.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from certify.errors import UsageError
from certify.policy.profile import load_profile
from certify.service import db
from certify.service.store import (
    IdempotencyConflict, InvalidCursor, LeaseLost, ScanRequest, Store, StoreUnavailable,
)
from pgserver import db_url, postgres_server  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
A = "a" * 64
B = "b" * 64


def request(tenant="acme", artifact=A, profile="default", profile_digest="p1" * 32, **extra) -> ScanRequest:
    return ScanRequest(tenant=tenant, artifact_sha256=artifact, filename="app.ova", profile_name=profile,
                       profile_digest=profile_digest, ruleset_digest="r1" * 32, certify_version="0.1.0", **extra)


@pytest.fixture
def store(db_url):
    s = Store.open(db_url)
    yield s
    s.close()


# -- migrations ----------------------------------------------------------------------------------

def test_migrations_create_every_table_from_empty_and_match_the_model(db_url):
    db.upgrade(db_url)
    engine = db.make_engine(db_url)
    try:
        names = set(sa.inspect(engine).get_table_names())
        assert {t.name for t in db.metadata.sorted_tables} | {"alembic_version"} == names
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), db.metadata)
            assert diff == []
            assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == "0003"
    finally:
        engine.dispose()
    db.upgrade(db_url)  # again: nothing to do, nothing broken


def folded(profile_digest: str, waivers: str) -> str:
    """profile_digest as the API stored it for a scan with waivers before migration 0003."""
    material = json.dumps({"profile": profile_digest, "waivers": waivers}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()


def test_migration_0003_keys_scans_by_profile_name_and_waivers_in_a_database_with_rows(db_url):
    db.upgrade(db_url, "0002")
    default = load_profile("default").digest  # "sha256:<hex>"
    waivers = "- check: ssh-root-login\n  reason: console only\n  expires: 2099-01-01\n"
    # As the 0002 service left them: a plain scan, a finished waived one (its report names the profile's
    # digest), a queued waived one, and a waived one whose folded digest no candidate explains.
    old_scans = sa.table("scans", *(sa.column(n) for n in (
        "id", "tenant", "artifact_sha256", "filename", "profile_name", "profile_digest", "ruleset_digest",
        "certify_version", "generation", "waivers", "labels", "state", "verdict", "created_at")))
    plain = dict(id="scn_plain", profile_digest=default.removeprefix("sha256:"), waivers=None, state="succeeded",
                 verdict="pass")
    reported = dict(id="scn_reported", profile_digest=folded(default, waivers), waivers=waivers, state="succeeded",
                    verdict="pass")
    queued = dict(id="scn_queued", profile_digest=folded(default, waivers.replace("2099", "2098")),
                  waivers=waivers.replace("2099", "2098"), state="queued", verdict=None)
    lost = dict(id="scn_lost", profile_digest=folded("sha256:" + "9" * 64, waivers), waivers=waivers,
                state="queued", verdict=None, profile_name="retired")
    # What `certify reevaluate` wrote: "sha256:"-prefixed digests, the same key as scn_plain once bare.
    rejudged = dict(id="scn_rejudged", profile_digest=default, ruleset_digest="sha256:" + "r1" * 32, waivers=None,
                    state="succeeded", verdict="fail")
    engine = db.make_engine(db_url)
    try:
        with engine.begin() as c:
            c.execute(sa.text("INSERT INTO tenants (name, created_at) VALUES ('acme', :t)"), {"t": T0})
            for row in (plain, reported, queued, lost, rejudged):
                c.execute(old_scans.insert().values({
                    "tenant": "acme", "artifact_sha256": A, "filename": "app.ova", "profile_name": "default",
                    "ruleset_digest": "r1" * 32, "certify_version": "0.1.0", "generation": 0, "labels": "{}",
                    "created_at": T0, **row}))
            for scan_id in ("scn_plain", "scn_reported"):
                c.execute(sa.text("INSERT INTO reports (scan_id, report_json, created_at) VALUES (:s, :r, :t)"),
                          {"s": scan_id, "r": json.dumps({"profile_digest": default, "verdict": "pass"}), "t": T0})
                c.execute(sa.text("INSERT INTO renderings (scan_id, format, body, created_at) "
                                  "VALUES (:s, 'text', 'ok', :t)"), {"s": scan_id, "t": T0})
    finally:
        engine.dispose()

    db.upgrade(db_url)
    engine = db.make_engine(db_url)
    try:
        with engine.connect() as c:
            assert compare_metadata(MigrationContext.configure(c), db.metadata) == []
            rows = {r.id: r for r in c.execute(sa.text(
                "SELECT id, profile_digest, ruleset_digest, waivers_digest, generation FROM scans"))}
            assert c.execute(sa.text("SELECT count(*) FROM reports")).scalar_one() == 2
            assert c.execute(sa.text("SELECT count(*) FROM renderings")).scalar_one() == 2
    finally:
        engine.dispose()
    bare = default.removeprefix("sha256:")
    assert (rows["scn_plain"].profile_digest, rows["scn_plain"].waivers_digest) == (bare, "")
    assert rows["scn_reported"].profile_digest == bare  # recovered from its report
    assert rows["scn_queued"].profile_digest == bare  # recovered from the installed profile of that name
    assert rows["scn_lost"].profile_digest == lost["profile_digest"]  # nothing explains it: kept
    assert (rows["scn_rejudged"].profile_digest, rows["scn_rejudged"].ruleset_digest) == (bare, "r1" * 32)
    assert (rows["scn_plain"].generation, rows["scn_rejudged"].generation) == (0, 1)  # made room: the newer one
    assert rows["scn_reported"].waivers_digest == rows["scn_lost"].waivers_digest == \
        hashlib.sha256(waivers.encode()).hexdigest()

    # Down to 0002 folds the waivers into profile_digest again, as that revision's API wrote it; up again unfolds.
    command.downgrade(db.alembic_config(db_url), "0002")
    engine = db.make_engine(db_url)
    try:
        with engine.connect() as c:
            assert "waivers_digest" not in {col["name"] for col in sa.inspect(c).get_columns("scans")}
            digests = dict(c.execute(sa.text("SELECT id, profile_digest FROM scans")).all())
    finally:
        engine.dispose()
    assert digests["scn_reported"] == reported["profile_digest"] and digests["scn_queued"] == queued["profile_digest"]
    db.upgrade(db_url)

    s = Store.open(db_url)
    try:
        again = dict(artifact=A, profile_digest=bare)
        assert s.submit_scan(request(**again)) == (s.get_scan("acme", "scn_rejudged"), False)
        assert s.submit_scan(request(**again, waivers=waivers))[0].id == "scn_reported"
        assert s.submit_scan(request(**again, waivers=queued["waivers"]))[0].id == "scn_queued"
        assert s.submit_scan(request(**again, profile="isv-selftest"))[1]  # another profile's name: a new scan
    finally:
        s.close()


@pytest.mark.parametrize("how", ["-x url=", "CERTIFY_DB"])
def test_alembic_upgrade_head_from_the_command_line(db_url, how, tmp_path):
    alembic = Path(sys.executable).parent / "alembic"
    url_args = ["-x", f"url={db_url}"] if how == "-x url=" else []
    env = {**os.environ, **({"CERTIFY_DB": db_url} if how == "CERTIFY_DB" else {})}
    done = subprocess.run([str(alembic), "-c", str(REPO / "certify/service/alembic.ini"), *url_args,
                           "upgrade", "head"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    engine = db.make_engine(db_url)
    try:
        assert "scans" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    s = Store.open(f"sqlite:///{tmp_path / 'certify.db'}")
    try:
        with s.engine.connect() as c:
            assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() == db.SQLITE_BUSY_TIMEOUT_MS
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        s.close()


@pytest.mark.parametrize("url", ["mysql://x@h/db", "not a url", "sqlite://", "sqlite:///:memory:"])
def test_unsupported_urls_are_one_line_usage_errors(url):
    with pytest.raises(UsageError) as caught:
        db.normalize_url(url)
    assert "\n" not in str(caught.value)


def test_a_bare_postgresql_url_means_psycopg_3():
    assert db.normalize_url("postgresql://u@h/d").startswith("postgresql+psycopg://")


def test_an_unreachable_database_is_a_one_line_error(postgres_server):
    port = postgres_server.port
    with pytest.raises(StoreUnavailable) as caught:
        Store.open(f"postgresql://certify:secret@127.0.0.1:{port}/no_such_database")
    message = str(caught.value)
    assert "no_such_database" in message and "\n" not in message and "secret" not in message


# -- submission ----------------------------------------------------------------------------------

def test_the_natural_key_returns_the_existing_scan_and_force_makes_a_new_one(store):
    first, created = store.submit_scan(request())
    assert created and first.state == "queued" and first.attempt == 1 and first.generation == 0
    again, created = store.submit_scan(request(labels={"build": "2"}))
    assert not created and again.id == first.id
    forced, created = store.submit_scan(request(), force=True)
    assert created and forced.id != first.id and forced.generation == 1
    latest, created = store.submit_scan(request())
    assert not created and latest.id == forced.id  # the newest generation answers from now on
    other_profile, created = store.submit_scan(request(profile="strict", profile_digest="p2" * 32))
    assert created and other_profile.id not in (first.id, forced.id)
    other_tenant, created = store.submit_scan(request(tenant="globex"))
    assert created and other_tenant.id not in (first.id, forced.id)


def test_profiles_of_one_digest_and_other_waivers_are_other_keys_the_same_waivers_the_same(store):
    plain, _ = store.submit_scan(request())
    twin, created = store.submit_scan(request(profile="isv-selftest"))  # same digest, another name
    assert created and twin.id != plain.id and twin.profile_name == "isv-selftest"
    assert store.submit_scan(request(profile="isv-selftest")) == (twin, False)
    waived, created = store.submit_scan(request(waivers="- check: a\n"))
    assert created and waived.id != plain.id
    assert waived.profile_digest == plain.profile_digest  # the waivers are their own part of the key
    assert waived.waivers_digest == hashlib.sha256(b"- check: a\n").hexdigest() and plain.waivers_digest == ""
    assert store.submit_scan(request(waivers="- check: a\n")) == (waived, False)
    other, created = store.submit_scan(request(waivers="- check: b\n"))
    assert created and other.id not in (plain.id, waived.id)
    empty, created = store.submit_scan(request(waivers=""))  # a document, even empty, is not "no waivers"
    assert created and empty.id != plain.id
    assert store.submit_scan(request()) == (plain, False)


def test_a_digest_is_one_key_with_or_without_its_sha256_prefix(store):
    """The API passes bare hex and reevaluate "sha256:<hex>" (as Profile.digest and rulesets are written)."""
    plain, _ = store.submit_scan(request())
    prefixed = ScanRequest(tenant="acme", artifact_sha256=A, filename="app.ova", profile_name="default",
                           profile_digest="sha256:" + "p1" * 32, ruleset_digest="sha256:" + "r1" * 32,
                           certify_version="0.1.0")
    assert store.submit_scan(prefixed) == (plain, False)
    assert (plain.profile_digest, plain.ruleset_digest) == ("p1" * 32, "r1" * 32)
    claim = store.claim_next("w", 60)
    store.complete(plain.id, "w", claim.attempt, "{}", "pass")
    assert store.reevaluation_candidates("sha256:" + "r1" * 32) == []  # judged under the installed ruleset
    assert [r.id for r in store.reevaluation_candidates("sha256:" + "r2" * 32)] == [plain.id]


def test_scan_ids_are_random_and_url_safe(store):
    ids = [store.submit_scan(request(artifact=f"{i:064x}"))[0].id for i in range(5)]
    assert len(set(ids)) == 5
    for scan_id in ids:
        assert scan_id.startswith("scn_") and len(scan_id) >= 20
        assert all(ch.isalnum() or ch in "_-" for ch in scan_id)


def test_idempotency_key_same_body_same_scan_other_body_conflict(store):
    body = {"artifact": "sha256:" + A, "filename": "app.ova", "profile": "default"}
    first, created = store.submit_scan(request(), idempotency_key="k1", request_body=body)
    assert created
    retry, created = store.submit_scan(request(), idempotency_key="k1", request_body=dict(reversed(body.items())))
    assert not created and retry.id == first.id
    forced_retry, created = store.submit_scan(request(), force=True, idempotency_key="k1", request_body=body)
    assert not created and forced_retry.id == first.id  # a retried forced POST does not force twice
    with pytest.raises(IdempotencyConflict):
        store.submit_scan(request(artifact=B), idempotency_key="k1", request_body={**body, "artifact": "sha256:" + B})
    # Keys belong to a tenant: another tenant's same key is its own.
    theirs, created = store.submit_scan(request(tenant="globex"), idempotency_key="k1", request_body=body)
    assert created and theirs.id != first.id


def test_bad_submissions_are_refused_before_anything_is_stored(store):
    for bad in (request(artifact="A" * 64), request(artifact="a" * 63), request(tenant="Acme!"),
                request(max_attempts=0)):
        with pytest.raises(UsageError):
            store.submit_scan(bad)
    assert store.list_scans("acme")[0] == []


def _submit_many_threads(store, req, n, **kwargs):
    barrier = threading.Barrier(n)
    results, errors = [], []

    def one():
        try:
            barrier.wait()
            results.append(store.submit_scan(req, **kwargs))
        except Exception as exc:  # collected: the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_twenty_concurrent_submissions_from_threads_make_one_scan(store):
    results, errors = _submit_many_threads(store, request(), 20)
    assert errors == []
    assert len({row.id for row, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert len(store.list_scans("acme", limit=100)[0]) == 1


def test_twenty_concurrent_forced_submissions_make_twenty_generations(store):
    results, errors = _submit_many_threads(store, request(), 20, force=True)
    assert errors == []
    assert all(created for _, created in results)
    assert sorted(row.generation for row, _ in results) == list(range(20))
    assert len({row.id for row, _ in results}) == 20
    newest = max((row for row, _ in results), key=lambda r: r.generation)
    assert store.submit_scan(request())[0].id == newest.id


def test_twenty_concurrent_retries_of_one_idempotency_key_make_one_scan(store):
    results, errors = _submit_many_threads(store, request(), 20, force=True, idempotency_key="retry-me",
                                           request_body={"a": 1})
    assert errors == []
    assert len({row.id for row, _ in results}) == 1
    assert len(store.list_scans("acme", limit=100)[0]) == 1


SUBMITTER = """
import sys, time, pathlib
from certify.service.store import Store, ScanRequest
url, gate = sys.argv[1], pathlib.Path(sys.argv[2])
store = Store.open(url, migrate=False)
while not gate.exists():
    time.sleep(0.01)
row, created = store.submit_scan(ScanRequest("acme", "a" * 64, "app.ova", "default", "p1" * 32, "r1" * 32, "0.1.0"))
print(row.id, int(created))
"""


def test_twenty_concurrent_submissions_from_processes_make_one_scan(store, db_url, tmp_path):
    gate = tmp_path / "go"
    children = [subprocess.Popen([sys.executable, "-c", SUBMITTER, db_url, str(gate)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(20)]
    gate.touch()  # every child has opened the store by now or will find the gate open: all submit at once
    outputs = [child.communicate(timeout=300) for child in children]
    assert [child.returncode for child in children] == [0] * 20, [err for _, err in outputs if err]
    answers = [out.split() for out, _ in outputs]
    assert len({scan_id for scan_id, _ in answers}) == 1
    assert sum(int(created) for _, created in answers) == 1
    assert len(store.list_scans("acme", limit=100)[0]) == 1


# -- claiming and leases -------------------------------------------------------------------------

def test_claims_follow_priority_then_age(store):
    low, _ = store.submit_scan(request(artifact="1" * 64, priority=0), now=T0)
    high, _ = store.submit_scan(request(artifact="2" * 64, priority=10), now=T0 + timedelta(seconds=1))
    newer_low, _ = store.submit_scan(request(artifact="3" * 64, priority=0), now=T0 + timedelta(seconds=2))
    order = [store.claim_next("w", 60, now=T0 + timedelta(seconds=3)).scan.id for _ in range(3)]
    assert order == [high.id, low.id, newer_low.id]
    assert store.claim_next("w", 60, now=T0) is None


def test_two_claimers_never_claim_one_job(store):
    store.submit_scan(request())
    barrier = threading.Barrier(2)
    claims = []

    def claimer(name):
        barrier.wait()
        claims.append(store.claim_next(name, 60))

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [c for c in claims if c is not None]
    assert len(won) == 1 and won[0].scan.state == "running" and won[0].scan.lease_owner == won[0].worker


def test_four_claimers_share_ten_jobs_each_exactly_once(store):
    ids = {store.submit_scan(request(artifact=f"{i:064x}"))[0].id for i in range(10)}
    barrier = threading.Barrier(4)
    claimed: list[str] = []

    def claimer(name):
        barrier.wait()
        while (claim := store.claim_next(name, 60)) is not None:
            claimed.append(claim.scan.id)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)


def test_heartbeat_extends_the_lease_and_carries_the_cancel_request(store):
    scan, _ = store.submit_scan(request())
    claim = store.claim_next("w1", 30, now=T0)
    assert claim.scan.lease_expires_at == T0 + timedelta(seconds=30) and claim.scan.started_at == T0
    assert store.heartbeat(scan.id, "w1", 1, 30, now=T0 + timedelta(seconds=20)) is False
    assert store.get_scan("acme", scan.id).lease_expires_at == T0 + timedelta(seconds=50)
    store.set_stage(scan.id, "w1", 1, "collectors")
    assert store.get_scan("acme", scan.id).stage == "collectors"
    assert store.request_cancel("acme", scan.id).state == "running"
    assert store.heartbeat(scan.id, "w1", 1, 30, now=T0 + timedelta(seconds=25)) is True
    with pytest.raises(LeaseLost):
        store.heartbeat(scan.id, "w2", 1, 30)
    with pytest.raises(LeaseLost):
        store.set_stage(scan.id, "w1", 2, "checks")
    ended = store.fail(scan.id, "w1", 1, "cancelled")
    assert ended.state == "cancelled" and ended.failure_reason == "cancelled"
    assert store.get_report("acme", scan.id) is None


def test_complete_stores_exactly_one_report_and_refuses_a_late_duplicate(store):
    scan, _ = store.submit_scan(request())
    store.claim_next("w1", 30, now=T0)
    # w1 goes silent; the reaper hands the job to attempt 2, which w2 claims and finishes.
    assert [(r.action, r.attempt) for r in store.reap_expired(now=T0 + timedelta(seconds=31))] == [("requeued", 2)]
    claim = store.claim_next("w2", 30, now=T0 + timedelta(seconds=32))
    assert claim.attempt == 2 and claim.scan.id == scan.id
    done = store.complete(scan.id, "w2", 2, '{"verdict": "pass"}', "pass", now=T0 + timedelta(seconds=40))
    assert done.state == "succeeded" and done.verdict == "pass" and done.finished_at == T0 + timedelta(seconds=40)
    with pytest.raises(LeaseLost):  # the lost worker comes back with its result
        store.complete(scan.id, "w1", 1, '{"verdict": "fail"}', "fail")
    with pytest.raises(LeaseLost):  # nor can the winner store a second one
        store.complete(scan.id, "w2", 2, '{"verdict": "fail"}', "fail")
    with pytest.raises(LeaseLost):
        store.fail(scan.id, "w1", 1, "error", "late")
    assert store.get_report("acme", scan.id) == '{"verdict": "pass"}'
    assert store.get_scan("acme", scan.id).verdict == "pass"


def test_the_reaper_requeues_until_max_attempts_then_fails_worker_lost(store):
    scan, _ = store.submit_scan(request(max_attempts=2))
    store.claim_next("w1", 10, now=T0)
    assert store.reap_expired(now=T0 + timedelta(seconds=10)) == []  # not yet expired: the lease is inclusive
    assert [r.action for r in store.reap_expired(now=T0 + timedelta(seconds=11))] == ["requeued"]
    requeued = store.get_scan("acme", scan.id)
    assert requeued.state == "queued" and requeued.attempt == 2 and requeued.lease_owner is None
    store.claim_next("w2", 10, now=T0 + timedelta(seconds=12))
    assert [r.action for r in store.reap_expired(now=T0 + timedelta(seconds=23))] == ["failed"]
    failed = store.get_scan("acme", scan.id)
    assert (failed.state, failed.failure_reason, failed.attempt) == ("failed", "worker_lost", 2)
    assert store.claim_next("w3", 10) is None


def test_a_requeued_scan_waits_out_its_backoff(store):
    scan, _ = store.submit_scan(request(max_attempts=3))
    store.claim_next("w1", 10, now=T0)
    store.reap_expired(now=T0 + timedelta(seconds=11), backoff_seconds=5)
    assert store.get_scan("acme", scan.id).not_before == T0 + timedelta(seconds=16)
    assert store.claim_next("w2", 10, now=T0 + timedelta(seconds=15)) is None
    assert store.claim_next("w2", 10, now=T0 + timedelta(seconds=16)).attempt == 2
    store.reap_expired(now=T0 + timedelta(seconds=27), backoff_seconds=5)  # lost again: twice the wait
    assert store.get_scan("acme", scan.id).not_before == T0 + timedelta(seconds=37)


def test_the_reaper_cancels_rather_than_reruns_a_scan_whose_cancel_was_requested(store):
    scan, _ = store.submit_scan(request())
    store.claim_next("w1", 10, now=T0)
    store.request_cancel("acme", scan.id)
    assert [r.action for r in store.reap_expired(now=T0 + timedelta(seconds=11))] == ["cancelled"]
    assert store.get_scan("acme", scan.id).state == "cancelled"


def test_a_worker_keeping_its_heartbeat_is_never_reaped(store):
    scan, _ = store.submit_scan(request())
    store.claim_next("w1", 10, now=T0)
    for second in (8, 16, 24):
        store.heartbeat(scan.id, "w1", 1, 10, now=T0 + timedelta(seconds=second))
        assert store.reap_expired(now=T0 + timedelta(seconds=second + 9)) == []
    assert store.get_scan("acme", scan.id).state == "running"


def test_cancel_of_a_queued_scan_is_immediate_and_another_tenant_cannot_cancel(store):
    scan, _ = store.submit_scan(request())
    assert store.request_cancel("globex", scan.id) is None
    assert store.get_scan("acme", scan.id).state == "queued"
    cancelled = store.request_cancel("acme", scan.id)
    assert cancelled.state == "cancelled" and cancelled.failure_reason == "cancelled"
    assert store.claim_next("w1", 10) is None
    assert store.request_cancel("acme", scan.id).state == "cancelled"  # again: no change


def test_failures_name_their_reason(store):
    for digit, (reason, state) in enumerate((("timeout", "failed"), ("error", "failed"), ("cancelled", "cancelled"))):
        scan, _ = store.submit_scan(request(artifact=str(digit) * 64))
        claim = store.claim_next("w", 30)
        assert claim.scan.id == scan.id
        ended = store.fail(scan.id, "w", 1, reason, "past the 30m limit" if reason == "timeout" else "")
        assert (ended.state, ended.failure_reason) == (state, reason)
    with pytest.raises(UsageError):
        store.fail(scan.id, "w", 1, "bored")


# -- reading -------------------------------------------------------------------------------------

def test_a_tenant_never_sees_another_tenants_scans_or_reports(store):
    scan, _ = store.submit_scan(request(tenant="acme"))
    store.claim_next("w", 30)
    store.complete(scan.id, "w", 1, "{}", "pass")
    assert store.get_scan("globex", scan.id) is None
    assert store.get_report("globex", scan.id) is None
    assert store.list_scans("globex") == ([], None)
    assert store.latest_verdicts("globex", A) == []
    assert store.get_scan("acme", scan.id) is not None


def test_list_scans_pages_with_an_opaque_cursor_and_filters(store):
    made = []
    for i in range(7):
        row, _ = store.submit_scan(request(artifact=f"{i:064x}"))
        made.append(row.id)
    for _ in range(2):
        claim = store.claim_next("w", 30)
        store.complete(claim.scan.id, "w", 1, "{}", "fail" if claim.scan.id == made[0] else "pass")
    pages, cursor = [], None
    while True:
        page, cursor = store.list_scans("acme", cursor=cursor, limit=3)
        pages.append([r.id for r in page])
        if cursor is None:
            break
        assert made[0] not in cursor and "s1" not in cursor  # opaque: not an id, not plain text
    assert [len(p) for p in pages] == [3, 3, 1]
    assert sum(pages, []) == list(reversed(made))  # newest first, each once
    assert [r.id for r in store.list_scans("acme", state="queued", limit=50)[0]] == list(reversed(made[2:]))
    assert [r.id for r in store.list_scans("acme", verdict="fail")[0]] == [made[0]]
    assert [r.id for r in store.list_scans("acme", state="succeeded", verdict="pass")[0]] == [made[1]]
    for bad in ("not-a-cursor", "czE6", "eDox", "%%%"):
        with pytest.raises(InvalidCursor):
            store.list_scans("acme", cursor=bad)
    for kwargs in ({"state": "done"}, {"verdict": "ok"}, {"limit": 0}, {"limit": 10_000}):
        with pytest.raises(UsageError):
            store.list_scans("acme", **kwargs)


def test_latest_verdicts_gives_the_newest_succeeded_verdict_per_profile(store):
    def finish(req, verdict, at, force=False):
        scan, _ = store.submit_scan(req, force=force)
        claim = store.claim_next("w", 30)
        assert claim.scan.id == scan.id
        store.complete(scan.id, "w", 1, "{}", verdict, now=at)
        return scan.id

    finish(request(), "fail", T0)
    newest_default = finish(request(), "pass", T0 + timedelta(hours=1), force=True)
    strict = finish(request(profile="strict", profile_digest="p2" * 32), "fail", T0 + timedelta(minutes=5))
    store.submit_scan(request(profile="lenient", profile_digest="p3" * 32))  # queued: no verdict yet
    verdicts = store.latest_verdicts("acme", A)
    assert [(v.profile_name, v.verdict, v.scan_id) for v in verdicts] == [
        ("default", "pass", newest_default), ("strict", "fail", strict)]
    assert verdicts[0].finished_at == T0 + timedelta(hours=1)
    assert store.latest_verdicts("acme", B) == []


def test_times_are_kept_in_utc_whatever_zone_they_come_in(store):
    paris = timezone(timedelta(hours=1))
    scan, _ = store.submit_scan(request(), now=T0.astimezone(paris))
    assert store.get_scan("acme", scan.id).created_at == T0
    claim = store.claim_next("w", 30, now=T0.astimezone(paris))
    assert claim.scan.lease_expires_at == T0 + timedelta(seconds=30)
    assert store.reap_expired(now=(T0 + timedelta(seconds=29)).astimezone(paris)) == []
    assert len(store.reap_expired(now=(T0 + timedelta(seconds=31)).astimezone(paris))) == 1
    with pytest.raises(ValueError):
        store.claim_next("w", 30, now=datetime(2026, 1, 1, 12, 0))


def test_labels_and_waivers_round_trip(store):
    scan, _ = store.submit_scan(request(labels={"build": 42, "team": "ci", "nested": {"x": [1, 2]}},
                                        waivers="waivers:\n- check: ssh.root-login\n", priority=-5))
    again = store.get_scan("acme", scan.id)
    assert again.labels == {"build": 42, "team": "ci", "nested": {"x": [1, 2]}}
    assert again.waivers.startswith("waivers:") and again.priority == -5 and again.created_at.tzinfo is not None


# -- blobs and facts -----------------------------------------------------------------------------

def test_a_tenant_sees_only_the_blobs_it_uploaded(store):
    store.record_blob("acme", A, 1234, "app.ova")
    assert store.get_blob("acme", A).size == 1234
    assert store.get_blob("globex", A) is None
    store.record_blob("globex", A, 1234, "theirs.ova")  # the same bytes uploaded again by another tenant
    assert store.get_blob("globex", A).filename == "theirs.ova"
    assert store.get_blob("acme", A).filename == "app.ova"
    store.record_blob("acme", A, 1234, "app.ova")  # re-upload: no error, no change
    with pytest.raises(UsageError):
        store.record_blob("acme", "../../etc/passwd", 1)


def test_facts_round_trip_exactly_and_are_keyed_by_collector_versions(store):
    document = {"artifact": {"sha256": A}, "facts": {"ssh": {"keys": ["é", 1.5, None, True]}, "z": {}, "a": []}}
    versions = {"ssh": "2", "accounts": "1"}
    assert store.put_facts(A, versions, document) is True
    assert store.put_facts(A, dict(reversed(versions.items())), {"other": 1}) is False  # same key: first kept
    got = store.get_facts(A, {"accounts": "1", "ssh": "2"})
    assert got == document and json.dumps(got) == json.dumps(document)  # key order too
    assert store.get_facts(A, {"accounts": "1", "ssh": "3"}) is None  # a changed collector: not these facts
    assert store.get_facts(B, versions) is None
    store.put_facts(A, {"accounts": "1", "ssh": "3"}, {"newer": True})
    assert sorted(r.collector_versions["ssh"] for r in store.facts_for(A)) == ["2", "3"]


def test_restart_with_the_same_database_loses_nothing(db_url):
    first = Store.open(db_url)
    scan, _ = first.submit_scan(request())
    first.claim_next("w", 30)
    first.complete(scan.id, "w", 1, '{"ok": true}', "pass")
    first.close()
    second = Store.open(db_url)
    try:
        assert second.get_scan("acme", scan.id).state == "succeeded"
        assert second.get_report("acme", scan.id) == '{"ok": true}'
    finally:
        second.close()
