"""The service's configuration, one plain dataclass shared by the API, ``certify serve`` and the workers.

``certify serve`` builds it from its flags; the API and each worker process get
the same values. Sizes are bytes, durations seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from certify.service.blobs import DEFAULT_RESERVE
from certify.service.db import default_data_dir, sqlite_url
from certify.service.store import DEFAULT_MAX_ATTEMPTS

DEFAULT_PORT = 8080
DEFAULT_SCAN_TIMEOUT = 30 * 60.0
DEFAULT_MAX_UPLOAD = 64 << 30
DEFAULT_LEASE_SECONDS = 60.0


@dataclass(frozen=True)
class ServiceSettings:
    data_dir: Path = Path("certify-data")
    db_url: str | None = None  # None: SQLite in data_dir
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 1
    scan_timeout: float = DEFAULT_SCAN_TIMEOUT
    max_upload: int = DEFAULT_MAX_UPLOAD
    reserve_bytes: int = DEFAULT_RESERVE
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    signing_key: Path | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    scan_engine: str = "child"  # "child": a real scan per job; "fake:SECONDS" only for tests and benchmarks

    @property
    def database_url(self) -> str:
        """The database to open: ``db_url`` when given, else the SQLite file in the data directory."""
        return self.db_url or sqlite_url(self.data_dir)

    @classmethod
    def default(cls) -> ServiceSettings:
        return cls(data_dir=default_data_dir())
