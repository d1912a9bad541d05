"""Checks on the guest's accounts: passwords, root, UID 0, system accounts, database copies, sudo.

A finding names the account (the location's key) but never shows a
password or a hash: evidence says what kind of hash, how it was judged,
and for a default password only the number of its entry in the shipped list.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator

from certify.checkdef import check
from certify.guest.collectors.accounts import UNKNOWN, AccountDatabase, SudoConfig, SudoFile, UserAccount
from certify.guest.parsers import crypt
from certify.guest.parsers.accounts import EMPTY, USABLE, broad_command, default_passwords, interactive_shell
from certify.model import Layer, Location, Result, Severity, Status, fail
from certify.plugins.hookspecs import hookimpl

ROOT = "root"
MAX_LISTED = 5
_NOT_AUTHENTICATE = re.compile(r"(^|\s)!\s*authenticate\b")


def _where(db: AccountDatabase, account: UserAccount, path: str | None = None, line: int | None = None) -> Location:
    path = path or account.password.source
    return Location(layer=Layer.GUEST, file=db.disks.get(path), path=path, key=account.name,
                    line=line if line is not None else (account.password.line or None))  # fmt: skip


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def _unknown_passwords(db: AccountDatabase) -> Iterator[Result]:
    """One not-evaluated result naming the accounts whose password field could not be read."""
    unknown = [a for a in db.accounts if a.password.state == UNKNOWN]
    if unknown:
        reason = unknown[0].password.reason
        yield Result(status=Status.NOT_EVALUATED, location=Location(layer=Layer.GUEST, path="/etc/shadow"),
                     evidence=f"{reason}: the password of {len(unknown)} account(s) cannot be read "
                              f"({_listed([a.name for a in unknown])})")  # fmt: skip


def _shell(account: UserAccount) -> str:
    return account.shell or "(empty: /bin/sh)"


def _why(account: UserAccount) -> str:
    """Why the file the password was read from decides, when it is not the usual one."""
    return f" ({account.password.note})" if account.password.note else ""


@check(
    id="account-empty-password",
    severity=Severity.CRITICAL,
    layer=Layer.GUEST,
    title="An account has an empty password",
    remediation=(
        "Lock the account (passwd -l NAME, or '!' / '*' in the password field) or remove it. An empty field "
        "lets anyone log in as that account with no password wherever PAM allows null passwords (nullok), "
        "which Debian's common-auth and RHEL's system-auth do by default."
    ),
    references=(
        "AWS Marketplace AMI policy: Linux AMIs must not have blank or null root passwords; no accounts without passwords",
        "Oracle Cloud Marketplace guideline S16: no OS users with an empty password",
        "CIS no_empty_passwords_etc_shadow, no_empty_passwords",
        "Lynis AUTH-9283",
    ),
)
def account_empty_password(accounts: AccountDatabase):
    """The effective password field (/etc/shadow's, or /etc/passwd's when it is not 'x') is empty."""
    yield from _unknown_passwords(accounts)
    for account in accounts.accounts:
        if account.password.state != EMPTY:
            continue
        who = "root" if account.name == ROOT else f"{account.name!r} (uid {account.uid})"
        extra = ": a blank root password, which AWS rejects outright" if account.name == ROOT else ""
        yield fail(_where(accounts, account),
                   f"{who} has an empty password field in {account.password.source} "
                   f"(line {account.password.line}){_why(account)}, shell {_shell(account)}{extra}")  # fmt: skip


@check(
    id="account-usable-password",
    severity=Severity.HIGH,
    layer=Layer.GUEST,
    title="An account has a usable password hash",
    remediation=(
        "Lock every password (passwd -l NAME) and give access by SSH keys injected at first boot. Accounts "
        "with a nologin shell count too: their password still authenticates to services that do not "
        "look at the shell (FTP, Samba, web UIs over PAM), and AWS and Oracle allow no OS user a password. "
        "An appliance that needs a console password should set a random one per instance at first boot."
    ),
    references=(
        "AWS Marketplace AMI policy: instance authentication must use key pairs, not passwords, even if generated or reset at launch",
        "Oracle Cloud Marketplace guideline S16: no OS users configured with a password",
        "Google Compute Engine images: no local users configured with passwords",
    ),
)
def account_usable_password(accounts: AccountDatabase):
    """Any account whose password field holds a crypt hash (not '!'/'*'-locked, not empty).

    Counted whatever the shell: the evidence says whether the shell allows a
    login. A hash in a weak legacy scheme (DES, MD5) is called out as such.
    """
    yield from _unknown_passwords(accounts)
    for account in accounts.accounts:
        if account.password.state != USABLE:
            continue
        info = crypt.identify(account.password.hash)
        scheme = info.scheme if info else "unrecognised-scheme"
        weak = f"; {scheme} is a weak, fast-to-crack algorithm" if info and info.weak else ""
        if interactive_shell(account.shell):
            shell = f"shell {_shell(account)} allows a login"
        else:
            shell = f"shell {account.shell} allows no interactive login, but the password still authenticates to PAM services"
        yield fail(_where(accounts, account),
                   f"{account.name!r} (uid {account.uid}) has a usable {scheme} password hash in "
                   f"{account.password.source} (line {account.password.line}){_why(account)}; {shell}{weak}")  # fmt: skip


@check(
    id="default-or-weak-password",
    severity=Severity.CRITICAL,
    layer=Layer.GUEST,
    title="An account's password is a common default",
    remediation=(
        "Set no password at all (lock it and use keys), or one generated per instance at first boot. The "
        "password matches an entry of certify's list of common defaults (data/default-passwords.txt), the "
        "account name or the host name: anyone who tries the usual guesses gets in."
    ),
    params={
        "time_budget_seconds": 60,
        "max_sha_rounds": crypt.CostBounds.max_sha_rounds,
        "max_bcrypt_cost": crypt.CostBounds.max_bcrypt_cost,
        "max_memory_work_mib": crypt.CostBounds.max_memory_work_mib,
    },
    references=(
        "AWS Marketplace listing checklist: no hardcoded default passwords for system users and services",
        "Azure Marketplace certification FAQ: default credentials",
        "turnkeylinux/tracker#934: the AWS scanner flagged a build-time default password",
    ),
)
def default_or_weak_password(accounts: AccountDatabase, params):
    """Each usable hash against the shipped default list, the account name and the host name, with the system crypt.

    A hash whose declared cost is over the bounds (sha-crypt rounds, bcrypt
    cost, yescrypt/scrypt memory) is not tested, nor are hashes left when
    the time budget runs out: both are reported not-evaluated, never passed.
    """
    yield from _unknown_passwords(accounts)
    usable = [a for a in accounts.accounts if a.password.state == USABLE]
    if not usable:
        return
    bounds = crypt.CostBounds(params["max_sha_rounds"], params["max_bcrypt_cost"], params["max_memory_work_mib"])
    try:
        crypt.ensure_available()  # a missing library is one reason, not one per account
    except crypt.CryptUnavailable as exc:
        yield Result(status=Status.NOT_EVALUATED, location=Location(layer=Layer.GUEST, path="/etc/shadow"),
                     evidence=f"{exc}: {len(usable)} password hash(es) not tested")  # fmt: skip
        return
    listed = default_passwords()
    deadline = time.monotonic() + float(params["time_budget_seconds"])
    workers = min(4, os.cpu_count() or 1)
    outcomes: dict[tuple[str, tuple[str, ...]], crypt.Guess] = {}  # the same hash and guesses twice: computed once
    for account in usable:
        info = crypt.identify(account.password.hash)
        if info is None:
            yield _not_tested(accounts, account, "the hash is in no scheme certify recognises")
            continue
        if reason := crypt.too_expensive(info, bounds):
            yield _not_tested(accounts, account, f"{reason} (params of default-or-weak-password)")
            continue
        candidates = listed + [account.name] + ([accounts.hostname] if accounts.hostname else [])
        key = (account.password.hash, tuple(candidates))
        if key not in outcomes:
            outcomes[key] = crypt.first_match(account.password.hash, candidates, deadline, workers)
        guess = outcomes[key]
        if guess.match is not None:
            yield fail(_where(accounts, account), f"{account.name!r} (uid {account.uid}): the {info.scheme} hash in "
                       f"{account.password.source} matches {_candidate(guess.match, len(listed), account.name)}")  # fmt: skip
        elif guess.unsupported:
            yield _not_tested(accounts, account, f"the scanning host's crypt library cannot compute {info.scheme}")
        elif guess.tried < len(candidates):
            yield _not_tested(accounts, account, f"the time budget of {params['time_budget_seconds']} s ran out after "
                              f"{guess.tried} of {len(candidates)} candidates")  # fmt: skip


def _candidate(index: int, listed: int, name: str) -> str:
    if index < listed:
        return f"a common default password (entry #{index + 1} of certify's default-password list)"
    if index == listed:
        return "the account's own name"
    return "the guest's host name"


def _not_tested(db: AccountDatabase, account: UserAccount, reason: str) -> Result:
    return Result(status=Status.NOT_EVALUATED, location=_where(db, account),
                  evidence=f"{account.name!r}: password not tested: {reason}")  # fmt: skip


@check(
    id="root-login-not-locked",
    severity=Severity.HIGH,
    layer=Layer.GUEST,
    title="root can log in with a password",
    remediation=(
        "Lock root's password (passwd -l root, or '*' in /etc/shadow) and give administrators sudo through a "
        "named account; or give root a nologin shell. This deliberately conflicts with CIS "
        "ensure_root_password_configured, which fails a locked root: the marketplace policies (AWS 'root "
        "login is locked or disabled', Oracle S14) win here, and a CIS-targeted profile can waive this check."
    ),
    references=(
        "AWS Marketplace listing checklist: root login is locked or disabled; EC2 shared-AMI guide: passwd -l root",
        "Oracle Cloud Marketplace guideline S14: root login disabled (a nologin shell is one of the accepted ways)",
        "Azure waagent deprovision: del_root_password",
        "Conflicts with CIS ensure_root_password_configured",
    ),
)
def root_login_not_locked(accounts: AccountDatabase):
    """root's effective password is usable or empty and its shell allows a login (a nologin shell disables it)."""
    root = accounts.named(ROOT)
    if root is None:
        return
    if root.password.state == UNKNOWN:
        yield from _unknown_passwords(accounts)
        return
    if root.password.state in (USABLE, EMPTY) and interactive_shell(root.shell):
        what = "an empty password" if root.password.state == EMPTY else "a usable password hash"
        yield fail(_where(accounts, root), f"root has {what} in {root.password.source} "
                   f"(line {root.password.line}){_why(root)} and the login shell {_shell(root)}")  # fmt: skip


@check(
    id="extra-uid0-accounts",
    severity=Severity.CRITICAL,
    layer=Layer.GUEST,
    title="An account other than root has UID 0",
    remediation=(
        "Remove the account or give it its own UID. Any account with UID 0 is root under another name "
        "(the classic 'toor' back door): it bypasses every rule written for root."
    ),
    references=("CIS accounts_no_uid_except_zero", "Lynis AUTH-9204"),
)
def extra_uid0_accounts(accounts: AccountDatabase):
    """Every /etc/passwd entry with UID 0 whose name is not root."""
    for account in accounts.accounts:
        if account.uid == 0 and account.name != ROOT:
            yield fail(_where(accounts, account, "/etc/passwd", account.line),
                       f"{account.name!r} has UID 0 (/etc/passwd line {account.line}): a second root; "
                       f"shell {_shell(account)}, password {account.password.state}")  # fmt: skip


@check(
    id="system-accounts-login",
    severity=Severity.MEDIUM,
    layer=Layer.GUEST,
    title="A system account has a login shell",
    remediation=(
        "Give system accounts /usr/sbin/nologin (usermod -s /usr/sbin/nologin NAME) and lock their "
        "passwords. A service account with a shell becomes a login the moment it gets a password, a key "
        "or a su rule, and nobody audits service accounts for that."
    ),
    references=(
        "CIS no_shelllogin_for_systemaccounts, no_password_auth_for_systemaccounts",
        "Lynis AUTH-9218",
    ),
)
def system_accounts_login(accounts: AccountDatabase):
    """Accounts below UID_MIN (/etc/login.defs, default 1000) other than root whose shell gives a session.

    As in CIS, the shell alone counts (nologin, false, sync, shutdown and halt
    do not give one), whatever the password; the evidence says the password
    state. UID 0 accounts are left to extra-uid0-accounts.
    """
    uid_min = accounts.login_defs.uid_min
    for account in accounts.accounts:
        if account.uid is None or not 0 < account.uid < uid_min or account.name == ROOT:
            continue
        if interactive_shell(account.shell):
            yield fail(_where(accounts, account, "/etc/passwd", account.line),
                       f"system account {account.name!r} (uid {account.uid} < UID_MIN {uid_min}) has the shell "
                       f"{_shell(account)}; password {account.password.state}")  # fmt: skip


@check(
    id="passwd-backup-files",
    severity=Severity.MEDIUM,
    layer=Layer.GUEST,
    title="Copies of the account databases left in the image",
    remediation=(
        "Delete /etc/passwd-, /etc/shadow-, /etc/group-, /etc/gshadow-, /etc/subuid-, /etc/subgid-, "
        "editor and package-manager copies (*.bak, *.old, *.orig, *~, *.dpkg-old, *.rpmsave) and "
        "/var/backups/*.bak before capture (virt-sysprep does with passwd-backups). They keep former "
        "accounts and password hashes that the live files no longer show."
    ),
    references=("virt-sysprep operation passwd-backups", "CIS file_owner_backup_etc_shadow, file_permissions_backup_etc_shadow"),
)
def passwd_backup_files(accounts: AccountDatabase):
    """Each copy of passwd, shadow, group, gshadow, subuid or subgid in /etc or /var/backups.

    High when a copy holds a usable password hash that the live databases do
    not: a former password, crackable offline (the hash itself is not shown).
    """
    for backup in accounts.backups:
        stat = backup.stat
        described = f"a copy of {backup.live}" + (f" (mode {stat.perms:04o}, {stat.size} bytes)" if stat else "")
        severity = None
        if backup.former_hashes:
            severity = Severity.HIGH
            world = "; it is world-readable" if stat and stat.perms & 0o004 else ""
            described += (f"; it holds a usable password hash for {_listed(list(backup.former_hashes))} that the "
                          f"live account databases do not hold (a former password){world}")  # fmt: skip
        if backup.truncated:
            described += "; only its first 16 MiB were read"
        yield fail(Location(layer=Layer.GUEST, file=backup.disk, path=backup.path), described, severity=severity)


@check(
    id="sudo-config",
    severity=Severity.MEDIUM,
    layer=Layer.GUEST,
    title="sudo or doas grants root without a password, or its rules are writable",
    remediation=(
        "Scope sudo rules to the commands a role needs and keep the password prompt: no 'NOPASSWD: ALL' "
        "(or a shell/su), no 'Defaults !authenticate', no 'permit nopass' without 'cmd' in doas.conf. Keep "
        "every sudoers file root-owned and not group/world-writable (0440 root:root). Vendor support "
        "rules belong to the deployer, not the image."
    ),
    references=(
        "AWS Marketplace AMI policy: allow only sudo access through a user account",
        "Lynis AUTH-9250, AUTH-9252",
    ),
)
def sudo_config(sudo_rules: SudoConfig):
    """Every sudoers file sudo reads (includes followed; @includedir skips names with '.' or a trailing '~') and doas.conf."""
    for reason in sudo_rules.unread:
        yield Result(status=Status.NOT_EVALUATED, location=Location(layer=Layer.GUEST, path="/etc/sudoers"), evidence=reason)
    for sudo_file in sudo_rules.files:
        problems = _sudo_problems(sudo_file, sudo_rules.cmnd_aliases)
        if problems:
            first_line = min((line for line, _ in problems if line), default=None)
            shown = "; ".join(text for _, text in problems[:MAX_LISTED])
            more = f"; and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
            origin = f" (included from {sudo_file.included_from})" if sudo_file.included_from else ""
            yield fail(Location(layer=Layer.GUEST, file=sudo_file.disk, path=sudo_file.path, line=first_line),
                       f"{sudo_file.path}{origin}: {shown}{more}")  # fmt: skip


def _sudo_problems(sudo_file: SudoFile, aliases: dict[str, tuple[str, ...]]) -> list[tuple[int | None, str]]:
    problems: list[tuple[int | None, str]] = []
    stat = sudo_file.stat
    if stat is not None and stat.uid != 0:
        problems.append((None, f"owned by uid {stat.uid}, not root: that user can grant itself root"))
    if stat is not None and stat.perms & 0o022:
        problems.append((None, f"mode {stat.perms:04o} is group/world-writable"))
    if sudo_file.sudoers is not None:
        for default in sudo_file.sudoers.defaults:
            if any(_NOT_AUTHENTICATE.search(p) for p in default.parameters):
                problems.append((default.line, f"line {default.line}: {_clip(default.text)} (no password for the rules it covers)"))
        for rule in sudo_file.sudoers.rules:
            if rule.text.split(None, 1)[0] == "root":  # root granting root: nothing gained
                continue
            if any(c.nopasswd and not c.negated and broad_command(c.text, aliases) for c in rule.commands):
                problems.append((rule.line, f"line {rule.line}: {_clip(rule.text)} (root without a password)"))
    for rule in sudo_file.doas:
        if rule.nopass and (rule.command is None or broad_command(rule.command, {})):
            problems.append((rule.line, f"line {rule.line}: {_clip(rule.text)} (root without a password)"))
    return problems


def _clip(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@hookimpl
def certify_checks():
    return [account_empty_password, account_usable_password, default_or_weak_password, root_login_not_locked,
            extra_uid0_accounts, system_accounts_login, passwd_backup_files, sudo_config]  # fmt: skip
