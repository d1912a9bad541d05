"""Pure parsers for remote-access configuration: inetd/xinetd, systemd enablement, trust files, tunnels, FTP TLS.

Everything takes text (or a list of paths) and returns plain data, so it is
tested without a guest. Evidence built from these never carries a secret:
tokens on command lines are shown as their first 4 characters and '****',
and .netrc passwords are counted, never shown.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system",
             "/usr/lib/systemd/system", "/lib/systemd/system")  # fmt: skip
_WANTS = re.compile(r"^(/etc/systemd/system|/usr/lib/systemd/system|/lib/systemd/system)/[^/]+\.(wants|requires)/([^/]+)$")


@dataclass(frozen=True)
class ServiceLine:
    line: int
    service: str  # inetd service name (telnet, shell, login, exec, tftp, ftp)
    server: str  # the program and arguments it runs


def inetd_services(text: str) -> list[ServiceLine]:
    """Active inetd.conf entries; a commented line (update-inetd writes '#<off># ...') is off."""
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 6:
            continue
        service = fields[0].split("/")[0].rsplit(":", 1)[-1]  # 'addr:service' and 'service/version' forms
        out.append(ServiceLine(number, service, " ".join(fields[5:])))
    return out


def xinetd_services(text: str) -> list[ServiceLine]:
    """xinetd 'service NAME { ... }' blocks that are not disabled (disable = yes, or listed in defaults' 'disabled')."""
    out, disabled_names = [], set()
    name, start, attrs = None, 0, {}
    in_defaults = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("service ") and name is None:
            name, start, attrs = line.split(None, 1)[1].strip(), number, {}
            continue
        if line == "defaults":
            in_defaults = True
            continue
        if line == "{":
            continue
        if line == "}":
            if name is not None and attrs.get("disable", "no").lower() != "yes":
                out.append(ServiceLine(start, name, attrs.get("server", "")))
            name, in_defaults = None, False
            continue
        found = re.match(r"^(\w+)\s*[+-]?=\s*(.*)$", line)
        if found is None:
            continue
        key, value = found.group(1).lower(), found.group(2).strip()
        if in_defaults and key == "disabled":
            disabled_names.update(value.split())
        elif name is not None:
            attrs[key] = value
    return [s for s in out if s.service not in disabled_names]


def enabled_units(paths: Iterable[str]) -> dict[str, str]:
    """unit name -> the .wants/.requires link that enables it (systemd reads these at boot)."""
    out: dict[str, str] = {}
    for path in sorted(paths):
        found = _WANTS.match(path)
        if found:
            out.setdefault(found.group(3), path)
    return out


def unit_file_candidates(unit: str) -> list[str]:
    """Where systemd looks for a unit's file, in order; a template instance falls back to its template."""
    names = [unit]
    if "@" in unit:
        prefix, _, rest = unit.partition("@")
        template = f"{prefix}@.{rest.rsplit('.', 1)[-1]}"
        if template != unit:
            names.append(template)
    return [posixpath.join(d, n) for n in names for d in UNIT_DIRS]


def redact(token: str) -> str:
    return token[:4] + "****" if len(token) > 4 else "****"


_SECRET_ARG = re.compile(r"(?i)(authtoken|--auth-?key|--authtoken|-authtoken|token|--token|auth_token)(\s*[=\s]\s*)(\S+)")
_TSKEY = re.compile(r"tskey-[A-Za-z0-9_-]+")


def redact_command(text: str) -> str:
    """A command line without its secrets (ngrok authtokens, Tailscale auth keys, frp tokens)."""
    text = _SECRET_ARG.sub(lambda m: m.group(1) + m.group(2) + redact(m.group(3)), text)
    return _TSKEY.sub(lambda m: redact(m.group(0)), text)


# A reverse tunnel: ssh/autossh/dbclient with -R (alone or in a flag cluster like -fNR) or RemoteForward.
_REVERSE_SSH = re.compile(r"\b(auto)?ssh\b|\bdbclient\b")
_R_FLAG = re.compile(r"(?:^|\s)-[A-Za-z]*R|RemoteForward")
_TUNNEL_TOOLS = (
    (re.compile(r"\bngrok\b"), "ngrok tunnel"),
    (re.compile(r"\bfrpc\b"), "frp client (frpc) tunnel"),
    (re.compile(r"\btailscale\s+up\b.*--auth-?key"), "Tailscale login with an auth key"),
    (re.compile(r"\bzerotier-cli\s+join\b"), "ZeroTier network join"),
    (re.compile(r"\b(teamviewer|anydesk|rustdesk)\b", re.I), "remote support agent"),
    (re.compile(r"\bx11vnc\b|\bvncserver\b"), "VNC server"),
)


def tunnel_commands(text: str, *, exec_lines_only: bool = False) -> list[tuple[int, str, str]]:
    """(line, what, redacted excerpt) for each active line that opens a back channel.

    ``exec_lines_only`` limits a unit file to its Exec*= lines (a Description
    mentioning ssh is not a tunnel).
    """
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if exec_lines_only and not re.match(r"^Exec[A-Za-z]*\s*=", line):
            continue
        what = None
        if _REVERSE_SSH.search(line) and _R_FLAG.search(line):
            what = "reverse SSH tunnel (-R)"
        else:
            what = next((label for pattern, label in _TUNNEL_TOOLS if pattern.search(line)), None)
        if what:
            excerpt = redact_command(line)
            out.append((number, what, excerpt if len(excerpt) <= 160 else excerpt[:157] + "..."))
    return out


@dataclass(frozen=True)
class OpenVpnClient:
    remotes: tuple[str, ...]
    line: int


def openvpn_client(text: str) -> OpenVpnClient | None:
    """A client configuration (``client``, ``tls-client`` or ``pull`` with a ``remote``); None for servers and others."""
    remotes, is_client, first = [], False, 0
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        key = fields[0].lower().lstrip("-")
        if key in ("client", "tls-client", "pull"):
            is_client = True
        elif key == "remote" and len(fields) > 1:
            remotes.append(":".join(fields[1:3]))
            first = first or number
    return OpenVpnClient(tuple(remotes), first) if is_client and remotes else None


_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]", "ip6-localhost"}
_RSYSLOG_FWD = re.compile(r"^[^#\s]\S*\s+(?:-)?(@@?)(?:\([^)]*\))?(\[[^\]]+\]|[^:\s;]+)")
_OMFWD = re.compile(r'type\s*=\s*"omfwd".*?target\s*=\s*"([^"]+)"|target\s*=\s*"([^"]+)".*?type\s*=\s*"omfwd"', re.I)
_SYSLOG_NG = re.compile(r'\b(?:network|tcp|udp|tcp6|udp6|syslog)\s*\(\s*"?([A-Za-z0-9_.:\[\]-]+)"?')


def syslog_forwards(text: str, *, syslog_ng: bool = False) -> list[tuple[int, str]]:
    """(line, remote host) for each active rule that ships logs off the machine."""
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        hosts = []
        if syslog_ng:
            if "destination" in line or line.startswith(("network", "tcp", "udp", "syslog")):
                hosts = [m.group(1) for m in _SYSLOG_NG.finditer(line)]
        else:
            if (m := _RSYSLOG_FWD.match(line)) is not None:
                hosts = [m.group(2)]
            hosts += [a or b for a, b in _OMFWD.findall(line)]
        out.extend((number, h) for h in hosts if h.strip("[]").lower() not in _LOCAL_HOSTS and not h.startswith("127."))
    return out


@dataclass(frozen=True)
class NetrcSummary:
    machines: tuple[str, ...]
    default_entry: bool
    passwords: int  # entries with a password token (never the password)


def netrc_summary(text: str) -> NetrcSummary:
    tokens = text.split()
    machines, default, passwords, i = [], False, 0, 0
    while i < len(tokens):
        token = tokens[i]
        if token == "machine" and i + 1 < len(tokens):
            machines.append(tokens[i + 1])
            i += 2
            continue
        if token == "default":
            default = True
        elif token == "password" and i + 1 < len(tokens):
            passwords += 1
            i += 2
            continue
        elif token == "macdef":  # a macro body runs to the next blank line; its text is not a credential
            break
        i += 1
    return NetrcSummary(tuple(machines), default, passwords)


def rhosts_entries(text: str) -> list[str]:
    """Trust entries (host [user]) of .rhosts/.shosts/hosts.equiv: every non-blank line."""
    return [" ".join(line.split()) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _kv(text: str, sep: str = "=") -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if sep in line:
            key, _, value = line.partition(sep)
            out.setdefault(key.strip().lower(), value.strip())
        elif sep == " " and line:
            out.setdefault(line.lower(), "")
    return out


def vsftpd_requires_tls(text: str) -> bool:
    """ssl_enable=YES, and force_local_logins_ssl not turned off (its default is YES): logins cannot go in clear."""
    values = {k: v.upper() for k, v in _kv(text).items()}
    return values.get("ssl_enable") == "YES" and values.get("force_local_logins_ssl", "YES") == "YES"


def proftpd_requires_tls(text: str) -> bool:
    """TLSEngine on and TLSRequired covering the control channel (on, ctrl, auth, auth+data, auth+!data)."""
    engine = re.search(r"(?im)^\s*TLSEngine\s+on\b", text)
    required = re.search(r"(?im)^\s*TLSRequired\s+(on|ctrl|auth|auth\+data|auth\+!data)\s*$", text)
    return bool(engine and required)


def pureftpd_requires_tls(text: str) -> bool:
    """pure-ftpd TLS level 2 (cleartext logins refused) or 3 (TLS only); Debian keeps it as the file conf/TLS."""
    found = re.search(r"(?im)^\s*(?:TLS\s+)?([0-3])\s*$", text)
    return bool(found and found.group(1) in ("2", "3"))
