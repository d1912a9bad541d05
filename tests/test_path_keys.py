"""One list of path-bearing keys drives both scan and sanitize: what one reports, the other removes.

For every key of ``vmx_policy.PATH_KEYS`` (a concrete key per pattern below,
and the test fails when a pattern has none), with values inside and outside
the bundle, in a VMX and as an OVF vmw:ExtraConfig line: the keys
storage-path-outside-bundle reports are exactly the keys the sanitizer
removes citing that check.
"""

from __future__ import annotations

import re

import pytest

from certify.bundle.descriptor import from_ovf, from_vmx
from certify.bundle.ovf import parse_ovf
from certify.bundle.sanitize_ovf import sanitize_ovf
from certify.bundle.sanitize_vmx import sanitize_vmx
from certify.bundle.vmx import parse_vmx
from certify.bundle.vmx_policy import PATH_KEY, PATH_KEYS
from certify.model import Facts
from certify.plugins.manager import load_registry
from certify.runner import run_checks
from certify.sample import ovf_descriptor

CHECK = "storage-path-outside-bundle"
STORAGE_CHECK = [load_registry().checks[CHECK]]
KEYS = [
    "scsi0:1.fileName", "ide1:0.fileName", "sata0:2.fileName", "nvme0:0.fileName",
    "floppy0.fileName", "serial0.fileName", "parallel0.fileName", "sharedFolder0.hostPath",
    "nvram", "extendedConfigFile", "checkpoint.vmState", "workingDir", "suspend.directory", "redoLogDir",
    "sched.swap.dir", "sched.swap.derivedName", "log.fileName", "vmxstats.filename", "migrate.hostlog",
    "replay.filename", "fileSearchPath", "sound.fileName", "snapshot.fileName",
]  # fmt: skip
OUTSIDE = ["/etc/shadow", "../../victim/victim-flat.vmdk", "[datastore2] victim/victim.vmdk", "https://evil.example/x",
           "C:\\Windows\\win.ini", "\\\\server\\share\\x"]  # fmt: skip
INSIDE = ["appliance.nvram", "logs/vmware.log", "."]


def test_every_pattern_of_the_list_has_a_key_here():
    for pattern in PATH_KEYS:
        assert any(re.fullmatch(pattern, key, re.IGNORECASE) for key in KEYS), f"no key of this test matches {pattern!r}"
    assert all(PATH_KEY.match(key) for key in KEYS)
    assert not PATH_KEY.match("guestinfo.cache.fileName") and not PATH_KEY.match("ethernet0.virtualDev")


def _scan_vmx(text: str) -> set[str]:
    descriptor = from_vmx("a.vmx", parse_vmx(text.encode()), text)
    found, _ = run_checks(STORAGE_CHECK, Facts(values={"descriptor": descriptor}))
    return {f.location.key for f in found if f.status.value == "fail"}


def _scan_ovf(text: str) -> set[str]:
    descriptor = from_ovf("a.ovf", parse_ovf(text.encode()), text)
    found, _ = run_checks(STORAGE_CHECK, Facts(values={"descriptor": descriptor}))
    return {f.location.key for f in found if f.status.value == "fail" and f.location.key != "rasd:HostResource"}


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("value", OUTSIDE + INSIDE)
def test_scan_reports_exactly_what_sanitize_removes_in_a_vmx(key, value):
    text = f'{key} = "{value}"\n'
    _pairs, changes = sanitize_vmx(parse_vmx(text.encode()))
    removed = {c.key for c in changes if c.check == CHECK}
    reported = _scan_vmx(text)
    assert reported == removed
    assert reported == ({key} if value in OUTSIDE else set())


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("value", OUTSIDE + INSIDE)
def test_scan_reports_exactly_what_sanitize_removes_in_extra_config(key, value):
    text = ovf_descriptor("vm", "d.vmdk", 1, 1, {key: value})
    _xml, changes = sanitize_ovf(text.encode())
    removed = {re.fullmatch(r"vmw:ExtraConfig\[@vmw:key='(.*)'\]", c.key).group(1) for c in changes if c.check == CHECK}
    reported = _scan_ovf(text)
    assert reported == removed
    assert reported == ({key} if value in OUTSIDE else set())


def test_each_directory_of_a_search_path_is_judged():
    assert _scan_vmx('fileSearchPath = ".;/vmfs/volumes/ds2/victim"\n') == {"fileSearchPath"}
    assert _scan_vmx('fileSearchPath = ".;iso"\n') == set()
    _pairs, changes = sanitize_vmx(parse_vmx(b'fileSearchPath = ".;/vmfs/volumes/ds2/victim"\n'))
    assert [(c.key, c.check) for c in changes if c.action == "remove"] == [("fileSearchPath", CHECK)]


def test_a_host_owned_location_inside_the_bundle_is_housekeeping_not_a_finding():
    _pairs, changes = sanitize_vmx(parse_vmx(b'log.fileName = "vmware.log"\nnvram = "appliance.nvram"\n'))
    assert [(c.key, c.check) for c in changes if c.action == "remove"] == [("log.fileName", "")]
