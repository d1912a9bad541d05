"""The installed rules, loaded: the plugin registry's checks and the shipped profiles, and their ruleset digest.

``certify.policy.ruleset`` computes the digest from what it is given and
cannot reach the plugin manager; this is where a command, a batch or the
service gets the digest of what is installed here.
"""

from __future__ import annotations

from certify.plugins.manager import Registry, load_registry
from certify.policy.profile import Profile, load_profile, shipped_names
from certify.policy.ruleset import Provider, ruleset_digest


def shipped_profiles() -> list[Profile]:
    return [load_profile(name) for name in shipped_names()]


def check_providers(registry: Registry) -> dict[str, Provider]:
    """Each check's plugin; a third-party plugin's distribution version with it (built-ins move with certify)."""
    versions = {p["name"]: p["version"] for p in registry.plugins}
    return {check_id: Provider(plugin, versions.get(plugin)) for check_id, plugin in registry.check_plugins.items()}


def installed_ruleset_digest(registry: Registry | None = None) -> str:
    registry = registry or load_registry()
    return ruleset_digest(registry.checks.values(), shipped_profiles(), check_providers(registry))
