"""Sizes as people write them on a command line: 4096, 512M, 20GiB, 1.5T."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([KMGTP]?)(i?B)?$", re.IGNORECASE)
_POWERS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5}


def parse_size(text: str) -> int:
    """Bytes from '4096', '512M', '20GiB', '1.5T' (binary multiples: K = 1024); ValueError otherwise."""
    match = _SIZE.match(text.strip())
    if not match or (match.group(3) and match.group(3).lower() == "ib" and not match.group(2)):
        raise ValueError(f"{text[:40]!r} is not a size (e.g. 4096, 512M, 20G, 1.5TiB)")
    number, unit = match.group(1), match.group(2).upper()
    value = int(float(number) * 1024 ** _POWERS[unit]) if "." in number else int(number) * 1024 ** _POWERS[unit]
    if value <= 0:
        raise ValueError(f"{text[:40]!r} must be more than zero bytes")
    return value
