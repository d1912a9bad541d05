"""``certify reevaluate``: judge stored scans again, from their stored facts, under the installed ruleset.

When a check, a profile or a plugin changes, the ruleset digest changes and
verdicts given under the old one may no longer hold. Each succeeded scan
judged under another ruleset is judged again from its artifact's stored facts
(no launch) under its profile as installed now, with its waivers.

A re-judgement is recorded as a new succeeded scan, ``reevaluated`` and
linked to the one it re-judged (``reevaluation_of``), never by rewriting the
old one: a report, and any certificate signed for it, is a record of what was
decided under which ruleset and must stay as issued; the natural key already
includes the ruleset digest, so a verdict under a new ruleset is a new scan of
that key; and the artifact lookup (``latest_verdicts``) then answers with the
newest verdict per profile with no change, while the chain of links is the
history. Running it again changes nothing (the new key has its scan).

Scans whose facts cannot stand for the new ruleset (a collector changed, no
facts kept) are listed as needing a new scan, not judged.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass

from certify import __version__
from certify.catalog import installed_ruleset_digest
from certify.errors import CertifyError
from certify.factsjson import FactTypes
from certify.pipeline import ScanOptions, judge
from certify.plugins.manager import Registry, load_registry
from certify.policy.certificate import load_private_key
from certify.policy.profile import load_profile
from certify.policy.waivers import parse_waivers
from certify.service.store import ScanRow, Store
from certify.service.worker import renderings, stored_gathered


@dataclass(frozen=True)
class Outcome:
    old: ScanRow
    new: ScanRow | None  # None: not re-judged (see ``why``)
    why: str = ""

    @property
    def changed(self) -> bool:
        return self.new is not None and self.new.verdict != self.old.verdict


def reevaluate(store: Store, since: datetime.datetime | None = None, registry: Registry | None = None,
               signing_key: str | None = None) -> list[Outcome]:
    registry = registry or load_registry()
    ruleset = installed_ruleset_digest(registry)
    types = FactTypes.for_collectors(registry.collectors.values())
    key = load_private_key(signing_key) if signing_key else None
    outcomes = []
    for old in store.reevaluation_candidates(ruleset, since):
        try:
            profile = load_profile(old.profile_name)
            waivers = parse_waivers(old.waivers, f"the waivers of scan {old.id}") if old.waivers else []
        except CertifyError as exc:
            outcomes.append(Outcome(old, None, f"cannot be judged again: {exc}"))
            continue
        gathered = stored_gathered(store, registry, types, old, profile)
        if gathered is None:
            outcomes.append(Outcome(old, None, "needs a new scan: no stored facts stand for the installed collectors"))
            continue
        options = ScanOptions(profile=profile, waivers=waivers)
        try:
            report = judge(gathered, options, registry)
        except CertifyError as exc:
            outcomes.append(Outcome(old, None, f"cannot be judged again: {exc}"))
            continue
        bodies = renderings(report, registry, profile, key)
        new = store.record_reevaluation(old, profile.digest, ruleset, __version__, bodies["json"],
                                        report.verdict.value, bodies)
        outcomes.append(Outcome(old, new, "" if new is not None else "already judged under the installed ruleset"))
    return outcomes


def describe(outcome: Outcome) -> str:
    old = outcome.old
    what = f"{old.id} ({old.tenant}, {old.filename}, sha256:{old.artifact_sha256[:12]}, {old.profile_name})"
    if outcome.new is None:
        return f"{what}: {outcome.why}"
    if outcome.changed:
        return f"{what}: {old.verdict} -> {outcome.new.verdict} (now {outcome.new.id})"
    return f"{what}: {old.verdict}, unchanged (now {outcome.new.id})"


def as_json(outcome: Outcome) -> dict:
    return {"scan": outcome.old.id, "tenant": outcome.old.tenant, "artifact": f"sha256:{outcome.old.artifact_sha256}",
            "profile": outcome.old.profile_name, "old_verdict": outcome.old.verdict,
            "new_scan": outcome.new.id if outcome.new else None,
            "new_verdict": outcome.new.verdict if outcome.new else None,
            "changed": outcome.changed, "note": outcome.why or None}


def report_lines(outcomes: list[Outcome], fmt: str) -> list[str]:
    if fmt == "json":
        return [json.dumps(as_json(o), sort_keys=True) for o in outcomes]
    changed = [o for o in outcomes if o.changed]
    lines = [describe(o) for o in changed] + [describe(o) for o in outcomes if o.new is None and o.why]
    judged = sum(1 for o in outcomes if o.new is not None)
    lines.append(f"{judged} scan(s) judged again under the installed ruleset, {len(changed)} verdict(s) changed, "
                 f"{sum(1 for o in outcomes if o.new is None)} not judged")
    return lines
