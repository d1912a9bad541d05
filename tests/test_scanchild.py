"""A scan in a child process: its report, its stages as they happen, and nothing left once it ends."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from certify.progress import STAGES
from certify.scanchild import CANCELLED, CRASHED, TIMEOUT, USAGE, appliance_sockdirs, run_scan


def processes_naming(directory: Path) -> list[tuple[int, str]]:
    """Live processes whose command line names ``directory`` (zombies have an empty one)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode("utf-8", "replace")
            except OSError:
                continue
            if str(directory) in cmdline:
                found.append((int(entry.name), cmdline.replace("\0", " ")))
    return found


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.fixture
def vnc_vmx(tmp_path) -> Path:
    folder = tmp_path / "vnc"
    folder.mkdir()
    return write(folder / "appliance.vmx", 'config.version = "8"\nRemoteDisplay.vnc.enabled = "TRUE"\n')


@pytest.fixture
def runtime_dir():
    """A short XDG_RUNTIME_DIR of the test's own (libguestfs's sockets live below it; their paths must stay short)."""
    path = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_scan_ends_with_its_report_and_its_stages_in_order(vnc_vmx, tmp_path):
    seen = []
    outcome = run_scan(str(vnc_vmx), on_stage=seen.append, workdir_parent=str(tmp_path))
    assert outcome.failure is None and outcome.reason is None
    assert outcome.exit_code == 1
    assert outcome.report["verdict"] == "fail" and outcome.report["artifact"]["kind"] == "vmx"
    assert "vmx-vnc-enabled" in {f["id"] for f in outcome.report["findings"]}
    assert seen == outcome.stages == ["ingest", "checks"]  # no disk: no guest stages
    assert outcome.duration > 0
    assert processes_naming(tmp_path) == [] and [p.name for p in tmp_path.iterdir()] == ["vnc"]


def test_scan_options_reach_the_child(vnc_vmx, tmp_path):
    profile = write(tmp_path / "lenient.yaml", "name: lenient\nexclude: ['vmx-vnc-*']\nfail_on: critical\n")
    outcome = run_scan(str(vnc_vmx), ["--profile", str(profile)], workdir_parent=str(tmp_path))
    assert outcome.report["profile"] == "lenient"
    assert "vmx-vnc-enabled" not in {f["id"] for f in outcome.report["findings"]}


def test_a_rejected_upload_is_a_report_not_a_failure(tmp_path):
    bad = tmp_path / "bad.ova"
    bad.write_bytes(b"not a tar archive" * 40)
    outcome = run_scan(str(bad), workdir_parent=str(tmp_path))
    assert outcome.failure is None and outcome.exit_code == 2
    assert outcome.report["verdict"] == "rejected" and outcome.report["rejection"]["reason"]
    assert outcome.stages == ["ingest"]


def test_arguments_the_child_refuses_are_a_usage_failure_naming_them(vnc_vmx, tmp_path):
    missing = tmp_path / "nope.ova"
    outcome = run_scan(str(missing), workdir_parent=str(tmp_path))
    assert outcome.report is None and outcome.failure == USAGE and outcome.exit_code == 2
    assert outcome.reason == f"usage: {missing}: no such file or directory"
    outcome = run_scan(str(vnc_vmx), ["--profile", "no-such-profile"], workdir_parent=str(tmp_path))
    assert outcome.failure == USAGE and "no-such-profile" in outcome.reason


def test_progress_fd_must_be_an_open_descriptor(vnc_vmx):
    result = subprocess.run([sys.executable, "-m", "certify", "scan", str(vnc_vmx), "--progress-fd", "97"],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2 and "file descriptor 97 is not open" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_child_killed_from_outside_is_crashed_with_its_stderr_tail(vnc_vmx, tmp_path):
    def kill_the_child(stage: str) -> None:
        if stage == "ingest":
            for pid, cmdline in processes_naming(tmp_path):
                if "certify.scanchild" in cmdline:
                    os.kill(pid, signal.SIGKILL)  # the child alone: its group is run_scan's to clean

    outcome = run_scan(str(vnc_vmx), on_stage=kill_the_child, workdir_parent=str(tmp_path))
    assert outcome.report is None and outcome.failure == CRASHED
    assert outcome.exit_code == -signal.SIGKILL and outcome.reason.startswith("crashed: exit -9")
    assert processes_naming(tmp_path) == []


class QemuWatch:
    """Polls, in a thread, for the appliance's qemu naming a directory; ``seen`` is set once it ran."""

    def __init__(self, directory: Path, then: threading.Event | None = None):
        self.directory, self.then = directory, then
        self.seen = threading.Event()
        self.sockdirs: set[str] = set()  # the libguestfs socket directories the running qemu named
        self.fired_at: float | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            if any("qemu" in cmdline for _, cmdline in processes_naming(self.directory)):
                self.sockdirs = appliance_sockdirs(str(self.directory))
                self.seen.set()
                if self.then is not None:
                    self.fired_at = time.monotonic()
                    self.then.set()
                return


@pytest.mark.guest
def test_past_the_wall_clock_limit_the_whole_group_is_killed(blank_disk, tmp_path, runtime_dir):
    work = tmp_path / "work"
    work.mkdir()
    watch = QemuWatch(work)
    outcome = run_scan(str(blank_disk), limit=10, workdir_parent=str(work), env={**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir)})
    watch.stop.set()
    assert outcome.failure == TIMEOUT and outcome.report is None  # never a pass, nor any verdict
    assert outcome.exit_code == -signal.SIGKILL
    assert outcome.reason.startswith("timeout: ")
    assert "guest launch" in outcome.stages
    assert watch.seen.is_set(), "the appliance never started: the limit killed nothing worth testing"
    assert processes_naming(work) == [] and list(work.iterdir()) == []
    assert list(runtime_dir.iterdir()) == []
    # As root libguestfs keeps its sockets in /tmp whatever XDG_RUNTIME_DIR says: the killed appliance's go too.
    assert watch.sockdirs and not any(os.path.exists(d) for d in watch.sockdirs)


@pytest.mark.guest
def test_a_cancel_takes_the_child_and_its_appliance_down_within_5_s(blank_disk, tmp_path, runtime_dir):
    work = tmp_path / "work"
    work.mkdir()
    cancel = threading.Event()
    watch = QemuWatch(work, then=cancel)  # cancel once the appliance's qemu runs
    outcome = run_scan(str(blank_disk), cancel=cancel, workdir_parent=str(work), env={**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir)})
    gone = time.monotonic()
    assert watch.seen.is_set() and outcome.failure == CANCELLED and outcome.report is None
    assert outcome.reason == "cancelled"
    assert processes_naming(work) == [] and list(work.iterdir()) == [] and list(runtime_dir.iterdir()) == []
    assert watch.sockdirs and not any(os.path.exists(d) for d in watch.sockdirs)
    assert gone - watch.fired_at < 5  # the contract a service's cancel relies on, not a speed figure


@pytest.mark.guest
def test_a_parent_killed_outright_takes_its_scan_with_it(blank_disk, tmp_path, runtime_dir):
    work = tmp_path / "work"
    work.mkdir()
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from certify.scanchild import run_scan
        run_scan({str(blank_disk)!r}, workdir_parent={str(work)!r})
    """)], env={**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir)})  # fmt: skip
    watch = QemuWatch(work)
    assert watch.seen.wait(120), "the appliance never started"
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 60
    while processes_naming(work) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_naming(work) == []
    # What a parent killed outright cannot remove (its directories) is left for the caller's own cleanup: here, ours.
    for sockdir in watch.sockdirs:
        shutil.rmtree(sockdir, ignore_errors=True)


@pytest.mark.guest
def test_a_guest_scan_enters_every_stage_in_order(appliances, tmp_path):
    """The session's bare qcow2 (a small Alpine): one launch, every stage seen through the pipe as it happened."""
    seen = []
    outcome = run_scan(str(appliances.qcow2), on_stage=seen.append, workdir_parent=str(tmp_path))
    assert outcome.failure is None, outcome.stderr_tail
    assert seen == outcome.stages == list(STAGES)
    assert outcome.report["verdict"] in ("pass", "fail") and outcome.report["guest"]
    assert outcome.exit_code == {"pass": 0, "fail": 1}[outcome.report["verdict"]]
    assert processes_naming(tmp_path) == [] and list(tmp_path.iterdir()) == []


# -- a child forked ahead (WarmChild): what the service's workers use ---------------------------------

TESTS = Path(__file__).resolve().parent
# Forking is safe only from a process with one thread, as a service worker is when idle; pytest's may not be:
# each of these runs its scan from a fresh single-threaded interpreter, as a worker does.
FORKER = textwrap.dedent("""
    import dataclasses, json, os, signal, sys, threading, time
    from certify.scanchild import WarmChild, run_scan
    spec = json.loads(sys.argv[1])
    held = [open(os.devnull), open(sys.executable, "rb")]  # the parent's own files: none may reach the child
    warm = WarmChild("scanchild_probe") if spec["warm"] else None
    print(json.dumps({"warm_pid": warm.process.pid if warm else None}), flush=True)
    if spec.get("then") == "sleep":
        time.sleep(600)
    if spec.get("then") == "discard":
        warm.discard()
        print(json.dumps({"returncode": warm.process.returncode}), flush=True)
        sys.exit(0)
    if spec.get("then") == "kill_warm":
        os.kill(warm.process.pid, signal.SIGKILL)
        while open(f"/proc/{warm.process.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.01)  # dead, not yet reaped: its greeting still waits in the socket
    cancel = threading.Event()
    def on_stage(stage):
        if stage == "ingest" and spec.get("then") == "cancel":
            cancel.set()
    outcome = run_scan(spec["path"], spec["args"], entry="scanchild_probe", warm=warm, cancel=cancel,
                       on_stage=on_stage, workdir_parent=spec["work"], env={**os.environ, **spec["env"]})
    print(json.dumps(dataclasses.asdict(outcome)), flush=True)
""")


def forker(tmp_path: Path, runtime: Path, *, warm: bool, then: str = "", args: tuple[str, ...] = ()) -> subprocess.Popen:
    spec = {"warm": warm, "then": then, "path": str(tmp_path / "upload.vmx"), "args": list(args),
            "work": str(tmp_path), "env": {"PROBE_ENV": "yes", "XDG_RUNTIME_DIR": str(runtime)}}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", FORKER, json.dumps(spec)], stdout=subprocess.PIPE, text=True, env=env)


def forked(tmp_path: Path, runtime: Path, **kw) -> tuple[int | None, dict, int]:
    """(the warm child's pid, the outcome, the forking process's pid) of one scan run from a fresh process."""
    proc = forker(tmp_path, runtime, **kw)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    first, last = out.strip().splitlines()[0], out.strip().splitlines()[-1]
    return json.loads(first)["warm_pid"], json.loads(last), proc.pid


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_a_child_forked_ahead_runs_its_scan_as_a_new_interpreter_does(warm, tmp_path, runtime_dir):
    warm_pid, outcome, parent = forked(tmp_path, runtime_dir, warm=warm, args=("--probe-exit", "1"))
    report = outcome["report"]
    assert outcome["failure"] is None and outcome["exit_code"] == 1
    assert outcome["stages"] == ["ingest", "checks"] and "probe: on stderr" in outcome["stderr_tail"]
    assert report["pid"] == report["sid"] == report["pgid"]  # its own session: its group is killed as one
    assert report["ppid"] == parent and (warm_pid is None or report["pid"] == warm_pid)
    assert report["path"] == str(tmp_path / "upload.vmx") and "--probe-exit" not in report["rest"]
    assert report["probe_env"] == "yes"  # the environment it was handed, not the one it was forked with
    assert Path(report["xdg_runtime_dir"]).parent == runtime_dir  # a private runtime directory below the given one
    assert report["stdin"] == report["stdout"] == "/dev/null" and report["stderr"].endswith("/stderr")
    assert report["sigterm_default"] and report["sigint_raises"]  # not the forking process's handlers
    assert report["threads"] == 1
    assert processes_naming(tmp_path) == [] and list(runtime_dir.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == []  # its private directory went with it


def test_a_cancel_takes_a_warm_child_down(tmp_path, runtime_dir):
    warm_pid, outcome, _ = forked(tmp_path, runtime_dir, warm=True, then="cancel", args=("--probe-sleep", "120"))
    assert outcome["report"] is None and outcome["failure"] == CANCELLED
    assert not Path(f"/proc/{warm_pid}").exists()


def test_a_warm_child_that_died_waiting_is_replaced_by_a_new_interpreter(tmp_path, runtime_dir):
    warm_pid, outcome, _ = forked(tmp_path, runtime_dir, warm=True, then="kill_warm")
    assert outcome["failure"] is None and outcome["report"]["pid"] != warm_pid
    assert outcome["stages"] == ["ingest", "checks"]


def test_a_warm_child_holds_none_of_its_parents_files_and_says_what_it_is(tmp_path, runtime_dir):
    proc = forker(tmp_path, runtime_dir, warm=True, then="sleep")
    warm_pid = json.loads(proc.stdout.readline())["warm_pid"]
    try:
        deadline = time.monotonic() + 30
        while Path(f"/proc/{warm_pid}/comm").read_text().strip() != "certify-scan" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert Path(f"/proc/{warm_pid}/comm").read_text().strip() == "certify-scan"
        fds = sorted(int(fd) for fd in os.listdir(f"/proc/{warm_pid}/fd"))
        assert fds[:3] == [0, 1, 2] and len(fds) == 4  # its standard streams and its socket to the parent
        assert os.readlink(f"/proc/{warm_pid}/fd/{fds[3]}").startswith("socket:")
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_a_child_killed_by_a_signal_has_crashed_even_with_its_report_written(warm, tmp_path, runtime_dir):
    _, outcome, _ = forked(tmp_path, runtime_dir, warm=warm, args=("--probe-kill-self",))
    assert outcome["report"] is None and outcome["failure"] == CRASHED and outcome["exit_code"] == -signal.SIGKILL


def test_a_discarded_warm_child_exits_and_is_reaped(tmp_path, runtime_dir):
    proc = forker(tmp_path, runtime_dir, warm=True, then="discard")
    out, _ = proc.communicate(timeout=60)
    warm_pid = json.loads(out.splitlines()[0])["warm_pid"]
    assert json.loads(out.splitlines()[-1]) == {"returncode": 0}
    assert not Path(f"/proc/{warm_pid}").exists()


def test_a_warm_child_dies_with_the_process_that_forked_it(tmp_path, runtime_dir):
    proc = forker(tmp_path, runtime_dir, warm=True, then="sleep")
    warm_pid = json.loads(proc.stdout.readline())["warm_pid"]
    assert Path(f"/proc/{warm_pid}").exists()
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 30
    while live(warm_pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # PDEATHSIG
    assert not live(warm_pid)


def live(pid: int) -> bool:
    """Running: neither gone nor a zombie (whether its new parent reaps it is not this test's business)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
