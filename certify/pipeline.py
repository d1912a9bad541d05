"""One upload, top to bottom: ingest, descriptor facts, guest facts, checks, verdict."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from certify import __version__
from certify.errors import InputRejected
from certify.guest import GuestLaunchError, GuestNotInspectable, describe_os, open_guest
from certify.ingest import Bundle, Limits, ingest
from certify.model import Check, Facts, Report, Severity, Verdict
from certify.plugins.manager import Registry, load_registry
from certify.progress import SILENT, Progress
from certify.runner import run_checks
from certify.verdict import decide

DEFAULT_PROFILE = "default"
DEFAULT_THRESHOLD = Severity.HIGH
PIPELINE_FACTS = ("descriptor",)


@dataclass
class ScanOptions:
    profile: str = DEFAULT_PROFILE
    threshold: Severity = DEFAULT_THRESHOLD
    workdir_parent: str | None = None  # where the private work directory is made
    limits: Limits = field(default_factory=Limits)
    progress: Progress = SILENT


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._start = time.monotonic()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.timings[name] = round(time.monotonic() - start, 3)

    def total(self) -> dict[str, float]:
        return {**self.timings, "total": round(time.monotonic() - self._start, 3)}


def scan(path: str, options: ScanOptions | None = None, registry: Registry | None = None) -> Report:
    options = options or ScanOptions()
    registry = registry or load_registry()
    timer = _Timer()
    workdir = tempfile.mkdtemp(prefix="certify-", dir=options.workdir_parent)
    try:
        return _scan(path, options, registry, timer, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _scan(path: str, options: ScanOptions, registry: Registry, timer: _Timer, workdir: str) -> Report:
    progress = options.progress
    base = {
        "tool_version": __version__,
        "artifact_path": path,
        "profile": options.profile,
        "threshold": options.threshold,
        "plugins": registry.plugins,
    }
    progress.step(f"reading {path}")
    try:
        with timer.stage("ingest"):
            bundle = ingest(path, workdir, options.limits)
    except InputRejected as exc:
        progress.step(f"rejected: {exc}")
        return Report(**base, artifact_kind=None, artifact_sha256=None, verdict=Verdict.REJECTED,
                      rejection=str(exc), timings=timer.total())  # fmt: skip

    checks = list(registry.checks.values())
    facts, errors, guest_info = _gather_facts(bundle, checks, registry, workdir, timer, progress)
    with timer.stage("checks"):
        findings, status = run_checks(checks, facts)
    verdict = decide(findings, options.threshold, errors)
    return Report(
        **base,
        artifact_kind=bundle.kind,
        artifact_sha256=bundle.sha256,
        verdict=verdict,
        findings=findings,
        check_status=status,
        errors=errors,
        notes=bundle.notes,
        disks=bundle.disk_facts,
        guest=guest_info,
        timings=timer.total(),
    )


def _gather_facts(
    bundle: Bundle, checks: list[Check], registry: Registry, workdir: str, timer: _Timer, progress: Progress
) -> tuple[Facts, list[str], dict | None]:
    facts = Facts()
    errors: list[str] = []
    if bundle.descriptor is not None:
        facts.values["descriptor"] = bundle.descriptor
    else:
        facts.not_applicable["descriptor"] = "the upload is a bare disk image, with no descriptor"

    wanted = sorted({name for c in checks for name in c.facts if name not in PIPELINE_FACTS})
    guest_facts = [name for name in wanted if name in registry.collectors]
    for name in wanted:
        if name not in registry.collectors:
            facts.unavailable[name] = "no installed plugin collects it"
    if not guest_facts:
        return facts, errors, None
    if not bundle.disks:
        for name in guest_facts:
            facts.unavailable[name] = "the bundle holds no disk that could be inspected"
        return facts, errors, None

    guest_info = None
    with timer.stage("guest"):
        try:
            with open_guest(bundle.disks, workdir, progress) as reader:
                guest_info = reader.os
                progress.step(f"inspecting {describe_os(reader.os)}")
                for name in guest_facts:
                    try:
                        facts.values[name] = registry.collectors[name].collect(reader)
                    except Exception as exc:  # a broken collector must not look like a clean guest
                        facts.unavailable[name] = f"collector failed: {type(exc).__name__}: {exc}"
                        errors.append(f"guest collector {name!r} failed: {type(exc).__name__}: {exc}")
        except GuestNotInspectable as exc:
            for name in guest_facts:
                facts.unavailable.setdefault(name, str(exc))
        except GuestLaunchError as exc:
            errors.append(str(exc))
            for name in guest_facts:
                facts.unavailable.setdefault(name, str(exc))
    return facts, errors, guest_info
