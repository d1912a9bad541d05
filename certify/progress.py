"""Progress lines on stderr, so a person waiting on an appliance boot sees it move.

Besides the human lines, the pipeline names its stages (``STAGES``) as it
enters them; whoever runs a scan for a machine (a batch, a service worker)
passes ``on_stage`` and gets them as they happen, never by reading the text.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

# The pipeline's stages, in the order a scan enters them (a scan may stop before the last).
STAGES = ("ingest", "guest launch", "collectors", "checks")


class Progress:
    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True, on_stage: Callable[[str], None] | None = None):
        self._stream = stream or sys.stderr
        self._on_stage = on_stage
        self._enabled = enabled
        self._tty = enabled and self._stream.isatty()
        self._ticking = False

    def step(self, message: str) -> None:
        if not self._enabled:
            return
        self._clear()
        print(f"certify: {message}", file=self._stream, flush=True)

    def stage(self, name: str) -> None:
        """The scan enters one of ``STAGES``: told to ``on_stage``, not printed (the step lines say it for people)."""
        if self._on_stage is not None:
            self._on_stage(name)

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
