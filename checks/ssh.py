"""Checks on SSH material left inside the guest."""

from __future__ import annotations

from certify.checkdef import check
from certify.guest.collectors.ssh import AuthorizedKeysFile, HostKeyFile
from certify.model import Layer, Location, Severity, fail
from certify.plugins.hookspecs import hookimpl


@check(
    id="ssh-host-keys-present",
    severity=Severity.HIGH,
    layer=Layer.GUEST,
    title="SSH host keys shipped in the image",
    remediation=(
        "Delete /etc/ssh/ssh_host_* before exporting the appliance and let them be generated at first "
        "boot (cloud-init, ssh-keygen -A, or the distribution's sshd key generation unit). The same holds for "
        "every other SSH server's keys: /etc/dropbear/dropbear_*_host_key (dropbear -R, or OpenWrt's init "
        "script, makes them at first boot), tinysshd's key directory (tinysshd-makekey), and keys a libssh, "
        "Gitea or other server's configuration names. Shipped host keys are identical on every clone, so one "
        "leaked image lets anyone impersonate every instance."
    ),
    references=(
        "AWS Marketplace AMI policy: host keys must not be shipped (EC2 routine audits mark such AMIs private)",
        "Oracle Cloud Marketplace guideline S01: unique host keys",
        "virt-sysprep operation ssh-hostkeys",
    ),
)
def ssh_host_keys_present(ssh_host_keys: list[HostKeyFile]):
    """Host private keys baked into the image are shared by every instance made from it.

    OpenSSH's /etc/ssh/ssh_host_*_key and every sshd HostKey; dropbear's
    binary-format keys (default paths, dropbear-initramfs, -r); tinysshd's
    .ed25519.sk; keys libssh or Gitea configuration names; files named like
    a host key that hold a private key. The evidence gives the fingerprint
    and, for keys outside /etc/ssh, which server's key it is.
    """
    for key_file in ssh_host_keys:
        evidence = key_file.key.describe() if key_file.key else "private key (fingerprint unavailable)"
        if key_file.source:
            evidence += f" ({key_file.source})"
        yield fail(Location(layer=Layer.GUEST, file=key_file.disk, path=key_file.path), evidence)


@check(
    id="ssh-authorized-keys-present",
    severity=Severity.CRITICAL,
    layer=Layer.GUEST,
    title="authorized_keys grants SSH access to whoever holds the key",
    remediation=(
        "Empty or delete every authorized_keys/authorized_keys2 file in the image (on OpenWrt also "
        "/etc/dropbear/authorized_keys). Customer keys must "
        "be injected at first boot from the cloud's metadata (cloud-init), never baked in: a shipped key "
        "is a back door for the vendor or anyone who has its private half."
    ),
    references=(
        "AWS Marketplace AMI policy: AMIs must not contain authorized passwords or authorized keys",
        "Oracle Cloud Marketplace guideline S10: authorized_keys only with launch keys",
        "virt-sysprep operation ssh-userdir",
    ),
)
def ssh_authorized_keys_present(authorized_keys: list[AuthorizedKeysFile]):
    """Any key line in authorized_keys under /root or a home listed in /etc/passwd, in every file sshd's
    AuthorizedKeysFile names, and where dropbear reads keys: /etc/dropbear/authorized_keys (root on OpenWrt),
    dropbear-initramfs's, -D directories."""
    for keys_file in authorized_keys:
        if not keys_file.entries and not keys_file.truncated:
            continue
        described = [e.key.describe() if e.key else f"unparsed entry on line {e.line}" for e in keys_file.entries]
        shown = "; ".join(described[:5]) + (f"; and {len(described) - 5} more" if len(described) > 5 else "")
        count = f"{len(described)} key{'s' if len(described) != 1 else ''}"
        if keys_file.truncated:  # what lies past the read limit may grant access: never a pass
            count += " in its first MiB (the rest was not read)"
        yield fail(
            Location(layer=Layer.GUEST, file=keys_file.disk, path=keys_file.path),
            f"{count} for {', '.join(keys_file.users)}: {shown}",
        )


@hookimpl
def certify_checks():
    return [ssh_host_keys_present, ssh_authorized_keys_present]
