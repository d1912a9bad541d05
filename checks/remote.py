"""Checks on remote access besides sshd: cleartext login services, rsh/netrc trust files, vendor back channels."""

from __future__ import annotations

from certify.checkdef import check
from certify.guest.collectors.remote import RemoteFinding
from certify.model import Layer, Location, Severity, fail
from certify.plugins.hookspecs import hookimpl


def _fail(found: RemoteFinding):
    return fail(Location(layer=Layer.GUEST, file=found.disk, path=found.path, key=found.key, line=found.line), found.evidence)


@check(
    id="cleartext-remote-services",
    severity=Severity.HIGH,
    layer=Layer.GUEST,
    title="A server that takes logins in clear text is installed or enabled",
    remediation=(
        "Remove the telnet, rsh/rlogin/rexec, TFTP, FTP and NIS server packages (telnetd, rsh-server, tftpd-hpa, "
        "vsftpd, proftpd, ypserv...) and their inetd/xinetd entries and systemd units. Use SSH (sftp/scp) "
        "instead. An FTP server whose configuration refuses cleartext logins (vsftpd ssl_enable=YES with "
        "force_local_logins_ssl, ProFTPD TLSRequired, Pure-FTPd TLS 2 or 3) is not reported."
    ),
    references=(
        "AWS public AMI hardening: disable services that authenticate users in clear text (Telnet, FTP)",
        "CIS Benchmark (ComplianceAsCode rules package_telnet-server_removed, package_rsh-server_removed, "
        "package_tftp-server_removed, package_vsftpd_removed, package_ypserv_removed)",
        "Lynis INSE-8000..8322",
    ),
)
def cleartext_remote_services(cleartext_services: list[RemoteFinding]):
    """Server binaries in the system bin directories, active inetd.conf/xinetd.d entries, enabled systemd units and SysV links."""
    for found in cleartext_services:
        yield _fail(found)


@check(
    id="rhosts-netrc-trust-files",
    severity=Severity.HIGH,
    layer=Layer.GUEST,
    title="rsh trust files or a .netrc with stored credentials ship in the image",
    remediation=(
        "Delete ~/.rhosts, ~/.shosts, /etc/hosts.equiv and /etc/shosts.equiv (host-based trust lets another "
        "machine vouch for a user without a password), and every ~/.netrc (it stores FTP and HTTP passwords "
        "in clear text, for the vendor's own hosts). Revoke the passwords a .netrc held."
    ),
    references=(
        "CIS Benchmark (ComplianceAsCode rules no_rsh_trust_files, no_netrc_files)",
        "Lynis INSE-8302; Lynis default.prf permfile entries for /root/.rhosts and /etc/hosts.equiv",
    ),
)
def rhosts_netrc_trust_files(trust_files: list[RemoteFinding]):
    """Non-empty .rhosts/.shosts/.netrc in /root and every home in /etc/passwd, and the system-wide equiv files."""
    for found in trust_files:
        yield _fail(found)


@check(
    id="vendor-remote-access",
    severity=Severity.MEDIUM,
    layer=Layer.GUEST,
    title="A vendor back channel is enabled at boot",
    remediation=(
        "Ship remote-support agents, tunnels and dial-out VPNs disabled: no enabled TeamViewer/AnyDesk/RustDesk, "
        "ngrok, frpc, VNC or OpenVPN client units, no reverse SSH tunnels (ssh/autossh -R) in units, cron or "
        "rc.local, no ZeroTier network or Tailscale node enrolled at build time, no log forwarding to a fixed "
        "host. Document how a customer opts in instead."
    ),
    references=(
        "AWS Marketplace AMI policy: the seller must not have access to the customer's running instances; "
        "any accessibility built into the AMI must be off by default",
        "AWS shared AMI guide: delete preconfigured remote logging, verify cron jobs",
        "Lynis LOGG-2152/2153",
    ),
)
def vendor_remote_access(vendor_access: list[RemoteFinding]):
    """Enabled agent units (by name, or whose Exec line opens a tunnel), tunnel commands in cron and rc.local,
    OpenVPN client configurations with a remote, enrolled ZeroTier/Tailscale state, rsyslog/syslog-ng forwarding."""
    for found in vendor_access:
        yield _fail(found)


@hookimpl
def certify_checks():
    return [cleartext_remote_services, rhosts_netrc_trust_files, vendor_remote_access]
