"""Per-tenant bearer tokens with scopes.

A secret is ``cfy_`` and 32 random bytes (URL-safe base64), shown once at
creation; the store keeps only its sha256, so a copy of the database grants
nothing. A token belongs to one tenant and carries a subset of the scopes
``submit``, ``read`` and ``admin``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from certify.errors import UsageError
from certify.service.db import tokens as tokens_table
from certify.service.store import Store, as_utc, clock

SCOPES = ("submit", "read", "admin")
PREFIX = "cfy_"
_SECRET = re.compile(r"cfy_[A-Za-z0-9_-]{43}")
# last_used_at is a hint for operators, not an audit log: refresh it at most this often
# so that verifying a token is not a database write on every request.
LAST_USED_GRANULARITY = timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    tenant: str
    scopes: frozenset[str]
    token_id: str

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass(frozen=True)
class TokenInfo:
    id: str
    tenant: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class NewToken:
    id: str
    secret: str  # the only time it exists outside the client's hands


def parse_scopes(scopes: str | Iterable[str]) -> tuple[str, ...]:
    """Scopes from ``submit,read`` or a list: known names only, at least one, in canonical order."""
    names = [s.strip() for s in (scopes.split(",") if isinstance(scopes, str) else scopes)]
    names = [s for s in names if s]
    unknown = sorted(set(names) - set(SCOPES))
    if unknown:
        raise UsageError(f"unknown scope {', '.join(repr(u[:30]) for u in unknown)}: use {', '.join(SCOPES)}")
    if not names:
        raise UsageError(f"a token needs at least one scope: {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in names)


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def create(store: Store, tenant: str, scopes: str | Iterable[str], name: str = "",
           now: datetime | None = None) -> NewToken:
    """A new token for ``tenant`` (made if new); the secret is returned here and never again."""
    wanted = parse_scopes(scopes)
    if len(name) > 200:
        raise UsageError("token name: at most 200 characters")
    now = clock(now)
    store.ensure_tenant(tenant, now)
    token_id = "tok_" + secrets.token_hex(8)
    secret = PREFIX + secrets.token_urlsafe(32)
    with store._write() as c:
        c.execute(tokens_table.insert().values(id=token_id, tenant=tenant, secret_sha256=secret_digest(secret),
                                               scopes=",".join(wanted), name=name, created_at=now))
    return NewToken(token_id, secret)


def verify(store: Store, secret: str, now: datetime | None = None) -> Principal | None:
    """Who holds ``secret``, or None when it is malformed, unknown or revoked."""
    if not isinstance(secret, str) or not _SECRET.fullmatch(secret):
        return None
    digest = secret_digest(secret)
    with store._read() as c:
        row = c.execute(sa.select(tokens_table).where(tokens_table.c.secret_sha256 == digest)).first()
    # The lookup is by digest, so its timing tells nothing of the secret; compare again in
    # constant time so that correctness never rests on the database's string comparison.
    if row is None or not hmac.compare_digest(row.secret_sha256, digest) or row.revoked_at is not None:
        return None
    now = clock(now)
    last = row.last_used_at
    if last is None or as_utc(last) < now - LAST_USED_GRANULARITY:
        with store._write() as c:
            c.execute(tokens_table.update().where(tokens_table.c.id == row.id).values(last_used_at=now))
    return Principal(row.tenant, frozenset(row.scopes.split(",")), row.id)


def list_tokens(store: Store, tenant: str | None = None) -> list[TokenInfo]:
    query = sa.select(tokens_table).order_by(tokens_table.c.tenant, tokens_table.c.created_at, tokens_table.c.id)
    if tenant is not None:
        query = query.where(tokens_table.c.tenant == tenant)
    with store._read() as c:
        rows = c.execute(query).all()
    return [TokenInfo(r.id, r.tenant, r.name, tuple(r.scopes.split(",")), as_utc(r.created_at),
                      as_utc(r.revoked_at), as_utc(r.last_used_at)) for r in rows]


def revoke(store: Store, token_id: str, now: datetime | None = None) -> TokenInfo | None:
    """Revoke a token (idempotent); None if there is no such token."""
    with store._write() as c:
        c.execute(tokens_table.update().where(tokens_table.c.id == token_id, tokens_table.c.revoked_at.is_(None))
                  .values(revoked_at=clock(now)))
    return next((t for t in list_tokens(store) if t.id == token_id), None)
