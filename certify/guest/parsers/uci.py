"""OpenWrt's UCI configuration files (/etc/config/*), parsed from text.

A file is a list of sections::

    config dropbear 'main'
        option PasswordAuth 'on'
        list keyfile '/etc/dropbear/extra_key'

Values may be quoted with ' or " or bare, '#' starts a comment. ``uci``
refuses a file it cannot parse, and then the init script that loads it
starts nothing; ``problems`` says which line it would stop at.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field


@dataclass(frozen=True)
class UciValue:
    value: str
    line: int


@dataclass
class UciSection:
    type: str
    name: str  # '' for an anonymous section
    line: int
    index: int = 0  # its place among the sections of its type: uci names an anonymous one @type[index]
    options: dict[str, UciValue] = field(default_factory=dict)
    lists: dict[str, list[UciValue]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"'{self.name}'" if self.name else f"@{self.type}[{self.index}] (line {self.line})"


@dataclass
class UciFile:
    sections: list[UciSection] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def of_type(self, section_type: str) -> list[UciSection]:
        return [s for s in self.sections if s.type == section_type]


def parse_uci(text: str) -> UciFile:
    out = UciFile()
    current: UciSection | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        try:
            words = shlex.split(raw, comments=True)
        except ValueError:
            out.problems.append(f"line {number}: unbalanced quotes")
            continue
        if not words:
            continue
        keyword = words[0]
        if keyword == "config" and len(words) in (2, 3):
            current = UciSection(words[1], words[2] if len(words) == 3 else "", number, len(out.of_type(words[1])))
            out.sections.append(current)
        elif keyword in ("option", "list") and len(words) == 3 and current is not None:
            value = UciValue(words[2], number)
            if keyword == "option":
                current.options[words[1]] = value  # a repeated option: the last one wins
            else:
                current.lists.setdefault(words[1], []).append(value)
        elif keyword == "package" and len(words) == 2:
            continue
        else:
            out.problems.append(f"line {number}: {keyword!r} is not a UCI statement here")
    return out


TRUE = frozenset({"1", "yes", "on", "true", "enabled"})
FALSE = frozenset({"0", "no", "off", "false", "disabled"})


def uci_bool(value: str) -> bool | None:
    """OpenWrt's 'bool' validation type; None for a value it rejects."""
    lower = value.strip().lower()
    return True if lower in TRUE else False if lower in FALSE else None
