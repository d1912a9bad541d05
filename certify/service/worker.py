"""A service worker: claim a queued scan, run it, store what it found; repeat until told to stop.

One job, start to end:

- an idle worker waits on the doorbell (``certify.service.doorbell``: the API
  rings it when it queues a scan) or, at most, one poll interval, with its next
  scan child already forked (``certify.scanchild.WarmChild``);
- the store's reaper first re-queues (or ends) scans whose worker stopped
  renewing its lease, then this worker claims the most urgent queued scan;
- if facts of the artifact are stored that the job's profile can be judged
  from (same ingest policy, none of the facts its checks read stale against
  the installed collectors and ingest), the job is judged here and now from
  them: no launch, ``reevaluated`` true;
- otherwise the upload is scanned in a child process (``certify.scanchild``)
  under the job's profile and waivers, gathering every installed check's
  facts, with the service's wall-clock limit; its stages go to the job row as
  they happen; a heartbeat thread renews the lease every lease/3 and cancels
  the child when the store says the job's cancel was asked for, or that the
  lease was lost (the result is then thrown away: another worker has the job);
- a finished scan's facts are stored, then the JSON report, every reporter's
  rendering of it and (signing key configured, verdict pass) a certificate go
  in with ``complete``, in one transaction.

Every rendering comes from one ``Report``: the saved facts judged in this
process under the job's options, exactly as the child judged them (``judge``
is a pure function of facts, profile, waivers and the date), so the JSON
rendering is the stored report and the other formats say the same.

On SIGTERM (``certify serve`` stopping) the worker claims nothing more, stops
the scan it runs and gives it back to the queue at the same attempt (see
``Store.release``): a scan may take half an hour, a stopping service should not,
and a worker asked to stop is not a lost one, so no attempt is used up. A
worker killed outright takes its scan child with it (the child's PDEATHSIG);
its lease expires and the reaper re-queues the scan as the next attempt.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from certify.errors import CertifyError, UsageError
from certify.factsjson import FactsFormatError, FactTypes
from certify.gathered import INGEST_FACTS, INGEST_FACTS_VERSION, Gathered, stale_facts
from certify.model import Report, Verdict
from certify.pipeline import ScanOptions, ingest_mismatch, judge
from certify.plugins.manager import Registry, load_registry
from certify.policy.certificate import build_record, load_private_key
from certify.policy.profile import Profile, load_profile
from certify.policy.waivers import parse_waivers
from certify.scanchild import CANCELLED, TIMEOUT, ChildOutcome, WarmChild, run_scan
from certify.service.blobs import BlobStore
from certify.service.db import sqlite_url
from certify.service.doorbell import Doorbell
from certify.service.fakescan import parse_engine
from certify.service.settings import ServiceSettings
from certify.service.store import Claim, LeaseLost, ScanRow, Store

IDLE_POLL = 0.5  # seconds between looks at an empty queue, unless the doorbell rings first
SCAN_ENTRY = "certify.cli"
FAKE_ENTRY = "certify.service.fakescan"
CANCEL_POLL = 1.0  # seconds between looks for a cancel request, between two renewals of a longer lease
# The reaper's back-off for a re-queued scan (x 2 per attempt lost): a scan that kills its worker cannot spin.
REAP_BACKOFF = 1.0
CERTIFICATE = "certificate"
# Keys of a facts row besides the collectors': facts gathered by another ingest, or under another ingest policy,
# are other facts, and must be kept beside these rather than be taken for them.
INGEST_KEY = "certify.ingest"
INGEST_POLICY_KEY = "certify.ingest_policy"
WORK_DIR = "work"  # under the data directory: on the blobs' file system, so an upload is hard-linked, not copied


def log(worker_id: str, message: str) -> None:
    print(f"certify worker {worker_id}: {message}", file=sys.stderr, flush=True)


def run_worker(settings: ServiceSettings, worker_id: str, stop: threading.Event | None = None) -> None:
    """Claim and run scans until ``stop`` is set."""
    stop = stop or threading.Event()
    fake_seconds = parse_engine(settings.scan_engine)
    store = Store.open(settings.db_url or sqlite_url(settings.data_dir))
    doorbell = Doorbell(settings.data_dir)
    worker = None
    try:
        worker = Worker(settings, worker_id, store, BlobStore(settings.data_dir), load_registry(), fake_seconds)
        reaped_at = -float("inf")
        while not stop.is_set():
            # Reaping is a write: N idle workers doing it on every look at the queue would contend for nothing.
            if time.monotonic() - reaped_at >= min(settings.lease_seconds / 2, 5.0):
                for reaped in store.reap_expired(backoff_seconds=REAP_BACKOFF):
                    log(worker_id, f"scan {reaped.scan_id}: its worker was lost: {reaped.action} (attempt {reaped.attempt})")
                    remove_leftovers(settings, reaped.scan_id)
                reaped_at = time.monotonic()
            worker.warm_up()
            claim = store.claim_next(worker_id, settings.lease_seconds)
            if claim is None:
                doorbell.wait(IDLE_POLL)
                continue
            worker.run(claim, stop)
    finally:
        if worker is not None:
            worker.close()
        doorbell.close()
        store.close()


class Lease:
    """The heartbeat of one claim: renews it every lease/3 and turns a cancel request or a lost lease into ``cancel``."""

    def __init__(self, store: Store, claim: Claim, lease_seconds: float, stop: threading.Event) -> None:
        self.store, self.claim, self.lease_seconds, self.stop = store, claim, lease_seconds, stop
        self.cancel = threading.Event()  # the child must end: cancel requested, lease lost or the worker stopping
        self.cancel_requested = False
        self.lost = False
        self.stopping = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"lease-{claim.scan.id}")
        self._relay: threading.Thread | None = None

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        if self._relay is not None:
            self._relay.join()  # the next scan's child is forked only while this process runs one thread

    def _beat(self) -> None:
        interval = max(self.lease_seconds / 3, 0.05)
        renewed = time.monotonic()
        # A cancel is looked for every CANCEL_POLL whatever the lease: its child must be gone within 5 s.
        while not self._done.wait(min(interval, CANCEL_POLL)):
            try:
                if time.monotonic() - renewed >= interval:
                    asked = self.store.heartbeat(self.claim.scan.id, self.claim.worker, self.claim.attempt,
                                                 self.lease_seconds)
                    renewed = time.monotonic()
                else:
                    row = self.store.get_scan(self.claim.scan.tenant, self.claim.scan.id)
                    asked = row is not None and row.cancel_requested
                if asked:
                    self.cancel_requested = True
                    self.cancel.set()
            except LeaseLost:
                self.lost = True
                self.cancel.set()
                return
            except Exception:  # the database briefly away: the lease has slack for two more tries
                continue

    def watch_stop(self) -> None:
        """Have ``stop`` (the worker asked to end) reach ``cancel`` promptly, whatever the heartbeat interval."""
        def relay() -> None:
            while not self._done.is_set():
                if self.stop.wait(0.1):
                    self.stopping = True
                    self.cancel.set()
                    return
        self._relay = threading.Thread(target=relay, daemon=True, name=f"stop-{self.claim.scan.id}")
        self._relay.start()


@dataclasses.dataclass
class JobOptions:
    profile: Profile
    options: ScanOptions


class Worker:
    def __init__(self, settings: ServiceSettings, worker_id: str, store: Store, blobs: BlobStore, registry: Registry,
                 fake_seconds: float | None) -> None:
        self.settings, self.id, self.store, self.blobs, self.registry = settings, worker_id, store, blobs, registry
        self.fake_seconds = fake_seconds
        self.types = FactTypes.for_collectors(registry.collectors.values())
        self.key = load_private_key(settings.signing_key) if settings.signing_key else None
        self.entry = FAKE_ENTRY if fake_seconds is not None else SCAN_ENTRY
        self.warm: WarmChild | None = None
        self.warm_failed = False  # once: a process that cannot fork ahead starts its scans cold from then on

    def warm_up(self) -> None:
        """Fork the next scan's child now, while idle, if this process runs one thread (else it starts cold)."""
        if self.warm is None and not self.warm_failed and threading.active_count() == 1 \
                and threading.current_thread() is threading.main_thread():
            try:
                self.warm = WarmChild(self.entry)
            except Exception as exc:  # noqa: BLE001 - a cold start is always possible
                self.warm_failed = True
                log(self.id, f"no scan child forked ahead ({type(exc).__name__}: {exc}); the scan starts a new interpreter")

    def close(self) -> None:
        if self.warm is not None:
            self.warm.discard()
            self.warm = None

    # -- one job -------------------------------------------------------------------------------

    def run(self, claim: Claim, stop: threading.Event) -> None:
        scan = claim.scan
        log(self.id, f"scan {scan.id} (attempt {claim.attempt}): {scan.filename} under {scan.profile_name}")
        # The lease is renewed from claim to completion: judging and rendering a large report take time too.
        with Lease(self.store, claim, self.settings.lease_seconds, stop) as lease:
            try:
                self._run(claim, lease)
            except Exception as exc:  # a bug, or the blob directory damaged: this job fails, the worker goes on
                self._fail(claim, "error", f"internal error: {type(exc).__name__}: {exc}")

    def _run(self, claim: Claim, lease: Lease) -> None:
        scan = claim.scan
        try:
            options = self._options(scan)
        except CertifyError as exc:
            self._fail(claim, "error", str(exc))
            return
        stored = self._stored_gathered(scan, options.profile)
        if stored is not None:
            self._stage(claim, "checks")
            self._finish(claim, stored, options.options, reevaluated=True)
            return
        if not self.blobs.exists(scan.artifact_sha256):
            self._fail(claim, "error", f"the upload sha256:{scan.artifact_sha256} is missing from the blob directory "
                                       f"{self.blobs.root}: upload it again")
            return
        lease.watch_stop()
        outcome, gathered = self._scan_in_child(claim, lease)
        if lease.lost:
            log(self.id, f"scan {scan.id}: the lease was lost; the result is discarded")
            return
        if outcome.failure == CANCELLED and lease.stopping and not lease.cancel_requested:
            released = self.store.release(scan.id, self.id, claim.attempt)
            log(self.id, f"scan {scan.id}: stopped with the worker; {'back in the queue' if released else 'no longer held'}")
            return
        if outcome.failure == TIMEOUT:
            self._fail(claim, "timeout", outcome.reason or "timeout")
        elif outcome.failure == CANCELLED:
            self._fail(claim, "cancelled", "cancelled")
        elif outcome.failure is not None:
            self._fail(claim, "error", f"{outcome.reason}\n{outcome.stderr_tail}".strip())
        elif gathered is None:
            verdict = (outcome.report or {}).get("verdict")
            self._fail(claim, "error", f"the scan ended (verdict {verdict}) without its facts\n{outcome.stderr_tail}".strip())
        else:
            self._keep_facts(scan.artifact_sha256, gathered)
            child_verdict = (outcome.report or {}).get("verdict")
            self._finish(claim, dataclasses.replace(gathered, stored=False), options.options, reevaluated=False,
                         expected_verdict=child_verdict)

    def _options(self, scan: ScanRow) -> JobOptions:
        profile = load_profile(scan.profile_name)
        waivers = parse_waivers(scan.waivers, f"the waivers of scan {scan.id}") if scan.waivers else []
        return JobOptions(profile, ScanOptions(profile=profile, waivers=waivers))

    def _stage(self, claim: Claim, stage: str) -> None:
        try:
            self.store.set_stage(claim.scan.id, self.id, claim.attempt, stage)
        except LeaseLost:
            pass  # the heartbeat finds out too, and stops the child

    def _fail(self, claim: Claim, reason: str, message: str) -> None:
        try:
            self.store.fail(claim.scan.id, self.id, claim.attempt, reason, message)
            log(self.id, f"scan {claim.scan.id}: {reason}: {message.splitlines()[0] if message else ''}")
        except LeaseLost:
            log(self.id, f"scan {claim.scan.id}: the lease was lost before its failure ({reason}) could be recorded")

    # -- index once: stored facts --------------------------------------------------------------

    def _stored_gathered(self, scan: ScanRow, profile: Profile) -> Gathered | None:
        return stored_gathered(self.store, self.registry, self.types, scan, profile)

    def _keep_facts(self, sha256: str, gathered: Gathered) -> None:
        if gathered.failure is not None:
            return  # an unfinished gathering is not facts of the artifact
        self.store.put_facts(sha256, facts_key(gathered), gathered.to_json(self.types))

    # -- a scan in a child process -------------------------------------------------------------

    def _scan_in_child(self, claim: Claim, lease: Lease) -> tuple[ChildOutcome, Gathered | None]:
        scan = claim.scan
        work = Path(self.settings.data_dir) / WORK_DIR
        work.mkdir(mode=0o700, parents=True, exist_ok=True)
        remove_leftovers(self.settings, scan.id)  # of an earlier attempt whose worker was killed outright
        private = tempfile.mkdtemp(prefix=f"scan-{scan.id}-", dir=work)
        runtime = runtime_dir(scan.id)
        os.mkdir(runtime, 0o700)
        env = {**os.environ, "XDG_RUNTIME_DIR": runtime}
        try:
            upload = os.path.join(private, upload_name(scan.filename))
            materialize(self.blobs.path_for(scan.artifact_sha256), upload)
            facts_file = os.path.join(private, "facts.json")
            args = ["--profile", scan.profile_name, "--every-fact", "--save-facts", facts_file]
            if scan.waivers:
                waivers_file = os.path.join(private, "waivers.yaml")
                with open(os.open(waivers_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
                    f.write(scan.waivers)
                args += ["--waivers", waivers_file]
            if self.fake_seconds is not None:
                args += ["--fake-seconds", str(self.fake_seconds)]
            self._stage(claim, "starting")
            warm, self.warm = self.warm, None  # used up by this scan, whatever its end
            outcome = run_scan(upload, args, limit=self.settings.scan_timeout, cancel=lease.cancel,
                               on_stage=lambda stage: self._stage(claim, stage), workdir_parent=private,
                               entry=self.entry, env=env, warm=warm)
            gathered = None
            if outcome.failure is None and os.path.exists(facts_file):
                with open(facts_file, "rb") as f:
                    gathered = Gathered.from_json(json.loads(f.read()), self.types)
                gathered = dataclasses.replace(gathered, artifact_path=scan.filename)
            return outcome, gathered
        finally:
            shutil.rmtree(private, ignore_errors=True)
            shutil.rmtree(runtime, ignore_errors=True)

    # -- judge many: the report, its renderings, the certificate -------------------------------

    def _finish(self, claim: Claim, gathered: Gathered, options: ScanOptions, reevaluated: bool,
                expected_verdict: str | None = None) -> None:
        scan = claim.scan
        try:
            report = judge(gathered, options, self.registry)
        except CertifyError as exc:
            self._fail(claim, "error", str(exc))
            return
        if expected_verdict is not None and report.verdict.value != expected_verdict:
            # judge is a pure function of the facts: a difference is a bug, and no verdict is safer than either
            self._fail(claim, "error", f"the scan's verdict {expected_verdict} differs from its facts' {report.verdict.value}")
            return
        bodies = renderings(report, self.registry, options.profile, self.key)
        try:
            self.store.complete(scan.id, self.id, claim.attempt, bodies["json"], report.verdict.value,
                                reevaluated=reevaluated, renderings=bodies)
            log(self.id, f"scan {scan.id}: {report.verdict.value}{' (re-evaluated from stored facts)' if reevaluated else ''}")
        except LeaseLost as exc:
            log(self.id, f"scan {scan.id}: {exc}")


def stored_gathered(store: Store, registry: Registry, types: FactTypes, scan: ScanRow, profile: Profile) -> Gathered | None:
    """The newest stored facts of the scan's artifact that ``profile`` can be judged from, or None."""
    wanted = {name for c in registry.checks.values() if profile.selects(c.id) for name in c.facts}
    for row in store.facts_for(scan.artifact_sha256):
        try:
            gathered = Gathered.from_json(row.document, types)
        except FactsFormatError:
            continue  # written by another certify: not facts this one can read
        if usable_for(gathered, profile, wanted, registry):
            return dataclasses.replace(gathered, artifact_path=scan.filename)
    return None


def usable_for(gathered: Gathered, profile: Profile, wanted: set[str], registry: Registry) -> bool:
    """Whether stored facts can stand for a fresh scan's under ``profile`` (whose checks read ``wanted``)."""
    if gathered.failure is not None or ingest_mismatch(gathered, profile) is not None:
        return False
    if gathered.ingest_version != INGEST_FACTS_VERSION:
        return False
    if gathered.rejection is not None:
        return True  # ingest refused the upload under this very policy: nothing else would be gathered
    stale = stale_facts(gathered, registry.collectors)
    return not (wanted - set(INGEST_FACTS)) & set(stale)


def facts_key(gathered: Gathered) -> dict[str, str]:
    """What the stored facts depend on: each collector's version, ingest's version and the ingest policy."""
    policy = ",".join(f"{name}={int(on)}" for name, on in sorted(gathered.ingest_policy.items()))
    return {**gathered.collector_versions, INGEST_KEY: gathered.ingest_version, INGEST_POLICY_KEY: policy}


def renderings(report: Report, registry: Registry, profile: Profile, key: Any | None) -> dict[str, str]:
    """Every reporter's rendering of ``report`` and, with a signing key and a pass, its certificate."""
    bodies = {name: reporter.render(report, color=False, display_min=profile.display_min)
              for name, reporter in registry.reporters.items()}
    if key is not None and report.verdict is Verdict.PASS:
        bodies[CERTIFICATE] = json.dumps(build_record(report, key), indent=2, sort_keys=True) + "\n"
    return bodies


def runtime_dir(scan_id: str) -> str:
    """Where one scan's child makes its runtime directory (libguestfs sockets), named for the scan.

    The scan child removes its own, unless its worker was killed outright: then whoever
    next claims or reaps the scan finds this by name and removes it. Short, as a socket path must be.
    """
    return os.path.join(tempfile.gettempdir(), f"certify-job-{hashlib.sha256(scan_id.encode()).hexdigest()[:16]}")


def remove_leftovers(settings: ServiceSettings, scan_id: str) -> None:
    """What a worker killed during the scan left behind: its work directory and its child's runtime directory."""
    shutil.rmtree(runtime_dir(scan_id), ignore_errors=True)
    work = Path(settings.data_dir) / WORK_DIR
    if work.is_dir():
        for leftover in work.glob(f"scan-{glob.escape(scan_id)}-*"):
            shutil.rmtree(leftover, ignore_errors=True)


def upload_name(filename: str) -> str:
    """The submitted file name, safe as one path component: ingest tells an upload's kind by its extension."""
    name = os.path.basename(filename.replace("\\", "/")).lstrip(".").replace("\x00", "")
    return name[:200] or "upload"


def materialize(blob: Path, target: str) -> None:
    """The blob under the upload's name: a hard link (no copy, and ingest refuses symbolic links), else a copy."""
    try:
        os.link(blob, target)
    except OSError:
        shutil.copyfile(blob, target)


# -- the process -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m certify.service.worker",
                                     description="One worker of the certification service (certify serve starts these).")
    parser.add_argument("--data", required=True, metavar="DIR", help="the service's data directory")
    parser.add_argument("--db", metavar="URL", help="the database URL (default: SQLite in DIR)")
    parser.add_argument("--id", required=True, metavar="ID", help="this worker's name in the leases it takes")
    parser.add_argument("--scan-timeout", type=float, metavar="SECONDS", help="wall-clock limit of one scan")
    parser.add_argument("--lease-seconds", "--lease", dest="lease", type=float, metavar="SECONDS",
                        help="lease length (renewed every third of it)")
    parser.add_argument("--max-attempts", type=int, metavar="N",
                        help="the service's attempts per scan (each scan row carries its own; recorded for the reaper)")
    parser.add_argument("--engine", metavar="ENGINE", help="'child' (default) or 'fake:SECONDS', a testing aid")
    parser.add_argument("--signing-key", metavar="PRIVATE_KEY", help="Ed25519 key: certificates for passing scans")
    return parser


def settings_from(args: argparse.Namespace) -> ServiceSettings:
    given = {"scan_timeout": args.scan_timeout, "lease_seconds": args.lease, "max_attempts": args.max_attempts,
             "scan_engine": args.engine, "signing_key": args.signing_key}
    settings = ServiceSettings(data_dir=Path(args.data), db_url=args.db,
                               **{name: value for name, value in given.items() if value is not None})
    if settings.scan_timeout <= 0 or settings.lease_seconds <= 0:
        raise UsageError("--scan-timeout and --lease: more than 0 seconds")
    try:
        parse_engine(settings.scan_engine)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return settings


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        run_worker(settings_from(args), args.id, stop)
    except CertifyError as exc:
        print(f"certify worker {args.id}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
