"""The disk an upload carries, as ingest hands it on: the one bundle type the guest layer consumes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BundleDisk:
    path: str  # host path, inside the work or bundle directory
    name: str  # name in the bundle, for reports
    format: str  # verified format, always explicit
