"""``certify batch`` end to end: real child scans of small uploads built here, resume, exit codes, bad input."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import CERTIFY, env_with_plugin, run_certify
from proctools import processes_naming

LINE_KEYS = {"path", "upload_digest", "artifact_sha256", "verdict", "exit_code", "counts", "profile", "profile_digest",
             "ruleset_digest", "certify_version", "duration", "report", "error", "failure", "skipped"}  # fmt: skip
# Only descriptor checks: a VMX without disks can pass, so a batch can be certified without a guest launch.
DESCRIPTOR_ONLY = "name: descriptor-only\ninclude: ['vmx-*', 'storage-*', 'extraconfig-*', 'host-*']\n"


def vmx_bundle(root: Path, name: str, *lines: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / f"{name}.vmx").write_text("\n".join(['config.version = "8"', 'virtualHW.version = "19"', *lines]) + "\n")
    return folder


@pytest.fixture
def uploads(tmp_path) -> dict[str, Path]:
    bad = tmp_path / "bad.ova"
    bad.write_bytes(b"this is not a tar archive\n" * 30)
    return {
        "clean": vmx_bundle(tmp_path, "clean"),
        "vnc": vmx_bundle(tmp_path, "vnc", 'RemoteDisplay.vnc.enabled = "TRUE"'),
        "bad": bad,
        "missing": tmp_path / "gone.ova",
    }


@pytest.fixture
def descriptor_only(tmp_path) -> Path:
    profile = tmp_path / "descriptor-only.yaml"
    profile.write_text(DESCRIPTOR_ONLY)
    return profile


def batch(*args: str, **kw) -> tuple[int, list[dict], str]:
    result = run_certify("batch", *args, **kw)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return result.returncode, lines, result.stderr


def by_path(lines: list[dict]) -> dict[str, dict]:
    return {line["path"]: line for line in lines}


def test_a_mixed_batch_gives_one_line_each_and_exits_with_the_worst(uploads, descriptor_only, tmp_path):
    paths = [str(uploads[k]) for k in ("clean", "vnc", "bad", "missing")]
    code, lines, err = batch(*paths, "-j", "2", "--profile", str(descriptor_only))
    assert code == 3, err  # the missing upload could not be judged
    assert len(lines) == 4 and all(set(line) == LINE_KEYS for line in lines)
    got = by_path(lines)
    clean, vnc, bad, missing = (got[p] for p in paths)
    assert (clean["verdict"], clean["exit_code"], clean["error"]) == ("pass", 0, None)
    assert (vnc["verdict"], vnc["exit_code"]) == ("fail", 1) and vnc["counts"]["high"] >= 1
    assert (bad["verdict"], bad["exit_code"]) == ("rejected", 2) and "not a valid tar archive" in bad["error"]
    assert missing["verdict"] is None and missing["failure"] == "unreadable"
    assert missing["error"] == f"{paths[3]}: no such file or directory"
    for line in (clean, vnc, bad):
        assert line["profile"] == "descriptor-only" and line["profile_digest"].startswith("sha256:")
        assert line["ruleset_digest"].startswith("sha256:") and line["certify_version"]
        assert line["upload_digest"].startswith("sha256:") and line["duration"] > 0 and line["report"] is None
        assert line["skipped"] is None and line["failure"] is None
    assert len(clean["artifact_sha256"]) == 64 and bad["artifact_sha256"] is None  # rejected before it was identified
    # the summary table, on stderr
    table = err[err.index("outcome "):]
    assert "pass" in table and "fail" in table and "rejected" in table and "unreadable" in table
    assert "4 of 4 upload(s)" in table


@pytest.mark.parametrize(("which", "code"), [(("clean",), 0), (("clean", "vnc"), 1), (("clean", "bad"), 1), (("clean", "missing"), 3)])
def test_exit_code_is_the_worst_outcome(uploads, descriptor_only, which, code):
    result_code, lines, err = batch(*(str(uploads[k]) for k in which), "--profile", str(descriptor_only), "-q")
    assert result_code == code, err
    assert len(lines) == len(which) and err == ""  # -q: nothing on stderr


def test_a_rerun_with_state_skips_what_was_judged_and_rescans_what_changed(uploads, descriptor_only, tmp_path):
    state = tmp_path / "state"
    paths = [str(uploads[k]) for k in ("clean", "vnc", "bad")]
    code, first, _ = batch(*paths, "--state", str(state), "--profile", str(descriptor_only))
    assert code == 1
    reports = {line["path"]: Path(line["report"]) for line in first}
    assert all(json.loads(r.read_text())["verdict"] == by_path(first)[p]["verdict"] for p, r in reports.items())
    recorded = {p.name: p.stat().st_mtime_ns for p in (state / "results").iterdir()}
    assert len(recorded) == 3 and not any(p.name.startswith(".tmp") for p in state.rglob("*"))

    code, again, err = batch(*paths, "--state", str(state), "--profile", str(descriptor_only))
    assert code == 1
    assert all(line["skipped"] == "already judged" for line in again)
    strip = lambda line: {k: v for k, v in line.items() if k != "skipped"}  # noqa: E731
    assert {p: strip(line) for p, line in by_path(again).items()} == {p: strip(line) for p, line in by_path(first).items()}
    assert {p.name: p.stat().st_mtime_ns for p in (state / "results").iterdir()} == recorded  # nothing scanned again
    assert err.count("skipped: already judged") == 3

    # Another disk beside the same descriptor is another upload; a stricter threshold is another judgement.
    (uploads["clean"] / "notes.txt").write_text("changed\n")
    code, third, _ = batch(str(uploads["clean"]), "--state", str(state), "--profile", str(descriptor_only))
    assert third[0]["skipped"] is None and third[0]["upload_digest"] != by_path(first)[paths[0]]["upload_digest"]
    code, fourth, _ = batch(str(uploads["vnc"]), "--state", str(state), "--profile", str(descriptor_only), "--fail-on", "critical")
    assert fourth[0]["skipped"] is None and fourth[0]["verdict"] == "pass" and code == 0
    code, fifth, _ = batch(str(uploads["vnc"]), "--state", str(state))  # the default profile
    assert fifth[0]["skipped"] is None and fifth[0]["profile"] == "default"
    # isv-selftest has default's content (one digest) but is another profile: its own judgement, under its name.
    code, sixth, _ = batch(str(uploads["vnc"]), "--state", str(state), "--profile", "isv-selftest")
    assert sixth[0]["skipped"] is None and sixth[0]["profile"] == "isv-selftest"
    assert sixth[0]["profile_digest"] == fifth[0]["profile_digest"]


def test_an_installed_plugin_changes_the_ruleset_and_a_rerun_scans_again(uploads, plugin_site, tmp_path):
    state = tmp_path / "state"
    code, first, _ = batch(str(uploads["vnc"]), "--state", str(state), "-q")
    assert code == 1 and first[0]["skipped"] is None
    code, again, _ = batch(str(uploads["vnc"]), "--state", str(state), "-q", env=env_with_plugin(plugin_site))
    assert code == 1 and again[0]["skipped"] is None  # a new check could change the verdict: judged again
    assert again[0]["ruleset_digest"] != first[0]["ruleset_digest"]
    assert again[0]["profile_digest"] == first[0]["profile_digest"]
    code, third, _ = batch(str(uploads["vnc"]), "--state", str(state), "-q", env=env_with_plugin(plugin_site))
    assert third[0]["skipped"] == "already judged" and third[0]["ruleset_digest"] == again[0]["ruleset_digest"]


def test_the_same_upload_twice_is_scanned_once(uploads, descriptor_only, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "clean.vmx").write_bytes((uploads["clean"] / "clean.vmx").read_bytes())
    code, lines, _ = batch(str(uploads["clean"]), str(copy), "-j", "2", "--profile", str(descriptor_only))
    assert code == 0 and sorted(line["skipped"] is None for line in lines) == [False, True]
    assert len({line["upload_digest"] for line in lines}) == 1


def test_from_list_reads_paths_comments_and_stdin(uploads, descriptor_only, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"# uploads of the day\n{uploads['clean']}\n\n  {uploads['vnc']}  \n")
    code, lines, _ = batch("--from-list", str(listing), "--profile", str(descriptor_only), "-q")
    assert code == 1 and set(by_path(lines)) == {str(uploads["clean"]), str(uploads["vnc"])}
    code, lines, _ = batch("--from-list", "-", str(uploads["bad"]), "-q", input=f"{uploads['clean']}\n")
    assert code == 1 and set(by_path(lines)) == {str(uploads["bad"]), str(uploads["clean"])}


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        ((), "no uploads to scan"),
        (("--from-list", "{tmp}/absent.txt"), "absent.txt: cannot read the list of uploads"),
        (("--from-list", "{tmp}/latin1.txt"), "latin1.txt: the list of uploads is not UTF-8 text"),
        (("--from-list", "{tmp}/empty.txt"), "no uploads to scan"),
        (("x.ova", "--profile", "no-such-profile"), "unknown profile 'no-such-profile'"),
        (("x.ova", "--waivers", "{tmp}/absent.yaml"), "absent.yaml: cannot read waivers"),
        (("x.ova", "-j", "0"), "argument -j/--jobs"),
        (("x.ova", "--timeout", "soon"), "argument --timeout"),
        (("x.ova", "--format", "csv"), "argument --format"),
        (("x.ova", "--state", "{tmp}/latin1.txt"), "latin1.txt: cannot use as the state directory"),
        (("x.ova", "--workdir", "{tmp}/absent"), "absent: not a writable directory"),
    ],
)
def test_bad_input_is_a_one_line_usage_error(tmp_path, args, complaint):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9.ova\n".encode("latin-1"))
    (tmp_path / "empty.txt").write_text("# nothing today\n\n")
    code, lines, err = batch(*(a.format(tmp=tmp_path) for a in args))
    assert code == 2 and lines == []
    assert len(err.strip().splitlines()) == 1 and complaint in err and "Traceback" not in err


def test_on_a_terminal_progress_is_redrawn_and_results_still_go_to_stdout(uploads, descriptor_only):
    leader, follower = pty.openpty()
    proc = subprocess.Popen([*CERTIFY, "batch", str(uploads["clean"]), str(uploads["vnc"]), "--profile", str(descriptor_only)],
                            stdout=subprocess.PIPE, stderr=follower, text=True)  # fmt: skip
    os.close(follower)
    seen = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    out, _ = proc.communicate(timeout=60)
    os.close(leader)
    text = seen.decode("utf-8", "replace")
    assert proc.returncode == 1
    assert "certify batch: " in text and "done" in text and "ETA" in text and "\x1b[" in text
    assert "[2/2]" in text and "outcome " in text
    assert len(out.splitlines()) == 2 and all(json.loads(line)["path"] for line in out.splitlines())


# --- with a guest launch: killed part way, never waited for in full ----------------------------


@pytest.mark.guest
def test_a_scan_past_timeout_is_an_error_line_never_a_pass(blank_disk, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    code, lines, err = batch(str(blank_disk), "--timeout", "3", "--workdir", str(scratch))
    assert code == 3, err
    (line,) = lines
    assert line["failure"] == "timeout" and line["verdict"] is None and line["exit_code"] == 3
    assert line["error"].startswith("timeout: ")
    assert processes_naming(str(scratch)) == [] and list(scratch.iterdir()) == []


@pytest.mark.guest
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_kills_running_scans_and_keeps_what_finished(uploads, blank_disk, tmp_path, signum, code):
    scratch, state = tmp_path / "scratch", tmp_path / "state"
    scratch.mkdir()
    proc = subprocess.Popen([*CERTIFY, "batch", str(uploads["vnc"]), str(blank_disk), "--state", str(state), "--workdir", str(scratch)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    first = json.loads(proc.stdout.readline())  # the VMX, judged before the disk's scan starts (-j 1)
    assert first["verdict"] == "fail"
    deadline = time.monotonic() + 120
    while not any(b"qemu" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in processes_naming(str(scratch)) if Path(f"/proc/{pid}").exists()):
        assert proc.poll() is None and time.monotonic() < deadline, "the appliance never started"
        time.sleep(0.2)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert out == ""  # the interrupted scan has no line
    assert f"interrupted by {signal.Signals(signum).name}: 1 scan(s) killed" in err and "Traceback" not in err
    assert processes_naming(str(scratch)) == [] and list(scratch.iterdir()) == []
    results = [json.loads(p.read_text()) for p in (state / "results").iterdir()]
    assert [r["path"] for r in results] == [str(uploads["vnc"])]
