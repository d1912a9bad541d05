"""A scan in a child process: its report, its stages as they happen, and nothing left once it ends."""

from __future__ import annotations

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


@pytest.fixture
def blank_disk(tmp_path) -> Path:
    """A disk with nothing on it: the scan still boots an appliance to look."""
    disk = tmp_path / "blank.img"
    with open(disk, "wb") as f:
        f.truncate(64 * 1024 * 1024)
    return disk


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
