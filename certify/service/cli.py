"""Command line of the service: ``certify tokens create|list|revoke``, ``certify serve``, ``certify submit``,
``certify reevaluate``.

Exit codes: 0 done, 2 usage error (unknown scope, unknown token, bad URL),
3 the database could not be reached. A secret is printed once, at creation,
alone on standard output so that ``TOKEN=$(certify tokens create ...)`` works.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from certify.errors import UsageError
from certify.policy.certificate import load_private_key
from certify.service import tokens
from certify.service.blobs import DEFAULT_RESERVE
from certify.service.client import run_submit
from certify.service.fakescan import parse_engine
from certify.service.db import default_data_dir, normalize_url, sqlite_url
from certify.service.serve import serve
from certify.service.settings import DEFAULT_LEASE_SECONDS, DEFAULT_MAX_UPLOAD, DEFAULT_PORT, DEFAULT_SCAN_TIMEOUT, ServiceSettings
from certify.service.store import DEFAULT_MAX_ATTEMPTS, Store, check_tenant
from certify.units import duration_argument, size_argument

COMMANDS = ("tokens", "serve", "submit", "reevaluate")


def _whole(low: int, high: int):  # noqa: ANN202
    def parse(text: str) -> int:
        if not text.strip().isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number from {low} to {high}")
        return int(text)
    return parse


def _add_serve_parsers(sub: Any) -> None:
    serve_p = sub.add_parser("serve", help="run the certification service: HTTP API and scan workers")
    serve_p.add_argument("--data", metavar="DIR", help="data directory: database, blobs "
                         f"(default: $CERTIFY_DATA, else ./{default_data_dir()})")
    serve_p.add_argument("--db", metavar="URL", help="a database URL instead of SQLite in the data directory "
                         "(blobs stay in the data directory)")
    serve_p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve_p.add_argument("--port", type=_whole(0, 65535), default=DEFAULT_PORT,
                         help=f"port to listen on (default {DEFAULT_PORT}; 0 picks a free one)")
    serve_p.add_argument("--workers", type=_whole(0, 256), default=1, help="scan worker processes (default 1)")
    serve_p.add_argument("--scan-timeout", type=duration_argument, default=DEFAULT_SCAN_TIMEOUT, metavar="DURATION",
                         help="wall-clock limit of one scan (default 30m)")
    serve_p.add_argument("--max-upload", type=size_argument, default=DEFAULT_MAX_UPLOAD, metavar="SIZE",
                         help="largest upload accepted (default 64G)")
    serve_p.add_argument("--reserve", type=size_argument, default=DEFAULT_RESERVE, metavar="SIZE",
                         help="free space uploads never eat into (default 1G)")
    serve_p.add_argument("--max-attempts", type=_whole(1, 100), default=DEFAULT_MAX_ATTEMPTS,
                         help="attempts of a scan whose worker is lost (default 3)")
    serve_p.add_argument("--signing-key", metavar="FILE", help="Ed25519 private key: certificates for passed scans")
    serve_p.add_argument("--lease", type=duration_argument, default=DEFAULT_LEASE_SECONDS, metavar="DURATION",
                         help="how long a worker holds a scan between heartbeats before another may take it (default 60s)")
    serve_p.add_argument("--scan-engine", default="child", metavar="ENGINE",
                         help="'child' (default): a real scan per job; 'fake:SECONDS' is a testing and benchmarking aid "
                              "that certifies nothing")

    submit_p = sub.add_parser("submit", help="upload appliances to a certification service and submit scans")
    submit_p.add_argument("paths", nargs="+", metavar="PATH")
    submit_p.add_argument("--server", required=True, metavar="URL", help="the service, e.g. http://127.0.0.1:8080")
    submit_p.add_argument("--token", metavar="T", help="API token (default: $CERTIFY_TOKEN)")
    submit_p.add_argument("--profile", default="default", help="policy profile (default: default)")
    submit_p.add_argument("--wait", action="store_true", help="follow each scan to its end; exit as 'scan' would")
    submit_p.add_argument("--format", default="text", choices=["text", "json"])


def add_parsers(sub: Any) -> None:
    _add_serve_parsers(sub)
    tokens_p = sub.add_parser("tokens", help="API tokens of the certification service: create, list, revoke")
    tokens_sub = tokens_p.add_subparsers(dest="tokens_command", required=True, parser_class=type(tokens_p))

    def where(p: argparse.ArgumentParser) -> None:
        group = p.add_mutually_exclusive_group()
        group.add_argument("--data", metavar="DIR",
                           help=f"the service's data directory, its SQLite database inside "
                                f"(default: $CERTIFY_DATA, else ./{default_data_dir()})")
        group.add_argument("--db", metavar="URL", help="a database URL instead, e.g. postgresql://user@host/certify")

    create_p = tokens_sub.add_parser("create", help="make a token for a tenant; its secret is printed once")
    create_p.add_argument("--tenant", required=True, metavar="NAME", help="the tenant (made if new)")
    create_p.add_argument("--scope", required=True, metavar="SCOPES",
                          help=f"comma-separated, of {', '.join(tokens.SCOPES)}")
    create_p.add_argument("--name", default="", metavar="TEXT", help="what the token is for (shown by 'list')")
    where(create_p)
    list_p = tokens_sub.add_parser("list", help="list tokens (never their secrets)")
    list_p.add_argument("--tenant", metavar="NAME", help="only this tenant's")
    list_p.add_argument("--format", default="text", choices=["text", "json"])
    where(list_p)
    revoke_p = tokens_sub.add_parser("revoke", help="revoke a token at once")
    revoke_p.add_argument("token_id", metavar="ID")
    where(revoke_p)

    reeval_p = sub.add_parser("reevaluate", help="judge stored scans again from their stored facts under the "
                                                 "installed ruleset; print the verdicts that changed")
    which = reeval_p.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every stored scan judged under another ruleset")
    which.add_argument("--since", type=_date, metavar="DATE",
                       help="only scans finished at or after DATE (2026-12-01 or 2026-12-01T08:00:00Z)")
    reeval_p.add_argument("--format", default="text", choices=["text", "json"], help="json: one line per scan")
    reeval_p.add_argument("--signing-key", metavar="PRIVATE_KEY", help="sign certificates for re-judged passes")
    where(reeval_p)


def _date(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a date (2026-12-01 or 2026-12-01T08:00:00Z)") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _url(args: argparse.Namespace) -> str:
    return args.db or sqlite_url(args.data or default_data_dir())


def run(args: argparse.Namespace) -> int:
    if args.command == "reevaluate":
        return _reevaluate(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "submit":
        return run_submit(args.paths, args.server, args.token, args.profile, args.wait, args.format)
    if args.tokens_command == "create":  # refuse bad input before the database is made or touched
        check_tenant(args.tenant)
        tokens.parse_scopes(args.scope)
    store = Store.open(_url(args))
    try:
        if args.tokens_command == "create":
            made = tokens.create(store, args.tenant, args.scope, args.name)
            scopes = ",".join(tokens.parse_scopes(args.scope))
            print(f"created {made.id} for tenant {args.tenant} (scopes {scopes}); "
                  "the secret below is shown only now", file=sys.stderr)
            print(made.secret)
            return 0
        if args.tokens_command == "list":
            return _list(store, args)
        revoked = tokens.revoke(store, args.token_id)
        if revoked is None:
            raise UsageError(f"no token {args.token_id[:60]!r} (see 'certify tokens list')")
        print(f"revoked {revoked.id} of tenant {revoked.tenant}")
        return 0
    finally:
        store.close()


def _reevaluate(args: argparse.Namespace) -> int:
    from certify.service.reevaluate import reevaluate, report_lines  # the pipeline, only for this command

    store = Store.open(_url(args))
    try:
        outcomes = reevaluate(store, since=None if args.all else args.since, signing_key=args.signing_key)
    finally:
        store.close()
    for line in report_lines(outcomes, args.format):
        print(line)
    return 0
def _serve(args: argparse.Namespace) -> int:
    key = None
    if args.signing_key:
        key = Path(args.signing_key)
        load_private_key(str(key))  # a bad key is a usage error now, not a failure at the first pass
    settings = ServiceSettings(
        data_dir=Path(args.data) if args.data else default_data_dir(), db_url=args.db, host=args.host, port=args.port,
        workers=args.workers, scan_timeout=args.scan_timeout, max_upload=args.max_upload, reserve_bytes=args.reserve,
        max_attempts=args.max_attempts, signing_key=key, lease_seconds=args.lease, scan_engine=args.scan_engine)
    try:
        parse_engine(settings.scan_engine)
    except ValueError as exc:
        raise UsageError(f"--scan-engine: {exc}") from None
    if args.db:
        normalize_url(args.db)
    return serve(settings)


def _list(store: Store, args: argparse.Namespace) -> int:
    found = tokens.list_tokens(store, args.tenant)
    if args.format == "json":
        print(json.dumps([{"id": t.id, "tenant": t.tenant, "name": t.name, "scopes": list(t.scopes),
                           "created_at": t.created_at.isoformat(),
                           "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
                           "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None}
                          for t in found], indent=2))
        return 0
    if not found:
        print("no tokens")
        return 0
    rows = [("ID", "TENANT", "SCOPES", "CREATED", "LAST USED", "STATE", "NAME")]
    for t in found:
        rows.append((t.id, t.tenant, ",".join(t.scopes), _when(t.created_at), _when(t.last_used_at),
                     "revoked" if t.revoked_at else "active", t.name))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return 0


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"
