"""Secret content rules: what a leaked credential looks like inside a file.

Pure functions over untrusted bytes (fuzzable): they never raise on bad
input. The rule ideas (ids, keyword prefilter, a named secret group) follow
Trivy's built-in secret rules; the regexes are our own and written to run in
linear time on hostile input.

A file is regex-scanned only for the rules one of whose keywords occurs in
it (case-insensitive substring), binaries (a NUL in the first 8 KiB) are not
scanned, only the first ``max_size`` bytes are looked at, and at most
``max_matches`` matches are kept per file.

Nothing a scan returns repeats a secret: a match carries its rule, line and
a redacted excerpt (first 4 characters then ``****``, and the length).

Allow rules are by *value* only (the documented AWS example keys): Trivy's
path allow rules (``usr-dirs`` skipping /usr/share, /usr/lib...) would hide
exactly the keys appliances ship under /usr/share/<app>, so there are none.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

DEFAULT_MAX_SIZE = 1024 * 1024
DEFAULT_MAX_MATCHES = 20
SNIFF_BYTES = 8 * 1024

CLOUD = "cloud"
DEV_SAAS = "dev-saas"
PRIVATE_KEY = "private-key"
APP_SECRET = "app-secret"
CATEGORIES = (CLOUD, DEV_SAAS, PRIVATE_KEY, APP_SECRET)


@dataclass(frozen=True)
class SecretMatch:
    rule_id: str
    category: str
    line: int
    redacted: str  # never the secret: "AKIA**** (20 chars)", or a key block's type
    length: int

    def describe(self, path: str | None = None) -> str:
        where = f"{path}:{self.line}" if path else f"line {self.line}"
        return f"{where} {self.rule_id} {self.redacted}"


@dataclass(frozen=True)
class ScanResult:
    matches: tuple[SecretMatch, ...] = ()
    binary: bool = False
    truncated: bool = False  # the file is longer than what was scanned
    more_matches: bool = False  # matches beyond max_matches were dropped

    @property
    def categories(self) -> set[str]:
        return {m.category for m in self.matches}


Finder = Callable[[str], Iterator[tuple[int, str, str]]]  # text -> (offset, secret, shown-instead-or-"")


@dataclass(frozen=True)
class Rule:
    id: str
    category: str
    title: str
    keywords: tuple[str, ...]  # lower case; the rule runs only when one occurs in the file
    find: Finder
    min_length: int = 1
    placeholder_check: bool = False  # generic assignments: skip ${VAR}, <...>, xxx, *** and friends
    skip_comments: bool = False  # generic assignments: commented-out examples are documentation


def redact(secret: str) -> str:
    """First 4 characters then ****, and the length; short secrets show nothing of themselves."""
    shown = secret[:4] if len(secret) >= 12 else ""
    return f"{shown}**** ({len(secret)} chars)"


def is_binary(data: bytes) -> bool:
    return b"\0" in data[:SNIFF_BYTES]


# -- finders ----------------------------------------------------------------


def _regex(pattern: str, flags: int = 0, group: str = "secret") -> Finder:
    compiled = re.compile(pattern, flags)

    def find(text: str) -> Iterator[tuple[int, str, str]]:
        for m in compiled.finditer(text):
            yield m.start(group), m.group(group), ""

    return find


_IDENTIFIER_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
MAX_KEY_LENGTH = 128
_IDENTIFIER_RUN = re.compile(r"[A-Za-z0-9_.-]*")


def _assignment(key: str, keyword: str, flags: int = re.IGNORECASE) -> Finder:
    """``key = value`` / ``key: value`` / ``"key": "value"`` / ``<key>value</key>`` with ``key`` ending the identifier.

    Driven by ``keyword`` hits: a regex tried at every offset of a large file
    costs far more than walking back from each hit to its identifier's start.
    """
    assign = re.compile(
        # "key: value" needs the blank YAML requires ("pass:insta" is a value, not an assignment); JSON has its quote
        r"(?<![A-Za-z0-9_.-])(?P<key>" + key + r")[\"']?(?:[ \t]*(?:=|:=|=>)[ \t]*|[ \t]*:[ \t]+|(?<=[\"']):[ \t]*)"
        r"(?:\"(?P<dq>[^\"\n]{0,256})\"|'(?P<sq>[^'\n]{0,256})'|(?P<bare>[^\s\"'`,;]{1,256}))",
        flags,
    )
    element = re.compile(r"<(?P<key>" + key + r")>(?P<value>[^<\n]{1,256})</(?P=key)>", flags)
    hits = re.compile(keyword, flags)

    def find(text: str) -> Iterator[tuple[int, str, str]]:
        run_end = -1
        for hit in hits.finditer(text):
            if hit.start() < run_end:  # same identifier as the previous hit: tried already
                continue
            run_end = _IDENTIFIER_RUN.match(text, hit.end()).end()  # type: ignore[union-attr]
            start, floor = hit.start(), max(0, hit.start() - MAX_KEY_LENGTH)
            while start > floor and text[start - 1] in _IDENTIFIER_CHARS:
                start -= 1
            m = assign.match(text, start)
            if m is None or (m.group("bare") is not None and _colon_mid_line(text, m)):
                continue
            for group in ("dq", "sq", "bare"):
                if m.group(group) is not None:
                    yield m.start(group), m.group(group), "bare" if group == "bare" else ""
                    break
        if "</" in text:
            for m in element.finditer(text):
                yield m.start("value"), m.group("value"), ""

    return find


_LINE_LEAD = frozenset(" \t-{,[\"'")


def _colon_mid_line(text: str, m: re.Match) -> bool:
    """A bare ``key: value`` after other words on its line is prose or a log message, not YAML.

    ("dpkg: base-passwd: dependency problems" in a dpkg log); a YAML key
    starts its line after indentation, a list dash or a flow brace.
    """
    between = text[m.end("key") : m.start("bare")]
    if "=" in between or ":" not in between:
        return False
    line_start = text.rfind("\n", 0, m.start("key")) + 1
    return any(c not in _LINE_LEAD for c in text[line_start : m.start("key")])


_PEM_BEGIN = re.compile(r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY( BLOCK)?-----")


def _private_key_blocks(text: str) -> Iterator[tuple[int, str, str]]:
    """PEM/OpenSSH/PGP private key blocks: BEGIN, a body of at least 32 base64 characters, END."""
    next_end: dict[str, int] = {}  # kind -> offset of its next END marker, -1 when none is left: one search per kind
    for m in _PEM_BEGIN.finditer(text):
        kind = f"{m.group(1)}PRIVATE KEY{m.group(2) or ''}"
        end = next_end.get(kind, 0)
        if 0 <= end < m.end():
            end = next_end[kind] = text.find(f"-----END {kind}-----", m.end())
        if end < 0 or end - m.end() > 256 * 1024:
            continue
        body = text[m.end() : end]
        if sum(c.isalnum() for c in body) < 32:  # a template or documentation, not a key
            continue
        yield m.start(), body.strip(), f"{kind} block"


_PPK = re.compile(r"^PuTTY-User-Key-File-(\d+): *(\S+)", re.MULTILINE)


def _putty_keys(text: str) -> Iterator[tuple[int, str, str]]:
    for m in _PPK.finditer(text):
        lines = text.find("Private-Lines:", m.end(), m.end() + 64 * 1024)
        if lines >= 0:
            yield m.start(), m.group(2), f"PuTTY private key file (version {m.group(1)}, {m.group(2)})"


_GCP_TYPE = re.compile(r"\"type\"\s*:\s*\"service_account\"")
_GCP_KEY_ID = re.compile(r"\"private_key_id\"\s*:\s*\"(?P<secret>[^\"\n]{1,256})\"")


def _gcp_service_account(text: str) -> Iterator[tuple[int, str, str]]:
    """A service-account key file: its type and a private key (a bare type is documentation)."""
    m = _GCP_TYPE.search(text)
    if m is None or "\"private_key\"" not in text:
        return
    key_id = _GCP_KEY_ID.search(text)
    if key_id is not None:
        yield key_id.start("secret"), key_id.group("secret"), ""
    else:
        yield m.start(), "service_account", "service account JSON with a private_key"


# -- the rules --------------------------------------------------------------

_AWS_PREFIXES = ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA", "A3T")
_DB_SCHEMES = r"postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver|oracle|cockroachdb|clickhouse|jdbc:[a-z0-9]+(?::[a-z0-9]+)?"
_PASSWORD_KEY = r"[A-Za-z0-9_.-]*?(?:password|passwd|passphrase)|(?:[A-Za-z0-9.-]*[_.-])?pass|[A-Za-z0-9.-]*[_.-](?:pwd|pw)"
_SECRET_KEY = r"[A-Za-z0-9_.-]*?(?:secret|secret[_.-]?key|token)"
_API_KEY = r"[A-Za-z0-9_.-]*?(?:api[_.-]?key|apikey|api[_.-]?secret|access[_.-]?key|auth[_.-]?key|private[_.-]?key)"

RULES: tuple[Rule, ...] = (
    # private keys first: their bodies must not be reported again as anything else
    Rule("private-key", PRIVATE_KEY, "Asymmetric private key (PEM, OpenSSH, PGP)", ("private key",), _private_key_blocks),
    Rule("putty-private-key", PRIVATE_KEY, "PuTTY private key file", ("putty-user-key-file",), _putty_keys),
    Rule("age-secret-key", PRIVATE_KEY, "age secret key", ("age-secret-key-1",),
         _regex(r"(?P<secret>AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58})")),
    # cloud providers
    Rule("aws-access-key-id", CLOUD, "AWS access key ID", tuple(p.lower() for p in _AWS_PREFIXES),
         _regex(r"(?<![A-Za-z0-9])(?P<secret>(?:A3T[A-Z0-9]|AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA)[A-Z0-9]{16})(?![A-Za-z0-9])")),
    Rule("aws-secret-access-key", CLOUD, "AWS secret access key", ("aws",),
         _regex(r"(?i)aws_?(?:sec(?:ret)?)?_?(?:access)?_?key[\"']?\s*(?::|=>|=)\s*[\"']?"
                r"(?P<secret>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])")),
    Rule("gcp-service-account", CLOUD, "Google Cloud service-account key", ("service_account",), _gcp_service_account),
    Rule("azure-storage-connection-string", CLOUD, "Azure storage connection string with an account key", ("accountkey=",),
         _regex(r"(?i)AccountName=[^;\s]+;\s*AccountKey=(?P<secret>[A-Za-z0-9+/]{86}==)")),
    Rule("azure-storage-account-key", CLOUD, "Azure storage account key", ("azure", "storage"),
         _regex(r"(?i)(?:azure|storage)[A-Za-z0-9_.-]{0,24}key[\"']?\s*(?::|=>|=)\s*[\"']?(?P<secret>[A-Za-z0-9+/]{86}==)")),
    # developer services and registries
    Rule("github-pat", DEV_SAAS, "GitHub personal access token", ("ghp_",),
         _regex(r"(?<![A-Za-z0-9_])(?P<secret>ghp_[0-9A-Za-z]{36})(?![0-9A-Za-z])")),
    Rule("github-oauth", DEV_SAAS, "GitHub OAuth access token", ("gho_",),
         _regex(r"(?<![A-Za-z0-9_])(?P<secret>gho_[0-9A-Za-z]{36})(?![0-9A-Za-z])")),
    Rule("github-app-token", DEV_SAAS, "GitHub App token", ("ghu_", "ghs_"),
         _regex(r"(?<![A-Za-z0-9_])(?P<secret>gh[us]_[0-9A-Za-z]{36})(?![0-9A-Za-z])")),
    Rule("github-refresh-token", DEV_SAAS, "GitHub refresh token", ("ghr_",),
         _regex(r"(?<![A-Za-z0-9_])(?P<secret>ghr_[0-9A-Za-z]{76})(?![0-9A-Za-z])")),
    Rule("github-fine-grained-pat", DEV_SAAS, "GitHub fine-grained personal access token", ("github_pat_",),
         _regex(r"(?P<secret>github_pat_[0-9A-Za-z]{22}_[0-9A-Za-z]{59})")),
    Rule("gitlab-pat", DEV_SAAS, "GitLab personal access token", ("glpat-",),
         _regex(r"(?P<secret>glpat-[0-9A-Za-z_-]{20})(?![0-9A-Za-z_-])")),
    Rule("npm-access-token", DEV_SAAS, "npm access token", ("npm_",),
         _regex(r"(?<![A-Za-z0-9_])(?P<secret>npm_[0-9A-Za-z]{36})(?![0-9A-Za-z])")),
    Rule("npmrc-auth-token", DEV_SAAS, "npm registry credential in an .npmrc", ("_authtoken", "_auth", "_password"),
         _regex(r"(?m)^[ \t]*(?:\S*:)?_(?:authToken|auth|password)[ \t]*=[ \t]*[\"']?(?P<secret>[^\s\"']+)"),
         placeholder_check=True),
    Rule("pypi-upload-token", DEV_SAAS, "PyPI upload token", ("pypi-ageichlwas5vcmc",),
         _regex(r"(?P<secret>pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,1000})")),
    Rule("docker-config-auth", DEV_SAAS, "Container registry credential (docker config auths)", ("\"auth\"", "\"identitytoken\""),
         _regex(r"\"(?:auth|identitytoken)\"\s*:\s*\"(?P<secret>[A-Za-z0-9+/=._-]{4,})\""), placeholder_check=True),
    Rule("slack-access-token", DEV_SAAS, "Slack token", ("xoxb-", "xoxa-", "xoxp-", "xoxr-", "xoxs-"),
         _regex(r"(?P<secret>xox[baprs]-[0-9A-Za-z-]{10,250})")),
    Rule("slack-web-hook", DEV_SAAS, "Slack incoming webhook", ("hooks.slack.com",),
         _regex(r"https://hooks\.slack\.com/services/(?P<secret>[A-Za-z0-9+/_-]{20,100})")),
    Rule("stripe-secret-token", DEV_SAAS, "Stripe secret or restricted key", ("sk_live_", "sk_test_", "rk_live_", "rk_test_"),
         _regex(r"(?<![A-Za-z0-9_])(?P<secret>[sr]k_(?:live|test)_[0-9A-Za-z]{10,99})(?![0-9A-Za-z])")),
    # application secrets
    Rule("jwt-token", APP_SECRET, "JSON Web Token", ("eyj",),
         _regex(r"(?<![A-Za-z0-9_-])(?P<secret>eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})")),
    Rule("database-dsn-password", APP_SECRET, "Database URL with an inline password", ("://",),
         _regex(r"(?i)(?<![A-Za-z0-9+.-])(?:" + _DB_SCHEMES + r")://[^:@/\s\"']*:(?P<secret>[^@/\s\"']+)@"),
         placeholder_check=True),
    Rule("url-embedded-credentials", APP_SECRET, "URL with an inline password", ("://",),
         _regex(r"(?i)(?<![A-Za-z0-9+.-])(?:https?|ftps?|sftp|ssh|smtps?|imaps?|ldaps?|git|svn)://[^:@/\s\"']+:(?P<secret>[^@/\s\"']+)@[A-Za-z0-9.-]"),
         placeholder_check=True),
    Rule("generic-password", APP_SECRET, "Password assigned in a file", ("pass", "pw"),
         _assignment(_PASSWORD_KEY, "pass|pw"), min_length=4, placeholder_check=True, skip_comments=True),
    Rule("generic-secret", APP_SECRET, "Secret or token assigned in a file", ("secret", "token"),
         _assignment(_SECRET_KEY, "secret|token"), min_length=8, placeholder_check=True, skip_comments=True),
    Rule("generic-api-key", APP_SECRET, "API key assigned in a file", ("key",),
         _assignment(_API_KEY, "key"), min_length=8, placeholder_check=True, skip_comments=True),
)  # fmt: skip

RULE_IDS = frozenset(r.id for r in RULES)

# Published example keys (AWS documentation, Stripe documentation): never real credentials.
ALLOWED_VALUES = frozenset({
    "AKIAIOSFODNN7EXAMPLE", "AKIAI44QH8DHBEXAMPLE",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
    "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
    "pass:insta",  # OpenSSL's shipped openssl.cnf: the Insta Demo CA's published CMP test secret
})  # fmt: skip

_PLACEHOLDER_WORDS = frozenset(
    "none null nil true false yes no on off undefined required optional empty default string str int env "
    "password passwd secret token apikey api_key your_password yourpassword your_secret your-secret "
    "example placeholder redacted hidden masked unset todo tbd fixme".split()
)
_REPEATED = re.compile(r"^([xX*#.?_-])\1+$")
_TEMPLATE = re.compile(  # $name... is a variable ($dir/private/key.pem); $y$... is a crypt hash
    r"^(?:\$\{.*\}|\$\(.*\)|\$[A-Za-z_][A-Za-z0-9_]*(?:[^A-Za-z0-9_$].*)?|<[^<>]*>|\{\{.*\}\}|\{%.*%\}|%\(.*\)[sd]|%[sd]|@[A-Za-z_]+@|__[A-Za-z0-9_]+__)$"
)
_IDENTIFIER_REF = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+$|^[A-Za-z_][A-Za-z0-9_.]*[(\[]")


def is_placeholder(value: str, bare: bool = False) -> bool:
    """A value nobody would log in with: empty, a variable reference, a template slot, xxx or ***."""
    v = value.strip()
    if not v or _REPEATED.match(v) or _TEMPLATE.match(v) or v.lower() in _PLACEHOLDER_WORDS:
        return True
    if v.startswith(("${", "$(", "%(", "{{", "<")):  # a template slot or expression running to the end of the line
        return True
    # unquoted: an expression (os.environ["X"], settings.DB_PASSWORD) or a file path, not a literal
    return bare and (bool(_IDENTIFIER_REF.match(v)) or v.startswith(("/", "./", "~/")))


def _looks_random(value: str) -> bool:
    """Two character classes at least: a token, not a word (generic secrets only)."""
    classes = sum(bool(re.search(p, value)) for p in ("[a-z]", "[A-Z]", "[0-9]", "[^A-Za-z0-9]"))
    return classes >= 2


_COMMENT_PREFIXES = ("#", ";", "//", "--", "<!--", "*", "rem ")


class _Lines:
    """Line numbers by bisection over newline offsets, and comment spans: computed once per file, when first asked."""

    def __init__(self, text: str):
        self.text = text
        self._newlines: list[int] | None = None
        self._comments: list[tuple[int, int]] | None = None

    def number(self, offset: int) -> int:
        if self._newlines is None:
            self._newlines = [m.start() for m in re.finditer("\n", self.text)]
        return bisect.bisect_left(self._newlines, offset) + 1

    def commented(self, offset: int) -> bool:
        """On a comment line (#, ;, //...) or inside an XML/HTML comment block."""
        start = self.text.rfind("\n", 0, offset) + 1
        if self.text[start : offset + 1].lstrip().lower().startswith(_COMMENT_PREFIXES):
            return True
        if self._comments is None:
            self._comments = [(m.start(), m.end()) for m in _XML_COMMENT.finditer(self.text)] if "<!--" in self.text else []
        i = bisect.bisect_right(self._comments, (offset, len(self.text))) - 1
        return i >= 0 and self._comments[i][0] <= offset < self._comments[i][1]


_XML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)


def scan(
    data: bytes,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_matches: int = DEFAULT_MAX_MATCHES,
    rules: tuple[Rule, ...] = RULES,
) -> ScanResult:
    """Every rule match in the first ``max_size`` bytes of ``data``, redacted, in file order."""
    if is_binary(data):
        return ScanResult(binary=True, truncated=len(data) > max_size)
    text = data[:max_size].decode("utf-8", "replace")
    lowered = text.lower()
    lines = _Lines(text)
    found: list[tuple[int, SecretMatch]] = []
    seen_offsets: set[int] = set()  # two rules on one value (aws key / generic api key): the first, more specific, wins
    key_spans: list[tuple[int, int]] = []
    more = False
    for rule in rules:
        if not any(k in lowered for k in rule.keywords):
            continue
        for offset, secret, shown in rule.find(text):
            value = secret.strip()
            if offset in seen_offsets or value in ALLOWED_VALUES or len(value) < rule.min_length:
                continue
            if any(a <= offset < b for a, b in key_spans):  # inside a key block already reported
                continue
            if rule.placeholder_check and is_placeholder(value, bare=shown == "bare"):
                continue
            if rule.id.startswith("generic-") and rule.id != "generic-password" and not _looks_random(value):
                continue
            if rule.skip_comments and lines.commented(offset):
                continue
            if len(found) >= max_matches:
                more = True
                break
            seen_offsets.add(offset)
            if rule.category == PRIVATE_KEY:
                key_spans.append((offset, offset + len(secret) + 64))
            redacted = shown if shown and shown != "bare" else redact(value)
            found.append((offset, SecretMatch(rule.id, rule.category, lines.number(offset), redacted, len(value))))
    found.sort(key=lambda item: item[0])
    return ScanResult(
        matches=tuple(m for _, m in found), truncated=len(data) > max_size, more_matches=more
    )
