"""The natural key names the profile and the waivers: a profile_name and a waivers_digest in it.

Until now two profiles with the same content (default and isv-selftest) shared one scan, and the
API folded the waivers into the stored profile_digest. After this revision profile_digest is the
profile's own digest again: for rows with waivers, it is recovered from what the row's report (or
the installed profile of that name) says, checked against the folded digest; a row whose profile
digest cannot be recovered that way keeps the folded one (it still names its scan's policy; a new
submission just makes a new scan).

Digests are also made bare hex throughout: `certify reevaluate` wrote "sha256:<hex>" where the API
wrote hex, so its scans never answered a submission and every API scan looked judged under another
ruleset.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import hashlib
import json

import sqlalchemy as sa
from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OLD_KEY = ["tenant", "artifact_sha256", "profile_digest", "ruleset_digest", "certify_version", "generation"]
NEW_KEY = ["tenant", "artifact_sha256", "profile_name", "profile_digest", "waivers_digest", "ruleset_digest",
           "certify_version", "generation"]

# Lightweight tables: only the columns this revision reads or writes, as they are at this revision.
scans = sa.table("scans", *(sa.column(name) for name in ("seq", "id", "waivers", *NEW_KEY)))
reports = sa.table("reports", sa.column("scan_id", sa.String), sa.column("report_json", sa.Text))


def folded_digest(profile_digest: str, waivers: str) -> str:
    """What the API stored as profile_digest for a scan with waivers before this revision (frozen copy)."""
    material = json.dumps({"profile": profile_digest, "waivers": waivers}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()


def waivers_digest(waivers: str | None) -> str:
    return "" if waivers is None else hashlib.sha256(waivers.encode()).hexdigest()


def _online_only() -> None:
    if context.is_offline_mode():
        # The rows' digests are computed in Python (SQLite has no sha256): there is no SQL script to print.
        raise SystemExit("revision 0003 rewrites stored scans (waivers and profile digests): "
                         "run it against the database, not with --sql")


def upgrade() -> None:
    _online_only()
    with op.batch_alter_table("scans") as batch:
        batch.add_column(sa.Column("waivers_digest", sa.String(64), nullable=False, server_default=""))
        batch.drop_constraint("uq_scans_natural_key", type_="unique")
        batch.create_unique_constraint("uq_scans_natural_key", NEW_KEY)
    c = op.get_bind()
    waived = c.execute(sa.select(scans.c.id, scans.c.profile_name, scans.c.profile_digest, scans.c.waivers)
                       .where(scans.c.waivers.is_not(None))).all()
    for row in waived:
        c.execute(scans.update().where(scans.c.id == row.id).values(
            waivers_digest=waivers_digest(row.waivers),
            profile_digest=_unfolded(c, row) or row.profile_digest))
    _strip_digest_prefixes(c)
    _check_foreign_keys(c)


def _strip_digest_prefixes(c: sa.Connection) -> None:
    """Digests as bare hex everywhere: reevaluate wrote "sha256:<hex>" where the API wrote hex, so one key was two.

    A row that then has the key and generation of another moves after the key's newest (as a forced re-scan).
    """
    prefixed = c.execute(sa.select(scans).where(sa.or_(scans.c.profile_digest.like("sha256:%"),
                                                       scans.c.ruleset_digest.like("sha256:%")))
                         .order_by(scans.c.seq)).all()
    for row in prefixed:
        bare = {"profile_digest": row.profile_digest.removeprefix("sha256:"),
                "ruleset_digest": row.ruleset_digest.removeprefix("sha256:")}
        key = {name: bare.get(name, getattr(row, name)) for name in NEW_KEY if name != "generation"}
        generations = c.execute(sa.select(scans.c.generation).where(
            scans.c.id != row.id, *(scans.c[name] == value for name, value in key.items()))).scalars().all()
        generation = row.generation if row.generation not in generations else max(generations) + 1
        c.execute(scans.update().where(scans.c.id == row.id).values(generation=generation, **bare))


def _unfolded(c: sa.Connection, row) -> str | None:  # noqa: ANN001 - a result row
    """The profile's own digest (bare hex) behind a folded one, when a candidate hashes to it."""
    candidates = []
    report = c.execute(sa.select(reports.c.report_json).where(reports.c.scan_id == row.id)).scalar_one_or_none()
    if report is not None:
        try:
            candidates.append(json.loads(report).get("profile_digest"))
        except (ValueError, AttributeError):
            pass
    try:
        from certify.policy.profile import load_profile

        candidates.append(load_profile(row.profile_name).digest)
    except Exception:  # noqa: BLE001 - a profile no longer installed (or any other reason) is just no candidate
        pass
    for candidate in candidates:
        if isinstance(candidate, str) and folded_digest(candidate, row.waivers) == row.profile_digest:
            return candidate.removeprefix("sha256:")
    return None


def downgrade() -> None:
    _online_only()
    c = op.get_bind()
    # Fold the waivers into profile_digest again, as the API before this revision did.
    waived = c.execute(sa.select(scans.c.id, scans.c.profile_digest, scans.c.waivers)
                       .where(scans.c.waivers.is_not(None))).all()
    for row in waived:
        # A folded digest that was never recovered is folded once more: it named no profile before either.
        c.execute(scans.update().where(scans.c.id == row.id).values(
            profile_digest=folded_digest("sha256:" + row.profile_digest.removeprefix("sha256:"), row.waivers)))
    # Scans that only the profile name or the waivers told apart now collide: the downgrade fails on them.
    with op.batch_alter_table("scans") as batch:
        batch.drop_constraint("uq_scans_natural_key", type_="unique")
        batch.create_unique_constraint("uq_scans_natural_key", OLD_KEY)
        batch.drop_column("waivers_digest")
    _check_foreign_keys(c)


def _check_foreign_keys(c: sa.Connection) -> None:
    if c.dialect.name == "sqlite":
        broken = c.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise RuntimeError(f"migration 0003 left rows with dangling foreign keys: {broken[:5]}")
