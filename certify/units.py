"""Sizes and durations as people write them on a command line: 4096, 512M, 20GiB, 1.5T; 90, 30m, 2h."""

from __future__ import annotations

import re
from fractions import Fraction

_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([KMGTP]?)(i?B)?$", re.IGNORECASE)
_POWERS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5}
MAX_SIZE = 2**63 - 1  # what a file offset can hold: 8 EiB
MAX_DIGITS = 40  # a number longer than this is no size anyone means


def parse_size(text: str) -> int:
    """Bytes from '4096', '512M', '20GiB', '1.5T' (binary multiples: K = 1024); ValueError otherwise."""
    match = _SIZE.match(text.strip())
    if not match or (match.group(3) and match.group(3).lower() == "ib" and not match.group(2)):
        raise ValueError(f"{text[:40]!r} is not a size (e.g. 4096, 512M, 20G, 1.5TiB)")
    number, unit = match.group(1), match.group(2).upper()
    if len(number) > MAX_DIGITS:
        raise ValueError(f"{text[:40]!r}... is too long for a size (at most {MAX_DIGITS} digits)")
    value = int(Fraction(number) * 1024 ** _POWERS[unit])  # exact: no float to overflow or round
    if value <= 0:
        raise ValueError(f"{text[:40]!r} must be more than zero bytes")
    if value > MAX_SIZE:
        raise ValueError(f"{text[:40]!r} is too large (at most {MAX_SIZE} bytes, 8 EiB)")
    return value


_DURATION = re.compile(r"^([0-9]{1,9}(?:\.[0-9]{1,6})?)\s*([smh]?)$", re.IGNORECASE)
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600}
MAX_DURATION = 7 * 24 * 3600  # a week: longer is no limit anyone means


def parse_duration(text: str) -> float:
    """Seconds from '90', '90s', '30m', '2h'; ValueError otherwise."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text[:40]!r} is not a duration (e.g. 90, 90s, 30m, 2h)")
    seconds = float(match.group(1)) * _SECONDS[match.group(2).lower()]
    if seconds <= 0:
        raise ValueError(f"{text[:40]!r} must be more than zero seconds")
    if seconds > MAX_DURATION:
        raise ValueError(f"{text[:40]!r} is longer than a week")
    return seconds


def size_argument(text: str) -> int:
    """``parse_size`` as an argparse type: a bad size is argparse's one-line usage error."""
    import argparse

    try:
        return parse_size(text)
    except (ValueError, OverflowError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def duration_argument(text: str) -> float:
    """``parse_duration`` as an argparse type."""
    import argparse

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
