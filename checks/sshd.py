"""Checks on the SSH servers' effective configuration: root login, passwords, empty passwords, hardening options.

For OpenSSH each value is the one sshd would use, resolved offline from the
guest's files (certify/guest/parsers/sshd_config.py): Includes, Match
blocks, first value wins, compiled-in defaults. A Match that tests the
client address may hold for some client, so its value counts (worst case
over addresses). Each finding points at the file and line that decided the
value, or at /etc/ssh/sshd_config when the compiled-in default did.

Embedded images run dropbear instead (or as well): each dropbear started at
boot is judged on the flags it gets (certify/guest/collectors/dropbear.py),
the finding pointing at the UCI option, variables file line or inittab
line that decided, or at the script that starts it with none.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from certify.checkdef import check
from certify.guest.collectors.dropbear import DropbearConfig, DropbearInstance
from certify.guest.collectors.sshd import SshdConfig
from certify.guest.parsers.dropbear import DEFAULT_MAX_AUTH_TRIES, Origin
from certify.guest.parsers.sshd_config import MAIN_CONFIG, Connection, Directive
from certify.model import Layer, Location, Result, Severity, fail, not_applicable, not_evaluated
from certify.plugins.hookspecs import hookimpl

OTHER_USER = Connection("any account other than root", None, None)
CIS = "CIS Benchmark (ComplianceAsCode rule {})"


@dataclass(frozen=True)
class Decision:
    """One value sshd may use for a keyword and connection, and the line (None: compiled-in default) it comes from."""

    keyword: str  # as documented, for evidence
    value: str
    directive: Directive | None
    connection: Connection


def _root(fact: SshdConfig) -> Connection:
    return Connection("root", "root", fact.root_groups)


def _decisions(fact: SshdConfig, keyword: str, connections: list[Connection]) -> list[Decision]:
    assert fact.config is not None
    out = []
    for connection in connections:
        for directive in fact.config.candidates(keyword, connection):
            value = directive.value if directive is not None else fact.defaults.get(keyword)
            out.append(Decision(keyword, value, directive, connection))
    return out


def _unusable(fact: SshdConfig) -> Result | None:
    if not fact.installed:
        return not_applicable(f"sshd is not installed: no {MAIN_CONFIG} and no sshd binary")
    if not fact.evaluable:
        return not_evaluated(f"sshd configuration cannot be evaluated: {fact.problem}", Layer.GUEST)
    return None


def _servers(sshd: SshdConfig, dropbear: DropbearConfig, judge_sshd: Callable[[], Iterator[Result]],
             judge_dropbear: Callable[[DropbearInstance], Iterator[Result]]) -> Iterator[Result]:
    """sshd's results, then each started dropbear's; not-applicable only when neither server runs."""
    if not sshd.installed and not dropbear.instances and not dropbear.problems:
        started = f" ({'; '.join(dropbear.not_started)})" if dropbear.not_started else ""
        yield not_applicable(f"no SSH server: no {MAIN_CONFIG}, no sshd binary and no dropbear started at boot{started}")
        return
    if sshd.installed:
        if (unusable := _unusable(sshd)) is not None:
            yield unusable
        else:
            yield from judge_sshd()
    for problem in dropbear.problems:
        yield not_evaluated(f"dropbear configuration cannot be evaluated: {problem}", Layer.GUEST)
    for instance in dropbear.instances:
        if instance.options.problems:
            yield not_evaluated(f"dropbear started by {instance.source} would refuse its flags: "
                                f"{'; '.join(instance.options.problems[:3])}", Layer.GUEST)  # fmt: skip
        else:
            yield from judge_dropbear(instance)


def _dropbear_fail(dropbear: DropbearConfig, instance: DropbearInstance, origin: Origin, key: str, consequence: str) -> Result:
    where = f"decided by {origin.describe()}" if origin.line or origin.text else f"no option is passed by {origin.path}"
    return fail(Location(layer=Layer.GUEST, file=dropbear.disks.get(origin.path), path=origin.path, line=origin.line, key=key),
                f"dropbear started by {instance.source}: {consequence}; {where}")  # fmt: skip




def _where(decision: Decision) -> str:
    d = decision.directive
    if d is None:
        return "no line sets it, so the compiled-in default applies"
    match = d.deciding_match
    scope = f"inside {match.describe()}" if match else "outside any Match block"
    return f"'{d.name} {' '.join(d.args)}' at {d.origin}, {scope}"


def _findings(fact: SshdConfig, failing: list[Decision], what: str | Callable[[Decision], str]) -> Iterator[Result]:
    """One finding per deciding line (or per default), naming every connection it decides for."""
    grouped: dict[tuple, list[Decision]] = {}
    for decision in failing:
        origin = decision.directive.origin if decision.directive else None
        grouped.setdefault((decision.keyword, origin), []).append(decision)
    for (keyword, origin), decisions in grouped.items():
        first = decisions[0]
        consequence = what(first) if callable(what) else what
        who = ", ".join(dict.fromkeys(d.connection.label for d in decisions))
        if origin is None:
            evidence = (f"{keyword} {first.value}: no line sets it, so the compiled-in default applies "
                        f"({fact.defaults.assumption}); {consequence} (connections as {who})")  # fmt: skip
            location = Location(layer=Layer.GUEST, file=fact.disks.get(MAIN_CONFIG), path=MAIN_CONFIG, key=keyword)
        else:
            evidence = f"{keyword} {first.value} decided by {_where(first)}; {consequence} (connections as {who})"
            location = Location(layer=Layer.GUEST, file=fact.disks.get(origin.path), path=origin.path, line=origin.line, key=keyword)
        yield fail(location, evidence)


@check(
    id="sshd-permit-root-login",
    severity=Severity.HIGH,
    layer=Layer.GUEST,
    title="sshd lets root log in with a password",
    remediation=(
        "Set 'PermitRootLogin no' (or prohibit-password) at the top of /etc/ssh/sshd_config, before any Include "
        "or Match: sshd keeps the first value it reads, and a Match block overrides it for the connections it "
        "matches. Remove drop-ins or Match blocks that set 'PermitRootLogin yes'. For dropbear, pass -w (or -g): "
        "on OpenWrt set option RootPasswordAuth '0' (or RootLogin '0') in /etc/config/dropbear, elsewhere add it "
        "to DROPBEAR_ARGS / DROPBEAR_EXTRA_ARGS / DROPBEAR_OPTS."
    ),
    references=(
        "AWS Marketplace AMI policy: disable password-based remote root login",
        "Oracle Cloud Marketplace guideline S14: root login disabled",
        CIS.format("sshd_disable_root_login"),
        "Lynis SSH-7408 (PermitRootLogin)",
    ),
)
def sshd_permit_root_login(sshd_config: SshdConfig, dropbear_config: DropbearConfig):
    """Effective PermitRootLogin for root from any address; 'yes' fails, prohibit-password, forced-commands-only and no pass.

    A dropbear fails unless it gets -w (no root login), -g (no root
    password) or -s (no passwords): OpenWrt's RootLogin, RootPasswordAuth
    and PasswordAuth set to 0.
    """

    def judge_sshd() -> Iterator[Result]:
        failing = [d for d in _decisions(sshd_config, "PermitRootLogin", [_root(sshd_config)]) if d.value.lower() == "yes"]
        yield from _findings(sshd_config, failing, "root may log in with a password")

    def judge_dropbear(instance: DropbearInstance) -> Iterator[Result]:
        o = instance.options
        if o.no_root_login or o.no_root_password or o.no_password or o.two_factor:
            return
        yield _dropbear_fail(dropbear_config, instance, instance.decided_by("RootPasswordAuth", "RootLogin"), "dropbear -w/-g",
                             "root may log in with a password (no -w, -g, -s or -t)")  # fmt: skip

    yield from _servers(sshd_config, dropbear_config, judge_sshd, judge_dropbear)


_PASSWORD_METHODS = re.compile(r"^(password|keyboard-interactive(:.*)?)$")


def _password_alone(fact: SshdConfig, connection: Connection) -> Decision | None:
    """An AuthenticationMethods value that lets a password (or keyboard-interactive) suffice, if one can apply."""
    for decision in _decisions(fact, "AuthenticationMethods", [connection]):
        lists = decision.directive.args if decision.directive else (decision.value,)
        for methods in lists:
            if methods == "any" or all(_PASSWORD_METHODS.match(m) for m in methods.split(",")):
                return decision
    return None


@check(
    id="sshd-password-authentication",
    severity=Severity.HIGH,
    layer=Layer.GUEST,
    title="sshd accepts passwords",
    remediation=(
        "Set 'PasswordAuthentication no' and 'KbdInteractiveAuthentication no' at the top of "
        "/etc/ssh/sshd_config, before any Include (the first value wins), and remove drop-ins and Match blocks "
        "that turn them back on. With UsePAM yes, keyboard-interactive asks for the account password through "
        "PAM, so it counts as password authentication. For dropbear, pass -s (OpenWrt: option PasswordAuth '0' "
        "in /etc/config/dropbear)."
    ),
    references=(
        "AWS Marketplace AMI policy: Linux AMIs must not allow SSH password authentication",
        "Azure Policy LinuxNoPasswordForSSH",
        CIS.format("sshd_disable_password_authentication"),
    ),
)
def sshd_password_authentication(sshd_config: SshdConfig, dropbear_config: DropbearConfig):
    """Effective PasswordAuthentication, and KbdInteractiveAuthentication (alias ChallengeResponseAuthentication) when UsePAM is yes.

    Evaluated for an account other than root, and for root when root may log
    in with a password; AuthenticationMethods that require a key as well
    make a password alone useless and pass. A dropbear fails unless it gets
    -s (OpenWrt's PasswordAuth 0) or -t (a key and a password, never a
    password alone).
    """

    def judge_dropbear(instance: DropbearInstance) -> Iterator[Result]:
        if instance.options.no_password or instance.options.two_factor:
            return
        yield _dropbear_fail(dropbear_config, instance, instance.decided_by("PasswordAuth"), "dropbear -s", "passwords are accepted (no -s or -t)")

    yield from _servers(sshd_config, dropbear_config, lambda: _sshd_password_authentication(sshd_config), judge_dropbear)


def _sshd_password_authentication(sshd_config: SshdConfig) -> Iterator[Result]:
    fact = sshd_config
    root = _root(fact)
    connections = [OTHER_USER]
    if any(d.value.lower() == "yes" for d in _decisions(fact, "PermitRootLogin", [root])):
        connections.append(root)
    usable = [c for c in connections if _password_alone(fact, c) is not None]
    failing = [d for d in _decisions(fact, "PasswordAuthentication", usable) if d.value.lower() == "yes"]
    yield from _findings(fact, failing, "passwords are accepted")
    assert fact.config is not None
    use_pam = fact.config.startup("UsePAM")
    if (use_pam.value if use_pam else fact.defaults.get("UsePAM")).lower() == "yes":
        pam_where = f"UsePAM yes at {use_pam.origin}" if use_pam else "UsePAM yes by default"
        kbd = [d for d in _decisions(fact, "KbdInteractiveAuthentication", usable) if d.value.lower() == "yes"]
        yield from _findings(fact, kbd, f"keyboard-interactive asks for the password through PAM ({pam_where})")


@check(
    id="sshd-permit-empty-passwords",
    severity=Severity.HIGH,
    layer=Layer.GUEST,
    title="sshd accepts empty passwords",
    remediation=(
        "Set 'PermitEmptyPasswords no' (the default) and remove every line or Match block that sets it to yes: "
        "an account with an empty password field could then log in over the network with no secret at all. "
        "Never start dropbear with -B."
    ),
    references=(
        CIS.format("sshd_disable_empty_passwords"),
        "DISA STIG Amazon Linux 2023 V-274048",
    ),
)
def sshd_permit_empty_passwords(sshd_config: SshdConfig, dropbear_config: DropbearConfig):
    """Effective PermitEmptyPasswords for root and any other account, from any address; dropbear's -B (unless -s)."""

    def judge_sshd() -> Iterator[Result]:
        decisions = _decisions(sshd_config, "PermitEmptyPasswords", [_root(sshd_config), OTHER_USER])
        yield from _findings(sshd_config, [d for d in decisions if d.value.lower() == "yes"], "empty passwords are accepted")

    def judge_dropbear(instance: DropbearInstance) -> Iterator[Result]:
        o = instance.options
        if o.blank_passwords is None or o.no_password or o.two_factor:
            return
        who = "accounts other than root" if o.no_root_password or o.no_root_login else "every account, root included"
        yield _dropbear_fail(dropbear_config, instance, o.blank_passwords, "dropbear -B",
                             f"an account with an empty password logs in with none ({who})")  # fmt: skip

    yield from _servers(sshd_config, dropbear_config, judge_sshd, judge_dropbear)


_TIME = re.compile(r"(\d+)([sSmMhHdDwW]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _seconds(text: str) -> int | None:
    """sshd's convtime: '90', '3m', '1h30m'."""
    if not text or _TIME.sub("", text):
        return None
    return sum(int(n) * _UNITS[u.lower()] for n, u in _TIME.findall(text))


def _baseline_problem(keyword: str, value: str, params: dict) -> str | None:
    """Why ``value`` of ``keyword`` deviates from the baseline, or None."""
    lower = value.lower()
    if keyword == "HostbasedAuthentication" and lower == "yes":
        return "host-based (rhosts-style) trust lets other hosts vouch for users"
    if keyword == "IgnoreRhosts" and lower != "yes":
        return ".rhosts/.shosts files are honoured"
    if keyword == "PermitUserEnvironment" and lower != "no":
        return "users can set environment variables (LD_PRELOAD) for sshd-started sessions"
    if keyword == "X11Forwarding" and lower == "yes":
        return "X11 forwarding exposes the client's display to the server"
    if keyword == "MaxAuthTries" and lower.isdigit() and int(lower) > params["max_auth_tries"]:
        return f"more than {params['max_auth_tries']} authentication attempts per connection"
    if keyword == "LogLevel" and lower in ("quiet", "fatal", "error"):
        return "logins and failures are not logged"
    if keyword == "UseDNS" and lower == "yes":
        return "reverse DNS lookups slow logins and let DNS decide 'from=' host patterns"
    if keyword == "ClientAliveInterval":
        low, high = params["client_alive_interval_min"], params["client_alive_interval_max"]
        seconds = _seconds(value)
        if seconds is not None and ((low and seconds < low) or (high and seconds > high)):
            return f"outside the required {low or 0}-{high or 'unbounded'} seconds"
    if keyword in ("AllowTcpForwarding", "AllowAgentForwarding") and params["check_forwarding"] and lower not in ("no",):
        return "forwarding is allowed"
    return None


BASELINE = ("HostbasedAuthentication", "IgnoreRhosts", "PermitUserEnvironment", "X11Forwarding", "MaxAuthTries",
            "LogLevel", "UseDNS", "ClientAliveInterval", "AllowTcpForwarding", "AllowAgentForwarding")  # fmt: skip


@check(
    id="sshd-hardening-baseline",
    severity=Severity.LOW,
    layer=Layer.GUEST,
    title="sshd option deviates from the hardening baseline",
    remediation=(
        "Set the named option at the top of /etc/ssh/sshd_config (before any Include): HostbasedAuthentication "
        "no, IgnoreRhosts yes, PermitUserEnvironment no, X11Forwarding no, MaxAuthTries at most the limit, "
        "LogLevel INFO or VERBOSE, UseDNS no; ClientAliveInterval within the target's range when it sets one "
        "(Azure: 30-235, 180 recommended). For dropbear, pass -T with the limit (OpenWrt: option MaxAuthTries)."
    ),
    references=(
        "Lynis SSH-7408 option list",
        CIS.format("disable_host_auth, sshd_set_max_auth_tries, sshd_disable_x11_forwarding, sshd_do_not_permit_user_env, sshd_set_loglevel_info"),  # noqa: E501
        "Azure Marketplace certification test 'Client Alive Interval' (180 recommended, 30-235 allowed)",
        "AWS EC2 shared AMI guide: UseDNS no",
    ),
    params={
        "max_auth_tries": 6,  # sshd's own default; CIS asks for 4
        "client_alive_interval_min": 0,  # 0: no lower bound; Azure profiles set 30 (and 0, keep-alive off, then fails)
        "client_alive_interval_max": 0,  # 0: no upper bound; Azure profiles set 235
        # Off by default: forwarding is sshd's default, and sshd_config(5) notes that disabling it does not
        # improve security while users have shell access (they can run their own forwarders).
        "check_forwarding": False,
    },
)
def sshd_hardening_baseline(sshd_config: SshdConfig, dropbear_config: DropbearConfig, params):
    """One finding per option whose effective value (any Match included, root or any other account) deviates.

    A dropbear has the matching flags only: -T (MaxAuthTries, compiled-in
    10, OpenWrt's init script passes 3) and, with ``check_forwarding``, -j
    and -k.
    """

    def judge_sshd() -> Iterator[Result]:
        connections = [_root(sshd_config), OTHER_USER]
        for keyword in BASELINE:
            failing = [d for d in _decisions(sshd_config, keyword, connections) if _baseline_problem(keyword, d.value, params)]
            yield from _findings(sshd_config, failing, lambda d: _baseline_problem(d.keyword, d.value, params) or "")

    def judge_dropbear(instance: DropbearInstance) -> Iterator[Result]:
        o = instance.options
        tries, origin = o.max_auth_tries or (DEFAULT_MAX_AUTH_TRIES, instance.decided_by("MaxAuthTries"))
        if (problem := _baseline_problem("MaxAuthTries", str(tries), params)) is not None:
            how = f"-T {tries}" if o.max_auth_tries else f"no -T: the compiled-in {tries}"
            yield _dropbear_fail(dropbear_config, instance, origin, "dropbear -T", f"MaxAuthTries {tries} ({how}): {problem}")
        for flag, uci_name, what in (("-j", "LocalPortForward", o.no_local_forwarding), ("-k", "RemotePortForward", o.no_remote_forwarding)):
            if what is None and _baseline_problem("AllowTcpForwarding", "yes", params):
                yield _dropbear_fail(dropbear_config, instance, instance.decided_by(uci_name), f"dropbear {flag}", f"forwarding is allowed (no {flag})")

    yield from _servers(sshd_config, dropbear_config, judge_sshd, judge_dropbear)


@hookimpl
def certify_checks():
    return [sshd_permit_root_login, sshd_password_authentication, sshd_permit_empty_passwords, sshd_hardening_baseline]
