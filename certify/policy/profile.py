"""Policy profiles: which checks run, how severe each is, and where the verdict fails.

A profile is YAML, shipped (``certify profiles`` lists them) or the user's own
file. Unknown keys are errors: a misspelt ``fail_on`` must not silently keep
the default gate.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from certify.errors import UsageError, first_line
from certify.model import Check, Severity

_KEYS = {"name", "description", "extends", "fail_on", "display_min", "include", "exclude", "severity", "codes", "params",
         "strict_ova_order", "reject_sha1_manifest", "require_trusted_signer"}  # fmt: skip


SWITCHES = ("strict_ova_order", "reject_sha1_manifest", "require_trusted_signer")  # true/false policy keys


class ProfileError(UsageError):
    """A profile that cannot be used: exit 2, never a traceback."""


@dataclass(frozen=True)
class Profile:
    name: str
    description: str = ""
    fail_on: Severity = Severity.HIGH
    display_min: Severity = Severity.INFO
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    severity: dict[str, Severity] = field(default_factory=dict)
    codes: dict[str, str] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Reject an OVA whose descriptor is not its first member, or whose manifest and certificate are
    # not right after it or last (DSP0243); when false, the upload is scanned and the report notes it.
    strict_ova_order: bool = False
    # Reject a manifest that uses SHA1 digests (they no longer resist forgery); when false, the report notes it.
    reject_sha1_manifest: bool = False
    # Reject any upload not signed by a signer the trust store (--trust-store) vouches for, valid now.
    require_trusted_signer: bool = False
    # Check ids tuned by a user's file; shipped profiles are written for the whole roadmap.
    user_mentions: frozenset[str] = frozenset()

    def selects(self, check_id: str) -> bool:
        def hit(patterns: tuple[str, ...]) -> bool:
            return any(fnmatch.fnmatchcase(check_id, p) for p in patterns)

        return hit(self.include) and not hit(self.exclude)

    def severity_for(self, check_id: str) -> Severity | None:
        """The override for a check: its exact id first, then the first glob that matches."""
        return _lookup(self.severity, check_id)

    def code_for(self, check_id: str) -> str | None:
        return _lookup(self.codes, check_id)

    @property
    def digest(self) -> str:
        """sha256 of the resolved policy, so a report or certificate pins what was applied."""
        material = {
            "fail_on": self.fail_on.label, "include": list(self.include), "exclude": list(self.exclude),
            "severity": {k: v.label for k, v in sorted(self.severity.items())}, "codes": dict(sorted(self.codes.items())),
            "params": {k: self.params[k] for k in sorted(self.params)},
        }  # fmt: skip
        for switch in SWITCHES:  # only when set: existing policies keep their digests
            if getattr(self, switch):
                material[switch] = True
        return "sha256:" + hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()

    def mentioned_checks(self) -> set[str]:
        """Check ids the profile tunes; codes may name checks of any catalog."""
        return _ids(self.severity, self.params)

    def validate_against(self, checks: dict[str, Check]) -> list[str]:
        """Errors for params a check does not take; notes for checks a user's file tunes but are not installed."""
        notes = []
        unknown = sorted(self.user_mentions - set(checks))
        if unknown:
            notes.append(f"profile {self.name} tunes checks that are not installed: {', '.join(unknown)}")
        for check_id, values in self.params.items():
            check = checks.get(check_id)
            if check is None:
                continue
            for name, value in values.items():
                if name not in check.params:
                    raise ProfileError(f"profile {self.name}: check {check_id} has no parameter {name!r} "
                                       f"(it takes: {', '.join(sorted(check.params)) or 'none'})")  # fmt: skip
                default = check.params[name]
                if default is not None and not isinstance(value, type(default)):
                    raise ProfileError(f"profile {self.name}: {check_id}.{name} must be a {type(default).__name__}")
        return notes


def shipped_names() -> list[str]:
    folder = resources.files("certify.policy") / "profiles"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _shipped_text(name: str) -> str:
    return (resources.files("certify.policy") / "profiles" / f"{name}.yaml").read_text(encoding="utf-8")


def load_profile(name_or_path: str, _seen: tuple[str, ...] = ()) -> Profile:
    """A shipped profile by name, or a YAML file by path."""
    if name_or_path in shipped_names():
        text, shipped, source = _shipped_text(name_or_path), True, name_or_path
    elif os.path.isfile(name_or_path):
        name_or_path = os.path.abspath(name_or_path)
        try:
            with open(name_or_path, encoding="utf-8") as f:
                text = f.read(1024 * 1024)
        except (OSError, UnicodeDecodeError) as exc:
            raise ProfileError(f"{name_or_path}: cannot read profile: {exc}") from None
        shipped, source = False, name_or_path
    else:
        raise ProfileError(f"unknown profile {name_or_path!r}: not a shipped profile ({', '.join(shipped_names())}) nor a file")
    if source in _seen:
        raise ProfileError(f"{source}: profiles extend each other in a loop")
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as exc:  # ValueError: a date like 2020-02-30
        raise ProfileError(f"{source}: not valid YAML ({first_line(exc)})") from None
    profile = _build(data, source, shipped, (*_seen, source))
    if not shipped and profile.name in shipped_names():
        raise ProfileError(f"{source}: the name {profile.name!r} belongs to a shipped profile; give yours its own name")
    return profile


def _build(data: Any, source: str, shipped: bool, seen: tuple[str, ...]) -> Profile:
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: a profile is a YAML mapping")
    unknown = sorted(set(map(str, data)) - _KEYS)
    if unknown:
        raise ProfileError(f"{source}: unknown profile key(s) {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
    base = Profile(name="")
    if "extends" in data:
        parent = _text(data, "extends", source)
        if parent not in shipped_names() and not shipped:  # a file, relative to the one extending it
            parent = os.path.join(os.path.dirname(source), parent)
        base = load_profile(parent, seen)

    def severity(value: Any, where: str) -> Severity:
        try:
            return Severity.parse(str(value))
        except ValueError as exc:
            raise ProfileError(f"{source}: {where}: {exc}") from None

    def mapping(key: str) -> dict:
        value = data.get(key) or {}
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ProfileError(f"{source}: {key} must map check ids to values")
        return value

    params = mapping("params")
    for check_id, values in params.items():
        if not isinstance(values, dict):
            raise ProfileError(f"{source}: params.{check_id} must be a mapping of parameter names to values")
    description = data.get("description", base.description)
    if not isinstance(description, str):
        raise ProfileError(f"{source}: description must be text")
    codes = mapping("codes")
    if not all(isinstance(v, str) and v for v in codes.values()):
        raise ProfileError(f"{source}: codes must map check ids to text codes")
    switches = {k: data.get(k, getattr(base, k)) for k in SWITCHES}
    for key, value in switches.items():
        if not isinstance(value, bool):
            raise ProfileError(f"{source}: {key} must be true or false, not {str(value)[:40]!r}")
    for check_id in params:
        if any(c in check_id for c in "*?["):
            raise ProfileError(f"{source}: params.{check_id}: parameters are set per check id, not by glob")
    return Profile(
        name=_text(data, "name", source) if "name" in data else os.path.basename(source).removesuffix(".yaml"),
        description=description.strip(),
        fail_on=severity(data["fail_on"], "fail_on") if "fail_on" in data else base.fail_on,
        display_min=severity(data["display_min"], "display_min") if "display_min" in data else base.display_min,
        include=_globs(data, "include", source) or base.include,
        exclude=(*base.exclude, *_globs(data, "exclude", source)),
        severity={**base.severity, **{k: severity(v, f"severity.{k}") for k, v in mapping("severity").items()}},
        codes={**base.codes, **codes},
        params={**base.params, **{k: dict(v) for k, v in params.items()}},
        **switches,
        user_mentions=base.user_mentions | (frozenset() if shipped else frozenset(_ids(mapping("severity"), params))),
    )


def _lookup(table: dict[str, Any], check_id: str) -> Any:
    if check_id in table:
        return table[check_id]
    return next((v for k, v in table.items() if fnmatch.fnmatchcase(check_id, k)), None)


def _ids(*mappings: dict) -> set[str]:
    return {i for m in mappings for i in m if not any(c in i for c in "*?[")}


def _text(data: dict, key: str, source: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ProfileError(f"{source}: {key} must be a non-empty string")
    return value


def _globs(data: dict, key: str, source: str) -> tuple[str, ...]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProfileError(f"{source}: {key} must be a list of check ids or globs")
    return tuple(value)
