"""A stand-in for the scan child, for queue tests and benchmarks only: ``scan_engine = "fake:SECONDS"``.

Never the default and never a certification. The child it replaces is the
CLI's ``scan`` (see ``certify.scanchild``); this one takes the same command
line, reports the same stages over ``--progress-fd``, sleeps SECONDS (so a
test can kill, cancel or time out a scan in progress, and a benchmark can
measure the service around a scan of known length), then writes a real report
judged by ``pipeline.judge`` from a small real ``Gathered`` and, with
``--save-facts``, that Gathered.

That Gathered holds no facts: its collector and ingest versions are "fake", so
``stale_facts`` marks every fact stale, no check reading one is evaluated, and
the verdict can never be a pass. For the same reason its stored facts are never
reused for a real scan of the same artifact.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

from certify import __version__
from certify.factsjson import FactTypes
from certify.gathered import Gathered
from certify.pipeline import ScanOptions, ingest_switches, judge
from certify.plugins.manager import load_registry
from certify.policy.profile import load_profile
from certify.policy.waivers import load_waivers

ENGINE_PREFIX = "fake:"
FAKE_VERSION = "fake"
STAGES = ("ingest", "collectors", "checks")


def parse_engine(engine: str) -> float | None:
    """SECONDS of a ``fake:SECONDS`` engine, None for the real one; ValueError for anything else."""
    if engine in ("", "child"):
        return None
    if engine.startswith(ENGINE_PREFIX):
        try:
            seconds = float(engine[len(ENGINE_PREFIX):])
        except ValueError:
            seconds = -1.0
        if 0 <= seconds <= 86_400:
            return seconds
    raise ValueError(f"scan engine {engine[:60]!r}: 'child' (real scans) or 'fake:SECONDS' (a testing aid)")


def fake_gathered(path: str, profile_name: str) -> Gathered:
    """A real, judgeable Gathered for ``path`` in which nothing was gathered (every fact stale)."""
    registry = load_registry()
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return Gathered(tool_version=__version__, artifact_path=path, artifact_kind="fake", artifact_sha256=digest,
                    ingest_policy=ingest_switches(load_profile(profile_name)), ingest_version=FAKE_VERSION,
                    collector_versions={name: FAKE_VERSION for name in registry.collectors},
                    notes=["scanned by the fake scan engine (a testing aid): nothing was inspected"])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="certify.service.fakescan", add_help=False)
    parser.add_argument("command", choices=["scan"])
    parser.add_argument("path")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--progress-fd", type=int)
    parser.add_argument("--profile", default="default")
    parser.add_argument("--waivers")
    parser.add_argument("--save-facts")
    parser.add_argument("--fake-seconds", type=float, default=0.0)
    return parser


def main(argv: list[str]) -> int:
    args, _ignored = _parser().parse_known_args(argv)  # the real scan's other options change nothing here
    stream = os.fdopen(args.progress_fd, "w", buffering=1) if args.progress_fd is not None else None
    for stage in STAGES[:-1]:
        if stream is not None:
            stream.write(json.dumps({"stage": stage}) + "\n")
    time.sleep(args.fake_seconds)
    if stream is not None:
        stream.write(json.dumps({"stage": STAGES[-1]}) + "\n")
    registry = load_registry()
    gathered = fake_gathered(args.path, args.profile)
    options = ScanOptions(profile=load_profile(args.profile),
                          waivers=load_waivers(args.waivers) if args.waivers else [])
    report = judge(gathered, options, registry)
    if args.save_facts:
        with open(os.open(args.save_facts, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            json.dump(gathered.to_json(FactTypes.for_collectors(registry.collectors.values())), f)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(registry.reporters["json"].render(report))
    return report.verdict.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
