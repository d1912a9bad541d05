"""The effective OpenSSH server configuration, resolved offline from file contents.

sshd reads its configuration twice (servconf.c): once at startup, where
lines outside ``Match`` blocks (and after ``Match all``) apply and the first
value of each keyword wins; and once per connection, where only lines in
``Match`` blocks that match the connection apply (again first value wins)
and every option they set replaces the startup value. ``Include`` reads
files matching a glob, sorted, relative to /etc/ssh; a ``Match`` inside an
included file ends with that file, and an ``Include`` inside a ``Match``
belongs to it. This module reproduces that from text alone, so the guest
need not run: the caller supplies ``read(path) -> text | None`` and
``glob(pattern) -> [paths]``.

Connections are described by user and groups; everything else a ``Match``
can test (address, host, local address and port, routing domain) is
unknown offline and taken as "may match", so the values reported are the
worst case over every client address.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

SSH_DIR = "/etc/ssh"
MAIN_CONFIG = "/etc/ssh/sshd_config"
MAX_INCLUDE_DEPTH = 16  # SERVCONF_MAX_DEPTH: deeper nesting (an include loop) is fatal to sshd

# Old names sshd still accepts for the same option (servconf.c keywords table).
ALIASES = {
    "challengeresponseauthentication": "kbdinteractiveauthentication",
    "pubkeyacceptedkeytypes": "pubkeyacceptedalgorithms",
    "hostbasedacceptedkeytypes": "hostbasedacceptedalgorithms",
    "skeyauthentication": "kbdinteractiveauthentication",
}

# Keywords sshd_config(5) allows after Match; any other keyword is only read at startup.
MATCH_KEYWORDS = frozenset(k.lower() for k in (
    "AcceptEnv AllowAgentForwarding AllowGroups AllowStreamLocalForwarding AllowTcpForwarding AllowUsers "
    "AuthenticationMethods AuthorizedKeysCommand AuthorizedKeysCommandUser AuthorizedKeysFile "
    "AuthorizedPrincipalsCommand AuthorizedPrincipalsCommandUser AuthorizedPrincipalsFile Banner "
    "CASignatureAlgorithms ChannelTimeout ChrootDirectory ClientAliveCountMax ClientAliveInterval DenyGroups "
    "DenyUsers DisableForwarding ExposeAuthInfo ForceCommand GatewayPorts GSSAPIAuthentication "
    "HostbasedAcceptedAlgorithms HostbasedAuthentication HostbasedUsesNameFromPacketOnly IgnoreRhosts Include "
    "IPQoS KbdInteractiveAuthentication KerberosAuthentication LogLevel MaxAuthTries MaxSessions "
    "PasswordAuthentication PermitEmptyPasswords PermitListen PermitOpen PermitRootLogin PermitTTY PermitTunnel "
    "PermitUserRC PubkeyAcceptedAlgorithms PubkeyAuthentication PubkeyAuthOptions RekeyLimit RevokedKeys RDomain "
    "SetEnv StreamLocalBindMask StreamLocalBindUnlink TrustedUserCAKeys UnusedConnectionTimeout X11DisplayOffset "
    "X11Forwarding X11UseLocalhost"
).split())  # fmt: skip

MATCH_ATTRIBUTES = frozenset({"all", "user", "group", "host", "address", "localaddress", "localport", "rdomain"})
_KEYWORD = re.compile(r"^([^\s=]+)(?:\s*=\s*|\s+|$)(.*)$", re.DOTALL)


@dataclass(frozen=True)
class Origin:
    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class MatchCriterion:
    attribute: str  # lower case
    patterns: str  # comma-separated pattern list, as written


@dataclass(frozen=True)
class MatchBlock:
    criteria: tuple[MatchCriterion, ...]
    origin: Origin
    text: str  # the Match line as written, for evidence

    @property
    def is_all(self) -> bool:
        return all(c.attribute == "all" for c in self.criteria)

    def describe(self) -> str:
        return f"'{self.text}' ({self.origin})"


@dataclass(frozen=True)
class Directive:
    keyword: str  # canonical, lower case (aliases resolved)
    name: str  # as written
    args: tuple[str, ...]
    origin: Origin
    matches: tuple[MatchBlock, ...] = ()  # enclosing Match blocks, outermost first: all must hold

    @property
    def in_match(self) -> bool:
        return bool(self.matches)

    @property
    def conditions(self) -> tuple[MatchBlock, ...]:
        """The Match blocks that test something; ``Match all`` tests nothing."""
        return tuple(m for m in self.matches if not m.is_all)

    @property
    def value(self) -> str:
        return self.args[0] if self.args else ""

    @property
    def deciding_match(self) -> MatchBlock | None:
        """The innermost Match that applies this line, for evidence."""
        conditions = self.conditions
        return conditions[-1] if conditions else None


@dataclass(frozen=True)
class Connection:
    """Who connects, as far as the offline config can tell.

    ``user`` None stands for any account other than root (its name unknown,
    maybe created at first boot); ``groups`` None means group membership is
    unknown.
    """

    label: str
    user: str | None
    groups: frozenset[str] | None = None


@dataclass
class EffectiveConfig:
    directives: list[Directive] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # every file read, in reading order
    problems: list[str] = field(default_factory=list)  # what makes sshd refuse the configuration
    notes: list[str] = field(default_factory=list)  # oddities sshd tolerates

    def startup(self, keyword: str) -> Directive | None:
        """The value sshd takes at startup: the first line outside any testing Match."""
        keyword = canonical(keyword)
        return next((d for d in self.directives if d.keyword == keyword and not d.conditions), None)

    def candidates(self, keyword: str, connection: Connection) -> list[Directive | None]:
        """Every line that can decide ``keyword`` for ``connection``, in the order sshd prefers them.

        A Match line whose criteria certainly hold ends the list (it always
        wins); lines whose criteria may hold (an address) come before it.
        The last entry is the startup value, or None for the compiled-in
        default, unless a certain Match hides it.
        """
        keyword = canonical(keyword)
        found: list[Directive | None] = []
        if keyword in MATCH_KEYWORDS:
            for directive in self.directives:
                if directive.keyword != keyword or not directive.in_match:
                    continue
                state = conjunction(directive.conditions, connection)
                if state is False:
                    continue
                found.append(directive)
                if state is True:
                    return found
        found.append(self.startup(keyword))
        return found


def canonical(keyword: str) -> str:
    lower = keyword.lower()
    return ALIASES.get(lower, lower)


def split_args(text: str) -> list[str]:
    """Arguments as sshd's argv_split sees them: quotes group, backslash escapes, '#' starts a comment."""
    args: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t\r\n\f":
            i += 1
        if i >= n or text[i] == "#":
            return args
        current: list[str] = []
        quote = None
        while i < n:
            c = text[i]
            if quote is None and c in " \t\r\n\f":
                break
            if c == "\\" and i + 1 < n and (text[i + 1] in "\\\"'" or (quote is None and text[i + 1] == " ")):
                current.append(text[i + 1])
                i += 2
                continue
            if quote is None and c in "\"'":
                quote = c
            elif c == quote:
                quote = None
            else:
                current.append(c)
            i += 1
        if quote is not None:
            raise ValueError("invalid quotes")
        args.append("".join(current))


def pattern_list_match(name: str, patterns: str, *, fold: bool = False) -> int:
    """OpenSSH match_pattern_list: 1 matched, -1 a negated pattern matched, 0 no match."""
    if fold:
        name = name.lower()
    result = 0
    for raw in patterns.split(","):
        negated = raw.startswith("!")
        pattern = raw[1:] if negated else raw
        if fold:
            pattern = pattern.lower()
        if fnmatch.fnmatchcase(name, pattern):
            if negated:
                return -1
            result = 1
    return result


def _may_match_other_user(patterns: str) -> bool:
    """Whether a User list can match some account other than root (the name is unknown)."""
    positives = [p for p in patterns.split(",") if p and not p.startswith("!")]
    return any(p != "root" for p in positives)


def criterion_state(criterion: MatchCriterion, connection: Connection) -> bool | None:
    """True or False when the connection decides it, None when it may go either way."""
    attribute, patterns = criterion.attribute, criterion.patterns
    if attribute == "all":
        return True
    if attribute == "user":
        if connection.user is None:
            return None if _may_match_other_user(patterns) else False
        return pattern_list_match(connection.user, patterns) == 1
    if attribute == "group":
        if connection.groups is None:
            return None if any(p and not p.startswith("!") for p in patterns.split(",")) else False
        results = [pattern_list_match(g, patterns) for g in connection.groups]
        return -1 not in results and 1 in results
    return None  # address, host, local address/port, rdomain: any client may satisfy them


def conjunction(blocks: Iterable[MatchBlock], connection: Connection) -> bool | None:
    state: bool | None = True
    for block in blocks:
        for criterion in block.criteria:
            value = criterion_state(criterion, connection)
            if value is False:
                return False
            if value is None:
                state = None
    return state


def glob_paths(pattern: str, paths: Iterable[str]) -> list[str]:
    """glob(3) over a list of paths: per component, '*' never crosses '/', a leading '.' is matched only literally; sorted."""
    want = posixpath.normpath(pattern).split("/")
    out = []
    for path in paths:
        parts = path.split("/")
        if len(parts) != len(want):
            continue
        if all(_component_match(p, w) for p, w in zip(parts, want)):
            out.append(path)
    return sorted(out)


def _component_match(name: str, pattern: str) -> bool:
    if name.startswith(".") and not pattern.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, pattern)


def _parse_match(text: str, origin: Origin) -> tuple[tuple[MatchCriterion, ...], str | None]:
    args = split_args(text)
    criteria: list[MatchCriterion] = []
    i = 0
    while i < len(args):
        attribute = args[i].lower()
        if attribute == "all":
            if criteria or len(args) > i + 1:
                return (), f"{origin}: 'all' cannot be combined with other Match criteria"
            return (MatchCriterion("all", ""),), None
        if i + 1 >= len(args):
            return (), f"{origin}: Match {args[i]} has no argument"
        criteria.append(MatchCriterion(attribute, args[i + 1]))
        i += 2
    if not criteria:
        return (), f"{origin}: Match without criteria"
    return tuple(criteria), None


def resolve(
    read: Callable[[str], str | None],
    glob: Callable[[str], list[str]],
    main: str = MAIN_CONFIG,
    home_of_root: str = "/root",
) -> EffectiveConfig:
    """Every directive of the configuration rooted at ``main``, with its file, line and enclosing Match blocks.

    ``read`` returns a file's text, None when it cannot be read; ``glob``
    returns matching paths (sorted like glob(3)). Problems sshd would refuse
    to start with (an unreadable file, an include loop, bad quotes, a Match
    it cannot parse) are listed in ``problems``.
    """
    config = EffectiveConfig()

    def parse(path: str, outer: tuple[MatchBlock, ...], depth: int) -> None:
        if depth > MAX_INCLUDE_DEPTH:
            config.problems.append(f"{path}: Include nested more than {MAX_INCLUDE_DEPTH} deep (an include loop?); sshd refuses to start")
            return
        text = read(path)
        if text is None:
            config.problems.append(f"{path}: cannot be read")
            return
        config.files.append(path)
        current = outer
        for number, raw in enumerate(text.split("\n"), start=1):
            origin = Origin(path, number)
            line = raw.strip(" \t\r\f\n")
            if not line or line.startswith("#"):
                continue
            found = _KEYWORD.match(line)
            if found is None:
                continue
            name, rest = found.group(1), found.group(2)
            keyword = canonical(name)
            if keyword == "match":
                criteria, problem = _parse_match(rest, origin)
                if problem:
                    config.problems.append(problem)
                    current = outer + (MatchBlock((MatchCriterion("unparsed", rest),), origin, f"Match {rest}".strip()),)
                    continue
                unknown = [c.attribute for c in criteria if c.attribute not in MATCH_ATTRIBUTES]
                if unknown:
                    config.notes.append(f"{origin}: Match criterion {', '.join(unknown)} not known here; taken as 'may match'")
                current = outer + (MatchBlock(criteria, origin, f"Match {rest.split('#', 1)[0].strip()}"),)
                continue
            try:
                args = split_args(rest)
            except ValueError:
                config.problems.append(f"{origin}: {name}: invalid quotes")
                continue
            if not args:
                config.problems.append(f"{origin}: no argument after keyword {name}")
                continue
            if keyword == "include":
                for argument in args:
                    if argument.startswith("~"):
                        pattern = home_of_root + argument[1:]
                    elif argument.startswith("/"):
                        pattern = argument
                    else:
                        pattern = posixpath.join(SSH_DIR, argument)
                    matched = glob(pattern)
                    if not matched:
                        config.notes.append(f"{origin}: Include {argument} matches no file")
                    for included in matched:
                        parse(included, current, depth + 1)
                continue
            directive = Directive(keyword, name, tuple(args), origin, current)
            if current and directive.conditions and keyword not in MATCH_KEYWORDS:
                config.notes.append(f"{origin}: {name} is not allowed inside a Match block")
            config.directives.append(directive)

    parse(main, (), 0)
    return config


# Upstream OpenSSH's compiled-in values (servconf.c fill_default_server_options) for the options the
# checks read. Debian, Ubuntu, RHEL-family, SUSE and Alpine build sshd without changing these; their
# shipped sshd_config files differ (Debian: KbdInteractiveAuthentication no, UsePAM yes, X11Forwarding
# yes), and those files are read, not assumed.
UPSTREAM_DEFAULTS = {
    "permitrootlogin": "prohibit-password",  # since OpenSSH 7.0; 'yes' before
    "passwordauthentication": "yes",
    "kbdinteractiveauthentication": "yes",
    "permitemptypasswords": "no",
    "usepam": "no",
    "authenticationmethods": "any",
    "hostbasedauthentication": "no",
    "ignorerhosts": "yes",
    "permituserenvironment": "no",
    "x11forwarding": "no",
    "allowtcpforwarding": "yes",
    "allowagentforwarding": "yes",
    "maxauthtries": "6",
    "loglevel": "INFO",
    "clientaliveinterval": "0",
    "usedns": "no",
    "authorizedkeysfile": ".ssh/authorized_keys .ssh/authorized_keys2",
}

# Releases that shipped OpenSSH older than 7.0, whose compiled-in PermitRootLogin was 'yes'.
_OLD_OPENSSH = {"debian": 9, "ubuntu": 16, "rhel": 7, "centos": 7, "oraclelinux": 7, "scientificlinux": 7, "sles": 13,
                "opensuse": 42, "alpine": 0}  # fmt: skip


@dataclass(frozen=True)
class Defaults:
    values: dict[str, str]
    assumption: str  # which build's defaults, for evidence

    def get(self, keyword: str) -> str:
        return self.values.get(canonical(keyword), "")


def compiled_defaults(os_info: dict | None) -> Defaults:
    """The compiled-in values sshd falls back on for this guest's distribution and release."""
    info = os_info or {}
    distro = (info.get("distro") or "").lower()
    version = str(info.get("version") or "")
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else None
    values = dict(UPSTREAM_DEFAULTS)
    if not distro or distro == "unknown" or major is None:
        return Defaults(values, "OS release unknown: OpenSSH 7.0 or later upstream defaults assumed")
    first_new = _OLD_OPENSSH.get(distro)
    if first_new is not None and major < first_new:
        values["permitrootlogin"] = "yes"
        return Defaults(values, f"{distro} {version} ships OpenSSH older than 7.0, compiled-in PermitRootLogin yes")
    return Defaults(values, f"{distro} {version}: OpenSSH 7.0 or later upstream defaults")
