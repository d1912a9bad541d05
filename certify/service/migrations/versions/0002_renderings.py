"""Workers: every report format rendered at completion, and re-evaluations linked to the scan they re-judged.

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


def downgrade() -> None:
    with op.batch_alter_table("scans") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("reevaluation_of")
    op.drop_table("renderings")
