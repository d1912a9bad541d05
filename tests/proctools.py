"""Waiting, and finding real processes by what they are: the service and worker tests kill and watch them.

Processes are found through /proc by their command line, parent, or open
files, never by name alone: a test only touches what it started itself.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

DEADLINE = 120.0  # seconds before a wait is a failure: only keeps a broken test from hanging


def wait_for(what: str, predicate, deadline: float = DEADLINE):
    """Poll ``predicate`` until it returns something true, and return that; fail naming ``what``."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _stat_fields(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def alive(pid: int) -> bool:
    """Running, neither gone nor a zombie."""
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] != "Z"


def gone(pid: int) -> bool:
    return not alive(pid)


def pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) != os.getpid()]


def processes_naming(text: str) -> list[int]:
    """Live pids (other than this one) whose command line contains ``text``."""
    needle = text.encode()
    return [pid for pid in pids() if needle in cmdline(pid) and alive(pid)]


def children_of(pid: int) -> list[int]:
    found = []
    for child in pids():
        fields = _stat_fields(child)
        if len(fields) > 1 and fields[1] == str(pid) and fields[0] != "Z":
            found.append(child)
    return found


def stderr_path(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/fd/2")
    except OSError:
        return ""


def scan_children(scan_id: str) -> list[int]:
    """The scan child processes of one service scan, started cold or forked ahead.

    Either way its stderr is a file in the scan's private directory
    (``work/scan-ID-*``); a cold child's command line also names it.
    """
    marker = f"/scan-{scan_id}-"
    return [pid for pid in pids() if alive(pid) and (
        (b"certify.scanchild" in cmdline(pid) and marker.encode() in cmdline(pid)) or marker in stderr_path(pid))]
