"""The ruleset digest: it moves when a rule moves, and only then."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from certify import Layer, Severity, check, hookimpl
from certify.catalog import check_providers, installed_ruleset_digest, shipped_profiles
from certify.plugins.manager import get_plugin_manager, load_registry
from certify.policy.profile import load_profile
from certify.policy.ruleset import Provider, ruleset_digest


@check(id="acme-no-telnet", severity=Severity.HIGH, layer=Layer.GUEST, title="No telnet", remediation="remove it")
def no_telnet(packages):
    return []


class AcmePlugin:
    @hookimpl
    def certify_checks(self):
        return [no_telnet]


def registry(*extra):
    pm = get_plugin_manager(autoload=False)
    for plugin in extra:
        pm.register(plugin, name=type(plugin).__name__.lower())
    return load_registry(pm)


@pytest.fixture(scope="module")
def builtin():
    return registry()


@pytest.fixture(scope="module")
def profiles():
    return shipped_profiles()


def digest(reg, profiles):
    return ruleset_digest(reg.checks.values(), profiles, check_providers(reg))


def test_shape_and_stability(builtin, profiles):
    first = digest(builtin, profiles)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", first)
    assert digest(registry(), shipped_profiles()) == first  # loaded again: the same
    assert installed_ruleset_digest(builtin) == first


def test_order_of_discovery_changes_nothing(builtin, profiles):
    checks = list(builtin.checks.values())
    providers = check_providers(builtin)
    assert ruleset_digest(reversed(checks), list(reversed(profiles)), providers) == ruleset_digest(checks, profiles, providers)


def test_adding_a_plugin_check_changes_it(builtin, profiles):
    with_acme = registry(AcmePlugin())
    assert with_acme.check_plugins["acme-no-telnet"] == "acmeplugin"
    assert digest(with_acme, profiles) != digest(builtin, profiles)


def test_a_plugin_version_or_provider_changes_it(builtin, profiles):
    checks = list(registry(AcmePlugin()).checks.values())
    one = ruleset_digest(checks, profiles, {"acme-no-telnet": Provider("acme", "1.2.0")})
    assert ruleset_digest(checks, profiles, {"acme-no-telnet": Provider("acme", "1.3.0")}) != one
    assert ruleset_digest(checks, profiles, {"acme-no-telnet": Provider("other", "1.2.0")}) != one


@pytest.mark.parametrize("change", [
    {"severity": Severity.LOW}, {"title": "Another title"}, {"facts": ("packages", "services")}, {"params": {"limit": 3}},
])  # fmt: skip
def test_each_rule_field_changes_it(builtin, profiles, change):
    checks = dict(builtin.checks)
    base = ruleset_digest(checks.values(), profiles)
    first = next(iter(checks))
    checks[first] = replace(checks[first], **change)
    assert ruleset_digest(checks.values(), profiles) != base


def test_a_check_version_changes_it(builtin, profiles):
    checks = list(builtin.checks.values())
    base = ruleset_digest(checks, profiles)

    class Versioned:  # a check that declares a version, as a plugin's may
        def __init__(self, inner, version):
            self.__dict__.update(vars(inner))
            self.version = version

    bumped = [Versioned(checks[0], "2"), *checks[1:]]
    assert ruleset_digest(bumped, profiles) != base
    assert ruleset_digest([Versioned(checks[0], "3"), *checks[1:]], profiles) != ruleset_digest(bumped, profiles)


def test_wording_that_decides_nothing_leaves_it(builtin, profiles):
    checks = dict(builtin.checks)
    base = ruleset_digest(checks.values(), profiles)
    first = next(iter(checks))
    checks[first] = replace(checks[first], remediation="reworded", description="reworded", references=("https://x",))
    assert ruleset_digest(checks.values(), profiles) == base


def test_editing_a_profile_changes_it(builtin, profiles, tmp_path):
    base = digest(builtin, profiles)
    edited = tmp_path / "default.yaml"
    edited.write_text("name: mine\nextends: default\nfail_on: medium\n")
    mine = load_profile(str(edited))
    assert digest(builtin, [*profiles, mine]) != base  # a new profile
    same_rules = tmp_path / "again.yaml"
    same_rules.write_text("# a comment\nname: mine\nextends: default\nfail_on: medium  # and another\n")
    assert digest(builtin, [*profiles, load_profile(str(same_rules))]) == digest(builtin, [*profiles, mine])
    stricter = [replace(p, fail_on=Severity.LOW) if p.name == "default" else p for p in profiles]
    assert digest(builtin, stricter) != base
    excluded = [replace(p, exclude=(*p.exclude, "vmx-*")) if p.name == "default" else p for p in profiles]
    assert digest(builtin, excluded) != base
    assert digest(builtin, [p for p in profiles if p.name != "default"]) != base  # a profile removed


def test_a_duplicate_is_refused(builtin, profiles):
    checks = list(builtin.checks.values())
    with pytest.raises(ValueError, match="twice"):
        ruleset_digest([*checks, checks[0]], profiles)
    with pytest.raises(ValueError, match="twice"):
        ruleset_digest(checks, [*profiles, profiles[0]])
