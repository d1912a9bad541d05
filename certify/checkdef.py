"""The ``@check`` decorator: a check is a function with its metadata beside it."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from typing import Any

from certify.model import Check, Layer, Result, Severity

PARAMS = "params"
CHECK_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)+$")


def check(
    *,
    id: str,
    severity: Severity,
    layer: Layer,
    title: str,
    remediation: str,
    references: tuple[str, ...] = (),
    params: dict[str, Any] | None = None,
) -> Callable[[Callable[..., Iterable[Result]]], Check]:
    """Turn ``def name(fact_a, fact_b): ...`` into a ``Check``.

    The facts a check needs are its parameter names, so what it declares and
    what it receives cannot drift apart. A parameter called ``params`` is not
    a fact: it receives the check's tunables (``params`` here gives their
    defaults; a profile may override them).
    """

    def wrap(fn: Callable[..., Iterable[Result]]) -> Check:
        if not CHECK_ID.match(id):
            raise ValueError(f"check id {id!r} must be lower-case words joined by '-'")
        signature = inspect.signature(fn).parameters.values()
        if any(p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in signature):
            raise ValueError(f"check {id}: parameters must be plain fact names")
        names = [p.name for p in signature]
        if params and PARAMS not in names:
            raise ValueError(f"check {id}: declares params but takes no 'params' argument")
        return Check(
            id=id,
            severity=severity,
            layer=layer,
            title=title,
            remediation=remediation,
            facts=tuple(n for n in names if n != PARAMS),
            evaluate=fn,
            description=inspect.cleandoc(fn.__doc__ or ""),
            references=tuple(references),
            params=dict(params or {}),
        )

    return wrap
