"""What a build leaves behind in a Linux guest, found instead of deleted.

The path lists follow virt-sysprep's operations (machine-id, random-seed,
yum-uuid, smolt-uuid, dhcp-client-state, dhcp-server-state, net-hostname,
net-hwaddr, net-nmconn, udev-persistent-net, cron-spool,
package-manager-cache, rpm-db, tmp-files, crash-data, abrt-data,
backup-files) and the Azure agent's deprovision list, widened where a
distribution keeps the same state elsewhere. Everything here is pure: it
takes an ``Inventory`` (paths with their lstat) and file contents as bytes,
so it is tested without a guest.

Evidence never repeats what a file holds when that could be a secret: paths,
sizes, counts, line numbers and the few values that are identifiers rather
than secrets (MAC addresses, host names, the first 8 hex digits of a machine
ID, resolver addresses).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from certify.guest.reader import Inventory, Stat

# ---------------------------------------------------------------------------
# What a finding is


@dataclass(frozen=True)
class Residue:
    """One thing left behind: a file, or a directory summarised by what lies below it."""

    path: str
    reason: str  # short, and never the content of a file that could hold a secret
    size: int | None = None  # bytes; a directory: the total of the regular files below it; None: not meaningful (a link)
    files: int | None = None  # a directory: how many non-directory entries lie below it; None for a single file
    line: int | None = None  # the first line that matters, for files parsed line by line
    core: bool = False  # a process memory image (core, crash dump): weighs more
    unread: bool = False  # the content decides, and it could not be read
    disk: str | None = None  # bundle disk holding it, filled in by the collector

    def describe(self) -> str:
        if self.files is not None:
            return f"{self.reason} ({_plural(self.files, 'file')}, {human_size(self.size or 0)})"
        return self.reason if self.size is None else f"{self.reason} ({human_size(self.size)})"


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"  # pragma: no cover


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _name(path: str) -> str:
    return posixpath.basename(path)


# ---------------------------------------------------------------------------
# Tree helpers: one pass over the inventory, never one walk per directory


def gather(inventory: Inventory, roots: Iterable[str]) -> dict[str, list[tuple[str, Stat]]]:
    """Entries strictly below each of ``roots``, in path order, from one pass over the inventory.

    ``Inventory.under`` sorts every path on each call; with a dozen roots on
    a guest of a hundred thousand files that is the slow part of a scan.
    """
    out: dict[str, list[tuple[str, Stat]]] = {r: [] for r in roots}
    prefixes = tuple(r.rstrip("/") + "/" for r in out)
    for path, st in inventory.entries.items():
        if not path.startswith(prefixes):  # most of a guest (/usr, /var/lib/docker) is below no root
            continue
        parent = path
        while True:
            cut = parent.rfind("/")
            if cut <= 0:
                break
            parent = parent[:cut]
            bucket = out.get(parent)
            if bucket is not None:
                bucket.append((path, st))
    for bucket in out.values():
        bucket.sort()
    return out


def totals(entries: Iterable[tuple[str, Stat]]) -> tuple[int, int]:
    """(non-directory entries, bytes in regular files)."""
    count = size = 0
    for _, st in entries:
        if not st.is_dir:
            count += 1
            size += st.size if st.is_file else 0
    return count, size


def _below(entries: list[tuple[str, Stat]], directory: str) -> list[tuple[str, Stat]]:
    prefix = directory.rstrip("/") + "/"
    return [(p, s) for p, s in entries if p.startswith(prefix)]


def _by_child(directory: str, entries: list[tuple[str, Stat]]) -> dict[str, list[tuple[str, Stat]]]:
    """Entries below ``directory`` grouped by the direct child they lie under, in one pass."""
    start = len(directory.rstrip("/")) + 1
    out: dict[str, list[tuple[str, Stat]]] = {}
    for path, st in entries:
        cut = path.find("/", start)
        if cut > 0:
            out.setdefault(path[:cut], []).append((path, st))
    return out


# ---------------------------------------------------------------------------
# instance-identity-and-entropy

MACHINE_ID = "/etc/machine-id"
DBUS_MACHINE_ID = "/var/lib/dbus/machine-id"
# path -> what it is. virt-sysprep random-seed, yum-uuid, smolt-uuid; systemd's credential key is
# the same kind of per-host secret and is created on first use, so a build VM can leave it behind.
IDENTITY_FILES = {
    "/var/lib/systemd/random-seed": "systemd random seed: every clone starts from the same entropy",
    "/var/lib/random-seed": "random seed: every clone starts from the same entropy",
    "/var/lib/urandom/random-seed": "random seed: every clone starts from the same entropy",
    "/etc/random.seed": "random seed: every clone starts from the same entropy",
    # embedded images: OpenWrt's urandom-seed, and SeedRNG (BusyBox's seedrng applet, Buildroot's S20seedrng)
    "/etc/urandom.seed": "OpenWrt random seed: every clone starts from the same entropy",
    "/var/lib/seedrng/seed.credit": "SeedRNG seed (credited to the kernel's entropy count): every clone starts from the same entropy",
    "/var/lib/seedrng/seed.no-credit": "SeedRNG seed: every clone starts from the same entropy",
    "/var/lib/systemd/credential.secret": "systemd credential host key: every clone can decrypt the others' credentials",
    "/var/lib/yum/uuid": "yum UUID: every clone reports the same identity to repositories",
    "/etc/sysconfig/hw-uuid": "smolt hardware UUID: every clone reports the same identity",
}
SMOLT_DIR, SMOLT_GLOB = "/etc/smolt", "*uuid"
_HEX_ID = re.compile(r"^[0-9a-fA-F]{32}$")


def machine_id_value(data: bytes) -> str | None:
    """What a machine-id file identifies; None when it is empty or 'uninitialized' (both regenerate at boot)."""
    text = data.decode("ascii", "replace").strip()
    if not text or text == "uninitialized":
        return None
    return text


def redact_machine_id(value: str) -> str:
    if _HEX_ID.match(value):
        return f"{value[:8].lower()}… (first 8 of 32 hex digits)"
    return f"unexpected content of {len(value)} characters, not shown"


def identity_paths(inventory: Inventory) -> list[str]:
    """Files whose content decides: the machine-id files (empty or 'uninitialized' passes)."""
    return [p for p in (MACHINE_ID, DBUS_MACHINE_ID) if (st := inventory.get(p)) is not None and st.is_file]


def identity_residue(inventory: Inventory, contents: Mapping[str, bytes]) -> list[Residue]:
    found = []
    for path in (MACHINE_ID, DBUS_MACHINE_ID):
        st = inventory.get(path)
        if st is None or st.is_dir:
            continue
        if st.is_link and (path == DBUS_MACHINE_ID or path not in contents):
            continue  # dbus' copy as a symlink to /etc/machine-id is the intended layout
        data = contents.get(path)
        if data is None:
            if st.size > 0:
                found.append(Residue(path, "machine ID file could not be read", st.size, unread=True))
            continue
        value = machine_id_value(data)
        if value is None:
            continue
        what = "holds machine ID" if path == MACHINE_ID else "is a copy (not a symlink to /etc/machine-id) holding machine ID"
        found.append(Residue(path, f"{what} {redact_machine_id(value)}: every clone would share it", st.size))
    smolt = [p for p in inventory.children(SMOLT_DIR) if fnmatch.fnmatchcase(_name(p), SMOLT_GLOB)]
    paths = {**IDENTITY_FILES, **{p: "smolt UUID: every clone reports the same identity" for p in smolt}}
    for path, reason in sorted(paths.items()):
        st = inventory.get(path)
        if st is not None and st.is_file and st.size > 0:
            found.append(Residue(path, reason, st.size))
    return found


# ---------------------------------------------------------------------------
# network-identity-residue

# (directory, basename glob, what): regular non-empty files anywhere below the directory.
# Empty files are skipped: isc-dhcp-server's postinst creates an empty dhcpd.leases on purpose.
LEASE_RULES = (
    ("/var/lib/dhcp", "*", "DHCP lease state"),  # Debian isc-dhcp; virt-sysprep dhcp-client-state
    ("/var/lib/dhclient", "*", "DHCP client lease"),  # RHEL dhclient
    ("/var/lib/dhcpcd", "*", "dhcpcd state"),
    ("/var/lib/dhcpcd5", "*", "dhcpcd state"),
    ("/var/lib/NetworkManager", "*lease*", "NetworkManager DHCP lease"),
    ("/var/lib/NetworkManager", "secret_key", "NetworkManager per-host secret: clones get the same stable-privacy addresses"),
    ("/var/lib/dhcpd", "*", "DHCP server lease database"),  # virt-sysprep dhcp-server-state
    ("/var/lib/wicked", "*lease*", "wicked DHCP lease"),
    ("/var/lib/wicked", "duid.xml", "wicked DHCP unique identifier"),
)
_DHCPCD_NAMES = {"duid": "DHCP unique identifier (DUID): clones present the same identity to DHCP servers",
                 "secret": "dhcpcd per-host secret: clones get the same stable-privacy addresses"}  # fmt: skip
IFCFG_DIRS = ("/etc/sysconfig/network-scripts", "/etc/sysconfig/network")
RESOLV_CONF = "/etc/resolv.conf"
# Build networks: RFC 1918, IPv6 ULA and carrier-grade NAT (QEMU user networking's 10.0.2.3,
# libvirt's 192.168.122.1, a VPN's 100.100.100.100). Public resolvers are a vendor's choice and
# link-local ones (169.254.169.254) are the cloud's own: neither is flagged.
BUILD_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                            "100.64.0.0/10", "fc00::/7"))  # fmt: skip
_IFCFG_HOSTNAME = re.compile(r"^\s*(HOSTNAME|DHCP_HOSTNAME)\s*=\s*(.*?)\s*$")


def _lease_reason(directory: str, name: str, default: str) -> str:
    if directory.startswith("/var/lib/dhcpcd") and name in _DHCPCD_NAMES:
        return _DHCPCD_NAMES[name]
    return default


def ifcfg_files(inventory: Inventory) -> list[str]:
    return [p for d in IFCFG_DIRS for p in inventory.children(d)
            if _name(p).startswith("ifcfg-") and (st := inventory.get(p)) is not None and st.is_file]  # fmt: skip


def ifcfg_hostnames(text: str) -> list[tuple[int, str, str]]:
    """(line, key, value) of HOSTNAME= and DHCP_HOSTNAME= (virt-sysprep net-hostname)."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        match = _IFCFG_HOSTNAME.match(line)
        if match and match.group(2).strip("\"'"):
            out.append((number, match.group(1), match.group(2).strip("\"'")))
    return out


def build_network_resolvers(text: str) -> list[tuple[int, str]]:
    """(line, address) of nameservers on a private build network."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) < 2 or words[0] != "nameserver":
            continue
        try:
            address = ipaddress.ip_address(words[1].split("%", 1)[0])
        except ValueError:
            continue
        if any(address.version == n.version and address in n for n in BUILD_NETWORKS):
            out.append((number, str(address)))
    return out


def network_paths(inventory: Inventory) -> list[str]:
    paths = ifcfg_files(inventory)
    st = inventory.get(RESOLV_CONF)
    if st is not None and st.is_file:  # a symlink to systemd-resolved's stub or resolvconf's file is managed
        paths.append(RESOLV_CONF)
    return paths


def network_residue(inventory: Inventory, contents: Mapping[str, bytes], trees: Mapping[str, list]) -> list[Residue]:
    found = []
    for directory, pattern, reason in LEASE_RULES:
        for path, st in trees.get(directory, []):
            if st.is_file and st.size > 0 and fnmatch.fnmatchcase(_name(path), pattern):
                found.append(Residue(path, _lease_reason(directory, _name(path), reason), st.size))
    for path in ifcfg_files(inventory):
        data = contents.get(path)
        if data is None:
            found.append(Residue(path, "interface configuration could not be read", _size(inventory, path), unread=True))
            continue
        names = ifcfg_hostnames(data.decode("utf-8", "replace"))
        if names:
            shown = "; ".join(f"line {n}: {key}={value}" for n, key, value in names[:5])
            found.append(Residue(path, f"build host name pinned in interface configuration: {shown}",
                                 _size(inventory, path), line=names[0][0]))  # fmt: skip
    if RESOLV_CONF in contents:
        resolvers = build_network_resolvers(contents[RESOLV_CONF].decode("utf-8", "replace"))
        if resolvers:
            shown = "; ".join(f"line {n}: nameserver {a}" for n, a in resolvers[:5])
            found.append(Residue(RESOLV_CONF, f"static resolver configuration pointing at a private build network: {shown}",
                                 _size(inventory, RESOLV_CONF), line=resolvers[0][0]))  # fmt: skip
    return sorted(found, key=lambda r: r.path)


def _size(inventory: Inventory, path: str) -> int:
    st = inventory.get(path)
    return st.size if st is not None else 0


# ---------------------------------------------------------------------------
# persistent-net-mac-binding

MAC = r"[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}(?:(?:[:-][0-9A-Fa-f]{2}){14})?"  # Ethernet, or 20-byte InfiniBand
_MAC_RE = re.compile(MAC)
# (directory, basename glob, dialect). Every *.rules in /etc/udev/rules.d: a rule matching
# ATTR{address} is MAC-specific whatever its file is called (70-persistent-net.rules is the usual one).
MAC_SOURCES = (
    ("/etc/udev/rules.d", "*.rules", "udev"),
    ("/etc/sysconfig/network-scripts", "ifcfg-*", "ifcfg"),
    ("/etc/sysconfig/network", "ifcfg-*", "ifcfg"),
    ("/etc/NetworkManager/system-connections", "*", "keyfile"),
    ("/etc/netplan", "*.yaml", "netplan"),
    ("/etc/cloud/cloud.cfg.d", "50-curtin-networking.cfg", "netplan"),  # the installer's netplan, as cloud-init config
    ("/etc/systemd/network", "*.network", "networkd"),
    ("/etc/systemd/network", "*.link", "networkd"),
    ("/etc/network", "interfaces", "interfaces"),
    ("/etc/network/interfaces.d", "*", "interfaces"),
)
_UDEV = re.compile(r"ATTRS?\{address\}\s*==\s*\"(" + MAC + r")\"")
_IFCFG_MAC = re.compile(r"^\s*(HWADDR|MACADDR|LLADDR)\s*=\s*[\"']?(" + MAC + r")[\"']?\s*$")
_KEYFILE_MAC = re.compile(r"^\s*(mac-address|cloned-mac-address)\s*=\s*(" + MAC + r")")
_NETPLAN_MAC = re.compile(r"\bmacaddress\s*:\s*[\"']?(" + MAC + r")")
_NETWORKD = re.compile(r"^\s*(MACAddress|PermanentMACAddress)\s*=\s*(.*)$")
_INTERFACES = re.compile(r"^\s*hwaddress\s+(?:ether\s+)?(" + MAC + r")")


@dataclass(frozen=True)
class MacBinding:
    line: int
    key: str  # what pins it: ATTR{address}, HWADDR, mac-address, macaddress, [Match] MACAddress ...
    mac: str


def mac_bindings(dialect: str, text: str) -> list[MacBinding]:
    """Literal MAC addresses a network or udev configuration binds to; wildcards and comments are not bindings."""
    out: list[MacBinding] = []
    section = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if dialect in ("keyfile", "networkd") and line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        if dialect == "udev":
            out += [MacBinding(number, "ATTR{address}", m.group(1)) for m in _UDEV.finditer(line)]
        elif dialect == "ifcfg":
            if match := _IFCFG_MAC.match(line):
                out.append(MacBinding(number, match.group(1), match.group(2)))
        elif dialect == "keyfile":
            if match := _KEYFILE_MAC.match(line):
                out.append(MacBinding(number, f"[{section}] {match.group(1)}", match.group(2)))
        elif dialect == "netplan":
            out += [MacBinding(number, "macaddress", m.group(1)) for m in _NETPLAN_MAC.finditer(line.split("#", 1)[0])]
        elif dialect == "networkd":
            match = _NETWORKD.match(line)
            if match and section in ("Match", "Link"):  # [Match] binds to a MAC, [Link] pins one
                out += [MacBinding(number, f"[{section}] {match.group(1)}", m) for m in _MAC_RE.findall(match.group(2))]
        elif dialect == "interfaces":
            if match := _INTERFACES.match(line):
                out.append(MacBinding(number, "hwaddress", match.group(1)))
    return out


def mac_sources(inventory: Inventory) -> dict[str, str]:
    """path -> dialect of every file that may pin a MAC address."""
    return {path: dialect for directory, pattern, dialect in MAC_SOURCES for path in inventory.children(directory)
            if fnmatch.fnmatchcase(_name(path), pattern) and (st := inventory.get(path)) is not None and st.is_file}  # fmt: skip


def mac_residue(inventory: Inventory, contents: Mapping[str, bytes]) -> list[Residue]:
    found = []
    for path, dialect in sorted(mac_sources(inventory).items()):
        data = contents.get(path)
        if data is None:
            found.append(Residue(path, "network configuration could not be read", _size(inventory, path), unread=True))
            continue
        bindings = mac_bindings(dialect, data.decode("utf-8", "replace"))
        if not bindings:
            continue
        shown = "; ".join(f"line {b.line}: {b.key} {b.mac.lower()}" for b in bindings[:5])
        more = f"; and {len(bindings) - 5} more" if len(bindings) > 5 else ""
        found.append(Residue(path, f"hard-coded MAC address: {shown}{more}", _size(inventory, path), line=bindings[0].line))
    return found


# ---------------------------------------------------------------------------
# scheduled-jobs-residue

# User crontabs: Debian/Ubuntu, SUSE, and RHEL (files directly in /var/spool/cron; Debian keeps only
# directories there). At queues: Debian's atjobs/atspool, RHEL's /var/spool/at(/spool). Names
# starting with '.' are the queue's own bookkeeping (.SEQ, .lockfile), shipped by the package.
USER_CRON_DIRS = ("/var/spool/cron/crontabs", "/var/spool/cron/tabs", "/var/spool/cron")
AT_DIRS = ("/var/spool/cron/atjobs", "/var/spool/cron/atspool", "/var/spool/at", "/var/spool/at/spool")
SYSTEM_CRONTAB, CRON_D = "/etc/crontab", "/etc/cron.d"
# BusyBox crond (BusyBox, Buildroot, OpenWrt, Alpine) keeps every user's table here, root's included: on an
# appliance they are its configured schedule, judged like /etc/cron.d (only build-looking entries count).
BUSYBOX_CRONTABS = "/etc/crontabs"
SCRATCH_PREFIXES = ("/tmp/", "/var/tmp/", "/dev/shm/", "/home/", "/root/")
_WRAPPERS = {"sudo", "nohup", "exec", "env", "nice", "ionice", "sh", "bash", "dash", "zsh", "python", "python3",
             "perl", "chronic", "run-one", "timeout"}  # fmt: skip
_OPTIONS_WITH_VALUE = {"-u", "-g", "--user", "--group"}  # sudo -u build /home/build/job.sh runs the job, not 'build' 
_SEGMENT = re.compile(r"&&|\|\||[;|&]|\b(?:then|do|else)\b")
_DOWNLOAD_TO_SHELL = re.compile(r"\b(curl|wget)\b[^|;&]*\|\s*(?:sudo\s+(?:-\S+\s+)*)?(?:/usr)?(?:/bin/)?(?:ba|da|z)?sh\b"
                                r"|\b(?:ba|da|z)?sh\s+-c\s+[\"']?\$\(\s*(curl|wget)\b")  # fmt: skip
_ENV_LINE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\s*=")


@dataclass(frozen=True)
class CronEntry:
    line: int
    command: str


def crontab_entries(text: str, system: bool) -> list[CronEntry]:
    """Job lines of a crontab; ``system`` tables (/etc/crontab, /etc/cron.d) have a user field."""
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or _ENV_LINE.match(line):
            continue
        fields = line.split(None, (1 if line.startswith("@") else 5) + (1 if system else 0))
        want = (2 if line.startswith("@") else 6) + (1 if system else 0)
        if len(fields) == want:
            out.append(CronEntry(number, fields[-1]))
    return out


def _programs(command: str) -> list[str]:
    """The program each simple command of a shell line runs (past sudo, nohup, sh -c, env assignments...)."""
    programs = []
    for segment in _SEGMENT.split(command):
        words = [w.strip("\"'()[]{}") for w in segment.split()]
        skip_next = False
        for word in words:
            if skip_next or not word or _ENV_LINE.match(word) or word.isdigit() or _name(word) in _WRAPPERS:
                skip_next = False
                continue
            if word.startswith("-"):
                skip_next = word in _OPTIONS_WITH_VALUE
                continue
            programs.append(word)
            break
    return programs


def suspicious_cron(command: str) -> str | None:
    """Why a system cron entry looks like build residue, or None.

    Package-shipped entries (Debian's e2scrub_all, php's sessionclean,
    sysstat) run programs from /usr; a job that runs something out of /tmp,
    /root or a home directory, or pipes a download into a shell, is not one.
    """
    download = _DOWNLOAD_TO_SHELL.search(command)
    if download:
        return f"pipes a download ({download.group(1) or download.group(2)}) into a shell"
    for program in _programs(command):
        if program.startswith(SCRATCH_PREFIXES):
            return f"runs {program}"
    return None


def cron_paths(inventory: Inventory) -> list[str]:
    paths = [p for p in [SYSTEM_CRONTAB, *inventory.children(CRON_D)] if (st := inventory.get(p)) is not None and st.is_file]
    return paths + [r.path for r in _spool_files(inventory, (*USER_CRON_DIRS, BUSYBOX_CRONTABS))]


def _spool_files(inventory: Inventory, directories: Iterable[str]) -> list[Residue]:
    out = []
    for directory in directories:
        for path in inventory.children(directory):
            st = inventory.get(path)
            if st is not None and st.is_file and not _name(path).startswith(".") and st.size > 0:
                out.append(Residue(path, "", st.size))
    return out


def scheduled_residue(inventory: Inventory, contents: Mapping[str, bytes]) -> list[Residue]:
    found = []
    for item in _spool_files(inventory, USER_CRON_DIRS):
        owner = _name(item.path)
        data = contents.get(item.path)
        count = None if data is None else len(crontab_entries(data.decode("utf-8", "replace"), False))
        jobs = "" if count is None else f" with {_plural(count, 'job')}"
        found.append(Residue(item.path, f"crontab of user {owner}{jobs}", item.size))
    for item in _spool_files(inventory, AT_DIRS):
        found.append(Residue(item.path, "queued at job (or its output) from the build", item.size))
    for path in [SYSTEM_CRONTAB, *inventory.children(CRON_D)]:
        st = inventory.get(path)
        if st is None or not st.is_file:
            continue
        data = contents.get(path)
        if data is None:
            found.append(Residue(path, "system crontab could not be read", st.size, unread=True))
            continue
        hits = [(e.line, why) for e in crontab_entries(data.decode("utf-8", "replace"), True) if (why := suspicious_cron(e.command))]
        if hits:
            shown = "; ".join(f"line {n} {why}" for n, why in hits[:5])
            found.append(Residue(path, f"system cron entry that no package ships: {shown}", st.size, line=hits[0][0]))
    for item in _spool_files(inventory, (BUSYBOX_CRONTABS,)):
        data = contents.get(item.path)
        if data is None:
            found.append(Residue(item.path, "BusyBox crontab could not be read", item.size, unread=True))
            continue
        hits = [(e.line, why) for e in crontab_entries(data.decode("utf-8", "replace"), False) if (why := suspicious_cron(e.command))]
        if hits:
            shown = "; ".join(f"line {n} {why}" for n, why in hits[:5])
            found.append(Residue(item.path, f"BusyBox crontab of {_name(item.path)} with a build-looking entry: {shown}",
                                 item.size, line=hits[0][0]))  # fmt: skip
    return sorted(found, key=lambda r: r.path)


# ---------------------------------------------------------------------------
# package-cache-residue

# (cache directory, basename glob, recursive). /var/lib/apt/lists is left alone, as virt-sysprep's
# package-manager-cache does: it is the package index, not downloaded packages, and many official
# images ship it. Empty files are left alone too: 'apt-get clean' keeps archives/lock.
PACKAGE_CACHES = (
    ("/var/cache/apt/archives", "*.deb", True),
    ("/var/cache/apt", "*.bin", False),
    ("/var/cache/dnf", "*", True),
    ("/var/cache/yum", "*", True),
    ("/var/cache/zypp", "*", True),
    ("/var/cache/apk", "*", True),
    ("/var/cache/pacman/pkg", "*", True),
    ("/var/lib/rpm", "__db.*", False),  # Berkeley DB environment files: host-specific (virt-sysprep rpm-db)
)


def package_cache_residue(trees: Mapping[str, list[tuple[str, Stat]]]) -> list[Residue]:
    found = []
    for directory, pattern, recursive in PACKAGE_CACHES:
        files = [(p, s) for p, s in trees.get(directory, [])
                 if s.is_file and s.size > 0 and fnmatch.fnmatchcase(_name(p), pattern)
                 and (recursive or posixpath.dirname(p) == directory)]  # fmt: skip
        if files:
            count, size = totals(files)
            examples = ", ".join(_name(p) for p, _ in files[:3]) + (", ..." if count > 3 else "")
            found.append(Residue(directory, f"package cache ({examples})", size, files=count))
    return found


# ---------------------------------------------------------------------------
# scratch-and-crash-residue

TMP_DIRS = ("/tmp", "/var/tmp")  # virt-sysprep tmp-files
CRASH_DIRS = {  # virt-sysprep crash-data, abrt-data; systemd's own store
    "/var/crash": "crash dump",
    "/var/log/dump": "kdump crash dump",
    "/var/spool/abrt": "abrt crash report",
    "/var/lib/systemd/coredump": "systemd core dump",
}
# Created at every boot by systemd-tmpfiles or services, emptied on shutdown; not residue when empty of files.
TMP_RUNTIME_DIRS = {".X11-unix", ".ICE-unix", ".XIM-unix", ".font-unix", ".Test-unix", "lost+found"}
BACKUP_ROOTS = ("/etc", "/root", "/srv", "/home")  # virt-sysprep backup-files, without /var: /var/backups is Debian's own
BACKUP_SUFFIXES = ("~", ".swp", ".bak", ".orig")  # virt-sysprep's *~ and *.bak, and vim swap files, patch leftovers
# Old copies of the account databases belong to passwd-backup-files.
_ACCOUNT_BACKUP = re.compile(r"^/etc/(passwd|shadow|group|gshadow|subuid|subgid)(-|\.bak|\.old|\.orig|~)+$")
CORE_ROOTS = ("/root", "/home", "/srv")  # and / itself: where a crashed build step's working directory was
_CORE_NAME = re.compile(r"^core(\.\d+)?$")
_TMP_CORE_NAME = re.compile(r"^core([.-].*)?$|\.core$")
LIST_MAX = 20  # findings per directory; the rest are summarised in one


def is_elf_core(head: bytes) -> bool:
    """An ELF file of type ET_CORE: a process memory image."""
    if len(head) < 18 or head[:4] != b"\x7fELF" or head[5] not in (1, 2):
        return False
    return int.from_bytes(head[16:18], "little" if head[5] == 1 else "big") == 4


def core_candidates(inventory: Inventory, trees: Mapping[str, list[tuple[str, Stat]]]) -> list[str]:
    """Regular files named like core dumps where a crashed process would have left one; to be sniffed."""
    out = [p for p in inventory.children("/") if _CORE_NAME.match(_name(p))]
    for root in CORE_ROOTS:
        out += [p for p, _ in trees.get(root, []) if _CORE_NAME.match(_name(p))]
    for root in TMP_DIRS:
        out += [p for p, _ in trees.get(root, []) if _TMP_CORE_NAME.search(_name(p))]
    return sorted(p for p in set(out) if (st := inventory.get(p)) is not None and st.is_file and st.size >= 64)


def is_account_backup(path: str) -> bool:
    return bool(_ACCOUNT_BACKUP.match(path))


def scratch_residue(inventory: Inventory, trees: Mapping[str, list[tuple[str, Stat]]], cores: set[str]) -> list[Residue]:
    found: list[Residue] = []
    for directory in (*TMP_DIRS, *CRASH_DIRS):
        crash = directory in CRASH_DIRS
        items = []
        grouped = _by_child(directory, trees.get(directory, []))
        for path in inventory.children(directory):
            st = inventory.get(path)
            if st is None:
                continue
            if st.is_dir:
                below = grouped.get(path, [])
                count, size = totals(below)
                runtime = _name(path) in TMP_RUNTIME_DIRS or _name(path).startswith("systemd-private-")
                if count == 0 or (runtime and not crash):
                    continue
                has_core = crash or any(p in cores for p, _ in below)
                what = CRASH_DIRS[directory] if crash else "temporary directory"
                items.append(Residue(path, f"{what} left from the build", size, files=count, core=has_core))
            else:
                core = crash or path in cores
                what = CRASH_DIRS[directory] if crash else "core dump in a temporary directory" if path in cores else "temporary file"
                items.append(Residue(path, f"{what} left from the build", st.size if st.is_file else None, core=core))
        found += _capped(directory, items)
    stray = [Residue(p, "ELF core dump (process memory, may hold secrets)", _size(inventory, p), core=True)
             for p in sorted(cores) if not p.startswith(tuple(d + "/" for d in TMP_DIRS))]  # fmt: skip
    by_dir: dict[str, list[Residue]] = {}
    for item in stray:
        by_dir.setdefault(posixpath.dirname(item.path), []).append(item)
    backups: dict[str, list[Residue]] = {}
    for root in BACKUP_ROOTS:
        for path, st in trees.get(root, []):
            if path.endswith(BACKUP_SUFFIXES) and st.is_file and not is_account_backup(path):
                what = "editor swap file" if path.endswith(".swp") else "backup copy"
                backups.setdefault(posixpath.dirname(path), []).append(Residue(path, f"{what}: may hold an old secret", st.size))
    for directory in sorted(set(by_dir) | set(backups)):
        found += _capped(directory, by_dir.get(directory, []) + backups.get(directory, []))
    return found


def _capped(directory: str, items: list[Residue]) -> list[Residue]:
    """The first LIST_MAX items of a directory, then one finding on the directory for the rest."""
    items = sorted(items, key=lambda r: r.path)
    if len(items) <= LIST_MAX:
        return items
    rest = items[LIST_MAX - 1 :]
    files, size = sum(r.files or 1 for r in rest), sum(r.size or 0 for r in rest)
    summary = Residue(directory, f"and {len(rest)} more entries here, not listed one by one", size, files=files,
                      core=any(r.core for r in rest))  # fmt: skip
    return items[: LIST_MAX - 1] + [summary]


# ---------------------------------------------------------------------------
# cloud-agent-state-residue

CLOUD_LIB = "/var/lib/cloud"
CLOUD_STATE_DIRS = ("/var/lib/cloud/data", "/var/lib/cloud/sem")  # /var/lib/cloud/scripts and seed are vendor content
CLOUD_INIT_LOGS = "cloud-init*.log"
WAAGENT_LIB = "/var/lib/waagent"
OVF_ENV = "/var/lib/waagent/ovf-env.xml"
# What 'waagent -deprovision' deletes (del_lib_dir_files, del_ext_handler_files) plus the
# 'provisioned' marker that makes the agent skip provisioning. WALinuxAgent-* directories are
# auto-updated agent code and stay.
WAAGENT_STATE = ("GoalState.*", "HostingEnvironmentConfig.xml", "SharedConfig.xml", "ExtensionsConfig*", "Certificates*",
                 "*.crt", "*.prv", "*.pem", "Incarnation", "Protocol", "ManagedIdentity*", "provisioned",
                 "published_hostname", "waagent_status.json", "*.settings", "*.status", "partition")  # fmt: skip
WAAGENT_STATE_DIRS = ("history", "events")
SSM_LIB = "/var/lib/amazon/ssm"
_INSTANCE_DIR = re.compile(r"^(i|mi)-[0-9a-f]{8,17}$")


def cloud_agent_residue(inventory: Inventory, trees: Mapping[str, list[tuple[str, Stat]]]) -> list[Residue]:
    found = []
    cloud = trees.get(CLOUD_LIB, [])
    instance = inventory.get(CLOUD_LIB + "/instance")
    if instance is not None and instance.is_link:
        found.append(Residue(CLOUD_LIB + "/instance", "symlink to the build VM's cloud-init instance state"))
    instances = [p for p in inventory.children(CLOUD_LIB + "/instances") if (s := inventory.get(p)) is not None and s.is_dir]
    if instance is not None and instance.is_dir:  # old cloud-init kept the state right there
        instances.append(CLOUD_LIB + "/instance")
    for path in sorted(instances):
        below = _below(cloud, path)
        count, size = totals(below)
        if count:
            secrets = [f"{_name(p)} ({human_size(s.size)})" for p, s in below
                       if posixpath.dirname(p) == path and _name(p).startswith(("user-data", "vendor-data")) and s.size]  # fmt: skip
            verb = "is" if len(secrets) == 1 else "are"
            extra = f"; {', '.join(secrets)} may hold secrets and {verb} not shown" if secrets else ""
            found.append(Residue(path, f"cloud-init state of instance {_name(path)}{extra}", size, files=count))
    for directory in CLOUD_STATE_DIRS:
        count, size = totals(_below(cloud, directory))
        if count:
            found.append(Residue(directory, "cloud-init state from the build VM", size, files=count))
    for path in inventory.children("/var/log"):
        st = inventory.get(path)
        if st is not None and st.is_file and st.size > 0 and fnmatch.fnmatchcase(_name(path), CLOUD_INIT_LOGS):
            found.append(Residue(path, "cloud-init log of the build VM's boots", st.size))
    ovf = inventory.get(OVF_ENV)
    if ovf is not None and ovf.is_file:
        found.append(Residue(OVF_ENV, "Azure provisioning document of the build VM; may hold the admin password "
                                      "and custom data, not shown", ovf.size))  # fmt: skip
    state = []
    for path, st in trees.get(WAAGENT_LIB, []):
        relative = path[len(WAAGENT_LIB) + 1 :]
        if st.is_dir or path == OVF_ENV or relative.startswith("WALinuxAgent-"):
            continue
        state_file = any(fnmatch.fnmatchcase(_name(path), g) for g in WAAGENT_STATE)
        if state_file or relative.split("/", 1)[0] in WAAGENT_STATE_DIRS:
            state.append((path, st))
    if state:
        count, size = totals(state)
        names = ", ".join(sorted({_name(p) for p, _ in state})[:5]) + (", ..." if len(state) > 5 else "")
        found.append(Residue(WAAGENT_LIB, f"Azure agent state of the build VM ({names})", size, files=count))
    log = inventory.get("/var/log/waagent.log")
    if log is not None and log.is_file and log.size > 0:
        found.append(Residue("/var/log/waagent.log", "Azure agent log of the build VM", log.size))
    for path in inventory.children(SSM_LIB):
        if _INSTANCE_DIR.match(_name(path)):
            count, size = totals(_below(trees.get(SSM_LIB, []), path))
            if count:
                found.append(Residue(path, f"SSM agent state of instance {_name(path)}", size, files=count))
    return found


# ---------------------------------------------------------------------------
# What the collector needs: every directory walked, and every file read, in one place


def tree_roots() -> set[str]:
    roots = {d for d, _, _ in LEASE_RULES} | {d for d, _, _ in PACKAGE_CACHES}
    roots |= set(TMP_DIRS) | set(CRASH_DIRS) | set(BACKUP_ROOTS) | set(CORE_ROOTS)
    return roots | {CLOUD_LIB, WAAGENT_LIB, SSM_LIB}


def content_paths(inventory: Inventory) -> list[str]:
    """Files whose content decides a finding (all small configuration files)."""
    paths = identity_paths(inventory) + network_paths(inventory) + list(mac_sources(inventory)) + cron_paths(inventory)
    return sorted(set(paths))


@dataclass
class ResidueFacts:
    """Findings-to-be of the residue checks, one list per check."""

    identity: list[Residue] = field(default_factory=list)
    network: list[Residue] = field(default_factory=list)
    mac_bindings: list[Residue] = field(default_factory=list)
    scheduled: list[Residue] = field(default_factory=list)
    package_caches: list[Residue] = field(default_factory=list)
    scratch: list[Residue] = field(default_factory=list)
    cloud_agent: list[Residue] = field(default_factory=list)


def find_residue(inventory: Inventory, contents: Mapping[str, bytes], cores: set[str], trees=None) -> ResidueFacts:
    trees = trees if trees is not None else gather(inventory, tree_roots())
    return ResidueFacts(
        identity=identity_residue(inventory, contents),
        network=network_residue(inventory, contents, trees),
        mac_bindings=mac_residue(inventory, contents),
        scheduled=scheduled_residue(inventory, contents),
        package_caches=package_cache_residue(trees),
        scratch=scratch_residue(inventory, trees, cores),
        cloud_agent=cloud_agent_residue(inventory, trees),
    )
