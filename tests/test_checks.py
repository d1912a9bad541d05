"""Each built-in check as a pure function of facts, and how the runner turns results into a verdict."""

from __future__ import annotations

import pytest

from certify import Layer, Location, Severity, Status, check, fail
from certify.bundle.descriptor import from_vmx
from certify.bundle.vmx import parse_vmx
from certify.guest.collectors.ssh import AuthorizedKeysFile, HostKeyFile
from certify.guest.parsers.sshkeys import KeyEntry, PublicKey
from certify.model import Facts, Verdict
from certify.pipeline import PIPELINE_FACTS
from certify.plugins.manager import load_registry
from certify.policy.verdict import decide
from certify.runner import run_checks

REGISTRY = load_registry()


def evaluate(check_id: str, **facts):
    check = REGISTRY.checks[check_id]
    if check.params:
        facts = {"params": dict(check.params)} | facts
    return list(check.evaluate(**facts))


def vmx(text: str):
    return from_vmx("a.vmx", parse_vmx(text.encode()))


@pytest.mark.parametrize(
    "text, expected",
    [
        ('RemoteDisplay.vnc.enabled = "TRUE"\n', [None]),
        ('remotedisplay.vnc.enabled = "true"\nRemoteDisplay.vnc.password = "x"\n', [Severity.CRITICAL]),
        ('RemoteDisplay.vnc.enabled = "TRUE"\nRemoteDisplay.vnc.key = "abc"\n', [Severity.CRITICAL]),
        ('RemoteDisplay.vnc.enabled = "FALSE"\nRemoteDisplay.vnc.password = "x"\n', []),
        ('RemoteDisplay.vnc.port = "5900"\n', []),
        # A duplicate that switches it back on counts, whichever reader wins.
        ('RemoteDisplay.vnc.enabled = "FALSE"\nRemoteDisplay.vnc.enabled = "TRUE"\n', [None]),
    ],
)
def test_vmx_vnc_enabled(text, expected):
    results = evaluate("vmx-vnc-enabled", descriptor=vmx(text))
    assert [r.severity for r in results] == expected
    for r in results:
        assert r.location.key.lower() == "remotedisplay.vnc.enabled"
        assert '"x"' not in r.evidence and "abc" not in r.evidence


def test_storage_path_outside_bundle():
    desc = vmx('scsi0:0.fileName = "ok.vmdk"\nide0:0.fileName = "../../other/d.vmdk"\nsata0:1.fileName = "[ds1] vm/d.vmdk"\n'
               'nvme0:0.fileName = "http://x/d.vmdk"\nfloppy0.fileName = "/dev/fd0"\n')  # fmt: skip
    results = evaluate("storage-path-outside-bundle", descriptor=desc)
    assert [(r.location.key, r.location.line, r.location.path) for r in results] == [
        ("ide0:0.fileName", 2, "../../other/d.vmdk"),
        ("sata0:1.fileName", 3, "[ds1] vm/d.vmdk"),
        ("nvme0:0.fileName", 4, "http://x/d.vmdk"),
        ("floppy0.fileName", 5, "/dev/fd0"),
    ]


def test_every_path_bearing_key_is_judged_in_vmx_and_extra_config():
    from certify.bundle.descriptor import from_ovf
    from certify.bundle.ovf import parse_ovf
    from certify.sample import ovf_descriptor

    desc = vmx('serial0.fileName = "/etc/shadow"\nsharedFolder0.hostPath = "/"\nparallel0.fileName = "/dev/parport0"\n'
               'nvram = "../x.nvram"\nworkingDir = ""\ncheckpoint.vmState = "vm.vmss"\n')  # fmt: skip
    flagged = [r.location.key for r in evaluate("storage-path-outside-bundle", descriptor=desc)]
    assert flagged == ["serial0.fileName", "sharedFolder0.hostPath", "parallel0.fileName", "nvram"]
    ovf = from_ovf("a.ovf", parse_ovf(ovf_descriptor("vm", "d.vmdk", 1, 1, {"scsi0:1.fileName": "/vmfs/volumes/ds/x.vmdk"}).encode()))
    [smuggled] = evaluate("storage-path-outside-bundle", descriptor=ovf)
    assert (smuggled.location.file, smuggled.location.key, smuggled.location.path) == ("a.ovf", "scsi0:1.fileName", "/vmfs/volumes/ds/x.vmdk")


def test_storage_path_subdirectories_are_a_profile_parameter():
    desc = vmx('scsi0:0.fileName = "disks/d.vmdk"\n')
    assert evaluate("storage-path-outside-bundle", descriptor=desc) == []
    [strict] = evaluate("storage-path-outside-bundle", descriptor=desc, params={"allow_subdirectories": False})
    assert "not a bare file name" in strict.evidence


def test_ssh_host_keys_present():
    keys = [HostKeyFile("/etc/ssh/ssh_host_rsa_key", "d.vmdk", PublicKey("ssh-rsa", "SHA256:abc")),
            HostKeyFile("/etc/ssh/ssh_host_ecdsa_key", None, None)]  # fmt: skip
    results = evaluate("ssh-host-keys-present", ssh_host_keys=keys)
    assert [(r.location.path, r.location.file, r.evidence) for r in results] == [
        ("/etc/ssh/ssh_host_rsa_key", "d.vmdk", "ssh-rsa SHA256:abc"),
        ("/etc/ssh/ssh_host_ecdsa_key", None, "private key (fingerprint unavailable)"),
    ]
    assert evaluate("ssh-host-keys-present", ssh_host_keys=[]) == []


def test_ssh_authorized_keys_present():
    entries = tuple(KeyEntry(i, PublicKey("ssh-ed25519", f"SHA256:k{i}")) for i in range(7)) + (KeyEntry(9, None),)
    files = [AuthorizedKeysFile("/root/.ssh/authorized_keys", "d", ("root",), entries, False),
             AuthorizedKeysFile("/home/a/.ssh/authorized_keys", "d", ("a",), (), False)]  # fmt: skip
    [result] = evaluate("ssh-authorized-keys-present", authorized_keys=files)
    assert result.location.path == "/root/.ssh/authorized_keys"
    assert result.evidence.startswith("8 keys for root: ssh-ed25519 SHA256:k0;")
    assert result.evidence.endswith("and 3 more")


# --- runner and verdict ------------------------------------------------------------


@check(id="test-crashes", severity=Severity.LOW, layer=Layer.GUEST, title="t", remediation="r")
def crashes(thing):
    raise KeyError("boom")


@check(id="test-flags", severity=Severity.MEDIUM, layer=Layer.GUEST, title="t", remediation="r")
def flags(thing):
    yield fail(Location(layer=Layer.GUEST, path="/x"), "seen")


def test_runner_statuses():
    facts = Facts(values={"thing": 1})
    findings, status = run_checks([crashes, flags], facts)
    assert status == {"test-crashes": Status.ERROR, "test-flags": Status.FAIL}
    assert findings[0].check_id == "test-flags" and findings[0].severity is Severity.MEDIUM
    assert "KeyError" in findings[1].evidence
    assert decide(findings, Severity.HIGH, []) is Verdict.ERROR  # a crashed check never passes

    findings, status = run_checks([flags], Facts(unavailable={"thing": "no OS"}))
    assert status == {"test-flags": Status.NOT_EVALUATED} and "no OS" in findings[0].evidence
    assert decide(findings, Severity.MEDIUM, []) is Verdict.FAIL
    assert decide(findings, Severity.HIGH, []) is Verdict.PASS  # below the threshold

    findings, status = run_checks([flags], Facts(not_applicable={"thing": "bare disk"}))
    assert status == {"test-flags": Status.NOT_APPLICABLE} and findings == []
    assert decide([], Severity.HIGH, ["appliance failed to start"]) is Verdict.ERROR


def test_check_metadata_comes_from_the_function():
    assert flags.facts == ("thing",) and flags.id == "test-flags"
    with pytest.raises(ValueError, match="lower-case"):
        check(id="Bad_ID", severity=Severity.LOW, layer=Layer.GUEST, title="t", remediation="r")(lambda x: [])


def test_catalog_is_complete_and_consistent():
    for c in REGISTRY.checks.values():
        assert c.title and c.remediation and c.description and c.references, c.id
        for fact in c.facts:
            assert fact in PIPELINE_FACTS or fact in REGISTRY.collectors, (c.id, fact)
    assert set(REGISTRY.reporters) >= {"text", "json"}


def test_manifest_missing():
    from certify.bundle.ingest import BundleFacts

    assert [r.status.value for r in evaluate("manifest-missing", bundle=BundleFacts("ova", "a.ovf", None))] == ["fail"]
    assert evaluate("manifest-missing", bundle=BundleFacts("ova", "a.ovf", "a.mf")) == []
    assert [r.status.value for r in evaluate("manifest-missing", bundle=BundleFacts("vmx", "a.vmx", None))] == ["not-applicable"]
