"""One ``certify scan`` in a child process that a caller can bound, cancel and watch.

The child is the CLI's own ``scan`` command (same argument checks, report,
exit codes and signal handling: nothing here re-implements or must be kept in
step with it), entered through this module's ``__main__`` for one reason:
to tie the child's life to its parent (``PR_SET_PDEATHSIG``) before anything
starts, so a parent killed outright does not leave a scan running. The JSON
report goes to a file in a private directory, stage events
(``certify.progress.STAGES``) come over a pipe (``--progress-fd``), stderr goes
to a file whose tail explains a crash.

The child leads its own session and process group, so the appliance's qemu
and everything else it starts are in that group: on the wall-clock limit the
whole group gets SIGKILL; on cancel the child gets SIGTERM (the CLI then stops
the appliance and removes its work directory) and, 3 s later, the group gets
SIGKILL. Whatever way it ends, the group is killed, any process still naming
the private directory is killed, and the directory is removed, with the
runtime directory the child's libguestfs made its sockets in.

Used by ``certify batch`` and by the service's workers; keep it free of
either's specifics. (``entry`` lets a test engine take the CLI's place in the
child, with the same command line, stages and supervision.)
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from certify.units import MAX_DURATION

TIMEOUT = "timeout"
CANCELLED = "cancelled"
CRASHED = "crashed"  # the child ended without a report: killed by a signal, or a bug
USAGE = "usage"  # the child refused its arguments (exit 2, no report): the caller's mistake, not the upload's
FAILURES = (TIMEOUT, CANCELLED, CRASHED, USAGE)

CANCEL_GRACE = 3.0  # seconds between SIGTERM and SIGKILL on cancel: the child is gone within 5 s
POLL = 0.1
STDERR_TAIL = 4000  # characters of the child's stderr kept for a failure
_PR_SET_PDEATHSIG = 1


@dataclass
class ChildOutcome:
    """How one child scan ended: a report, or why there is none."""

    report: dict[str, Any] | None
    failure: str | None  # one of FAILURES when report is None
    exit_code: int | None  # the child's exit status; negative: the signal that ended it
    duration: float  # seconds, wall clock
    stderr_tail: str = ""
    stages: list[str] = field(default_factory=list)  # stages entered, in order

    @property
    def reason(self) -> str | None:
        """One line saying why there is no report (None when there is one)."""
        if self.failure is None:
            return None
        last = next((line for line in reversed(self.stderr_tail.splitlines()) if line.strip()), "")
        if self.failure == TIMEOUT:
            return f"timeout: the scan ran past its wall-clock limit and was killed (stage {self.stages[-1] if self.stages else 'start'})"
        if self.failure == CANCELLED:
            return "cancelled"
        if self.failure == USAGE:
            return f"usage: {last.removeprefix('certify: ')}" if last else "usage error"
        return f"crashed: exit {self.exit_code}" + (f": {last}" if last else "")


def run_scan(
    path: str,
    scan_args: Sequence[str] = (),
    *,
    limit: float | None = None,
    cancel: threading.Event | None = None,
    on_stage: Callable[[str], None] | None = None,
    workdir_parent: str | None = None,
    env: dict[str, str] | None = None,
    entry: str = "certify.cli",
) -> ChildOutcome:
    """Scan ``path`` in a child process; ``scan_args`` are more ``certify scan`` options (--profile, --waivers, ...).

    ``limit``: wall-clock seconds before the child's group is killed (outcome ``timeout``).
    ``cancel``: set it to end the scan (outcome ``cancelled``), from any thread.
    ``on_stage``: called with each stage name as the child enters it, from a reader thread.
    ``entry``: the module whose ``main(argv)`` the child runs with the ``scan`` command line; the CLI's
    unless a test engine stands in for it (``certify.service.fakescan``).
    """
    started = time.monotonic()
    private = tempfile.mkdtemp(prefix="certify-child-", dir=workdir_parent)
    report_file = os.path.join(private, "report.json")
    stages: list[str] = []
    read_end, write_end = os.pipe()
    argv = [sys.executable, "-m", "certify.scanchild", str(os.getpid()), f"--entry={entry}", "scan", path, "--format", "json",
            "-o", report_file, "-q", "--workdir", private, "--progress-fd", str(write_end), *scan_args]  # fmt: skip
    if limit is not None:  # the child's own clock only as a backstop: this one kills first
        argv += ["--timeout", str(int(min(limit + 60, MAX_DURATION)))]
    child_env = dict(os.environ if env is None else env)
    # libguestfs makes its socket directory in XDG_RUNTIME_DIR (else /tmp) and only a clean close removes it;
    # a private one, short enough for a socket path, goes with the child however it ends.
    runtime = tempfile.mkdtemp(prefix="certify-run-", dir=child_env.get("XDG_RUNTIME_DIR") or "/tmp")
    child_env["XDG_RUNTIME_DIR"] = runtime
    try:
        with open(os.path.join(private, "stderr"), "wb") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                    pass_fds=(write_end,), start_new_session=True, env=child_env)  # fmt: skip
    except BaseException:
        os.close(read_end)
        os.close(write_end)
        shutil.rmtree(private, ignore_errors=True)
        shutil.rmtree(runtime, ignore_errors=True)
        raise
    os.close(write_end)
    reader = threading.Thread(target=_read_stages, args=(read_end, stages, on_stage), daemon=True, name="scan-stages")
    reader.start()
    failure = None
    sockdirs: set[str] = set()
    try:
        failure = _supervise(proc, started, limit, cancel, private, sockdirs)
    finally:
        if proc.poll() is None:  # an exception here (KeyboardInterrupt in the caller's thread): take the child down
            _kill_group(proc, private, sockdirs)
            proc.wait()
        _kill_group(proc, private, sockdirs)  # qemu or anything else left in the group after the child itself exited
        _kill_naming(private)
        reader.join(timeout=2)
        outcome = _outcome(proc.returncode, failure, report_file, private, stages, time.monotonic() - started)
        shutil.rmtree(private, ignore_errors=True)
        shutil.rmtree(runtime, ignore_errors=True)
        for sockdir in sockdirs:  # a killed appliance's; gone already after a clean close
            shutil.rmtree(sockdir, ignore_errors=True)
    return outcome


def _supervise(proc: subprocess.Popen, started: float, limit: float | None, cancel: threading.Event | None,
               private: str, sockdirs: set[str]) -> str | None:  # fmt: skip
    while True:
        try:
            proc.wait(timeout=POLL)
            return None
        except subprocess.TimeoutExpired:
            pass
        if limit is not None and time.monotonic() - started >= limit:
            _kill_group(proc, private, sockdirs)
            proc.wait()
            return TIMEOUT
        if cancel is not None and cancel.is_set():
            try:
                proc.send_signal(signal.SIGTERM)  # the CLI stops the appliance and removes its work directory
                proc.wait(timeout=CANCEL_GRACE)
            except subprocess.TimeoutExpired:
                pass
            _kill_group(proc, private, sockdirs)
            proc.wait()
            return CANCELLED


def _kill_group(proc: subprocess.Popen, private: str, sockdirs: set[str]) -> None:
    """SIGKILL the child's whole group, first noting the socket directories its appliance's qemu names.

    As root libguestfs makes its socket directory in /tmp whatever XDG_RUNTIME_DIR says, and only a
    clean close removes it: a killed scan would leave it behind, outside any directory of ours.
    """
    sockdirs.update(appliance_sockdirs(private))
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the child leads its group: pgid == pid
    except (ProcessLookupError, PermissionError):
        pass


_SOCKDIR = re.compile(rb"(/[^\x00,=]*/libguestfs[A-Za-z0-9]{6})/")


def appliance_sockdirs(directory: str) -> set[str]:
    """libguestfs socket directories named by the command lines of processes that name ``directory``."""
    found: set[str] = set()
    needle = directory.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if needle in cmdline:
            found.update(m.decode("utf-8", "surrogateescape") for m in _SOCKDIR.findall(cmdline))
    return found


def _kill_naming(directory: str) -> None:
    """SIGKILL any process whose command line names ``directory``: one that left the group (a daemonising helper)."""
    me = os.getpid()
    needle = directory.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if needle in f.read():
                    os.kill(int(entry), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def _read_stages(fd: int, stages: list[str], on_stage: Callable[[str], None] | None) -> None:
    with os.fdopen(fd, "rb") as stream:
        for line in stream:
            try:
                stage = json.loads(line)["stage"]
            except (ValueError, KeyError, TypeError):
                continue  # not ours to trust blindly: a malformed line is skipped, not fatal
            if not isinstance(stage, str):
                continue
            stages.append(stage)
            if on_stage is not None:
                try:
                    on_stage(stage)
                except Exception:  # a display's bug must not stop the stream the scan writes to
                    pass


def _outcome(code: int | None, failure: str | None, report_file: str, private: str, stages: list[str],
             duration: float) -> ChildOutcome:  # fmt: skip
    try:
        with open(os.path.join(private, "stderr"), "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - STDERR_TAIL))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        tail = ""
    report = None
    if failure is None:
        try:
            with open(report_file, encoding="utf-8") as f:
                report = json.load(f)
        except (OSError, ValueError):
            report = None
        if not isinstance(report, dict):
            report = None
            failure = USAGE if code == 2 else CRASHED
    return ChildOutcome(report=report, failure=failure, exit_code=code, duration=round(duration, 3),
                        stderr_tail=tail, stages=list(stages))  # fmt: skip


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when the parent that started it dies; already gone: exit now."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(137)


def main(argv: list[str]) -> int:
    _die_with_parent(int(argv[0]))
    rest = argv[1:]
    entry = "certify.cli"
    if rest and rest[0].startswith("--entry="):
        entry, rest = rest[0].removeprefix("--entry="), rest[1:]
    import importlib  # after the tie: an import is time the parent could die in

    return importlib.import_module(entry).main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
