"""The project's own errors. Anything else escaping the pipeline is a bug (exit 3)."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """An exception's message cut to one line for a one-line error; its type's name when it has no message."""
    lines = str(exc).splitlines()
    return lines[0] if lines else type(exc).__name__


class CertifyError(Exception):
    """Base class: carries a one-line message meant for the user."""


class UsageError(CertifyError):
    """The command line is wrong (missing path, unknown format): exit 2, no report."""


class InputRejected(CertifyError):
    """The upload is malformed or hostile: verdict ``rejected``, exit 2."""


class ParseError(InputRejected):
    """A pure parser could not make sense of untrusted bytes."""
