"""The service database: its URL, its engine, its tables, its migrations.

SQLite (a file in the data directory) is the default so that one machine needs
nothing else; ``postgresql://`` URLs run the same code on a server shared by a
fleet. The tables are SQLAlchemy Core objects; the Alembic revisions under
``migrations/`` create them and ``tests/test_service_store.py`` asserts that the
two never drift apart.
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError

from certify.errors import UsageError

DB_FILENAME = "certify.db"
# How long an SQLite writer waits for another's lock before giving up; writes are
# short transactions, so a long wait only ever covers a burst of them.
SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATIONS = Path(__file__).resolve().parent / "migrations"

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
# Timestamps are UTC; SQLite keeps them as ISO text, which sorts and compares as time does.
Timestamp = sa.DateTime(timezone=True)
# "sha256:<64 hex>", as Profile.digest and installed_ruleset_digest write them. SQLite never checks a length,
# and its tables keep the first schema's 64 (see migration 0002).
Digest = sa.String(100).with_variant(sa.String(64), "sqlite")
# An autoincrementing 64-bit key on PostgreSQL that SQLite still treats as its rowid.
BigKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

tenants = sa.Table(
    "tenants", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("created_at", Timestamp, nullable=False),
)

tokens = sa.Table(
    "tokens", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.name"), nullable=False, index=True),
    # Only the digest of the secret is kept: a leaked database grants nothing.
    sa.Column("secret_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("scopes", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False, server_default=""),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("revoked_at", Timestamp),
    sa.Column("last_used_at", Timestamp),
)

blobs = sa.Table(
    "blobs", metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
)

# One row per tenant that uploaded a blob: content is stored once, but a tenant
# sees only what it uploaded itself.
blob_grants = sa.Table(
    "blob_grants", metadata,
    sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.name"), primary_key=True),
    sa.Column("sha256", sa.String(64), sa.ForeignKey("blobs.sha256"), primary_key=True),
    sa.Column("filename", sa.String(255)),
    sa.Column("uploaded_at", Timestamp, nullable=False),
)

scans = sa.Table(
    "scans", metadata,
    # Internal order of creation (the list cursor); never shown.
    sa.Column("seq", BigKey, primary_key=True, autoincrement=True),
    # The public id: random, so ids say nothing about volume and cannot be walked.
    sa.Column("id", sa.String(32), nullable=False, unique=True),
    sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.name"), nullable=False),
    sa.Column("artifact_sha256", sa.String(64), nullable=False),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("profile_name", sa.String(200), nullable=False),
    sa.Column("profile_digest", Digest, nullable=False),
    sa.Column("ruleset_digest", Digest, nullable=False),
    sa.Column("certify_version", sa.String(40), nullable=False),
    # 0 for the first scan of a natural key, +1 for each forced re-scan of it.
    sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
    sa.Column("waivers", sa.Text),
    # sha256 hex of the waivers document, "" for none: part of the natural key, and never NULL, since
    # PostgreSQL's UNIQUE treats NULLs as distinct (two waiver-less submissions would both be inserted).
    sa.Column("waivers_digest", sa.String(64), nullable=False, server_default=""),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("stage", sa.String(40)),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="3"),
    # A re-queued scan waits until then (the reaper's back-off), so a crashing job cannot spin.
    sa.Column("not_before", Timestamp),
    sa.Column("lease_owner", sa.String(200)),
    sa.Column("lease_expires_at", Timestamp),
    sa.Column("heartbeat_at", Timestamp),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("failure_reason", sa.String(16)),
    sa.Column("failure_message", sa.Text),
    sa.Column("verdict", sa.String(16)),
    sa.Column("reevaluated", sa.Boolean, nullable=False, server_default=sa.false()),
    # Set on a scan that `certify reevaluate` made by judging another scan's facts under a newer ruleset:
    # the scan it re-judged. The old scan, its report and any certificate stay as they were issued.
    sa.Column("reevaluation_of", sa.String(32)),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("started_at", Timestamp),
    sa.Column("finished_at", Timestamp),
    # The profile's name is in the key as well as its digest: two profiles with the same content
    # (default and isv-selftest) are still two judgements, each reported under its own name.
    sa.UniqueConstraint("tenant", "artifact_sha256", "profile_name", "profile_digest", "waivers_digest",
                        "ruleset_digest", "certify_version", "generation", name="uq_scans_natural_key"),
    sa.CheckConstraint("state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="state"),
    sa.CheckConstraint("failure_reason IS NULL OR failure_reason IN ('timeout', 'worker_lost', 'cancelled', 'error')",
                       name="failure_reason"),
    sa.CheckConstraint("verdict IS NULL OR verdict IN ('pass', 'fail', 'rejected', 'error')", name="verdict"),
    sa.CheckConstraint("attempt >= 1 AND max_attempts >= 1", name="attempts"),
    sa.Index(None, "state", "priority", "seq"),  # claim_next: the queue in claim order
    sa.Index(None, "tenant", "seq"),  # list_scans
    sa.Index(None, "tenant", "artifact_sha256", "state"),  # latest_verdicts
)

reports = sa.Table(
    "reports", metadata,
    # The primary key is the scan: a scan has at most one report, whoever tries to add a second.
    sa.Column("scan_id", sa.String(32), sa.ForeignKey("scans.id"), primary_key=True),
    sa.Column("report_json", sa.Text, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
)

# Every report format of a succeeded scan, rendered once at completion from the one judged report.
renderings = sa.Table(
    "renderings", metadata,
    sa.Column("scan_id", sa.String(32), sa.ForeignKey("scans.id"), primary_key=True),
    sa.Column("format", sa.String(40), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
)

facts = sa.Table(
    "facts", metadata,
    sa.Column("artifact_sha256", sa.String(64), primary_key=True),
    # Canonical JSON of {collector: version}: the facts are valid while these versions are.
    sa.Column("collectors_key", sa.String(2000), primary_key=True),
    sa.Column("collector_versions", sa.JSON, nullable=False),
    # Text, not JSON/JSONB: the document must come back byte for byte as it went in.
    sa.Column("document", sa.Text, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
)

idempotency_keys = sa.Table(
    "idempotency_keys", metadata,
    sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.name"), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("scan_id", sa.String(32), sa.ForeignKey("scans.id"), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
)


def default_data_dir() -> Path:
    """Where the service keeps its state unless told: $CERTIFY_DATA, else ./certify-data."""
    return Path(os.environ.get("CERTIFY_DATA") or "certify-data")


def sqlite_url(data_dir: str | os.PathLike[str]) -> str:
    return f"sqlite:///{Path(data_dir).resolve() / DB_FILENAME}"


def normalize_url(url: str) -> str:
    """The URL as SQLAlchemy needs it: a bare ``postgresql://`` means psycopg 3 (the only driver we ship)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UsageError(f"{redacted(url)}: not a database URL (sqlite:///PATH or postgresql://USER@HOST/DB)") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise UsageError(f"{redacted(url)}: unsupported database (sqlite:///PATH or postgresql://USER@HOST/DB)")
    if parsed.drivername.startswith("sqlite") and parsed.database in (None, "", ":memory:"):
        raise UsageError(f"{redacted(url)}: the service needs a database file, not memory")
    return parsed.render_as_string(hide_password=False)


def redacted(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url[:80]


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        # The data directory is made on first use, private to the service's user.
        Path(make_url(url).database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        _configure_sqlite(engine)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # noqa: ANN001
        # Take transactions in hand: pysqlite's own BEGIN is deferred, and a deferred
        # transaction that reads and then writes fails at once with "database is locked"
        # (no busy wait) when another writer got in between.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable in WAL mode up to the last checkpointed commit
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):  # noqa: ANN001
        # Writers take the write lock up front (waiting up to the busy timeout), readers do not.
        mode = "IMMEDIATE" if connection.get_execution_options().get("certify_write") else "DEFERRED"
        connection.exec_driver_sql(f"BEGIN {mode}")


def alembic_config(url: str):  # noqa: ANN201 - alembic.config.Config, imported lazily
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = normalize_url(url)
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (creating it from empty if need be)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)
