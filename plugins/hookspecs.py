"""Hook specifications for certify plugins.

Built-in checks, guest fact collectors and reporters are registered through
these hooks exactly as third-party plugins are. A third-party distribution
declares an entry point in the ``certify`` group naming a module (or object)
that implements any of them::

    [project.entry-points.certify]
    acme = "acme_certify_checks"
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from certify.model import Check, GuestCollector, Reporter

PROJECT = "certify"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def certify_checks() -> list[Check]:
    """Return the checks this plugin provides.

    Each check's id must be unique across all plugins; a duplicate is an error.
    Build checks with :func:`certify.check`.
    """


@hookspec
def certify_guest_collectors() -> list[GuestCollector]:
    """Return collectors of guest facts this plugin provides.

    A collector's ``collect(reader)`` runs once per scan, only when a selected
    check names its fact. The reader is read-only and bounds every read.
    Names must be unique across all plugins.
    """


@hookspec
def certify_reporters() -> list[Reporter]:
    """Return report formats this plugin provides, selected by ``--format NAME``."""
