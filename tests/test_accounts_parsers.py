"""Pure parsers of the account topic: shadow, group, login.defs, sudoers, doas.conf, and crypt cost parsing."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certify.guest.parsers import accounts as acc
from certify.guest.parsers import crypt
from certify.guest.parsers.passwd import parse_passwd

# --- passwd, shadow, group, login.defs -----------------------------------------------------------


def test_passwd_keeps_the_password_field_and_gid():
    [root, bad_uid] = parse_passwd("root:x:0:0:root:/root:/bin/bash\n# c\nodd::x:7::/:\nshort:x:1\n")
    assert (root.password, root.gid, root.uid) == ("x", 0, 0)
    assert (bad_uid.name, bad_uid.password, bad_uid.uid, bad_uid.gid, bad_uid.shell) == ("odd", "", None, 7, "")


def test_shadow_and_gshadow_lines():
    text = "root:*:19700:0:99999:7:::\n\nbad\nguest::19700::::::\n+nis::::::::\nsudo:*::alice\n"
    assert [(e.name, e.password, e.line) for e in acc.parse_shadow(text)] == [
        ("root", "*", 1), ("guest", "", 4), ("sudo", "*", 6)]  # fmt: skip


def test_group_members():
    [sudo] = acc.parse_group("sudo:x:27:alice,bob\nbroken:x\n")
    assert (sudo.name, sudo.gid, sudo.members) == ("sudo", 27, ("alice", "bob"))


def test_login_defs_defaults_and_values():
    assert acc.parse_login_defs("") == acc.LoginDefs(1000, 999)
    assert acc.parse_login_defs("# UID_MIN 10\nUID_MIN\t500 # old\n") == acc.LoginDefs(500, 499)
    assert acc.parse_login_defs("UID_MIN 1000\nSYS_UID_MAX 200\n") == acc.LoginDefs(1000, 200)
    assert acc.parse_login_defs("UID_MIN lots\n").uid_min == 1000


@pytest.mark.parametrize(("value", "state"), [
    ("", "empty"), ("!", "locked"), ("*", "locked"), ("!!", "locked"), ("!$6$salt$abc", "locked"),
    ("$y$j9T$salt$hash", "usable"), ("$6$salt$hash", "usable"), ("abcdefghijklm", "usable"),
    ("_J9..saltabcdefghijk", "usable"), ("x", "invalid"), ("LK", "invalid"), ("NP", "invalid"),
])  # fmt: skip
def test_password_state(value, state):
    assert acc.password_state(value) == state


@pytest.mark.parametrize(("shell", "interactive"), [
    ("/bin/bash", True), ("", True), ("/bin/sh", True), ("/usr/sbin/nologin", False), ("/sbin/nologin", False),
    ("/bin/false", False), ("/usr/bin/false", False), ("/bin/sync", False), ("/sbin/shutdown", False),
    ("/sbin/halt", False), ("/dev/null", False),
])  # fmt: skip
def test_interactive_shell(shell, interactive):
    assert acc.interactive_shell(shell) is interactive


@pytest.mark.parametrize(("path", "live"), [
    ("/etc/passwd-", "/etc/passwd"), ("/etc/shadow-", "/etc/shadow"), ("/etc/gshadow-", "/etc/gshadow"),
    ("/etc/group-", "/etc/group"), ("/etc/subuid-", "/etc/subuid"), ("/etc/subgid-", "/etc/subgid"),
    ("/etc/shadow.bak", "/etc/shadow"), ("/etc/passwd.old", "/etc/passwd"), ("/etc/group.orig", "/etc/group"),
    ("/etc/shadow~", "/etc/shadow"), ("/etc/passwd.dpkg-old", "/etc/passwd"), ("/etc/shadow.rpmsave", "/etc/shadow"),
    ("/etc/shadow.20240101", "/etc/shadow"), ("/etc/shadow.bak.1", "/etc/shadow"), ("/var/backups/shadow.bak", "/etc/shadow"),
    ("/etc/passwd", None), ("/etc/shadow", None), ("/etc/passwdqc.conf", None), ("/etc/groups-x", None),
    ("/etc/shadow.lock", None), ("/home/alice/shadow-", None), ("/etc/.pwd.lock", None),
])  # fmt: skip
def test_backup_of(path, live):
    assert acc.backup_of(path) == live


# --- sudoers -------------------------------------------------------------------------------------


def nopasswd_broad(text: str) -> list[int]:
    parsed = acc.parse_sudoers(text)
    return [r.line for r in parsed.rules
            if any(c.nopasswd and not c.negated and acc.broad_command(c.text, parsed.cmnd_aliases) for c in r.commands)]  # fmt: skip


def test_sudoers_debian_default_grants_nothing_without_a_password():
    text = ("Defaults\tenv_reset\nDefaults\tsecure_path=\"/usr/sbin:/usr/bin\"\n# User privilege specification\n"
            "root\tALL=(ALL:ALL) ALL\n%sudo\tALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n")  # fmt: skip
    parsed = acc.parse_sudoers(text)
    assert nopasswd_broad(text) == []
    assert parsed.includes == (acc.SudoInclude(6, "/etc/sudoers.d", True),)
    assert [d.parameters for d in parsed.defaults] == [("env_reset",), ('secure_path="/usr/sbin:/usr/bin"',)]


@pytest.mark.parametrize(("text", "lines"), [
    ("vendor ALL=(ALL) NOPASSWD: ALL\n", [1]),
    ("vendor ALL=(ALL)NOPASSWD:ALL\n", [1]),
    ("%wheel ALL = (root) NOPASSWD: /usr/bin/systemctl restart app, ALL\n", [1]),  # tags carry over
    ("ops ALL = NOPASSWD: /usr/bin/ls, PASSWD: ALL\n", []),  # PASSWD resets
    ("ops ALL = (ALL) NOPASSWD: /bin/bash\n", [1]),
    ("ops ALL = NOPASSWD: /usr/bin/su -\n", [1]),
    ("ops ALL = NOPASSWD: /usr/bin/*\n", [1]),
    ("ops ALL = NOPASSWD: /usr/bin/systemctl restart app\n", []),
    ("ops ALL = NOPASSWD: !ALL\n", []),  # a negation grants nothing
    ("ops ALL = NOPASSWD: /bin/ls : otherhost = ALL\n", []),  # a new host section starts without tags
    ("ops ALL = /bin/ls : otherhost = NOPASSWD: ALL\n", [1]),
    ("vendor ALL=(ALL) \\\n    NOPASSWD: \\\n    ALL\n", [1]),  # continuation lines
    ("Cmnd_Alias EVERYTHING = /bin/ls, ALL\nops ALL = NOPASSWD: EVERYTHING\n", [2]),
    ("Cmnd_Alias SAFE = /bin/ls\nops ALL = NOPASSWD: SAFE\n", []),
    ("# vendor ALL=(ALL) NOPASSWD: ALL\n", []),
    ("vendor ALL=(ALL) ALL # NOPASSWD: ALL\n", []),
    ("#1000 ALL=(#0) NOPASSWD: ALL\n", [1]),  # '#' and digits is a uid, not a comment
    ("ops ALL = (root) CWD=/tmp NOPASSWD: sha256:abcd /bin/sh\n", [1]),
])  # fmt: skip
def test_sudoers_nopasswd_broad_rules(text, lines):
    assert nopasswd_broad(text) == lines


def test_sudoers_includes_and_defaults():
    parsed = acc.parse_sudoers('#include /etc/sudoers.local\n#includedir /etc/sudoers.d\n@include "extra file"\n'
                               "Defaults:vendor !authenticate\nDefaults!/bin/ls noexec\n")  # fmt: skip
    assert [(i.path, i.directory) for i in parsed.includes] == [
        ("/etc/sudoers.local", False), ("/etc/sudoers.d", True), ("extra file", False)]  # fmt: skip
    assert [d.parameters for d in parsed.defaults] == [("!authenticate",), ("noexec",)]


def test_includedir_members_and_include_resolution():
    assert acc.includedir_member("vendor") and acc.includedir_member("90-cloud-init-users")
    assert not acc.includedir_member("README.md") and not acc.includedir_member("vendor~")
    assert acc.resolve_include("local", "/etc/sudoers", "h") == "/etc/local"
    assert acc.resolve_include("/etc/sudoers.%h", "/etc/sudoers", "web1") == "/etc/sudoers.web1"


def test_doas_rules():
    rules = acc.parse_doas("# c\npermit nopass vendor\npermit persist :wheel\npermit nopass setenv { PATH } ops as root "
                           "cmd /usr/bin/systemctl\ndeny bob\npermit nopass keepenv ops cmd /bin/sh\n")  # fmt: skip
    assert [(r.line, r.nopass, r.identity, r.command) for r in rules] == [
        (2, True, "vendor", None), (3, False, ":wheel", None), (4, True, "ops", "/usr/bin/systemctl"), (6, True, "ops", "/bin/sh")]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_parsers_never_crash(text):
    acc.parse_sudoers(text)
    acc.parse_doas(text)
    acc.parse_shadow(text)
    acc.parse_group(text)
    acc.parse_login_defs(text)
    crypt.identify(text)


# --- crypt -------------------------------------------------------------------------------------


def test_default_password_list_is_shipped():
    listed = acc.default_passwords()
    assert 30 <= len(listed) <= 80
    assert len(set(listed)) == len(listed)
    for expected in ("root", "admin", "password", "changeme", "toor", "123456", "vendor", "raspberry", "P@ssw0rd"):
        assert expected in listed


@pytest.mark.parametrize(("prefix", "scheme", "weak"), [
    (None, "yescrypt", False), ("$6$", "sha512crypt", False), ("$5$", "sha256crypt", False),
    ("$1$", "md5crypt", True), ("$2b$", "bcrypt", False),
])  # fmt: skip
def test_real_hashes_identify_and_verify(prefix, scheme, weak):
    hashed = crypt.make_hash("changeme", prefix, 5 if prefix == "$2b$" else 0)
    info = crypt.identify(hashed)
    assert (info.scheme, info.weak) == (scheme, weak)
    assert crypt.verify("changeme", hashed) is True
    assert crypt.verify("changeme!", hashed) is False


def test_yescrypt_parameters_are_decoded():
    assert crypt.identify(crypt.make_hash("x", "$y$")).cost == "N=2^12 r=32 (16 MiB)"  # Debian's j9T
    heavier = crypt.identify(crypt.make_hash("x", "$y$", 7))
    assert heavier.memory_work_mib == 64 and crypt.too_expensive(heavier, crypt.CostBounds(max_memory_work_mib=32))
    assert crypt.identify("$y$j9T$").cost == "N=2^12 r=32 (16 MiB)"  # the setting alone declares the cost
    assert crypt.identify("$y$j9") is None and crypt.identify("$y$$") is None


def test_declared_costs_and_bounds():
    sha = crypt.identify("$6$rounds=999999999$saltsalt$" + "a" * 86)
    assert sha.sha_rounds == 999_999_999 and "over the bound" in crypt.too_expensive(sha, crypt.CostBounds())
    assert crypt.identify("$6$rounds=10$s$abc").sha_rounds == 1000  # clamped as the algorithm does
    assert crypt.identify("$5$s$abc").sha_rounds == 5000
    bcrypt = crypt.identify("$2b$31$" + "a" * 53)
    assert bcrypt.bcrypt_cost == 31 and crypt.too_expensive(bcrypt, crypt.CostBounds())
    assert crypt.too_expensive(crypt.identify("$2b$10$" + "a" * 53), crypt.CostBounds()) is None
    assert crypt.identify("$sha1$99999999$salt$hash").iterations == 99999999
    assert crypt.identify("$md5,rounds=5000$salt$hash").iterations == 9096
    assert crypt.identify("$unknown$x$y") is None and crypt.identify("plain") is None


def test_first_match_reports_the_first_matching_candidate():
    hashed = crypt.make_hash("root", "$6$")
    guess = crypt.first_match(hashed, ["a", "b", "root", "c", "root"], time.monotonic() + 30, workers=2)
    assert guess == crypt.Guess(match=2, tried=guess.tried, unsupported=False) and guess.tried >= 3
    assert crypt.first_match(hashed, ["a", "b"], time.monotonic() + 30).match is None
    late = crypt.first_match(hashed, ["a", "b"], time.monotonic() - 1)
    assert (late.match, late.tried) == (None, 0)


def test_first_match_says_when_the_library_cannot_compute_a_scheme():
    assert crypt.first_match("$unknown$salt$hash", ["a", "b"], time.monotonic() + 30).unsupported
