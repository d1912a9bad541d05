"""The account databases and sudo rules, parsed from text: shadow, group, login.defs, sudoers, doas.conf.

Lenient like ``certify.guest.parsers.passwd``: a malformed line is skipped, never fatal,
and nothing here reads files. Hashes are classified, never reported.
"""

from __future__ import annotations

import posixpath
import re
from collections import deque
from dataclasses import dataclass, field

# -- shadow, gshadow, group, login.defs ---------------------------------------------------------


@dataclass(frozen=True)
class ShadowEntry:
    """One /etc/shadow (or gshadow) line: the name and its password field."""

    name: str
    password: str
    line: int


def parse_shadow(text: str) -> list[ShadowEntry]:
    """shadow (9 fields) and gshadow (4 fields) lines alike: only name and field 2 matter here."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split(":")
        if len(fields) < 2 or not fields[0] or raw.startswith(("#", "+", "-")):
            continue
        entries.append(ShadowEntry(name=fields[0], password=fields[1], line=number))
    return entries


@dataclass(frozen=True)
class Group:
    name: str
    gid: int | None
    members: tuple[str, ...]
    line: int


def parse_group(text: str) -> list[Group]:
    groups = []
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split(":")
        if len(fields) != 4 or not fields[0] or raw.startswith(("#", "+", "-")):
            continue
        gid = int(fields[2]) if fields[2].isdigit() else None
        groups.append(Group(fields[0], gid, tuple(m for m in fields[3].split(",") if m), number))
    return groups


@dataclass(frozen=True)
class LoginDefs:
    uid_min: int = 1000
    sys_uid_max: int = 999


def parse_login_defs(text: str) -> LoginDefs:
    """UID_MIN and SYS_UID_MAX (shadow-utils' defaults when absent: 1000, and UID_MIN - 1)."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        parts = raw.split("#", 1)[0].split()
        if len(parts) >= 2:
            values[parts[0]] = parts[1]

    def number(key: str) -> int | None:
        value = values.get(key, "")
        return int(value) if value.isdigit() and len(value) < 11 else None

    uid_min = number("UID_MIN") or 1000
    sys_uid_max = number("SYS_UID_MAX")
    return LoginDefs(uid_min=uid_min, sys_uid_max=uid_min - 1 if sys_uid_max is None else sys_uid_max)


# -- password fields and shells -----------------------------------------------------------------

EMPTY, LOCKED, USABLE, INVALID = "empty", "locked", "usable", "invalid"
_DES_LIKE = re.compile(r"^[./0-9A-Za-z]{13}$|^_[./0-9A-Za-z]{19}$")


def password_state(field_value: str) -> str:
    """'empty' (no password at all), 'locked' ('!' or '*' first), 'usable' (a crypt hash) or 'invalid'.

    An 'invalid' field ('x' in shadow, Solaris' 'LK'/'NP') is no crypt output,
    so no password can match it: it is as good as locked.
    """
    if field_value == "":
        return EMPTY
    if field_value.startswith(("!", "*")):
        return LOCKED
    if field_value.startswith("$") or _DES_LIKE.match(field_value):
        return USABLE
    return INVALID


# Shells that give no interactive session: CIS no_shelllogin_for_systemaccounts allows nologin and
# false; sync/shutdown/halt are the traditional accounts' own commands.
NON_LOGIN_SHELLS = frozenset({"nologin", "false", "true", "sync", "shutdown", "halt"})


def interactive_shell(shell: str) -> bool:
    """Whether a passwd shell gives a session. An empty field means /bin/sh to login(1)."""
    if shell.strip() == "":
        return True
    return shell != "/dev/null" and posixpath.basename(shell.strip()) not in NON_LOGIN_SHELLS


# -- backups of the account databases -----------------------------------------------------------

ACCOUNT_DATABASES = ("passwd", "shadow", "group", "gshadow", "subuid", "subgid")
_BACKUP_SUFFIX = re.compile(
    r"^(?:-|~|[._-](?:bak|old|orig|save|sav|backup|bck|dpkg-old|dpkg-dist|dpkg-bak|rpmsave|rpmnew|rpmorig|"
    r"ucf-old|ucf-dist|[0-9]{1,14})(?:[._-]?[0-9]{1,14})?~?)$"
)


def backup_of(path: str) -> str | None:
    """The live database a path is a copy of (/etc/shadow- -> /etc/shadow), or None.

    /etc holds shadow-utils' own '-' copies and editors' leftovers; /var/backups
    holds the copies Debian's daily cron job makes (shadow.bak).
    """
    directory, name = posixpath.split(path)
    if directory not in ("/etc", "/var/backups"):
        return None
    for base in ACCOUNT_DATABASES:
        if name.startswith(base) and _BACKUP_SUFFIX.match(name[len(base) :]):
            return f"/etc/{base}"
    return None


# -- sudoers --------------------------------------------------------------------------------------

_INCLUDE = re.compile(r"^[#@](include|includedir)\s+(.+?)\s*$")
_DEFAULTS = re.compile(r"^Defaults(?:([:@!>])\s*(\S+))?(?:\s+(.*))?$")
_ALIAS = re.compile(r"^(User|Runas|Host|Cmnd|Cmd)_Alias\s+(.*)$")
_TAG = re.compile(r"^(NOPASSWD|PASSWD|NOEXEC|EXEC|SETENV|NOSETENV|LOG_INPUT|NOLOG_INPUT|LOG_OUTPUT|NOLOG_OUTPUT|"
                  r"MAIL|NOMAIL|FOLLOW|NOFOLLOW|INTERCEPT|NOINTERCEPT)\s*:\s*")  # fmt: skip
_RUNAS = re.compile(r"^\(([^)]*)\)\s*")
_OPTION = re.compile(r'^(ROLE|TYPE|CWD|CHROOT|TIMEOUT|NOTBEFORE|NOTAFTER|APPARMOR_PROFILE|PRIVS|LIMITPRIVS)\s*=\s*("[^"]*"|\S+)\s*')
_DIGEST = re.compile(r"^(sha224|sha256|sha384|sha512):\S+\s+")
_HOST_SECTION = re.compile(r"\s:\s*[^\s:=,()]+(?:\s*,\s*[^\s:=,()]+)*\s*=\s*")
_ALIAS_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
MAX_ALIAS_DEPTH = 8

# Commands that are as good as ALL: a shell or su gives a root shell without further questions.
SHELL_COMMANDS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish", "ash", "busybox", "su"})


@dataclass(frozen=True)
class SudoCommand:
    text: str
    nopasswd: bool
    negated: bool


@dataclass(frozen=True)
class SudoRule:
    line: int
    text: str  # the whole rule, continuation lines joined
    commands: tuple[SudoCommand, ...]


@dataclass(frozen=True)
class SudoDefaults:
    line: int
    text: str
    parameters: tuple[str, ...]


@dataclass(frozen=True)
class SudoInclude:
    line: int
    path: str  # as written, relative to the including file's directory when not absolute
    directory: bool


@dataclass(frozen=True)
class Sudoers:
    rules: tuple[SudoRule, ...] = ()
    defaults: tuple[SudoDefaults, ...] = ()
    includes: tuple[SudoInclude, ...] = ()
    cmnd_aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) with backslash-newline continuations joined."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        if raw.endswith("\\") and not raw.endswith("\\\\"):
            pending.append(raw[:-1])
            continue
        out.append((start, " ".join(pending + [raw])))
        pending = []
    if pending:
        out.append((start, " ".join(pending)))
    return out


def _strip_comment(line: str) -> str:
    """Drop a '#' comment; '#' followed by digits is a uid (#0) and stays."""
    for i, c in enumerate(line):
        if c == "#" and (i == 0 or line[i - 1] != "\\") and not line[i + 1 : i + 2].isdigit():
            return line[:i]
    return line


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses and quotes, honouring backslash escapes."""
    parts, current, depth, quoted, escaped = [], [], 0, False, False
    for c in text:
        if escaped:
            current.append(c)
            escaped = False
            continue
        if c == "\\":
            current.append(c)
            escaped = True
        elif c == '"':
            quoted = not quoted
            current.append(c)
        elif c == "(" and not quoted:
            depth += 1
            current.append(c)
        elif c == ")" and not quoted:
            depth = max(0, depth - 1)
            current.append(c)
        elif c == sep and depth == 0 and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
    parts.append("".join(current))
    return parts


def _unquote_path(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    return re.sub(r"\\(.)", r"\1", text)


def parse_sudoers(text: str) -> Sudoers:
    rules, defaults, includes, aliases = [], [], [], {}
    for number, raw in logical_lines(text):
        stripped = raw.strip()
        if m := _INCLUDE.match(stripped):  # '#include' is a directive, not a comment
            includes.append(SudoInclude(number, _unquote_path(m.group(2)), m.group(1) == "includedir"))
            continue
        line = _strip_comment(raw).strip()
        if not line:
            continue
        if m := _DEFAULTS.match(line):
            params = tuple(p.strip() for p in _split_top(m.group(3) or "", ",") if p.strip())
            defaults.append(SudoDefaults(number, line, params))
            continue
        if m := _ALIAS.match(line):
            if m.group(1) in ("Cmnd", "Cmd"):
                for definition in _split_top(m.group(2), ":"):
                    name, _, members = definition.partition("=")
                    if name.strip():
                        aliases[name.strip()] = tuple(c.strip() for c in _split_top(members, ",") if c.strip())
            continue
        who, equals, spec = line.partition("=")
        if not equals or not who.strip():
            continue
        rules.append(SudoRule(number, line, tuple(_commands(spec))))
    return Sudoers(tuple(rules), tuple(defaults), tuple(includes), aliases)


def _commands(spec: str) -> list[SudoCommand]:
    """The commands of a rule's right-hand side, each with the NOPASSWD state in force for it.

    Tags carry over to the following commands of the same host section until
    another tag changes them; a new 'host = ...' section starts afresh.
    """
    out: list[SudoCommand] = []
    nopasswd = False
    pending = deque(_split_top(spec, ","))
    while pending:
        item = pending.popleft().strip()
        while True:
            if m := _RUNAS.match(item):
                item = item[m.end() :]
            elif m := _OPTION.match(item):
                item = item[m.end() :]
            elif m := _TAG.match(item):
                if m.group(1) in ("NOPASSWD", "PASSWD"):
                    nopasswd = m.group(1) == "NOPASSWD"
                item = item[m.end() :]
            elif m := _DIGEST.match(item):
                item = item[m.end() :]
            else:
                break
        section = _HOST_SECTION.search(item)
        if section:
            pending.appendleft(item[section.end() :])
            item = item[: section.start()]
        command = item.strip()
        if command:
            negated = command.startswith("!")
            out.append(SudoCommand(command.lstrip("!").strip(), nopasswd, negated))
        if section:
            nopasswd = False
    return out


def broad_command(command: str, aliases: dict[str, tuple[str, ...]], depth: int = 0) -> bool:
    """ALL, a shell or su, a whole directory ('/usr/bin/*'), or a Cmnd_Alias holding one of them."""
    word = command.split()[0] if command.split() else ""
    if word == "ALL" or word.endswith("/*") or word == "*":
        return True
    if _ALIAS_NAME.match(word) and word in aliases and depth < MAX_ALIAS_DEPTH:
        return any(broad_command(c.lstrip("!").strip(), aliases, depth + 1) for c in aliases[word] if not c.startswith("!"))
    return word.startswith("/") and posixpath.basename(word) in SHELL_COMMANDS


def includedir_member(name: str) -> bool:
    """Whether sudo reads a file of an @includedir: not when the name has a '.' or ends in '~'."""
    return "." not in name and not name.endswith("~")


def resolve_include(path: str, including_file: str, hostname: str) -> str:
    """An include path as sudo opens it: relative to the including file's directory, %h the host name."""
    path = path.replace("%h", hostname)
    return posixpath.normpath(path if path.startswith("/") else posixpath.join(posixpath.dirname(including_file), path))


# -- doas.conf ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DoasRule:
    line: int
    text: str
    nopass: bool
    identity: str
    command: str | None  # None: any command


_DOAS_WORD = re.compile(r'"(?:[^"\\]|\\.)*"?|(?:[^\s"\\]|\\.?)+')  # linear, unlike shlex on a long word


def parse_doas(text: str) -> list[DoasRule]:
    """'permit [options] identity [as target] [cmd command [args ...]]'; deny rules grant nothing and are left out."""
    rules = []
    for number, raw in logical_lines(text):
        line = raw.split("#", 1)[0].strip()
        words = [_unquote_path(w) for w in _DOAS_WORD.findall(line)]
        if not words or words[0] != "permit":
            continue
        options: set[str] = set()
        rest = words[1:]
        while rest and rest[0] in ("nopass", "nolog", "persist", "keepenv", "setenv"):
            word = rest.pop(0)
            options.add(word)
            if word == "setenv" and rest and rest[0] == "{":
                while rest and rest.pop(0) != "}":
                    pass
        if not rest:
            continue
        identity = rest.pop(0)
        command = rest[rest.index("cmd") + 1] if "cmd" in rest[:-1] else None
        rules.append(DoasRule(number, line, "nopass" in options, identity, command))
    return rules


# -- default passwords ----------------------------------------------------------------------------

DEFAULT_PASSWORDS_RESOURCE = "data/default-passwords.txt"


def parse_password_list(text: str) -> list[str]:
    """One password a line; '#' comments and blank lines skipped. Entry numbers count from 1."""
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def default_passwords() -> list[str]:
    """The common default passwords shipped with certify."""
    from importlib import resources

    return parse_password_list(resources.files("certify.guest.parsers").joinpath(DEFAULT_PASSWORDS_RESOURCE).read_text("utf-8"))
