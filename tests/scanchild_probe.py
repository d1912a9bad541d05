"""A stand-in scan for the scan child's own tests: reports what kind of process it runs in, not an appliance.

Run by ``certify.scanchild`` in place of the CLI (``entry="scanchild_probe"``),
with the same command line; the "report" it writes is a description of its
process: session, group, parent, environment, standard streams, signal handlers.
``--probe-sleep`` keeps it running for a while; ``--probe-exit`` sets its exit status;
``--probe-kill-self`` ends it with SIGKILL after its report is written.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scanchild_probe")
    parser.add_argument("command")
    parser.add_argument("path")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--progress-fd", type=int, required=True)
    parser.add_argument("--probe-sleep", type=float, default=0.0)
    parser.add_argument("--probe-exit", type=int, default=0)
    parser.add_argument("--probe-kill-self", action="store_true", help="SIGKILL itself once the report is written")
    args, rest = parser.parse_known_args(argv)
    with os.fdopen(args.progress_fd, "w", buffering=1) as progress:
        progress.write(json.dumps({"stage": "ingest"}) + "\n")
        print("probe: on stderr", file=sys.stderr, flush=True)
        time.sleep(args.probe_sleep)
        progress.write(json.dumps({"stage": "checks"}) + "\n")
    report = {
        "pid": os.getpid(), "ppid": os.getppid(), "sid": os.getsid(0), "pgid": os.getpgid(0),
        "argv": argv, "rest": rest, "path": args.path,
        "xdg_runtime_dir": os.environ.get("XDG_RUNTIME_DIR"), "probe_env": os.environ.get("PROBE_ENV"),
        "stdin": os.readlink("/proc/self/fd/0"), "stdout": os.readlink("/proc/self/fd/1"),
        "stderr": os.readlink("/proc/self/fd/2"),
        "sigterm_default": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
        "sigint_raises": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
        "threads": len(os.listdir("/proc/self/task")),
    }
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(report, f)
    if args.probe_kill_self:
        os.kill(os.getpid(), signal.SIGKILL)
    return args.probe_exit
