"""The first schema: tenants, tokens, blobs, scans, reports, facts, idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the types in certify.service.db: a revision must not change when the model does.
Timestamp = sa.DateTime(timezone=True)
BigKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_tenants"),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("scopes", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False, server_default=""),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("revoked_at", Timestamp),
        sa.Column("last_used_at", Timestamp),
        sa.PrimaryKeyConstraint("id", name="pk_tokens"),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.name"], name="fk_tokens_tenant_tenants"),
        sa.UniqueConstraint("secret_sha256", name="uq_tokens_secret_sha256"),
    )
    op.create_index("ix_tokens_tenant", "tokens", ["tenant"])
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_blobs"),
    )
    op.create_table(
        "blob_grants",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(255)),
        sa.Column("uploaded_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "sha256", name="pk_blob_grants"),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.name"], name="fk_blob_grants_tenant_tenants"),
        sa.ForeignKeyConstraint(["sha256"], ["blobs.sha256"], name="fk_blob_grants_sha256_blobs"),
    )
    op.create_table(
        "scans",
        sa.Column("seq", BigKey, nullable=False, autoincrement=True),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("profile_name", sa.String(200), nullable=False),
        sa.Column("profile_digest", sa.String(64), nullable=False),
        sa.Column("ruleset_digest", sa.String(64), nullable=False),
        sa.Column("certify_version", sa.String(40), nullable=False),
        sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
        sa.Column("waivers", sa.Text),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("stage", sa.String(40)),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
        sa.Column("max_attempts", sa.Integer, nullable=False, server_default="3"),
        sa.Column("not_before", Timestamp),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_expires_at", Timestamp),
        sa.Column("heartbeat_at", Timestamp),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("failure_reason", sa.String(16)),
        sa.Column("failure_message", sa.Text),
        sa.Column("verdict", sa.String(16)),
        sa.Column("reevaluated", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("started_at", Timestamp),
        sa.Column("finished_at", Timestamp),
        sa.PrimaryKeyConstraint("seq", name="pk_scans"),
        sa.UniqueConstraint("id", name="uq_scans_id"),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.name"], name="fk_scans_tenant_tenants"),
        sa.UniqueConstraint("tenant", "artifact_sha256", "profile_digest", "ruleset_digest", "certify_version",
                            "generation", name="uq_scans_natural_key"),
        sa.CheckConstraint("state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="ck_scans_state"),
        sa.CheckConstraint("failure_reason IS NULL OR failure_reason IN ('timeout', 'worker_lost', 'cancelled', 'error')",
                           name="ck_scans_failure_reason"),
        sa.CheckConstraint("verdict IS NULL OR verdict IN ('pass', 'fail', 'rejected', 'error')", name="ck_scans_verdict"),
        sa.CheckConstraint("attempt >= 1 AND max_attempts >= 1", name="ck_scans_attempts"),
    )
    op.create_index("ix_scans_state_priority_seq", "scans", ["state", "priority", "seq"])
    op.create_index("ix_scans_tenant_seq", "scans", ["tenant", "seq"])
    op.create_index("ix_scans_tenant_artifact_sha256_state", "scans", ["tenant", "artifact_sha256", "state"])
    op.create_table(
        "reports",
        sa.Column("scan_id", sa.String(32), nullable=False),
        sa.Column("report_json", sa.Text, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("scan_id", name="pk_reports"),
        sa.ForeignKeyConstraint(["scan_id"], ["scans.id"], name="fk_reports_scan_id_scans"),
    )
    op.create_table(
        "facts",
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("collectors_key", sa.String(2000), nullable=False),
        sa.Column("collector_versions", sa.JSON, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("artifact_sha256", "collectors_key", name="pk_facts"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("scan_id", sa.String(32), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "key", name="pk_idempotency_keys"),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.name"], name="fk_idempotency_keys_tenant_tenants"),
        sa.ForeignKeyConstraint(["scan_id"], ["scans.id"], name="fk_idempotency_keys_scan_id_scans"),
    )


def downgrade() -> None:
    for table in ("idempotency_keys", "facts", "reports", "scans", "blob_grants", "blobs", "tokens", "tenants"):
        op.drop_table(table)
