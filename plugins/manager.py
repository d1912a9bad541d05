"""Builds the plugin manager: built-ins first, then the ``certify`` entry points."""

from __future__ import annotations

import importlib
import os
import pkgutil
from dataclasses import dataclass, field

import pluggy

from certify.errors import CertifyError
from certify.model import Check, GuestCollector, Reporter
from certify.plugins import hookspecs


def _modules(package: str) -> tuple[str, ...]:
    """Every module of a built-in package: a new check or collector file is registered by existing."""
    path = importlib.import_module(package).__path__
    return tuple(f"{package}.{m.name}" for m in sorted(pkgutil.iter_modules(path), key=lambda m: m.name) if not m.ispkg)


BUILTIN_PLUGINS = (
    *_modules("certify.checks"),
    *_modules("certify.guest.collectors"),
    "certify.reports.text",
    "certify.reports.json",
    "certify.reports.sarif",
    "certify.reports.junit",
    "certify.reports.html",
)

# Like PYTEST_DISABLE_PLUGIN_AUTOLOAD: run only the built-in catalog.
DISABLE_AUTOLOAD_ENV = "CERTIFY_DISABLE_PLUGIN_AUTOLOAD"


class PluginError(CertifyError):
    """A plugin is broken or clashes with another one."""


def get_plugin_manager(*, autoload: bool | None = None) -> pluggy.PluginManager:
    """A fresh manager each call, so runs and tests never share plugin state."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for modname in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(modname), name=modname)
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if autoload:
        try:
            pm.load_setuptools_entrypoints(hookspecs.PROJECT)
        except Exception as exc:  # a third party's import error must not look like ours
            raise PluginError(f"a certify plugin failed to load: {type(exc).__name__}: {exc}") from exc
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"invalid certify plugin: {exc}") from exc
    return pm


@dataclass(frozen=True)
class Registry:
    """Everything the plugins provide, indexed by name."""

    checks: dict[str, Check]
    collectors: dict[str, GuestCollector]
    reporters: dict[str, Reporter]
    plugins: list[dict[str, str]]
    check_plugins: dict[str, str] = field(default_factory=dict)  # check id -> name of the plugin that provides it


def _unique(kind: str, cls: type, key: str, items: list[tuple[str, object]]) -> dict:
    seen: dict = {}
    for plugin, item in items:
        if not isinstance(item, cls):
            raise PluginError(f"plugin {plugin} returned {type(item).__name__} where a {cls.__name__} belongs")
        name = getattr(item, key)
        if name in seen:
            raise PluginError(f"{kind} {name!r} is provided twice (second time by plugin {plugin})")
        seen[name] = item
    return seen


def _collect(pm: pluggy.PluginManager, hook_name: str) -> list[tuple[str, object]]:
    items = []
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        for item in impl.function() or []:
            items.append((impl.plugin_name, item))
    return items


def load_registry(pm: pluggy.PluginManager | None = None) -> Registry:
    pm = pm or get_plugin_manager()
    provided = _collect(pm, "certify_checks")
    checks = _unique("check", Check, "id", provided)
    collectors = _unique("guest collector", GuestCollector, "name", _collect(pm, "certify_guest_collectors"))
    reporters = _unique("reporter", Reporter, "name", _collect(pm, "certify_reporters"))
    plugins = [
        {"name": pm.get_name(plugin) or "", "distribution": dist.project_name, "version": dist.version}
        for plugin, dist in pm.list_plugin_distinfo()
    ]
    return Registry(
        checks=dict(sorted(checks.items())),
        collectors=collectors,
        reporters=reporters,
        plugins=sorted(plugins, key=lambda p: p["name"]),
        check_plugins={item.id: plugin for plugin, item in provided if isinstance(item, Check)},
    )
