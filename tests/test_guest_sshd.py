"""sshd, cleartext service, trust file and vendor access checks on in-memory guests: the edge cases."""

from __future__ import annotations

import pytest
from memguest import DEBIAN, guest_facts, memory_reader, scan_spec

from certify import sample
from certify.guest.parsers.remote_access import (
    inetd_services,
    netrc_summary,
    openvpn_client,
    proftpd_requires_tls,
    pureftpd_requires_tls,
    syslog_forwards,
    tunnel_commands,
    vsftpd_requires_tls,
    xinetd_services,
)
from certify.plugins.manager import get_plugin_manager, load_registry

SSHD = ("sshd-permit-root-login", "sshd-password-authentication", "sshd-permit-empty-passwords", "sshd-hardening-baseline")
DROPIN = "/etc/ssh/sshd_config.d/90-test.conf"


def scan(spec, tmp_path, ids=SSHD, os_info=None):
    return scan_spec(spec, tmp_path, ids, os_info)


def failing(result, check_id):
    return {path for (i, path, _sev, status) in result["findings"] if i == check_id and status == "fail"}


def with_config(text: str, main: str | None = None) -> sample.GuestSpec:
    spec = sample.base_system()
    spec.add(DROPIN, text)
    if main is not None:
        spec.add("/etc/ssh/sshd_config", main)
    return spec


# -- applicability --------------------------------------------------------------------------------


def test_no_config_and_no_binary_is_not_applicable(tmp_path):
    spec = sample.base_system().remove("/etc/ssh/sshd_config")
    assert set(scan(spec, tmp_path)["status"].values()) == {"not-applicable"}


def test_binary_without_config_is_not_evaluated(tmp_path):
    spec = sample.base_system().remove("/etc/ssh/sshd_config").add("/usr/sbin/sshd", b"\x7fELF", 0o755)
    result = scan(spec, tmp_path)
    assert set(result["status"].values()) == {"not-evaluated"}
    assert "sshd would not start" in result["evidence"][("sshd-permit-root-login", None)]


def test_include_loop_is_not_evaluated(tmp_path):
    spec = with_config("Include /etc/ssh/sshd_config.d/*.conf\n")
    result = scan(spec, tmp_path)
    assert set(result["status"].values()) == {"not-evaluated"}
    assert "include loop" in result["evidence"][("sshd-password-authentication", None)]


def test_oversized_config_is_not_evaluated(tmp_path):
    spec = with_config("# pad\n" * 60000)
    result = scan(spec, tmp_path)
    assert set(result["status"].values()) == {"not-evaluated"}
    assert "larger than 256 KiB" in result["evidence"][("sshd-permit-root-login", None)]


# -- root login -----------------------------------------------------------------------------------


def test_match_granting_root_password_login_from_some_addresses_fails_naming_the_match(tmp_path):
    spec = with_config("Match Address 198.51.100.0/24,203.0.113.7\n  PermitRootLogin yes\n")
    result = scan(spec, tmp_path, ("sshd-permit-root-login",))
    assert failing(result, "sshd-permit-root-login") == {DROPIN}
    evidence = result["evidence"][("sshd-permit-root-login", DROPIN)]
    assert f"'Match Address 198.51.100.0/24,203.0.113.7' ({DROPIN}:1)" in evidence and f"{DROPIN}:2" in evidence


@pytest.mark.parametrize("value", ["no", "prohibit-password", "without-password", "forced-commands-only"])
def test_root_login_values_that_pass(tmp_path, value):
    spec = with_config(f"PermitRootLogin {value}\n", main="Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin yes\n")
    assert scan(spec, tmp_path, ("sshd-permit-root-login",))["status"]["sshd-permit-root-login"] == "pass"


def test_old_release_compiled_default_decides_and_points_at_main_config(tmp_path):
    spec = sample.base_system().add("/etc/ssh/sshd_config", "PasswordAuthentication no\n")
    old = dict(DEBIAN, distro="debian", version="8.11", product_name="8.11")
    result = scan(spec, tmp_path, ("sshd-permit-root-login",), os_info=old)
    assert failing(result, "sshd-permit-root-login") == {"/etc/ssh/sshd_config"}
    assert "compiled-in default" in result["evidence"][("sshd-permit-root-login", "/etc/ssh/sshd_config")]


# -- passwords ------------------------------------------------------------------------------------


def test_unknown_os_says_which_defaults_were_assumed(tmp_path):
    spec = sample.base_system().add("/etc/ssh/sshd_config", "KbdInteractiveAuthentication no\n")
    result = scan(spec, tmp_path, ("sshd-password-authentication",), os_info={"type": "linux"})
    evidence = result["evidence"][("sshd-password-authentication", "/etc/ssh/sshd_config")]
    assert "compiled-in default" in evidence and "OS release unknown" in evidence


def test_keyboard_interactive_counts_only_with_pam(tmp_path):
    main = "PasswordAuthentication no\nKbdInteractiveAuthentication yes\n"
    assert scan(with_config("", main + "UsePAM no\n"), tmp_path)["status"]["sshd-password-authentication"] == "pass"
    result = scan(with_config("", main + "UsePAM yes\n"), tmp_path)
    assert failing(result, "sshd-password-authentication") == {"/etc/ssh/sshd_config"}
    assert "UsePAM yes at /etc/ssh/sshd_config:3" in result["evidence"][("sshd-password-authentication", "/etc/ssh/sshd_config")]


def test_challenge_response_is_keyboard_interactive(tmp_path):
    spec = with_config("ChallengeResponseAuthentication yes\n",
                       main="Include /etc/ssh/sshd_config.d/*.conf\nUsePAM yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n")
    assert failing(scan(spec, tmp_path), "sshd-password-authentication") == {DROPIN}


def test_authentication_methods_requiring_a_key_make_a_password_alone_useless(tmp_path):
    main = "PasswordAuthentication yes\nKbdInteractiveAuthentication no\nAuthenticationMethods publickey,password\n"
    assert scan(with_config("", main), tmp_path)["status"]["sshd-password-authentication"] == "pass"
    main = "PasswordAuthentication yes\nKbdInteractiveAuthentication no\nAuthenticationMethods publickey password\n"
    assert scan(with_config("", main), tmp_path)["status"]["sshd-password-authentication"] == "fail"


def test_password_for_one_user_through_match_fails(tmp_path):
    spec = with_config("Match User deploy\n  PasswordAuthentication yes\n")
    result = scan(spec, tmp_path)
    assert failing(result, "sshd-password-authentication") == {DROPIN}
    assert "'Match User deploy'" in result["evidence"][("sshd-password-authentication", DROPIN)]


def test_password_for_root_only_counts_when_root_may_log_in_with_one(tmp_path):
    spec = with_config("Match User root\n  PasswordAuthentication yes\n")
    assert scan(spec, tmp_path)["status"]["sshd-password-authentication"] == "pass"  # PermitRootLogin prohibit-password
    spec = with_config("Match User root\n  PasswordAuthentication yes\n  PermitRootLogin yes\n")
    assert failing(scan(spec, tmp_path), "sshd-password-authentication") == {DROPIN}


def test_empty_passwords_in_match_group(tmp_path):
    spec = with_config("Match Group sudo\n  PermitEmptyPasswords yes\n")
    assert failing(scan(spec, tmp_path), "sshd-permit-empty-passwords") == {DROPIN}


# -- hardening baseline ---------------------------------------------------------------------------


def baseline(spec, tmp_path, **params):
    registry = load_registry(get_plugin_manager(autoload=False))
    check = registry.checks["sshd-hardening-baseline"]
    facts = guest_facts(memory_reader(spec, tmp_path), ["sshd_config", "dropbear_config"])
    return list(check.evaluate(sshd_config=facts.values["sshd_config"], dropbear_config=facts.values["dropbear_config"],
                               params={**check.params, **params}))  # fmt: skip


def test_one_finding_per_deviating_option_with_the_option_as_key(tmp_path):
    spec = with_config("HostbasedAuthentication yes\nIgnoreRhosts no\nLogLevel QUIET\nUseDNS yes\nMaxAuthTries 6\n")
    keys = sorted(r.location.key for r in baseline(spec, tmp_path))
    assert keys == ["HostbasedAuthentication", "IgnoreRhosts", "LogLevel", "UseDNS"]


def test_client_alive_interval_bounds_are_params(tmp_path):
    spec = sample.base_system()
    assert baseline(spec, tmp_path) == []
    [result] = baseline(spec, tmp_path, client_alive_interval_min=30, client_alive_interval_max=235)
    assert result.location.path == "/etc/ssh/sshd_config" and "compiled-in default" in result.evidence
    ok = with_config("ClientAliveInterval 3m\n")
    assert baseline(ok, tmp_path, client_alive_interval_min=30, client_alive_interval_max=235) == []
    assert len(baseline(with_config("ClientAliveInterval 300\n"), tmp_path, client_alive_interval_max=235)) == 1


def test_forwarding_is_only_checked_when_asked(tmp_path):
    spec = sample.base_system()
    assert baseline(spec, tmp_path) == []
    keys = sorted(r.location.key for r in baseline(spec, tmp_path, check_forwarding=True))
    assert keys == ["AllowAgentForwarding", "AllowTcpForwarding"]


def test_max_auth_tries_threshold(tmp_path):
    assert len(baseline(with_config("MaxAuthTries 5\n"), tmp_path, max_auth_tries=4)) == 1
    assert baseline(with_config("MaxAuthTries 5\n"), tmp_path) == []


# -- authorized keys from AuthorizedKeysFile ------------------------------------------------------


def test_authorized_keys_file_paths_from_the_effective_config(tmp_path):
    _, key = sample.ed25519_keypair("vendor@ci")
    spec = with_config("AuthorizedKeysFile .config/ssh/keys /etc/ssh/authorized_keys/%u\n")
    spec.add("/etc/ssh/authorized_keys/alice", key + "\n")
    spec.add("/home/alice/.config/ssh/keys", key + "\n", owner=(1000, 1000))
    spec.add("/home/alice/.ssh/authorized_keys", key + "\n", owner=(1000, 1000))  # the usual name is still read
    spec.add("/etc/ssh/authorized_keys/nobody-here", key + "\n")  # no such account: sshd never reads it
    result = scan(spec, tmp_path, ("ssh-authorized-keys-present",))
    assert failing(result, "ssh-authorized-keys-present") == {
        "/etc/ssh/authorized_keys/alice", "/home/alice/.config/ssh/keys", "/home/alice/.ssh/authorized_keys"}
    assert "for alice" in result["evidence"][("ssh-authorized-keys-present", "/etc/ssh/authorized_keys/alice")]


def test_authorized_keys_file_in_match_and_tokens(tmp_path):
    _, key = sample.ed25519_keypair("git")
    spec = with_config("Match User alice\n  AuthorizedKeysFile /srv/keys/%U-%%.pub none\n")
    spec.add("/srv/keys/1000-%.pub", key + "\n")
    assert failing(scan(spec, tmp_path, ("ssh-authorized-keys-present",)), "ssh-authorized-keys-present") == {"/srv/keys/1000-%.pub"}


# -- cleartext services ---------------------------------------------------------------------------


def test_xinetd_disabled_and_enabled(tmp_path):
    spec = sample.base_system()
    spec.add("/etc/xinetd.d/telnet", "service telnet\n{\n  disable = yes\n  server = /usr/sbin/in.telnetd\n}\n")
    spec.add("/etc/xinetd.d/rsh", "service shell\n{\n  socket_type = stream\n  server = /usr/sbin/in.rshd\n}\n")
    result = scan(spec, tmp_path, ("cleartext-remote-services",))
    assert failing(result, "cleartext-remote-services") == {"/etc/xinetd.d/rsh"}


def test_ftp_server_refusing_cleartext_logins_is_not_reported(tmp_path):
    spec = sample.base_system().add("/usr/sbin/vsftpd", b"\x7fELF", 0o755)
    spec.symlink("/etc/systemd/system/multi-user.target.wants/vsftpd.service", "/lib/systemd/system/vsftpd.service")
    spec.add("/lib/systemd/system/vsftpd.service", "[Service]\nExecStart=/usr/sbin/vsftpd\n")
    plain = scan(spec, tmp_path, ("cleartext-remote-services",))
    assert failing(plain, "cleartext-remote-services") == {
        "/usr/sbin/vsftpd", "/etc/systemd/system/multi-user.target.wants/vsftpd.service"}
    spec.add("/etc/vsftpd.conf", "listen=YES\nssl_enable=YES\nrsa_cert_file=/etc/ssl/certs/ftp.pem\n")
    assert scan(spec, tmp_path, ("cleartext-remote-services",))["status"]["cleartext-remote-services"] == "pass"


def test_sysv_link_and_nis_server(tmp_path):
    spec = sample.base_system().add("/usr/sbin/ypserv", b"\x7fELF", 0o755)
    spec.symlink("/etc/rc2.d/S01tftpd-hpa", "../init.d/tftpd-hpa")
    result = scan(spec, tmp_path, ("cleartext-remote-services",))
    assert failing(result, "cleartext-remote-services") == {"/usr/sbin/ypserv", "/etc/rc2.d/S01tftpd-hpa"}


# -- trust files ----------------------------------------------------------------------------------


def test_netrc_evidence_never_shows_the_password(tmp_path):
    spec = sample.base_system()
    spec.add("/root/.netrc", "machine a.example login x password Hunter2-secret\ndefault login anonymous password me@x\n")
    spec.add("/etc/hosts.equiv", "buildhost.vendor.example\n")
    spec.add("/home/alice/.rhosts", "\n", owner=(1000, 1000))  # empty: trusts nobody
    result = scan(spec, tmp_path, ("rhosts-netrc-trust-files",))
    assert failing(result, "rhosts-netrc-trust-files") == {"/root/.netrc", "/etc/hosts.equiv"}
    evidence = result["evidence"][("rhosts-netrc-trust-files", "/root/.netrc")]
    assert "Hunter2" not in evidence and "a.example" in evidence and "2 password(s)" in evidence and "default" in evidence


# -- vendor access --------------------------------------------------------------------------------


def test_cron_tunnel_with_token_is_redacted_and_commented_lines_pass(tmp_path):
    spec = sample.base_system()
    spec.add("/etc/cron.d/support", "# @reboot root ssh -R 2222:localhost:22 x@y\n@reboot root ngrok tcp 22 --authtoken 2abcSECRETSECRET\n")
    result = scan(spec, tmp_path, ("vendor-remote-access",))
    assert failing(result, "vendor-remote-access") == {"/etc/cron.d/support"}
    evidence = result["evidence"][("vendor-remote-access", "/etc/cron.d/support")]
    assert "SECRET" not in evidence and "2abc****" in evidence


def test_openvpn_client_rsyslog_forwarding_zerotier(tmp_path):
    spec = sample.base_system()
    spec.add("/etc/openvpn/client/support.conf", "client\ndev tun\nremote vpn.vendor.example 1194\n")
    spec.add("/etc/openvpn/server.conf", "port 1194\ndev tun\nserver 10.8.0.0 255.255.255.0\n")
    spec.add("/etc/rsyslog.d/60-vendor.conf", "*.* @@logs.vendor.example:6514\n*.* @127.0.0.1:514\n")
    spec.add("/var/lib/zerotier-one/networks.d/8056c2e21c000001.conf", "nwid=8056c2e21c000001\n")
    spec.symlink("/etc/systemd/system/multi-user.target.wants/zerotier-one.service", "/lib/systemd/system/zerotier-one.service")
    result = scan(spec, tmp_path, ("vendor-remote-access",))
    assert failing(result, "vendor-remote-access") == {
        "/etc/openvpn/client/support.conf", "/etc/rsyslog.d/60-vendor.conf", "/var/lib/zerotier-one/networks.d/8056c2e21c000001.conf"}


def test_unit_mentioning_a_tunnel_only_in_its_description_passes(tmp_path):
    spec = sample.base_system()
    spec.add("/etc/systemd/system/app.service", "[Unit]\nDescription=replaces ssh -R tunnels\n[Service]\nExecStart=/opt/app/run\n")
    spec.symlink("/etc/systemd/system/multi-user.target.wants/app.service", "/etc/systemd/system/app.service")
    assert scan(spec, tmp_path, ("vendor-remote-access",))["status"]["vendor-remote-access"] == "pass"


def test_agent_enabled_by_name(tmp_path):
    spec = sample.base_system()
    spec.symlink("/etc/systemd/system/multi-user.target.wants/teamviewerd.service", "/opt/teamviewer/tv_bin/script/teamviewerd.service")
    result = scan(spec, tmp_path, ("vendor-remote-access",))
    assert failing(result, "vendor-remote-access") == {"/etc/systemd/system/multi-user.target.wants/teamviewerd.service"}


# -- parsers --------------------------------------------------------------------------------------


def test_parsers():
    assert [s.service for s in inetd_services("#<off># telnet stream tcp nowait root /x\n127.0.0.1:ftp stream tcp nowait root /usr/sbin/in.ftpd in.ftpd\n")] == ["ftp"]
    assert xinetd_services("defaults\n{\n disabled = tftp\n}\nservice tftp\n{\n server = /usr/sbin/in.tftpd\n}\n") == []
    assert tunnel_commands("ExecStart=/usr/bin/ssh -fNR 9000:localhost:22 a@b\n", exec_lines_only=True)[0][1] == "reverse SSH tunnel (-R)"
    assert tunnel_commands("ExecStart=/usr/bin/ssh -L 9000:localhost:22 a@b\n") == []
    assert tunnel_commands("tailscale up --authkey=tskey-auth-abc123\n")[0][2] == "tailscale up --authkey=tske****"
    assert openvpn_client("remote a.example 1194\n") is None  # no client directive
    assert openvpn_client("client\nremote a.example 1194 udp\n").remotes == ("a.example:1194",)
    assert syslog_forwards('action(type="omfwd" target="10.1.2.3" port="514")\n') == [(1, "10.1.2.3")]
    assert syslog_forwards('destination d_remote { network("logs.example" port(514)); };\n', syslog_ng=True) == [(1, "logs.example")]
    assert netrc_summary("machine a login b password c macdef init\ncd /\n").passwords == 1
    assert vsftpd_requires_tls("ssl_enable=YES\n") and not vsftpd_requires_tls("ssl_enable=YES\nforce_local_logins_ssl=NO\n")
    assert proftpd_requires_tls("TLSEngine on\nTLSRequired on\n") and not proftpd_requires_tls("TLSEngine on\n")
    assert pureftpd_requires_tls("2\n") and not pureftpd_requires_tls("1\n")


def test_include_of_a_missing_literal_path_is_ignored_like_sshd(tmp_path):
    spec = with_config("Include /etc/ssh/absent.conf\nInclude extra/*.conf\nPermitRootLogin yes\n")
    spec.add("/etc/ssh/extra/a.conf", "PermitRootLogin no\n")
    result = scan(spec, tmp_path, ("sshd-permit-root-login",))
    assert result["status"]["sshd-permit-root-login"] == "pass"
