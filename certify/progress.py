"""Progress lines on stderr, so a person waiting on an appliance boot sees it move."""

from __future__ import annotations

import sys
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True):
        self._stream = stream or sys.stderr
        self._enabled = enabled
        self._tty = enabled and self._stream.isatty()
        self._ticking = False

    def step(self, message: str) -> None:
        if not self._enabled:
            return
        self._clear()
        print(f"certify: {message}", file=self._stream, flush=True)

    def tick(self, message: str) -> None:
        """A transient line (elapsed time); only on a terminal, never in logs."""
        if self._tty:
            self._stream.write(f"\r\x1b[2K{message}")
            self._stream.flush()
            self._ticking = True

    def _clear(self) -> None:
        if self._ticking:
            self._stream.write("\r\x1b[2K")
            self._ticking = False


SILENT = Progress(enabled=False)
