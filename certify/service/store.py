"""The job store: every read and write of the service's rows, as plain functions of plain data.

The job row is the truth. Every transition is a compare-and-set on the row
(its state, lease owner and attempt), so two workers never hold one job, a
worker that lost its lease cannot finish it, and a reaper re-queues what dead
workers left. No ORM object leaves this module: callers get frozen dataclasses.

Times are UTC. Lease logic takes ``now`` from the caller where a test needs to
decide it, so nothing here sleeps or reads the clock behind a test's back.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from certify.errors import CertifyError, UsageError
from certify.service import db
from certify.service.db import blob_grants, blobs, facts, idempotency_keys, renderings, reports, scans, tenants

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
FAILURE_REASONS = ("timeout", "worker_lost", "cancelled", "error")
VERDICTS = ("pass", "fail", "rejected", "error")
DEFAULT_MAX_ATTEMPTS = 3
MAX_LIST_LIMIT = 500
_TENANT = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# A unique-constraint race is retried this often before it is a bug.
_RETRIES = 8


class StoreError(CertifyError):
    """The store refused an operation; the message is for the user."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or opened."""


class IdempotencyConflict(StoreError):
    """An Idempotency-Key reused with another request body (the API answers 422)."""


class LeaseLost(StoreError):
    """The worker no longer holds the job (reaped, re-claimed, cancelled or finished)."""


class InvalidCursor(StoreError):
    """A list cursor that this store did not hand out."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def clock(now: datetime | None) -> datetime:
    """``now`` in UTC (the clock when None); a naive time is refused, as its zone would be a guess."""
    if now is None:
        return utcnow()
    if now.tzinfo is None:
        raise ValueError("a store time must carry its time zone")
    return now.astimezone(timezone.utc)


def as_utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes: they were written as UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def check_tenant(name: str) -> str:
    if not isinstance(name, str) or not _TENANT.fullmatch(name):
        raise UsageError(f"tenant {str(name)[:70]!r}: use 1-64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit")
    return name


def _check_sha256(value: str) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise UsageError(f"{str(value)[:80]!r} is not a sha256 digest (64 lowercase hex digits)")
    return value


def new_scan_id() -> str:
    return "scn_" + secrets.token_urlsafe(16)


@dataclass(frozen=True)
class ScanRequest:
    """What a client asks for.

    The natural key is (tenant, artifact, profile name, profile digest, waivers digest, ruleset digest,
    version): a submission with the same key returns the existing scan. The waivers digest is derived
    here from the waivers document, so it cannot disagree with it.
    """

    tenant: str
    artifact_sha256: str
    filename: str
    profile_name: str
    profile_digest: str
    ruleset_digest: str
    certify_version: str
    waivers: str | None = None
    priority: int = 0
    labels: Mapping[str, Any] = field(default_factory=dict)
    max_attempts: int = DEFAULT_MAX_ATTEMPTS

    def __post_init__(self) -> None:
        # One spelling per digest, or one key would be two: the API passed bare hex, reevaluate "sha256:<hex>".
        object.__setattr__(self, "profile_digest", bare_digest(self.profile_digest))
        object.__setattr__(self, "ruleset_digest", bare_digest(self.ruleset_digest))

    @property
    def waivers_digest(self) -> str:
        return waivers_digest(self.waivers)


def bare_digest(digest: str) -> str:
    """A sha256 digest as the store keeps it: hex, without the "sha256:" that Profile.digest and rulesets carry."""
    return digest.removeprefix("sha256:")


def waivers_digest(waivers: str | None) -> str:
    """The natural key's waivers part: sha256 hex of the document, "" for none (never NULL: see the column)."""
    return "" if waivers is None else hashlib.sha256(waivers.encode()).hexdigest()


@dataclass(frozen=True)
class ScanRow:
    id: str
    tenant: str
    artifact_sha256: str
    filename: str
    profile_name: str
    profile_digest: str
    ruleset_digest: str
    certify_version: str
    generation: int
    waivers: str | None
    waivers_digest: str
    priority: int
    labels: dict[str, Any]
    state: str
    stage: str | None
    attempt: int
    max_attempts: int
    not_before: datetime | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    heartbeat_at: datetime | None
    cancel_requested: bool
    failure_reason: str | None
    failure_message: str | None
    verdict: str | None
    reevaluated: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    reevaluation_of: str | None = None  # the scan this one re-judged under a newer ruleset (certify reevaluate)


@dataclass(frozen=True)
class Claim:
    """A lease on one scan: who holds it and for which attempt; every later call names both."""

    scan: ScanRow
    worker: str
    attempt: int


@dataclass(frozen=True)
class ArtifactVerdict:
    profile_name: str
    profile_digest: str
    verdict: str
    scan_id: str
    ruleset_digest: str
    certify_version: str
    finished_at: datetime
    waivers_digest: str = ""  # "" for none


@dataclass(frozen=True)
class BlobRow:
    sha256: str
    size: int
    created_at: datetime
    filename: str | None
    uploaded_at: datetime


@dataclass(frozen=True)
class FactsRow:
    artifact_sha256: str
    collector_versions: dict[str, str]
    document: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class Reaped:
    scan_id: str
    action: str  # "requeued", "failed" (worker_lost after max_attempts) or "cancelled"
    attempt: int


def _scan_row(row: Any) -> ScanRow:
    m = row._mapping
    return ScanRow(
        id=m["id"], tenant=m["tenant"], artifact_sha256=m["artifact_sha256"], filename=m["filename"],
        profile_name=m["profile_name"], profile_digest=m["profile_digest"], ruleset_digest=m["ruleset_digest"],
        certify_version=m["certify_version"], generation=m["generation"], waivers=m["waivers"],
        waivers_digest=m["waivers_digest"],
        priority=m["priority"], labels=dict(m["labels"] or {}), state=m["state"], stage=m["stage"],
        attempt=m["attempt"], max_attempts=m["max_attempts"], not_before=as_utc(m["not_before"]), lease_owner=m["lease_owner"],
        lease_expires_at=as_utc(m["lease_expires_at"]), heartbeat_at=as_utc(m["heartbeat_at"]),
        cancel_requested=bool(m["cancel_requested"]), failure_reason=m["failure_reason"],
        failure_message=m["failure_message"], verdict=m["verdict"], reevaluated=bool(m["reevaluated"]),
        created_at=as_utc(m["created_at"]), started_at=as_utc(m["started_at"]), finished_at=as_utc(m["finished_at"]),
        reevaluation_of=m["reevaluation_of"],
    )


def _scan_columns() -> list[Any]:
    return [c for c in scans.c if c.name != "seq"]


def body_digest(body: Mapping[str, Any]) -> str:
    """A request body's identity for Idempotency-Key: canonical JSON, so key order and spacing do not matter."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def collectors_key(versions: Mapping[str, str]) -> str:
    return json.dumps({str(k): str(v) for k, v in versions.items()}, sort_keys=True, separators=(",", ":"))


class Store:
    """The service database. Open with :meth:`open`; every method is one short transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, migrate: bool = True) -> Store:
        """The store at ``url``, brought to the newest schema unless ``migrate`` is False."""
        try:
            if migrate:
                db.upgrade(url)
            engine = db.make_engine(url)
            with engine.connect() as connection:
                connection.execute(sa.select(sa.literal(1)))
        except OperationalError as exc:
            raise StoreUnavailable(f"{db.redacted(url)}: cannot open the database: {_first_line(exc)}") from None
        except OSError as exc:  # the data directory cannot be made or written
            raise StoreUnavailable(f"{db.redacted(url)}: cannot open the database: "
                                   f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from None
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(certify_write=True) as connection, connection.begin():
            yield connection

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as connection, connection.begin():
            yield connection

    # -- tenants -------------------------------------------------------------------------------

    def ensure_tenant(self, name: str, now: datetime | None = None) -> None:
        check_tenant(name)
        for _ in range(_RETRIES):
            try:
                with self._write() as c:
                    if c.execute(sa.select(tenants.c.name).where(tenants.c.name == name)).first() is None:
                        c.execute(tenants.insert().values(name=name, created_at=clock(now)))
                return
            except IntegrityError:
                continue  # made meanwhile by someone else: what we wanted
        raise StoreError(f"tenant {name}: could not be recorded")

    def tenant_exists(self, name: str) -> bool:
        with self._read() as c:
            return c.execute(sa.select(tenants.c.name).where(tenants.c.name == name)).first() is not None

    # -- scans: submission ---------------------------------------------------------------------

    def submit_scan(self, request: ScanRequest, *, force: bool = False, idempotency_key: str | None = None,
                    request_body: Mapping[str, Any] | None = None, now: datetime | None = None) -> tuple[ScanRow, bool]:
        """The scan for ``request`` and whether it was made now.

        Without ``force``, an existing scan of the same natural key is returned
        (whatever its state); with it, a new generation of that key is queued.
        With ``idempotency_key``, a retry of the same body returns the scan the
        first attempt made, and another body under that key raises
        :class:`IdempotencyConflict`. Concurrent callers race on UNIQUE
        constraints, and the losers retry: the result is one scan.
        """
        check_tenant(request.tenant)
        _check_sha256(request.artifact_sha256)
        if not request.filename or len(request.filename) > 255:
            raise UsageError("filename: 1-255 characters")
        if request.max_attempts < 1:
            raise UsageError("max_attempts: at least 1")
        digest = body_digest(request_body if request_body is not None else _request_identity(request))
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
            raise UsageError("Idempotency-Key: 1-255 characters")
        self.ensure_tenant(request.tenant, now)
        for _ in range(_RETRIES):
            try:
                with self._write() as c:
                    return self._submit(c, request, force, idempotency_key, digest, clock(now))
            except IntegrityError:
                continue  # another submission won the race: the next round sees its row
        raise StoreError(f"scan of {request.artifact_sha256}: too much contention, try again")

    def _submit(self, c: Connection, request: ScanRequest, force: bool, key: str | None, digest: str,
                now: datetime) -> tuple[ScanRow, bool]:
        if c.dialect.name == "postgresql":
            # Submissions of one natural key queue behind each other here rather than race to
            # the UNIQUE constraint and retry (forced ones would otherwise retry once per rival).
            # SQLite needs nothing: BEGIN IMMEDIATE already serialises its writers.
            c.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_id(request))))
        if key is not None:
            known = c.execute(sa.select(idempotency_keys).where(
                idempotency_keys.c.tenant == request.tenant, idempotency_keys.c.key == key)).first()
            if known is not None:
                if known.body_sha256 != digest:
                    raise IdempotencyConflict(f"Idempotency-Key {key[:80]!r} was used with another request body")
                return self._scan_by_id(c, known.scan_id), False
        latest = c.execute(sa.select(*_scan_columns()).where(*_natural_key(request))
                           .order_by(scans.c.generation.desc()).limit(1)).first()
        if latest is not None and not force:
            row, created = _scan_row(latest), False
        else:
            row = self._insert_scan(c, request, 0 if latest is None else latest.generation + 1, now)
            created = True
        if key is not None:
            c.execute(idempotency_keys.insert().values(tenant=request.tenant, key=key, body_sha256=digest,
                                                       scan_id=row.id, created_at=now))
        return row, created

    def _insert_scan(self, c: Connection, request: ScanRequest, generation: int, now: datetime) -> ScanRow:
        scan_id = new_scan_id()
        c.execute(scans.insert().values(
            id=scan_id, tenant=request.tenant, artifact_sha256=request.artifact_sha256, filename=request.filename,
            profile_name=request.profile_name, profile_digest=request.profile_digest,
            ruleset_digest=request.ruleset_digest, certify_version=request.certify_version, generation=generation,
            waivers=request.waivers, waivers_digest=request.waivers_digest, priority=request.priority,
            labels=dict(request.labels), state="queued",
            attempt=1, max_attempts=request.max_attempts, cancel_requested=False, reevaluated=False, created_at=now,
        ))
        return self._scan_by_id(c, scan_id)

    @staticmethod
    def _scan_by_id(c: Connection, scan_id: str) -> ScanRow:
        return _scan_row(c.execute(sa.select(*_scan_columns()).where(scans.c.id == scan_id)).one())

    # -- scans: workers ------------------------------------------------------------------------

    def claim_next(self, worker: str, lease_seconds: float, now: datetime | None = None) -> Claim | None:
        """Lease the most urgent queued scan (highest priority, then oldest) to ``worker``, or None."""
        now = clock(now)
        for _ in range(_RETRIES):
            with self._write() as c:
                # SKIP LOCKED lets PostgreSQL claimers pass each other; SQLite serialises writers
                # (BEGIN IMMEDIATE) and SQLAlchemy omits the clause there. The CAS below holds either way.
                candidate = c.execute(
                    sa.select(scans.c.id, scans.c.attempt)
                    .where(scans.c.state == "queued", sa.or_(scans.c.not_before.is_(None), scans.c.not_before <= now))
                    .order_by(scans.c.priority.desc(), scans.c.seq).limit(1)
                    .with_for_update(skip_locked=True)
                ).first()
                if candidate is None:
                    return None
                taken = c.execute(
                    scans.update().where(scans.c.id == candidate.id, scans.c.state == "queued",
                                         scans.c.attempt == candidate.attempt)
                    .values(state="running", lease_owner=worker, stage=None,
                            lease_expires_at=now + timedelta(seconds=lease_seconds), heartbeat_at=now,
                            started_at=sa.func.coalesce(scans.c.started_at, now))
                )
                if taken.rowcount == 1:
                    return Claim(self._scan_by_id(c, candidate.id), worker, candidate.attempt)
        return None

    def _held(self, scan_id: str, worker: str, attempt: int) -> tuple[Any, ...]:
        return (scans.c.id == scan_id, scans.c.state == "running", scans.c.lease_owner == worker,
                scans.c.attempt == attempt)

    def heartbeat(self, scan_id: str, worker: str, attempt: int, lease_seconds: float,
                  now: datetime | None = None) -> bool:
        """Extend the lease; True when a cancel was requested. Raises :class:`LeaseLost` if not held."""
        now = clock(now)
        with self._write() as c:
            done = c.execute(scans.update().where(*self._held(scan_id, worker, attempt))
                             .values(heartbeat_at=now, lease_expires_at=now + timedelta(seconds=lease_seconds)))
            if done.rowcount != 1:
                raise LeaseLost(f"scan {scan_id}: {worker} no longer holds attempt {attempt}")
            return bool(c.execute(sa.select(scans.c.cancel_requested).where(scans.c.id == scan_id)).scalar_one())

    def set_stage(self, scan_id: str, worker: str, attempt: int, stage: str) -> None:
        with self._write() as c:
            if c.execute(scans.update().where(*self._held(scan_id, worker, attempt))
                         .values(stage=stage[:40])).rowcount != 1:
                raise LeaseLost(f"scan {scan_id}: {worker} no longer holds attempt {attempt}")

    def complete(self, scan_id: str, worker: str, attempt: int, report_json: str, verdict: str,
                 reevaluated: bool = False, now: datetime | None = None,
                 renderings: Mapping[str, str] | None = None) -> ScanRow:
        """Store the scan's one report and mark it succeeded; a worker that lost the lease is refused.

        ``renderings`` (format -> body) are stored in the same transaction: a
        succeeded scan never lacks them, and a refused attempt leaves none behind.
        """
        if verdict not in VERDICTS:
            raise UsageError(f"verdict {verdict!r}: one of {', '.join(VERDICTS)}")
        now = clock(now)
        try:
            with self._write() as c:
                if c.execute(scans.update().where(*self._held(scan_id, worker, attempt)).values(
                        state="succeeded", verdict=verdict, reevaluated=reevaluated, finished_at=now,
                        lease_owner=None, lease_expires_at=None)).rowcount != 1:
                    raise LeaseLost(f"scan {scan_id}: {worker} no longer holds attempt {attempt}; its report is refused")
                c.execute(reports.insert().values(scan_id=scan_id, report_json=report_json, created_at=now))
                self._put_renderings(c, scan_id, renderings or {}, now)
                return self._scan_by_id(c, scan_id)
        except IntegrityError:
            raise LeaseLost(f"scan {scan_id} already has its report") from None

    def fail(self, scan_id: str, worker: str, attempt: int, reason: str, message: str = "",
             now: datetime | None = None) -> ScanRow:
        """End a held scan without a report: ``cancelled`` for reason cancelled, ``failed`` otherwise."""
        if reason not in FAILURE_REASONS:
            raise UsageError(f"failure reason {reason!r}: one of {', '.join(FAILURE_REASONS)}")
        now = clock(now)
        with self._write() as c:
            if c.execute(scans.update().where(*self._held(scan_id, worker, attempt)).values(
                    state="cancelled" if reason == "cancelled" else "failed", failure_reason=reason,
                    failure_message=message[:4000] or None, finished_at=now, lease_owner=None,
                    lease_expires_at=None)).rowcount != 1:
                raise LeaseLost(f"scan {scan_id}: {worker} no longer holds attempt {attempt}")
            return self._scan_by_id(c, scan_id)

    def request_cancel(self, tenant: str, scan_id: str, now: datetime | None = None) -> ScanRow | None:
        """Cancel a queued scan at once, flag a running one for its worker; None if the tenant has no such scan."""
        now = clock(now)
        with self._write() as c:
            mine = (scans.c.id == scan_id, scans.c.tenant == tenant)
            c.execute(scans.update().where(*mine, scans.c.state == "queued").values(
                state="cancelled", failure_reason="cancelled", finished_at=now, cancel_requested=True))
            c.execute(scans.update().where(*mine, scans.c.state == "running").values(cancel_requested=True))
            row = c.execute(sa.select(*_scan_columns()).where(*mine)).first()
            return None if row is None else _scan_row(row)

    def reap_expired(self, now: datetime | None = None, backoff_seconds: float = 0.0) -> list[Reaped]:
        """Deal with running scans whose lease expired: re-queue (attempt+1), or end them.

        A scan at its last attempt fails ``worker_lost``; one whose cancel was
        requested is cancelled rather than run again. A re-queued scan is not
        claimed before ``backoff_seconds`` x 2^(attempts lost - 1) have passed.
        """
        now = clock(now)
        done: list[Reaped] = []
        with self._write() as c:
            expired = c.execute(sa.select(scans.c.id, scans.c.attempt, scans.c.max_attempts, scans.c.cancel_requested,
                                          scans.c.lease_owner)
                                .where(scans.c.state == "running", scans.c.lease_expires_at < now)
                                .order_by(scans.c.seq).with_for_update(skip_locked=True)).all()
            for row in expired:
                cas = scans.update().where(scans.c.id == row.id, scans.c.state == "running",
                                           scans.c.attempt == row.attempt, scans.c.lease_owner == row.lease_owner)
                ended = dict(lease_owner=None, lease_expires_at=None, finished_at=now)
                if row.cancel_requested:
                    action, attempt, update = "cancelled", row.attempt, cas.values(
                        state="cancelled", failure_reason="cancelled", **ended)
                elif row.attempt >= row.max_attempts:
                    action, attempt, update = "failed", row.attempt, cas.values(
                        state="failed", failure_reason="worker_lost",
                        failure_message=f"the worker was lost on each of {row.attempt} attempts", **ended)
                else:
                    action, attempt, update = "requeued", row.attempt + 1, cas.values(
                        state="queued", attempt=row.attempt + 1, stage=None, lease_owner=None,
                        lease_expires_at=None, heartbeat_at=None,
                        not_before=now + timedelta(seconds=backoff_seconds * 2 ** (row.attempt - 1)))
                if c.execute(update).rowcount == 1:
                    done.append(Reaped(row.id, action, attempt))
        return done

    def release(self, scan_id: str, worker: str, attempt: int) -> bool:
        """Give a held scan back to the queue at the same attempt (a worker shutting down); False if not held.

        A worker asked to stop is not a lost worker: its scan must not use up one of its attempts.
        """
        with self._write() as c:
            held = self._held(scan_id, worker, attempt)
            if c.execute(scans.update().where(*held, scans.c.cancel_requested.is_(True)).values(
                    state="cancelled", failure_reason="cancelled", finished_at=clock(None), lease_owner=None,
                    lease_expires_at=None)).rowcount == 1:
                return True  # its cancel was asked for meanwhile: nothing to give back
            return c.execute(scans.update().where(*held).values(
                state="queued", stage=None, lease_owner=None, lease_expires_at=None, heartbeat_at=None,
                started_at=None)).rowcount == 1

    # -- re-evaluation -------------------------------------------------------------------------

    def reevaluation_candidates(self, ruleset_digest: str, since: datetime | None = None) -> list[ScanRow]:
        """Succeeded scans judged under another ruleset (finished at or after ``since``), newest first.

        Left out: those whose tenant, artifact, profile and waivers already have a scan under this
        ruleset (judged again before, or submitted again since), so that asking twice finds nothing new.
        """
        query = sa.select(*_scan_columns()).where(*_reevaluation_filter(ruleset_digest, since))
        with self._read() as c:
            return [_scan_row(r) for r in c.execute(query.order_by(scans.c.seq.desc())).all()]

    def count_reevaluation_candidates(self, ruleset_digest: str) -> int:
        """How many scans ``reevaluation_candidates`` would list."""
        query = sa.select(sa.func.count()).select_from(scans).where(*_reevaluation_filter(ruleset_digest, None))
        with self._read() as c:
            return c.execute(query).scalar_one()

    def record_reevaluation(self, old: ScanRow, profile_digest: str, ruleset_digest: str, certify_version: str,
                            report_json: str, verdict: str, renderings: Mapping[str, str] | None = None,
                            now: datetime | None = None) -> ScanRow | None:
        """A new succeeded scan: ``old`` judged again from stored facts under a newer ruleset, linked to it.

        None when the natural key under the new ruleset already has a scan (re-evaluated before, or
        submitted since): that one stands.
        """
        if verdict not in VERDICTS:
            raise UsageError(f"verdict {verdict!r}: one of {', '.join(VERDICTS)}")
        now = clock(now)
        request = ScanRequest(tenant=old.tenant, artifact_sha256=old.artifact_sha256, filename=old.filename,
                              profile_name=old.profile_name, profile_digest=profile_digest,
                              ruleset_digest=ruleset_digest, certify_version=certify_version, waivers=old.waivers,
                              priority=old.priority, labels=old.labels, max_attempts=old.max_attempts)
        try:
            with self._write() as c:
                if c.dialect.name == "postgresql":
                    c.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_id(request))))
                exists = c.execute(sa.select(scans.c.id).where(*_natural_key(request)).limit(1)).first()
                if exists is not None:
                    return None
                row = self._insert_scan(c, request, 0, now)
                c.execute(scans.update().where(scans.c.id == row.id).values(
                    state="succeeded", verdict=verdict, reevaluated=True, reevaluation_of=old.id,
                    started_at=now, finished_at=now))
                c.execute(reports.insert().values(scan_id=row.id, report_json=report_json, created_at=now))
                self._put_renderings(c, row.id, renderings or {}, now)
                return self._scan_by_id(c, row.id)
        except IntegrityError:
            return None  # made meanwhile by a concurrent re-evaluation

    # -- renderings ----------------------------------------------------------------------------

    def put_rendering(self, scan_id: str, fmt: str, body: str, now: datetime | None = None) -> None:
        """Keep one report format of a scan (replacing an earlier rendering of that format)."""
        with self._write() as c:
            if c.execute(sa.select(scans.c.id).where(scans.c.id == scan_id)).first() is None:
                raise StoreError(f"scan {scan_id}: no such scan")
            self._put_renderings(c, scan_id, {fmt: body}, clock(now))

    @staticmethod
    def _put_renderings(c: Connection, scan_id: str, bodies: Mapping[str, str], now: datetime) -> None:
        for fmt, body in bodies.items():
            if not isinstance(fmt, str) or not 1 <= len(fmt) <= 40:
                raise UsageError(f"report format {str(fmt)[:50]!r}: 1-40 characters")
            if not isinstance(body, str):
                raise UsageError(f"rendering {fmt} of scan {scan_id}: not text")
            c.execute(renderings.delete().where(renderings.c.scan_id == scan_id, renderings.c.format == fmt))
            c.execute(renderings.insert().values(scan_id=scan_id, format=fmt, body=body, created_at=now))

    def get_rendering(self, tenant: str, scan_id: str, fmt: str) -> str | None:
        """The tenant's scan rendered in ``fmt``, or None (no such scan for this tenant, or no such rendering)."""
        with self._read() as c:
            return c.execute(sa.select(renderings.c.body).join(scans, scans.c.id == renderings.c.scan_id)
                             .where(scans.c.id == scan_id, scans.c.tenant == tenant,
                                    renderings.c.format == fmt)).scalar_one_or_none()

    def rendering_formats(self, scan_id: str) -> list[str]:
        with self._read() as c:
            return sorted(c.execute(sa.select(renderings.c.format).where(renderings.c.scan_id == scan_id)).scalars())

    # -- scans: reading ------------------------------------------------------------------------

    def get_scan(self, tenant: str, scan_id: str) -> ScanRow | None:
        """The tenant's scan, or None: another tenant's id is indistinguishable from an unknown one."""
        with self._read() as c:
            row = c.execute(sa.select(*_scan_columns()).where(scans.c.id == scan_id, scans.c.tenant == tenant)).first()
            return None if row is None else _scan_row(row)

    def get_report(self, tenant: str, scan_id: str) -> str | None:
        with self._read() as c:
            return c.execute(sa.select(reports.c.report_json).join(scans, scans.c.id == reports.c.scan_id)
                             .where(scans.c.id == scan_id, scans.c.tenant == tenant)).scalar_one_or_none()

    def list_scans(self, tenant: str, state: str | None = None, verdict: str | None = None,
                   cursor: str | None = None, limit: int = 50) -> tuple[list[ScanRow], str | None]:
        """The tenant's scans, newest first, and the cursor of the next page (None on the last)."""
        if state is not None and state not in STATES:
            raise UsageError(f"state {state!r}: one of {', '.join(STATES)}")
        if verdict is not None and verdict not in VERDICTS:
            raise UsageError(f"verdict {verdict!r}: one of {', '.join(VERDICTS)}")
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise UsageError(f"limit {limit}: between 1 and {MAX_LIST_LIMIT}")
        query = sa.select(scans.c.seq, *_scan_columns()).where(scans.c.tenant == tenant)
        if state is not None:
            query = query.where(scans.c.state == state)
        if verdict is not None:
            query = query.where(scans.c.verdict == verdict)
        if cursor is not None:
            query = query.where(scans.c.seq < _decode_cursor(cursor))
        with self._read() as c:
            rows = c.execute(query.order_by(scans.c.seq.desc()).limit(limit + 1)).all()
        page = rows[:limit]
        following = _encode_cursor(page[-1].seq) if len(rows) > limit else None
        return [_scan_row(r) for r in page], following

    def latest_verdicts(self, tenant: str, sha256: str) -> list[ArtifactVerdict]:
        """For one artifact, the verdict of the newest succeeded scan under each profile the tenant used."""
        with self._read() as c:
            rows = c.execute(sa.select(*_scan_columns())
                             .where(scans.c.tenant == tenant, scans.c.artifact_sha256 == sha256,
                                    scans.c.state == "succeeded")
                             .order_by(scans.c.finished_at.desc(), scans.c.seq.desc())).all()
        latest: dict[str, ArtifactVerdict] = {}
        for row in map(_scan_row, rows):
            latest.setdefault(row.profile_name, ArtifactVerdict(
                row.profile_name, row.profile_digest, row.verdict or "error", row.id, row.ruleset_digest,
                row.certify_version, row.finished_at or row.created_at, row.waivers_digest))
        return sorted(latest.values(), key=lambda v: v.profile_name)

    # -- blobs ---------------------------------------------------------------------------------

    def record_blob(self, tenant: str, sha256: str, size: int, filename: str | None = None,
                    now: datetime | None = None) -> BlobRow:
        """Note that ``tenant`` uploaded the blob (its bytes already in the blob directory)."""
        _check_sha256(sha256)
        now = clock(now)
        self.ensure_tenant(tenant, now)
        for _ in range(_RETRIES):
            try:
                with self._write() as c:
                    if c.execute(sa.select(blobs.c.sha256).where(blobs.c.sha256 == sha256)).first() is None:
                        c.execute(blobs.insert().values(sha256=sha256, size=size, created_at=now))
                    grant = (blob_grants.c.tenant == tenant, blob_grants.c.sha256 == sha256)
                    if c.execute(sa.select(blob_grants.c.sha256).where(*grant)).first() is None:
                        c.execute(blob_grants.insert().values(tenant=tenant, sha256=sha256, filename=filename,
                                                              uploaded_at=now))
                break
            except IntegrityError:
                continue
        found = self.get_blob(tenant, sha256)
        if found is None:
            raise StoreError(f"blob {sha256}: could not be recorded")
        return found

    def get_blob(self, tenant: str, sha256: str) -> BlobRow | None:
        """The blob if this tenant uploaded it; None otherwise, even when another tenant did."""
        with self._read() as c:
            row = c.execute(sa.select(blobs.c.sha256, blobs.c.size, blobs.c.created_at, blob_grants.c.filename,
                                      blob_grants.c.uploaded_at)
                            .join(blob_grants, blob_grants.c.sha256 == blobs.c.sha256)
                            .where(blobs.c.sha256 == sha256, blob_grants.c.tenant == tenant)).first()
        if row is None:
            return None
        return BlobRow(row.sha256, row.size, as_utc(row.created_at), row.filename, as_utc(row.uploaded_at))

    # -- facts ---------------------------------------------------------------------------------

    def put_facts(self, sha256: str, collector_versions: Mapping[str, str], document: Mapping[str, Any],
                  now: datetime | None = None) -> bool:
        """Keep the facts gathered from an artifact under these collector versions; False if already kept."""
        _check_sha256(sha256)
        key = collectors_key(collector_versions)
        try:
            with self._write() as c:
                where = (facts.c.artifact_sha256 == sha256, facts.c.collectors_key == key)
                if c.execute(sa.select(facts.c.artifact_sha256).where(*where)).first() is not None:
                    return False
                c.execute(facts.insert().values(artifact_sha256=sha256, collectors_key=key,
                                                collector_versions=json.loads(key),
                                                document=json.dumps(document, separators=(",", ":")),
                                                created_at=clock(now)))
                return True
        except IntegrityError:
            return False  # kept meanwhile by a concurrent worker: the same facts

    def get_facts(self, sha256: str, collector_versions: Mapping[str, str]) -> dict[str, Any] | None:
        """The facts of an artifact gathered by exactly these collector versions, or None."""
        with self._read() as c:
            text = c.execute(sa.select(facts.c.document).where(
                facts.c.artifact_sha256 == sha256,
                facts.c.collectors_key == collectors_key(collector_versions))).scalar_one_or_none()
        return None if text is None else json.loads(text)

    def facts_for(self, sha256: str) -> list[FactsRow]:
        """Every facts document kept for an artifact, newest first (to reuse those of unchanged collectors)."""
        with self._read() as c:
            rows = c.execute(sa.select(facts).where(facts.c.artifact_sha256 == sha256)
                             .order_by(facts.c.created_at.desc())).all()
        return [FactsRow(r.artifact_sha256, dict(r.collector_versions), json.loads(r.document), as_utc(r.created_at))
                for r in rows]


def _request_identity(request: ScanRequest) -> dict[str, Any]:
    return {"artifact": request.artifact_sha256, "filename": request.filename, "profile": request.profile_name,
            "profile_digest": request.profile_digest, "waivers": request.waivers, "priority": request.priority,
            "labels": dict(request.labels)}


def _reevaluation_filter(ruleset_digest: str, since: datetime | None) -> list[sa.ColumnElement[bool]]:
    ruleset_digest = bare_digest(ruleset_digest)
    current = scans.alias("current")
    judged_since = sa.exists().where(
        current.c.tenant == scans.c.tenant, current.c.artifact_sha256 == scans.c.artifact_sha256,
        current.c.profile_name == scans.c.profile_name, current.c.waivers_digest == scans.c.waivers_digest,
        current.c.ruleset_digest == ruleset_digest, current.c.state.in_(("queued", "running", "succeeded")))
    where = [scans.c.state == "succeeded", scans.c.ruleset_digest != ruleset_digest, ~judged_since]
    if since is not None:
        where.append(scans.c.finished_at >= clock(since))
    return where


def _natural_key(request: ScanRequest) -> tuple[sa.ColumnElement[bool], ...]:
    """The scans of the request's natural key (every generation)."""
    return (scans.c.tenant == request.tenant, scans.c.artifact_sha256 == request.artifact_sha256,
            scans.c.profile_name == request.profile_name, scans.c.profile_digest == request.profile_digest,
            scans.c.waivers_digest == request.waivers_digest, scans.c.ruleset_digest == request.ruleset_digest,
            scans.c.certify_version == request.certify_version)


def _lock_id(request: ScanRequest) -> int:
    key = "\x1f".join((request.tenant, request.artifact_sha256, request.profile_name, request.profile_digest,
                       request.waivers_digest, request.ruleset_digest, request.certify_version))
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"s1:{seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        prefix, _, value = text.partition(":")
        if prefix != "s1" or not value.isdigit():
            raise ValueError
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor(f"cursor {cursor[:40]!r} is not one this service handed out") from None


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
