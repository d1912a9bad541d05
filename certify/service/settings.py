"""How one certification service runs: where its state is, how it listens, how its workers scan.

One dataclass shared by ``certify serve``, the API and the worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_SCAN_TIMEOUT = 30 * 60.0
DEFAULT_LEASE_SECONDS = 60.0


@dataclass
class ServiceSettings:
    data_dir: Path
    db_url: str | None = None  # None: SQLite in data_dir
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    scan_timeout: float = DEFAULT_SCAN_TIMEOUT  # wall-clock seconds per scan
    max_upload: int = 64 << 30
    reserve_bytes: int = 1 << 30
    max_attempts: int = 3
    signing_key: str | None = None  # path of an Ed25519 private key: certificates for passing scans
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    scan_engine: str = "child"  # "child": a real scan per job; "fake:SECONDS" only for tests and benchmarks
