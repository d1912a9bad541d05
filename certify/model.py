"""Plain data passed between the pipeline's stages."""

from __future__ import annotations

import datetime
import enum
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.IntEnum):
    """Ordered, so a threshold is a comparison."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r} (expected one of: {names})") from None


class Status(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NOT_APPLICABLE = "not-applicable"  # nothing of this kind in the upload (no VMX for a VMX check)
    NOT_EVALUATED = "not-evaluated"  # should apply, but the facts could not be gathered
    ERROR = "error"  # the check itself crashed


class Layer(enum.StrEnum):
    BUNDLE = "bundle"
    DESCRIPTOR = "descriptor"
    DISK = "disk"
    GUEST = "guest"


class Verdict(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    REJECTED = "rejected"
    ERROR = "error"

    @property
    def exit_code(self) -> int:
        return {"pass": 0, "fail": 1, "rejected": 2, "error": 3}[self.value]


@dataclass(frozen=True, kw_only=True)
class Location:
    layer: Layer
    file: str | None = None  # the bundle file: descriptor, disk image
    path: str | None = None  # a path inside it (guest path, referenced path)
    key: str | None = None  # a descriptor key
    line: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"layer": self.layer.value, "file": self.file}
        for name in ("path", "key", "line"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclass(frozen=True, kw_only=True)
class Result:
    """What a check yields: only what it knows. The runner adds the check's metadata."""

    status: Status
    location: Location | None = None
    evidence: str = ""
    severity: Severity | None = None  # overrides the check's own severity for this result


def fail(location: Location, evidence: str, *, severity: Severity | None = None) -> Result:
    return Result(status=Status.FAIL, location=location, evidence=evidence, severity=severity)


def not_applicable(reason: str) -> Result:
    return Result(status=Status.NOT_APPLICABLE, evidence=reason)


def not_evaluated(reason: str, layer: Layer) -> Result:
    return Result(status=Status.NOT_EVALUATED, location=Location(layer=layer), evidence=reason)


@dataclass(frozen=True, kw_only=True)
class Check:
    """A check: metadata beside a pure function of facts.

    ``facts`` names the facts the function takes, one keyword argument each.
    The function yields a ``Result`` for each problem it sees; yielding nothing
    means the check passed.
    """

    id: str
    severity: Severity
    layer: Layer
    title: str
    remediation: str
    facts: tuple[str, ...]
    evaluate: Callable[..., Iterable[Result]]
    description: str = ""
    references: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)  # tunables and their defaults

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "severity": self.severity.label,
            "layer": self.layer.value,
            "title": self.title,
            "remediation": self.remediation,
            "description": self.description,
            "facts": list(self.facts),
            "params": dict(self.params),
            "references": list(self.references),
        }


def fingerprint(check_id: str, location: dict[str, Any] | None) -> str:
    """Identity of a finding across scans: check id and location, not message text, line or order."""
    loc = location or {}
    parts = [check_id, *(str(loc.get(k) or "") for k in ("layer", "file", "path", "key"))]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def fact_unavailable(fact: str, reason: str) -> str:
    """The evidence of a check not evaluated because a fact it needs could not be gathered."""
    return f"fact {fact!r} unavailable: {reason}"


_FACT_UNAVAILABLE = re.compile(r"^fact '[^']*' unavailable: ")


@dataclass(frozen=True, kw_only=True)
class Finding:
    """A result enriched with its check's metadata: what reports show."""

    check_id: str
    severity: Severity
    title: str
    status: Status
    location: Location | None
    evidence: str
    remediation: str
    code: str | None = None  # the profile's external code for this check (e.g. Oracle's S01)
    waiver: Waiver | None = None  # waived findings stay in every report
    known: bool = False  # present in the --baseline report

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.check_id, self.location.as_dict() if self.location else None)

    @property
    def reason(self) -> str:
        """Why a not-evaluated finding was not evaluated, whichever fact it lacked: findings that share one group."""
        return _FACT_UNAVAILABLE.sub("", self.evidence)

    @property
    def counts(self) -> bool:
        """Whether it can block the verdict: a failing or unevaluated finding nobody waived."""
        return self.status in (Status.FAIL, Status.NOT_EVALUATED) and self.waiver is None

    def sort_key(self) -> tuple:
        loc = self.location
        where = (
            (loc.layer.value, loc.file or "", loc.path or "", loc.key or "", loc.line or 0)
            if loc
            else ("", "", "", "", 0)
        )
        return (-self.severity, self.check_id, where, self.evidence)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.check_id,
            "severity": self.severity.label,
            "title": self.title,
            "status": self.status.value,
            "location": self.location.as_dict() if self.location else None,
            "evidence": self.evidence,
            "remediation": self.remediation,
            "code": self.code,
            "fingerprint": self.fingerprint,
            "waiver": self.waiver.as_dict() if self.waiver else None,
            "known": self.known,
        }


@dataclass(frozen=True, kw_only=True)
class Waiver:
    """An accepted risk: which findings it covers, why, until when, approved by whom."""

    check: str  # id or glob
    reason: str
    expires: datetime.date
    path: str | None = None  # guest path glob
    key: str | None = None  # descriptor key glob
    disk: str | None = None  # bundle file glob
    approved_by: str | None = None
    line: int = 0  # where it stands in the waiver file

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"check": self.check, "reason": self.reason, "expires": self.expires.isoformat()}
        for name in ("path", "key", "disk", "approved_by"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


@dataclass(frozen=True, kw_only=True)
class Facts:
    """Everything checks may look at, gathered once per upload.

    ``values`` maps a fact name to its value. A name in ``not_applicable`` has
    nothing to describe (no descriptor in a bare disk upload); a name in
    ``unavailable`` should exist but could not be gathered, with the reason.
    """

    values: dict[str, Any] = field(default_factory=dict)
    not_applicable: dict[str, str] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Reporter:
    """An output format, selected by name."""

    name: str
    extension: str
    render: Callable[..., str]  # render(report, *, color=False) -> text


@dataclass(frozen=True, kw_only=True)
class Report:
    """The outcome of one scan: the input of every reporter."""

    tool_version: str
    artifact_path: str
    artifact_kind: str | None
    artifact_sha256: str | None
    verdict: Verdict
    profile: str
    threshold: Severity
    profile_digest: str | None = None
    findings: list[Finding] = field(default_factory=list)
    check_status: dict[str, Status] = field(default_factory=dict)
    rejection: str | None = None
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plugins: list[dict[str, str]] = field(default_factory=list)
    disks: list[dict[str, Any]] = field(default_factory=list)
    guest: dict[str, Any] | None = None
    timings: dict[str, Any] = field(default_factory=dict)  # seconds per stage; "collectors": {name: seconds}
    waivers: list[dict[str, Any]] = field(default_factory=list)  # each waiver with its state
    catalog: dict[str, dict[str, Any]] = field(default_factory=dict)  # metadata of the checks run
    bundle_root: str | None = None  # the upload's directory, for bundles copied from one (not in reports)
    bundle_files: list[str] = field(default_factory=list)
    baseline: str | None = None  # the --baseline report it was compared with
    reevaluated: bool = False  # judged from stored facts, with no appliance launched

    @property
    def checks_run(self) -> list[str]:
        return sorted(self.check_status)

    def blocking(self) -> list[Finding]:
        """The findings that make the verdict fail."""
        return [f for f in self.findings if f.counts and f.severity >= self.threshold]

    def failing_by_severity(self) -> dict[str, int]:
        """Unwaived failing findings per severity label, every label present."""
        counts = {s.label: 0 for s in Severity}
        for f in self.findings:
            if f.status is Status.FAIL and f.waiver is None:
                counts[f.severity.label] += 1
        return counts


def describe_os(info: dict) -> str:
    """'debian 12.8 (hostname web-1)': libguestfs' product name is often just a version."""
    product = info.get("product_name") or ""
    name = product if any(c.isalpha() for c in product) else f"{info.get('distro') or info.get('type') or 'unknown OS'} {product}"
    return name.strip() + (f" (hostname {info['hostname']})" if info.get("hostname") else "")


class FactUnavailable(Exception):
    """Raised by a collector that cannot gather its fact from this guest (not a bug)."""


class FactNotApplicable(Exception):
    """Raised by a collector whose fact does not exist in this kind of guest (Linux accounts on Windows)."""


@dataclass(frozen=True, kw_only=True)
class GuestCollector:
    """Gathers one named guest fact through a read-only guest reader.

    Collectors do the I/O so checks do not: a check that needs the fact
    ``ssh_host_keys`` gets whatever the collector of that name returned.
    """

    name: str
    collect: Callable[[Any], Any]
    description: str = ""
    os_types: tuple[str, ...] | None = None  # inspected OS types (libguestfs' "linux", "windows") it reads; None: any
    # Raise it whenever what ``collect`` returns may change (new fields, other files read, fixed parsing):
    # stored facts of another version are stale, and the checks that read them are not evaluated.
    version: str = "1"
    # Dataclass and enum types of the fact defined outside the collector's own module (which is registered
    # by itself), so stored facts can be read back (certify.factsjson).
    fact_types: tuple[type, ...] = ()

    def gather(self, reader: Any) -> Any:
        """Collect, after checking the guest is a kind this collector reads."""
        if self.os_types is not None:
            kind = (reader.os or {}).get("type")
            if not kind or kind == "unknown":  # cannot tell whether it applies: never a pass
                raise FactUnavailable("the guest's operating system type could not be identified")
            if kind not in self.os_types:
                raise FactNotApplicable(f"it is read from {' or '.join(self.os_types)} guests; this guest is {kind}")
        return self.collect(reader)
