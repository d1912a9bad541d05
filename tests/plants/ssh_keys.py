"""SSH host keys and authorized_keys, of OpenSSH and of the servers embedded images run instead.

Dirty: OpenSSH's ed25519 host key and root's vendor key; dropbear's host
key in its binary format and OpenWrt's root key file
/etc/dropbear/authorized_keys; a tinysshd key directory; keys named by an
sshd HostKey, a libssh server's HostKey and Gitea's app.ini; a Go server's
key found by its name. The HostKey and libssh keys sit in /etc, where the
content scan reads every file: private-key-material must leave them to
ssh-host-keys-present.

Clean: key directories left empty for first boot, an /etc/dropbear/authorized_keys
holding only a comment.
"""

from __future__ import annotations

from certify import sample

CHECKS = ("ssh-host-keys-present", "ssh-authorized-keys-present")

DROPBEAR_KEY = "/etc/dropbear/dropbear_ed25519_host_key"
TINYSSH_KEY = "/etc/tinyssh/sshkeydir/.ed25519.sk"
HOSTKEY_DROPIN = "/etc/ssh/sshd_config.d/30-keys.conf"
CONFIGURED_KEY = "/etc/ssh/keys/appliance-ecdsa.pem"
LIBSSH_KEY = "/etc/netconf/server.key"
GITEA_KEY = "/var/lib/gitea/data/ssh/gitea.rsa"
NAMED_KEY = "/opt/gitserver/ssh/soft_serve_host_ed25519"


def _pem_ecdsa() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())


def plant_dirty(spec: sample.GuestSpec) -> None:
    private, public = sample.ed25519_keypair("root@vendor-build-42")
    spec.add("/etc/ssh/ssh_host_ed25519_key", private, 0o600)
    spec.add("/etc/ssh/ssh_host_ed25519_key.pub", public + "\n")
    _, vendor = sample.ed25519_keypair("packer@vendor-ci")
    spec.add("/root/.ssh/authorized_keys", vendor + "\n", 0o600)
    spec.mkdir("/root/.ssh", 0o700)
    # dropbear: a host key in its own format, and root's keys where OpenWrt's dropbear reads them
    spec.add(DROPBEAR_KEY, sample.dropbear_keypair("ssh-ed25519")[0], 0o600)
    _, support = sample.ed25519_keypair("support@vendor")
    spec.add("/etc/dropbear/authorized_keys", support + "\n", 0o600)
    # tinysshd-makekey's directory, generated at build time
    secret, public_raw, _ = sample.tinyssh_keypair()
    spec.add(TINYSSH_KEY, secret, 0o600)
    spec.add("/etc/tinyssh/sshkeydir/ed25519.pk", public_raw, 0o644)
    # keys a configuration names: sshd's HostKey, a libssh (netconf) server's, Gitea's built-in server's
    spec.add(HOSTKEY_DROPIN, f"HostKey /etc/ssh/ssh_host_ed25519_key\nHostKey {CONFIGURED_KEY}\n")
    spec.add(CONFIGURED_KEY, _pem_ecdsa(), 0o600)
    spec.add("/etc/ssh/libssh_server_config", f"# netopeer2\nHostKey {LIBSSH_KEY}\n")
    spec.add(LIBSSH_KEY, sample.rsa_pem_private_key(), 0o600)
    spec.add("/etc/gitea/app.ini", "APP_NAME = Git\n[server]\nAPP_DATA_PATH = /var/lib/gitea/data\nSTART_SSH_SERVER = true\n")
    spec.add(GITEA_KEY, sample.rsa_pem_private_key(), 0o600)
    # a Go SSH server's key, found by its name
    spec.add(NAMED_KEY, sample.ed25519_keypair("soft-serve")[0], 0o600)


def plant_clean(spec: sample.GuestSpec) -> None:
    spec.mkdir("/root/.ssh", 0o700)
    spec.mkdir("/home/alice/.ssh", 0o700, owner=(1000, 1000))
    spec.add("/home/alice/.ssh/authorized_keys", "# keys are added at first boot by cloud-init\n", 0o600, owner=(1000, 1000))
    spec.mkdir("/etc/dropbear", 0o700)  # dropbear -R / OpenWrt's init script generate the keys at first boot
    spec.add("/etc/dropbear/authorized_keys", "# provisioned at first boot\n", 0o600)
    spec.mkdir("/etc/tinyssh/sshkeydir", 0o755)
    spec.add("/etc/gitea/app.ini", "[server]\nAPP_DATA_PATH = /var/lib/gitea/data\nSTART_SSH_SERVER = true\n")
    spec.mkdir("/var/lib/gitea/data/ssh", 0o700)  # Gitea makes ssh/gitea.rsa at first start


DIRTY = {
    ("ssh-host-keys-present", "/etc/ssh/ssh_host_ed25519_key", "high"),
    ("ssh-host-keys-present", DROPBEAR_KEY, "high"),
    ("ssh-host-keys-present", TINYSSH_KEY, "high"),
    ("ssh-host-keys-present", CONFIGURED_KEY, "high"),
    ("ssh-host-keys-present", LIBSSH_KEY, "high"),
    ("ssh-host-keys-present", GITEA_KEY, "high"),
    ("ssh-host-keys-present", NAMED_KEY, "high"),
    ("ssh-authorized-keys-present", "/root/.ssh/authorized_keys", "critical"),
    ("ssh-authorized-keys-present", "/etc/dropbear/authorized_keys", "critical"),
}
