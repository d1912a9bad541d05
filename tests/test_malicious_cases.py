"""Every malicious-input case of ../shared/design/descriptors.md §5, built by code, with its exact outcome.

The case number of §5 leads each test id. "reject" there means: the upload is
rejected (InputRejected, exit 2) or fails certification under the default
profile (a finding at high or above); "flag" a finding below that; "strip"
that `certify sanitize` removes it. No guest is launched: every disk here is
either refused before the guest stage or only sniffed.
"""

from __future__ import annotations

import io
import struct
import tarfile

import pytest
from test_descriptor_checks import DESCRIPTOR_CHECKS, REGISTRY
from test_ingest import (  # noqa: F401
    _cert_file,
    _signer,
    _sparse_vmdk,
    _zero_capacity_with_host_extent,
    fresh,
    make_tar,
    mf,
    ovf_for,
    qemu_img,  # fmt: skip
    refused,
    sha,
    vmdk_bytes,
)
from test_parsers import BILLION_LAUGHS, CORPUS, XXE

from certify import sample
from certify.bundle.descriptor import Descriptor, from_ovf, from_vmx
from certify.bundle.ingest import BundleFacts, IngestPolicy, Limits, ingest
from certify.bundle.ovf import parse_ovf
from certify.bundle.sanitize_ovf import sanitize_ovf
from certify.bundle.sanitize_vmx import render_vmx, sanitize_vmx
from certify.bundle.vmx import parse_vmx
from certify.errors import InputRejected, ParseError
from certify.model import Facts, Severity
from certify.runner import run_checks

REJECT, FLAG = "reject", "flag"


def outcome(descriptor: Descriptor, members: tuple[str, ...] = (), bundle: BundleFacts | None = None) -> dict[tuple[str, str | None], Severity]:
    """Every failing (check id, key or file) with its severity, for the descriptor and bundle checks."""
    manifest = "a.mf" if descriptor.kind == "ovf" else None
    facts = Facts(values={"descriptor": descriptor,
                          "bundle": bundle or BundleFacts(descriptor.kind, descriptor.file, manifest, members)})  # fmt: skip
    checks = DESCRIPTOR_CHECKS + [REGISTRY.checks[c] for c in ("dangling-reference", "disk-format-mismatch", "disk-external-reference")
                                  if REGISTRY.checks[c] not in DESCRIPTOR_CHECKS]  # fmt: skip
    findings, _ = run_checks(checks, facts)
    found: dict[tuple[str, str | None], Severity] = {}
    for f in findings:
        if f.status.value == "fail":
            key = (f.check_id, f.location.key or f.location.file)
            found[key] = max(found.get(key, f.severity), f.severity)
    return found


def assert_verdict(found: dict, verdict: str) -> None:
    worst = max(found.values(), default=Severity.INFO)
    if verdict == REJECT:
        assert worst >= Severity.HIGH, found
    else:
        assert worst < Severity.HIGH, found


# --- VMX (§5 cases 1-32) ---------------------------------------------------------------------

BASE_VMX = 'config.version = "8"\nvirtualHW.version = "19"\n'
S, H, L, D, SF, SEC, ISO, DUP, HW = ("storage-path-outside-bundle", "host-device-passthrough", "host-listener-or-pipe", "dangling-reference",
                                     "shared-folder", "descriptor-secret", "vmx-isolation-settings", "duplicate-descriptor-key",
                                     "vmx-hardware-version")  # fmt: skip

VMX_CASES = [
    ("01-absolute-path", 'scsi0:0.fileName = "/etc/passwd"\n', {(S, "scsi0:0.fileName")}, REJECT),
    ("02-traversal", 'scsi0:0.fileName = "../other-vm/other.vmdk"\n', {(S, "scsi0:0.fileName")}, REJECT),
    ("03-foreign-datastore", 'sata0:0.fileName = "/vmfs/volumes/datastore2/victim/victim-flat.vmdk"\n', {(S, "sata0:0.fileName")}, REJECT),
    ("04-datastore-bracket", 'ide0:0.fileName = "[datastore2] victim/victim.vmdk"\n', {(S, "ide0:0.fileName")}, REJECT),
    ("05-physical-drive", 'scsi0:0.fileName = "\\\\.\\PhysicalDrive0"\n', {(S, "scsi0:0.fileName")}, REJECT),
    ("05-drive-letter", 'scsi0:0.fileName = "C:\\vm\\x.vmdk"\n', {(S, "scsi0:0.fileName")}, REJECT),
    ("05-unc-share", 'scsi0:0.fileName = "\\\\host\\share\\x.vmdk"\n', {(S, "scsi0:0.fileName")}, REJECT),
    ("07-host-cdrom", 'ide1:0.deviceType = "cdrom-raw"\nide1:0.fileName = "/dev/sr0"\nide1:0.startConnected = "TRUE"\n',
     {(H, "ide1:0.deviceType"), (S, "ide1:0.fileName")}, REJECT),
    ("08-scsi-passthru", 'scsi0:1.deviceType = "scsi-passthru"\nscsi0:1.fileName = "/dev/sg1"\n',
     {(H, "scsi0:1.deviceType"), (S, "scsi0:1.fileName")}, REJECT),
    ("09-host-floppy", 'floppy0.fileType = "device"\nfloppy0.fileName = "/dev/fd0"\n', {(H, "floppy0.fileType"), (S, "floppy0.fileName")}, REJECT),
    ("10-serial-listener", 'serial0.fileType = "network"\nserial0.fileName = "telnet://0.0.0.0:2323"\n',
     {(L, "serial0.fileType"), (L, "serial0.fileName"), (S, "serial0.fileName")}, REJECT),
    ("11-serial-pipe", 'serial0.fileType = "pipe"\nserial0.fileName = "/var/run/docker.sock"\n', {(L, "serial0.fileType"), (S, "serial0.fileName")}, REJECT),
    ("12-serial-host-write", 'serial0.fileType = "file"\nserial0.fileName = "/etc/cron.d/own"\n', {(H, "serial0.fileType"), (S, "serial0.fileName")}, REJECT),
    ("13-parallel-device", 'parallel0.fileName = "/dev/parport0"\n', {(S, "parallel0.fileName")}, REJECT),
    ("14-shared-root", 'sharedFolder0.hostPath = "/"\nisolation.tools.hgfs.disable = "FALSE"\n',
     {(SF, "sharedFolder0.hostPath"), (S, "sharedFolder0.hostPath"), (SF, "isolation.tools.hgfs.disable")}, REJECT),
    ("15-map-root-share", 'hgfs.mapRootShare = "TRUE"\n', {(SF, "hgfs.mapRootShare")}, REJECT),
    ("16-working-dir", 'workingDir = "/vmfs/volumes/ds2/victim"\n', {(S, "workingDir")}, REJECT),
    ("16-suspend-directory", 'suspend.directory = "/vmfs/volumes/ds2/victim"\n', {(S, "suspend.directory")}, REJECT),
    ("16-swap-dir", 'sched.swap.dir = "/vmfs/volumes/ds2/victim"\n', {(S, "sched.swap.dir")}, REJECT),
    ("18-nvram-traversal", 'nvram = "../../x.nvram"\n', {(S, "nvram")}, REJECT),
    ("19-vnc-with-password", 'RemoteDisplay.vnc.enabled = "TRUE"\nRemoteDisplay.vnc.password = "vendor123"\n',
     {("vmx-vnc-enabled", "RemoteDisplay.vnc.enabled"), (SEC, "RemoteDisplay.vnc.password")}, REJECT),
    ("19-vnc-off-password-left", 'RemoteDisplay.vnc.enabled = "FALSE"\nRemoteDisplay.vnc.password = "vendor123"\n',
     {(SEC, "RemoteDisplay.vnc.password")}, REJECT),
    ("20-remote-debug-stub", 'debugStub.listen.guest64.remote = "TRUE"\n', {(L, "debugStub.listen.guest64.remote")}, REJECT),
    ("21-pci-passthrough", 'pciPassthru0.present = "TRUE"\n', {(H, "pciPassthru0.present")}, REJECT),
    ("21-vmci-unrestricted", 'vmci0.unrestricted = "TRUE"\n', {(L, "vmci0.unrestricted")}, REJECT),
    ("21-vmsafe", 'vmsafe.enable = "TRUE"\n', {(L, "vmsafe.enable")}, REJECT),
    ("22-usb-autoconnect", 'usb.autoConnect.device0 = "vid:0x0781 pid:0x5581"\n', {(H, "usb.autoConnect.device0")}, REJECT),
    ("23-weakened-isolation", 'isolation.tools.copy.disable = "FALSE"\ntools.setinfo.sizeLimit = "1073741824"\nRemoteDisplay.maxConnections = "10"\n',
     {(ISO, "isolation.tools.copy.disable"), (ISO, "tools.setinfo.sizeLimit"), (ISO, "RemoteDisplay.maxConnections")}, FLAG),
    ("24-guestinfo-userdata", 'guestinfo.userdata = "I2Nsb3VkLWNvbmZpZwpjaHBhc3N3ZDoKICBsaXN0OiByb290OmhlbGxvCg=="\n',
     {(SEC, "guestinfo.userdata")}, REJECT),
    ("25-duplicate-second-malicious", 'scsi0:0.fileName = "disk.vmdk"\nscsi0:0.fileName = "/etc/passwd"\n',
     {(DUP, "scsi0:0.fileName"), (S, "scsi0:0.fileName")}, REJECT),
    ("26-key-case", 'SCSI0:0.FILENAME = "/etc/passwd"\n', {(S, "SCSI0:0.FILENAME")}, REJECT),
    ("27-escaped-traversal", 'scsi0:0.fileName = "|2E|2E|2Fx.vmdk"\n', {(S, "scsi0:0.fileName")}, REJECT),
    ("27-escaped-control-character", 'scsi0:0.fileName = "disk|0A.vmdk"\n', {(S, "scsi0:0.fileName")}, REJECT),
    ("29-disabled-namespace-still-judged", 'scsi1.present = "FALSE"\nscsi1:0.fileName = "/etc/shadow"\n', {(S, "scsi1:0.fileName")}, REJECT),
    ("31-host-network", 'ethernet0.connectionType = "bridged"\nethernet0.vnet = "/dev/vmnet0"\nethernet0.bsdName = "en0"\n',
     {(H, "ethernet0.connectionType"), (H, "ethernet0.vnet"), (H, "ethernet0.bsdName")}, REJECT),
]  # fmt: skip


def _vmx(text: str) -> Descriptor:
    return from_vmx("a.vmx", parse_vmx(text.encode()), text)


@pytest.mark.parametrize("lines, expected, verdict", [c[1:] for c in VMX_CASES], ids=[c[0] for c in VMX_CASES])
def test_vmx_case(lines, expected, verdict):
    found = outcome(_vmx(BASE_VMX + lines))
    assert set(found) == expected
    assert_verdict(found, verdict)
    # and certify sanitize scours every one of them
    pairs, changes = sanitize_vmx(parse_vmx((BASE_VMX + lines).encode()))
    assert outcome(_vmx(render_vmx(pairs))) == {}
    assert {key.lower() for _, key in expected} <= {c.key.lower() for c in changes}  # each key it was found at is changed


def test_19_vnc_with_a_stored_password_is_critical():
    found = outcome(_vmx(BASE_VMX + 'RemoteDisplay.vnc.enabled = "TRUE"\nRemoteDisplay.vnc.password = "vendor123"\n'))
    assert found[("vmx-vnc-enabled", "RemoteDisplay.vnc.enabled")] is Severity.CRITICAL


@pytest.mark.parametrize(
    "text, key",
    [('config.version = "8"\nvirtualHW.version = "3"\n', "virtualHW.version"),
     ('config.version = "8"\nvirtualHW.version = "99"\n', "virtualHW.version"),
     ('config.version = "7"\nvirtualHW.version = "19"\n', "config.version")],
    ids=["30-hardware-version-3", "30-hardware-version-99", "30-config-version-7"],
)
def test_30_versions(text, key):
    # vmx-hardware-version is medium: it fails profiles gated at medium (aws-marketplace), only flags under default.
    found = outcome(_vmx(text))
    assert found == {(HW, key): Severity.MEDIUM}


def _vmx_bundle(tmp_path, text: str, files: dict[str, bytes] = {}) -> str:
    bundle = tmp_path / "vm"
    bundle.mkdir()
    (bundle / "vm.vmx").write_text(BASE_VMX + text)
    for name, data in files.items():
        (bundle / name).write_bytes(data)
    return str(bundle / "vm.vmx")


def test_06_disk_missing_from_the_bundle(tmp_path):
    bundle = ingest(_vmx_bundle(tmp_path, 'nvme0:0.fileName = "missing.vmdk"\n'), fresh(tmp_path))
    refused(bundle, "dangling-reference", "'missing.vmdk' is referenced but not in the bundle")
    found = outcome(bundle.descriptor, bundle=bundle.facts())
    assert found == {(D, "nvme0:0.fileName"): Severity.HIGH}


def test_01_a_host_path_is_never_opened(tmp_path):
    bundle = ingest(_vmx_bundle(tmp_path, 'scsi0:0.fileName = "/etc/passwd"\n'), fresh(tmp_path))
    assert bundle.disks == [] and bundle.disk_issues == [] and bundle.disk_facts == []


def test_17_supplied_suspend_state(tmp_path):
    bundle = ingest(_vmx_bundle(tmp_path, 'checkpoint.vmState = "vm.vmss"\n', {"vm.vmss": b"\0" * 512}), fresh(tmp_path))
    found = outcome(bundle.descriptor, bundle=bundle.facts())
    assert found == {("saved-memory-state", "checkpoint.vmState"): Severity.HIGH, ("saved-memory-state", "vm.vmss"): Severity.HIGH}


def test_18_vendor_nvram_in_the_bundle_is_flagged(tmp_path):
    bundle = ingest(_vmx_bundle(tmp_path, 'nvram = "vm.nvram"\n', {"vm.nvram": b"\0" * 512}), fresh(tmp_path))
    assert outcome(bundle.descriptor, bundle=bundle.facts()) == {("saved-memory-state", "vm.nvram"): Severity.HIGH}


@pytest.mark.parametrize(
    "data, match",
    [(b'.encoding = "GBK"\ndisplayName = "\x81\x20"\n', "not valid GBK"), (b'.encoding = "x-unknown"\n', "unknown .encoding")],
    ids=["28-invalid-gbk", "28-unknown-charset"],
)
def test_28_encodings(tmp_path, data, match):
    with pytest.raises(ParseError, match=match):
        parse_vmx(data)
    (tmp_path / "vm.vmx").write_bytes(data)
    with pytest.raises(InputRejected, match=match):
        ingest(str(tmp_path / "vm.vmx"), fresh(tmp_path))


@pytest.mark.parametrize(
    "data, match",
    [(b"a = 1\n" * (1024 * 1024 // 6 + 1), "over the 1048576-byte limit"), (b'a.b = "1"\n' * 20_001, "more than 20000 entries"),
     (b'a = "' + b"x" * (64 * 1024 + 1) + b'"\n', "over 65536 characters")],
    ids=["32-size-cap", "32-key-count", "32-line-length"],
)
def test_32_vmx_limits(data, match):
    with pytest.raises(ParseError, match=match):
        parse_vmx(data)


# --- OVF descriptors (§5 cases 33-34, 40-47) ---------------------------------------------------


def _ovf(text: str) -> Descriptor:
    return from_ovf("a.ovf", parse_ovf(text.encode()), text)


def _with_items(items: str) -> str:
    return sample.ovf_descriptor("vm", "d.vmdk", 1, 1).replace("    </VirtualHardwareSection>", items + "\n    </VirtualHardwareSection>")


HREF = "References/File[@ovf:id='file1']/@ovf:href"
OVF_CASES = [
    *[(f"33-href-{label}", sample.ovf_descriptor("vm", href, 1, 1), {(S, HREF)}, REJECT)
      for label, href in (("absolute", "/etc/passwd"), ("traversal", "../x.vmdk"), ("percent-encoded", "%2e%2e/x.vmdk"),
                          ("backslashes", "a\\..\\x"))],
    *[(f"34-href-{label}", sample.ovf_descriptor("vm", href, 1, 1), {(S, HREF)}, REJECT)
      for label, href in (("metadata-service", "http://169.254.169.254/latest/meta-data/"), ("https", "https://evil.example/d.vmdk"),
                          ("file-url", "file:///etc/shadow"), ("smb", "smb://host/share/d.vmdk"))],
    *[(f"40-host-resource-{label}", _with_items(
        f"<Item><rasd:ElementName>x</rasd:ElementName><rasd:HostResource>{value}</rasd:HostResource>"
        "<rasd:InstanceID>9</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>"), {(S, "rasd:HostResource")}, REJECT)
      for label, value in (("device", "/dev/sda"), ("file-url", "file:///etc/passwd"), ("bare-name", "disk1"))],
    ("41-extraconfig-shared-folder", sample.ovf_descriptor("vm", "d.vmdk", 1, 1, {"sharedFolder0.hostPath": "/"}),
     {(SF, "sharedFolder0.hostPath"), (S, "sharedFolder0.hostPath"), ("extraconfig-smuggling", "sharedFolder0.hostPath")}, REJECT),
    ("41-extraconfig-serial", sample.ovf_descriptor("vm", "d.vmdk", 1, 1, {"serial0.fileType": "network"}),
     {(L, "serial0.fileType"), ("extraconfig-smuggling", "serial0.fileType")}, REJECT),
    ("41-extraconfig-vnc", sample.ovf_descriptor("vm", "d.vmdk", 1, 1, {"RemoteDisplay.vnc.enabled": "TRUE"}),
     {("vmx-vnc-enabled", "RemoteDisplay.vnc.enabled"), ("extraconfig-smuggling", "RemoteDisplay.vnc.enabled")}, REJECT),
    ("41-extraconfig-debug-stub", sample.ovf_descriptor("vm", "d.vmdk", 1, 1, {"debugStub.listen.guest64.remote": "TRUE"}),
     {(L, "debugStub.listen.guest64.remote"), ("extraconfig-smuggling", "debugStub.listen.guest64.remote")}, REJECT),
    ("41-extraconfig-isolation", sample.ovf_descriptor("vm", "d.vmdk", 1, 1, {"isolation.tools.copy.disable": "FALSE"}),
     {(ISO, "isolation.tools.copy.disable"), ("extraconfig-smuggling", "isolation.tools.copy.disable")}, REJECT),
    ("42-extraconfig-not-allowed", sample.ovf_descriptor("vm", "d.vmdk", 1, 1, {"sched.mem.pin": "TRUE"}),
     {("extraconfig-smuggling", "sched.mem.pin")}, REJECT),
    ("43-vbox-machine-shared-folder", sample.ovf_descriptor("vm", "d.vmdk", 1, 1).replace("  </VirtualSystem>",
        '<vbox:Machine xmlns:vbox="http://www.virtualbox.org/ovf/machine" ovf:required="false"><ovf:Info>vbox</ovf:Info>'
        '<Hardware><SharedFolders><SharedFolder name="r" hostPath="/" writable="true"/></SharedFolders></Hardware></vbox:Machine>'
        "\n  </VirtualSystem>"), {(SF, "vbox:SharedFolder/@hostPath")}, REJECT),
    ("44-password-property-default", sample.ovf_descriptor("vm", "d.vmdk", 1, 1).replace("  </VirtualSystem>",
        '<ProductSection><Info>p</Info><Property ovf:key="root-pw" ovf:type="string" ovf:password="true" ovf:value="changeme"/>'
        "</ProductSection>\n  </VirtualSystem>"), {(SEC, "Property[@ovf:key='root-pw']")}, REJECT),
    ("44-apikey-property", sample.ovf_descriptor("vm", "d.vmdk", 1, 1).replace("  </VirtualSystem>",
        '<ProductSection><Info>p</Info><Property ovf:key="APIKEY" ovf:type="string" ovf:value="0123456789abcdef"/>'
        "</ProductSection>\n  </VirtualSystem>"), {(SEC, "Property[@ovf:key='APIKEY']")}, REJECT),
    ("47-placeholders", sample.ovf_descriptor("vm", "${DISK_NAME}", "{{vmdk_file_size}}", 1),  # type: ignore[arg-type]
     {("unresolved-template-placeholder", "a.ovf")}, REJECT),
]  # fmt: skip


@pytest.mark.parametrize("text, expected, verdict", [c[1:] for c in OVF_CASES], ids=[c[0] for c in OVF_CASES])
def test_ovf_case(text, expected, verdict):
    found = outcome(_ovf(text))
    assert set(found) == expected
    assert_verdict(found, verdict)
    cleaned, changes = sanitize_ovf(text.encode())
    left = set(outcome(_ovf(cleaned)))
    assert left <= {("unresolved-template-placeholder", "a.ovf")}  # sanitize cannot render a template
    assert changes


def test_41_42_every_extraconfig_line_is_judged_by_the_vmx_rules_and_stripped_when_not_allowed():
    text = sample.ovf_descriptor("vm", "d.vmdk", 1, 1, {"sched.mem.pin": "TRUE", "cpuid.coresPerSocket": "2"})
    cleaned, changes = sanitize_ovf(text.encode())
    assert [(c.action, c.key, c.check) for c in changes if c.action == "remove"] == [
        ("remove", "vmw:ExtraConfig[@vmw:key='sched.mem.pin']", "extraconfig-smuggling")]
    assert 'vmw:key="cpuid.coresPerSocket"' in cleaned


ENVELOPE = '<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">{}</Envelope>'


@pytest.mark.parametrize(
    "data, match",
    [
        (ENVELOPE.format('<AcmeSection><Info>x</Info></AcmeSection><VirtualSystem ovf:id="a"><Info>a</Info></VirtualSystem>').encode(),
         "'AcmeSection' is required .* not one this tool understands"),
        ((CORPUS / "cot-ovf-0.9.ovf").read_bytes(), "OVF 0.9 .* is not supported"),
        (BILLION_LAUGHS, "forbidden XML construct: DTDForbidden"),
        (XXE, "forbidden XML construct: DTDForbidden"),
        (ENVELOPE.format('<VirtualSystem ovf:id="a"><Info>a</Info><xi:include xmlns:xi="http://www.w3.org/2001/XInclude" '
                         'href="file:///etc/passwd" parse="text"/></VirtualSystem>').encode(), "XInclude .* is never resolved"),
    ],
    ids=["45-unknown-required-section", "45-ovf-0.9", "46-billion-laughs", "46-external-entity", "46-xinclude"],
)
def test_45_46_descriptors_refused_outright(tmp_path, data, match):
    with pytest.raises(ParseError, match=match):
        parse_ovf(data)
    ova = make_tar(tmp_path / "a.ova", [("vm.ovf", data)])
    with pytest.raises(InputRejected, match=match):
        ingest(str(ova), fresh(tmp_path))


# --- OVF files and disks, read from an OVA (§5 cases 35-39, 65-66) -----------------------------


def _ova(tmp_path, ovf: bytes, disk: bytes, name="a.ova"):
    return make_tar(tmp_path / name, [("vm.ovf", ovf), ("vm-disk1.vmdk", disk)])


@pytest.mark.parametrize(
    "attribute, match",
    [('ovf:compression="gzip"', "compressed or chunked"), ('ovf:compression="bzip2"', "compressed or chunked"),
     ('ovf:compression="lzma"', "compressed or chunked"), ('ovf:chunkSize="1024"', "compressed or chunked")],
    ids=["35-gzip", "35-bzip2", "35-unknown-compression", "36-chunked"],
)
def test_35_36_compressed_and_chunked_files_are_refused(tmp_path, attribute, match):
    ovf = ovf_for("vm-disk1.vmdk").replace(b'ovf:href="vm-disk1.vmdk"', f'ovf:href="vm-disk1.vmdk" {attribute}'.encode())
    with pytest.raises(InputRejected, match=match):
        ingest(str(_ova(tmp_path, ovf, b"\x1f\x8b" + b"\0" * 100)), fresh(tmp_path))


@pytest.mark.parametrize("encoding", ["UTF-8", "UTF-16", "UTF-16LE", "UTF-16BE", "ISO-8859-1"])
def test_47_placeholders_are_found_in_any_encoding_the_descriptor_declares(tmp_path, vmdk_bytes, encoding):
    text = ovf_for("vm-disk1.vmdk", extra={"annotation.note": "${ADMIN_PW}"}).decode()
    text = text.replace('encoding="UTF-8"', f'encoding="{encoding}"', 1)
    data = text.encode({"UTF-16": "utf-16"}.get(encoding, encoding))
    bundle = ingest(str(_ova(tmp_path, data, vmdk_bytes)), fresh(tmp_path))
    assert [(p.name, p.location.line) for p in bundle.descriptor.placeholders] == [("${ADMIN_PW}", text[: text.index("${")].count("\n") + 1)]


def test_37_size_that_is_not_the_member_size(tmp_path, vmdk_bytes):
    with pytest.raises(InputRejected, match=f"is {len(vmdk_bytes)} bytes, but the OVF's ovf:size says {len(vmdk_bytes) + 1}"):
        ingest(str(_ova(tmp_path, ovf_for("vm-disk1.vmdk", size=len(vmdk_bytes) + 1), vmdk_bytes)), fresh(tmp_path))
    huge = ovf_for("vm-disk1.vmdk").replace(b'ovf:href="vm-disk1.vmdk"', b'ovf:href="vm-disk1.vmdk" ovf:size="' + b"9" * 5000 + b'"')
    with pytest.raises(InputRejected, match=r"vm.ovf: file 'vm-disk1.vmdk' declares an ovf:size of 5000 digits \(at most 20\)"):
        ingest(str(_ova(tmp_path, huge, vmdk_bytes, "huge.ova")), fresh(tmp_path))
    ova = _ova(tmp_path, ovf_for("vm-disk1.vmdk").replace(b'ovf:href="vm-disk1.vmdk"', b'ovf:href="vm-disk1.vmdk" ovf:size="${SIZE}"'),
               vmdk_bytes, "template.ova")
    assert ingest(str(ova), fresh(tmp_path)).disks  # a template placeholder is not a size: not compared


@pytest.mark.parametrize(
    "capacity, units, match",
    [("1", "byte * 2^60", "declares 1152921504606846976 bytes, over the"), ("-1", None, "'-1' in 'byte' is not a whole number"),
     ("1.5", "byte * 2^30", "'1.5' in 'byte \\* 2\\^30' is not a whole number"), ("${DISK_SIZE}", None, "is not a whole number"),
     ("4", "furlongs", "in 'furlongs' is not a whole number")],
    ids=["38-exabyte-capacity", "38-negative", "38-fraction", "38-placeholder", "38-unknown-units"],
)
def test_38_capacities(tmp_path, vmdk_bytes, capacity, units, match):
    ovf = ovf_for("vm-disk1.vmdk", capacity=capacity)
    if units:
        ovf = ovf.replace(f'ovf:capacity="{capacity}"'.encode(), f'ovf:capacity="{capacity}" ovf:capacityAllocationUnits="{units}"'.encode())
    with pytest.raises(InputRejected, match=match):
        ingest(str(_ova(tmp_path, ovf, vmdk_bytes)), fresh(tmp_path))


def test_38_units_that_are_understood(tmp_path, vmdk_bytes):
    ovf = ovf_for("vm-disk1.vmdk", capacity=4).replace(b'ovf:capacity="4"', b'ovf:capacity="4" ovf:capacityAllocationUnits="byte * 2^20"')
    assert [d.name for d in ingest(str(_ova(tmp_path, ovf, vmdk_bytes)), fresh(tmp_path)).disks] == ["vm-disk1.vmdk"]


def test_39_disk_naming_an_unknown_file_is_dangling(tmp_path, vmdk_bytes):
    ovf = ovf_for("vm-disk1.vmdk").replace(b'ovf:fileRef="file1"', b'ovf:fileRef="file9"')
    bundle = ingest(str(_ova(tmp_path, ovf, vmdk_bytes)), fresh(tmp_path))
    refused(bundle, "dangling-reference", "names file id 'file9', which References does not list")
    assert outcome(bundle.descriptor, bundle=bundle.facts()) == {(D, "Disk[@ovf:diskId='vmdisk1']/@ovf:fileRef"): Severity.HIGH,
                                                                 ("manifest-missing", "vm.ovf"): Severity.MEDIUM}


def test_40_host_resource_naming_an_undeclared_disk_is_dangling(tmp_path, vmdk_bytes):
    ovf = ovf_for("vm-disk1.vmdk").replace(b"ovf:/disk/vmdisk1", b"ovf:/disk/vmdisk7")
    bundle = ingest(str(_ova(tmp_path, ovf, vmdk_bytes)), fresh(tmp_path))
    assert [(i.check, i.evidence) for i in bundle.disk_issues] == [
        ("dangling-reference", "item 'Hard disk 1' uses 'ovf:/disk/vmdisk7', which the package does not declare")]
    assert (D, "rasd:HostResource") in outcome(bundle.descriptor, bundle=bundle.facts())


def test_39_two_disks_on_one_file_and_delta_chains_are_refused(tmp_path, vmdk_bytes):
    second = b'<Disk ovf:diskId="vmdisk2" ovf:fileRef="file1" ovf:capacity="4194304"/></DiskSection>'
    with pytest.raises(InputRejected, match="Disks 'vmdisk1' and 'vmdisk2' both use file 'file1'"):
        ingest(str(_ova(tmp_path, ovf_for("vm-disk1.vmdk").replace(b"</DiskSection>", second), vmdk_bytes)), fresh(tmp_path))
    delta = ovf_for("vm-disk1.vmdk").replace(b'ovf:diskId="vmdisk1"', b'ovf:diskId="vmdisk1" ovf:parentRef="base"')
    with pytest.raises(InputRejected, match="Disk 'vmdisk1' is a delta of 'base'"):
        ingest(str(_ova(tmp_path, delta, vmdk_bytes, "b.ova")), fresh(tmp_path))


def test_65_declared_format_is_not_the_bytes(tmp_path, vmdk_bytes):
    qemu_img("create", "-q", "-f", "qcow2", str(tmp_path / "q.qcow2"), "4M")
    qcow2 = (tmp_path / "q.qcow2").read_bytes()
    refused(ingest(str(_ova(tmp_path, ovf_for("vm-disk1.vmdk"), qcow2)), fresh(tmp_path)), "disk-format-mismatch",
            "declared vmdk but its bytes are qcow2")  # fmt: skip
    as_qcow2 = ovf_for("vm-disk1.vmdk").replace(b"http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized",
                                                b"http://www.gnome.org/~markmc/qcow-image-format.html")  # fmt: skip
    refused(ingest(str(_ova(tmp_path, as_qcow2, vmdk_bytes, "b.ova")), fresh(tmp_path)), "disk-format-mismatch",
            "declared qcow2 but its bytes are vmdk")  # fmt: skip


def test_66_virtual_size_over_quota_or_over_the_declared_capacity(tmp_path, vmdk_bytes):
    with pytest.raises(InputRejected, match="claims 4194304 bytes, over the 1048576-byte quota"):
        ingest(str(_ova(tmp_path, ovf_for("vm-disk1.vmdk", capacity=1024), vmdk_bytes)), fresh(tmp_path), Limits(max_virtual_bytes=1024 * 1024))
    bundle = ingest(str(_ova(tmp_path, ovf_for("vm-disk1.vmdk", capacity=1024 * 1024), vmdk_bytes, "b.ova")), fresh(tmp_path))
    refused(bundle, "disk-format-mismatch", "holds 4194304 bytes, more than the 1048576 the OVF declares")


# --- OVA archives, manifests, certificates (§5 cases 48-53) --------------------------------------


def _member(name, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def _pax_sparse(headers):
    """A regular-file member that PAX headers turn sparse: a few archive bytes, a large file on extraction."""
    info = tarfile.TarInfo("vm-disk1.vmdk")
    info.pax_headers = headers
    return info


def _pax_rename():
    info = tarfile.TarInfo("disk1.vmdk")
    info.pax_headers = {"path": "../x"}
    return info


@pytest.mark.parametrize(
    "members, fmt, match",
    [
        ([("../../evil", b"x")], tarfile.USTAR_FORMAT, "OVA member '../../evil' climbs out with '..'"),
        ([("/abs/path", b"x")], tarfile.USTAR_FORMAT, "OVA member '/abs/path' is an absolute path"),
        ([(_member("vm.ovf", tarfile.SYMTYPE, "/etc/shadow"), None)], tarfile.USTAR_FORMAT, "is a symbolic link"),
        ([(_member("disk1.vmdk", tarfile.LNKTYPE, "vm.ovf"), None)], tarfile.USTAR_FORMAT, "is a hard link"),
        ([(_member("dev", tarfile.BLKTYPE), None)], tarfile.USTAR_FORMAT, "is a block device"),
        ([(_member("fifo", tarfile.FIFOTYPE), None)], tarfile.USTAR_FORMAT, "is a FIFO"),
        ([(_pax_rename(), b"x")], tarfile.PAX_FORMAT, "OVA member '../x' climbs out"),
        ([("vm.ovf", b"<x/>"), (_pax_sparse({"GNU.sparse.map": "0,0", "GNU.sparse.size": str(64 << 20)}), b"")], tarfile.PAX_FORMAT,
         r"OVA member 'vm-disk1.vmdk' is a sparse file \(PAX header GNU.sparse.map\)"),
        ([("vm.ovf", b"<x/>"), (_pax_sparse({"GNU.sparse.size": str(64 << 20)}), b"x")], tarfile.PAX_FORMAT,
         r"OVA member 'vm-disk1.vmdk' is a sparse file \(PAX header GNU.sparse.size\)"),
        ([("vm.ovf", b"<x/>"), ("x\udcff.log", b"hi")], tarfile.USTAR_FORMAT, r"OVA member 'x\\udcff.log' is not valid UTF-8"),
        ([("vm.ovf", b"<x/>"), (_pax_sparse({"VENDOR.realsize": "1"}), b"x")], tarfile.PAX_FORMAT,
         "OVA member 'vm-disk1.vmdk' carries PAX header 'VENDOR.realsize', which is not accepted"),
        ([("a.ovf", b"<x/>"), ("b.ovf", b"<x/>")], tarfile.USTAR_FORMAT, r"exactly one \.ovf at its top level \(found a.ovf, b.ovf\)"),
        ([("vm.ovf", b"<x/>"), ("disk1.vmdk", b"a"), ("disk1.vmdk", b"b")], tarfile.USTAR_FORMAT, "'disk1.vmdk' appears twice"),
    ],
    ids=["48-traversal", "48-absolute", "48-symlink", "48-hardlink", "48-device", "48-fifo", "48-pax-rename", "48-pax-sparse-map",
         "48-pax-sparse-size", "48-name-not-utf8", "48-pax-unknown-key",
         "49-two-descriptors", "49-duplicate-member"],
)
def test_48_49_hostile_members(tmp_path, members, fmt, match):
    work = fresh(tmp_path)
    with pytest.raises(InputRejected, match=match):
        ingest(str(make_tar(tmp_path / "evil.ova", members, fmt=fmt)), work)
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()
    written = sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file() and f.name != "evil.ova")
    assert written < 1 << 20  # a sparse member is refused before its holes are filled


def test_48_pax_keys_tar_writers_set_are_accepted(tmp_path, vmdk_bytes):
    disk = _pax_sparse({"path": "vm-disk1.vmdk", "atime": "1700000000.5", "SCHILY.xattr.user.note": "x", "LIBARCHIVE.creationtime": "1"})
    ova = make_tar(tmp_path / "a.ova", [("vm.ovf", ovf_for("vm-disk1.vmdk")), (disk, vmdk_bytes)], fmt=tarfile.PAX_FORMAT)
    assert [d.name for d in ingest(str(ova), fresh(tmp_path)).disks] == ["vm-disk1.vmdk"]


def _signed(tmp_path, vmdk_bytes, order, name="a.ova", cert_days=(-1, 365), issuer=None):
    ovf = ovf_for("vm-disk1.vmdk")
    manifest = mf(f"SHA256(vm.ovf)= {sha('sha256', ovf)}", f"SHA256(vm-disk1.vmdk)= {sha('sha256', vmdk_bytes)}")
    key, cert = _signer(days=cert_days, **(issuer or {}))
    data = {"vm.ovf": ovf, "vm.mf": manifest, "vm.cert": _cert_file(key, cert, manifest), "vm-disk1.vmdk": vmdk_bytes}
    return make_tar(tmp_path / name, [(n, data[n]) for n in order])


def test_50_descriptor_not_first_and_split_manifest_are_noted_or_refused_per_policy(tmp_path, vmdk_bytes):
    late = _signed(tmp_path, vmdk_bytes, ["vm-disk1.vmdk", "vm.ovf", "vm.mf", "vm.cert"])
    assert "the OVF descriptor is not the first member of the OVA ('vm-disk1.vmdk' is)" in ingest(str(late), fresh(tmp_path)).notes
    with pytest.raises(InputRejected, match="not the first member .* requires DSP0243 member order"):
        ingest(str(late), fresh(tmp_path), policy=IngestPolicy(strict_ova_order=True))
    split = _signed(tmp_path, vmdk_bytes, ["vm.ovf", "vm.mf", "vm-disk1.vmdk", "vm.cert"], "b.ova")
    assert any("not where DSP0243 puts them" in n for n in ingest(str(split), fresh(tmp_path)).notes)
    with pytest.raises(InputRejected, match="not where DSP0243 puts them"):
        ingest(str(split), fresh(tmp_path), policy=IngestPolicy(strict_ova_order=True))


@pytest.mark.parametrize(
    "lines, match",
    [
        (lambda o, d: [f"SHA256(vm.ovf)= {sha('sha256', o)}"], "the manifest does not cover vm-disk1.vmdk"),
        (lambda o, d: [f"SHA256(vm.ovf)= {sha('sha256', o)}", f"SHA256(vm-disk1.vmdk)= {sha('sha256', d)}",
                       f"SHA256(ghost.iso)= {'0' * 64}"], "lists 'ghost.iso', which is not in the bundle"),
        (lambda o, d: [f"MD5(vm.ovf)= {sha('md5', o)}"], "MD5 and other forms are refused"),
        (lambda o, d: [f"SHA256 (vm.ovf) = {sha('sha256', o)}"], "is not 'SHA256\\(name\\)= hex'"),
        (lambda o, d: [f"SHA256(../x)= {sha('sha256', o)}"], "'../x' is not a plain file name"),
        (lambda o, d: [f"SHA256(vm.ovf)= {sha('sha256', o)}", f"SHA256(vm-disk1.vmdk)= {sha('sha256', d + b'x')}"],
         "vm-disk1.vmdk: SHA256 digest does not match the manifest"),
    ],
    ids=["51-file-not-covered", "51-lists-a-non-member", "51-md5", "51-malformed-line", "51-path-in-name", "51-digest-mismatch"],
)
def test_51_manifests(tmp_path, vmdk_bytes, lines, match):
    ovf = ovf_for("vm-disk1.vmdk")
    ova = make_tar(tmp_path / "a.ova", [("vm.ovf", ovf), ("vm.mf", mf(*lines(ovf, vmdk_bytes))), ("vm-disk1.vmdk", vmdk_bytes)])
    with pytest.raises(InputRejected, match=match):
        ingest(str(ova), fresh(tmp_path))


def test_51_sha1_manifests_are_noted_or_refused_per_policy(tmp_path, vmdk_bytes):
    ovf = ovf_for("vm-disk1.vmdk")
    manifest = mf(f"SHA1(vm.ovf)= {sha('sha1', ovf)}", f"SHA1(vm-disk1.vmdk)= {sha('sha1', vmdk_bytes)}")
    bundle = ingest(str(make_tar(tmp_path / "a.ova", [("vm.ovf", ovf), ("vm.mf", manifest), ("vm-disk1.vmdk", vmdk_bytes)])), fresh(tmp_path))
    assert bundle.manifest == "vm.mf" and bundle.notes == ["the manifest uses SHA1, which no longer resists forgery; prefer SHA256"]
    with pytest.raises(InputRejected, match="'vm.mf' uses SHA1 digests, and the profile requires SHA256 or SHA512"):  # a strict profile
        ingest(str(tmp_path / "a.ova"), fresh(tmp_path), policy=IngestPolicy(reject_sha1_manifest=True))


def test_52_certificates(tmp_path, vmdk_bytes):
    order = ["vm.ovf", "vm.mf", "vm.cert", "vm-disk1.vmdk"]
    ovf = ovf_for("vm-disk1.vmdk")
    manifest = mf(f"SHA256(vm.ovf)= {sha('sha256', ovf)}", f"SHA256(vm-disk1.vmdk)= {sha('sha256', vmdk_bytes)}")
    key, cert = _signer()
    forged = make_tar(tmp_path / "f.ova", [("vm.ovf", ovf), ("vm.mf", manifest), ("vm.cert", _cert_file(key, cert, manifest + b"x")),
                                           ("vm-disk1.vmdk", vmdk_bytes)])  # fmt: skip
    with pytest.raises(InputRejected, match="vm.cert': the package signature does not match the manifest"):
        ingest(str(forged), fresh(tmp_path))
    unsigned = REGISTRY.checks["unsigned-bundle"]
    for days, evidence in (((-400, -30), "valid"), ((-1, 365), "self-signed")):
        bundle = ingest(str(_signed(tmp_path, vmdk_bytes, order, f"{days[0]}.ova", days)), fresh(tmp_path))
        results = [r for r in unsigned.evaluate(bundle=bundle.facts()) if r.status.value == "fail"]
        assert any(evidence in r.evidence for r in results), [r.evidence for r in results]
        assert unsigned.severity is Severity.INFO  # flagged, per the default policy
        with pytest.raises(InputRejected, match="is not trusted .* the profile requires a trusted signer"):  # rejected, per a strict one
            ingest(str(tmp_path / f"{days[0]}.ova"), fresh(tmp_path), policy=IngestPolicy(anchors=(), require_trusted_signer=True))
    # A chain to a CA the trust store does not hold.
    ca_key, ca_cert = _signer("Unknown CA")
    issuer = {"issuer_key": ca_key, "issuer_name": ca_cert.subject}
    bundle = ingest(str(_signed(tmp_path, vmdk_bytes, order, "ca.ova", issuer=issuer)), fresh(tmp_path),
                    policy=IngestPolicy(anchors=(_signer("Provider Root")[1],)))  # fmt: skip
    assert [r.evidence for r in unsigned.evaluate(bundle=bundle.facts()) if r.status.value == "fail"] == [
        "the signer CN=ACME Appliances is not vouched for by the trust store: no certificate in the trust store issued CN=Unknown CA's certificate"]


@pytest.mark.parametrize("kind", ["53-gzip-tar", "53-zip"])
def test_53_compressed_or_zip_ova(tmp_path, kind):
    path = tmp_path / "a.ova"
    if kind == "53-gzip-tar":
        with tarfile.open(path, "w:gz") as tar:
            tar.addfile(tarfile.TarInfo("vm.ovf"), io.BytesIO(b""))
    else:
        import zipfile

        with zipfile.ZipFile(path, "w") as z:
            z.writestr("vm.ovf", "<x/>")
    with pytest.raises(InputRejected, match="compressed archive; an OVA must be an uncompressed tar"):
        ingest(str(path), fresh(tmp_path))


# --- disk images (§5 cases 54-64) -----------------------------------------------------------------


def _qcow2(tmp_path, patch=None, *create_args, name="d.qcow2") -> str:
    path = tmp_path / name
    qemu_img("create", "-q", "-f", "qcow2", *create_args, str(path), "1M")
    if patch:
        data = bytearray(path.read_bytes())
        patch(data)
        path.write_bytes(bytes(data))
    return str(path)


def _backing(name: bytes):
    def patch(data: bytearray):
        data[8:16] = struct.pack(">Q", 0x800)
        data[16:20] = struct.pack(">I", len(name))
        data[0x800 : 0x800 + len(name)] = name

    return patch


@pytest.mark.parametrize(
    "backing",
    [b"/etc/shadow", b'json:{"driver":"file","filename":"/etc/shadow"}', b"nbd://10.0.0.1/x"],
    ids=["54-backing-file", "54-json-pseudo-protocol", "54-nbd-url"],
)
def test_54_qcow2_backing_files(tmp_path, backing):
    bundle = ingest(_qcow2(tmp_path, _backing(backing)), fresh(tmp_path))
    refused(bundle, "disk-external-reference", "backing file")
    assert backing.decode() in bundle.disk_issues[0].evidence


def _set_incompatible(bits: int):
    def patch(data: bytearray):
        data[72:80] = struct.pack(">Q", struct.unpack_from(">Q", data, 72)[0] | bits)

    return patch


def test_55_qcow2_external_data_file(tmp_path):
    refused(ingest(_qcow2(tmp_path, _set_incompatible(0x4)), fresh(tmp_path)), "disk-external-reference", "external data file")

    def extension_only(data: bytearray):  # the data-file name stays even with the incompatible bit cleared
        data[72:80] = struct.pack(">Q", struct.unpack_from(">Q", data, 72)[0] & ~0x4)

    path = _qcow2(tmp_path, extension_only, "-o", "data_file=/dev/sda", name="e.qcow2")
    refused(ingest(path, fresh(tmp_path)), "disk-external-reference", "external data file '/dev/sda'")


def _field(offset: int, fmt: str, value: int):
    def patch(data: bytearray):
        struct.pack_into(fmt, data, offset, value)

    return patch


@pytest.mark.parametrize(
    "patch, match",
    [(_set_incompatible(1 << 5), "unknown incompatible features 0x20"), (_set_incompatible(0x2), "marked corrupt"),
     (_field(32, ">I", 1), "encrypted"), (_field(20, ">I", 8), "cluster_bits 8 is outside"), (_field(20, ">I", 40), "cluster_bits 40"),
     (_field(4, ">I", 4), "qcow2 version 4 is not 2 or 3")],
    ids=["56-unknown-incompatible-bit", "56-corrupt-bit", "56-encrypted", "56-cluster-bits-8", "56-cluster-bits-40", "56-version-4"],
)
def test_56_qcow2_headers_qemu_should_not_open(tmp_path, patch, match):
    with pytest.raises(InputRejected, match=match):
        ingest(_qcow2(tmp_path, patch), fresh(tmp_path))


@pytest.mark.parametrize("kind", ["57-qcow2-bytes", "57-sparse-vmdk-bytes", "57-vmdk-descriptor-bytes"])
def test_57_disk_declared_raw_whose_bytes_are_another_format(tmp_path, kind):
    if kind == "57-qcow2-bytes":
        data = open(_qcow2(tmp_path), "rb").read()
    elif kind == "57-sparse-vmdk-bytes":
        data = _sparse_vmdk(tmp_path / "s.vmdk").read_bytes()
    else:
        data = b'# Disk DescriptorFile\nversion=1\ncreateType="monolithicFlat"\nRW 8 FLAT "x-flat.vmdk" 0\n'
    (tmp_path / "disk.img").write_bytes(data)
    fmt = {"57-qcow2-bytes": "qcow2"}.get(kind, "vmdk")
    # Never opened as raw: the bundle declares raw (.img) and the bytes say otherwise, so the disk is left out.
    refused(ingest(str(tmp_path / "disk.img"), fresh(tmp_path)), "disk-format-mismatch", f"declared raw but its bytes are {fmt}")


def test_58_vmdk_flat_extent_on_a_host_file(tmp_path):
    text = '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "/etc/passwd" 0\n'
    bundle = ingest(_vmx_bundle(tmp_path, 'scsi0:0.fileName = "disk.vmdk"\n', {"disk.vmdk": text.encode()}), fresh(tmp_path))
    refused(bundle, "disk-external-reference", "extent '/etc/passwd' is not a file beside the descriptor")
    _sparse_vmdk(tmp_path / "emb.vmdk", _zero_capacity_with_host_extent)  # the embedded form
    with pytest.raises(InputRejected, match="zero capacity"):
        ingest(str(tmp_path / "emb.vmdk"), fresh(tmp_path))


@pytest.mark.parametrize(
    "create_type, extent, match",
    [("fullDevice", 'RW 2048 FLAT "disk-flat.vmdk" 0', "createType 'fullDevice' maps host devices"),
     ("vmfsRawDeviceMap", 'RW 2048 VMFSRDM "disk-rdm.vmdk"', "createType 'vmfsRawDeviceMap' maps host devices"),
     ("vmfs", 'RW 2048 VMFSRDM "disk-flat.vmdk"', "extent type VMFSRDM maps a device")],
    ids=["59-full-device", "59-raw-device-map", "59-vmfs-rdm-extent"],
)
def test_59_device_mapping_vmdks(tmp_path, create_type, extent, match):
    text = f'# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="{create_type}"\n{extent}\n'
    files = {"disk.vmdk": text.encode(), "disk-flat.vmdk": b"\0" * 4096, "disk-rdm.vmdk": b"\0" * 4096}
    refused(ingest(_vmx_bundle(tmp_path, 'scsi0:0.fileName = "disk.vmdk"\n', files), fresh(tmp_path)), "disk-external-reference", match)


@pytest.mark.parametrize(
    "lines, match",
    [('parentFileNameHint="/vmfs/volumes/ds/base.vmdk"\nparentCID=ffffffff\n', "parent '/vmfs/volumes/ds/base.vmdk'"),
     ("parentCID=12345678\n", "parentCID is set")],
    ids=["60-parent-hint", "60-parent-cid"],
)
def test_60_delta_vmdks(tmp_path, lines, match):
    text = f'# Disk DescriptorFile\nversion=1\nCID=fffffffe\n{lines}createType="monolithicFlat"\nRW 8 FLAT "disk-flat.vmdk" 0\n'
    files = {"disk.vmdk": text.encode(), "disk-flat.vmdk": b"\0" * 4096}
    refused(ingest(_vmx_bundle(tmp_path, 'scsi0:0.fileName = "disk.vmdk"\n', files), fresh(tmp_path)), "disk-external-reference", match)


def _unknown_descriptor_line(data: bytearray):
    start = 0x200
    end = data.index(b"\0", start)
    text = data[start:end] + b"magic happens here\n\0"
    data[start:start + len(text)] = text  # over the descriptor's NUL padding: the file keeps its length


@pytest.mark.parametrize(
    "patch, match",
    [(_field(28, "<Q", 5), "descriptor at sector 5"), (_field(36, "<Q", 4096), "4096 sectors"),
     (_unknown_descriptor_line, "VMDK descriptor line not understood: 'magic happens here'")],
    ids=["61-descriptor-offset", "61-descriptor-size", "61-unknown-descriptor-line"],
)
def test_61_sparse_vmdk_descriptor_placement_and_content(tmp_path, patch, match):
    with pytest.raises(InputRejected, match=match):
        ingest(str(_sparse_vmdk(tmp_path / "s.vmdk", patch)), fresh(tmp_path))


def test_62_stream_optimized_compression_and_footer(tmp_path, vmdk_bytes):
    data = bytearray(vmdk_bytes)
    struct.pack_into("<H", data, 77, 2)
    (tmp_path / "a.vmdk").write_bytes(bytes(data))
    with pytest.raises(InputRejected, match="compressed grains use algorithm 2, not deflate"):
        ingest(str(tmp_path / "a.vmdk"), fresh(tmp_path))
    data = bytearray(vmdk_bytes)
    struct.pack_into("<Q", data, 56, 0xFFFFFFFFFFFFFFFF)  # grain directory "in the footer"
    (tmp_path / "b.vmdk").write_bytes(bytes(data[: len(data) - 1536]) + b"\0" * 1536)
    # A truncated stream, never handed to qemu: the disk check says why.
    refused(ingest(str(tmp_path / "b.vmdk"), fresh(tmp_path)), "disk-corrupt", "disk 'b.vmdk': disk truncated: .* has no footer")


def test_63_differencing_vhd_and_vhdx_with_a_parent(tmp_path):
    raw = tmp_path / "base.raw"
    raw.write_bytes(b"\0" * (1024 * 1024))
    qemu_img("convert", "-q", "-O", "vpc", str(raw), str(tmp_path / "d.vhd"))
    data = bytearray((tmp_path / "d.vhd").read_bytes())
    struct.pack_into(">I", data, 60, 4)  # disk type 4: differencing
    (tmp_path / "diff.vhd").write_bytes(bytes(data))
    refused(ingest(str(tmp_path / "diff.vhd"), fresh(tmp_path)), "disk-external-reference", "differencing VHD")
    qemu_img("convert", "-q", "-O", "vhdx", str(raw), str(tmp_path / "d.vhdx"))
    data = bytearray((tmp_path / "d.vhdx").read_bytes())
    region = 192 * 1024
    metadata_guid = bytes.fromhex("06A27C8B90479A4BB8FE575F050F886E")
    for i in range(struct.unpack_from("<I", data, region + 8)[0]):
        entry = region + 16 + 32 * i
        if data[entry : entry + 16] == metadata_guid:
            meta = struct.unpack_from("<Q", data, entry + 16)[0]
    data[meta + 32 : meta + 48] = bytes.fromhex("2D5FD3A80BB34D45ABF7D3D84834AB0C")  # first item becomes a Parent Locator
    (tmp_path / "child.vhdx").write_bytes(bytes(data))
    refused(ingest(str(tmp_path / "child.vhdx"), fresh(tmp_path)), "disk-external-reference", "parent locator")


@pytest.mark.parametrize(
    "name, data, shown",
    [("disk.img", b"QED\0" + b"\0" * 4092, "declared raw but its bytes are qed"),
     ("disk.vmdk", b"COWD" + b"\0" * 4092, "declared vmdk but its bytes are cowd"),
     ("disk.vmdk", struct.pack("<I", 0xCAFEBABE) + b"\0" * 4092, "declared vmdk but its bytes are raw"),
     ("disk.vmdk", b"WithoutFreeSpace" + b"\0" * 4080, "declared vmdk but its bytes are raw")],
    ids=["64-qed", "64-cowd", "64-sesparse", "64-parallels"],
)
def test_64_formats_never_handed_to_qemu(tmp_path, name, data, shown):
    (tmp_path / name).write_bytes(data)
    refused(ingest(str(tmp_path / name), fresh(tmp_path)), "disk-format-mismatch", shown)


def test_every_case_of_section_5_is_here():
    """Each test names its §5 case: test_NN_..., test_NN_MM_..., or parametrized ids 'NN-...'."""
    import re
    import sys

    covered: set[int] = set()
    for name, function in vars(sys.modules[__name__]).items():
        if not name.startswith("test_") or not callable(function):
            continue
        covered |= {int(n) for n in re.match(r"test_((?:\d{2}_)*)", name).group(1).split("_") if n}
        for mark in getattr(function, "pytestmark", []):
            ids = mark.kwargs.get("ids") or ([a for a in mark.args[1]] if mark.name == "parametrize" and isinstance(mark.args[1][0], str) else [])
            covered |= {int(m.group(1)) for i in ids if isinstance(i, str) and (m := re.match(r"(\d{2})-", i))}
    assert covered == set(range(1, 67)), sorted(set(range(1, 67)) ^ covered)
