"""Account checks over in-memory guests: the variants that do not belong in the shared catalog images."""

from __future__ import annotations

import secrets

import pytest
from memguest import guest_facts, memory_reader, scan_spec
from plants.accounts import CHECKS, append, replace_line

from certify import sample
from certify.guest.parsers.crypt import make_hash
from certify.plugins.manager import get_plugin_manager, load_registry
from certify.runner import run_checks

HASH_CHECKS = ("account-empty-password", "account-usable-password", "default-or-weak-password", "root-login-not-locked")


def base() -> sample.GuestSpec:
    return sample.base_system("appliance-7", users=("alice", "bob"))


def with_user(spec: sample.GuestSpec, name: str, uid: int, password_field: str, shell: str = "/bin/bash") -> sample.GuestSpec:
    append(spec, "/etc/passwd", f"{name}:x:{uid}:{uid}:{name}:/home/{name}:{shell}")
    append(spec, "/etc/shadow", f"{name}:{password_field}:19700:0:99999:7:::")
    return spec


def run(spec, tmp_path, ids=CHECKS, os_info=None):
    return scan_spec(spec, tmp_path, ids, os_info)


def run_with_params(spec, tmp_path, check_id, params):
    registry = load_registry(get_plugin_manager(autoload=False))
    check = registry.checks[check_id]
    facts = guest_facts(memory_reader(spec, tmp_path), check.facts)
    findings, status = run_checks([check], facts, params={check_id: params})
    return status[check_id].value, findings


def no_secret_in(evidence: dict, *secrets_: str) -> None:
    for text in evidence.values():
        for secret in secrets_:
            assert secret not in text


def test_the_base_system_passes_every_account_check(tmp_path):
    assert set(run(base(), tmp_path)["status"].values()) == {"pass"}


# --- default-or-weak-password with real hashes ------------------------------------------------------


@pytest.mark.parametrize("prefix", [None, "$6$", "$1$"])  # yescrypt (the default), sha512crypt, md5crypt
def test_default_passwords_are_found_in_real_hashes(tmp_path, prefix):
    hashed = make_hash("changeme", prefix)
    spec = with_user(base(), "vendor", 1002, hashed)
    scan = run(spec, tmp_path, ("default-or-weak-password", "account-usable-password"))
    assert scan["status"] == {"default-or-weak-password": "fail", "account-usable-password": "fail"}
    evidence = scan["evidence"][("default-or-weak-password", "/etc/shadow")]
    assert "'vendor'" in evidence and "entry #13 of certify's default-password list" in evidence
    if prefix == "$1$":
        assert "md5crypt is a weak" in scan["evidence"][("account-usable-password", "/etc/shadow")]
    no_secret_in(scan["evidence"], "changeme", hashed, hashed.split("$")[-1])


def test_a_strong_password_is_usable_but_not_a_default(tmp_path):
    strong = secrets.token_urlsafe(24)
    spec = with_user(base(), "deploy", 1002, make_hash(strong, "$6$"))
    scan = run(spec, tmp_path, ("default-or-weak-password", "account-usable-password"))
    assert scan["status"] == {"default-or-weak-password": "pass", "account-usable-password": "fail"}
    assert "sha512crypt" in scan["evidence"][("account-usable-password", "/etc/shadow")]


def test_account_name_and_hostname_are_tried(tmp_path):
    spec = with_user(base(), "kiosk", 1002, make_hash("kiosk", "$6$"))
    with_user(spec, "web", 1003, make_hash("appliance-7", "$5$"))
    scan = run(spec, tmp_path, ("default-or-weak-password",))
    findings = scan_findings(spec, tmp_path, "default-or-weak-password")
    assert scan["status"]["default-or-weak-password"] == "fail"
    assert findings == {"kiosk": "the account's own name", "web": "the guest's host name"}


def scan_findings(spec, tmp_path, check_id) -> dict[str, str]:
    _, findings = run_with_params(spec, tmp_path, check_id, {})
    return {f.location.key: f.evidence.rsplit("matches ", 1)[-1] for f in findings}


def test_absurd_rounds_are_refused_not_computed(tmp_path):
    real = make_hash("changeme", "$6$")
    salt, digest = real.split("$")[2], real.split("$")[3]
    absurd = f"$6$rounds=999999999${salt}${digest}"  # a day of CPU per guess: the cost is read, never paid
    spec = with_user(base(), "vendor", 1002, absurd)
    with_user(spec, "ops", 1003, "$2b$31$" + "a" * 53)
    scan = run(spec, tmp_path, ("default-or-weak-password",))
    assert scan["status"]["default-or-weak-password"] == "not-evaluated"
    _, findings = run_with_params(spec, tmp_path, "default-or-weak-password", {})
    reasons = {f.location.key: f.evidence for f in findings}
    assert "rounds=999999999 is over the bound of 100000 rounds" in reasons["vendor"]
    assert "bcrypt cost 31 is over the bound of cost 12" in reasons["ops"]
    assert all(f.status.value == "not-evaluated" for f in findings)


def test_cost_bounds_and_time_budget_are_params(tmp_path):
    spec = with_user(base(), "vendor", 1002, make_hash("changeme", "$6$", 20000))
    status, findings = run_with_params(spec, tmp_path, "default-or-weak-password", {"max_sha_rounds": 10000})
    assert status == "not-evaluated" and "over the bound of 10000 rounds" in findings[0].evidence
    status, findings = run_with_params(spec, tmp_path, "default-or-weak-password", {"time_budget_seconds": 0})
    assert status == "not-evaluated" and "time budget of 0 s ran out after 0 of" in findings[0].evidence
    status, _ = run_with_params(spec, tmp_path, "default-or-weak-password", {})
    assert status == "fail"


def test_unknown_scheme_is_not_evaluated(tmp_path):
    spec = with_user(base(), "odd", 1002, "$9$somesalt$somehash")
    scan = run(spec, tmp_path, ("default-or-weak-password",))
    assert scan["status"]["default-or-weak-password"] == "not-evaluated"
    assert "no scheme certify recognises" in scan["evidence"][("default-or-weak-password", "/etc/shadow")]


# --- empty, usable, root ----------------------------------------------------------------------------


def test_empty_password_and_root_called_out(tmp_path):
    spec = base()
    replace_line(spec, "/etc/shadow", "root:", "root::19700:0:99999:7:::")
    scan = run(spec, tmp_path, ("account-empty-password", "root-login-not-locked", "account-usable-password"))
    assert scan["status"] == {"account-empty-password": "fail", "root-login-not-locked": "fail", "account-usable-password": "pass"}
    assert "blank root password" in scan["evidence"][("account-empty-password", "/etc/shadow")]
    assert "root has an empty password" in scan["evidence"][("root-login-not-locked", "/etc/shadow")]


def test_unshadowed_passwd_fields_count(tmp_path):
    spec = base()
    hashed = make_hash("Zq8!" + secrets.token_hex(8), "$6$")
    append(spec, "/etc/passwd", "old:" + hashed + ":1002:1002::/home/old:/bin/sh", "open::1003:1003::/home/open:/bin/sh")
    scan = run(spec, tmp_path, ("account-empty-password", "account-usable-password"))
    assert scan["findings"] == {("account-empty-password", "/etc/passwd", "critical", "fail"),
                                ("account-usable-password", "/etc/passwd", "high", "fail")}  # fmt: skip
    no_secret_in(scan["evidence"], hashed)


def test_nologin_accounts_with_a_hash_still_count(tmp_path):
    spec = with_user(base(), "svc", 998, make_hash(secrets.token_hex(12), "$y$"), shell="/usr/sbin/nologin")
    scan = run(spec, tmp_path, ("account-usable-password", "system-accounts-login"))
    assert scan["status"] == {"account-usable-password": "fail", "system-accounts-login": "pass"}
    assert "allows no interactive login" in scan["evidence"][("account-usable-password", "/etc/shadow")]


def test_root_with_nologin_shell_passes_root_login(tmp_path):
    spec = base()
    replace_line(spec, "/etc/passwd", "root:", "root:x:0:0:root:/root:/usr/sbin/nologin")
    assert run(spec, tmp_path, ("root-login-not-locked",))["status"]["root-login-not-locked"] == "pass"
    replace_line(spec, "/etc/shadow", "root:", f"root:{make_hash(secrets.token_hex(12), '$6$')}:19700:0:99999:7:::")
    scan = run(spec, tmp_path, ("root-login-not-locked", "account-usable-password"))
    assert scan["status"] == {"root-login-not-locked": "pass", "account-usable-password": "fail"}


def test_locked_hash_and_missing_shadow_entry_are_not_usable(tmp_path):
    spec = with_user(base(), "was", 1002, "!" + make_hash("changeme", "$6$"))
    append(spec, "/etc/passwd", "ghost:x:1003:1003::/home/ghost:/bin/bash")  # 'x' but no shadow line
    assert set(run(spec, tmp_path, HASH_CHECKS)["status"].values()) == {"pass"}


def test_no_shadow_makes_the_hash_checks_not_evaluated(tmp_path):
    spec = base().remove("/etc/shadow")
    append(spec, "/etc/passwd", "toor:x:0:0::/root:/bin/bash")
    scan = run(spec, tmp_path)
    for check_id in HASH_CHECKS:
        assert scan["status"][check_id] == "not-evaluated"
        assert scan["evidence"][(check_id, "/etc/shadow")].startswith("no /etc/shadow")
    assert scan["status"]["extra-uid0-accounts"] == "fail"  # passwd alone still tells that


def test_no_passwd_is_not_evaluated(tmp_path):
    spec = base().remove("/etc/passwd")
    scan = run(spec, tmp_path)
    assert set(scan["status"].values()) == {"not-evaluated"}
    assert "no /etc/passwd" in next(iter(scan["evidence"].values()))


def test_a_windows_guest_is_not_applicable_and_an_unknown_one_not_evaluated(tmp_path):
    scan = run(sample.GuestSpec(), tmp_path, CHECKS, os_info={"type": "windows", "distro": "windows"})
    assert set(scan["status"].values()) == {"not-applicable"} and scan["findings"] == set()
    scan = run(sample.GuestSpec(), tmp_path, CHECKS, os_info={"type": "unknown"})
    assert set(scan["status"].values()) == {"not-evaluated"}
    assert all("operating system type could not be identified" in e for e in scan["evidence"].values())


def test_passwd_read_through_a_symlink(tmp_path):
    spec = base()
    content, mode = spec.files.pop("/etc/passwd")
    spec.add("/data/etc/passwd", content, mode)
    spec.symlink("/etc/passwd", "/data/etc/passwd")
    append(spec, "/data/etc/passwd", "toor:x:0:0::/root:/bin/bash")
    assert run(spec, tmp_path, ("extra-uid0-accounts",))["status"]["extra-uid0-accounts"] == "fail"


# --- system accounts ------------------------------------------------------------------------------


def test_system_accounts_follow_uid_min(tmp_path):
    spec = base()
    append(spec, "/etc/passwd", "legacy:x:600:600::/home/legacy:/bin/bash", "sync:x:4:65534:sync:/bin:/bin/sync",
           "svc:x:150:150::/var/lib/svc:", "app:x:160:160::/opt/app:/bin/false")  # fmt: skip
    status, findings = run_with_params(spec, tmp_path, "system-accounts-login", {})
    assert status == "fail" and all(f.location.path == "/etc/passwd" for f in findings)
    assert sorted(f.location.key for f in findings) == ["legacy", "svc"]  # an empty shell is /bin/sh
    content, mode = spec.files["/etc/login.defs"]
    spec.files["/etc/login.defs"] = (content.replace(b"UID_MIN 1000", b"UID_MIN 500"), mode)
    _, findings = run_with_params(spec, tmp_path, "system-accounts-login", {})
    assert sorted(f.location.key for f in findings) == ["svc"]


# --- backups --------------------------------------------------------------------------------------


def test_backup_copies_and_former_hashes(tmp_path):
    spec = base()
    old_hash = make_hash(secrets.token_hex(10), "$6$")
    shadow = spec.files["/etc/shadow"][0].decode()
    spec.add("/var/backups/shadow.bak", shadow.replace("bob:!:", f"bob:{old_hash}:"), 0o644)
    spec.add("/etc/group.orig", spec.files["/etc/group"][0])
    spec.add("/etc/subuid-", "alice:100000:65536\n")
    spec.add("/etc/gshadow-", spec.files["/etc/gshadow"][0], 0o640)
    scan = run(spec, tmp_path, ("passwd-backup-files",))
    assert {(p, s) for (_, p, s, _) in scan["findings"]} == {
        ("/var/backups/shadow.bak", "high"), ("/etc/group.orig", "medium"), ("/etc/subuid-", "medium"),
        ("/etc/gshadow-", "medium")}  # fmt: skip
    evidence = scan["evidence"][("passwd-backup-files", "/var/backups/shadow.bak")]
    assert "usable password hash for bob" in evidence and "world-readable" in evidence
    no_secret_in(scan["evidence"], old_hash)


def test_a_backup_equal_to_the_live_database_is_medium(tmp_path):
    spec = with_user(base(), "deploy", 1002, make_hash(secrets.token_hex(10), "$6$"))
    spec.add("/etc/shadow-", spec.files["/etc/shadow"][0], 0o640)
    assert run(spec, tmp_path, ("passwd-backup-files",))["findings"] == {("passwd-backup-files", "/etc/shadow-", "medium", "fail")}


# --- sudo and doas --------------------------------------------------------------------------------


def sudo_base() -> sample.GuestSpec:
    spec = base()
    spec.add("/etc/sudoers", "Defaults env_reset\nroot ALL=(ALL:ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\n"
             "@includedir /etc/sudoers.d\n", 0o440)  # fmt: skip
    spec.mkdir("/etc/sudoers.d")
    return spec


def sudo_findings(spec, tmp_path) -> dict[str, str]:
    scan = run(spec, tmp_path, ("sudo-config",))
    return {path: scan["evidence"][(i, path)] for (i, path, _, status) in scan["findings"] if status == "fail"}


def test_sudo_files_sudo_skips_are_skipped(tmp_path):
    spec = sudo_base()
    for name in ("vendor.disabled", "vendor~", "README.md"):
        spec.add(f"/etc/sudoers.d/{name}", "vendor ALL=(ALL) NOPASSWD: ALL\n", 0o440)
    spec.add("/etc/sudoers.d/ops", "ops ALL=(root) NOPASSWD: /usr/bin/systemctl restart app\n", 0o440)
    spec.add("/etc/sudoers.d/root-nopasswd", "root ALL=(ALL) NOPASSWD: ALL\n", 0o440)
    assert run(spec, tmp_path, ("sudo-config",))["status"]["sudo-config"] == "pass"


def test_sudo_without_includedir_does_not_read_the_directory(tmp_path):
    spec = sudo_base()
    spec.add("/etc/sudoers", "%sudo ALL=(ALL:ALL) ALL\n", 0o440)
    spec.add("/etc/sudoers.d/vendor", "vendor ALL=(ALL) NOPASSWD: ALL\n", 0o440)
    assert run(spec, tmp_path, ("sudo-config",))["status"]["sudo-config"] == "pass"
    spec.remove("/etc/sudoers")  # no sudoers at all: the drop-ins wait for sudo to be installed
    found = sudo_findings(spec, tmp_path)
    assert set(found) == {"/etc/sudoers.d/vendor"} and "the default @includedir" in found["/etc/sudoers.d/vendor"]
    spec.remove("/etc/sudoers.d/vendor")
    spec.add("/etc/sudoers.d/ops", "%ops ALL=(ALL) ALL\n#include /etc/sudoers.missing\n", 0o440)
    assert run(spec, tmp_path, ("sudo-config",))["status"]["sudo-config"] == "pass"


def test_sudo_permissions_defaults_aliases_and_includes(tmp_path):
    spec = sudo_base()
    spec.add("/etc/sudoers", "Defaults env_reset\n%sudo ALL=(ALL:ALL) ALL\n#include sudoers.local\n"
             "@includedir /etc/sudoers.d\n", 0o440)  # fmt: skip
    spec.add("/etc/sudoers.local", "Cmnd_Alias SHELLS = /bin/sh, /bin/bash\n#include /etc/sudoers.local\n", 0o440)
    spec.add("/etc/sudoers.d/10-shells", "ops ALL = NOPASSWD: SHELLS\n", 0o440)  # an alias from another file
    spec.add("/etc/sudoers.d/20-owned", "%sudo ALL=(ALL:ALL) ALL\n", 0o440, owner=(1000, 1000))
    spec.add("/etc/sudoers.d/30-writable", "%sudo ALL=(ALL:ALL) ALL\n", 0o664)
    spec.add("/etc/sudoers.d/40-noauth", "Defaults:vendor !authenticate\n", 0o440)
    found = sudo_findings(spec, tmp_path)
    assert set(found) == {"/etc/sudoers.d/10-shells", "/etc/sudoers.d/20-owned", "/etc/sudoers.d/30-writable",
                          "/etc/sudoers.d/40-noauth"}  # fmt: skip
    assert "line 1: ops ALL = NOPASSWD: SHELLS" in found["/etc/sudoers.d/10-shells"]
    assert "owned by uid 1000" in found["/etc/sudoers.d/20-owned"]
    assert "mode 0664 is group/world-writable" in found["/etc/sudoers.d/30-writable"]
    assert "Defaults:vendor !authenticate" in found["/etc/sudoers.d/40-noauth"]
    assert "included from /etc/sudoers:4" in found["/etc/sudoers.d/10-shells"]


def test_sudo_include_depth_is_bounded(tmp_path):
    spec = sudo_base()
    spec.add("/etc/sudoers", "#include /etc/sudo-1\n", 0o440)
    for i in range(1, 12):
        spec.add(f"/etc/sudo-{i}", f"#include /etc/sudo-{i + 1}\n", 0o440)
    scan = run(spec, tmp_path, ("sudo-config",))
    assert scan["status"]["sudo-config"] == "not-evaluated"
    assert "nest deeper than 8" in scan["evidence"][("sudo-config", "/etc/sudoers")]


def test_doas_nopass_without_a_command(tmp_path):
    spec = base()
    spec.add("/etc/doas.conf", "permit persist :wheel\npermit nopass ops cmd /usr/bin/systemctl\n", 0o400)
    assert run(spec, tmp_path, ("sudo-config",))["status"]["sudo-config"] == "pass"
    spec.add("/etc/doas.conf", "permit persist :wheel\npermit nopass vendor\n", 0o400)
    assert "line 2: permit nopass vendor" in sudo_findings(spec, tmp_path)["/etc/doas.conf"]
