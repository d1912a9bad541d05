"""Permission checks over in-memory guests: the variants that do not belong in the shared catalog images."""

from __future__ import annotations

import hashlib

import pytest
from memguest import scan_spec
from plants.perms import PASSWD_BINARY, plant_dpkg_passwd
from test_pkgdb import package_header, rpm_sqlite

from certify import sample
from certify.guest.collectors.perms import group_ids
from certify.guest.parsers.perms import ModeRule, bit_names
from certify.guest.reader import Stat

ACCOUNTS, HOST_KEYS, WRITABLE, SETID, HOMES = ("account-file-permissions", "ssh-host-key-permissions", "world-writable-files",
                                               "suid-sgid-inventory", "home-and-ssh-dir-permissions")  # fmt: skip
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8


def scan(spec, tmp_path, check_id):
    result = scan_spec(spec, tmp_path, [check_id])
    found = {(path, sev, status) for (i, path, sev, status) in result["findings"] if i == check_id}
    return result["status"][check_id], found, {p: e for (i, p), e in result["evidence"].items() if i == check_id}


# -- pure rules ----------------------------------------------------------------


def test_mode_rule_names_every_problem():
    rule = ModeRule(0o640, gids=frozenset({0, 42}))
    assert rule.problems(Stat(0o100640, 0, 42, 0)) == []
    assert rule.problems(Stat(0o100000, 0, 0, 0)) == []  # RHEL's 0000
    assert rule.problems(Stat(0o104666, 1000, 5, 0)) == [
        "mode 4666 allows setuid, group write, other read, other write", "owner uid 1000 (expected 0)",
        "group gid 5 (expected 0 or 42)"]  # fmt: skip
    assert bit_names(0o1001) == "sticky, other execute"


def test_group_ids_first_line_wins():
    assert group_ids("root:x:0:\n#c:x:9:\nshadow:x:42:\nshadow:x:43:\nbad:x:y:\nssh_keys:x:993:\n") == {
        "root": 0, "shadow": 42, "ssh_keys": 993}  # fmt: skip


# -- account-file-permissions ---------------------------------------------------


def test_account_files_rhel_modes_pass(tmp_path):
    spec = sample.base_system()
    spec.add("/etc/shadow", spec.files["/etc/shadow"][0], 0o000, owner=(0, 0))
    spec.add("/etc/gshadow", spec.files["/etc/gshadow"][0], 0o000, owner=(0, 0))
    spec.add("/etc/shadow-", spec.files["/etc/shadow"][0], 0o000, owner=(0, 0))
    spec.add("/etc/passwd-", spec.files["/etc/passwd"][0], 0o600)
    spec.add("/etc/security/opasswd", "", 0o600)
    assert scan(spec, tmp_path, ACCOUNTS)[:2] == ("pass", set())


def test_account_files_failures_and_their_severities(tmp_path):
    spec = sample.base_system()
    spec.add("/etc/shadow", spec.files["/etc/shadow"][0], 0o640, owner=(1000, 42))  # owned by a user
    spec.add("/etc/gshadow", spec.files["/etc/gshadow"][0], 0o660, owner=(0, 42))  # group may write
    spec.add("/etc/group", spec.files["/etc/group"][0], 0o644, owner=(0, 27))  # group sudo
    spec.add("/etc/group-", spec.files["/etc/group"][0], 0o664)
    spec.add("/etc/security/opasswd", "alice:1000:1:$y$j9T$abc\n", 0o644)
    status, found, evidence = scan(spec, tmp_path, ACCOUNTS)
    assert status == "fail"
    assert found == {("/etc/shadow", "high", "fail"), ("/etc/gshadow", "high", "fail"), ("/etc/group", "medium", "fail"),
                     ("/etc/group-", "medium", "fail"), ("/etc/security/opasswd", "high", "fail")}  # fmt: skip
    assert evidence["/etc/shadow"].startswith("owner uid 1000 (expected 0)")
    assert "$y$" not in evidence["/etc/security/opasswd"]


def test_shadow_group_must_be_shadow_or_root(tmp_path):
    spec = sample.base_system()
    spec.add("/etc/shadow", spec.files["/etc/shadow"][0], 0o640, owner=(0, 27))
    assert scan(spec, tmp_path, ACCOUNTS)[1] == {("/etc/shadow", "high", "fail")}


def test_a_symlinked_shadow_is_judged_by_its_target(tmp_path):
    spec = sample.base_system()
    content = spec.files.pop("/etc/shadow")[0]
    spec.add("/var/backups/shadow.real", content, 0o644)
    spec.symlink("/etc/shadow", "/var/backups/shadow.real")
    _, found, evidence = scan(spec, tmp_path, ACCOUNTS)
    assert found == {("/etc/shadow", "high", "fail")} and "through a symlink" in evidence["/etc/shadow"]


def test_missing_shadow_is_not_a_permission_finding_but_missing_passwd_is_not_evaluated(tmp_path):
    assert scan(sample.base_system().remove("/etc/shadow"), tmp_path, ACCOUNTS)[:2] == ("pass", set())
    status, found, evidence = scan(sample.base_system().remove("/etc/passwd"), tmp_path, ACCOUNTS)
    assert status == "not-evaluated" and "no /etc/passwd" in evidence[None]


# -- ssh-host-key-permissions -----------------------------------------------------


@pytest.mark.parametrize(
    "mode, owner, groups, expected",
    [
        (0o600, (0, 0), "", set()),
        (0o400, (0, 0), "", set()),
        (0o640, (0, 993), "ssh_keys:x:993:\n", set()),  # RHEL: ssh-keysign reads through group ssh_keys
        (0o640, (0, 0), "ssh_keys:x:993:\n", {("/etc/ssh/ssh_host_rsa_key", "high", "fail")}),
        (0o640, (0, 993), "", {("/etc/ssh/ssh_host_rsa_key", "high", "fail")}),  # no such group: just a gid
        (0o644, (0, 0), "", {("/etc/ssh/ssh_host_rsa_key", "high", "fail")}),
        (0o600, (1000, 1000), "", {("/etc/ssh/ssh_host_rsa_key", "high", "fail")}),
    ],
)
def test_host_private_key_modes(tmp_path, mode, owner, groups, expected):
    spec = sample.base_system()
    spec.add("/etc/group", spec.files["/etc/group"][0] + groups.encode())
    spec.add("/etc/ssh/ssh_host_rsa_key", b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n", mode, owner=owner)
    status, found, evidence = scan(spec, tmp_path, HOST_KEYS)
    assert found == expected and status == ("fail" if expected else "pass")
    assert all("AAAA" not in e for e in evidence.values())


def test_host_public_keys_must_be_roots_and_not_writable(tmp_path):
    spec = sample.base_system()
    spec.add("/etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAA root@x\n", 0o644)
    spec.add("/etc/ssh/ssh_host_rsa_key.pub", "ssh-rsa AAAA root@x\n", 0o644, owner=(1000, 1000))
    spec.add("/etc/ssh/ssh_host_ecdsa_key.pub", "ecdsa-sha2-nistp256 AAAA root@x\n", 0o664)
    spec.add("/etc/ssh/moduli", "# not a key\n", 0o666)  # not a key file: another check's business
    spec.symlink("/etc/ssh/ssh_host_dsa_key", "/dev/null")
    assert scan(spec, tmp_path, HOST_KEYS)[1] == {("/etc/ssh/ssh_host_rsa_key.pub", "high", "fail"),
                                                  ("/etc/ssh/ssh_host_ecdsa_key.pub", "high", "fail")}  # fmt: skip


# -- world-writable-files -----------------------------------------------------------


def test_world_writable_skips_links_sticky_dirs_and_pseudo_filesystems(tmp_path):
    spec = sample.base_system()
    spec.symlink("/usr/bin/editor", "/etc/alternatives/editor")
    spec.mkdir("/srv/drop", 0o1733)
    spec.add("/proc/1/status", "x", 0o666)
    spec.add("/run/app.sock", "x", 0o666)
    spec.mkdir("/var/lib/app", 0o775)  # group-writable is not world-writable
    spec.add("/var/lib/app/state", "x", 0o662)
    status, found, _ = scan(spec, tmp_path, WRITABLE)
    assert found == {("/var/lib/app/state", "medium", "fail")}


def test_world_writable_is_capped_with_one_summary(tmp_path):
    spec = sample.base_system()
    for i in range(57):
        spec.add(f"/var/www/html/cache/{i:03}.html", "x", 0o666)
    spec.add("/srv/tool/last", "x", 0o666)
    status, found, evidence = scan(spec, tmp_path, WRITABLE)
    assert status == "fail" and len(found) == 51  # the first 50 in path order, and one summary
    assert ("/srv/tool/last", "medium", "fail") in found
    assert ("/var/www/html/cache/048.html", "medium", "fail") in found
    assert ("/var/www/html/cache/049.html", "medium", "fail") not in found
    assert evidence[None] == ("8 more world-writable path(s) not listed one by one (8 under /var/www); "
                              "first: /var/www/html/cache/049.html")  # fmt: skip


def test_names_the_walk_cannot_stat_are_not_evaluated(tmp_path):
    spec = sample.base_system().add("/srv/caf\udce9", "x", 0o644)
    status, found, evidence = scan(spec, tmp_path, WRITABLE)
    assert status == "not-evaluated" and "1 path(s) whose names are not UTF-8" in evidence[None]
    assert "\\udce9" in evidence[None]


# -- suid-sgid-inventory --------------------------------------------------------------


def test_setid_without_package_database_is_not_evaluated_and_lists_them(tmp_path):
    spec = sample.base_system().add("/usr/bin/passwd", PASSWD_BINARY, 0o4755).add("/usr/bin/wall", ELF, 0o2755, owner=(0, 5))
    status, found, evidence = scan(spec, tmp_path, SETID)
    assert status == "not-evaluated"
    assert evidence[None] == ("no package database (dpkg, rpm, apk or opkg) to tell package files from added ones; "
                              "2 setuid/setgid file(s) not judged: /usr/bin/passwd (4755), /usr/bin/wall (2755)")  # fmt: skip


def test_no_setid_files_and_no_database_passes(tmp_path):
    assert scan(sample.base_system(), tmp_path, SETID)[:2] == ("pass", set())


def test_dpkg_setid_cases(tmp_path):
    spec = sample.base_system()
    plant_dpkg_passwd(spec, PASSWD_BINARY)  # owned and unmodified: passes
    spec.add("/var/lib/dpkg/info/findutils.list", "/usr/bin/find\n")
    spec.add("/var/lib/dpkg/info/findutils.md5sums", f"{hashlib.md5(ELF).hexdigest()}  usr/bin/find\n")
    spec.add("/usr/bin/find", ELF, 0o4755)  # unmodified, but find must never be setuid
    spec.add("/var/lib/dpkg/info/bsdutils.list", "/usr/bin/wall\n")  # no md5sums file
    spec.add("/usr/bin/wall", ELF, 0o2755, owner=(0, 5))
    spec.add("/opt/vendor/bin/sgid-tool", ELF, 0o2755, owner=(0, 50))  # setgid only, unowned: medium
    status, found, evidence = scan(spec, tmp_path, SETID)
    assert status == "fail"
    assert found == {("/usr/bin/find", "high", "fail"), ("/usr/bin/wall", "medium", "not-evaluated"),
                     ("/opt/vendor/bin/sgid-tool", "medium", "fail")}  # fmt: skip
    assert "records no digest" in evidence["/usr/bin/wall"]
    assert "shell-escape" in evidence["/usr/bin/find"]


def test_rpm_mode_the_package_did_not_set(tmp_path):
    blob = package_header("util-linux", {"/usr/bin/lsblk": (0o100755, hashlib.sha256(ELF).hexdigest()),
                                         "/usr/bin/su": (0o104755, hashlib.sha256(ELF).hexdigest())})  # fmt: skip
    spec = sample.base_system().add("/var/lib/rpm/rpmdb.sqlite", rpm_sqlite(tmp_path / "built.sqlite", [blob]))
    spec.add("/usr/bin/lsblk", ELF, 0o4755)
    spec.add("/usr/bin/su", ELF, 0o4755)
    (work := tmp_path / "w").mkdir()
    status, found, evidence = scan(spec, work, SETID)
    assert found == {("/usr/bin/lsblk", "high", "fail")}
    assert "records mode 0755: the bit was set after installation" in evidence["/usr/bin/lsblk"]


def test_rpm_with_unreadable_headers_does_not_call_files_unowned(tmp_path):
    spec = sample.base_system().add("/var/lib/rpm/rpmdb.sqlite", rpm_sqlite(tmp_path / "built.sqlite", [
        package_header("a", {"/usr/bin/a": (0o100755, "")}), b"broken"]))  # fmt: skip
    spec.add("/usr/bin/tool", ELF, 0o4755)
    (work := tmp_path / "w").mkdir()
    status, found, evidence = scan(spec, work, SETID)
    assert found == {("/usr/bin/tool", "medium", "not-evaluated")} and "do not parse" in evidence["/usr/bin/tool"]


def test_berkeley_db_rpm_is_not_evaluated_with_the_reason(tmp_path):
    spec = sample.base_system().add("/var/lib/rpm/Packages", b"\0" * 64).add("/usr/bin/su", ELF, 0o4755)
    status, _, evidence = scan(spec, tmp_path, SETID)
    assert status == "not-evaluated" and "BerkeleyDB" in evidence[None] and "/usr/bin/su (4755)" in evidence[None]


def test_apk_modified_setuid_file(tmp_path):
    import base64

    def q1(data):
        return "Q1" + base64.b64encode(hashlib.sha1(data).digest()).decode()

    installed = f"P:busybox-suid\nF:bin\nR:bbsuid\na:0:0:4111\nZ:{q1(ELF)}\nR:other\na:0:0:4755\nZ:{q1(ELF)}\n\n"
    spec = sample.base_system().add("/lib/apk/db/installed", installed)
    spec.add("/bin/bbsuid", ELF, 0o4111)
    spec.add("/bin/other", ELF + b"changed", 0o4755)
    status, found, evidence = scan(spec, tmp_path, SETID)
    assert found == {("/bin/other", "high", "fail")} and "its sha1" in evidence["/bin/other"]


# -- home-and-ssh-dir-permissions ---------------------------------------------------------


def test_home_variants(tmp_path):
    spec = sample.base_system(users=("alice", "bob", "carol"))
    spec.add("/etc/passwd", spec.files["/etc/passwd"][0]
             + b"www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\nghost:x:1500:1500::/home/ghost:/bin/sh\n"
             + b"svc:x:600:600::/home/svc:/bin/sh\n")  # fmt: skip
    spec.mkdir("/root", 0o755)
    spec.mkdir("/var/www", 0o777)  # a system account's home: not this check's
    spec.mkdir("/home/svc", 0o777)  # uid 600 < UID_MIN
    spec.mkdir("/home/bob", 0o750, owner=(1000, 1000))  # alice's uid owns bob's home
    spec.mkdir("/home/alice/.ssh", 0o700, owner=(1000, 1000))
    spec.add("/home/alice/.ssh/id_ed25519", b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n", 0o644, owner=(1000, 1000))
    spec.add("/home/alice/.ssh/id_ed25519.pub", "ssh-ed25519 AAAA alice\n", 0o644, owner=(1000, 1000))
    spec.add("/home/alice/.ssh/authorized_keys", "", 0o644, owner=(1000, 1000))  # readable is fine
    spec.add("/home/alice/.ssh/authorized_keys2", "", 0o664, owner=(1000, 1000))  # group-writable is not
    spec.add("/home/alice/.ssh/known_hosts", "", 0o666, owner=(1000, 1000))
    spec.mkdir("/home/carol", 0o700, owner=(1002, 1002))
    spec.symlink("/home/carol/.ssh", "/srv/keys")
    status, found, evidence = scan(spec, tmp_path, HOMES)
    assert found == {("/root", "medium", "fail"), ("/home/bob", "medium", "fail"),
                     ("/home/alice/.ssh/id_ed25519", "medium", "fail"),
                     ("/home/alice/.ssh/authorized_keys2", "medium", "fail")}  # fmt: skip
    assert evidence["/home/bob"] == "home of bob (uid 1001): owner uid 1000 (expected 1001); expected owned by its user, 0750 or stricter"
    assert "AAAA" not in evidence["/home/alice/.ssh/id_ed25519"]


def test_uid_min_comes_from_login_defs(tmp_path):
    spec = sample.base_system()
    spec.add("/etc/login.defs", "UID_MIN 500\n")
    spec.add("/etc/passwd", spec.files["/etc/passwd"][0] + b"svc:x:600:600::/home/svc:/bin/sh\n")
    spec.mkdir("/home/svc", 0o755, owner=(600, 600))
    assert scan(spec, tmp_path, HOMES)[1] == {("/home/svc", "medium", "fail")}


def test_root_home_bound_is_a_parameter(tmp_path):
    from certify.plugins.manager import load_registry

    spec = sample.base_system()
    spec.mkdir("/root", 0o750)
    assert scan(spec, tmp_path, HOMES)[:2] == ("pass", set())
    assert load_registry().checks[HOMES].params == {"home_max_mode": 0o750}


def test_homes_without_passwd_are_not_evaluated(tmp_path):
    status, _, evidence = scan(sample.base_system().remove("/etc/passwd"), tmp_path, HOMES)
    assert status == "not-evaluated" and "homes are unknown" in evidence[None]
