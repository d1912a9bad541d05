"""Installer answer files: does a kickstart, preseed or autoinstall file hold a password?

Pure functions over untrusted text, never repeating a value: they say which
account gets a password and in which form (plain text, hash, locked).

- Kickstart (anaconda-ks.cfg and friends): ``rootpw [--iscrypted|--plaintext|--lock] VALUE``,
  ``user --name=N --password=VALUE [--iscrypted]``.
- Debian preseed and the d-i answer log (/var/log/installer/cdebconf/questions.dat):
  ``d-i passwd/root-password[-again|-crypted] password VALUE``, ``passwd/user-password...``;
  questions.dat records ``Name: passwd/root-password`` then ``Value: ...``.
- Ubuntu autoinstall (subiquity): ``identity: {password: HASH}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class PasswordAnswer:
    account: str  # "root", a user name, or "a user"
    form: str  # "plain-text password", "password hash", "locked"
    line: int

    def describe(self) -> str:
        return f"{self.form} for {self.account} (line {self.line})"


_ROOTPW = re.compile(r"^[ \t]*rootpw\b(?P<args>[^\n]*)", re.MULTILINE)
_KS_USER = re.compile(r"^[ \t]*user\b(?P<args>[^\n]*--password[= ][^\n]*)", re.MULTILINE)
_PRESEED = re.compile(
    r"^[ \t]*\S+[ \t]+passwd/(?P<who>root|user)-password(?P<crypted>-crypted)?(?:-again)?[ \t]+password[ \t]+(?P<value>\S[^\n]*)",
    re.MULTILINE,
)
_QUESTIONS = re.compile(r"^Name: passwd/(?P<who>root|user)-password(?P<crypted>-crypted)?\n(?:[A-Za-z-]+: [^\n]*\n){0,8}?Value: (?P<value>\S[^\n]*)", re.MULTILINE)
_AUTOINSTALL = re.compile(r"^[ \t]*identity[ \t]*:[^\n]*\n(?:[ \t]+[^\n]*\n){0,8}?[ \t]+password[ \t]*:[ \t]*(?P<value>\S[^\n]*)", re.MULTILINE)
_HASH = re.compile(r"^[\"']?\$(?:1|2[abxy]?|5|6|y|gy|7|sha1)\$")


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _kickstart_user(args: str) -> str:
    m = re.search(r"--name[= ](\S+)", args)
    return m.group(1) if m else "a user"


def password_answers(text: str) -> list[PasswordAnswer]:
    """Every password an installer answer file sets, in file order."""
    found: list[PasswordAnswer] = []
    for m in _ROOTPW.finditer(text):
        args = m.group("args")
        if "--lock" in args and not re.search(r"--(?:iscrypted|plaintext)|\s[^-\s]\S*", args):
            form = "locked"
        else:
            form = "password hash" if "--iscrypted" in args else "plain-text password"
        found.append(PasswordAnswer("root", form, _line(text, m.start())))
    for m in _KS_USER.finditer(text):
        args = m.group("args")
        form = "password hash" if "--iscrypted" in args else "plain-text password"
        found.append(PasswordAnswer(_kickstart_user(args), form, _line(text, m.start())))
    for pattern in (_PRESEED, _QUESTIONS):
        for m in pattern.finditer(text):
            form = "password hash" if m.group("crypted") or _HASH.match(m.group("value")) else "plain-text password"
            found.append(PasswordAnswer("root" if m.group("who") == "root" else "a user", form, _line(text, m.start())))
    for m in _AUTOINSTALL.finditer(text):
        form = "password hash" if _HASH.match(m.group("value")) else "plain-text password"
        found.append(PasswordAnswer("the autoinstall identity user", form, _line(text, m.start("value"))))
    return sorted(found, key=lambda a: a.line)


def describe(answers: list[PasswordAnswer]) -> str:
    """'holds a root password hash (line 12); ...' or that it holds none."""
    real = [a for a in answers if a.form != "locked"]
    if not real:
        return "holds no password answer" + ("; root is locked" if answers else "")
    root = [a for a in real if a.account == "root"]
    head = f"holds a root {root[0].form} (line {root[0].line})" if root else "holds no root password"
    others = [a.describe() for a in real if a.account != "root"]
    return head + (f"; also {'; '.join(others)}" if others else "")
