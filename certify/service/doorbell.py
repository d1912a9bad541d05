"""The doorbell: the API tells idle workers on this machine that a scan was queued, so none waits out a poll.

A named pipe in the data directory. Ringing writes one byte without blocking
(no worker listening, or a pipe full of rings nobody answered yet: nothing to
do, the workers' poll of the queue finds the scan anyway); a worker waiting
for work wakes on the byte and claims. The queue stays the truth: a ring is
only a hint to look now, a lost ring costs one poll interval, and a spare one
a claim that finds nothing. Workers on other machines (or a data directory on
a file system without named pipes) just poll.
"""

from __future__ import annotations

import os
import select
import stat
from pathlib import Path

NAME = "doorbell"


class Doorbell:
    def __init__(self, data_dir: Path | str) -> None:
        self.path = Path(data_dir) / NAME
        self._fd: int | None = None

    def make(self) -> bool:
        """Create the pipe if it is missing; False when this file system cannot hold one (then: polling only)."""
        try:
            os.mkfifo(self.path, 0o600)
        except FileExistsError:
            pass
        except OSError:
            return False
        try:
            return stat.S_ISFIFO(os.lstat(self.path).st_mode)
        except OSError:
            return False

    def ring(self) -> None:
        """Wake one waiting worker, if any; never blocks, never fails the caller."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:  # ENXIO: no worker has it open; ENOENT: not made; either way the poll finds the scan
            return
        try:
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                return  # something else took the name: a hint is not worth writing into it
            os.write(fd, b"\x01")
        except OSError:  # EAGAIN: full of rings nobody answered yet; anything else: the poll finds the scan
            pass
        finally:
            os.close(fd)

    def wait(self, timeout: float) -> bool:
        """Block until rung or ``timeout`` seconds pass; True when rung. Without a pipe, just sleeps."""
        fd = self._open()
        if fd is None:
            select.select([], [], [], timeout)
            return False
        readable, _, _ = select.select([fd], [], [], timeout)
        if not readable:
            return False
        try:
            os.read(fd, 4096)  # every ring so far: one look at the queue answers them all
        except BlockingIOError:
            pass  # another worker took the byte; look anyway, it costs one query
        return True

    def _open(self) -> int | None:
        if self._fd is None and self.make():
            try:
                # Read-write: the pipe always has a writer, so an idle reader sees no end-of-file between rings.
                fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
            except OSError:
                return None
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.close(fd)
                return None
            self._fd = fd
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
