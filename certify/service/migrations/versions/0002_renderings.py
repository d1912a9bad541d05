"""Workers: every report format rendered at completion, re-evaluations linked to the scan they re-judged,
and digest columns wide enough for "sha256:<hex>".

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen copy of the type in certify.service.db: a revision must not change when the model does.
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "renderings",
        sa.Column("scan_id", sa.String(32), nullable=False),
        sa.Column("format", sa.String(40), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("scan_id", "format", name="pk_renderings"),
        sa.ForeignKeyConstraint(["scan_id"], ["scans.id"], name="fk_renderings_scan_id_scans"),
    )
    op.add_column("scans", sa.Column("reevaluation_of", sa.String(32)))
    # Profile and ruleset digests are written "sha256:<64 hex>" (Profile.digest, installed_ruleset_digest):
    # 71 characters, which PostgreSQL refused in the first schema's 64. SQLite never checks a length, and
    # would have to copy the table (renaming its CHECK constraints on the way) to change one: left as it is.
    if op.get_context().dialect.name != "sqlite":
        for column in ("profile_digest", "ruleset_digest"):
            op.alter_column("scans", column, type_=sa.String(100), existing_type=sa.String(64), existing_nullable=False)


def downgrade() -> None:
    op.drop_column("scans", "reevaluation_of")  # SQLite 3.35+ drops a column in place
    if op.get_context().dialect.name != "sqlite":
        for column in ("profile_digest", "ruleset_digest"):
            op.alter_column("scans", column, type_=sa.String(64), existing_type=sa.String(100), existing_nullable=False)
    op.drop_table("renderings")
