"""The ruleset digest: one value that changes when any rule that can decide a verdict changes.

A stored verdict is reusable only while the rules that produced it are the same:
the check catalog (what each installed check is and which plugin, at which
version, provides it) and every available profile. The digest is sha256 over a
canonical JSON of both. Texts that explain a rule (description, remediation,
references) are left out: rewording them decides nothing.

This module takes the checks and profiles as arguments; loading them (the
plugin manager, the shipped profiles) belongs to a higher layer
(``certify.catalog``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from certify.model import Check
from certify.policy.profile import Profile


@dataclass(frozen=True)
class Provider:
    """Who provides a check: the plugin's registered name and, for a third-party distribution, its version.

    Built-in checks carry no version: they change only with certify itself,
    whose version is part of every stored result's key on its own.
    """

    plugin: str
    version: str | None = None


def check_entry(check: Check, provider: Provider | None = None) -> dict[str, Any]:
    """What of a check can change a verdict, as plain JSON values."""
    return {
        "id": check.id,
        "severity": check.severity.label,
        "layer": check.layer.value,
        "title": check.title,
        "facts": list(check.facts),
        "params": check.params,
        "version": getattr(check, "version", None),  # a check may declare one; none do yet
        "plugin": provider.plugin if provider else None,
        "plugin_version": provider.version if provider else None,
    }


def ruleset_material(checks: Iterable[Check], profiles: Iterable[Profile],
                     providers: Mapping[str, Provider] | None = None) -> dict[str, Any]:  # fmt: skip
    """The canonical content the digest is taken over (sorted, so order of discovery changes nothing)."""
    providers = providers or {}
    catalog = sorted((check_entry(c, providers.get(c.id)) for c in checks), key=lambda e: e["id"])
    ids = [e["id"] for e in catalog]
    if len(set(ids)) != len(ids):
        raise ValueError("a check id appears twice in the catalog")
    by_name: dict[str, str] = {}
    for profile in profiles:
        if profile.name in by_name:
            raise ValueError(f"profile {profile.name!r} appears twice")
        by_name[profile.name] = _profile_content(profile)
    return {"checks": catalog, "profiles": dict(sorted(by_name.items()))}


def ruleset_digest(checks: Iterable[Check], profiles: Iterable[Profile], providers: Mapping[str, Provider] | None = None) -> str:
    """``sha256:<hex>`` over the check catalog and the resolved content of every profile."""
    material = ruleset_material(checks, profiles, providers)
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=_plain)
    return "sha256:" + hashlib.sha256(text.encode("ascii")).hexdigest()


def _profile_content(profile: Profile) -> str:
    # The resolved policy (extends applied; comments, key order and display settings gone), as reports pin it.
    return profile.digest


def _plain(value: Any) -> Any:
    """Parameter defaults may be tuples, sets or enums; JSON gets a stable form of each."""
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "value"):
        return value.value
    return repr(value)
