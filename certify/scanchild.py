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
import importlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
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
_PR_SET_NAME = 15


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
    warm: WarmChild | None = None,
) -> ChildOutcome:
    """Scan ``path`` in a child process; ``scan_args`` are more ``certify scan`` options (--profile, --waivers, ...).

    ``limit``: wall-clock seconds before the child's group is killed (outcome ``timeout``).
    ``cancel``: set it to end the scan (outcome ``cancelled``), from any thread.
    ``on_stage``: called with each stage name as the child enters it, from a reader thread.
    ``entry``: the module whose ``main(argv)`` the child runs with the ``scan`` command line; the CLI's
    unless a test engine stands in for it (``certify.service.fakescan``).
    ``warm``: a child forked ahead for ``entry`` (see :class:`WarmChild`), used up by this scan; else a new
    interpreter is started.
    """
    try:
        return _run_scan(path, scan_args, limit, cancel, on_stage, workdir_parent, env, entry, warm)
    finally:
        if warm is not None:
            warm.discard()  # not used (another entry, or a failure before its start): it must not linger


def _run_scan(path: str, scan_args: Sequence[str], limit: float | None, cancel: threading.Event | None,
              on_stage: Callable[[str], None] | None, workdir_parent: str | None, env: dict[str, str] | None,
              entry: str, warm: WarmChild | None) -> ChildOutcome:  # fmt: skip
    started = time.monotonic()
    private = tempfile.mkdtemp(prefix="certify-child-", dir=workdir_parent)
    report_file = os.path.join(private, "report.json")
    stages: list[str] = []
    command = ["scan", path, "--format", "json", "-o", report_file, "-q", "--workdir", private]
    if limit is not None:  # the child's own clock only as a backstop: this one kills first
        command += ["--timeout", str(int(min(limit + 60, MAX_DURATION)))]
    child_env = dict(os.environ if env is None else env)
    # libguestfs makes its socket directory in XDG_RUNTIME_DIR (else /tmp) and only a clean close removes it;
    # a private one, short enough for a socket path, goes with the child however it ends.
    runtime = tempfile.mkdtemp(prefix="certify-run-", dir=child_env.get("XDG_RUNTIME_DIR") or "/tmp")
    child_env["XDG_RUNTIME_DIR"] = runtime
    stderr_path = os.path.join(private, "stderr")
    try:
        started_warm = None
        if warm is not None and warm.entry == entry:
            try:
                started_warm = warm.start([*command, f"--progress-fd={warm.child_fd}", *scan_args], child_env,
                                          stderr_path)
            except OSError:
                started_warm = None  # it died waiting (the OOM killer, a stray signal): start a new one
        proc, read_end = started_warm or _start_cold(entry, [*command, *scan_args], child_env, stderr_path)
    except BaseException:
        shutil.rmtree(private, ignore_errors=True)
        shutil.rmtree(runtime, ignore_errors=True)
        raise
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


def _start_cold(entry: str, command: list[str], env: dict[str, str], stderr_path: str) -> tuple[subprocess.Popen, int]:
    """A new interpreter running this module's ``main``: the child and the read end of its stage stream."""
    read_end, write_end = os.pipe()
    argv = [sys.executable, "-m", "certify.scanchild", str(os.getpid()), f"--entry={entry}",
            *command, "--progress-fd", str(write_end)]  # fmt: skip
    try:
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                    pass_fds=(write_end,), start_new_session=True, env=env)  # fmt: skip
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return proc, read_end


class ForkedChild:
    """What ``_supervise`` needs of a ``Popen``, for a child this process forked itself."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self._pidfd = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = self.pid, 255 << 8  # reaped elsewhere: it is gone, how is unknown
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                if self._pidfd is not None:
                    os.close(self._pidfd)
                    self._pidfd = None
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0)
            if self._pidfd is not None:  # readable when the process ends: no polling interval
                select.select([self._pidfd], [], [], left)
            else:
                time.sleep(min(0.01, left) if left is not None else 0.01)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass


class WarmChild:
    """A scan child forked ahead of its scan from a process that has ``entry`` imported: no interpreter to start.

    The fork happens here and now, so make one only while the calling process
    runs a single thread (a lock another thread held at the fork would stay
    held in the child forever) and from the thread that will supervise it:
    the child's PDEATHSIG is tied to that thread. The child at once leads its
    own session, as a cold child does, then waits on a socket for its scan:
    command line, environment, stderr file. The same socket, half closed by
    this side, carries its stages back. Closing an unused one (``discard``)
    lets it exit.
    """

    READY = b"R"  # alive, in its own session, waiting for a scan
    STARTED = b"S"  # has the scan: from here it is the scan's child
    START_TIMEOUT = 10.0

    def __init__(self, entry: str = "certify.cli") -> None:
        self.entry = entry
        module = importlib.import_module(entry)  # here, once, rather than in every child
        parent = os.getpid()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.child_fd = theirs.fileno()  # the same number in the child: its --progress-fd
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # or the child would write this process's buffered output a second time
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; its exit status is what the tests see
            code = 70
            try:
                ours.close()
                code = _warm_main(parent, theirs, module)
            except BaseException:  # after the redirection this reaches the scan's stderr file: its tail says why
                traceback.print_exc()
            finally:
                for stream in (sys.stdout, sys.stderr):
                    try:
                        stream.flush()
                    except (OSError, ValueError):
                        pass
                os._exit(code)
        theirs.close()
        self.process = ForkedChild(pid)
        self._control: socket.socket | None = ours

    def start(self, argv: list[str], env: dict[str, str], stderr_path: str) -> tuple[ForkedChild, int]:
        """Hand the child its scan; the child and the read end of its stage stream."""
        control, self._control = self._control, None
        if control is None:
            raise RuntimeError("this warm child was used already")
        try:
            control.settimeout(self.START_TIMEOUT)
            if control.recv(1) != self.READY:
                raise OSError(f"the warm scan child (pid {self.process.pid}) ended before its scan")
            control.sendall(json.dumps({"argv": argv, "env": env, "stderr": stderr_path}).encode())
            control.shutdown(socket.SHUT_WR)
            # READY may have sat in the buffer since long before a death: only this says it is alive now.
            if control.recv(1) != self.STARTED:
                raise OSError(f"the warm scan child (pid {self.process.pid}) ended before its scan")
            control.settimeout(None)
            return self.process, control.detach()
        except BaseException:
            control.close()
            self._reap()
            raise

    def discard(self) -> None:
        """End an unused child: it reads the end of its socket without a scan and exits."""
        if self._control is not None:
            self._control.close()
            self._control = None
            self._reap()

    def _reap(self) -> None:
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


def _warm_main(parent: int, control: socket.socket, module: Any) -> int:  # pragma: no cover - runs in the child
    os.setsid()  # before anything else: the supervisor kills the child's group, which must be this one
    _die_with_parent(parent)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's handlers are not the scan's
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # The parent's open files (its database connections, the doorbell) are not the scan's business; the Python
    # objects still naming them are never used here, and the process ends with os._exit, finalizing nothing.
    keep = control.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, _max_fd())
    _set_name(b"certify-scan")
    try:
        control.sendall(WarmChild.READY)
        received = b"".join(iter(lambda: control.recv(65536), b""))
        if received:
            control.sendall(WarmChild.STARTED)
    except OSError:  # the other end closed before it read the greeting: discarded
        return 0
    if not received:
        return 0  # discarded
    spec = json.loads(received)
    control.detach()  # the fd is now the scan's stage stream, owned by its writer
    os.environ.clear()
    os.environ.update(spec["env"])
    devnull = os.open(os.devnull, os.O_RDWR)
    err = os.open(spec["stderr"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for fd, target in ((devnull, 0), (devnull, 1), (err, 2)):
        os.dup2(fd, target)
    os.close(devnull)
    os.close(err)
    try:
        code = module.main(spec["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    return code if isinstance(code, int) else 0


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (ValueError, OSError):
        return 65536


def _set_name(name: bytes) -> None:
    """The process name ``ps`` and ``top`` show (a forked child would otherwise pass for its parent)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name[:15]), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _supervise(proc: subprocess.Popen | ForkedChild, started: float, limit: float | None, cancel: threading.Event | None,
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


def _kill_group(proc: subprocess.Popen | ForkedChild, private: str, sockdirs: set[str]) -> None:
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
    if failure is None and code is not None and code < 0:
        # Killed by a signal: whatever it wrote before (a report, but perhaps not its facts) is not an ending.
        failure = CRASHED
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
    return importlib.import_module(entry).main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
