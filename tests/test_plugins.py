"""The plugin manager: built-ins registered like third parties, clashes refused."""

from __future__ import annotations

import pytest

from certify import Layer, Severity, check, hookimpl
from certify.plugins.manager import BUILTIN_PLUGINS, PluginError, get_plugin_manager, load_registry


def test_builtins_are_plugins():
    pm = get_plugin_manager(autoload=False)
    assert {pm.get_name(p) for p in pm.get_plugins()} >= set(BUILTIN_PLUGINS)


def test_duplicate_check_id_is_an_error():
    @check(id="ssh-host-keys-present", severity=Severity.LOW, layer=Layer.GUEST, title="t", remediation="r")
    def impostor(ssh_host_keys):
        return []

    class Impostor:
        @hookimpl
        def certify_checks(self):
            return [impostor]

    pm = get_plugin_manager(autoload=False)
    pm.register(Impostor(), name="impostor")
    with pytest.raises(PluginError, match="provided twice"):
        load_registry(pm)


def test_misspelt_hook_is_an_error():
    class Typo:
        @hookimpl
        def certify_chekcs(self):
            return []

    pm = get_plugin_manager(autoload=False)
    pm.register(Typo(), name="typo")
    with pytest.raises(Exception, match="unknown hook"):
        pm.check_pending()


def test_wrong_object_from_certify_checks():
    class Wrong:
        @hookimpl
        def certify_checks(self):
            return [object()]

    pm = get_plugin_manager(autoload=False)
    pm.register(Wrong(), name="wrong")
    with pytest.raises(PluginError, match="returned object where a Check belongs"):
        load_registry(pm)
