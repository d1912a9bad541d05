"""Where SSH servers other than OpenSSH's defaults keep their host keys, read from their configuration text.

- libssh servers read an sshd_config-style file (/etc/ssh/libssh_server_config
  upstream, /etc/libssh/libssh_server.config on Fedora/RHEL) with ``HostKey``;
- Gitea, Forgejo and Gogs run a built-in Go SSH server whose keys app.ini
  names in ``[server] SSH_SERVER_HOST_KEYS`` (relative to APP_DATA_PATH;
  ssh/gitea.rsa and ssh/gogs.rsa when START_SSH_SERVER is on and it names none);
- anything else is found by name: a file called like a host key
  (``*host*key*``, ``*_host_ed25519``) that holds a private key.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from certify.guest.parsers.sshd_config import split_args

LIBSSH_CONFIGS = ("/etc/ssh/libssh_server_config", "/etc/libssh/libssh_server.config")
GITEA_DEFAULT_KEYS = ("ssh/gitea.rsa", "ssh/gogs.rsa")
_ALGORITHM = r"(?:rsa|dsa|dss|ecdsa|ed25519)"
# ssh_host_ed25519_key, dropbear_rsa_host_key, hostkey, host_keys, soft_serve_host_ed25519; not localhost.key
_HOST_KEY_NAME = re.compile(rf"(?:^|[^a-z])host(?:[_.-]?{_ALGORITHM})?[_.-]?keys?(?:$|[^a-z])|[_.-]host[_.-]{_ALGORITHM}$", re.IGNORECASE)
_NOT_A_KEY_FILE = re.compile(r"\.(pub|pk|py|pyc|go|c|h|rs|js|rb|pl|sh|md|txt|html|json|ya?ml|toml|conf|cfg|ini|so|a|o)$", re.IGNORECASE)


@dataclass(frozen=True)
class NamedKey:
    """A host key path a configuration names: where, and how it is written there."""

    path: str
    config: str
    line: int | None
    text: str

    def describe(self) -> str:
        where = f"{self.config}:{self.line}" if self.line else self.config
        return f"named by '{self.text}' at {where}"


def named_like_host_key(path: str) -> bool:
    name = posixpath.basename(path)
    return bool(_HOST_KEY_NAME.search(name)) and not _NOT_A_KEY_FILE.search(name)


def libssh_host_keys(config: str, text: str) -> list[NamedKey]:
    """``HostKey PATH`` lines of a libssh server configuration (its Include and Match are not followed)."""
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        words = raw.strip().split(None, 1)
        if len(words) != 2 or words[0].lower() != "hostkey":
            continue
        try:
            args = split_args(words[1])
        except ValueError:
            continue
        if args:
            out.append(NamedKey(absolute(args[0], "/"), config, number, raw.strip()))
    return out


def absolute(path: str, base: str) -> str:
    return posixpath.normpath(path if path.startswith("/") else posixpath.join(base, path))


def _ini_server_section(text: str) -> dict[str, tuple[str, int]]:
    values: dict[str, tuple[str, int]] = {}
    section = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith((";", "#")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
            continue
        if "=" in line and section in ("", "server"):
            key, _, value = line.partition("=")
            values[f"{section}.{key.strip().upper()}"] = (value.strip().strip('"').strip("`"), number)
    return values


def gitea_host_keys(config: str, text: str) -> list[NamedKey]:
    """The built-in SSH server's host keys of a Gitea/Forgejo/Gogs app.ini, made absolute against APP_DATA_PATH.

    A relative APP_DATA_PATH is relative to the work path: WORK_PATH when the
    file names it, else the directory holding custom/conf/app.ini.
    """
    values = _ini_server_section(text)
    work = values.get(".WORK_PATH", ("", 0))[0]
    if not work.startswith("/") and config.endswith("/custom/conf/app.ini"):
        work = config[: -len("/custom/conf/app.ini")] or "/"
    data = values.get("server.APP_DATA_PATH", ("data", 0))[0] or "data"
    if not data.startswith("/"):
        if not work.startswith("/"):
            return []  # the work path is the binary's directory, unknown offline
        data = posixpath.join(work, data)
    named = values.get("server.SSH_SERVER_HOST_KEYS")
    if named is not None:
        return [NamedKey(absolute(p.strip(), data), config, named[1], f"SSH_SERVER_HOST_KEYS = {named[0]}")
                for p in named[0].split(",") if p.strip()]  # fmt: skip
    start = values.get("server.START_SSH_SERVER", ("false", 0))
    if start[0].lower() != "true":
        return []
    return [NamedKey(absolute(p, data), config, start[1], "START_SSH_SERVER = true (default SSH_SERVER_HOST_KEYS)")
            for p in GITEA_DEFAULT_KEYS]  # fmt: skip
