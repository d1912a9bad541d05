"""/etc/passwd, parsed leniently: a malformed line is skipped, never fatal."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

PASSWD_LIMIT = 16 * 1024 * 1024


@dataclass(frozen=True)
class Account:
    name: str
    uid: int | None
    home: str
    shell: str
    line: int
    password: str = ""  # field 2 as written: 'x' when the hash lives in /etc/shadow
    gid: int | None = None


def parse_passwd(text: str) -> list[Account]:
    accounts = []
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split(":")
        if len(fields) != 7 or not fields[0] or raw.startswith(("#", "+", "-")):
            continue
        uid = int(fields[2]) if fields[2].isdigit() else None
        gid = int(fields[3]) if fields[3].isdigit() else None
        home = posixpath.normpath(fields[5]) if fields[5].startswith("/") else ""
        accounts.append(Account(name=fields[0], uid=uid, home=home, shell=fields[6], line=number, password=fields[1], gid=gid))
    return accounts


def guest_accounts(reader) -> list[Account]:
    """The guest's /etc/passwd (followed if a link), read and parsed once per scan: several collectors need its homes."""
    return reader.memo("passwd", lambda r: parse_passwd(r.read_text("/etc/passwd", PASSWD_LIMIT) or ""))
