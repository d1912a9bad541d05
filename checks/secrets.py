"""Checks on keys, tokens and passwords left in the guest's files (the content scan).

One secret is reported once. The split between checks:

- by rule category: private keys in a home (/root, /home/*, a dot path of a
  passwd home) -> ssh-user-private-keys, elsewhere -> private-key-material;
  cloud rules -> cloud-provider-credentials; developer-service rules ->
  dev-saas-registry-tokens; generic passwords, secrets, DSNs and JWTs ->
  hardcoded-app-secrets, except in a well-known cloud or registry credential
  file (~/.aws/credentials, ~/.pypirc...), which goes to that file's check;
- shell histories and logs are reported only by shell-history-present and
  log-files-present, which raise their severity when a rule matches; VNC
  password files only by vnc-password-file;
- cloud-init files and installer answer files: their passwords are reported
  by cloud-init-seeded-secrets and installer-answer-files, keys and tokens in
  them by the content checks above.
"""

from __future__ import annotations

import fnmatch
import inspect
import posixpath
from collections.abc import Iterator

from certify.checkdef import check
from certify.guest.collectors import content
from certify.guest.collectors.content import ContentScan, ScannedFile
from certify.guest.parsers import answerfiles, secrets
from certify.model import Layer, Location, Result, Severity, fail, not_evaluated
from certify.plugins.hookspecs import hookimpl

SSH_USER = "ssh-user-private-keys"
PRIVATE_KEY_MATERIAL = "private-key-material"
CLOUD = "cloud-provider-credentials"
DEV_SAAS = "dev-saas-registry-tokens"
APP_SECRETS = "hardcoded-app-secrets"
SHOWN_MATCHES = 5
SNAKEOIL = "/etc/ssl/private/ssl-cert-snakeoil.key"
# Distribution files whose "secrets" are not the vendor's (listed in the check's description)
STOCK_FILES = {
    "/etc/nsswitch.conf": "'passwd:' names a database, not a password",
    "/etc/chromium.d/apikeys": "Debian's Chromium API keys, public in its source package",
}
# Names whose "passwd:" lines name a database wherever the file lies (/usr/share/libc-bin keeps Debian's template)
STOCK_NAMES = {"nsswitch.conf"}
TRIVY = "Trivy secret scanner built-in rule ids (pkg/fanal/secret/builtin-rules.go)"


def _reads(fn):
    """Append what the content scan reads to a check's description (the @check below takes it from __doc__)."""
    fn.__doc__ = inspect.cleandoc(fn.__doc__ or "") + "\n\nWhat is read: " + content.WHAT_IS_READ
    return fn


def owner(f: ScannedFile, m: secrets.SecretMatch) -> str | None:
    """The check that reports match ``m`` in file ``f`` (None: another check of this topic owns the file)."""
    if f.role in (content.HISTORY, content.LOG, content.VNC):
        return None
    if m.category == secrets.PRIVATE_KEY:
        return SSH_USER if f.personal else PRIVATE_KEY_MATERIAL
    if m.category == secrets.CLOUD:
        return CLOUD
    if m.category == secrets.DEV_SAAS:
        return DEV_SAAS
    if f.role == content.CLOUD_FILE:
        return CLOUD
    if f.role == content.DEV_SAAS_FILE:
        return DEV_SAAS
    if f.role in (content.CLOUD_INIT, content.INSTALLER):
        return None
    return APP_SECRETS


def describe_matches(path: str, matches: list[secrets.SecretMatch] | tuple[secrets.SecretMatch, ...], more: bool = False) -> str:
    shown = "; ".join(m.describe(path) for m in matches[:SHOWN_MATCHES])
    if len(matches) > SHOWN_MATCHES:
        shown += f"; and {len(matches) - SHOWN_MATCHES} more"
    if more:
        shown += " (match limit reached: more not listed)"
    return shown


def _owned(scan: ContentScan, check_id: str) -> Iterator[tuple[ScannedFile, list[secrets.SecretMatch]]]:
    for path in sorted(scan.files):
        f = scan.files[path]
        mine = [m for m in f.matches if owner(f, m) == check_id]
        if mine:
            yield f, mine


def _location(path: str, disk: str | None, line: int | None = None) -> Location:
    return Location(layer=Layer.GUEST, file=disk, path=path, line=line)


def _coverage_gap(scan: ContentScan) -> Iterator[Result]:
    """Files the scan had to leave out make a pass unprovable: say so instead of passing."""
    cov = scan.coverage
    if cov.over_budget:
        examples = ", ".join(cov.examples_skipped[:5])
        yield not_evaluated(f"content scan read budget exhausted: {cov.describe()} (e.g. {examples})", Layer.GUEST)


@check(
    id=SSH_USER,
    severity=Severity.CRITICAL,
    layer=Layer.GUEST,
    title="User private keys left in home directories",
    remediation=(
        "Delete every private key from /root and the homes (~/.ssh/id_* and any other file holding a "
        "PRIVATE KEY block) before exporting the appliance, and revoke them wherever their public halves "
        "are trusted: anyone with the image has them. Never build images with personal keys."
    ),
    references=(
        "AWS Marketplace AMI policy: AMIs must not contain key pairs",
        "AWS EC2 user guide (shared AMIs): exclude user-owned SSH key pairs",
        f"{TRIVY}: private-key",
        "virt-sysprep operation ssh-userdir",
    ),
)
@_reads
def ssh_user_private_keys(content_scan: ContentScan):
    """~/.ssh/id_* (private halves, not .pub) and any file in /root, /home/* or a dot path of another
    /etc/passwd home that holds a private key block. Evidence gives the key type and fingerprint when the
    public half is derivable (OpenSSH format, unencrypted PEM), never key material."""
    reported = set()
    for f, matches in _owned(content_scan, SSH_USER):
        reported.add(f.path)
        what = f.key_fingerprint + " private key" if f.key_fingerprint else "private key (fingerprint unavailable: encrypted or not parsed)"
        blocks = ", ".join(f"{m.redacted} at line {m.line}" for m in matches[:SHOWN_MATCHES])
        yield fail(_location(f.path, f.disk, matches[0].line), f"{what}: {blocks}")
    for path in sorted(content_scan.files):
        f = content_scan.files[path]
        name = posixpath.basename(path)
        in_ssh_dir = posixpath.basename(posixpath.dirname(path)) == ".ssh"
        if f.personal and in_ssh_dir and name.startswith("id_") and not name.endswith(".pub") and f.size and path not in reported:
            if f.key_fingerprint:  # no PEM block, yet a key: dropbear's binary format (dbclient's ~/.ssh/id_dropbear)
                yield fail(_location(path, f.disk), f"{name}: {f.key_fingerprint} private key in dropbear's format")
            else:
                yield fail(_location(path, f.disk), f"{name}: {f.size} bytes, no private key block recognised (unknown or binary format)")
    yield from _coverage_gap(content_scan)


@check(
    id=PRIVATE_KEY_MATERIAL,
    severity=Severity.HIGH,
    layer=Layer.GUEST,
    title="Private keys (TLS, PGP, PuTTY, OpenSSH) baked into the image",
    remediation=(
        "Generate per-instance keys at first boot (for Debian's snakeoil key: make-ssl-cert "
        "generate-default-snakeoil --force-overwrite from a first-boot unit) and ship only public "
        "certificates. A key baked into the image is shared by every clone: whoever has one copy can "
        "impersonate or decrypt them all."
    ),
    references=(
        f"{TRIVY}: private-key, age-secret-key",
        "virt-sysprep operation ca-certificates (/etc/pki/tls/private/*.key...)",
        "AWS Marketplace checklist: no hardcoded private keys",
    ),
)
@_reads
def private_key_material(content_scan: ContentScan):
    """TLS/PGP/PuTTY/OpenSSH/age private keys outside the homes: /etc, /opt, /srv, /var/www, /usr/local,
    /usr/share/<app>, /var/lib/cloud, /tmp. Keys in homes are ssh-user-private-keys'; the SSH host keys
    /etc/ssh/ssh_host_* are ssh-host-keys-present's. A key generated at package install (Debian's
    /etc/ssl/private/ssl-cert-snakeoil.key) still fails: every clone of the image shares it."""
    for f, matches in _owned(content_scan, PRIVATE_KEY_MATERIAL):
        if fnmatch.fnmatchcase(f.path, "/etc/ssh/ssh_host_*"):
            continue
        what = f"{f.key_fingerprint} private key: " if f.key_fingerprint else ""
        evidence = what + describe_matches(f.path, matches)
        if f.path == SNAKEOIL:
            evidence += " (Debian's snakeoil key, generated when ssl-cert was installed: shared by every clone)"
        yield fail(_location(f.path, f.disk, matches[0].line), evidence)
    yield from _coverage_gap(content_scan)


@check(
    id=CLOUD,
    severity=Severity.CRITICAL,
    layer=Layer.GUEST,
    title="Cloud provider credentials (AWS, GCP, Azure) in the image",
    remediation=(
        "Revoke the credentials at the provider, then remove them (~/.aws, ~/.config/gcloud, ~/.azure and "
        "any file they were copied to). Appliances must use instance roles or workload identity, never "
        "stored keys."
    ),
    references=(
        "AWS Marketplace AMI policy: no access or secret keys; no credentials for any reason",
        f"{TRIVY}: aws-access-key-id, aws-secret-access-key, gcp-service-account",
    ),
)
@_reads
def cloud_provider_credentials(content_scan: ContentScan):
    """The cloud CLIs' credential stores in every home (~/.aws/credentials; ~/.config/gcloud/credentials.db,
    access_tokens.db, application_default_credentials.json, legacy_credentials/; ~/.azure/accessTokens.json,
    msal_token_cache.*, service_principal_entries.*) when non-empty, and AWS/GCP/Azure key formats found
    by content anywhere the scan reads (histories and logs excepted: their own checks report them)."""
    found = {f.path: (f, matches) for f, matches in _owned(content_scan, CLOUD)}
    for path in sorted(set(found) | set(content_scan.cloud_files)):
        f = content_scan.files.get(path)
        if path in found:
            _, matches = found[path]
            yield fail(_location(path, f.disk if f else None, matches[0].line), describe_matches(path, matches))
        else:
            size = f.size if f else 0
            yield fail(_location(path, f.disk if f else None), f"cloud CLI credential store ({size} bytes" + (", binary)" if f and f.binary else ")"))
    yield from _coverage_gap(content_scan)


@check(
    id=DEV_SAAS,
    severity=Severity.HIGH,
    layer=Layer.GUEST,
    title="Source-hosting, registry and SaaS tokens in the image",
    remediation=(
        "Revoke each token at its issuer (GitHub, GitLab, npm, PyPI, the container registry, Slack, "
        "Stripe), then delete the files (~/.git-credentials, ~/.npmrc, ~/.pypirc, ~/.docker/config.json...). "
        "Build pipelines should inject such tokens at build time and never write them into the image."
    ),
    references=(
        f"{TRIVY}: github-pat, github-oauth, github-app-token, github-fine-grained-pat, gitlab-pat, "
        "npm-access-token, pypi-upload-token, dockerconfig-secret, slack-access-token, slack-web-hook, stripe-secret-token",
        "AWS Marketplace checklist: no hardcoded secrets or credentials",
    ),
)
@_reads
def dev_saas_registry_tokens(content_scan: ContentScan):
    """Token formats of GitHub, GitLab, npm, PyPI, Slack and Stripe anywhere the scan reads, container
    registry auths in docker config.json, and the credential files of every home when they hold one:
    ~/.git-credentials (any credential line), ~/.npmrc (_authToken/_auth/_password), ~/.pypirc
    (password), ~/.docker/config.json (auths), ~/.config/gh/hosts.yml, ~/.gem/credentials, ~/.cargo/credentials."""
    reported = set()
    for f, matches in _owned(content_scan, DEV_SAAS):
        reported.add(f.path)
        yield fail(_location(f.path, f.disk, matches[0].line), describe_matches(f.path, matches, f.more_matches))
    for path in sorted(content_scan.files):
        f = content_scan.files[path]
        if f.role == content.DEV_SAAS_FILE and posixpath.basename(path) == ".git-credentials" and f.lines and path not in reported:
            yield fail(_location(path, f.disk), f"git credential store with {f.lines} line(s) (no token format recognised)")
    yield from _coverage_gap(content_scan)


@check(
    id=APP_SECRETS,
    severity=Severity.HIGH,
    layer=Layer.GUEST,
    title="Hardcoded passwords, secrets and database URLs in configuration",
    remediation=(
        "Generate service passwords and application secrets at first boot (random, stored 0600 root) "
        "or take them from the deployment's metadata; reference them from configuration as variables "
        "(${DB_PASSWORD}). A value baked into the image is the same on every instance and known to "
        "everyone who has the image."
    ),
    references=(
        "AWS Marketplace checklist: no hardcoded secrets, default passwords for system users and services, credentials",
        f"{TRIVY}: jwt-token (and custom generic rules)",
        "Azure Marketplace FAQ: default credentials",
    ),
)
@_reads
def hardcoded_app_secrets(content_scan: ContentScan):
    """Assignments of a password, secret, token or API key with a real-looking value (placeholders are
    skipped: empty, ${VAR}, $VAR, <...>, {{...}}, %(...)s, xxx, ***, expressions; comment lines are
    skipped; a generic secret needs 8+ characters of two classes, a password 4+), database URLs with an
    inline password (postgres://user:pass@host), other URLs with inline credentials, and JWTs, in
    configuration and application files (/etc, /opt, /srv, /var/www, /usr/local, /usr/share/<app>,
    .env files, homes). Not reported: nsswitch.conf anywhere ('passwd:' names a database) and
    /etc/chromium.d/apikeys (Debian's Chromium API keys, public in its source package)."""
    for f, matches in _owned(content_scan, APP_SECRETS):
        if f.path in STOCK_FILES or posixpath.basename(f.path) in STOCK_NAMES:
            continue
        yield fail(_location(f.path, f.disk, matches[0].line), describe_matches(f.path, matches, f.more_matches))
    yield from _coverage_gap(content_scan)


@check(
    id="cloud-init-seeded-secrets",
    severity=Severity.HIGH,
    layer=Layer.GUEST,
    title="Passwords or keys baked into cloud-init configuration or cached user-data",
    remediation=(
        "Remove passwords, chpasswd lists, ssh_pwauth: true and ssh_authorized_keys from /etc/cloud/cloud.cfg "
        "and cloud.cfg.d, and run 'cloud-init clean --logs --seed' before exporting so no cached "
        "user-data (/var/lib/cloud) ships. Users and keys must come from the deploying cloud's metadata."
    ),
    references=(
        "canonical/cloud-init cc_set_passwords (password, chpasswd, ssh_pwauth) and users-groups",
        "scylladb/scylla-machine-image PR #934: cloud-init injected the build key, the AWS scan rejected the AMI",
        "oci-image-cleanup: purges /var/lib/cloud",
    ),
)
def cloud_init_seeded_secrets(content_scan: ContentScan):
    """/etc/cloud/cloud.cfg, /etc/cloud/cloud.cfg.d/*, /var/lib/cloud/instances/*/ (user-data.txt[.i],
    vendor-data*.txt[.i], cloud-config.txt) and every file under /var/lib/cloud/seed: a 'password:',
    chpasswd entries with a fixed (not RANDOM) password, 'ssh_pwauth: true', baked ssh_authorized_keys,
    and users' plain_text_passwd/hashed_passwd/passwd. YAML is parsed with yaml.safe_load (at most 256
    KiB, a node budget against alias bombs); user-data that is not YAML is matched by lines. Values are
    never shown. Keys and tokens in these files are the content checks'."""
    for f in content_scan.cloud_init:
        line = next((i.line for i in f.issues if i.line), None)
        yield fail(_location(f.path, f.disk, line), "; ".join(i.describe() for i in f.issues))


@check(
    id="installer-answer-files",
    severity=Severity.HIGH,
    layer=Layer.GUEST,
    title="Installer answer files and logs left in the image",
    remediation=(
        "Delete kickstart files (/root/anaconda-ks.cfg, original-ks.cfg, initial-setup-ks.cfg), preseed "
        "files and the installer logs (/var/log/installer, /var/log/anaconda, /root/install.log*) before "
        "exporting: they record the answers given at install time, often the root password or its hash."
    ),
    references=(
        "virt-sysprep operation logfiles (lists /root/anaconda-ks.cfg, /root/install.log*, /var/log/anaconda/*, /var/log/installer/*)",
        "AWS Marketplace checklist: no hardcoded secrets or default passwords",
    ),
)
def installer_answer_files(content_scan: ContentScan):
    """Non-empty /root/anaconda-ks.cfg, /root/original-ks.cfg, /root/initial-setup-ks.cfg,
    /root/anaconda-post*.log, /root/install.log*, any preseed.cfg, *.preseed, ks.cfg, *-ks.cfg,
    autoinstall.yaml in /root or /etc (one finding each), and /var/log/installer and /var/log/anaconda
    (one finding per directory with non-empty files; log-files-present leaves them to this check).
    Evidence says whether a root password, its hash or other passwords are recorded (kickstart rootpw and
    user --password, d-i passwd/* answers, cdebconf questions.dat values, autoinstall identity), never the value."""
    for residue in content_scan.installer:
        answers = [a for _, a in residue.answers]
        holders = sorted({f for f, a in residue.answers if a.form != "locked"})
        if len(residue.files) > 1 or residue.files[0] != residue.path:
            head = f"{len(residue.files)} installer file(s), {residue.size} bytes"
            where = f" (in {', '.join(holders)})" if holders else ""
        else:
            head, where = f"{residue.size} bytes", ""
        evidence = f"{head}; {answerfiles.describe(answers)}{where}"
        if residue.unread:
            evidence += f"; {len(residue.unread)} file(s) over {content.MAX_FILE_SIZE // 1024} KiB not read"
        yield fail(_location(residue.path, residue.disk), evidence)


@check(
    id="vnc-password-file",
    severity=Severity.CRITICAL,
    layer=Layer.GUEST,
    title="Stored VNC password (reversible) in the image",
    remediation=(
        "Delete the VNC password files and set a per-instance password at first boot, or better, drop the "
        "in-guest VNC server and use SSH. VNC password files are only obfuscated with a fixed, public DES "
        "key: anyone with the image reads the password."
    ),
    references=(
        "VMware DOC-7535: VNC keys are reversible",
        "https://www.acunetix.com/vulnerabilities/web/vnc-does-not-require-authentication/",
    ),
)
def vnc_password_file(content_scan: ContentScan):
    """~/.vnc/passwd and ~/.config/tigervnc/passwd in every home, /etc/vnc* (password files, and
    RealVNC/TightVNC 'Password=<hex>' lines), /etc/x11vnc.pass, /etc/tigervnc/*passwd*, /etc/tightvnc*.
    The fixed-key DES obfuscation is decoded to tell the password's length and whether it is a known
    default (password, vnc, 123456, vmware, admin, changeme, the hostname...); it is never shown."""
    for f in content_scan.vnc:
        if f.password is not None:
            yield fail(_location(f.path, f.disk), f.password.describe(f.size))
        elif f.size and "pass" in posixpath.basename(f.path).lower():
            yield fail(_location(f.path, f.disk), f"VNC password file ({f.size} bytes, not decodable)")


@hookimpl
def certify_checks():
    return [
        ssh_user_private_keys,
        private_key_material,
        cloud_provider_credentials,
        dev_saas_registry_tokens,
        hardcoded_app_secrets,
        cloud_init_seeded_secrets,
        installer_answer_files,
        vnc_password_file,
    ]
