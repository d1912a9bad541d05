"""The architecture's import rules, asserted by walking every module's imports.

Each stage may use the layers below it and never one above:

- the foundation (``certify``'s public surface, model, errors, units, progress,
  checkdef, the hook specifications) uses nothing else of ours;
- ``certify.bundle`` (what came in) uses the foundation only;
- ``certify.guest`` (what is inside) uses the foundation and, of the bundle,
  only the disk type it attaches;
- ``certify.policy`` (what we decide) uses the foundation and the bundle
  (a certificate names the artifact kind ingest identifies), never the guest;
- checks use the foundation, bundle and guest; reporters the foundation only;
  isolation the foundation and the certificate it admits by;
- the facts codec (``certify.factsjson``) and the stored facts
  (``certify.gathered``) use the foundation only (the codec finds fact types
  by fixed module names, never by a document's);
- ``certify.service`` (the job store, blobs, tokens) sits on top like the CLI:
  the pipeline and everything below it, never the CLI;
- nothing under ``certify/`` imports the checks or the reporters: the plugin
  manager registers them by name;
- ``certify.scanchild`` runs the CLI in a child process and nothing of a scan
  in its own; ``certify.batch`` scans only through it (never the pipeline,
  bundle or guest in-process), reading the rules through ``certify.catalog``,
  which loads them (plugin registry, profiles) and nothing else.

Every import counts: inside functions and ``TYPE_CHECKING`` blocks too.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

FOUNDATION = (
    "certify",  # the package itself: only its public surface (__init__)
    "certify.model",
    "certify.errors",
    "certify.units",
    "certify.progress",
    "certify.checkdef",
    "certify.plugins.hookspecs",
)
# The layer a module belongs to, by the longest matching prefix, and what that layer may import.
ALLOWED = {
    "certify.bundle": FOUNDATION + ("certify.bundle",),
    "certify.guest": FOUNDATION + ("certify.guest", "certify.bundle.disk"),
    "certify.policy": FOUNDATION + ("certify.policy", "certify.bundle"),
    "certify.checks": FOUNDATION + ("certify.checks", "certify.bundle", "certify.guest"),
    "certify.reports": FOUNDATION + ("certify.reports",),
    "certify.isolation": FOUNDATION + ("certify.isolation", "certify.policy.certificate"),
    "certify.plugins": FOUNDATION + ("certify.plugins",),
    # The facts codec and the stored form of a scan's facts: pure, below the pipeline. The codec reaches
    # the modules that define fact types by fixed names (importlib), as the plugin manager reaches checks.
    "certify.factsjson": FOUNDATION,
    "certify.gathered": FOUNDATION + ("certify.factsjson",),
    "certify.catalog": FOUNDATION + ("certify.catalog", "certify.plugins.manager", "certify.policy"),
    "certify.scanchild": FOUNDATION + ("certify.scanchild", "certify.cli"),
    "certify.batch": FOUNDATION + ("certify.batch", "certify.scanchild", "certify.catalog", "certify.policy",
                                   "certify.plugins.manager"),
    # The service sits on top like the CLI: the pipeline and every stage below it, never the CLI.
    "certify.service": FOUNDATION + ("certify.service", "certify.pipeline", "certify.factsjson", "certify.gathered", "certify.scanchild", "certify.catalog",
                                     "certify.scanguard", "certify.runner", "certify.policy", "certify.plugins",
                                     "certify.bundle", "certify.guest"),
    **{name: FOUNDATION for name in FOUNDATION if name != "certify"},
}
# Folders of the top-level layout that install under certify.* (pyproject's package-dir).
NEVER_FROM_CERTIFY_FOLDER = ("certify.checks", "certify.reports")


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _may_use(target: str, allowed: tuple[str, ...]) -> bool:
    # "certify" names the package's public surface (its __init__), not everything below it.
    return any(target == p if p == "certify" else _within(target, p) for p in allowed)


def source_modules() -> dict[str, tuple[Path, str]]:
    """Every module of the distribution: dotted name -> (file, source), found through pyproject's package-dir."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = config["package-dir"]
    modules: dict[str, tuple[Path, str]] = {}
    for package, folder in roots.items():
        base = REPO / folder
        for path in sorted(base.rglob("*.py")):
            relative = path.relative_to(base).with_suffix("")
            parts = [p for p in relative.parts if p != "__init__"]
            name = ".".join([package, *parts])
            modules[name] = (path, path.read_text(encoding="utf-8"))
    return modules


def imports_of(module: str, source: str, known: set[str], is_package: bool = False) -> set[str]:
    """The modules of ours that ``source`` imports, resolved: 'from a import b' is a.b when that is a module."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
    return {name for name in found if _within(name, "certify")}


def violations(modules: dict[str, tuple[Path, str]]) -> list[str]:
    known = set(modules)
    problems = []
    for module, (path, source) in sorted(modules.items()):
        layer = max((p for p in ALLOWED if _within(module, p)), key=len, default=None)
        in_certify_folder = (path.relative_to(REPO) if path.is_absolute() else path).parts[0] == "certify"
        for target in sorted(imports_of(module, source, known, path.name == "__init__.py")):
            if target == module:
                continue
            if in_certify_folder and any(_within(target, p) for p in NEVER_FROM_CERTIFY_FOLDER):
                problems.append(f"{module} imports {target}: nothing under certify/ imports the checks or the reporters")
            elif layer and not _may_use(target, ALLOWED[layer]):
                problems.append(f"{module} imports {target}: {layer} may use only {', '.join(ALLOWED[layer])}")
    return problems


def test_the_walk_sees_every_stage():
    modules = source_modules()
    for expected in ("certify.bundle.ingest", "certify.bundle.vmx_policy", "certify.guest.reader",
                     "certify.guest.collectors.ssh", "certify.guest.parsers.sshd_config", "certify.policy.verdict",
                     "certify.checks.hardening", "certify.reports.sarif", "certify.isolation.render", "certify.plugins.manager",
                     "certify.service.store"):
        assert expected in modules
    for layer in ALLOWED:
        assert any(_within(m, layer) for m in modules), f"no module in {layer}: the rules name a layer that is gone"


def test_every_module_keeps_to_its_layer():
    assert violations(source_modules()) == []


@pytest.mark.parametrize(
    ("module", "path", "source", "complaint"),
    [
        ("certify.bundle.ova", "certify/bundle/ova.py", "from certify.guest.reader import GuestReader\n",
         "certify.bundle.ova imports certify.guest.reader"),
        ("certify.guest.reader", "certify/guest/reader.py", "from certify.bundle import ingest\n",
         "certify.guest.reader imports certify.bundle.ingest"),
        ("certify.guest.parsers.pkgdb", "certify/guest/parsers/pkgdb.py",
         "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from certify.policy.verdict import decide\n",
         "certify.guest.parsers.pkgdb imports certify.policy.verdict"),
        ("certify.bundle.sanitize_ovf", "certify/bundle/sanitize_ovf.py",
         "def f():\n    from certify.checks.devices import HOST_ITEM_TYPES\n",
         "certify.bundle.sanitize_ovf imports certify.checks.devices"),
        ("certify.cli", "certify/cli.py", "import certify.reports.text\n", "certify.cli imports certify.reports.text"),
        ("certify.batch.run", "certify/batch/run.py", "from certify.pipeline import scan\n",
         "certify.batch.run imports certify.pipeline"),
        ("certify.model", "certify/model.py", "from certify.bundle import disk\n", "certify.model imports certify.bundle.disk"),
        ("certify.reports.text", "reports/text.py", "from certify.guest.reader import describe_os\n",
         "certify.reports.text imports certify.guest.reader"),
        ("certify.policy.verdict", "certify/policy/verdict.py", "from ..guest import reader\n",
         "certify.policy.verdict imports certify.guest.reader"),
        ("certify.service.store", "certify/service/store.py", "from certify.cli import main\n",
         "certify.service.store imports certify.cli"),
        ("certify.service.store", "certify/service/store.py", "from certify.reports import json_report\n",
         "certify.service.store imports certify.reports"),
    ],
)
def test_a_forbidden_import_is_named(module, path, source, complaint):
    modules = {
        "certify.guest.reader": (Path("certify/guest/reader.py"), ""),
        "certify.bundle.ingest": (Path("certify/bundle/ingest.py"), ""),
        "certify.bundle.disk": (Path("certify/bundle/disk.py"), ""),
        module: (Path(path), source),
    }
    problems = violations(modules)
    assert len(problems) == 1 and problems[0].startswith(complaint), problems


def test_allowed_imports_pass():
    modules = {
        "certify.guest.reader": (Path("certify/guest/reader.py"), "from certify.bundle.disk import BundleDisk\nfrom certify import model\n"),
        "certify.bundle.disk": (Path("certify/bundle/disk.py"), ""),
        "certify.checks.ssh": (Path("checks/ssh.py"), "from certify.guest.collectors.ssh import HostKeyFile\n"),
        "certify.pipeline": (Path("certify/pipeline.py"), "from certify.plugins.manager import load_registry\n"),
    }
    assert violations(modules) == []


def test_every_package_opens_with_a_docstring_of_what_it_holds():
    for module, (path, source) in source_modules().items():
        if path.name == "__init__.py":
            assert ast.get_docstring(ast.parse(source)), f"{path.relative_to(REPO)} has no docstring"
