"""The ``@check`` decorator: a check is a function with its metadata beside it."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable

from certify.model import Check, Layer, Result, Severity

CHECK_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)+$")


def check(
    *,
    id: str,
    severity: Severity,
    layer: Layer,
    title: str,
    remediation: str,
) -> Callable[[Callable[..., Iterable[Result]]], Check]:
    """Turn ``def name(fact_a, fact_b): ...`` into a ``Check``.

    The facts a check needs are its parameter names, so what it declares and
    what it receives cannot drift apart.
    """

    def wrap(fn: Callable[..., Iterable[Result]]) -> Check:
        if not CHECK_ID.match(id):
            raise ValueError(f"check id {id!r} must be lower-case words joined by '-'")
        params = inspect.signature(fn).parameters.values()
        if any(p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params):
            raise ValueError(f"check {id}: parameters must be plain fact names")
        return Check(
            id=id,
            severity=severity,
            layer=layer,
            title=title,
            remediation=remediation,
            facts=tuple(p.name for p in params),
            evaluate=fn,
            description=inspect.cleandoc(fn.__doc__ or ""),
        )

    return wrap
