"""Every scan ends, and says why: --timeout, SIGINT and SIGTERM stop the appliance and remove the work directory.

The guard is tested on a real child process that names the work directory
(as libguestfs' qemu does), with the main thread blocked in C code the way a
libguestfs call blocks; the CLI tests boot a real appliance and end it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CERTIFY, run_certify

from certify.guest.reader import stop_appliance
from certify.scanguard import ScanGuard, ScanInterrupted, ScanTimeout
from certify.units import parse_duration


def _sleeper(path: Path) -> subprocess.Popen:
    """A child that names ``path`` on its command line and waits, as qemu names its overlay."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", str(path)])


def _children_naming(directory: Path) -> list[int]:
    marker = str(directory)
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode("utf-8", "replace"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_stop_appliance_kills_only_children_that_name_the_work_directory(tmp_path):
    ours = _sleeper(tmp_path / "overlay1.qcow2")
    other = _sleeper(tmp_path.parent / "another-scan" / "overlay1.qcow2")
    try:
        assert stop_appliance(str(tmp_path)) == [ours.pid]
        assert ours.wait(timeout=10) == -signal.SIGKILL
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_the_deadline_stops_the_appliance_while_the_main_thread_waits_in_c(tmp_path):
    child = _sleeper(tmp_path / "overlay1.qcow2")
    stopped = []
    started = time.monotonic()
    with pytest.raises(ScanTimeout, match="time limit of 0.5 s"):
        with ScanGuard(0.5, lambda: stopped.extend(stop_appliance(str(tmp_path)))):
            child.wait()  # blocks in waitpid(), as a libguestfs call blocks on its socket
            time.sleep(30)  # not reached: the timeout is raised as soon as the wait returns
    assert time.monotonic() - started < 10
    assert set(stopped) == {child.pid} and not Path(f"/proc/{child.pid}").exists()


def test_the_deadline_ends_the_scan_even_when_it_has_moved_on_to_another_wait():
    # Nothing of the scan's is left to kill, and it waits in a long sleep: the
    # deadline still ends it, shortly after it passed.
    started = time.monotonic()
    with pytest.raises(ScanTimeout):
        with ScanGuard(0.3, lambda: None):
            time.sleep(30)
    assert time.monotonic() - started < 10


def test_sigterm_stops_the_appliance_then_ends_the_scan(tmp_path):
    child = _sleeper(tmp_path / "overlay1.qcow2")
    stopped = []
    with pytest.raises(ScanInterrupted) as ended:
        with ScanGuard(None, lambda: stopped.extend(stop_appliance(str(tmp_path)))):
            os.kill(os.getpid(), signal.SIGTERM)
            child.wait()
    assert ended.value.exit_code == 143 and set(stopped) == {child.pid}  # killed, perhaps twice: harmless
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the guard put things back


def test_outside_the_main_thread_the_deadline_is_checked_between_stages(tmp_path):
    import threading

    outcome = {}

    def scan_in_a_worker():
        with ScanGuard(0.2, lambda: None) as guard:
            time.sleep(0.6)
            try:
                guard.check()
            except ScanTimeout as exc:
                outcome["reason"] = exc.reason

    worker = threading.Thread(target=scan_in_a_worker)
    worker.start()
    worker.join()
    assert "time limit of 0.2 s" in outcome["reason"]


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("0.5", 0.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "-1", "abc", "10d", "1e9", "", "9999999999"])
def test_bad_durations_are_one_line_errors(text, tmp_path):
    result = run_certify("scan", str(tmp_path / "x.img"), "--timeout", text)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "--timeout" in result.stderr


# --- the real thing: an appliance booting for a blank disk --------------------------------


def _start_scan(disk: Path, workdir: Path, *extra: str) -> subprocess.Popen:
    workdir.mkdir()
    return subprocess.Popen([*CERTIFY, "scan", str(disk), "--workdir", str(workdir), "--format", "json", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _wait_for_qemu(workdir: Path, scan: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not any("qemu" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace") for pid in _alive(_children_naming(workdir))):
        assert scan.poll() is None, scan.communicate()
        assert time.monotonic() < deadline, "the appliance never started"
        time.sleep(0.2)


def _alive(pids: list[int]) -> list[int]:
    return [p for p in pids if Path(f"/proc/{p}").exists()]


@pytest.mark.guest
def test_a_scan_past_its_timeout_kills_the_appliance_and_ends_in_error(blank_disk, tmp_path):
    workdir = tmp_path / "work"
    scan = _start_scan(blank_disk, workdir, "--timeout", "4")
    out, err = scan.communicate(timeout=120)
    assert scan.returncode == 3, err
    report = json.loads(out)
    assert report["verdict"] == "error"
    assert any("exceeded its time limit of 4 s" in e for e in report["errors"])
    assert "exceeded its time limit of 4 s (--timeout)" in err
    assert list(workdir.iterdir()) == [] and _alive(_children_naming(workdir)) == []


@pytest.mark.guest
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_the_scan_stops_the_appliance_and_removes_the_work_directory(blank_disk, tmp_path, signum, code):
    workdir = tmp_path / "work"
    scan = _start_scan(blank_disk, workdir)
    _wait_for_qemu(workdir, scan)
    scan.send_signal(signum)
    out, err = scan.communicate(timeout=60)
    assert scan.returncode == code, err
    assert f"interrupted by {signal.Signals(signum).name}" in err and "Traceback" not in err
    assert out == ""  # no report: the scan did not end on its own
    assert list(workdir.iterdir()) == [] and _alive(_children_naming(workdir)) == []


def test_an_appliance_that_starts_after_the_deadline_is_stopped_too(tmp_path):
    """The deadline can pass while a launch waits in C before qemu is forked: the guard keeps stopping."""
    import ctypes
    import threading

    late = []
    threading.Timer(1.0, lambda: late.append(_sleeper(tmp_path / "libguestfsXXXX" / "overlay1.qcow2"))).start()
    with pytest.raises(ScanTimeout):
        with ScanGuard(0.3, lambda: stop_appliance(str(tmp_path))):
            ctypes.CDLL(None).sleep(2)  # C code: no handler runs until it returns, as in g.launch()
    assert late and late[0].wait(timeout=10) == -signal.SIGKILL


def test_a_second_signal_during_cleanup_lets_cleanup_finish_then_ends_the_scan(tmp_path):
    done = tmp_path / "cleaned"

    def cleanup():
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the work directory is being removed
        time.sleep(0.3)
        done.write_text("")

    with pytest.raises(ScanInterrupted) as ended:
        with ScanGuard(None, lambda: None, cleanup):
            pass
    assert done.exists() and ended.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
