"""Host keys and authorized keys of every SSH server an image may run: formats, locations, configuration."""

from __future__ import annotations

import re
import struct
import subprocess

import pytest
from memguest import scan_spec

from certify import sample
from certify.guest.parsers.hostkeys import gitea_host_keys, libssh_host_keys, named_like_host_key
from certify.guest.parsers.sshkeys import (
    dropbear_private_key_public,
    parse_public_key_line,
    private_key_public,
    tinyssh_public_key,
    tinyssh_secret_key_public,
)

HOST, AUTHORIZED, MODES, USER_KEYS, KEY_MATERIAL = ("ssh-host-keys-present", "ssh-authorized-keys-present",
                                                    "ssh-host-key-permissions", "ssh-user-private-keys", "private-key-material")  # fmt: skip
DROPBEAR = b"\x7fELF\x02\x01\x01\0dropbear"
KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")


def fp(line: str) -> str:
    return parse_public_key_line(line).fingerprint


def found(spec, tmp_path, check_id):
    result = scan_spec(spec, tmp_path, [check_id])
    paths = {path for (i, path, _sev, status) in result["findings"] if i == check_id and status == "fail"}
    return paths, {p: e for (i, p), e in result["evidence"].items() if i == check_id}


# -- dropbear's key format --------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_dropbear_keys_of_every_type_give_the_openssh_fingerprint(key_type):
    private, public = sample.dropbear_keypair(key_type)
    key = private_key_public(private)
    assert (key.type, key.fingerprint) == (key_type, fp(public))


def _wire(*fields: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(f)) + f for f in fields)


def test_dropbear_fingerprint_is_of_the_canonical_blob_and_needs_the_private_part():
    private, public = sample.dropbear_keypair("ssh-rsa")
    fields, offset = [], 0
    while offset < len(private):
        (length,) = struct.unpack_from(">I", private, offset)
        fields.append(private[offset + 4 : offset + 4 + length])
        offset += 4 + length
    name, e, n, d, p, q = fields
    padded = _wire(name, b"\0\0" + e, n, d, p, q)  # a redundant leading zero: dropbear reads the same number
    assert dropbear_private_key_public(padded).fingerprint == fp(public)
    assert dropbear_private_key_public(_wire(name, e, n)) is None  # no private exponent: not a key file
    assert dropbear_private_key_public(_wire(name, b"\x80" + e, n, d)) is None  # a negative mpint
    assert dropbear_private_key_public(private[:-10]) is None


def test_dropbear_ecdsa_and_ed25519_fields_are_checked():
    ecdsa, _ = sample.dropbear_keypair("ecdsa-sha2-nistp256")
    assert dropbear_private_key_public(ecdsa.replace(b"\0\0\0\x08nistp256", b"\0\0\0\x08nistp384")) is None  # curve != type
    ed, _ = sample.dropbear_keypair("ssh-ed25519")
    assert dropbear_private_key_public(_wire(b"ssh-ed25519", ed[-64:-32])) is None  # 32 bytes: no seed||public
    assert dropbear_private_key_public(_wire(b"ssh-foo", b"x")) is None
    assert dropbear_private_key_public(b"") is None


@pytest.mark.parametrize("key_type", ["rsa", "ecdsa", "ed25519"])
def test_keys_agree_with_dropbear_itself(tmp_path, key_type):
    """dropbearkey's own files parse to the fingerprint dropbearkey prints, and dropbearkey reads the files tests write."""
    path = tmp_path / f"dropbear_{key_type}_host_key"
    subprocess.run(["dropbearkey", "-t", key_type, "-f", str(path)], check=True, capture_output=True)
    shown = subprocess.run(["dropbearkey", "-y", "-f", str(path)], check=True, capture_output=True, text=True).stdout
    assert private_key_public(path.read_bytes()).fingerprint == re.search(r"Fingerprint: (SHA256:\S+)", shown).group(1)
    written = tmp_path / "written"
    private, public = sample.dropbear_keypair({"rsa": "ssh-rsa", "ecdsa": "ecdsa-sha2-nistp256", "ed25519": "ssh-ed25519"}[key_type])
    written.write_bytes(private)
    shown = subprocess.run(["dropbearkey", "-y", "-f", str(written)], check=True, capture_output=True, text=True).stdout
    assert f"Fingerprint: {fp(public)}" in shown


def test_tinyssh_key_files():
    secret, public, line = sample.tinyssh_keypair()
    assert tinyssh_public_key("ed25519.pk", public).fingerprint == fp(line)
    assert tinyssh_secret_key_public(".ed25519.sk", secret).fingerprint == fp(line)
    assert tinyssh_public_key("ed25519.pk", public[:31]) is None and tinyssh_secret_key_public(".ed25519.sk", secret[:63]) is None
    point = bytes(range(64))  # nistp256ecdsa.pk: X || Y, no 0x04 prefix
    assert tinyssh_public_key("nistp256ecdsa.pk", point).type == "ecdsa-sha2-nistp256"


# -- configuration that names keys ------------------------------------------------------------------


def test_names_that_mark_host_keys():
    assert [named_like_host_key(p) for p in ("/opt/a/ssh_host_ed25519_key", "/srv/hostkey", "/var/lib/x/soft_serve_host_ed25519",
                                             "/etc/localhost.key", "/opt/a/ssh_host_rsa_key.pub", "/opt/a/hostkeys.py")] == \
        [True, True, True, False, False, False]  # fmt: skip


def test_libssh_and_gitea_configuration():
    [key] = libssh_host_keys("/etc/ssh/libssh_server_config", "# x\nhostkey \"/etc/netconf/server key\"\nHostKeyAlgorithms ssh-ed25519\n")
    assert (key.path, key.line) == ("/etc/netconf/server key", 2)
    named = gitea_host_keys("/etc/gitea/app.ini", "[server]\nAPP_DATA_PATH = /var/lib/gitea\nSSH_SERVER_HOST_KEYS = ssh/a.rsa, /k/b\n")
    assert [k.path for k in named] == ["/var/lib/gitea/ssh/a.rsa", "/k/b"]
    work = gitea_host_keys("/srv/git/custom/conf/app.ini", "[server]\nSTART_SSH_SERVER = true\n")
    assert [k.path for k in work] == ["/srv/git/data/ssh/gitea.rsa", "/srv/git/data/ssh/gogs.rsa"]
    assert gitea_host_keys("/etc/gitea/app.ini", "[server]\nSTART_SSH_SERVER = false\n") == []
    assert gitea_host_keys("/etc/gitea/app.ini", "[server]\nSTART_SSH_SERVER = true\n") == []  # relative to an unknown work path


def test_dropbear_keys_named_by_flags_and_initramfs(tmp_path):
    spec = sample.base_system().add("/usr/sbin/dropbear", DROPBEAR, 0o755)
    spec.add("/etc/default/dropbear", 'DROPBEAR_ARGS="-s -r /data/keys/box_rsa"\n')
    spec.add("/data/keys/box_rsa", sample.dropbear_keypair("ssh-rsa")[0], 0o600)
    spec.add("/etc/config/dropbear", "config dropbear\n\tlist keyfile '/etc/dropbear/wan_key'\n")
    spec.add("/etc/dropbear/wan_key", sample.dropbear_keypair("ssh-ed25519")[0], 0o600)
    private, public = sample.dropbear_keypair("ecdsa-sha2-nistp256")
    spec.add("/etc/dropbear/initramfs/dropbear_ecdsa_host_key", private, 0o600)
    paths, evidence = found(spec, tmp_path, HOST)
    assert paths == {"/data/keys/box_rsa", "/etc/dropbear/wan_key", "/etc/dropbear/initramfs/dropbear_ecdsa_host_key"}
    assert "named by 'DROPBEAR_ARGS=\"-s -r /data/keys/box_rsa\"' at /etc/default/dropbear:1" in evidence["/data/keys/box_rsa"]
    assert "keyfile '/etc/dropbear/wan_key'" in evidence["/etc/dropbear/wan_key"]
    assert evidence["/etc/dropbear/initramfs/dropbear_ecdsa_host_key"] == \
        f"ecdsa-sha2-nistp256 {fp(public)} (dropbear host key, dropbear-initramfs)"  # fmt: skip


def test_files_named_like_host_keys_count_only_when_they_hold_one(tmp_path):
    spec = sample.base_system()
    spec.add("/opt/app/hostkey", "not a key, a note about keys\n")
    spec.add("/opt/app/host_key.pem", b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n", 0o600)
    spec.add("/usr/lib/python3/dist-packages/x/ssh_host_key", sample.ed25519_keypair("fixture")[0])  # code's fixtures: not swept
    spec.add("/etc/ssh/ssh_host_dsa_key", "")  # at OpenSSH's own location: sshd would load it, whatever it holds
    paths, evidence = found(spec, tmp_path, HOST)
    assert paths == {"/opt/app/host_key.pem", "/etc/ssh/ssh_host_dsa_key"}
    assert evidence["/opt/app/host_key.pem"] == "private key (fingerprint unavailable) (named like a host key)"


def test_a_configured_key_is_not_reported_twice(tmp_path):
    spec = sample.base_system()
    spec.add("/etc/ssh/sshd_config.d/keys.conf", "HostKey /etc/appliance/ssh.pem\n")
    spec.add("/etc/appliance/ssh.pem", sample.rsa_pem_private_key(), 0o600)
    assert found(spec, tmp_path, HOST)[0] == {"/etc/appliance/ssh.pem"}
    assert found(spec, tmp_path, KEY_MATERIAL)[0] == set()


# -- authorized keys dropbear reads ------------------------------------------------------------------


def test_dropbear_authorized_keys_outside_the_homes(tmp_path):
    _, key = sample.ed25519_keypair("vendor")
    spec = sample.base_system(users=("alice", "bob")).add("/usr/sbin/dropbear", DROPBEAR, 0o755)
    spec.add("/etc/default/dropbear", 'DROPBEAR_EXTRA_ARGS="-s -D ~/.config/dropbear"\n')
    spec.add("/home/alice/.config/dropbear/authorized_keys", key + "\n", owner=(1000, 1000))
    spec.add("/etc/dropbear-initramfs/authorized_keys", key + "\n")
    spec.add("/etc/dropbear/authorized_keys", "# none yet\n")
    paths, evidence = found(spec, tmp_path, AUTHORIZED)
    assert paths == {"/home/alice/.config/dropbear/authorized_keys", "/etc/dropbear-initramfs/authorized_keys"}
    assert "1 key for alice:" in evidence["/home/alice/.config/dropbear/authorized_keys"]
    assert "root of the initramfs" in evidence["/etc/dropbear-initramfs/authorized_keys"]
    shared = sample.base_system(users=("alice", "bob")).add("/usr/sbin/dropbear", DROPBEAR, 0o755)
    shared.add("/etc/inittab", "::respawn:/usr/sbin/dropbear -F -s -D /etc/ssh/keys\n").add("/etc/ssh/keys/authorized_keys", key + "\n")
    assert "for every account" in found(shared, tmp_path, AUTHORIZED)[1]["/etc/ssh/keys/authorized_keys"]


# -- modes and user keys ----------------------------------------------------------------------------


def test_modes_of_every_servers_keys(tmp_path):
    spec = sample.base_system()
    spec.add("/etc/dropbear/dropbear_ed25519_host_key", sample.dropbear_keypair()[0], 0o644)
    secret, public, _ = sample.tinyssh_keypair()
    spec.add("/etc/tinyssh/sshkeydir/.ed25519.sk", secret, 0o640)
    spec.add("/etc/tinyssh/sshkeydir/ed25519.pk", public, 0o644)  # public: readable is fine
    paths, evidence = found(spec, tmp_path, MODES)
    assert paths == {"/etc/dropbear/dropbear_ed25519_host_key", "/etc/tinyssh/sshkeydir/.ed25519.sk"}
    assert "other read" in evidence["/etc/dropbear/dropbear_ed25519_host_key"]


def test_dbclient_key_in_a_home_is_named_by_fingerprint(tmp_path):
    private, public = sample.dropbear_keypair("ssh-ed25519")
    spec = sample.base_system().add("/root/.ssh/id_dropbear", private, 0o600)
    paths, evidence = found(spec, tmp_path, USER_KEYS)
    assert paths == {"/root/.ssh/id_dropbear"}
    assert evidence["/root/.ssh/id_dropbear"] == f"id_dropbear: ssh-ed25519 {fp(public)} private key in dropbear's format"
