"""``--state DIR``: each result and its report, written atomically, found again by its judgement key.

The key is a digest of everything that decides a verdict: the upload's
content, the profile's name and digest (two profiles may share one digest,
and a result names its profile), the ruleset digest, the certify version and the
batch's own policy options (``--fail-on``, the waivers). A re-run finds a
result under the same key and skips the upload; anything else scans it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any

from certify.errors import UsageError

JUDGED = ("pass", "fail", "rejected")  # verdicts a re-run may keep; an error or a timeout is tried again


def judgement_key(upload: str, profile_name: str, profile_digest: str, ruleset_digest: str, version: str,
                  options: dict[str, Any]) -> str:
    material = {"upload": upload, "profile": profile_name, "profile_digest": profile_digest,
                "ruleset_digest": ruleset_digest,
                "certify_version": version, "options": options}  # fmt: skip
    return hashlib.sha256(json.dumps(material, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class StateDir:
    def __init__(self, path: str):
        self.path = path
        self.results = os.path.join(path, "results")
        self.reports = os.path.join(path, "reports")
        try:
            os.makedirs(self.results, exist_ok=True)
            os.makedirs(self.reports, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{path}: cannot use as the state directory: {exc.strerror or exc}") from None
        if not (os.access(self.results, os.W_OK) and os.access(self.reports, os.W_OK)):
            raise UsageError(f"{path}: the state directory is not writable")

    def judged(self, key: str) -> dict[str, Any] | None:
        """The result recorded under ``key`` if it is a verdict a re-run keeps."""
        try:
            with open(os.path.join(self.results, f"{key}.json"), encoding="utf-8") as f:
                result = json.load(f)
        except (OSError, ValueError):
            return None  # absent, or damaged by something other than us: scan again
        if not isinstance(result, dict) or result.get("key") != key or result.get("verdict") not in JUDGED:
            return None
        return result

    def report_path(self, key: str) -> str:
        return os.path.join(self.reports, f"{key}.json")

    def save_report(self, key: str, report: dict[str, Any]) -> str:
        path = self.report_path(key)
        _atomic_write(path, json.dumps(report, indent=2, sort_keys=True) + "\n")
        return path

    def record(self, key: str, result: dict[str, Any]) -> None:
        _atomic_write(os.path.join(self.results, f"{key}.json"), json.dumps({**result, "key": key}, sort_keys=True) + "\n")


def _atomic_write(path: str, text: str) -> None:
    """Whole or absent, even if the batch is killed mid-write: a temporary file, fsync, rename."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
