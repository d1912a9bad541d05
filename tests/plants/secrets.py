"""Secrets in files: keys, tokens, passwords, histories, logs, installer and cloud-init leftovers.

Every secret here is fake but valid for its rule's format (an AWS key id is
AKIA + 16 upper-case characters...), so the rules fire without any real
credential in the repository.
"""

from __future__ import annotations

import datetime

from certify import sample
from certify.guest.parsers import vncpasswd

CHECKS = (
    "ssh-user-private-keys",
    "private-key-material",
    "cloud-provider-credentials",
    "dev-saas-registry-tokens",
    "hardcoded-app-secrets",
    "cloud-init-seeded-secrets",
    "installer-answer-files",
    "vnc-password-file",
    "shell-history-present",
    "log-files-present",
)

FAKE_AWS_KEY_ID = "AKIA" + "ZZPLANTFAKEKEY42"
FAKE_AWS_SECRET = "FakePlantedSecretKey/0123456789abcdefABC"
FAKE_AWS_SECRET_2 = "AnotherFakeSecretKey+0123456789ABCDEFabc"
FAKE_GITHUB_PAT = "ghp_" + "FakePlantedToken0123456789abcdefghij"
FAKE_GITLAB_PAT = "glpat-" + "FakePlantedToken0123"
FAKE_DB_PASSWORD = "Pl4nted-Passw0rd"
assert len(FAKE_AWS_KEY_ID) == 20 and len(FAKE_AWS_SECRET) == 40 == len(FAKE_AWS_SECRET_2) and len(FAKE_GITHUB_PAT) == 40

ALICE, BOB = (1000, 1000), (1001, 1001)


def ec_private_key_pem(traditional: bool = False) -> bytes:
    """A TLS-style EC key: PKCS#8 (BEGIN PRIVATE KEY) or OpenSSL's traditional form (BEGIN EC PRIVATE KEY)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    form = serialization.PrivateFormat.TraditionalOpenSSL if traditional else serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())


def self_signed_certificate(common_name: str) -> bytes:
    """A public certificate: what an appliance may ship (its key is made at first boot)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=3650))
            .sign(key, hashes.SHA256()))  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM)


def plant_dirty(spec: sample.GuestSpec) -> None:
    spec.mkdir("/root/.aws", 0o700)
    spec.add("/root/.aws/credentials", f"[default]\naws_access_key_id = {FAKE_AWS_KEY_ID}\n"
             f"aws_secret_access_key = {FAKE_AWS_SECRET}\n", 0o600)  # fmt: skip
    spec.add("/home/alice/.git-credentials", f"https://alice:{FAKE_GITHUB_PAT}@github.com\n", 0o600, owner=ALICE)
    spec.add("/opt/app/config/app.env", f"APP_ENV=production\nDB_USER=app\nDB_PASSWORD={FAKE_DB_PASSWORD}\n"
             f"DATABASE_URL=postgres://app:{FAKE_DB_PASSWORD}@db.internal:5432/app\n", 0o640)  # fmt: skip
    spec.add("/usr/share/vendorapp/certs/server.key", ec_private_key_pem(), 0o640)
    spec.add("/usr/share/vendorapp/certs/server.crt", self_signed_certificate("vendorapp.local"))
    spec.add("/usr/share/vendorapp/keys/signing", ec_private_key_pem(traditional=True), 0o600)
    private, public = sample.ed25519_keypair("bob@vendor-laptop")
    spec.dirs.setdefault("/home/bob/.ssh", 0o700)  # the permissions topic may have planted a bad mode here: keep it
    spec.add("/home/bob/.ssh/id_ed25519", private, 0o600, owner=BOB)
    spec.add("/home/bob/.ssh/id_ed25519.pub", public + "\n", 0o644, owner=BOB)
    spec.add("/etc/cloud/cloud.cfg.d/90-vendor.cfg", "#cloud-config\nchpasswd:\n  expire: false\n  list: |\n"
             "    root:Vendor-Root-2024\n    debian:Vendor-User-2024\n")  # fmt: skip
    spec.add("/root/anaconda-ks.cfg", "#version=RHEL9\nlang en_US.UTF-8\nkeyboard us\n"
             "rootpw --plaintext Vendor-Root-2024\nuser --name=admin --groups=wheel\n", 0o600)  # fmt: skip
    spec.mkdir("/root/.vnc", 0o700)
    spec.add("/root/.vnc/passwd", vncpasswd.encode("password"), 0o600)
    spec.add("/root/.bash_history", f"apt-get update\nexport AWS_SECRET_ACCESS_KEY={FAKE_AWS_SECRET_2}\n"
             "aws s3 ls\nhistory -c\n", 0o600)  # fmt: skip
    spec.add("/var/log/app.log", f"2024-05-01T10:00:00Z INFO started\n2024-05-01T10:00:01Z DEBUG using gitlab token "
             f"{FAKE_GITLAB_PAT}\n", 0o640)  # fmt: skip
    spec.add("/var/log/syslog", "May  1 10:00:00 vendor-build-42 systemd[1]: Started Daily apt upgrade.\n", 0o640)


def plant_clean(spec: sample.GuestSpec) -> None:
    spec.symlink("/root/.bash_history", "/dev/null")
    spec.add("/home/alice/.bash_history", "", 0o600, owner=ALICE)
    for log in ("/var/log/wtmp", "/var/log/btmp", "/var/log/lastlog", "/var/log/syslog", "/var/log/auth.log"):
        spec.add(log, "", 0o640)
    spec.mkdir("/var/log/journal", 0o2755)
    spec.add("/opt/app/config/app.env", "APP_ENV=production\nDB_USER=app\nDB_PASSWORD=${DB_PASSWORD}\n"
             "DATABASE_URL=postgres://app:${DB_PASSWORD}@db.internal:5432/app\nSECRET_KEY=<generated at first boot>\n", 0o640)  # fmt: skip
    spec.add("/usr/share/vendorapp/certs/server.crt", self_signed_certificate("vendorapp.local"))
    spec.mkdir("/usr/share/vendorapp/keys")
    _, public = sample.ed25519_keypair("bob@vendor-laptop")
    spec.mkdir("/home/bob/.ssh", 0o700, owner=BOB)
    spec.add("/home/bob/.ssh/id_ed25519.pub", public + "\n", 0o644, owner=BOB)
    spec.add("/etc/cloud/cloud.cfg", "users:\n  - default\ndisable_root: true\nssh_pwauth: false\n"
             "preserve_hostname: false\nsystem_info:\n  default_user:\n    name: debian\n    lock_passwd: True\n"
             "    shell: /bin/bash\n")  # fmt: skip
    spec.mkdir("/etc/cloud/cloud.cfg.d")
    spec.mkdir("/etc/ssl/private", 0o710)
    spec.add("/root/.npmrc", "registry=https://registry.npmjs.org/\n//registry.npmjs.org/:_authToken=${NPM_TOKEN}\n", 0o600)
    spec.add("/home/alice/.docker/config.json", '{\n  "credsStore": "pass"\n}\n', 0o600, owner=ALICE)
    spec.add("/etc/vnc.conf", "# $vncUserDir = \"$ENV{HOME}/.vnc\";\n# $vncPasswdFile = $vncUserDir . \"/passwd\";\n")
    # stock Debian files that mention passwords without holding one
    spec.add("/etc/nsswitch.conf", "passwd:         files systemd\ngroup:          files systemd\nshadow:         files\n")
    spec.add("/etc/pam.d/common-password", "password\t[success=1 default=ignore]\tpam_unix.so obscure yescrypt\n"
             "password\trequisite\t\t\tpam_deny.so\n")  # fmt: skip
    spec.add("/etc/ssl/openssl.cnf", "[ req_attributes ]\nchallengePassword\t\t= A challenge password\n"
             "challengePassword_min\t\t= 4\n# input_password = secret\n# output_password = secret\n")  # fmt: skip
    spec.add("/etc/security/pwquality.conf", "# minlen = 8\n# dictcheck = 1\n")


DIRTY = {
    ("cloud-provider-credentials", "/root/.aws/credentials", "critical"),
    ("dev-saas-registry-tokens", "/home/alice/.git-credentials", "high"),
    ("hardcoded-app-secrets", "/opt/app/config/app.env", "high"),
    ("private-key-material", "/usr/share/vendorapp/certs/server.key", "high"),
    ("private-key-material", "/usr/share/vendorapp/keys/signing", "high"),
    ("ssh-user-private-keys", "/home/bob/.ssh/id_ed25519", "critical"),
    ("cloud-init-seeded-secrets", "/etc/cloud/cloud.cfg.d/90-vendor.cfg", "high"),
    ("installer-answer-files", "/root/anaconda-ks.cfg", "high"),
    ("vnc-password-file", "/root/.vnc/passwd", "critical"),
    ("shell-history-present", "/root/.bash_history", "critical"),
    ("log-files-present", "/var/log/app.log", "high"),
    ("log-files-present", "/var/log/syslog", "medium"),
}
