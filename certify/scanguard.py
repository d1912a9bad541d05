"""Every scan ends: on its deadline, or on SIGINT/SIGTERM, the appliance is stopped first, then the scan.

A libguestfs call waits on the appliance in C code, where no Python signal
handler and no exception can reach it; a hostile filesystem can keep the
appliance's kernel spinning forever. So a watcher thread does the stopping:
it kills the appliance's qemu (the call then fails at once) and only then is
the scan itself ended, by an exception raised in the thread that runs it.
The exceptions are BaseExceptions, so no ``except Exception`` of a collector
or a reader can mistake them for one more unreadable file.
"""

from __future__ import annotations

import _thread
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

DEFAULT_TIMEOUT = 30 * 60  # seconds
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ScanAborted(BaseException):
    """The scan was ended from outside its own code path."""

    exit_code = 3

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ScanTimeout(ScanAborted):
    """The scan ran past its deadline."""


class ScanInterrupted(ScanAborted):
    """SIGINT or SIGTERM arrived during the scan."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.exit_code = 128 + signum


def describe_timeout(seconds: float) -> str:
    return f"the scan exceeded its time limit of {seconds:g} s (--timeout): the appliance was stopped"


class ScanGuard:
    """Within ``with ScanGuard(timeout, stop, cleanup):`` the scan ends by ``timeout`` seconds, and on SIGINT/SIGTERM.

    ``stop()`` kills what the scan started (the appliance); it runs on the
    watcher thread and must be safe to call at any moment, more than once:
    once the scan is to end it is called again every ``STOP_INTERVAL``, since
    an appliance may still be starting (a launch forks qemu well after it
    began). In the main thread the guard raises ScanTimeout or ScanInterrupted
    there (signal handlers, and SIGALRM for the deadline); in another
    thread no signal can be caught, and the scan learns of its deadline by
    calling ``check()`` between stages. ``cleanup()`` (removing the work
    directory) runs on the way out while the handlers are still ours, so a
    second Ctrl-C cannot cut it short; a signal that arrives then ends the
    scan once cleanup is done.
    """

    STOP_INTERVAL = 0.2  # seconds
    KICK_AFTER = 1.0  # seconds past the deadline before the main thread's own wait is interrupted

    def __init__(self, timeout: float | None, stop: Callable[[], None], cleanup: Callable[[], None] = lambda: None):
        self.timeout = timeout
        self.expired = False
        self._stop = stop
        self._stop_lock = threading.RLock()  # the watcher and a handler may stop at once; reentrant for nested handlers
        self._cleanup = cleanup
        self._active = False
        self._ending = False  # the watcher keeps stopping the appliance until the guard is left
        self._late_signal: int | None = None
        self._main = False
        self._saved: dict[int, object] = {}
        self._saved_wakeup = -1
        self._thread: threading.Thread | None = None

    def check(self) -> None:
        """Raise ScanTimeout when the deadline has passed: for scans outside the main thread."""
        if self.expired:
            raise ScanTimeout(describe_timeout(self.timeout or 0))

    def __enter__(self) -> ScanGuard:
        self._main = threading.current_thread() is threading.main_thread()
        self._wake_r, self._wake_w = os.pipe()
        self._quit_r, self._quit_w = os.pipe()
        if self._main:
            os.set_blocking(self._wake_w, False)
            # Written by the interpreter's C-level handler even while the main thread waits in C code.
            self._saved_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
            for signum in (*_SIGNALS, signal.SIGALRM):
                self._saved[signum] = signal.signal(signum, self._on_signal)
        self._active = True
        self._thread = threading.Thread(target=self._watch, name="certify-scan-guard", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_exc: object) -> None:
        try:
            self._active = False  # from here a signal is remembered, and stops the appliance, but raises nothing
            self._cleanup()
        finally:
            os.write(self._quit_w, b"q")
            if self._thread is not None:
                self._thread.join()
            if self._main:
                for signum, handler in self._saved.items():
                    signal.signal(signum, handler)  # type: ignore[arg-type]
                signal.set_wakeup_fd(self._saved_wakeup)
            for fd in (self._wake_r, self._wake_w, self._quit_r, self._quit_w):
                os.close(fd)
        if self._late_signal is not None and exc_type is None:
            raise ScanInterrupted(self._late_signal)

    def _watch(self) -> None:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            if self._ending:
                wait: float | None = self.STOP_INTERVAL
            else:
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._wake_r, self._quit_r], [], [], wait)
            if self._quit_r in ready:
                return
            if self._wake_r in ready:
                if any(b in _SIGNALS for b in os.read(self._wake_r, 64)):
                    self._ending = True
                    self._stop_appliance()  # the main thread's handler ends the scan once the call it waits in returns
                continue
            if self._ending:
                self._stop_appliance()  # an appliance that was still starting when the scan was told to end
                if self.expired and self._main and self._active and time.monotonic() > deadline + self.KICK_AFTER:
                    # The scan still runs although its appliance is gone: it waits on
                    # something else, which only a delivered signal interrupts.
                    signal.pthread_kill(threading.main_thread().ident, signal.SIGALRM)
                continue
            self.expired = self._ending = True  # the deadline
            if self._main and self._active:
                # Pending before the appliance dies, so the handler runs as soon as
                # the call that waits on it returns, before the scan can wait again.
                _thread.interrupt_main(signal.SIGALRM)
            self._stop_appliance()

    def _stop_appliance(self) -> None:
        with self._stop_lock:
            self._stop()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGALRM:
            if self.expired and self._active:
                self._stop_appliance()
                raise ScanTimeout(describe_timeout(self.timeout or 0))
            return
        self._ending = True
        self._stop_appliance()
        if not self._active:  # cleaning up: finish that first
            self._late_signal = signum
            return
        raise ScanInterrupted(signum)
