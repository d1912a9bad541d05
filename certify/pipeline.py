"""One upload, top to bottom: ingest, descriptor facts, guest facts, checks, verdict.

``scan`` is ``judge(gather(...))``: ``gather`` does everything that reads the
upload (ingest, one appliance launch) and yields a ``Gathered``, which can be
stored (certify.gathered) and judged again later under any profile or waivers.
"""

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
from certify.gathered import INGEST_FACTS, INGEST_SWITCHES, Gathered, stale_facts
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
PIPELINE_FACTS = INGEST_FACTS  # gathered by ingest itself, not by a guest collector


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
    every_fact: bool = False  # gather the facts of every installed check, not only the profile's: to judge under any

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
    return judge(gather(path, options, registry), options, registry)


def gather(path: str, options: ScanOptions | None = None, registry: Registry | None = None) -> Gathered:
    """The expensive half of a scan: ingest, descriptor and guest facts (one appliance launch), within the time limit."""
    options = options or ScanOptions()
    registry = registry or load_registry()
    if options.profile.require_trusted_signer and options.trust_anchors is None:
        raise UsageError(f"profile {options.profile.name} requires a trusted signer: name the trust store with --trust-store PEM")
    timer = _Timer()
    try:
        workdir = tempfile.mkdtemp(prefix="certify-", dir=options.workdir_parent)
    except OSError as exc:
        raise UsageError(f"{options.workdir_parent or tempfile.gettempdir()}: cannot make a work directory: {exc.strerror}") from None
    gathered = Gathered(tool_version=__version__, artifact_path=_display(path), ingest_policy=ingest_switches(options.profile))
    try:
        with ScanGuard(options.timeout, lambda: stop_appliance(workdir), lambda: shutil.rmtree(workdir, ignore_errors=True)) as guard:
            _gather(path, options, registry, timer, workdir, gathered, guard)
    except ScanTimeout as exc:
        options.progress.step(f"error: {exc.reason}")
        gathered = Gathered(tool_version=__version__, artifact_path=gathered.artifact_path, artifact_kind=gathered.artifact_kind,
                            artifact_sha256=gathered.artifact_sha256, ingest_policy=gathered.ingest_policy, failure=exc.reason)  # fmt: skip
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # the guard removed it; this is for a guard that never started
    gathered.timings = timer.total()
    return gathered


def _gather(path: str, options: ScanOptions, registry: Registry, timer: _Timer, workdir: str, gathered: Gathered,
            guard: ScanGuard) -> None:  # fmt: skip
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
        gathered.rejection = str(exc)
        return
    gathered.artifact_kind, gathered.artifact_sha256 = bundle.kind, bundle.sha256
    guard.check()

    checks = list(registry.checks.values()) if options.every_fact else _selected_checks(options.profile, registry)
    gathered.facts, gathered.errors, gathered.guest, gathered.collector_versions = _gather_facts(
        bundle, checks, registry, workdir, timer, progress
    )
    guard.check()  # facts gathered while the appliance was being stopped are not facts
    gathered.notes = list(bundle.notes)
    gathered.disks = bundle.disk_facts
    gathered.bundle_root = bundle.source
    gathered.bundle_files = bundle.files()


def judge(gathered: Gathered, options: ScanOptions | None = None, registry: Registry | None = None) -> Report:
    """The cheap half: checks, waivers and verdict over gathered facts. Launches nothing; stale facts are not evaluated."""
    options = options or ScanOptions()
    registry = registry or load_registry()
    started = time.monotonic()
    base = {
        "tool_version": __version__,
        "artifact_path": gathered.artifact_path,
        "profile": options.profile.name,
        "profile_digest": options.profile.digest,
        "threshold": options.threshold,
        "plugins": registry.plugins,
        "baseline": options.baseline_path,
        "reevaluated": gathered.stored,
    }
    if mismatch := ingest_mismatch(gathered, options.profile):
        raise UsageError(mismatch)
    if gathered.rejection is not None:
        return Report(**base, artifact_kind=None, artifact_sha256=None, verdict=Verdict.REJECTED,
                      rejection=gathered.rejection, timings=_judged_timings(gathered, None, started))  # fmt: skip
    identity = {"artifact_kind": gathered.artifact_kind, "artifact_sha256": gathered.artifact_sha256}
    if gathered.failure is not None:
        return Report(**base, **identity, verdict=Verdict.ERROR, errors=[gathered.failure],
                      timings=_judged_timings(gathered, None, started))  # fmt: skip

    profile = options.profile
    notes = [*gathered.notes, *profile.validate_against(registry.checks)]
    checks = _selected_checks(profile, registry)
    facts = _judged_facts(gathered, checks, registry)
    options.progress.stage("checks")
    checks_started = time.monotonic()
    overrides = {c.id: s for c in checks if (s := profile.severity_for(c.id)) is not None}
    findings, status = run_checks(checks, facts, severity=overrides, params=profile.params)
    findings = [replace(f, code=profile.code_for(f.check_id)) for f in findings]
    findings, waiver_states = apply_waivers(findings, options.waivers, options.today)
    if options.baseline is not None:
        findings = mark_known(findings, options.baseline)
    checks_seconds = round(time.monotonic() - checks_started, 3)
    for state in waiver_states:
        if state["state"] != "applied":
            notes.append(f"waiver for {state['check']} (line {state['line']}) is {state['state']}")
    verdict = decide(findings, options.threshold, gathered.errors)
    return Report(
        **base,
        **identity,
        verdict=verdict,
        findings=findings,
        check_status=status,
        errors=list(gathered.errors),
        notes=notes,
        waivers=waiver_states,
        catalog={c.id: c.as_dict() for c in checks},
        bundle_root=gathered.bundle_root,
        bundle_files=list(gathered.bundle_files),
        disks=gathered.disks,
        guest=gathered.guest,
        timings=_judged_timings(gathered, checks_seconds, started),
    )


def _selected_checks(profile: Profile, registry: Registry) -> list[Check]:
    checks = [c for c in registry.checks.values() if profile.selects(c.id)]
    if not checks:
        raise UsageError(f"profile {profile.name} selects none of the installed checks; nothing would be certified")
    return checks


def ingest_switches(profile: Profile) -> dict[str, bool]:
    """The profile's switches that change what ingest accepts: facts gathered under others cannot stand for these."""
    return {name: getattr(profile, name) for name in INGEST_SWITCHES}


def ingest_mismatch(gathered: Gathered, profile: Profile) -> str | None:
    """Why facts gathered under another ingest policy cannot be judged under ``profile``, or None."""
    wanted = ingest_switches(profile)
    differ = [name for name in INGEST_SWITCHES if gathered.ingest_policy.get(name, False) != wanted[name]]
    if not differ:
        return None
    what = ", ".join(f"{name} {'on' if wanted[name] else 'off'}" for name in differ)
    return f"profile {profile.name} ingests with {what}, unlike the scan that gathered these facts: scan again"


def _judged_facts(gathered: Gathered, checks: list[Check], registry: Registry) -> Facts:
    """The gathered facts the checks may read: stale or never-gathered facts become unavailable, with why."""
    facts = Facts(values=dict(gathered.facts.values), not_applicable=dict(gathered.facts.not_applicable),
                  unavailable=dict(gathered.facts.unavailable))  # fmt: skip
    wanted = {name for c in checks for name in c.facts}
    stale = stale_facts(gathered, registry.collectors)
    for name in sorted(wanted):
        if name in stale:
            reason = stale[name]
        elif name not in PIPELINE_FACTS and name not in registry.collectors:
            reason = "no installed plugin collects it"
        else:
            continue
        facts.values.pop(name, None)
        facts.not_applicable.pop(name, None)
        facts.unavailable[name] = reason
    return facts


def _judged_timings(gathered: Gathered, checks_seconds: float | None, started: float) -> dict[str, Any]:
    judging = round(time.monotonic() - started, 3)
    if gathered.stored:  # the gathering happened elsewhere, earlier: its stages are shown apart
        timings: dict[str, Any] = {"reevaluated": True, "gathered": dict(gathered.timings)}
        if checks_seconds is not None:
            timings["checks"] = checks_seconds
        return {**timings, "total": judging}
    timings = {k: v for k, v in gathered.timings.items() if k != "total"}
    if checks_seconds is not None:
        timings["checks"] = checks_seconds
    return {**timings, "total": round(gathered.timings.get("total", 0) + judging, 3)}


def _gather_facts(
    bundle: Bundle, checks: list[Check], registry: Registry, workdir: str, timer: _Timer, progress: Progress
) -> tuple[Facts, list[str], dict | None, dict[str, str]]:
    facts = Facts(values={"bundle": bundle.facts()})
    errors: list[str] = []
    if bundle.descriptor is not None:
        facts.values["descriptor"] = bundle.descriptor
    else:
        facts.not_applicable["descriptor"] = "the upload is a bare disk image, with no descriptor"

    wanted = sorted({name for c in checks for name in c.facts if name not in PIPELINE_FACTS})
    guest_facts = [name for name in wanted if name in registry.collectors]
    versions = {name: registry.collectors[name].version for name in guest_facts}
    for name in wanted:
        if name not in registry.collectors:
            facts.unavailable[name] = "no installed plugin collects it"
    if not guest_facts:
        return facts, errors, None, versions
    if bundle.disk_issues:  # a guest seen without one of its disks could pass by what is missing
        reason = "not every disk could be opened safely: " + "; ".join(i.evidence for i in bundle.disk_issues)
        for name in guest_facts:
            facts.unavailable[name] = reason
        return facts, errors, None, versions
    if not bundle.disks:
        for name in guest_facts:
            facts.unavailable[name] = "the bundle holds no disk that could be inspected"
        return facts, errors, None, versions

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
                timer.timings["methods"] = _guest_methods(reader)
        except GuestNotInspectable as exc:
            for name in guest_facts:
                facts.unavailable.setdefault(name, str(exc))
        except GuestLaunchError as exc:
            errors.append(str(exc))
            for name in guest_facts:
                facts.unavailable.setdefault(name, str(exc))
    if collector_seconds:
        timer.timings["collectors"] = collector_seconds
    return facts, errors, guest_info, versions


def _guest_methods(reader: Any) -> dict[str, str]:
    """How the guest was inspected and listed, and why a cheaper way was not taken: the report's timings keep it."""
    methods = {"inspection": reader.inspection_method or "inspect_os"}
    if reader.inspection_fallback:
        methods["inspection_fallback"] = reader.inspection_fallback
    if reader.inventory_method:
        methods["inventory"] = reader.inventory_method
    if reader.inventory_fallback:
        methods["inventory_fallback"] = reader.inventory_fallback
    return methods


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
