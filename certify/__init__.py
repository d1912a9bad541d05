"""Offline certification of virtual appliances.

The pipeline reads top to bottom in ``pipeline``: ``bundle`` (what came in),
``guest`` (what is inside), the checks, then ``policy`` (what we decide).
It is two halves: ``gather`` (everything that reads the upload, one appliance
launch) yields a ``gathered.Gathered`` that can be stored as JSON
(``factsjson``) and ``judge``d again later, under any profile, in moments.
``model``, ``errors``, ``units``, ``progress`` and ``checkdef`` are the
foundation every stage may use; ``cli`` and ``sample`` sit on top.

Public surface for plugin authors: ``hookimpl``, ``check`` and the model types.
"""

from __future__ import annotations

from certify.checkdef import check
from certify.model import Check
from certify.model import FactNotApplicable
from certify.model import FactUnavailable
from certify.model import GuestCollector
from certify.model import Finding
from certify.model import Layer
from certify.model import Location
from certify.model import Result
from certify.model import Severity
from certify.model import Status
from certify.model import fail
from certify.model import not_applicable
from certify.model import not_evaluated
from certify.plugins.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "Check",
    "FactNotApplicable",
    "FactUnavailable",
    "Finding",
    "GuestCollector",
    "Layer",
    "Location",
    "Result",
    "Severity",
    "Status",
    "__version__",
    "check",
    "fail",
    "hookimpl",
    "not_applicable",
    "not_evaluated",
]
