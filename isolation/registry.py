"""The admission registry: an embedded SQLite file of who was admitted where, on what evidence.

Rows are never deleted: an eviction stamps ``evicted_at``, so the history of
a vDC stays auditable. Every attempt, refused ones included, is an event.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from certify.errors import UsageError
from certify.isolation.model import NAME, ModelError, Service, Workload, parse_mac

SCHEMA = """
CREATE TABLE IF NOT EXISTS admissions (
    id INTEGER PRIMARY KEY,
    workload TEXT NOT NULL,
    vdc TEXT NOT NULL,
    account TEXT NOT NULL,
    address TEXT NOT NULL,
    mac TEXT NOT NULL,
    services TEXT NOT NULL,
    artifact_name TEXT NOT NULL,
    artifact_sha256 TEXT NOT NULL,
    certificate_id TEXT NOT NULL,
    certificate_key_id TEXT NOT NULL,
    profile TEXT NOT NULL,
    ruleset_digest TEXT NOT NULL,
    verification TEXT NOT NULL,
    admitted_at TEXT NOT NULL,
    evicted_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_per_name ON admissions(vdc, workload) WHERE evicted_at IS NULL;
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    action TEXT NOT NULL,
    vdc TEXT NOT NULL,
    workload TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""
COLUMNS = ("id", "workload", "vdc", "account", "address", "mac", "services", "artifact_name", "artifact_sha256",
           "certificate_id", "certificate_key_id", "profile", "ruleset_digest", "verification", "admitted_at", "evicted_at")  # fmt: skip


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class Registry:
    def __init__(self, path: str) -> None:
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise UsageError(f"{path}: the directory for the admission registry does not exist")
        try:
            self.db = sqlite3.connect(path, timeout=10, isolation_level=None)
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise UsageError(f"{path}: not a usable admission registry ({exc})") from None
        self.path = path

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def active(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM admissions WHERE evicted_at IS NULL ORDER BY id")

    def history(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM admissions ORDER BY id")

    def events(self) -> list[dict[str, Any]]:
        cur = self.db.execute("SELECT at, action, vdc, workload, outcome, detail FROM events ORDER BY id")
        return [dict(zip(("at", "action", "vdc", "workload", "outcome", "detail"), r)) for r in cur]

    def find(self, vdc: str, workload: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM admissions WHERE evicted_at IS NULL AND vdc = ? AND workload = ?", (vdc, workload))
        return rows[0] if rows else None

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        out = []
        try:
            for row in self.db.execute(sql, args):
                item = dict(zip(COLUMNS, row))
                item["services"] = json.loads(item["services"])
                item["verification"] = json.loads(item["verification"])
                out.append(item)
        except (sqlite3.DatabaseError, ValueError, TypeError) as exc:
            raise UsageError(f"{self.path}: the admission registry is damaged ({exc})") from None
        return out

    def workloads(self) -> list[Workload]:
        """The admitted workloads, held to the same rules as the provider file's before anything uses them."""
        out = []
        for r in self.active():
            where = f"{self.path}: admission {r['id']}"
            try:
                if not all(isinstance(r[k], str) and NAME.fullmatch(r[k]) for k in ("workload", "vdc")):
                    raise ModelError(f"{where}: workload and vDC must be names")
                services = r["services"] if isinstance(r["services"], list) else None
                if services is None:
                    raise ModelError(f"{where}: services must be a list")
                out.append(Workload(r["workload"], r["vdc"], ipaddress.IPv4Address(str(r["address"])),
                                    parse_mac(r["mac"], f"{where}.mac"),
                                    tuple(Service.parse(s, f"{where}.services") for s in services), origin="admission"))  # fmt: skip
            except ValueError as exc:  # ipaddress errors
                raise UsageError(f"{where}: the registry row is damaged ({exc})") from None
            except ModelError as exc:
                raise UsageError(f"the admission registry is damaged: {exc}") from None
        return out

    def record(self, w: Workload, account: str, certificate: dict[str, Any], certificate_id: str, ruleset_digest: str,
               verification: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
        at = now()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO admissions (workload, vdc, account, address, mac, services, artifact_name, artifact_sha256, "
                "certificate_id, certificate_key_id, profile, ruleset_digest, verification, admitted_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (w.name, w.vdc, account, str(w.address), w.mac, json.dumps([str(s) for s in w.services]),
                 certificate["artifact"]["name"], certificate["artifact"]["sha256"], certificate_id,
                 certificate["signature"]["key_id"], certificate.get("profile", ""), ruleset_digest,
                 json.dumps(verification), at),
            )  # fmt: skip
            self._event(db, "admit", w.vdc, w.name, "admitted", f"{certificate['artifact']['name']} sha256 {certificate['artifact']['sha256']}")
        found = self.find(w.vdc, w.name)
        assert found is not None
        return found

    def evicted(self, vdc: str, workload: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE admissions SET evicted_at = ? WHERE evicted_at IS NULL AND vdc = ? AND workload = ?", (now(), vdc, workload))
            self._event(db, "evict", vdc, workload, "evicted", "")

    def event(self, action: str, vdc: str, workload: str, outcome: str, detail: str) -> None:
        with self.transaction() as db:
            self._event(db, action, vdc, workload, outcome, detail)

    @staticmethod
    def _event(db: sqlite3.Connection, action: str, vdc: str, workload: str, outcome: str, detail: str) -> None:
        db.execute("INSERT INTO events (at, action, vdc, workload, outcome, detail) VALUES (?, ?, ?, ?, ?, ?)",
                   (now(), action, vdc, workload, outcome, detail[:2000]))  # fmt: skip
