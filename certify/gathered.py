"""What a scan gathered before any check ran, and its stored form (format certify-facts/1).

A ``Gathered`` is the expensive half of a scan (ingest, descriptor, one
appliance launch); ``pipeline.judge`` turns it into a report in moments, under
any profile, waivers or checks. Stored facts grow stale when the collector
that gathered them changes: ``stale_facts`` says which, and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from certify.factsjson import FactsFormatError, FactTypes, decode, encode
from certify.model import Facts, GuestCollector

FORMAT = "certify-facts"
FORMAT_VERSION = 1
INGEST_SWITCHES = ("strict_ova_order", "reject_sha1_manifest", "require_trusted_signer")
# The facts ingest itself gathers (no collector). Raise INGEST_FACTS_VERSION whenever what ingest puts in them
# may change (a new field, a parsing fix): stored facts of another version are then stale, as a collector's are.
INGEST_FACTS = ("descriptor", "bundle")
INGEST_FACTS_VERSION = "1"


@dataclass(kw_only=True)
class Gathered:
    """One upload's facts, or its rejection, with what is needed to judge and report on it."""

    tool_version: str
    artifact_path: str
    artifact_kind: str | None = None
    artifact_sha256: str | None = None
    ingest_policy: dict[str, bool] = field(default_factory=dict)  # the profile switches ingest applied
    ingest_version: str = INGEST_FACTS_VERSION  # of the ingest that gathered the descriptor and bundle facts
    rejection: str | None = None  # the upload was refused: nothing else was gathered
    failure: str | None = None  # the scan ended before its facts were complete (its time limit)
    facts: Facts = field(default_factory=Facts)
    collector_versions: dict[str, str] = field(default_factory=dict)  # each guest fact's collector, as it ran
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # ingest's notes on the upload
    guest: dict[str, Any] | None = None
    disks: list[dict[str, Any]] = field(default_factory=list)
    bundle_root: str | None = None
    bundle_files: list[str] = field(default_factory=list)
    timings: dict[str, Any] = field(default_factory=dict)  # the gathering stages, and their "total"
    stored: bool = field(default=False, compare=False)  # read back from a document, not gathered in this process

    def to_json(self, types: FactTypes | None = None) -> dict[str, Any]:
        types = types or FactTypes.builtin()
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "tool_version": self.tool_version,
            "artifact": {"path": self.artifact_path, "kind": self.artifact_kind, "sha256": self.artifact_sha256},
            "ingest_policy": dict(self.ingest_policy),
            "ingest_version": self.ingest_version,
            "rejection": self.rejection,
            "failure": self.failure,
            "collector_versions": dict(self.collector_versions),
            "facts": {
                "values": {name: encode(value, types) for name, value in self.facts.values.items()},
                "not_applicable": dict(self.facts.not_applicable),
                "unavailable": dict(self.facts.unavailable),
            },
            "errors": list(self.errors),
            "notes": list(self.notes),
            "guest": encode(self.guest, types),
            "disks": encode(self.disks, types),
            "bundle_root": self.bundle_root,
            "bundle_files": list(self.bundle_files),
            "timings": encode(self.timings, types),
        }

    @classmethod
    def from_json(cls, doc: Any, types: FactTypes | None = None) -> Gathered:
        """The Gathered ``to_json`` wrote; FactsFormatError for any other document."""
        types = types or FactTypes.builtin()
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise FactsFormatError(f"not a certify facts document (no \"format\": {FORMAT!r})")
        version = doc.get("format_version")
        if version != FORMAT_VERSION:
            raise FactsFormatError(f"facts format version {version!r} is not one this certify reads ({FORMAT_VERSION})")
        expected = {"format", "format_version", "tool_version", "artifact", "ingest_policy", "ingest_version", "rejection", "failure",
                    "collector_versions", "facts", "errors", "notes", "guest", "disks", "bundle_root", "bundle_files", "timings"}  # fmt: skip
        if set(doc) != expected:
            raise FactsFormatError(f"facts document keys differ from format {FORMAT}/{FORMAT_VERSION}: "
                                   f"missing {sorted(expected - set(doc))}, unknown {sorted(set(doc) - expected)}")  # fmt: skip
        artifact = _object(doc["artifact"], "artifact", {"path", "kind", "sha256"})
        facts = _object(doc["facts"], "facts", {"values", "not_applicable", "unavailable"})
        values = _object(facts["values"], "facts.values")
        gathered = cls(
            tool_version=_text(doc["tool_version"], "tool_version"),
            artifact_path=_text(artifact["path"], "artifact.path"),
            artifact_kind=_text(artifact["kind"], "artifact.kind", optional=True),
            artifact_sha256=_text(artifact["sha256"], "artifact.sha256", optional=True),
            ingest_policy=_mapping(doc["ingest_policy"], "ingest_policy", bool),
            ingest_version=_text(doc["ingest_version"], "ingest_version"),
            rejection=_text(doc["rejection"], "rejection", optional=True),
            failure=_text(doc["failure"], "failure", optional=True),
            facts=Facts(
                values={name: _decode_at(value, types, f"facts.values[{name!r}]") for name, value in values.items()},
                not_applicable=_mapping(facts["not_applicable"], "facts.not_applicable", str),
                unavailable=_mapping(facts["unavailable"], "facts.unavailable", str),
            ),
            collector_versions=_mapping(doc["collector_versions"], "collector_versions", str),
            errors=_texts(doc["errors"], "errors"),
            notes=_texts(doc["notes"], "notes"),
            guest=_decode_at(doc["guest"], types, "guest"),
            disks=_decode_at(doc["disks"], types, "disks"),
            bundle_root=_text(doc["bundle_root"], "bundle_root", optional=True),
            bundle_files=_texts(doc["bundle_files"], "bundle_files"),
            timings=_decode_at(doc["timings"], types, "timings"),
            stored=True,
        )
        if not (gathered.guest is None or isinstance(gathered.guest, dict)):
            raise FactsFormatError("guest: not an object or null")
        if not (isinstance(gathered.disks, list) and all(isinstance(d, dict) for d in gathered.disks)):
            raise FactsFormatError("disks: not a list of objects")
        if not isinstance(gathered.timings, dict):
            raise FactsFormatError("timings: not an object")
        return gathered


def stale_facts(gathered: Gathered, collectors: Mapping[str, GuestCollector]) -> dict[str, str]:
    """Facts that cannot be trusted against the installed ``collectors`` and this ingest: fact name -> why.

    A collector whose version changed, or that did not run for these facts,
    makes only its own fact stale; a fact whose collector is gone is
    unavailable; ingest facts of another ingest version are stale. Checks
    reading any of them are not evaluated, never passed.
    """
    stale: dict[str, str] = {}
    if gathered.ingest_version != INGEST_FACTS_VERSION:
        for name in INGEST_FACTS:
            stale[name] = f"facts gathered by ingest version {gathered.ingest_version}; this certify's is {INGEST_FACTS_VERSION}: scan again"
    for name, version in gathered.collector_versions.items():
        installed = collectors.get(name)
        if installed is None:
            stale[name] = f"facts gathered by collector {name} version {version}, which is no longer installed"
        elif installed.version != version:
            stale[name] = f"facts gathered by collector {name} version {version}; installed version {installed.version}: scan again"
    for name, collector in collectors.items():
        if name not in gathered.collector_versions:
            stale[name] = f"no facts of collector {name} (version {collector.version}) were gathered for this upload: scan again"
    return stale


def _decode_at(value: Any, types: FactTypes, where: str) -> Any:
    try:
        return decode(value, types)
    except FactsFormatError as exc:
        raise FactsFormatError(f"{where}: {exc}") from None


def _object(value: Any, where: str, keys: set[str] | None = None) -> dict:
    if not isinstance(value, dict):
        raise FactsFormatError(f"{where}: not an object")
    if keys is not None and set(value) != keys:
        raise FactsFormatError(f"{where}: keys must be {', '.join(sorted(keys))}")
    return value


def _text(value: Any, where: str, optional: bool = False) -> Any:
    if isinstance(value, str) or (optional and value is None):
        return value
    raise FactsFormatError(f"{where}: not a string")


def _texts(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FactsFormatError(f"{where}: not a list of strings")
    return list(value)


def _mapping(value: Any, where: str, kind: type) -> dict:
    if not isinstance(value, dict) or not all(type(v) is kind for v in value.values()):
        raise FactsFormatError(f"{where}: not an object of {kind.__name__} values")
    return dict(value)
