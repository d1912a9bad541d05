"""certify sanitize for OVF descriptors: what a provider may load, every change listed, stable when run again."""

from __future__ import annotations

import json
import re

import pytest
from conftest import run_certify
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz import FUZZ, OVF_SEEDS, mutated
from test_parsers import CORPUS

from certify.bundle.descriptor import from_ovf
from certify.bundle.ovf import parse_ovf
from certify.bundle.sanitize_ovf import sanitize_ovf
from certify.errors import ParseError
from certify.model import Facts
from certify.plugins.manager import load_registry
from certify.runner import run_checks
from certify.sample import ovf_descriptor

SCOURED = {"vmx-vnc-enabled", "shared-folder", "host-device-passthrough", "host-listener-or-pipe", "descriptor-secret",
           "duplicate-descriptor-key", "vmx-isolation-settings", "storage-path-outside-bundle", "extraconfig-smuggling"}  # fmt: skip
CHECKS = [c for c in load_registry().checks.values() if c.id in SCOURED]
COLLECTION = ('<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">'
              '<VirtualSystemCollection ovf:id="app"><Info>vApp</Info><StartupSection><Info>s</Info></StartupSection>'
              '<VirtualSystem ovf:id="a"><Info>a</Info></VirtualSystem><VirtualSystem ovf:id="b"><Info>b</Info></VirtualSystem>'
              '<AcmeSection ovf:required="false"/></VirtualSystemCollection></Envelope>')  # fmt: skip

ITEMS = "".join(
    f"<Item><rasd:ElementName>{name}</rasd:ElementName><rasd:InstanceID>{10 + i}</rasd:InstanceID>{extra}"
    f"<rasd:ResourceType>{kind}</rasd:ResourceType></Item>\n"
    for i, (name, kind, extra) in enumerate([
        ("Floppy", 14, ""), ("Serial", 21, ""), ("Parallel", 22, ""), ("USB", 23, ""), ("Sound", 35, ""),
        ("Host CD", 15, "<rasd:ResourceSubType>vmware.cdrom.atapi</rasd:ResourceSubType>"),
        ("Host disk", 17, "<rasd:HostResource>/dev/sda</rasd:HostResource>"),
        ("Shadow disk", 17, "<rasd:HostResource>ovf:/disk/shadow</rasd:HostResource>"),
        ("Ghost disk", 17, "<rasd:HostResource>ovf:/disk/nowhere</rasd:HostResource>"),
        ("Tools ISO", 15, "<rasd:HostResource>ovf:/file/iso</rasd:HostResource>"),
        ("NIC", 10, "<rasd:Address>00:50:56:aa:bb:cc</rasd:Address><rasd:Connection>VM Network</rasd:Connection>"
                    '<vmw:Config ovf:required="false" vmw:key="connectable.allowGuestControl" vmw:value="true"/>'
                    '<vmw:Config ovf:required="false" vmw:key="slotInfo.pciSlotNumber" vmw:value="32"/>'),
    ])
)  # fmt: skip
EXTRA = {
    "sharedFolder0.hostPath": "/", "isolation.tools.hgfs.disable": "FALSE", "RemoteDisplay.vnc.enabled": "TRUE",
    "RemoteDisplay.vnc.password": "vendor123", "serial0.fileType": "network", "serial0.fileName": "telnet://0.0.0.0:2323",
    "debugStub.listen.guest64.remote": "TRUE", "usb.autoConnect.device0": "vid:0x0781 pid:0x5581",
    "guestinfo.userdata": "I2Nsb3VkLWNvbmZpZwpjaHBhc3N3ZDoKICBsaXN0OiByb290OmhlbGxvCg==",
    "isolation.tools.copy.disable": "FALSE", "tools.setinfo.sizeLimit": "1073741824", "sched.mem.pin": "TRUE",
    "uuid.bios": "56 4d 00 00", "cpuid.coresPerSocket": "2", "CPUID.coresPerSocket": "4",
}  # fmt: skip
FILES = ('<File ovf:id="shadow" ovf:href="/etc/shadow"/><File ovf:id="up" ovf:href="..%2Fother%2Fx.vmdk"/>'
         '<File ovf:id="meta" ovf:href="http://169.254.169.254/latest/meta-data/"/><File ovf:id="iso" ovf:href="tools.iso"/>')
DISKS = ('<Disk ovf:diskId="shadow" ovf:fileRef="shadow" ovf:capacity="1"/>'
         '<Disk ovf:diskId="orphan" ovf:fileRef="nofile" ovf:capacity="1"/>')
VBOX = ('<vbox:Machine xmlns:vbox="http://www.virtualbox.org/ovf/machine" ovf:required="false" uuid="{39a69c87-0433-4945-8e25-b89431544a28}">'
        '<ovf:Info>VirtualBox machine</ovf:Info><Hardware><SharedFolders><SharedFolder name="r" hostPath="/"/></SharedFolders>'
        '</Hardware></vbox:Machine>')
PRODUCT = ('<ProductSection><Info>p</Info>'
           '<Property ovf:key="admin-password" ovf:type="string" ovf:password="true" ovf:value="hunter2">'
           '<Value ovf:value="s3cond" ovf:configuration="big"/></Property>'
           '<Property ovf:key="APIKEY" ovf:type="string" ovf:value="abc123xyz"/>'
           '<Property ovf:key="hostname" ovf:type="string" ovf:value="appliance"/></ProductSection>')


def hostile() -> str:
    text = ovf_descriptor("vm", "disk.vmdk", None, 4096, EXTRA)
    text = text.replace("</References>", FILES + "</References>").replace("</DiskSection>", DISKS + "</DiskSection>")
    text = text.replace("    </VirtualHardwareSection>", ITEMS + '<vmw:Config vmw:key="uuid" vmw:value="4211-aa"/>\n    </VirtualHardwareSection>')
    return text.replace("  </VirtualSystem>", PRODUCT + VBOX + "\n  </VirtualSystem>")


def findings(text: str) -> set[tuple[str, str | None]]:
    descriptor = from_ovf("a.ovf", parse_ovf(text.encode()), text)
    found, _ = run_checks(CHECKS, Facts(values={"descriptor": descriptor}))
    return {(f.check_id, f.location.key) for f in found if f.status.value == "fail"}


def test_a_hostile_ovf_comes_out_clean_with_every_change_explained():
    before = hostile()
    assert {check for check, _ in findings(before)} == SCOURED
    out, changes = sanitize_ovf(before.encode())
    assert findings(out) == set()
    again, more = sanitize_ovf(out.encode())
    assert again == out and more == []
    parsed = parse_ovf(out.encode())
    assert [(f.id, f.href) for f in parsed.files] == [("file1", "disk.vmdk"), ("iso", "tools.iso")]
    assert [d.disk_id for d in parsed.disks] == ["vmdisk1"]
    assert sorted(i.name for i in parsed.items) == ["1 CPU", "512 MB", "Hard disk 1", "NIC", "SCSI controller", "Tools ISO"]
    assert not parsed.vbox_shared_folders and "00:50:56" not in out and "4211-aa" not in out
    extra = {(e.key, e.value) for e in parsed.extra_config if e.element == "ExtraConfig"}
    assert ("cpuid.coresPerSocket", "2") in extra and ("isolation.tools.copy.disable", "TRUE") in extra
    assert ("tools.setinfo.sizeLimit", "1048576") in extra and not any(k.startswith(("sched.", "uuid.", "serial")) for k, _ in extra)
    assert {(e.key, e.value) for e in parsed.extra_config if e.element == "Config"} == {("slotInfo.pciSlotNumber", "32")}
    assert 'ovf:key="hostname" ovf:type="string" ovf:value="appliance"' in out
    listed = json.dumps([c.as_dict() for c in changes])
    for secret in ("vendor123", "I2Nsb3Vk", "hunter2", "s3cond", "abc123xyz"):
        assert secret not in listed and secret not in out
    by_key = {c.key: (c.action, c.check) for c in changes}
    assert by_key["References/File[@ovf:id='shadow']"] == ("remove", "storage-path-outside-bundle")
    assert by_key["References/File[@ovf:id='meta']"] == ("remove", "storage-path-outside-bundle")
    assert by_key["Disk[@ovf:diskId='orphan']"] == ("remove", "dangling-reference")
    assert by_key["Item[rasd:InstanceID='16']"] == ("remove", "storage-path-outside-bundle")  # /dev/sda
    assert by_key["Item[rasd:InstanceID='18']"] == ("remove", "dangling-reference")  # a disk nobody declares
    assert by_key["Item[rasd:InstanceID='15']"] == ("remove", "host-device-passthrough")  # ATAPI CD
    assert by_key["vmw:ExtraConfig[@vmw:key='CPUID.coresPerSocket']"] == ("remove", "duplicate-descriptor-key")
    assert by_key["vmw:ExtraConfig[@vmw:key='sched.mem.pin']"] == ("remove", "extraconfig-smuggling")
    assert by_key["vmw:ExtraConfig[@vmw:key='isolation.tools.copy.disable']"] == ("set", "vmx-isolation-settings")
    assert by_key["vbox:Machine"] == ("remove", "shared-folder")
    assert by_key["Property[@ovf:key='admin-password']/@ovf:value"] == ("set", "descriptor-secret")
    assert all(c.reason for c in changes) and all(c.line for c in changes if c.action == "remove")


@pytest.mark.parametrize("path", sorted(p for p in CORPUS.glob("*.ovf") if "0.9" not in p.name), ids=lambda p: p.name)
def test_every_real_ovf_sanitizes_cleanly_and_stably(path):
    once, changes = sanitize_ovf(path.read_bytes())
    assert changes and findings(once) == set()
    twice, more = sanitize_ovf(once.encode())
    assert twice == once and more == []
    before, after = parse_ovf(path.read_bytes()), parse_ovf(once.encode())
    assert after.systems == before.systems
    assert [(n.name, n.description) for n in after.networks] == [(n.name, n.description) for n in before.networks]
    assert [e.text for e in after.eulas] == [e.text for e in before.eulas]


def test_optional_sections_nobody_reads_go_and_known_ones_stay():
    out, changes = sanitize_ovf(COLLECTION.encode())
    assert [(c.action, c.key, c.reason) for c in changes if c.action == "remove"] == [
        ("remove", "AcmeSection", "optional section this tool does not read")]
    assert "AcmeSection" not in out and "<StartupSection>" in out and parse_ovf(out.encode()).optional_sections == ()


def test_namespaces_stay_sane_whatever_the_input_called_them():
    # The envelope bound to a prefix only, rasd under an odd prefix, an element in no namespace at all.
    text = ('<?xml version="1.0"?>\n<e:Envelope xmlns:e="http://schemas.dmtf.org/ovf/envelope/1" xmlns:r="http://schemas.dmtf.org/'
            'wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xml:lang="en-US"><e:References/>'
            '<e:VirtualSystem e:id="vm"><e:Info>x</e:Info><e:AnnotationSection><e:Info>a</e:Info><e:Annotation>a &amp; b &lt; c'
            '</e:Annotation></e:AnnotationSection><e:VirtualHardwareSection><e:Info>hw</e:Info><e:Item><r:ElementName>cpu</r:ElementName>'
            '<r:ResourceType>3</r:ResourceType><plain xmlns="">kept</plain></e:Item></e:VirtualHardwareSection></e:VirtualSystem>'
            '</e:Envelope>')  # fmt: skip
    out, _ = sanitize_ovf(text.encode())
    assert out.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf=')
    assert 'xmlns:r="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"' in out
    assert 'xml:lang="en-US"' in out and "a &amp; b &lt; c" in out and '<plain xmlns="">kept</plain>' in out
    assert not re.search(r"<ns\d+:", out)
    parsed = parse_ovf(out.encode())
    assert parsed.items[0].resource_type == "3" and parsed.systems == ("vm",)
    assert sanitize_ovf(out.encode()) == (out, [])


@pytest.mark.parametrize(
    "text, match",
    [
        ('<!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]><Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1">&x;</Envelope>',
         "forbidden XML"),
        ('<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"><AcmeSection/><VirtualSystem ovf:id="a" '
         'xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"/></Envelope>', "not one this tool understands"),
        ('<Envelope xmlns="urn:x"/>', "not an OVF"),
    ],
)
def test_what_the_scanner_refuses_is_not_rewritten(text, match):
    with pytest.raises(ParseError, match=match):
        sanitize_ovf(text.encode())


def test_sanitize_command_for_an_ovf(tmp_path):
    source = tmp_path / "vm.ovf"
    source.write_text(hostile())
    before = source.read_bytes()
    result = run_certify("sanitize", str(source), "-o", str(tmp_path / "clean.ovf"))
    assert result.returncode == 0, result.stderr
    assert source.read_bytes() == before and "sanitized OVF" in result.stderr
    listed = json.loads((tmp_path / "clean.ovf.changes.json").read_text())
    assert listed["changes"] and all(c["reason"] for c in listed["changes"]) and "vendor123" not in json.dumps(listed)
    assert findings((tmp_path / "clean.ovf").read_text()) == set()
    rerun = run_certify("sanitize", str(tmp_path / "clean.ovf"), "-o", str(tmp_path / "again.ovf"))
    assert rerun.returncode == 0 and (tmp_path / "again.ovf").read_bytes() == (tmp_path / "clean.ovf").read_bytes()
    assert json.loads((tmp_path / "again.ovf.changes.json").read_text())["changes"] == []
    (tmp_path / "bad.ovf").write_text('<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>')
    refused = run_certify("sanitize", str(tmp_path / "bad.ovf"), "-o", str(tmp_path / "o.ovf"))
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        f"certify: {tmp_path / 'bad.ovf'}: rejected: forbidden XML construct: DTDForbidden"]
    (tmp_path / "a.txt").write_text("x")
    wrong = run_certify("sanitize", str(tmp_path / "a.txt"), "-o", str(tmp_path / "o.ovf"))
    assert wrong.returncode == 2 and "takes a .vmx or an .ovf" in wrong.stderr


@FUZZ
@given(mutated([*OVF_SEEDS, hostile().encode(), COLLECTION.encode()]))
def test_sanitize_never_raises_anything_but_parse_error_and_its_output_is_a_fixed_point(data):
    try:
        out, _ = sanitize_ovf(data)
    except ParseError:
        return
    parse_ovf(out.encode())
    assert sanitize_ovf(out.encode()) == (out, [])
    assert findings(out) == set()


def test_misplaced_items_and_config_spelled_twice_are_scoured():
    # An Item nested in another Item is still read by the scanner; a vmw:Config and a vmw:ExtraConfig of one key collide.
    nested = ('<Item><rasd:ElementName>bus</rasd:ElementName><rasd:InstanceID>9</rasd:InstanceID><rasd:ResourceType>5</rasd:ResourceType>'
              '<Item><rasd:ElementName>Floppy</rasd:ElementName><rasd:InstanceID>10</rasd:InstanceID><rasd:ResourceType>14</rasd:ResourceType>'
              '</Item></Item><vmw:Config vmw:key="firmware" vmw:value="efi"/><vmw:ExtraConfig vmw:key="firmware" vmw:value="bios"/>')  # fmt: skip
    text = ovf_descriptor("vm", "d.vmdk", 1, 1).replace("    </VirtualHardwareSection>", nested + "\n    </VirtualHardwareSection>")
    assert {c for c, _ in findings(text)} == {"host-device-passthrough", "duplicate-descriptor-key", "extraconfig-smuggling"}
    out, changes = sanitize_ovf(text.encode())
    assert findings(out) == set() and "Floppy" not in out and 'vmw:key="firmware" vmw:value="efi"' in out
    assert ("Item (misplaced)", "hardware item outside a VirtualHardwareSection") in {(c.key, c.reason) for c in changes}


def test_virtual_system_ids_are_unique():
    two = ('<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">'
                        '<VirtualSystem ovf:id="vm"><Info>a</Info></VirtualSystem><VirtualSystem ovf:id="vm"><Info>b</Info></VirtualSystem>'
                        '</Envelope>')  # fmt: skip
    with pytest.raises(ParseError, match="two VirtualSystems share one ovf:id"):
        sanitize_ovf(two.encode())


def _hardware(tail: str) -> str:
    return ovf_descriptor("vm", "d.vmdk", 1, 1).replace("    </VirtualHardwareSection>", tail + "\n    </VirtualHardwareSection>")


def _config(**pairs: str) -> str:
    return "".join(f'<vmw:Config ovf:required="false" vmw:key="{k.replace("__", ":").replace("_", ".")}" vmw:value="{v}"/>'
                   for k, v in pairs.items())  # fmt: skip


@pytest.mark.parametrize(
    "tail, gone, check",
    [
        ('<vmw:Config ovf:required="false" vmw:key="nvram" vmw:value="/etc/shadow"/>', ["nvram"], "storage-path-outside-bundle"),
        ('<vmw:Config ovf:required="false" vmw:key="scsi0:1.deviceType" vmw:value="rawDisk"/>'
         '<vmw:Config ovf:required="false" vmw:key="scsi0:1.fileName" vmw:value="/dev/sda"/>',
         ["scsi0:1.deviceType", "scsi0:1.fileName"], None),
        ('<vmw:Config ovf:required="false" vmw:key="ide1:0.deviceType" vmw:value="cdrom-raw"/>'
         '<vmw:Config ovf:required="false" vmw:key="ide1:0.startConnected" vmw:value="TRUE"/>',
         ["ide1:0.deviceType", "ide1:0.startConnected"], "host-device-passthrough"),
        ('<vmw:Config ovf:required="false" vmw:key="isolation.tools.hgfs.disable" vmw:value="FALSE"/>',
         ["isolation.tools.hgfs.disable"], "vmx-isolation-settings"),
        ('<vmw:Config ovf:required="false" vmw:key="flags.monitorType" vmw:value="debug"/>'
         '<vmw:Config ovf:required="false" vmw:key="files.suspendDirectory" vmw:value="[datastore1] victim-vm/"/>'
         '<vmw:Config ovf:required="false" vmw:key="messageBusTunnelEnabled" vmw:value="true"/>',
         ["flags.monitorType", "files.suspendDirectory", "messageBusTunnelEnabled"], "extraconfig-smuggling"),
    ],
)  # fmt: skip
def test_vmw_config_gets_the_extra_config_rules_and_the_output_is_stable(tail, gone, check):
    text = _hardware(tail + '<vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>')
    assert findings(text)
    out, changes = sanitize_ovf(text.encode())
    assert findings(out) == set()
    removed = {c.key: c.check for c in changes if c.action == "remove"}
    assert {f"vmw:Config[@vmw:key={key!r}]" for key in gone} <= set(removed)
    assert check is None or all(removed[f"vmw:Config[@vmw:key={key!r}]"] == check for key in gone)
    config = {(e.key, e.value) for e in parse_ovf(out.encode()).extra_config if e.element == "Config"}
    assert config == {("firmware", "efi")}
    assert sanitize_ovf(out.encode()) == (out, [])


def test_a_stig_key_written_as_config_gives_way_to_the_stig_value_once():
    out, changes = sanitize_ovf(_hardware('<vmw:Config vmw:key="isolation.tools.hgfs.disable" vmw:value="FALSE"/>').encode())
    hgfs = [(e.element, e.value) for e in parse_ovf(out.encode()).extra_config if e.key.lower() == "isolation.tools.hgfs.disable"]
    assert hgfs == [("ExtraConfig", "TRUE")]
    assert not any(c.check == "duplicate-descriptor-key" for c in changes)
    assert sanitize_ovf(out.encode()) == (out, [])


def test_vbox_machine_goes_under_the_check_of_what_it_binds():
    from test_descriptor_checks import VBOX_HOSTILE

    text = ovf_descriptor("vm", "d.vmdk", 1, 1).replace("  </VirtualSystem>", VBOX_HOSTILE + "\n  </VirtualSystem>")
    out, changes = sanitize_ovf(text.encode())
    assert [(c.key, c.check) for c in changes if c.key == "vbox:Machine"] == [("vbox:Machine", "host-device-passthrough")]
    assert "vbox:Machine" not in out and findings(out) == set()


def test_camel_case_secret_properties_lose_their_defaults():
    product = ('<ProductSection><Info>p</Info><Property ovf:key="adminPassword" ovf:type="string" ovf:value="hunter2"/>'
               '<Property ovf:key="vami.rootPassword" ovf:type="string" ovf:value="toor42"/>'
               '<Property ovf:key="apiToken" ovf:type="string" ovf:value="tok-123"/></ProductSection>')  # fmt: skip
    text = ovf_descriptor("vm", "d.vmdk", 1, 1).replace("  </VirtualSystem>", product + "\n  </VirtualSystem>")
    out, changes = sanitize_ovf(text.encode())
    assert not any(secret in out for secret in ("hunter2", "toor42", "tok-123"))
    assert sum(c.check == "descriptor-secret" for c in changes) == 3 and findings(out) == set()


def test_a_hardware_section_outside_a_virtual_system_is_refused():
    text = ('<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" '
            'xmlns:vmw="http://www.vmware.com/schema/ovf"><References/><VirtualSystemCollection ovf:id="c"><Info>c</Info>'
            '<VirtualHardwareSection><Info>hw</Info><vmw:ExtraConfig vmw:key="guestinfo.password" vmw:value="hunter2"/>'
            '</VirtualHardwareSection><VirtualSystem ovf:id="vm"><Info>vm</Info></VirtualSystem></VirtualSystemCollection></Envelope>')  # fmt: skip
    with pytest.raises(ParseError, match="VirtualHardwareSection inside 'VirtualSystemCollection'"):
        sanitize_ovf(text.encode())


@pytest.mark.parametrize("count", [1, 40, 400])
def test_removals_rebuild_each_parent_once_whatever_their_number(count, monkeypatch):
    # Removing n of n siblings one at a time rebuilds the sibling list n times (quadratic); here a parent is
    # rebuilt once per pass, so the number of rebuilds does not grow with the number of removals.
    from certify.bundle import sanitize_ovf as module

    rebuilt = []
    original = module._Doc.flush

    def counting(self):
        rebuilt.extend(id(parent) for parent, _ in self.pending.values())
        return original(self)

    monkeypatch.setattr(module._Doc, "flush", counting)
    text = _hardware('<vmw:ExtraConfig vmw:key="a" vmw:value="1"/>' * count + '<vmw:Config vmw:key="b" vmw:value="2"/>' * count)
    out, changes = sanitize_ovf(text.encode())
    assert len(changes) == 2 * count + len(module.HARDENING)
    assert 'vmw:key="a"' not in out and 'vmw:key="b"' not in out
    assert len(rebuilt) == len(set(rebuilt)) == 1  # only the VirtualHardwareSection, once
    assert sanitize_ovf(out.encode()) == (out, [])


@given(st.lists(st.sampled_from(["keep", "drop", "dup"]), max_size=12))
def test_batched_removals_keep_order_and_indentation(plan):
    # keep: a new allowed key; drop: a key off the allowed list; dup: the first kept key again (a drop before any keep).
    entries, expected, first = [], [], None
    for number, what in enumerate(plan):
        if what == "keep":
            key = f"numa.k{number}"
            expected.append((key, str(number)))
            first = first or key
        else:
            key = first if what == "dup" and first else "sched.mem.pin"
        entries.append(f'      <vmw:ExtraConfig vmw:key="{key}" vmw:value="{number}"/>\n')
    text = ovf_descriptor("vm", "d.vmdk", 1, 1).replace("    </VirtualHardwareSection>", "".join(entries) + "    </VirtualHardwareSection>")
    out, _ = sanitize_ovf(text.encode())
    assert [(e.key, e.value) for e in parse_ovf(out.encode()).extra_config if e.key.startswith("numa.")] == expected
    assert "\n      <vmw:ExtraConfig" in out and "/>\n    </VirtualHardwareSection>" in out
    assert sanitize_ovf(out.encode()) == (out, [])


def test_generated_prefixes_count_on_instead_of_searching_again():
    uris = [f"urn:acme:{n}" for n in range(300)]
    attrs = " ".join(f'xmlns:ns{n}="{uri}"' if n == 0 else "" for n, uri in enumerate(uris[:1]))
    used = "".join(f'<Property ovf:key="p{n}" ovf:type="string" xmlns:q="{uri}" q:a="1"/>' for n, uri in enumerate(uris))
    product = f"<ProductSection {attrs}><Info>p</Info>{used}</ProductSection>"
    text = ovf_descriptor("vm", "d.vmdk", 1, 1).replace("  </VirtualSystem>", product + "\n  </VirtualSystem>")
    out, _ = sanitize_ovf(text.encode())
    declared = re.findall(r'xmlns:(\w+)="urn:acme:(\d+)"', out)
    assert len(declared) == len({p for p, _ in declared}) == 300
    # ns0 is the document's own prefix for urn:acme:0 and q its own for the next; the rest are numbered on from ns1.
    assert {p for p, _ in declared} == {"ns0", "q"} | {f"ns{n}" for n in range(1, 299)}
    assert sanitize_ovf(out.encode()) == (out, [])
