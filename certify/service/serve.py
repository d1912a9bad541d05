"""``certify serve``: migrate once, run the API under uvicorn, keep N worker processes alive.

The listening socket is bound here before anything else starts, so a port in
use is a one-line usage error rather than a uvicorn traceback. Workers are
separate processes (``python -m certify.service.worker``): a scan that wedges
or crashes a worker never takes the API down, and a worker that dies is
started again by the supervisor thread. SIGTERM or SIGINT stop uvicorn
(its own handlers), then every worker (SIGTERM, SIGKILL after a grace period).
When stored scans were judged under another ruleset than the installed one,
they are re-judged from their stored facts by a low-priority background process
(``StartupReevaluation``).

A worker is started as ``python -m certify.service.worker --data DIR --id ID
--scan-timeout SECONDS --max-attempts N --lease-seconds SECONDS [--db URL]
[--signing-key FILE] [--engine ENGINE]`` (``worker_command``): the worker module must take these.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from certify.errors import UsageError
from certify.service import db
from certify.service.settings import ServiceSettings
from certify.service.store import Store

WORKER_MODULE = "certify.service.worker"
# A worker that dies is restarted after this long, doubled for each death in a row (up to the cap),
# so one that cannot start does not spin.
RESTART_DELAY = 1.0
RESTART_DELAY_MAX = 60.0
# A worker that lived this long is considered healthy again: its next death restarts it at once.
HEALTHY_AFTER = 30.0
STOP_GRACE = 10.0


def check_data_dir(path: Path) -> Path:
    """The data directory, made if missing; a usage error naming it when it cannot be used."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{path}: cannot create the data directory: {exc.strerror or exc}") from None
    if not path.is_dir():
        raise UsageError(f"{path}: not a directory")
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise UsageError(f"{path}: the data directory is not readable and writable by this user")
    return path


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, or a usage error naming the address (in use, not local, ...)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host}: {exc.strerror or exc}") from None
    family, _, _, _, address = infos[0]
    # Named TCP rather than left 0: asyncio turns Nagle off (TCP_NODELAY) only on connections of a socket that says
    # so, and with it on, a small response written in two parts waits out the client's delayed ACK (40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = "the port is in use" if exc.errno == 98 else (exc.strerror or str(exc))
        raise UsageError(f"cannot listen on {host}:{port}: {reason}") from None
    sock.set_inheritable(False)
    return sock


def worker_command(settings: ServiceSettings, worker_id: str) -> list[str]:
    command = [sys.executable, "-m", WORKER_MODULE, "--data", str(settings.data_dir), "--id", worker_id,
               "--scan-timeout", str(settings.scan_timeout), "--max-attempts", str(settings.max_attempts),
               "--lease-seconds", str(settings.lease_seconds)]
    if settings.db_url:
        command += ["--db", settings.db_url]
    if settings.signing_key:
        command += ["--signing-key", str(settings.signing_key)]
    if settings.scan_engine != "child":
        command += ["--engine", settings.scan_engine]
    return command


class Supervisor:
    """Keeps ``count`` worker processes running until :meth:`stop`."""

    def __init__(self, settings: ServiceSettings, count: int, log=None, command=worker_command) -> None:  # noqa: ANN001
        self.settings = settings
        self.count = count
        self.command = command
        self.log = log or (lambda text: print(f"certify serve: {text}", file=sys.stderr, flush=True))
        self.stopping = threading.Event()
        self.processes: dict[int, subprocess.Popen] = {}
        self._deaths = [0] * count
        self._started = [0.0] * count
        self._thread = threading.Thread(target=self._run, name="worker-supervisor", daemon=True)

    def worker_id(self, slot: int) -> str:
        return f"{socket.gethostname()}-{os.getpid()}-w{slot}"

    def start(self) -> None:
        if self.count == 0:
            return
        for slot in range(self.count):
            self._spawn(slot)
        self._thread.start()

    def _spawn(self, slot: int) -> None:
        self.processes[slot] = subprocess.Popen(self.command(self.settings, self.worker_id(slot)),
                                                stdin=subprocess.DEVNULL)
        self._started[slot] = time.monotonic()

    def _run(self) -> None:
        due: dict[int, float] = {}
        while not self.stopping.wait(0.5):
            now = time.monotonic()
            for slot, process in list(self.processes.items()):
                code = process.poll()
                if code is None or self.stopping.is_set():
                    continue
                if slot not in due:
                    lived = now - self._started[slot]
                    self._deaths[slot] = 0 if lived > HEALTHY_AFTER else self._deaths[slot] + 1
                    delay = min(RESTART_DELAY * 2 ** max(self._deaths[slot] - 1, 0), RESTART_DELAY_MAX)
                    self.log(f"worker {self.worker_id(slot)} (pid {process.pid}) exited with {code}; "
                             f"restarting in {delay:.0f}s")
                    due[slot] = now + delay
                elif now >= due[slot]:
                    del due[slot]
                    self._spawn(slot)

    def stop(self) -> None:
        self.stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for process in self.processes.values():
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class StartupReevaluation:
    """``certify reevaluate --all`` in a low-priority process, when stored scans were judged under another ruleset.

    On start, a service whose checks, profiles or plugins changed holds verdicts the
    installed ruleset might not give; it re-judges them from stored facts (no launch)
    in the background, at the lowest CPU priority so that scans and the API come
    first, and logs the verdicts that changed. The work is idempotent (a natural key
    re-judged has its scan), so a serve stopped half-way finishes the job on its next start.
    """

    def __init__(self, settings: ServiceSettings, log) -> None:  # noqa: ANN001
        self.settings, self.log = settings, log
        self.process: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "certify", "reevaluate", "--all", "--data", str(self.settings.data_dir)]
        if self.settings.db_url:
            command += ["--db", self.settings.db_url]
        if self.settings.signing_key:
            command += ["--signing-key", str(self.settings.signing_key)]
        return command

    def start(self, ruleset_digest: str) -> None:
        """Start it if there is anything to judge again; a failure to look is logged, never fatal to the service."""
        try:
            store = Store.open(self.settings.database_url, migrate=False)
            try:
                stale = store.count_reevaluation_candidates(ruleset_digest)
            finally:
                store.close()
            if not stale:
                return
            self.log(f"{stale} stored scan(s) were judged under another ruleset: judging them again in the background")
            self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, text=True, errors="replace")
        except Exception as exc:  # noqa: BLE001 - the database briefly away, a full process table
            self.log(f"re-evaluation not started ({type(exc).__name__}: {exc}); 'certify reevaluate --all' runs it by hand")
            return
        try:
            os.setpriority(os.PRIO_PROCESS, self.process.pid, 19)
        except OSError:
            pass  # already ended
        self._thread = threading.Thread(target=self._relay, name="startup-reevaluation", daemon=True)
        self._thread.start()

    def _relay(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.log(f"re-evaluation: {line.rstrip()}")
        code = self.process.wait()
        if code not in (0, -signal.SIGTERM):
            self.log(f"re-evaluation: ended with exit code {code}; 'certify reevaluate --all' runs it by hand")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._thread is not None:
            self._thread.join(timeout=STOP_GRACE)


def _server_class():  # noqa: ANN202 - uvicorn is imported only when serving
    import uvicorn

    class Server(uvicorn.Server):
        early_signals: list[int] = []

        @contextlib.contextmanager
        def capture_signals(self):  # noqa: ANN202
            # uvicorn re-raises the signal once it has shut down, which would kill this process before
            # the workers are stopped: take SIGTERM/SIGINT as "stop gracefully" and return instead.
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            for sig in self.early_signals:  # asked to stop while starting: stop as soon as it runs
                self.handle_exit(sig, None)
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


def serve(settings: ServiceSettings) -> int:
    import uvicorn

    from certify.service.api import create_app

    check_data_dir(settings.data_dir)
    sock = bind(settings.host, settings.port)
    try:
        Store.open(settings.database_url, migrate=True).close()  # once, before the API or any worker runs
        app = create_app(settings)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=10)
        server = _server_class()(config)
        supervisor = Supervisor(settings, settings.workers)
        reevaluation = StartupReevaluation(settings, supervisor.log)
        # From here on a signal must stop the workers too, not just end this process:
        # remembered until uvicorn's handlers are in place, then acted on.
        early: list[int] = []
        server.early_signals = early
        previous = {sig: signal.signal(sig, lambda signum, _frame: early.append(signum))
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        host, port = sock.getsockname()[:2]
        print(f"certify serve: listening on http://{_url_host(host)}:{port} (data {settings.data_dir}, "
              f"database {db.redacted(settings.database_url)}, {settings.workers} worker(s))",
              file=sys.stderr, flush=True)
        try:
            supervisor.start()
            reevaluation.start(app.state.ruleset_digest)
            server.run(sockets=[sock])
        finally:
            reevaluation.stop()
            supervisor.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        sock.close()
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
