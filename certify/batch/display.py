"""Progress on stderr while a batch runs, and its summary table at the end.

On a terminal: a block redrawn in place (done/total, ETA, each worker's
upload and stage). Otherwise (a log, a CI job): one plain line per event.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from certify.batch.run import Observer, outcome_of

OUTCOMES = ("pass", "fail", "rejected", "error", "timeout", "crashed", "usage", "unreadable", "internal")


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class Display(Observer):
    def __init__(self, stream: TextIO, total: int, *, terminal: bool, enabled: bool = True):
        self.stream, self.total, self.terminal, self.enabled = stream, total, terminal, enabled
        self.done = 0
        self.scanned_seconds: list[float] = []  # durations of real scans (not skips), for the ETA
        self.workers: dict[int, tuple[str, str, float]] = {}  # worker -> (path, stage, since)
        self.started_at = time.monotonic()
        self._lock = threading.Lock()
        self._drawn = 0  # lines of the block on screen

    # --- events from workers ---
    def started(self, worker: int, path: str) -> None:
        with self._lock:
            self.workers[worker] = (path, "starting", time.monotonic())
            if not self.terminal:
                self._line(f"[{worker}] {path}: started")

    def stage(self, worker: int, path: str, stage: str) -> None:
        with self._lock:
            self.workers[worker] = (path, stage, self.workers.get(worker, (path, stage, time.monotonic()))[2])
            if not self.terminal:
                self._line(f"[{worker}] {path}: {stage}")

    def finished(self, worker: int, result: dict[str, Any]) -> None:
        with self._lock:
            self.done += 1
            self.workers.pop(worker, None)
            if not result.get("skipped"):
                self.scanned_seconds.append(float(result.get("duration") or 0))
            what = f"skipped: {result['skipped']} ({outcome_of(result)})" if result.get("skipped") else outcome_of(result)
            detail = f": {result['error']}" if result.get("error") and not result.get("skipped") else ""
            self._clear()
            self._line(f"[{self.done}/{self.total}] {result['path']}: {what}{detail}")
            self._draw()

    @contextmanager
    def holding(self) -> Iterator[None]:
        with self._lock:
            self._clear()  # redrawn by the finished() that follows
            yield

    def tick(self) -> None:
        """Redraw the live block (a terminal only); the caller's loop calls it a few times a second."""
        if self.terminal and self.enabled:
            with self._lock:
                self._clear()
                self._draw()

    # --- the end ---
    def summary(self, results: list[dict[str, Any]], interrupted: list[str], signal_name: str | None) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._clear()
            counts = Counter(outcome_of(r) for r in results if not r.get("skipped"))
            skipped = Counter(outcome_of(r) for r in results if r.get("skipped"))
            rows = [(o, counts[o], skipped[o]) for o in OUTCOMES if counts[o] or skipped[o]]
            out = [f"{'outcome':<11} {'scanned':>7} {'skipped':>7}"]
            out += [f"{o:<11} {n:>7} {k:>7}" for o, n, k in rows]
            out.append(f"{'total':<11} {sum(counts.values()):>7} {sum(skipped.values()):>7}   "
                       f"{len(results)} of {self.total} upload(s) in {_clock(time.monotonic() - self.started_at)}")  # fmt: skip
            if interrupted or signal_name:
                out.append(f"interrupted by {signal_name or 'a stop'}: {len(interrupted)} scan(s) killed, "
                           f"{self.total - len(results) - len(interrupted)} not started; a re-run with the same --state resumes")  # fmt: skip
            self.stream.write("\n".join(out) + "\n")
            self.stream.flush()

    # --- drawing (under the lock) ---
    def _eta(self) -> str:
        if not self.scanned_seconds:
            return "ETA --"
        remaining = self.total - self.done
        lanes = max(1, len(self.workers))
        average = sum(self.scanned_seconds) / len(self.scanned_seconds)
        return f"ETA {_clock(remaining * average / lanes)}"

    def _line(self, text: str) -> None:
        if self.enabled:
            self.stream.write(f"certify: {text}\n")
            self.stream.flush()

    def _draw(self) -> None:
        if not (self.terminal and self.enabled):
            return
        now = time.monotonic()
        lines = [f"certify batch: {self.done}/{self.total} done, {len(self.workers)} running, {self._eta()}"]
        for worker, (path, stage, since) in sorted(self.workers.items()):
            lines.append(f"  [{worker}] {stage:<12} {_clock(now - since)}  {path}")
        width = max(20, shutil.get_terminal_size().columns - 1)  # a wrapped line would break the redraw
        self.stream.write("\n".join(f"\x1b[2K{line[:width]}" for line in lines) + "\n")
        self.stream.flush()
        self._drawn = len(lines)

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")  # up to the block's first line, erase to the end
            self._drawn = 0
