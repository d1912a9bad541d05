"""The dropbear SSH servers an embedded or appliance image starts, and the flags each gets.

Dropbear reads no configuration file: its flags come from whatever starts
it (certify/guest/parsers/dropbear.py lists the places). One instance per
place that starts it: each OpenWrt 'config dropbear' section, each
variables file an init script sources, each /etc/inittab or inetd line.
An installed dropbear that an init script starts with no configuration at
all runs on its compiled-in defaults, and is judged on them.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from certify.guest.parsers.dropbear import (
    ARGUMENT_VARIABLES,
    DropbearOptions,
    Origin,
    apply_args,
    command_words,
    inittab_entries,
    openwrt_defaults,
    options_from_shell_file,
    options_from_uci,
)
from certify.guest.parsers.remote_access import UNIT_DIRS, inetd_services
from certify.guest.parsers.uci import parse_uci
from certify.guest.reader import GuestReader
from certify.model import GuestCollector
from certify.plugins.hookspecs import hookimpl

CONFIG_LIMIT = 256 * 1024
MEMO_KEY = "dropbear-config"
BINARIES = ("/usr/sbin/dropbear", "/usr/bin/dropbear", "/sbin/dropbear", "/bin/dropbear", "/usr/local/sbin/dropbear",
            "/usr/sbin/dropbearmulti", "/usr/bin/dropbearmulti")  # fmt: skip
UCI_CONFIG = "/etc/config/dropbear"
OPENWRT_INIT = "/etc/init.d/dropbear"
INITTAB = "/etc/inittab"
INETD = "/etc/inetd.conf"
PROGRAM_NAMES = ("dropbear", "dropbearmulti")


@dataclass(frozen=True)
class DropbearInstance:
    """One dropbear that starts at boot: what starts it, where its flags come from, and the flags."""

    source: str  # for evidence: "OpenWrt's /etc/init.d/dropbear, section 'main' of /etc/config/dropbear"
    origin: Origin  # the place its flags are written (or the script that starts it without any)
    options: DropbearOptions
    settings: dict[str, Origin] = field(default_factory=dict)  # OpenWrt option name -> where it is set (or defaulted)

    def decided_by(self, *names: str) -> Origin:
        """The UCI setting among ``names`` that decides, else where the flags come from."""
        return next((self.settings[n] for n in names if n in self.settings), self.origin)


@dataclass(frozen=True)
class DropbearConfig:
    binary: str | None  # None: no dropbear in the image
    instances: tuple[DropbearInstance, ...]
    not_started: tuple[str, ...] = ()  # configurations that start nothing (disabled sections, NO_START)
    problems: tuple[str, ...] = ()  # configurations the init system cannot load: what runs is unknown
    disks: dict[str, str | None] = field(default_factory=dict)  # each file a finding may point at -> its bundle disk

    @property
    def authorized_keys_dirs(self) -> list[tuple[str, DropbearInstance]]:
        """-D DIR of each instance: where it reads authorized_keys instead of ~/.ssh."""
        return [(inst.options.authorized_keys_dir[0], inst) for inst in self.instances if inst.options.authorized_keys_dir]


def _starters(reader: GuestReader) -> list[str]:
    """Init scripts and units that start dropbear with no configuration file of their own."""
    inventory = reader.inventory()
    found = [p for p in inventory.children("/etc/init.d") if "dropbear" in posixpath.basename(p)]
    found += [p for d in UNIT_DIRS for p in inventory.children(d) if posixpath.basename(p).startswith(("dropbear.", "dropbear@."))]
    return sorted(found)


def load_dropbear(reader: GuestReader) -> DropbearConfig:
    inventory = reader.inventory()
    binary = next((b for b in BINARIES if inventory.get(b) is not None), None)
    if binary is None:
        return DropbearConfig(None, ())
    paths = [UCI_CONFIG, OPENWRT_INIT, INITTAB, INETD, *ARGUMENT_VARIABLES]
    contents = {p: d.decode("utf-8", "replace") for p, d in reader.read_many(paths, CONFIG_LIMIT).items()}
    instances: list[DropbearInstance] = []
    not_started: list[str] = []
    problems: list[str] = []

    if UCI_CONFIG in contents:
        uci = parse_uci(contents[UCI_CONFIG])
        if uci.problems:  # uci refuses the whole file: the init script loads nothing
            problems.append(f"{UCI_CONFIG} does not parse ({'; '.join(uci.problems[:3])})")
        else:
            defaults = openwrt_defaults(contents.get(OPENWRT_INIT))
            for section in uci.of_type("dropbear"):
                made = options_from_uci(UCI_CONFIG, section, defaults)
                if not made.enabled:
                    not_started.append(f"{UCI_CONFIG} section {section.label}: {made.why_not}")
                    continue
                settings = {n: Origin(UCI_CONFIG, v.line, f"option {n} '{v.value}'") for n, v in section.options.items()}
                for name, default in defaults.items():
                    settings.setdefault(name, Origin(UCI_CONFIG, section.line, f"config dropbear {section.label} without {name} (default {default})"))
                instances.append(DropbearInstance(f"OpenWrt's {OPENWRT_INIT}, section {section.label} of {UCI_CONFIG}",
                                                  Origin(UCI_CONFIG, section.line, f"config dropbear {section.label}"),
                                                  made.options, settings))  # fmt: skip
    for path in ARGUMENT_VARIABLES:
        if path not in contents:
            continue
        made = options_from_shell_file(path, contents[path])
        if not made.starts:
            not_started.append(f"{path}: NO_START is set, the init script starts no dropbear")
            continue
        instances.append(DropbearInstance(f"the init script that sources {path}", made.origin, made.options))
    if INITTAB in contents:
        for entry in inittab_entries(contents[INITTAB]):
            words = _dropbear_flags(command_words(entry.command))
            if words is not None:
                options = DropbearOptions()
                origin = Origin(INITTAB, entry.line, entry.command)
                apply_args(options, words, origin)
                instances.append(DropbearInstance(f"{INITTAB} ({entry.action})", origin, options))
    if INETD in contents:
        for service in inetd_services(contents[INETD]):
            argv = command_words(service.server)  # inetd: the program, then its whole argv (argv[0] included)
            words = _dropbear_flags(argv[:1] + argv[2:])
            if words is not None:
                options = DropbearOptions()
                origin = Origin(INETD, service.line, service.server)
                apply_args(options, words, origin)
                instances.append(DropbearInstance(f"{INETD} (service {service.service})", origin, options))
    if not instances and not not_started and not problems:
        starters = _starters(reader)
        if starters:  # e.g. Buildroot's S50dropbear with no /etc/default/dropbear: only -R
            instances.append(DropbearInstance(f"{starters[0]}, with no configuration", Origin(starters[0]), DropbearOptions()))
        else:
            not_started.append(f"{binary} is installed but nothing starts it at boot")
    paths = {i.origin.path for i in instances} | {o.path for i in instances for o in i.settings.values()}
    paths |= {o.path for i in instances for o in _flag_origins(i.options)}
    disks = {path: reader.disk_file(path) for path in paths}
    return DropbearConfig(binary, tuple(instances), tuple(not_started), tuple(problems), disks)


def _flag_origins(options: DropbearOptions) -> list[Origin]:
    origins = [getattr(options, n) for n in ("no_password", "no_root_password", "no_root_login", "blank_passwords", "two_factor",
                                              "no_local_forwarding", "no_remote_forwarding")]  # fmt: skip
    origins += [options.max_auth_tries[1]] if options.max_auth_tries else []
    return [o for o in origins if o is not None]


def _dropbear_flags(words: list[str]) -> list[str] | None:
    """The flags of a command line that runs dropbear (the program, or dropbearmulti's dropbear applet); else None."""
    if not words or posixpath.basename(words[0].lstrip("-")) not in PROGRAM_NAMES:
        return None
    rest = words[1:]
    if posixpath.basename(words[0].lstrip("-")) == "dropbearmulti":
        if not rest or rest[0] != "dropbear":
            return None
        rest = rest[1:]
    return rest


def collect_dropbear(reader: GuestReader) -> DropbearConfig:
    return reader.memo(MEMO_KEY, load_dropbear)


@hookimpl
def certify_guest_collectors() -> list[GuestCollector]:
    return [
        GuestCollector(os_types=("linux",), name="dropbear_config", collect=collect_dropbear,
                       description="dropbear servers started at boot and their flags: /etc/config/dropbear (OpenWrt), "
                                   "/etc/default/dropbear, /etc/conf.d/dropbear, /etc/sysconfig/dropbear, /etc/inittab"),
    ]  # fmt: skip
