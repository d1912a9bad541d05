"""Dropbear's server options, from wherever an embedded system keeps them.

Dropbear has no configuration file: everything is a command-line flag
(svr-runopts.c). What is in the image is the place an init system builds
that command line from:

- OpenWrt: UCI sections in /etc/config/dropbear, turned into flags by
  /etc/init.d/dropbear (PasswordAuth 0 -> -s, RootPasswordAuth 0 -> -g,
  RootLogin 0 -> -w, MaxAuthTries N -> -T N, keyfile -> -r ...);
- Buildroot: DROPBEAR_ARGS in /etc/default/dropbear (S50dropbear);
- Debian: DROPBEAR_EXTRA_ARGS in /etc/default/dropbear (and NO_START);
- Alpine: DROPBEAR_OPTS in /etc/conf.d/dropbear; Fedora: OPTIONS in
  /etc/sysconfig/dropbear;
- BusyBox init: the command of a dropbear line in /etc/inittab.

Without any of them dropbear runs on its compiled-in defaults: passwords
accepted, root included; blank passwords refused; ten tries per connection.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from certify.guest.parsers.uci import UciSection, uci_bool

DEFAULT_MAX_AUTH_TRIES = 10  # MAX_AUTH_TRIES, default_options.h
DEFAULT_HOST_KEYS = tuple(f"/etc/dropbear/dropbear_{t}_host_key" for t in ("rsa", "dss", "ecdsa", "ed25519"))
DEFAULT_AUTHORIZED_KEYS_DIR = "~/.ssh"
# Flags that take an argument (svr_getopts); every other letter below is a switch.
_WITH_ARGUMENT = frozenset("bcdrDPlGWKIMTAQ2p")
_SWITCHES = frozenset("RFEejkaimwsgBthuVvz")


@dataclass(frozen=True)
class Origin:
    """Where a flag (or a setting that becomes one) is written: file and line, or what stands for it."""

    path: str
    line: int | None = None
    text: str = ""  # how the setting is written there, for evidence

    def describe(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"'{self.text}' at {where}" if self.text else where


@dataclass
class DropbearOptions:
    """The flags that decide who may log in, each with the place that set it (None: not given)."""

    no_password: Origin | None = None  # -s
    no_root_password: Origin | None = None  # -g
    no_root_login: Origin | None = None  # -w
    blank_passwords: Origin | None = None  # -B
    two_factor: Origin | None = None  # -t: a password and a key, never a password alone
    no_local_forwarding: Origin | None = None  # -j
    no_remote_forwarding: Origin | None = None  # -k
    max_auth_tries: tuple[int, Origin] | None = None  # -T
    host_keys: list[tuple[str, Origin]] = field(default_factory=list)  # -r
    authorized_keys_dir: tuple[str, Origin] | None = None  # -D
    problems: list[str] = field(default_factory=list)  # what makes dropbear refuse to start


_FLAG_FIELDS = {"s": "no_password", "g": "no_root_password", "w": "no_root_login", "B": "blank_passwords",
                "t": "two_factor", "j": "no_local_forwarding", "k": "no_remote_forwarding"}  # fmt: skip


def apply_args(options: DropbearOptions, argv: list[str], origin: Origin) -> None:
    """Read ``argv`` as svr_getopts does: clustered switches, an option's argument in the rest of its word or the next."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if not word.startswith("-") or word == "-":
            options.problems.append(f"{origin.describe()}: {word!r} is not an option (dropbear exits: 'Invalid argument')")
            return
        j = 1
        while j < len(word):
            letter = word[j]
            if letter in _WITH_ARGUMENT:
                value = word[j + 1 :]
                if not value:
                    i += 1
                    if i >= len(argv):
                        options.problems.append(f"{origin.describe()}: -{letter} without its argument (dropbear exits)")
                        return
                    value = argv[i]
                _take(options, letter, value, origin)
                break
            if letter not in _SWITCHES:
                options.problems.append(f"{origin.describe()}: unknown option -{letter} (dropbear exits)")
                return
            if letter in _FLAG_FIELDS and getattr(options, _FLAG_FIELDS[letter]) is None:
                setattr(options, _FLAG_FIELDS[letter], origin)
            j += 1
        i += 1


def _take(options: DropbearOptions, letter: str, value: str, origin: Origin) -> None:
    if letter in "rd":
        options.host_keys.append((value, origin))
    elif letter == "D":
        options.authorized_keys_dir = (value, origin)
    elif letter == "T":
        # dropbear takes the number with strtoul-like parsing and refuses a bad one
        if value.isdigit() and int(value) > 0:
            options.max_auth_tries = (int(value), origin)
        else:
            options.problems.append(f"{origin.describe()}: bad -T value {value!r} (dropbear exits)")


# -- shell variable files (/etc/default/dropbear, /etc/conf.d/dropbear, /etc/sysconfig/dropbear) ----------

_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_REFERENCE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class ShellValue:
    words: tuple[str, ...]
    line: int
    text: str  # the assignment as written


def shell_assignments(text: str) -> tuple[dict[str, ShellValue], list[str]]:
    """NAME=value lines of a file an init script sources: the last assignment wins, $NAME expands to earlier ones.

    Only assignments are understood; a value with unbalanced quotes is a
    problem (the shell would fail to source the file).
    """
    values: dict[str, ShellValue] = {}
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        found = _ASSIGNMENT.match(raw)
        if found is None:
            continue
        name, rest = found.groups()
        # An earlier value expands to its words (what "$DROPBEAR_ARGS -R" builds on); anything else to nothing.
        expanded = _REFERENCE.sub(lambda m: " ".join(values[v].words) if (v := m.group(1) or m.group(2)) in values else "", rest)
        try:
            words = shlex.split(expanded, comments=True)
        except ValueError:
            problems.append(f"line {number}: unbalanced quotes in {name}")
            continue
        # A quoted value is one word to the shell; the init script then expands it unquoted into flags.
        flat = tuple(w for word in words for w in word.split())
        values[name] = ShellValue(flat, number, raw.strip())
    return values, problems


# Which variable of which file holds the flags, per distribution's init script.
ARGUMENT_VARIABLES = {
    "/etc/default/dropbear": ("DROPBEAR_ARGS", "DROPBEAR_EXTRA_ARGS"),
    "/etc/conf.d/dropbear": ("DROPBEAR_OPTS",),
    "/etc/sysconfig/dropbear": ("OPTIONS",),
}
# Debian's old init scripts passed these as -r FILE.
KEY_VARIABLES = ("DROPBEAR_RSAKEY", "DROPBEAR_DSSKEY", "DROPBEAR_ECDSAKEY", "DROPBEAR_ED25519KEY")


@dataclass(frozen=True)
class ShellFileOptions:
    options: DropbearOptions
    starts: bool  # False: Debian's NO_START, the init script starts no dropbear
    origin: Origin  # the assignment of the flags variable (what lacks a flag lacks it there), or the file


def options_from_shell_file(path: str, text: str) -> ShellFileOptions:
    """The flags a variables file an init script sources passes, and whether it lets dropbear start at all."""
    options = DropbearOptions()
    values, problems = shell_assignments(text)
    options.problems.extend(f"{path} {p}" for p in problems)
    origin = Origin(path)
    for variable in ARGUMENT_VARIABLES.get(path, ()):
        if variable in values:
            value = values[variable]
            origin = Origin(path, value.line, value.text)
            apply_args(options, list(value.words), origin)
    for variable in KEY_VARIABLES:
        if variable in values and values[variable].words:
            value = values[variable]
            options.host_keys.append((value.words[0], Origin(path, value.line, value.text)))
    no_start = values.get("NO_START")
    return ShellFileOptions(options, no_start is None or no_start.words in ((), ("0",)), origin)


# -- OpenWrt's UCI sections ---------------------------------------------------------------------------

# /etc/init.d/dropbear's validate_section_dropbear: option -> (type, default). Read from the guest's own
# init script when it lists them (defaults changed across releases), else these (OpenWrt 23.05).
OPENWRT_DEFAULTS = {"enable": "1", "PasswordAuth": "1", "RootPasswordAuth": "1", "RootLogin": "1", "MaxAuthTries": "3",
                    "LocalPortForward": "1", "RemotePortForward": "1", "GatewayPorts": "0"}  # fmt: skip
_VALIDATE_SPEC = re.compile(r"'([A-Za-z]+):[a-z]+(?:\([a-z]+\))?(?::([^']*))?'")


def openwrt_defaults(init_script: str | None) -> dict[str, str]:
    """The option defaults /etc/init.d/dropbear declares ('PasswordAuth:bool:1'...), or OpenWrt 23.05's."""
    if not init_script:
        return dict(OPENWRT_DEFAULTS)
    found = {m.group(1): m.group(2) or "" for m in _VALIDATE_SPEC.finditer(init_script)}
    return found if "PasswordAuth" in found else dict(OPENWRT_DEFAULTS)


@dataclass
class UciInstance:
    enabled: bool
    options: DropbearOptions
    why_not: str = ""  # why the init script starts no dropbear for this section


def options_from_uci(path: str, section: UciSection, defaults: dict[str, str]) -> UciInstance:
    """The flags OpenWrt's init script builds from one 'config dropbear' section."""
    options = DropbearOptions()

    def setting(name: str) -> tuple[str, Origin] | None:
        if name in section.options:
            value = section.options[name]
            return value.value, Origin(path, value.line, f"option {name} '{value.value}'")
        if name in defaults:
            return defaults[name], Origin(path, section.line, f"config dropbear {section.label} without {name} (default {defaults[name]})")
        return None

    flags: dict[str, bool] = {}
    for name in ("enable", "PasswordAuth", "RootPasswordAuth", "RootLogin", "LocalPortForward", "RemotePortForward"):
        got = setting(name)
        if got is None:
            continue
        parsed = uci_bool(got[0])
        if parsed is None:  # uci_load_validate fails: the init script prints "validation failed" and skips the section
            return UciInstance(False, options, f"{got[1].describe()} is not a boolean: the section fails validation")
        flags[name] = parsed
        if not parsed and name != "enable":
            letter = {"PasswordAuth": "s", "RootPasswordAuth": "g", "RootLogin": "w", "LocalPortForward": "j",
                      "RemotePortForward": "k"}[name]  # fmt: skip
            setattr(options, _FLAG_FIELDS[letter], got[1])
    if not flags.get("enable", True):
        origin = setting("enable")
        return UciInstance(False, options, f"disabled by {origin[1].describe() if origin else 'enable 0'}")
    if (run_as := section.options.get("RunAsUser")) is not None and run_as.value:
        origin = Origin(path, run_as.line, f"option RunAsUser '{run_as.value}'")  # an unprivileged server: -g -w
        options.no_root_password = options.no_root_password or origin
        options.no_root_login = options.no_root_login or origin
    tries = setting("MaxAuthTries")
    if tries is not None:
        if not tries[0].isdigit():
            return UciInstance(False, options, f"{tries[1].describe()} is not a number: the section fails validation")
        if int(tries[0]) != 0:  # 0: the init script passes no -T
            options.max_auth_tries = (int(tries[0]), tries[1])
    for name in ("keyfile", "rsakeyfile"):
        values = section.lists.get(name, []) + ([section.options[name]] if name in section.options else [])
        for value in values:
            options.host_keys.append((value.value, Origin(path, value.line, f"{name} '{value.value}'")))
    return UciInstance(True, options)


# -- BusyBox init ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InittabEntry:
    line: int
    action: str  # sysinit, respawn, askfirst, once, wait, ...
    command: str


def inittab_entries(text: str) -> list[InittabEntry]:
    """BusyBox (id::action:process) and SysV (id:runlevels:action:process) inittab lines."""
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":", 3)
        if len(fields) == 4 and fields[3].strip():
            out.append(InittabEntry(number, fields[2].strip(), fields[3].strip()))
    return out


def command_words(command: str) -> list[str]:
    """A command line's words, as the shell (or init's exec) would split them; [] when it cannot be split."""
    try:
        return shlex.split(command, comments=True)
    except ValueError:
        return []
