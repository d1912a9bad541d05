"""What each guest-check topic plants in the session's test images.

Every module here defines:

- ``CHECKS``: the check ids the topic owns;
- ``plant_dirty(spec)``: the failing cases, added to the dirty catalog image;
- ``plant_clean(spec)``: the passing cases (realistic, safe configuration), added to the clean image;
- ``DIRTY``: the exact set of ``(check id, guest path or None, severity)`` its checks report on the dirty image.

Memory-backed tests and the real-image tests assert the same sets, so the
fast tests and the libguestfs path cannot drift apart.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from certify import sample


def topics() -> list[ModuleType]:
    return [importlib.import_module(f"{__name__}.{m.name}") for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name)]


def catalog_dirty() -> sample.GuestSpec:
    spec = sample.base_system("vendor-build-42", users=("alice", "bob"))
    for topic in topics():
        topic.plant_dirty(spec)
    return spec


def catalog_clean() -> sample.GuestSpec:
    spec = sample.base_system("clean-build", users=("alice", "bob"))
    for topic in topics():
        topic.plant_clean(spec)
    return spec


def expected_dirty() -> dict[str, set[tuple]]:
    """check id -> its exact failing findings on the dirty image."""
    out: dict[str, set[tuple]] = {}
    for topic in topics():
        for check_id in topic.CHECKS:
            out[check_id] = {f for f in topic.DIRTY if f[0] == check_id}
    return out
