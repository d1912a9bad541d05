"""Workers that scan uploads in child processes, one result line each, and the batch's exit code."""

from __future__ import annotations

import datetime
import hashlib
import json
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, TextIO

from certify.batch.items import upload_digest
from certify.batch.state import JUDGED, StateDir, judgement_key
from certify.scanchild import ChildOutcome, run_scan

EXIT_PASS, EXIT_NOT_CERTIFIED, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3
SKIPPED = "already judged"
# An item's outcome: a verdict, or why there is none. Each ranks into the batch's exit code.
_RANK = {"pass": EXIT_PASS, "fail": EXIT_NOT_CERTIFIED, "rejected": EXIT_NOT_CERTIFIED}


@dataclass(frozen=True)
class BatchSettings:
    paths: list[str]
    jobs: int
    profile: str  # a shipped profile's name or a file, as --profile takes it
    profile_name: str
    profile_digest: str
    ruleset_digest: str
    version: str
    fail_on: str | None = None
    waivers: str | None = None
    waivers_sha256: str | None = None
    timeout: float | None = None
    workdir: str | None = None  # where the scans' private directories are made
    state: StateDir | None = None
    today: datetime.date = field(default_factory=datetime.date.today)

    def scan_args(self) -> list[str]:
        args = ["--profile", self.profile]
        if self.fail_on:
            args += ["--fail-on", self.fail_on]
        if self.waivers:
            args += ["--waivers", self.waivers]
        return args

    def policy_options(self) -> dict[str, Any]:
        """What else decides a verdict; waivers expire, so a result judged with them holds for its day only."""
        options: dict[str, Any] = {"fail_on": self.fail_on}
        if self.waivers:
            options.update(waivers_sha256=self.waivers_sha256, day=self.today.isoformat())
        return options


class Observer:
    """What a display is told; every call may come from any worker thread."""

    def started(self, worker: int, path: str) -> None: ...
    def stage(self, worker: int, path: str, stage: str) -> None: ...
    def finished(self, worker: int, result: dict[str, Any]) -> None: ...

    def holding(self) -> AbstractContextManager[None]:
        """Held while a result line goes to stdout, which may be the same terminal."""
        return nullcontext()


def outcome_of(result: dict[str, Any]) -> str:
    """pass, fail, rejected, error (a verdict), or timeout, crashed, usage, unreadable, internal (no verdict)."""
    return result.get("verdict") or result.get("failure") or "error"


def batch_exit_code(results: list[dict[str, Any]]) -> int:
    """The worst outcome: 3 if any upload could not be judged, else 1 if any is not certified, else 0."""
    return max((_RANK.get(outcome_of(r), EXIT_ERROR) for r in results), default=EXIT_PASS)


def waivers_digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Batch:
    """Runs the settings' uploads on ``jobs`` worker threads, each scan a child process; ``stop`` ends it early."""

    def __init__(self, settings: BatchSettings, out: TextIO, observer: Observer | None = None):
        self.settings = settings
        self.out = out
        self.observer = observer or Observer()
        self.stop = threading.Event()
        self.results: list[dict[str, Any]] = []
        self.interrupted: list[str] = []  # paths whose scan the stop cut short: no result, scanned again next time
        self._next = 0
        self._lock = threading.Lock()
        self._seen: dict[str, dict[str, Any]] = {}  # judgement key -> result, for the same upload listed twice
        self._key_locks: dict[str, threading.Lock] = {}
        self._out_broken = False

    def run(self, wait: Callable[[list[threading.Thread]], None] | None = None) -> list[dict[str, Any]]:
        workers = [threading.Thread(target=self._work, args=(n,), name=f"batch-worker-{n}", daemon=True)
                   for n in range(1, min(self.settings.jobs, len(self.settings.paths)) + 1)]  # fmt: skip
        for w in workers:
            w.start()
        if wait is not None:
            wait(workers)
        for w in workers:
            w.join()
        return self.results

    def _take(self) -> str | None:
        with self._lock:
            if self.stop.is_set() or self._next >= len(self.settings.paths):
                return None
            path = self.settings.paths[self._next]
            self._next += 1
            return path

    def _work(self, worker: int) -> None:
        while (path := self._take()) is not None:
            self.observer.started(worker, path)
            s = self.settings
            base = {"path": path, "profile": s.profile_name, "profile_digest": s.profile_digest,
                    "ruleset_digest": s.ruleset_digest, "certify_version": s.version}  # fmt: skip
            try:
                result = self._one(worker, path, base)
            except Exception as exc:  # a bug or a full disk under --state: this upload's error, not a lost worker
                result = {**base, **_empty(), "failure": "internal", "exit_code": EXIT_ERROR,
                          "error": f"internal error: {type(exc).__name__}: {exc}"}  # fmt: skip
            if result is None:
                with self._lock:
                    self.interrupted.append(path)
                continue
            with self._lock:
                self.results.append(result)
                with self.observer.holding():  # a live display steps aside while the line is written
                    self._emit(result)
            self.observer.finished(worker, result)

    def _one(self, worker: int, path: str, base: dict[str, Any]) -> dict[str, Any] | None:
        s = self.settings
        try:
            upload = upload_digest(path)
        except OSError as exc:
            return {**base, **_empty(), "failure": "unreadable", "exit_code": EXIT_USAGE,
                    "error": f"{path}: {exc.strerror or exc}"}  # fmt: skip
        key = judgement_key(upload, s.profile_name, s.profile_digest, s.ruleset_digest, s.version, s.policy_options())
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # the same upload twice in a list: the second waits and is skipped
            earlier = self._seen.get(key) or (s.state.judged(key) if s.state else None)
            if earlier is not None:
                kept = {k: v for k, v in earlier.items() if k != "key"}
                return {**kept, "path": path, "skipped": SKIPPED}
            outcome = run_scan(path, s.scan_args(), limit=s.timeout, cancel=self.stop, workdir_parent=s.workdir,
                               on_stage=lambda stage: self.observer.stage(worker, path, stage))  # fmt: skip
            if outcome.failure == "cancelled" and self.stop.is_set():
                return None
            result = {**base, **_from_outcome(outcome, upload)}
            if s.state is not None:
                if outcome.report is not None:
                    result["report"] = s.state.save_report(key, outcome.report)
                s.state.record(key, result)
            if result.get("verdict") in JUDGED:
                self._seen[key] = result
            return result

    def _emit(self, result: dict[str, Any]) -> None:
        if self._out_broken:
            return
        try:
            self.out.write(json.dumps(result, sort_keys=True) + "\n")
            self.out.flush()
        except BrokenPipeError:  # the reader left (| head): the batch goes on; --state still records
            self._out_broken = True


def _empty() -> dict[str, Any]:
    return {"upload_digest": None, "artifact_sha256": None, "verdict": None, "counts": None, "duration": 0.0,
            "report": None, "error": None, "failure": None, "skipped": None}  # fmt: skip


def _from_outcome(outcome: ChildOutcome, upload: str) -> dict[str, Any]:
    result = {**_empty(), "upload_digest": upload, "duration": outcome.duration}
    report = outcome.report
    if report is None:
        return {**result, "failure": outcome.failure, "exit_code": EXIT_ERROR if outcome.failure != "usage" else EXIT_USAGE,
                "error": outcome.reason}  # fmt: skip
    verdict = report.get("verdict")
    artifact = report.get("artifact") or {}
    error = None
    if verdict == "rejected":
        error = (report.get("rejection") or {}).get("reason")
    elif verdict == "error":
        error = "; ".join(report.get("errors") or []) or "the scan ended in error"
    return {**result, "artifact_sha256": artifact.get("sha256"), "verdict": verdict, "exit_code": outcome.exit_code,
            "counts": report.get("summary"), "error": error}  # fmt: skip
