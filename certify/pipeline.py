"""One upload, top to bottom: ingest, descriptor facts, guest facts, checks, verdict."""

from __future__ import annotations

import datetime
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from certify import __version__
from certify.bundle.ingest import Bundle, IngestPolicy, Limits, ingest
from certify.errors import InputRejected, UsageError
from certify.guest.reader import GuestLaunchError, GuestNotInspectable, open_guest, stop_appliance
from certify.model import Check, FactNotApplicable, Facts, FactUnavailable, GuestCollector, Report, Severity, Verdict, Waiver, describe_os
from certify.plugins.manager import Registry, load_registry
from certify.policy.baseline import mark_known
from certify.policy.profile import Profile, load_profile
from certify.policy.verdict import decide
from certify.policy.waivers import apply_waivers
from certify.progress import SILENT, Progress
from certify.runner import run_checks
from certify.scanguard import DEFAULT_TIMEOUT, ScanGuard, ScanTimeout

DEFAULT_PROFILE = "default"
PIPELINE_FACTS = ("descriptor", "bundle")


@dataclass
class ScanOptions:
    profile: Profile = field(default_factory=lambda: load_profile(DEFAULT_PROFILE))
    fail_on: Severity | None = None  # overrides the profile's threshold
    waivers: list[Waiver] = field(default_factory=list)
    baseline: set[str] | None = None  # fingerprints from a previous report
    baseline_path: str | None = None
    today: datetime.date = field(default_factory=datetime.date.today)
    workdir_parent: str | None = None  # where the private work directory is made
    limits: Limits = field(default_factory=Limits)
    trust_anchors: tuple | None = None  # certificates of --trust-store; None: no trust store
    progress: Progress = SILENT
    timeout: float | None = DEFAULT_TIMEOUT  # seconds the whole scan may take; None: no limit

    @property
    def threshold(self) -> Severity:
        return self.fail_on if self.fail_on is not None else self.profile.fail_on


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, Any] = {}  # seconds per stage; "collectors" maps each guest collector to its seconds
        self._start = time.monotonic()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.timings[name] = round(time.monotonic() - start, 3)

    def total(self) -> dict[str, Any]:
        return {**self.timings, "total": round(time.monotonic() - self._start, 3)}


def scan(path: str, options: ScanOptions | None = None, registry: Registry | None = None) -> Report:
    options = options or ScanOptions()
    registry = registry or load_registry()
    if options.profile.require_trusted_signer and options.trust_anchors is None:
        raise UsageError(f"profile {options.profile.name} requires a trusted signer: name the trust store with --trust-store PEM")
    timer = _Timer()
    try:
        workdir = tempfile.mkdtemp(prefix="certify-", dir=options.workdir_parent)
    except OSError as exc:
        raise UsageError(f"{options.workdir_parent or tempfile.gettempdir()}: cannot make a work directory: {exc.strerror}") from None
    base = {
        "tool_version": __version__,
        "artifact_path": _display(path),
        "profile": options.profile.name,
        "profile_digest": options.profile.digest,
        "threshold": options.threshold,
        "plugins": registry.plugins,
        "baseline": options.baseline_path,
    }
    identity: dict[str, Any] = {"artifact_kind": None, "artifact_sha256": None}  # known once ingest is done
    try:
        with ScanGuard(options.timeout, lambda: stop_appliance(workdir), lambda: shutil.rmtree(workdir, ignore_errors=True)) as guard:
            return _scan(path, options, registry, timer, workdir, base, identity, guard)
    except ScanTimeout as exc:
        options.progress.step(f"error: {exc.reason}")
        return Report(**base, **identity, verdict=Verdict.ERROR, errors=[exc.reason], timings=timer.total())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # the guard removed it; this is for a guard that never started


def _scan(path: str, options: ScanOptions, registry: Registry, timer: _Timer, workdir: str, base: dict[str, Any],
          identity: dict[str, Any], guard: ScanGuard) -> Report:  # fmt: skip
    progress = options.progress
    progress.stage("ingest")
    progress.step(f"reading {path}")
    try:
        with timer.stage("ingest"):
            profile = options.profile
            policy = IngestPolicy(strict_ova_order=profile.strict_ova_order, reject_sha1_manifest=profile.reject_sha1_manifest,
                                  anchors=options.trust_anchors, require_trusted_signer=profile.require_trusted_signer)  # fmt: skip
            bundle = ingest(path, workdir, options.limits, policy)
    except InputRejected as exc:
        progress.step(f"rejected: {exc}")
        return Report(**base, artifact_kind=None, artifact_sha256=None, verdict=Verdict.REJECTED,
                      rejection=str(exc), timings=timer.total())  # fmt: skip
    identity.update(artifact_kind=bundle.kind, artifact_sha256=bundle.sha256)
    guard.check()

    profile = options.profile
    notes = [*bundle.notes, *profile.validate_against(registry.checks)]
    checks = [c for c in registry.checks.values() if profile.selects(c.id)]
    if not checks:
        raise UsageError(f"profile {profile.name} selects none of the installed checks; nothing would be certified")
    facts, errors, guest_info = _gather_facts(bundle, checks, registry, workdir, timer, progress)
    guard.check()  # facts gathered while the appliance was being stopped are not facts
    progress.stage("checks")
    with timer.stage("checks"):
        overrides = {c.id: s for c in checks if (s := profile.severity_for(c.id)) is not None}
        findings, status = run_checks(checks, facts, severity=overrides, params=profile.params)
        findings = [replace(f, code=profile.code_for(f.check_id)) for f in findings]
        findings, waiver_states = apply_waivers(findings, options.waivers, options.today)
        if options.baseline is not None:
            findings = mark_known(findings, options.baseline)
    for state in waiver_states:
        if state["state"] != "applied":
            notes.append(f"waiver for {state['check']} (line {state['line']}) is {state['state']}")
    verdict = decide(findings, options.threshold, errors)
    return Report(
        **base,
        **identity,
        verdict=verdict,
        findings=findings,
        check_status=status,
        errors=errors,
        notes=notes,
        waivers=waiver_states,
        catalog={c.id: c.as_dict() for c in checks},
        bundle_root=bundle.source,
        bundle_files=bundle.files(),
        disks=bundle.disk_facts,
        guest=guest_info,
        timings=timer.total(),
    )


def _gather_facts(
    bundle: Bundle, checks: list[Check], registry: Registry, workdir: str, timer: _Timer, progress: Progress
) -> tuple[Facts, list[str], dict | None]:
    facts = Facts(values={"bundle": bundle.facts()})
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
    if bundle.disk_issues:  # a guest seen without one of its disks could pass by what is missing
        reason = "not every disk could be opened safely: " + "; ".join(i.evidence for i in bundle.disk_issues)
        for name in guest_facts:
            facts.unavailable[name] = reason
        return facts, errors, None
    if not bundle.disks:
        for name in guest_facts:
            facts.unavailable[name] = "the bundle holds no disk that could be inspected"
        return facts, errors, None

    guest_info = None
    collector_seconds: dict[str, float] = {}
    progress.stage("guest launch")
    with timer.stage("guest"):
        opening = time.monotonic()
        try:
            with open_guest(bundle.disks, workdir, progress) as reader:
                # launch + inspect + mount: the floor a scan is measured against (benchmarks/guest_bench.py)
                timer.timings["guest_open"] = round(time.monotonic() - opening, 3)
                guest_info = reader.os
                progress.stage("collectors")
                progress.step(f"inspecting {describe_os(reader.os)}")
                for name in guest_facts:
                    started = time.monotonic()
                    try:
                        collect_fact(facts, name, registry.collectors[name], reader)
                    except Exception as exc:  # a broken collector must not look like a clean guest
                        facts.unavailable[name] = f"collector failed: {type(exc).__name__}: {exc}"
                        errors.append(f"guest collector {name!r} failed: {type(exc).__name__}: {exc}")
                    finally:
                        collector_seconds[name] = round(time.monotonic() - started, 3)
                if reader.walk_seconds is not None:  # paid by whichever collector asked first; shown on its own
                    timer.timings["inventory_walk"] = round(reader.walk_seconds, 3)
        except GuestNotInspectable as exc:
            for name in guest_facts:
                facts.unavailable.setdefault(name, str(exc))
        except GuestLaunchError as exc:
            errors.append(str(exc))
            for name in guest_facts:
                facts.unavailable.setdefault(name, str(exc))
    if collector_seconds:
        timer.timings["collectors"] = collector_seconds
    return facts, errors, guest_info


def collect_fact(facts: Facts, name: str, collector: GuestCollector, reader: Any) -> None:
    """One guest fact into ``facts``: its value, or why it does not apply or could not be gathered."""
    try:
        facts.values[name] = collector.gather(reader)
    except FactNotApplicable as exc:
        facts.not_applicable[name] = str(exc)
    except FactUnavailable as exc:
        facts.unavailable[name] = str(exc)


def _display(path: str) -> str:
    """A path as text that any report can carry (undecodable bytes shown as U+FFFD)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
