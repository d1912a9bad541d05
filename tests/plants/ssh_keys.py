"""SSH host keys and authorized_keys."""

from __future__ import annotations

from certify import sample

CHECKS = ("ssh-host-keys-present", "ssh-authorized-keys-present")


def plant_dirty(spec: sample.GuestSpec) -> None:
    private, public = sample.ed25519_keypair("root@vendor-build-42")
    spec.add("/etc/ssh/ssh_host_ed25519_key", private, 0o600)
    spec.add("/etc/ssh/ssh_host_ed25519_key.pub", public + "\n")
    _, vendor = sample.ed25519_keypair("packer@vendor-ci")
    spec.add("/root/.ssh/authorized_keys", vendor + "\n", 0o600)
    spec.mkdir("/root/.ssh", 0o700)


def plant_clean(spec: sample.GuestSpec) -> None:
    spec.mkdir("/root/.ssh", 0o700)
    spec.mkdir("/home/alice/.ssh", 0o700, owner=(1000, 1000))
    spec.add("/home/alice/.ssh/authorized_keys", "# keys are added at first boot by cloud-init\n", 0o600, owner=(1000, 1000))


DIRTY = {
    ("ssh-host-keys-present", "/etc/ssh/ssh_host_ed25519_key", "high"),
    ("ssh-authorized-keys-present", "/root/.ssh/authorized_keys", "critical"),
}
