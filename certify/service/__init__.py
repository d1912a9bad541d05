"""The certification service's persistent state: job store, blobs, tokens.

``db`` opens the database (SQLite in WAL mode by default, PostgreSQL through
psycopg 3) and declares its tables (SQLAlchemy 2 Core, no ORM); ``migrations``
are the Alembic scripts that create them; ``store`` holds every operation on
jobs, reports, facts, blobs records and idempotency keys, as functions with
plain dataclasses in and out; ``blobs`` is the content-addressed upload
directory; ``tokens`` issues and verifies per-tenant bearer tokens.

A top layer, like ``cli``: it may use the pipeline, policy, plugin manager and
everything below them, never the checks or reporters directly (reporters are
reached through the plugin registry).
"""
