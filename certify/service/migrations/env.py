"""Alembic environment: which database, and how to reach it.

The URL comes from the caller (``certify.service.db.upgrade``), else the command
line (``alembic -c certify/service/alembic.ini -x url=URL upgrade head``), else
``$CERTIFY_DB``.
"""

from __future__ import annotations

import os

from alembic import context

from certify.service.db import make_engine, metadata, normalize_url

config = context.config


def _url() -> str:
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url") or os.environ.get("CERTIFY_DB")
    if not url:
        raise SystemExit("alembic: no database: pass -x url=URL or set CERTIFY_DB")
    return normalize_url(url)


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_url())
    try:
        with engine.connect().execution_options(certify_write=True) as connection:
            if connection.dialect.name == "sqlite":
                # A batch migration copies a table and drops the old one, and with foreign keys on,
                # the drop's implicit DELETE fails on every row that refers to it. SQLite only changes
                # this outside a transaction, so here: for this connection, which is closed after.
                # A revision that copies a table runs PRAGMA foreign_key_check before it commits.
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
            # SQLite cannot ALTER most things: batch mode copies the table instead.
            context.configure(connection=connection, target_metadata=metadata,
                              render_as_batch=connection.dialect.name == "sqlite")
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
