"""Secret checks over in-memory guests: the edge cases that stay out of the shared catalog images."""

from __future__ import annotations

import json

import pytest
from memguest import memory_reader, scan_spec
from plants import secrets as plant

from certify import sample
from certify.guest.collectors import content
from certify.guest.collectors.ssh import find_host_keys
from certify.guest.parsers import vncpasswd

ALL = plant.CHECKS


def scan(spec, tmp_path, ids=ALL):
    return scan_spec(spec, tmp_path, ids)


def failing(result, check_id=None):
    return {(i, p, s) for (i, p, s, st) in result["findings"] if st == "fail" and (check_id is None or i == check_id)}


def base():
    return sample.base_system("appliance", users=("alice",))


def test_base_system_is_clean(tmp_path):
    result = scan(base(), tmp_path)
    assert set(result["status"].values()) == {"pass"}, result["evidence"]


def test_one_batched_read_for_the_whole_scan(tmp_path, monkeypatch):
    spec = base()
    plant.plant_dirty(spec)
    reader = memory_reader(spec, tmp_path)
    find_host_keys(reader)  # shared with ssh_host_keys (one memo per scan): which files are host keys, not read twice
    calls = []
    original = reader.read_many
    monkeypatch.setattr(reader, "read_many", lambda paths, limit: calls.append(list(paths)) or original(paths, limit))
    fact = content.collect_content(reader)
    assert len(calls) == 1
    assert "/root/.aws/credentials" in calls[0] and "/var/log/syslog" in calls[0]
    assert fact.coverage.read == len(calls[0]) and fact.coverage.over_budget == 0


def test_snakeoil_key_fails_and_host_keys_are_left_to_their_check(tmp_path):
    spec = base()
    spec.add("/etc/ssl/private/ssl-cert-snakeoil.key", plant.ec_private_key_pem(), 0o640)
    private, _ = sample.ed25519_keypair("root@host")
    spec.add("/etc/ssh/ssh_host_ed25519_key", private, 0o600)
    result = scan(spec, tmp_path, ("private-key-material",))
    assert failing(result) == {("private-key-material", "/etc/ssl/private/ssl-cert-snakeoil.key", "high")}
    assert "snakeoil" in result["evidence"][("private-key-material", "/etc/ssl/private/ssl-cert-snakeoil.key")]


def test_usr_share_apps_are_read_distro_data_is_not(tmp_path):
    spec = base()
    key = plant.ec_private_key_pem()
    spec.add("/usr/share/acme/tls/acme.pem", key)  # an application's directory: read by extension
    spec.add("/usr/share/acme/lib/blob.bin", key)  # no credential-like name, not in a key directory: not read
    spec.add("/usr/share/doc/acme/examples/server.key", key)  # distribution documentation: not read
    spec.add("/usr/share/acme/node_modules/lib/test.key", key)  # dependency tree: not read
    spec.add("/opt/acme/private/license", key)  # small file directly in a 'private' directory
    spec.add("/srv/acme/bundle.crt", plant.self_signed_certificate("x") + key)  # a certificate file that holds a key
    result = scan(spec, tmp_path, ("private-key-material",))
    assert failing(result) == {
        ("private-key-material", p, "high") for p in ("/usr/share/acme/tls/acme.pem", "/opt/acme/private/license", "/srv/acme/bundle.crt")
    }


def test_home_keys_are_user_keys_and_not_reported_twice(tmp_path):
    spec = base()
    key = plant.ec_private_key_pem()
    spec.add("/root/certs/backup.key", key, 0o600)
    spec.add("/home/alice/.ssh/id_rsa", b"not a key format we know", 0o600, owner=(1000, 1000))
    spec.add("/home/alice/.ssh/id_rsa.pub", "ssh-rsa AAAA alice\n", owner=(1000, 1000))
    result = scan(spec, tmp_path, ("ssh-user-private-keys", "private-key-material"))
    assert failing(result) == {
        ("ssh-user-private-keys", "/root/certs/backup.key", "critical"),
        ("ssh-user-private-keys", "/home/alice/.ssh/id_rsa", "critical"),
    }
    assert "no private key block" in result["evidence"][("ssh-user-private-keys", "/home/alice/.ssh/id_rsa")]


def test_passwd_homes_outside_home_are_read_for_dot_files_only(tmp_path):
    spec = base()
    passwd = spec.files["/etc/passwd"][0].decode() + "postgres:x:110:110::/var/lib/postgresql:/bin/bash\n"
    spec.add("/etc/passwd", passwd)
    private, _ = sample.ed25519_keypair("postgres@db")
    spec.add("/var/lib/postgresql/.ssh/id_ed25519", private, 0o600)
    spec.add("/var/lib/postgresql/.psql_history", "select 1;\n", 0o600)
    spec.add("/var/lib/postgresql/15/main/base/1/1234", b"\0" * 64)  # data files are not read
    reader = memory_reader(spec, tmp_path)
    fact = content.collect_content(reader)
    assert "/var/lib/postgresql/15/main/base/1/1234" not in fact.files
    result = scan(spec, tmp_path, ("ssh-user-private-keys", "shell-history-present"))
    assert failing(result) == {
        ("ssh-user-private-keys", "/var/lib/postgresql/.ssh/id_ed25519", "critical"),
        ("shell-history-present", "/var/lib/postgresql/.psql_history", "medium"),
    }


def test_cloud_credential_stores_by_path_and_gcp_key_by_content(tmp_path):
    spec = base()
    spec.add("/home/alice/.config/gcloud/credentials.db", b"SQLite format 3\0" + b"\0" * 100, 0o600, owner=(1000, 1000))
    spec.add("/home/alice/.config/gcloud/active_config", "default\n", owner=(1000, 1000))
    spec.add("/home/alice/.azure/msal_token_cache.json", '{"AccessToken": {}}', 0o600, owner=(1000, 1000))
    spec.add("/opt/app/sa.json", json.dumps({"type": "service_account", "private_key_id": "a" * 40, "private_key": "-----BEGIN..."}, indent=1))
    result = scan(spec, tmp_path, ("cloud-provider-credentials",))
    assert failing(result) == {
        ("cloud-provider-credentials", "/home/alice/.config/gcloud/credentials.db", "critical"),
        ("cloud-provider-credentials", "/home/alice/.azure/msal_token_cache.json", "critical"),
        ("cloud-provider-credentials", "/opt/app/sa.json", "critical"),
    }


def test_registry_credential_files(tmp_path):
    spec = base()
    spec.add("/root/.npmrc", "//registry.npmjs.org/:_authToken=0123456789abcdef\n", 0o600)
    spec.add("/root/.pypirc", "[pypi]\nusername = vendor\npassword = Upl0ad-Pass\n", 0o600)
    spec.add("/root/.docker/config.json", '{"auths": {"registry.example.com": {"auth": "dmVuZG9yOnNlY3JldA=="}}}', 0o600)
    spec.add("/home/alice/.docker/config.json", '{"credsStore": "pass"}', 0o600, owner=(1000, 1000))
    spec.add("/etc/app/notify.conf", "webhook = https://hooks.slack.com/services/T000/B000/" + "X" * 24 + "\n")
    result = scan(spec, tmp_path, ("dev-saas-registry-tokens", "hardcoded-app-secrets"))
    assert failing(result) == {
        ("dev-saas-registry-tokens", p, "high") for p in ("/root/.npmrc", "/root/.pypirc", "/root/.docker/config.json", "/etc/app/notify.conf")
    }


def test_stock_debian_mentions_of_passwords_pass(tmp_path):
    spec = base()
    plant.plant_clean(spec)
    spec.add("/etc/debconf.conf", "Name: passwords\nDriver: File\nMode: 600\nFilename: /var/cache/debconf/passwords.dat\n"
             "Accept-Type: password\n")  # fmt: skip
    spec.add("/etc/samba/smb.conf", "   passdb backend = tdbsam\n   unix password sync = yes\n"
             "   passwd program = /usr/bin/passwd %u\n   pam password change = yes\n")  # fmt: skip
    assert failing(scan(spec, tmp_path, ("hardcoded-app-secrets",))) == set()


def test_secrets_in_cloud_init_and_installer_files_go_to_their_checks_once(tmp_path):
    spec = base()
    spec.add("/var/lib/cloud/instances/i-1/user-data.txt", f"#cloud-config\npassword: Vendor123\nwrite_files:\n"
             f"  - content: {plant.FAKE_GITHUB_PAT}\n")  # fmt: skip
    result = scan(spec, tmp_path, ("cloud-init-seeded-secrets", "hardcoded-app-secrets", "dev-saas-registry-tokens"))
    assert failing(result) == {
        ("cloud-init-seeded-secrets", "/var/lib/cloud/instances/i-1/user-data.txt", "high"),
        ("dev-saas-registry-tokens", "/var/lib/cloud/instances/i-1/user-data.txt", "high"),
    }


def test_installer_log_directory_is_one_finding_and_not_a_log(tmp_path):
    spec = base()
    spec.add("/var/log/installer/syslog", "installer log\n")
    spec.add("/var/log/installer/cdebconf/questions.dat", "Name: passwd/root-password\nTemplate: passwd/root-password\n"
             "Value: r00tpw\nOwners: d-i\n")  # fmt: skip
    spec.add("/var/log/installer/status", "")
    spec.add("/root/preseed.cfg", "d-i passwd/root-password-crypted password $6$a$b\n")
    result = scan(spec, tmp_path, ("installer-answer-files", "log-files-present"))
    assert failing(result) == {
        ("installer-answer-files", "/var/log/installer", "high"),
        ("installer-answer-files", "/root/preseed.cfg", "high"),
    }
    evidence = result["evidence"][("installer-answer-files", "/var/log/installer")]
    assert "root plain-text password" in evidence and "questions.dat" in evidence and "r00tpw" not in evidence
    assert "root password hash" in result["evidence"][("installer-answer-files", "/root/preseed.cfg")]


def test_history_kinds(tmp_path):
    spec = base()
    spec.symlink("/root/.bash_history", "/tmp/hist")
    spec.mkdir("/home/alice/.zsh_history")
    spec.symlink("/home/alice/.bash_history", "/dev/null")
    spec.add("/home/alice/.python_history", "", owner=(1000, 1000))
    spec.add("/root/.mysql_history", "show databases;\n")
    result = scan(spec, tmp_path, ("shell-history-present",))
    assert failing(result) == {
        ("shell-history-present", "/root/.bash_history", "medium"),
        ("shell-history-present", "/home/alice/.zsh_history", "medium"),
        ("shell-history-present", "/root/.mysql_history", "medium"),
    }
    assert result["evidence"][("shell-history-present", "/root/.mysql_history")] == "16 bytes, 1 line"


def test_vnc_files(tmp_path):
    spec = base()
    spec.add("/home/alice/.vnc/passwd", vncpasswd.encode("appliance"), 0o600, owner=(1000, 1000))  # the hostname
    spec.add("/etc/x11vnc.pass", vncpasswd.encode("Zq7!kLp2"), 0o600)
    spec.add("/etc/vnc.conf", "# $vncPasswdFile = $vncUserDir . '/passwd';\n")
    result = scan(spec, tmp_path, ("vnc-password-file",))
    assert failing(result) == {("vnc-password-file", "/home/alice/.vnc/passwd", "critical"), ("vnc-password-file", "/etc/x11vnc.pass", "critical")}
    assert "known default" in result["evidence"][("vnc-password-file", "/home/alice/.vnc/passwd")]
    assert "password of 8 characters" in result["evidence"][("vnc-password-file", "/etc/x11vnc.pass")]


def test_logs_binary_and_large(tmp_path, monkeypatch):
    monkeypatch.setattr(content, "MAX_FILE_SIZE", 64)
    spec = base()
    spec.add("/var/log/wtmp", b"\0" * 384)
    spec.add("/var/log/journal/abc/system.journal", b"LPKSHHRH" + b"\0" * 100)
    spec.add("/var/log/dpkg.log", "x" * 100 + "\n")
    spec.add("/var/log/apt/history.log", "")
    result = scan(spec, tmp_path, ("log-files-present",))
    assert failing(result) == {("log-files-present", p, "medium") for p in ("/var/log/wtmp", "/var/log/journal/abc/system.journal", "/var/log/dpkg.log")}
    assert result["evidence"][("log-files-present", "/var/log/wtmp")] == "384 bytes, binary log, not read"
    assert "content not scanned" in result["evidence"][("log-files-present", "/var/log/dpkg.log")]


def test_an_exhausted_read_budget_is_not_a_pass(tmp_path, monkeypatch):
    monkeypatch.setattr(content, "MAX_CANDIDATES", 3)
    spec = base()
    for i in range(5):
        spec.add(f"/etc/app/conf{i}.conf", "x = 1\n")
    result = scan(spec, tmp_path, ("hardcoded-app-secrets", "vnc-password-file"))
    assert result["status"] == {"hardcoded-app-secrets": "not-evaluated", "vnc-password-file": "pass"}


@pytest.mark.parametrize("check_id", ALL)
def test_every_check_describes_what_it_reads(check_id):
    from certify.plugins.manager import get_plugin_manager, load_registry

    check = load_registry(get_plugin_manager(autoload=False)).checks[check_id]
    assert check.description and check.remediation and check.references
