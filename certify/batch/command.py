"""``certify batch`` from parsed arguments: every option checked before the first scan, signals, the exit code."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from certify import __version__
from certify.batch.display import Display
from certify.batch.items import read_list
from certify.batch.run import Batch, BatchSettings, batch_exit_code, waivers_digest
from certify.batch.state import StateDir
from certify.catalog import installed_ruleset_digest
from certify.errors import UsageError
from certify.plugins.manager import load_registry
from certify.policy.profile import load_profile
from certify.policy.waivers import load_waivers

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
REDRAW = 0.25  # seconds between redraws of the live block on a terminal


def run_batch_command(args: argparse.Namespace) -> int:
    paths = list(args.paths)
    if args.from_list:
        paths += read_list(args.from_list)
    if not paths:
        raise UsageError("batch: no uploads to scan (name them, or give --from-list FILE)")
    if args.workdir and not (os.path.isdir(args.workdir) and os.access(args.workdir, os.W_OK)):
        raise UsageError(f"{args.workdir}: not a writable directory for the work directories")
    profile = load_profile(args.profile)  # a bad profile or waivers file stops the batch before any scan
    if args.waivers:
        load_waivers(args.waivers)
    registry = load_registry()
    profile.validate_against(registry.checks)
    settings = BatchSettings(
        paths=paths,
        jobs=args.jobs,
        profile=os.path.abspath(args.profile) if os.path.isfile(args.profile) and args.profile != profile.name else args.profile,
        profile_name=profile.name,
        profile_digest=profile.digest,
        ruleset_digest=installed_ruleset_digest(registry),
        version=__version__,
        fail_on=args.fail_on.label if args.fail_on is not None else None,
        waivers=os.path.abspath(args.waivers) if args.waivers else None,
        waivers_sha256=waivers_digest(args.waivers) if args.waivers else None,
        timeout=args.timeout,
        workdir=os.path.abspath(args.workdir) if args.workdir else None,
        state=StateDir(args.state) if args.state else None,
    )
    display = Display(sys.stderr, len(paths), terminal=sys.stderr.isatty(), enabled=not args.quiet)
    batch = Batch(settings, sys.stdout, display)
    received: list[int] = []

    def stop(signum: int, _frame: Any) -> None:  # kill the running scans, start no more; what finished stays
        received.append(signum)
        batch.stop.set()

    def wait(workers: list[threading.Thread]) -> None:
        while any(w.is_alive() for w in workers):
            for w in workers:
                w.join(REDRAW / len(workers))
            display.tick()

    previous = {s: signal.signal(s, stop) for s in _SIGNALS}
    try:
        results = batch.run(wait)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    signal_name = signal.Signals(received[0]).name if received else None
    display.summary(results, batch.interrupted, signal_name)
    if received:
        return 128 + received[0]
    return batch_exit_code(results)

