"""certify sanitize: a VMX a provider can load, every change listed, and stable when run again."""

from __future__ import annotations

import json

import pytest
from conftest import run_certify
from hypothesis import given
from test_fuzz import FUZZ, VMX_SEEDS, mutated
from test_parsers import CORPUS

from certify.bundle.descriptor import from_vmx
from certify.bundle.sanitize_vmx import render_vmx, sanitize_vmx
from certify.bundle.vmx import parse_vmx
from certify.errors import ParseError
from certify.model import Facts
from certify.plugins.manager import load_registry
from certify.runner import run_checks

SCOURED = {"vmx-vnc-enabled", "shared-folder", "host-device-passthrough", "host-listener-or-pipe", "descriptor-secret",
           "duplicate-descriptor-key", "vmx-isolation-settings", "storage-path-outside-bundle"}  # fmt: skip
CHECKS = [c for c in load_registry().checks.values() if c.id in SCOURED]

HOSTILE = """
scsi0:0.fileName = "disk.vmdk"
scsi0:1.fileName = "/vmfs/volumes/ds2/victim/victim-flat.vmdk"
scsi0:1.deviceType = "scsi-hardDisk"
ide1:0.deviceType = "cdrom-raw"
ide1:0.fileName = "/dev/sr0"
serial0.fileType = "network"
serial0.fileName = "telnet://0.0.0.0:2323"
sharedFolder0.hostPath = "/"
isolation.tools.hgfs.disable = "FALSE"
RemoteDisplay.vnc.enabled = "TRUE"
RemoteDisplay.vnc.password = "vendor123"
debugStub.listen.guest64.remote = "TRUE"
pciPassthru0.present = "TRUE"
usb.autoConnect.device0 = "vid:0x0781 pid:0x5581"
isolation.tools.copy.disable = "FALSE"
tools.setinfo.sizeLimit = "1073741824"
guestinfo.userdata = "I2Nsb3VkLWNvbmZpZwpjaHBhc3N3ZDoKICBsaXN0OiByb290OmhlbGxvCg=="
workingDir = "/vmfs/volumes/ds2/victim"
ethernet0.virtualDev = "vmxnet3"
ethernet0.connectionType = "bridged"
ethernet0.address = "00:50:56:aa:bb:cc"
ethernet0.addressType = "static"
uuid.bios = "56 4d 00 00"
SCSI0:0.FILENAME = "/etc/passwd"
"""


def findings(text: str) -> set[str]:
    descriptor = from_vmx("a.vmx", parse_vmx(text.encode()), text)
    found, _ = run_checks(CHECKS, Facts(values={"descriptor": descriptor}))
    return {f.check_id for f in found if f.status.value == "fail"}


def sanitized(text: str) -> tuple[str, list]:
    pairs, changes = sanitize_vmx(parse_vmx(text.encode()))
    return render_vmx(pairs), changes


def test_a_hostile_vmx_comes_out_clean_and_its_secrets_stay_out_of_the_change_list():
    assert findings(HOSTILE) == SCOURED
    clean_disk, changes = sanitized('scsi0:0.fileName = "disk.vmdk"\nscsi0:0.fileName = "disk2.vmdk"\n')
    assert 'scsi0:0.fileName = "disk.vmdk"' in clean_disk and "disk2" not in clean_disk
    assert [c.check for c in changes if c.action == "remove"] == ["duplicate-descriptor-key"]
    out, changes = sanitized(HOSTILE)
    assert findings(out) == set()
    # A device whose duplicate key points outside the bundle goes whole: no reader can be trusted to pick.
    assert "disk.vmdk" not in out and 'ethernet0.virtualDev = "vmxnet3"' in out
    assert 'ethernet0.addressType = "generated"' in out and "00:50:56" not in out and "uuid.bios" not in out
    listed = json.dumps([c.as_dict() for c in changes])
    assert "vendor123" not in listed and "I2Nsb3Vk" not in listed
    reasons = {c.key: c.check for c in changes}
    assert reasons["scsi0:1.fileName"] == "storage-path-outside-bundle"
    assert reasons["SCSI0:0.FILENAME"] == "storage-path-outside-bundle"
    assert reasons["isolation.tools.copy.disable"] == "vmx-isolation-settings"


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.vmx")), ids=lambda p: p.name)
def test_every_real_vmx_sanitizes_cleanly_and_stably(path):
    parsed = parse_vmx(path.read_bytes())
    once, _ = sanitized(path.read_bytes().decode(parsed.encoding))
    assert findings(once) == set()
    twice, changes = sanitized(once)
    assert twice == once and changes == []


def test_sanitize_command(tmp_path):
    source = tmp_path / "vm.vmx"
    source.write_text(HOSTILE)
    before = source.read_bytes()
    result = run_certify("sanitize", str(source), "-o", str(tmp_path / "clean.vmx"))
    assert result.returncode == 0, result.stderr
    assert source.read_bytes() == before
    changes = json.loads((tmp_path / "clean.vmx.changes.json").read_text())
    assert changes["changes"] and all(c["reason"] for c in changes["changes"])
    assert run_certify("sanitize", str(source), "-o", str(source)).returncode == 2
    (tmp_path / "a.ovf").write_text("<x/>")
    refused = run_certify("sanitize", str(tmp_path / "a.ovf"), "-o", str(tmp_path / "o.ovf"))
    assert refused.returncode == 2 and "rejected: root element is 'x', not an OVF" in refused.stderr
    (tmp_path / "bad.vmx").write_text("not a vmx line\n")
    assert run_certify("sanitize", str(tmp_path / "bad.vmx"), "-o", str(tmp_path / "o.vmx")).returncode == 2


@FUZZ
@given(mutated([*VMX_SEEDS, HOSTILE.encode()]))
def test_sanitized_vmx_is_clean_and_a_fixed_point_for_any_vmx_the_parser_accepts(data):
    try:
        vmx = parse_vmx(data)
    except ParseError:
        return
    once, _ = sanitized(data.decode(vmx.encoding))
    assert sanitized(once) == (once, [])
    assert findings(once) == set()
