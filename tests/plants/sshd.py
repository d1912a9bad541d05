"""SSH servers' effective configuration (sshd, and dropbear as embedded images start it), cleartext login services,
rsh/netrc trust files, vendor back channels."""

from __future__ import annotations

from certify import sample

CHECKS = (
    "sshd-permit-root-login",
    "sshd-password-authentication",
    "sshd-permit-empty-passwords",
    "sshd-hardening-baseline",
    "cleartext-remote-services",
    "rhosts-netrc-trust-files",
    "vendor-remote-access",
)

VENDOR_DROPIN = "/etc/ssh/sshd_config.d/10-vendor.conf"
SUPPORT_DROPIN = "/etc/ssh/sshd_config.d/20-support.conf"
TUNNEL_UNIT = "/etc/systemd/system/vendor-support-tunnel.service"
TUNNEL = """[Unit]
Description=Vendor support channel (ssh reverse tunnel)
After=network-online.target

[Service]
ExecStart=/usr/bin/autossh -M 0 -N -o ServerAliveInterval=30 -R 2222:localhost:22 support@bastion.vendor.example
Restart=always

[Install]
WantedBy=multi-user.target
"""
TELNET_INETD = "telnet\t\tstream\ttcp\tnowait\troot\t/usr/sbin/tcpd\t/usr/sbin/in.telnetd\n"
DROPBEAR_BINARY = b"\x7fELF\x02\x01\x01\0dropbear"
DROPBEAR_UCI = "/etc/config/dropbear"


def plant_dirty(spec: sample.GuestSpec) -> None:
    # Read before the main file's 'PasswordAuthentication no' (the Include is its first line): first value wins.
    spec.add(VENDOR_DROPIN, "# support build\nPasswordAuthentication yes\nPermitEmptyPasswords yes\n"
             "X11Forwarding yes\nMaxAuthTries 10\nPermitUserEnvironment yes\n")  # fmt: skip
    spec.add(SUPPORT_DROPIN, "Match Address 203.0.113.0/24\n    PermitRootLogin yes\n")
    spec.add("/etc/inetd.conf", "# /etc/inetd.conf\n" + TELNET_INETD)
    spec.add("/usr/sbin/in.telnetd", b"\x7fELF\x02\x01\x01\0telnetd", 0o755)
    spec.add("/lib/systemd/system/tftpd-hpa.service", "[Service]\nExecStart=/usr/sbin/in.tftpd --listen\n")
    spec.symlink("/etc/systemd/system/multi-user.target.wants/tftpd-hpa.service", "/lib/systemd/system/tftpd-hpa.service")
    spec.add("/root/.rhosts", "+ +\n", 0o600)
    spec.add("/home/alice/.netrc", "machine ftp.vendor.example login build password Vendor-Build-2024\n", 0o600, owner=(1000, 1000))
    spec.add(TUNNEL_UNIT, TUNNEL)
    spec.symlink("/etc/systemd/system/multi-user.target.wants/vendor-support-tunnel.service", TUNNEL_UNIT)
    # dropbear: OpenWrt's shipped section (passwords on, root's too), and a BusyBox inittab line with -B
    spec.add("/usr/sbin/dropbear", DROPBEAR_BINARY, 0o755)
    spec.add(DROPBEAR_UCI, "config dropbear 'main'\n\toption enable '1'\n\toption PasswordAuth 'on'\n"
             "\toption RootPasswordAuth 'on'\n\toption Port '22'\n")  # fmt: skip
    spec.add("/etc/inittab", "::sysinit:/etc/init.d/rcS\n::respawn:/usr/sbin/dropbear -F -B -T 20 -p 2222\n")


def plant_clean(spec: sample.GuestSpec) -> None:
    # Safe drop-ins: an sftp-only Match that ends with 'Match all', root keys only from the admin network.
    spec.add("/etc/ssh/sshd_config.d/50-cloud.conf", "PasswordAuthentication no\nMatch User backup\n"
             "    ForceCommand internal-sftp\n    PasswordAuthentication no\nMatch all\nMaxAuthTries 4\n")  # fmt: skip
    spec.add("/etc/ssh/sshd_config.d/60-admin.conf", "Match Address 10.0.0.0/8\n    PermitRootLogin prohibit-password\n")
    spec.add("/etc/inetd.conf", "# /etc/inetd.conf\n#<off># " + TELNET_INETD)
    # A unit masked to /dev/null is never started, even with an enablement link left behind.
    spec.symlink("/etc/systemd/system/tftpd-hpa.service", "/dev/null")
    spec.symlink("/etc/systemd/system/multi-user.target.wants/tftpd-hpa.service", "/lib/systemd/system/tftpd-hpa.service")
    spec.add("/lib/systemd/system/tftpd-hpa.service", "[Service]\nExecStart=/usr/sbin/in.tftpd --listen\n")
    spec.symlink("/root/.rhosts", "/dev/null")
    spec.add(TUNNEL_UNIT, TUNNEL)  # shipped disabled: a customer enables it to open a support session
    spec.add("/usr/sbin/dropbear", DROPBEAR_BINARY, 0o755)
    spec.add(DROPBEAR_UCI, "config dropbear\n\toption PasswordAuth 'off'\n\toption RootPasswordAuth 'off'\n\toption Port '22'\n")


DIRTY = {
    ("sshd-password-authentication", VENDOR_DROPIN, "high"),
    ("sshd-permit-empty-passwords", VENDOR_DROPIN, "high"),
    ("sshd-hardening-baseline", VENDOR_DROPIN, "low"),
    ("sshd-permit-root-login", SUPPORT_DROPIN, "high"),
    ("sshd-permit-root-login", DROPBEAR_UCI, "high"),
    ("sshd-permit-root-login", "/etc/inittab", "high"),
    ("sshd-password-authentication", DROPBEAR_UCI, "high"),
    ("sshd-password-authentication", "/etc/inittab", "high"),
    ("sshd-permit-empty-passwords", "/etc/inittab", "high"),
    ("sshd-hardening-baseline", "/etc/inittab", "low"),
    ("cleartext-remote-services", "/etc/inetd.conf", "high"),
    ("cleartext-remote-services", "/usr/sbin/in.telnetd", "high"),
    ("cleartext-remote-services", "/etc/systemd/system/multi-user.target.wants/tftpd-hpa.service", "high"),
    ("rhosts-netrc-trust-files", "/root/.rhosts", "high"),
    ("rhosts-netrc-trust-files", "/home/alice/.netrc", "high"),
    ("vendor-remote-access", TUNNEL_UNIT, "medium"),
}
