"""Guest facts about remote access besides sshd: cleartext services, rsh/netrc trust files, vendor back channels.

Candidates come from the one inventory walk; each collector then reads
what it needs in one batched read. "Started at boot" is read from every
init system an appliance may use: systemd .wants links, SysV rc?.d links,
OpenWrt's /etc/rc.d/S??name, BusyBox/Buildroot's /etc/init.d/S??name (run
by rcS), OpenRC's /etc/runlevels/*/name, and /etc/inittab lines.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from certify.guest.parsers.dropbear import command_words, inittab_entries
from certify.guest.parsers.passwd import guest_accounts
from certify.guest.parsers.remote_access import (
    enabled_units,
    inetd_services,
    netrc_summary,
    openvpn_client,
    proftpd_requires_tls,
    pureftpd_requires_tls,
    rhosts_entries,
    syslog_forwards,
    tunnel_commands,
    unit_file_candidates,
    vsftpd_requires_tls,
    xinetd_services,
)
from certify.guest.parsers.uci import parse_uci, uci_bool
from certify.guest.reader import GuestReader, Inventory
from certify.model import GuestCollector
from certify.plugins.hookspecs import hookimpl

TEXT_LIMIT = 256 * 1024
BINARY_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/local/bin", "/usr/libexec")


@dataclass(frozen=True)
class CleartextProtocol:
    name: str
    binaries: tuple[str, ...]  # server program names
    units: tuple[str, ...]  # systemd units (or SysV script names) that start it
    inetd: tuple[str, ...]  # inetd/xinetd service names


# Servers whose logins cross the network in clear. FTP servers count unless their own configuration
# refuses cleartext logins (vsftpd, ProFTPD and Pure-FTPd all default to plain FTP). NIS: ypserv hands
# out password hashes to any client that knows the domain name.
PROTOCOLS = (
    CleartextProtocol("telnet", ("in.telnetd", "telnetd", "utelnetd"), ("telnet.socket", "telnetd.service", "telnet@.service", "telnet", "telnetd", "utelnetd"), ("telnet",)),
    CleartextProtocol("rsh", ("in.rshd", "rshd"), ("rsh.socket", "rsh@.service"), ("shell", "rsh")),
    CleartextProtocol("rlogin", ("in.rlogind", "rlogind"), ("rlogin.socket", "rlogin@.service"), ("login", "rlogin")),
    CleartextProtocol("rexec", ("in.rexecd", "rexecd"), ("rexec.socket", "rexec@.service"), ("exec", "rexec")),
    CleartextProtocol("tftp", ("in.tftpd", "tftpd", "atftpd"), ("tftp.socket", "tftp.service", "tftpd-hpa.service", "atftpd.service", "tftpd-hpa", "atftpd", "tftpd"), ("tftp",)),
    CleartextProtocol("ftp", ("vsftpd", "proftpd", "pure-ftpd", "in.ftpd", "ftpd"), ("vsftpd.service", "proftpd.service", "pure-ftpd.service", "vsftpd@.service", "vsftpd", "proftpd", "pure-ftpd", "ftpd"), ("ftp",)),
    CleartextProtocol("NIS", ("ypserv", "rpc.yppasswdd", "rpc.ypxfrd"), ("ypserv.service", "yppasswdd.service", "ypxfrd.service"), ()),
)  # fmt: skip
FTP_TLS_CONFIGS = {
    "vsftpd": (("/etc/vsftpd.conf", "/etc/vsftpd/vsftpd.conf"), vsftpd_requires_tls),
    "proftpd": (("/etc/proftpd/proftpd.conf", "/etc/proftpd.conf", "/etc/proftpd/tls.conf"), proftpd_requires_tls),
    "pure-ftpd": (("/etc/pure-ftpd/conf/TLS", "/etc/pure-ftpd.conf", "/etc/pure-ftpd/pure-ftpd.conf"), pureftpd_requires_tls),
}
_RC_LINK = re.compile(r"^/etc/rc[2-5]\.d/S\d*(.+)$")
# Non-systemd boot: OpenWrt's enabled-service links, BusyBox rcS's numbered scripts, OpenRC's runlevels.
_BOOT_LINKS = (
    (re.compile(r"^/etc/rc\.d/S\d+(.+)$"), "OpenWrt init link"),
    (re.compile(r"^/etc/init\.d/S\d+(.+)$"), "BusyBox rcS script"),
    (re.compile(r"^/etc/runlevels/(?:sysinit|boot|default)/(.+)$"), "OpenRC runlevel link"),
)
INITTAB = "/etc/inittab"
STARTING_ACTIONS = frozenset({"sysinit", "wait", "once", "respawn", "askfirst", "boot", "bootwait", "askconsole"})


@dataclass(frozen=True)
class RemoteFinding:
    """One thing found: where it is, the line when a line decides it, and what it is (no secrets)."""

    path: str
    line: int | None
    evidence: str
    disk: str | None = None
    key: str | None = None  # tells apart several findings in one file (a service, a host), stable across edits


def _unit_key(name: str) -> str:
    """'telnet@1-10.0.0.1:23.service' -> 'telnet@.service': instances count as their template."""
    if "@" in name:
        prefix, _, rest = name.partition("@")
        return f"{prefix}@.{rest.rsplit('.', 1)[-1]}"
    return name


def _masked(reader: GuestReader, inventory: Inventory, unit: str) -> bool:
    """/etc/systemd/system/UNIT linked to /dev/null (dangling in an image, where /dev is empty)."""
    path = posixpath.join("/etc/systemd/system", unit)
    st = inventory.get(path)
    if st is None or not st.is_link:
        return False
    target = reader.stat(path)
    return target is None or not (target.is_file or target.is_dir)


def _enabled(reader: GuestReader) -> dict[str, str]:
    """Enabled, unmasked units; computed once per scan for both collectors that need it."""

    def compute(reader: GuestReader) -> dict[str, str]:
        inventory = reader.inventory()
        wants = [c for d in ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")
                 for c in inventory.children(d) if c.endswith((".wants", ".requires"))]  # fmt: skip
        paths = [p for w in wants for p in inventory.children(w)]
        return {u: link for u, link in enabled_units(paths).items() if not _masked(reader, inventory, u)}

    return reader.memo("enabled-units", compute)


def _boot_scripts(reader: GuestReader) -> dict[str, tuple[str, str]]:
    """service name -> (the link or script that starts it at boot, what kind), for OpenWrt, BusyBox rcS and OpenRC."""

    def compute(reader: GuestReader) -> dict[str, tuple[str, str]]:
        inventory = reader.inventory()
        out: dict[str, tuple[str, str]] = {}
        paths = [*inventory.children("/etc/rc.d"), *inventory.children("/etc/init.d")]
        paths += [p for d in ("sysinit", "boot", "default") for p in inventory.children(f"/etc/runlevels/{d}")]
        for path in sorted(paths):
            for pattern, kind in _BOOT_LINKS:
                if (found := pattern.match(path)) is not None:
                    out.setdefault(found.group(1), (path, kind))
        return out

    return reader.memo("boot-scripts", compute)


def _inittab(reader: GuestReader) -> list[tuple[int, str, list[str]]]:
    """(line, action, command words) of /etc/inittab entries that start something (BusyBox and SysV init)."""

    def compute(reader: GuestReader) -> list[tuple[int, str, list[str]]]:
        text = _text(reader.read_many([INITTAB], TEXT_LIMIT).get(INITTAB))
        entries = inittab_entries(text) if text else []
        return [(e.line, e.action, command_words(e.command.lstrip("-"))) for e in entries if e.action in STARTING_ACTIONS]

    return reader.memo("inittab", compute)


def _text(data: bytes | None) -> str | None:
    if data is None or b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", "replace")


def collect_cleartext_services(reader: GuestReader) -> list[RemoteFinding]:
    inventory = reader.inventory()
    binaries = {}  # basename -> protocol
    for proto in PROTOCOLS:
        for b in proto.binaries:
            binaries[b] = proto
    installed = [(p, binaries[posixpath.basename(p)]) for d in BINARY_DIRS for p in inventory.children(d)
                 if posixpath.basename(p) in binaries]  # fmt: skip
    inetd_files = [p for p in ("/etc/inetd.conf", "/etc/xinetd.conf") if inventory.get(p)]
    inetd_files += [p for d in ("/etc/inetd.d", "/etc/xinetd.d") for p in inventory.children(d)]
    ftp_configs = [p for paths, _ in FTP_TLS_CONFIGS.values() for p in paths]
    contents = reader.read_many(inetd_files + ftp_configs, TEXT_LIMIT)

    tls_only = set()
    for server, (paths, requires_tls) in FTP_TLS_CONFIGS.items():
        if any((text := _text(contents.get(p))) is not None and requires_tls(text) for p in paths):
            tls_only.add(server)

    found: list[RemoteFinding] = []
    for path, proto in sorted(installed):
        name = posixpath.basename(path)
        if name in tls_only:
            continue
        found.append(RemoteFinding(path, None, f"{proto.name} server {name} is installed"))
    by_service = {s: p for p in PROTOCOLS for s in p.inetd}
    by_server = binaries
    for path in inetd_files:
        text = _text(contents.get(path))
        if text is None:
            continue
        entries = xinetd_services(text) if "xinetd" in path else inetd_services(text)
        for entry in entries:
            server_names = {posixpath.basename(w) for w in entry.server.split()}
            proto = by_service.get(entry.service) or next((by_server[s] for s in server_names if s in by_server), None)
            if proto is None or server_names & tls_only:
                continue
            kind = "xinetd" if "xinetd" in path else "inetd"
            found.append(RemoteFinding(path, entry.line, f"{kind} starts {proto.name} (service {entry.service}: {entry.server or 'default server'})",
                                       key=entry.service))
    unit_protocols = {u: p for p in PROTOCOLS for u in p.units}
    for unit, link in sorted(_enabled(reader).items()):
        proto = unit_protocols.get(unit) or unit_protocols.get(_unit_key(unit))
        if proto is None or unit.split(".")[0].split("@")[0] in tls_only:
            continue
        found.append(RemoteFinding(link, None, f"systemd unit {unit} is enabled: starts {proto.name} at boot"))
    for directory in ("/etc/rc2.d", "/etc/rc3.d", "/etc/rc4.d", "/etc/rc5.d"):
        for path in inventory.children(directory):
            match = _RC_LINK.match(path)
            if match and (proto := unit_protocols.get(match.group(1))) is not None and match.group(1) not in tls_only:
                found.append(RemoteFinding(path, None, f"SysV init link starts {proto.name} ({match.group(1)})"))
    for name, (path, kind) in sorted(_boot_scripts(reader).items()):
        if (proto := unit_protocols.get(name)) is not None and name not in tls_only:
            found.append(RemoteFinding(path, None, f"{kind} starts {proto.name} at boot ({name})"))
    for line, action, words in _inittab(reader):
        program = posixpath.basename(words[0]) if words else ""
        if program == "busybox" and len(words) > 1:  # 'busybox telnetd -F': the applet is the program
            program = words[1]
        if (proto := binaries.get(program)) is not None and program not in tls_only:
            found.append(RemoteFinding(INITTAB, line, f"inittab ({action}) starts {proto.name}: {' '.join(words)[:160]}", key=program))
    return [RemoteFinding(f.path, f.line, f.evidence, reader.disk_file(f.path), f.key) for f in found]


def _homes(reader: GuestReader) -> list[str]:
    return sorted({"/root", *(a.home for a in guest_accounts(reader) if a.home)})


def collect_trust_files(reader: GuestReader) -> list[RemoteFinding]:
    inventory = reader.inventory()
    candidates = ["/etc/hosts.equiv", "/etc/shosts.equiv"]
    for home in _homes(reader):
        candidates += [posixpath.join(home, n) for n in (".rhosts", ".shosts", ".netrc")]
    present = [p for p in candidates if (st := inventory.get(p)) is not None and st.is_file]
    contents = reader.read_many(present, TEXT_LIMIT)
    found = []
    for path in present:
        text = _text(contents.get(path))
        if text is None:
            found.append(RemoteFinding(path, None, "present; its content could not be read as text"))
            continue
        if path.endswith(".netrc"):
            summary = netrc_summary(text)
            if not summary.machines and not summary.default_entry:
                continue
            names = ", ".join(summary.machines[:5]) + (f" and {len(summary.machines) - 5} more" if len(summary.machines) > 5 else "")
            hosts = f"{len(summary.machines)} machine(s): {names}" if summary.machines else "no named machine"
            default = "; a 'default' entry applies to every other host" if summary.default_entry else ""
            found.append(RemoteFinding(path, None, f"stored FTP/remote credentials for {hosts}{default}; "
                                                   f"{summary.passwords} password(s) in clear text (not shown)"))  # fmt: skip
            continue
        entries = rhosts_entries(text)
        if not entries:
            continue
        wildcard = any(e.split()[0] == "+" or (len(e.split()) > 1 and e.split()[1] == "+") for e in entries)
        shown = "; ".join(entries[:3]) + ("; ..." if len(entries) > 3 else "")
        found.append(RemoteFinding(path, None, f"rsh/rlogin host trust: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} "
                                               f"({shown}){'; a + wildcard trusts any host or user' if wildcard else ''}"))  # fmt: skip
    return [RemoteFinding(f.path, f.line, f.evidence, reader.disk_file(f.path), f.key) for f in found]


# Units of remote-support and tunnelling agents: enabled means the vendor (or whoever holds the account
# the agent is tied to) can reach the instance. ZeroTier and Tailscale count only when enrolled (below).
AGENT_UNITS = {
    "teamviewerd.service": "TeamViewer remote support daemon",
    "anydesk.service": "AnyDesk remote support service",
    "rustdesk.service": "RustDesk remote support service",
    "ngrok.service": "ngrok tunnel agent",
    "frpc.service": "frp client (frpc) tunnel",
    "frpc@.service": "frp client (frpc) tunnel",
    "x11vnc.service": "x11vnc VNC server",
    "vncserver@.service": "VNC server",
    "vncserver-x11-serviced.service": "RealVNC server",
    "openvpn-client@.service": "OpenVPN client",
}
CRON_PATHS = ("/etc/crontab", "/etc/rc.local", "/etc/rc.d/rc.local")
CRON_DIRS = ("/etc/cron.d", "/var/spool/cron/crontabs", "/var/spool/cron", "/etc/crontabs")  # the last: BusyBox crond, OpenWrt, Alpine
AUTOSSH_UCI = "/etc/config/autossh"  # OpenWrt's autossh package: one reverse tunnel per enabled section
OPENVPN_DIRS = ("/etc/openvpn", "/etc/openvpn/client")
SYSLOG_FILES = ("/etc/rsyslog.conf", "/etc/syslog.conf")
SYSLOG_DIRS = ("/etc/rsyslog.d",)
SYSLOG_NG = ("/etc/syslog-ng/syslog-ng.conf",)
SYSLOG_NG_DIRS = ("/etc/syslog-ng/conf.d",)


def collect_vendor_access(reader: GuestReader) -> list[RemoteFinding]:
    inventory = reader.inventory()

    def files_in(directories, suffixes=None):
        return [p for d in directories for p in inventory.children(d)
                if (st := inventory.get(p)) is not None and st.is_file and (suffixes is None or p.endswith(suffixes))]  # fmt: skip

    enabled = _enabled(reader)
    unit_files: dict[str, str] = {}
    for unit in enabled:
        path = next((p for p in unit_file_candidates(unit) if (st := inventory.get(p)) is not None and st.is_file), None)
        if path is not None:
            unit_files[unit] = path
    cron = [p for p in CRON_PATHS if inventory.get(p)] + files_in(CRON_DIRS)
    openvpn = files_in(OPENVPN_DIRS, (".conf", ".ovpn"))
    syslog = [p for p in SYSLOG_FILES if inventory.get(p)] + files_in(SYSLOG_DIRS, (".conf",))
    syslog_ng = [p for p in SYSLOG_NG if inventory.get(p)] + files_in(SYSLOG_NG_DIRS, (".conf",))
    boot_scripts = _boot_scripts(reader)
    scripts = {name: target for name, (link, _kind) in boot_scripts.items()
               if (target := _script_file(inventory, link, name)) is not None}  # fmt: skip
    autossh = [AUTOSSH_UCI] if inventory.get(AUTOSSH_UCI) is not None else []
    contents = reader.read_many([*unit_files.values(), *cron, *openvpn, *syslog, *syslog_ng, *scripts.values(), *autossh], TEXT_LIMIT)
    found: list[RemoteFinding] = []

    for unit, link in sorted(enabled.items()):
        path = unit_files.get(unit)
        text = _text(contents.get(path)) if path else None
        commands = tunnel_commands(text, exec_lines_only=True) if text else []
        agent = AGENT_UNITS.get(unit) or AGENT_UNITS.get(_unit_key(unit))
        if commands:
            line, what, excerpt = commands[0]
            found.append(RemoteFinding(path, line, f"enabled unit {unit} runs a {what}: {excerpt}"))
        elif agent:
            found.append(RemoteFinding(link, None, f"enabled unit {unit}: {agent} starts at boot"))
    for path in cron:
        text = _text(contents.get(path))
        for line, what, excerpt in tunnel_commands(text) if text else []:
            found.append(RemoteFinding(path, line, f"scheduled {what}: {excerpt}", key=what))
    for name, path in sorted(scripts.items()):
        text = _text(contents.get(path))
        link, kind = boot_scripts[name]
        for line, what, excerpt in (tunnel_commands(text) if text else [])[:1]:
            found.append(RemoteFinding(path, line, f"{what} in {path}, started at boot by {kind} {link}: {excerpt}"))
    for line, action, words in _inittab(reader):
        for _, what, excerpt in tunnel_commands(" ".join(words)):
            found.append(RemoteFinding(INITTAB, line, f"inittab ({action}) runs a {what}: {excerpt}", key=what))
    if autossh and "autossh" in boot_scripts and (text := _text(contents.get(AUTOSSH_UCI))) is not None:
        for section in parse_uci(text).of_type("autossh"):
            switch = section.options.get("enabled")  # the init script's default is 1
            ssh = section.options.get("ssh")
            if ssh is None or (switch is not None and uci_bool(switch.value) is not True):
                continue
            for _, what, excerpt in tunnel_commands(f"autossh {ssh.value}"):
                found.append(RemoteFinding(AUTOSSH_UCI, ssh.line, f"OpenWrt autossh section {section.label} opens a {what} at boot: "
                                                                  f"{excerpt}", key=section.name or str(section.line)))  # fmt: skip
    started = {u.split("@", 1)[1].rsplit(".", 1)[0] for u in enabled if u.startswith(("openvpn@", "openvpn-client@"))}
    for path in openvpn:
        text = _text(contents.get(path))
        client = openvpn_client(text) if text else None
        if client is None:
            continue
        name = posixpath.basename(path).rsplit(".", 1)[0]
        how = " (its unit is enabled)" if name in started or "openvpn.service" in enabled else ""
        found.append(RemoteFinding(path, client.line, f"OpenVPN client configuration dials out to {', '.join(client.remotes)}{how}"))
    for path in syslog + syslog_ng:
        text = _text(contents.get(path))
        for line, host in syslog_forwards(text, syslog_ng=path in syslog_ng) if text else []:
            found.append(RemoteFinding(path, line, f"system logs are forwarded to {host}", key=host))
    networks = [p for p in inventory.children("/var/lib/zerotier-one/networks.d") if p.endswith(".conf") and not p.endswith(".local.conf")]
    if networks and "zerotier-one.service" in enabled:
        ids = ", ".join(posixpath.basename(p)[:-5] for p in networks)
        found.append(RemoteFinding(networks[0], None, f"ZeroTier is enabled and already joined to network(s) {ids}"))
    state = inventory.get("/var/lib/tailscale/tailscaled.state")
    if state is not None and state.is_file and state.size > 2 and "tailscaled.service" in enabled:
        found.append(RemoteFinding("/var/lib/tailscale/tailscaled.state", None,
                                   "Tailscale is enabled and its node state (logged in at build time) is shipped"))  # fmt: skip
    return [RemoteFinding(f.path, f.line, f.evidence, reader.disk_file(f.path), f.key) for f in found]


def _script_file(inventory: Inventory, link: str, name: str) -> str | None:
    """The script a boot link runs: the regular file itself (BusyBox rcS), or /etc/init.d/NAME (OpenWrt, OpenRC)."""
    st = inventory.get(link)
    if st is not None and st.is_file:
        return link
    target = posixpath.join("/etc/init.d", name)
    st = inventory.get(target)
    return target if st is not None and st.is_file else None


@hookimpl
def certify_guest_collectors() -> list[GuestCollector]:
    return [
        GuestCollector(os_types=("linux",), name="cleartext_services", collect=collect_cleartext_services,
                       description="telnet/rsh/rlogin/rexec/tftp/ftp/NIS servers: binaries, inetd/xinetd entries, enabled "
                                   "units, OpenWrt/BusyBox/OpenRC boot scripts, inittab lines"),
        GuestCollector(os_types=("linux",), name="trust_files", collect=collect_trust_files,
                       description=".rhosts, .shosts, .netrc in /root and every home; /etc/hosts.equiv, /etc/shosts.equiv"),
        GuestCollector(os_types=("linux",), name="vendor_access", collect=collect_vendor_access,
                       description="remote support agents, tunnels, dial-out VPN clients and log forwarding enabled at boot "
                                   "(systemd, OpenWrt, BusyBox rcS, OpenRC, inittab, cron, OpenWrt autossh)"),
    ]  # fmt: skip
