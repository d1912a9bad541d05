"""The descriptor check catalog: a failing and a passing case each, and the real corpus's notable features."""

from __future__ import annotations

import pytest
from test_parsers import CORPUS

from certify.bundle.descriptor import Descriptor, from_ovf, from_vmx
from certify.bundle.ingest import BundleFacts
from certify.bundle.ovf import parse_ovf
from certify.bundle.vmx import parse_vmx
from certify.model import Facts
from certify.plugins.manager import load_registry
from certify.runner import run_checks
from certify.sample import ovf_descriptor

REGISTRY = load_registry()
# unsigned-bundle has its own test below; it would fire on every unsigned example here.
DESCRIPTOR_CHECKS = [c for c in REGISTRY.checks.values() if c.layer.value in ("descriptor", "bundle") and c.id != "unsigned-bundle"]


def vmx(text: str) -> Descriptor:
    return from_vmx("a.vmx", parse_vmx(text.encode()), text)


def ovf(extra: dict[str, str] | None = None, body: str = "") -> Descriptor:
    text = ovf_descriptor("vm", "d.vmdk", 1, 1, extra or {})
    if body:
        text = text.replace("    <OperatingSystemSection", body + "\n    <OperatingSystemSection")
    return from_ovf("a.ovf", parse_ovf(text.encode()), text)


def failing(descriptor: Descriptor, members: tuple[str, ...] = ()) -> set[tuple[str, str | None]]:
    manifest = "a.mf" if descriptor.kind == "ovf" else None
    facts = Facts(values={"descriptor": descriptor, "bundle": BundleFacts(descriptor.kind, descriptor.file, manifest, members)})
    findings, _ = run_checks(DESCRIPTOR_CHECKS, facts)
    return {(f.check_id, f.location.key or f.location.file) for f in findings if f.status.value == "fail"}


CLEAN_VMX = 'config.version = "8"\nvirtualHW.version = "19"\nscsi0:0.fileName = "d.vmdk"\n'


def test_a_clean_vmx_passes_every_descriptor_check():
    assert failing(vmx(CLEAN_VMX)) == set()


@pytest.mark.parametrize(
    "lines, expected",
    [
        ('ide1:0.deviceType = "cdrom-raw"\nide1:0.fileName = "auto detect"\n', {("host-device-passthrough", "ide1:0.deviceType")}),
        ('floppy0.fileType = "device"\n', {("host-device-passthrough", "floppy0.fileType")}),
        ('serial0.fileType = "file"\nserial0.fileName = "serial.log"\n', {("host-device-passthrough", "serial0.fileType")}),
        ('floppy0.fileType = "file"\nfloppy0.fileName = "boot.flp"\n', set()),
        ('usb.autoConnect.device0 = "vid:0x0781 pid:0x5581"\n', {("host-device-passthrough", "usb.autoConnect.device0")}),
        ('pciPassthru0.present = "TRUE"\n', {("host-device-passthrough", "pciPassthru0.present")}),
        ('ethernet0.vnet = "/dev/vmnet0"\n', {("host-device-passthrough", "ethernet0.vnet")}),
        ('serial0.fileType = "pipe"\n', {("host-listener-or-pipe", "serial0.fileType")}),
        ('serial0.fileName = "telnet://0.0.0.0:2323"\n',
         {("host-listener-or-pipe", "serial0.fileName"), ("storage-path-outside-bundle", "serial0.fileName")}),
        ('debugStub.listen.guest64.remote = "TRUE"\n', {("host-listener-or-pipe", "debugStub.listen.guest64.remote")}),
        ('sharedFolder0.hostPath = "/"\n', {("shared-folder", "sharedFolder0.hostPath"), ("storage-path-outside-bundle", "sharedFolder0.hostPath")}),
        ('hgfs.mapRootShare = "TRUE"\n', {("shared-folder", "hgfs.mapRootShare")}),
        ('RemoteDisplay.vnc.password = "x"\n', {("descriptor-secret", "RemoteDisplay.vnc.password")}),
        ('guestinfo.admin_password = "x"\n', {("descriptor-secret", "guestinfo.admin_password")}),
        ('guestinfo.userdata = "I2Nsb3VkLWNvbmZpZwpjaHBhc3N3ZDoKICBsaXN0OiByb290OmhlbGxvCg=="\n', {("descriptor-secret", "guestinfo.userdata")}),
        ('scsi0:0.fileName = "other.vmdk"\n', {("duplicate-descriptor-key", "scsi0:0.fileName")}),
        ('SCSI0:0.FILENAME = "/etc/passwd"\n',
         {("duplicate-descriptor-key", "SCSI0:0.FILENAME"), ("storage-path-outside-bundle", "SCSI0:0.FILENAME")}),
        ('isolation.tools.copy.disable = "FALSE"\n', {("vmx-isolation-settings", "isolation.tools.copy.disable")}),
        ('tools.setinfo.sizeLimit = "1073741824"\n', {("vmx-isolation-settings", "tools.setinfo.sizeLimit")}),
        ('sched.mem.pshare.salt = "x"\n', {("vmx-isolation-settings", "sched.mem.pshare.salt")}),
        ('checkpoint.vmState = "vm.vmss"\n', {("saved-memory-state", "checkpoint.vmState")}),
        ('annotation = "built from ${BUILD_ID}"\n', {("unresolved-template-placeholder", "a.vmx")}),
    ],
)
def test_each_descriptor_problem_is_found(lines, expected):
    assert failing(vmx(CLEAN_VMX + lines)) == expected


def test_vnc_switched_off_still_leaks_its_password_but_is_not_enabled():
    found = failing(vmx(CLEAN_VMX + 'RemoteDisplay.vnc.enabled = "FALSE"\nRemoteDisplay.vnc.password = "x"\n'))
    assert found == {("descriptor-secret", "RemoteDisplay.vnc.password")}


@pytest.mark.parametrize("version, bad", [("19", False), ("13", False), ("22", False), ("3", True), ("99", True), ("x", True)])
def test_hardware_version_window(version, bad):
    found = failing(vmx(f'virtualHW.version = "{version}"\n'))
    assert (("vmx-hardware-version", "virtualHW.version") in found) == bad
    assert ("vmx-hardware-version", "a.vmx") in failing(vmx('config.version = "8"\n'))  # not stated at all


def test_ovf_extra_config_outside_the_allowed_set_and_password_properties():
    found = failing(ovf({"cpuid.coresPerSocket": "2", "sched.mem.pin": "TRUE"}))
    assert found == {("extraconfig-smuggling", "sched.mem.pin")}
    product = ('<ProductSection><Info>p</Info>'
               '<Property ovf:key="admin-password" ovf:type="string" ovf:password="true" ovf:value="changeme"/>'
               '<Property ovf:key="hostname" ovf:type="string" ovf:value="appliance"/>'
               '<Property ovf:key="APIKEY" ovf:type="string" ovf:value="abc123"/></ProductSection>')  # fmt: skip
    assert failing(ovf(body=product)) == {
        ("descriptor-secret", "Property[@ovf:key='admin-password']"),
        ("descriptor-secret", "Property[@ovf:key='APIKEY']"),
    }


def test_extra_config_duplicates_are_per_virtual_system():
    found = failing(ovf({"cpuid.coresPerSocket": "2"}, body=""))
    assert not any(c == "duplicate-descriptor-key" for c, _ in found)


def test_bundle_members():
    members = ("vm.ovf", "vm.mf", "vm-disk1.vmdk", "vmware.log", "vm.vmss", "vm.vmdk.lck/M1.lck")
    found = failing(ovf(), members)
    assert found == {("saved-memory-state", "vm.vmss"), ("bundle-extraneous-files", "vmware.log"),
                     ("bundle-extraneous-files", "vm.vmdk.lck/M1.lck")}  # fmt: skip


CORPUS_FEATURES = {
    "libvirt-graphics-vnc.vmx": {"vmx-vnc-enabled", "descriptor-secret"},
    "libvirt-serial-network-server.vmx": {"host-listener-or-pipe"},
    "libvirt-sharedfolder.vmx": {"shared-folder", "storage-path-outside-bundle"},
    "libvirt-gsx-in-the-wild-1.vmx": {"host-device-passthrough", "storage-path-outside-bundle", "vmx-hardware-version"},
    "libvirt-fusion-in-the-wild-1.vmx": {"host-device-passthrough", "vmx-isolation-settings", "vmx-hardware-version"},
    "libvirt-esx-in-the-wild-1.vmx": {"host-device-passthrough"},
    "virt-v2v-msedge-win10-workstation.vmx": {"shared-folder", "vmx-hardware-version"},
    "virt-v2v-esxi-21disks.vmx": {"storage-path-outside-bundle"},
    "virt-v2v-esxi67-nvme.vmx": {"host-device-passthrough"},
    "photon-4.0-ova-template.vmx": {"host-device-passthrough"},
    "vyos-equuleus-template.ovf": {"unresolved-template-placeholder", "extraconfig-smuggling"},
    "k8s-image-builder-capi-template.ovf": {"unresolved-template-placeholder", "vmx-hardware-version"},
    "home-assistant-os.ovf": {"extraconfig-smuggling", "host-device-passthrough"},  # its vbox:Machine: bridged NIC, host audio
}


@pytest.mark.parametrize("name, expected", sorted(CORPUS_FEATURES.items()))
def test_real_descriptors_show_their_notable_features(name, expected):
    data = (CORPUS / name).read_bytes()
    if name.endswith(".vmx"):
        parsed = parse_vmx(data)
        descriptor = from_vmx(name, parsed, data.decode(parsed.encoding))
    else:
        descriptor = from_ovf(name, parse_ovf(data), data.decode("utf-8", "replace"))
    found = {check for check, _ in failing(descriptor)}
    assert expected <= found, (name, expected - found)


def test_empty_password_properties_are_not_secrets():
    # Their defaults are empty: the deployer supplies them (Cisco CSR1000v, VyOS).
    for name in ("cot-csr1000v.ovf", "vyos-equuleus-template.ovf"):
        data = (CORPUS / name).read_bytes()
        descriptor = from_ovf(name, parse_ovf(data), data.decode())
        assert any(p.secret for p in descriptor.properties)
        assert not any(c == "descriptor-secret" for c, _ in failing(descriptor))


def test_unsigned_bundle():
    from certify.bundle.signature import Signer

    def run(signer, kind="ova"):
        results = list(REGISTRY.checks["unsigned-bundle"].evaluate(bundle=BundleFacts(kind, "a.ovf", "a.mf", (), signer)))
        return [(r.status.value, r.evidence.split(" ")[0]) for r in results]

    def signer(**kw):
        base = dict(subject="CN=ACME", issuer="CN=CA", self_signed=False, not_before="a", not_after="b", expired=False, algorithm="SHA256")
        return Signer(**(base | kw))

    assert run(None) == [("fail", "no")]
    assert run(signer()) == [("fail", "issuer")]  # no trust store: nobody verified CN=CA
    assert run(signer(trusted=True, trust="chains to the trust store's CN=CA")) == []
    assert run(signer(self_signed=True, issuer="CN=ACME")) == [("fail", "signed")]
    assert run(signer(expired=True)) == [("fail", "the")]
    assert run(None, kind="vmx") == [("not-applicable", "only")]


# --- evasions and false alarms found in review -------------------------------------------------


def test_extra_config_keys_are_vmx_keys_or_the_ovf_is_refused():
    from certify.errors import ParseError

    with pytest.raises(ParseError, match="not a VMX key"):
        ovf({"shared folder": "/"})
    spaced = ovf_descriptor("vm", "d.vmdk", 1, 1, {"sharedFolder0.hostPath ": "/"})
    found = failing(from_ovf("a.ovf", parse_ovf(spaced.encode()), spaced))
    assert ("shared-folder", "sharedFolder0.hostPath") in found


CLOUD_CONFIG = b"#cloud-config\nchpasswd:\n  list: root:Sup3rS3cret\n"


@pytest.mark.parametrize("encoding", ["base64", "wrapped", "gzip+base64"])
def test_user_data_secrets_in_any_encoding(encoding):
    import base64
    import gzip

    data = gzip.compress(CLOUD_CONFIG) if encoding.startswith("gzip") else CLOUD_CONFIG
    value = base64.b64encode(data).decode()
    if encoding == "wrapped":
        value = " ".join(value[i : i + 20] for i in range(0, len(value), 20))  # as base64(1) wraps, newlines folded
    found = failing(vmx(CLEAN_VMX + f'guestinfo.userdata = "{value}"\n'))
    assert ("descriptor-secret", "guestinfo.userdata") in found


def test_property_defaults_in_value_children_and_contents_are_seen_and_booleans_are_not():
    product = ('<ProductSection><Info>p</Info>'
               '<Property ovf:key="admin-password" ovf:type="string" ovf:password="true" ovf:value="">'
               '<Value ovf:value="hunter2" ovf:configuration="small"/></Property>'
               '<Property ovf:key="user-data" ovf:type="string" ovf:value="I2Nsb3VkLWNvbmZpZwpjaHBhc3N3ZDoKICBsaXN0OiByb290OmhlbGxvCg=="/>'
               '<Property ovf:key="ssh-password-auth" ovf:type="boolean" ovf:value="true"/>'
               '<Property ovf:key="nic-passthrough" ovf:type="string" ovf:value="yes"/>'
               '<Property ovf:key="password-min-length" ovf:type="uint8" ovf:value="12"/></ProductSection>')  # fmt: skip
    found = {key for check, key in failing(ovf(body=product)) if check == "descriptor-secret"}
    assert found == {"Property[@ovf:key='admin-password']", "Property[@ovf:key='user-data']"}


def test_credentials_in_urls_never_reach_the_report():
    from certify.bundle.descriptor import redact

    desc = vmx(CLEAN_VMX + 'serial0.fileName = "telnet://admin:Sup3rS3cret@0.0.0.0:23/?token=abc"\n')
    findings, _ = run_checks(DESCRIPTOR_CHECKS, Facts(values={"descriptor": desc, "bundle": BundleFacts("vmx", "a.vmx", None)}))
    text = repr([(f.evidence, f.location) for f in findings])
    assert "Sup3rS3cret" not in text and "abc" not in text and "telnet://***@" in text
    assert redact("https://u:p@host/x?k=v") == "https://***@host/x?***"


@pytest.mark.parametrize("value, bad", [("TRUE", False), ("true", False), ("FALSE|00", True), ("F", True), ("", True)])
def test_disable_keys_are_safe_only_when_plainly_true(value, bad):
    found = failing(vmx(CLEAN_VMX + f'isolation.tools.copy.disable = "{value}"\n'))
    assert (("vmx-isolation-settings", "isolation.tools.copy.disable") in found) == bad


def test_odd_numbers_are_findings_not_crashes():
    found = failing(vmx(CLEAN_VMX + 'tools.setinfo.sizeLimit = "\u00b2"\nRemoteDisplay.maxConnections = "' + "9" * 5000 + '"\n'))
    assert {("vmx-isolation-settings", "tools.setinfo.sizeLimit"), ("vmx-isolation-settings", "RemoteDisplay.maxConnections")} <= found


def test_placeholders_anywhere_and_in_template_dialects():
    minified = ovf_descriptor("vm", "${DISK_NAME}", 1, 1).replace("\n", " ").replace("<References>", "<!--" + "x" * 100_000 + "--><References>")
    found = failing(from_ovf("a.ovf", parse_ovf(minified.encode()), minified))
    assert ("unresolved-template-placeholder", "a.ovf") in found
    for text in ("{{ .Name }}", "{{ size | int }}"):
        assert ("unresolved-template-placeholder", "a.vmx") in failing(vmx(CLEAN_VMX + f'annotation = "{text}"\n'))


def test_ovf_hardware_families_pass_when_one_is_in_the_window():
    def families(value):
        text = ovf_descriptor("vm", "d.vmdk", 1, 1).replace("vmx-19", value)
        return {c for c, _ in failing(from_ovf("a.ovf", parse_ovf(text.encode()), text))}

    assert "vmx-hardware-version" not in families("vmx-08 vmx-19")
    assert "vmx-hardware-version" not in families("VMX-19")
    assert "vmx-hardware-version" in families("vmx-07 vmx-08")


def test_ovf_hardware_items_host_devices_and_host_resources():
    items = ('<Item><rasd:ElementName>Floppy 1</rasd:ElementName><rasd:InstanceID>9</rasd:InstanceID>'
             '<rasd:ResourceType>14</rasd:ResourceType></Item>'
             '<Item><rasd:ElementName>Serial 1</rasd:ElementName><rasd:InstanceID>10</rasd:InstanceID>'
             '<rasd:ResourceType>21</rasd:ResourceType></Item>'
             '<Item><rasd:ElementName>Host disk</rasd:ElementName><rasd:HostResource>/dev/sda</rasd:HostResource>'
             '<rasd:InstanceID>11</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>'
             '<Item><rasd:ElementName>Odd disk</rasd:ElementName><rasd:HostResource>disk1</rasd:HostResource>'
             '<rasd:InstanceID>12</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>')  # fmt: skip
    text = ovf_descriptor("vm", "d.vmdk", 1, 1).replace("    </VirtualHardwareSection>", items + "\n    </VirtualHardwareSection>")
    found = failing(from_ovf("a.ovf", parse_ovf(text.encode()), text))
    assert found == {("host-device-passthrough", "Item[rasd:ResourceType=14]"), ("host-device-passthrough", "Item[rasd:ResourceType=21]"),
                     ("storage-path-outside-bundle", "rasd:HostResource")}  # fmt: skip
    descriptor = from_ovf("a.ovf", parse_ovf(text.encode()), text)
    assert {r.value for r in descriptor.storage_refs if r.location.key == "rasd:HostResource"} == {"/dev/sda", "disk1"}
    # the package's own disk (ovf:/disk/vmdisk1) and Home Assistant's scheme-less /disk/ID are fine
    assert all("vmdisk1" not in r.value for r in descriptor.storage_refs)


def test_vbox_machine_shared_folders():
    vbox = ('<vbox:Machine xmlns:vbox="http://www.virtualbox.org/ovf/machine" ovf:required="false" version="1.16">'
            '<ovf:Info>VirtualBox machine</ovf:Info><Hardware><SharedFolders>'
            '<SharedFolder name="root" hostPath="/" writable="true"/></SharedFolders></Hardware></vbox:Machine>')  # fmt: skip
    text = ovf_descriptor("vm", "d.vmdk", 1, 1).replace("  </VirtualSystem>", vbox + "\n  </VirtualSystem>")
    found = failing(from_ovf("a.ovf", parse_ovf(text.encode()), text))
    assert ("shared-folder", "vbox:SharedFolder/@hostPath") in found
    real = (CORPUS / "cot-virtualbox-ovf2.ovf").read_bytes()  # an empty <SharedFolders/>: nothing shared
    assert not any(c == "shared-folder" for c, _ in failing(from_ovf("x.ovf", parse_ovf(real), real.decode())))


def test_vmw_config_goes_through_the_vmx_rules_and_its_own_allowed_list():
    config = ('<vmw:Config ovf:required="false" vmw:key="RemoteDisplay.vnc.enabled" vmw:value="true"/>'
              '<vmw:Config ovf:required="false" vmw:key="nestedHVEnabled" vmw:value="false"/>'
              '<vmw:Config ovf:required="false" vmw:key="nestedHVEnabled" vmw:value="true"/>')  # fmt: skip
    text = ovf_descriptor("vm", "d.vmdk", 1, 1).replace("    </VirtualHardwareSection>", config + "\n    </VirtualHardwareSection>")
    found = failing(from_ovf("a.ovf", parse_ovf(text.encode()), text))
    # nestedHVEnabled is a configuration field real exports carry; a VNC switch is not one.
    assert found == {("vmx-vnc-enabled", "RemoteDisplay.vnc.enabled"), ("duplicate-descriptor-key", "nestedHVEnabled"),
                     ("extraconfig-smuggling", "RemoteDisplay.vnc.enabled")}  # fmt: skip


def _with_config(pairs: dict[str, str]) -> Descriptor:
    config = "".join(f'<vmw:Config ovf:required="false" vmw:key="{k}" vmw:value="{v}"/>' for k, v in pairs.items())
    text = ovf_descriptor("vm", "d.vmdk", 1, 1).replace("    </VirtualHardwareSection>", config + "\n    </VirtualHardwareSection>")
    return from_ovf("a.ovf", parse_ovf(text.encode()), text)


def test_vmw_config_fields_off_the_allowed_list_are_smuggling():
    risky = {"files.suspendDirectory": "[datastore1] victim-vm/", "files.logDirectory": "[datastore1] victim-vm/",
             "vPMCEnabled": "true", "flags.monitorType": "debug", "messageBusTunnelEnabled": "true"}  # fmt: skip
    found = failing(_with_config(risky))
    assert {key for check, key in found if check == "extraconfig-smuggling"} == set(risky)
    assert failing(_with_config({"firmware": "efi", "nestedHVEnabled": "true", "powerOpInfo.powerOffType": "soft"})) == set()


def test_vmw_config_paths_and_raw_devices_are_judged_like_vmx_lines():
    found = failing(_with_config({"nvram": "/etc/shadow", "scsi0:1.deviceType": "rawDisk", "scsi0:1.fileName": "/dev/sda",
                                  "isolation.tools.hgfs.disable": "FALSE"}))  # fmt: skip
    assert {("storage-path-outside-bundle", "nvram"), ("storage-path-outside-bundle", "scsi0:1.fileName"),
            ("host-device-passthrough", "scsi0:1.deviceType"), ("shared-folder", "isolation.tools.hgfs.disable")} <= found


VBOX_HOSTILE = (
    '<vbox:Machine xmlns:vbox="http://www.virtualbox.org/ovf/machine" ovf:required="false" version="1.16" name="vm">'
    '<ovf:Info>VirtualBox machine</ovf:Info><MediaRegistry><HardDisks>'
    '<HardDisk uuid="{11111111-0433-4945-8e25-b89431544a28}" location="/dev/sda" format="VMDK" type="Normal"/>'
    '<HardDisk uuid="{21111111-0433-4945-8e25-b89431544a28}" location="vm-disk1.vmdk" format="VMDK" type="Normal"/>'
    '</HardDisks></MediaRegistry><Hardware>'
    '<RemoteDisplay enabled="true"><VRDEProperties><Property name="TCP/Ports" value="3389"/></VRDEProperties></RemoteDisplay>'
    '<UART><Port slot="0" enabled="true" IOBase="0x3f8" IRQ="4" hostMode="RawFile" path="/etc/cron.d/pwn"/>'
    '<Port slot="1" enabled="true" hostMode="TCP" path="0.0.0.0:2323" server="true"/>'
    '<Port slot="2" enabled="false" hostMode="Disconnected"/></UART>'
    '<USB><Controllers><Controller name="OHCI" type="OHCI"/></Controllers>'
    '<DeviceFilters><DeviceFilter name="any" active="true"/></DeviceFilters></USB><AudioAdapter controller="HDA" enabled="true"/>'
    '<Network><Adapter slot="0" enabled="true" type="82540EM"><BridgedInterface name="eth0"/></Adapter>'
    '<Adapter slot="1" enabled="true" type="82540EM"><NAT/><DisabledModes><HostOnlyInterface name="vboxnet0"/></DisabledModes>'
    '</Adapter></Network></Hardware></vbox:Machine>'
)  # fmt: skip


def test_vbox_machine_host_bindings_are_found_under_their_checks():
    text = ovf_descriptor("vm", "d.vmdk", 1, 1).replace("  </VirtualSystem>", VBOX_HOSTILE + "\n  </VirtualSystem>")
    descriptor = from_ovf("a.ovf", parse_ovf(text.encode()), text)
    found = failing(descriptor)
    vbox = {(check, key) for check, key in found if key and key.startswith("vbox:")}
    assert vbox == {
        ("vmx-vnc-enabled", "vbox:RemoteDisplay/@enabled"),
        ("host-device-passthrough", "vbox:UART/Port[@slot='0']"),  # RawFile: writes a host file
        ("host-listener-or-pipe", "vbox:UART/Port[@slot='1']"),  # TCP: a socket on the host
        ("host-device-passthrough", "vbox:USB/DeviceFilters/DeviceFilter[@name='any']"),
        ("host-device-passthrough", "vbox:Adapter/BridgedInterface"),  # the DisabledModes host-only one is not in use
        ("host-device-passthrough", "vbox:AudioAdapter/@enabled"),
        ("storage-path-outside-bundle", "vbox:HardDisk/@location"),  # /dev/sda; the bare vm-disk1.vmdk is fine
    }
    registry_findings, _ = run_checks(DESCRIPTOR_CHECKS, Facts(values={"descriptor": descriptor,
                                      "bundle": BundleFacts("ovf", "a.ovf", "a.mf", ())}))  # fmt: skip
    evidence = " ".join(f.evidence for f in registry_findings if f.location.key and f.location.key.startswith("vbox:"))
    assert "vbox:HardDisk/@location" in evidence and "vbox:UART/Port" in evidence and "vbox:RemoteDisplay" in evidence


@pytest.mark.parametrize("key", ["adminPassword", "vami.rootPassword", "apiToken", "DBPassword", "sshPassPhrase", "db_pass"])
def test_camel_case_secret_property_names(key):
    body = f'<ProductSection><Info>p</Info><Property ovf:key="{key}" ovf:type="string" ovf:value="s3cret!"/></ProductSection>'
    assert ("descriptor-secret", f"Property[@ovf:key={key!r}]") in failing(ovf(body=body))


@pytest.mark.parametrize("key", ["passthroughMode", "compassPoint", "tokenizerPath", "hostname"])
def test_words_that_merely_contain_secret_names_are_not_secrets(key):
    body = f'<ProductSection><Info>p</Info><Property ovf:key="{key}" ovf:type="string" ovf:value="x"/></ProductSection>'
    assert not any(check == "descriptor-secret" for check, _ in failing(ovf(body=body)))


def test_ovf_items_backed_by_host_devices_by_subtype():
    item = ('<Item ovf:required="false"><rasd:ElementName>CD/DVD drive 1</rasd:ElementName><rasd:InstanceID>9</rasd:InstanceID>'
            '<rasd:ResourceSubType>{}</rasd:ResourceSubType><rasd:ResourceType>15</rasd:ResourceType></Item>')  # fmt: skip
    for subtype, bad in (("vmware.cdrom.atapi", True), ("vmware.cdrom.remotepassthrough", True), ("vmware.cdrom.iso", False)):
        text = ovf_descriptor("vm", "d.vmdk", 1, 1).replace("    </VirtualHardwareSection>", item.format(subtype) + "\n    </VirtualHardwareSection>")
        found = failing(from_ovf("a.ovf", parse_ovf(text.encode()), text))
        assert (("host-device-passthrough", "Item[rasd:ResourceType=15]") in found) == bad, subtype
