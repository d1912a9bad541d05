"""cloud-init configuration and cached user-data: the password-shaped things baked into it.

Pure functions over untrusted text. YAML is parsed with ``yaml.safe_load``
on a bounded size, and walked with a node budget (aliases can make a small
document a huge graph); text that is not YAML (a shell script, a MIME
multipart, a broken file) falls back to line patterns.

What counts (cloud-init's cc_set_passwords and users-groups modules):
``password:`` (the default user's), ``chpasswd`` with a ``list``/``users``
entry whose password is not ``R``/``RANDOM``, ``ssh_pwauth: true``,
``ssh_authorized_keys`` baked in (top level or for a user), and per-user
``passwd``/``hashed_passwd``/``plain_text_passwd``. Nothing returned
repeats a value: an issue names the key, its line and a length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

YAML_LIMIT = 256 * 1024
NODE_BUDGET = 20_000
_RANDOM = {"r", "random"}
_TRUE = {"true", "yes", "on", "1", "y"}


@dataclass(frozen=True)
class CloudInitIssue:
    what: str  # "chpasswd sets a password for root", ...
    line: int | None = None

    def describe(self) -> str:
        return f"{self.what} (line {self.line})" if self.line else self.what


def _line_of(text: str, pattern: str) -> int | None:
    m = re.search(pattern, text, re.MULTILINE)
    return text.count("\n", 0, m.start()) + 1 if m else None


def _key_line(text: str, key: str) -> int | None:
    return _line_of(text, r"^[ \t-]*" + re.escape(key) + r"[ \t]*:")


def _chpasswd_entries(chpasswd: Any) -> list[tuple[str, bool]]:
    """(user, password is random) for each entry of chpasswd's ``list`` (old) or ``users`` (new) form."""
    out: list[tuple[str, bool]] = []
    if not isinstance(chpasswd, dict):
        return out
    legacy = chpasswd.get("list")
    if isinstance(legacy, str):
        legacy = legacy.splitlines()
    if isinstance(legacy, list):
        for item in legacy:
            if isinstance(item, str) and ":" in item:
                user, _, password = item.strip().partition(":")
                out.append((user, password.strip().lower() in _RANDOM))
    users = chpasswd.get("users")
    if isinstance(users, list):
        for item in users:
            if isinstance(item, dict) and ("password" in item or item.get("type") == "RANDOM"):
                random = str(item.get("type", "")).upper() == "RANDOM" or str(item.get("password", "")).lower() in _RANDOM
                out.append((str(item.get("name", "?")), random))
    return out


def _has_keys(value: Any) -> int:
    if isinstance(value, str):
        return 1 if value.strip() else 0
    if isinstance(value, list):
        return sum(1 for v in value if isinstance(v, str) and v.strip())
    return 0


def _budget_ok(value: Any) -> bool:
    """False when the document expands past NODE_BUDGET nodes (an alias bomb)."""
    count, stack, seen = 0, [value], set()
    while stack:
        node = stack.pop()
        count += 1
        if count > NODE_BUDGET:
            return False
        if isinstance(node, (dict, list)):
            if id(node) in seen:  # aliases share objects: each is walked once, but still counted
                continue
            seen.add(id(node))
            stack.extend(node.values() if isinstance(node, dict) else node)
            if isinstance(node, dict):
                stack.extend(node.keys())
    return True


def analyze(text: str) -> list[CloudInitIssue]:
    """Issues in one cloud-config document (or user-data of another kind, by lines)."""
    data = None
    if len(text) <= YAML_LIMIT:
        try:
            data = yaml.safe_load(text)
        except (yaml.YAMLError, RecursionError, ValueError):
            data = None
    if isinstance(data, dict) and _budget_ok(data):
        return _from_yaml(text, data)
    return _from_lines(text)


def _from_yaml(text: str, doc: dict) -> list[CloudInitIssue]:
    issues = []
    password = doc.get("password")
    if isinstance(password, (str, int)) and str(password).strip() and str(password).lower() not in _RANDOM:
        issues.append(CloudInitIssue(f"password: sets the default user's password ({len(str(password))} chars)", _key_line(text, "password")))
    for user, random in _chpasswd_entries(doc.get("chpasswd")):
        if not random:
            issues.append(CloudInitIssue(f"chpasswd sets a fixed password for {user}", _key_line(text, "chpasswd")))
    if str(doc.get("ssh_pwauth", "")).lower() in _TRUE:
        issues.append(CloudInitIssue("ssh_pwauth: true enables SSH password login", _key_line(text, "ssh_pwauth")))
    keys = _has_keys(doc.get("ssh_authorized_keys"))
    if keys:
        issues.append(CloudInitIssue(f"ssh_authorized_keys bakes in {keys} key(s)", _key_line(text, "ssh_authorized_keys")))
    users = doc.get("users")
    if isinstance(users, dict):  # a single user written as a mapping
        users = [users]
    default_user = (doc.get("system_info") or {}).get("default_user") if isinstance(doc.get("system_info"), dict) else None
    for user in [*(users if isinstance(users, list) else []), default_user]:
        if not isinstance(user, dict):
            continue
        name = str(user.get("name", "default user"))
        for key in ("plain_text_passwd", "hashed_passwd", "passwd"):
            value = user.get(key)
            if isinstance(value, (str, int)) and str(value).strip():
                kind = "a plain-text password" if key == "plain_text_passwd" else "a password hash"
                issues.append(CloudInitIssue(f"{key} gives {name} {kind}", _key_line(text, key)))
        keys = _has_keys(user.get("ssh_authorized_keys"))
        if keys:
            issues.append(CloudInitIssue(f"ssh_authorized_keys bakes in {keys} key(s) for {name}", _key_line(text, "ssh_authorized_keys")))
    return issues


_LINE_PATTERNS = (
    (r"^\s*password\s*:\s*\S", "password: sets the default user's password"),
    (r"^\s*chpasswd\s*:", "chpasswd sets passwords"),
    (r"^\s*ssh_pwauth\s*:\s*(?:true|yes|on|1)\b", "ssh_pwauth: true enables SSH password login"),
    (r"^\s*(?:plain_text_passwd|hashed_passwd|passwd)\s*:\s*\S", "a user is given a password"),
    (r"^\s*-?\s*ssh_authorized_keys\s*:", "ssh_authorized_keys bakes in keys"),
    (r"\|\s*chpasswd\b|\bchpasswd\s*<<|\bpasswd\s+--stdin\b", "a script sets a password with chpasswd/passwd"),
)


def _from_lines(text: str) -> list[CloudInitIssue]:
    issues = []
    for pattern, what in _LINE_PATTERNS:
        m = re.search(pattern, text, re.MULTILINE | re.IGNORECASE)
        if m is not None:
            issues.append(CloudInitIssue(what, text.count("\n", 0, m.start()) + 1))
    return issues
