"""Pure parsers over untrusted bytes: VMX, OVF, disk headers, SSH keys."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import SHARED

from certify import sample
from certify.bundle.descriptor import from_ovf, from_vmx, outside_bundle_reason, redact
from certify.bundle.diskformat import format_from_ovf, sniff_bytes
from certify.bundle.ovf import parse_ovf
from certify.bundle.vmx import parse_vmx
from certify.errors import ParseError
from certify.guest.parsers.sshkeys import fingerprint, parse_authorized_keys, parse_public_key_line, private_key_public

CORPUS = SHARED / "corpus" / "real-descriptors"


def test_shared_corpus_is_present():
    # The corpus tests below would quietly collect nothing without it.
    assert len(list(CORPUS.glob("*.vmx"))) >= 10 and len(list(CORPUS.glob("*.ovf"))) >= 8, f"no corpus at {CORPUS}"


# --- VMX ---------------------------------------------------------------------------


def test_vmx_syntax():
    vmx = parse_vmx(b'#!/usr/bin/vmware\n.encoding = "UTF-8"\r\nscsi0:0.fileName = "my|22disk|7C.vmdk"\n\n# c\nFoo.Bar=TRUE\n')
    assert [(e.key, e.value, e.line) for e in vmx.entries] == [
        (".encoding", "UTF-8", 2),
        ("scsi0:0.fileName", 'my"disk|.vmdk', 3),
        ("Foo.Bar", "TRUE", 6),
    ]
    assert vmx.get("SCSI0:0.FILENAME").line == 3


def test_vmx_duplicates_are_kept_not_resolved():
    vmx = parse_vmx(b'a.b = "1"\nA.B = "2"\n')
    assert [e.value for e in vmx.duplicates()["a.b"]] == ["1", "2"]


def test_vmx_declared_encoding_is_honoured():
    vmx = parse_vmx('.encoding = "windows-1252"\ndisplayName = "caf\u00e9"\n'.encode("cp1252"))
    assert vmx.get("displayName").value == "caf\u00e9"


@pytest.mark.parametrize(
    "data, match",
    [
        (b"KDMV....", "VMDK"),
        (b"# Disk DescriptorFile\n", "VMDK"),
        (b"just words\n", "not 'key"),
        (b'a = "unterminated\n', "unterminated"),
        (b'.encoding = "klingon"\n', "unknown .encoding"),
        (b'a = "\xff"\n', "not valid"),
        (b"a = 1\0", "NUL"),
        (b"x" * (1024 * 1024 + 1), "over the"),
    ],
)
def test_vmx_refusals(data, match):
    with pytest.raises(ParseError, match=match):
        parse_vmx(data)


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.vmx")), ids=lambda p: p.name)
def test_every_real_vmx_parses(path):
    vmx = parse_vmx(path.read_bytes())
    assert vmx.entries


def test_real_vnc_vmx_and_absolute_iso_paths():
    vnc = from_vmx("x.vmx", parse_vmx((CORPUS / "libvirt-graphics-vnc.vmx").read_bytes()))
    assert vnc.get("remotedisplay.vnc.enabled").value == "true"
    disks = from_vmx("x.vmx", parse_vmx((CORPUS / "virt-v2v-esxi-21disks.vmx").read_bytes()))
    assert any(outside_bundle_reason(r.value) for r in disks.storage_refs)


# --- OVF ---------------------------------------------------------------------------


def test_ovf_files_disks_and_extra_config_with_lines():
    ovf = parse_ovf(sample.ovf_descriptor("vm", "vm-disk1.vmdk", 10, 20, {"RemoteDisplay.vnc.enabled": "TRUE"}).encode())
    assert ovf.version == "1.x" and ovf.systems == ("vm",)
    assert [(f.id, f.href, f.size, f.line) for f in ovf.files] == [("file1", "vm-disk1.vmdk", "10", 7)]
    assert [(d.disk_id, d.file_ref, format_from_ovf(d.format)) for d in ovf.disks] == [("vmdisk1", "file1", "vmdk")]
    assert [(e.key, e.value) for e in ovf.extra_config] == [("RemoteDisplay.vnc.enabled", "TRUE")]
    assert ovf.extra_config[0].line > 30


def test_ovf_href_is_percent_decoded_once_for_checks():
    ovf = parse_ovf(sample.ovf_descriptor("vm", "..%2F..%2Fetc%2Fshadow", 1, 1).encode())
    refs = from_ovf("vm.ovf", ovf).storage_refs
    assert refs[0].value == "../../etc/shadow" and outside_bundle_reason(refs[0].value)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1">&lol2;</Envelope>"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1">&x;</Envelope>"""


@pytest.mark.parametrize(
    "data, match",
    [
        (BILLION_LAUGHS, "forbidden XML"),
        (XXE, "forbidden XML"),
        (b"<Envelope", "malformed"),
        (b'<Envelope xmlns="urn:other"/>', "not an OVF"),
        (b'<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"/>', "no VirtualSystem"),
    ],
)
def test_ovf_refusals(data, match):
    with pytest.raises(ParseError, match=match):
        parse_ovf(data)


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.ovf")), ids=lambda p: p.name)
def test_every_real_ovf_parses_or_is_refused_with_a_reason(path):
    if path.name == "cot-ovf-0.9.ovf":
        with pytest.raises(ParseError, match="OVF 0.9"):
            parse_ovf(path.read_bytes())
        return
    ovf = parse_ovf(path.read_bytes())
    assert ovf.files and ovf.systems


def test_real_ovf_extra_config_is_seen():
    ovf = parse_ovf((CORPUS / "vyos-equuleus-template.ovf").read_bytes())
    assert ("sched.mem.pin", "TRUE") in [(e.key, e.value) for e in ovf.extra_config]


# --- storage names -----------------------------------------------------------------


@pytest.mark.parametrize(
    "ref, reason",
    [
        ("disk.vmdk", None),
        ("sub/disk.vmdk", None),
        ("auto detect", None),
        ("/etc/shadow", "absolute"),
        ("\\\\server\\share\\d.vmdk", "absolute"),
        ("C:\\vms\\d.vmdk", "absolute"),
        ("[datastore1] other/d.vmdk", "datastore"),
        ("../d.vmdk", "'..'"),
        ("a\\..\\..\\d.vmdk", "'..'"),
        ("https://evil.example/d.vmdk", "URL"),
        ("nbd://host/d", "URL"),
    ],
)
def test_outside_bundle_reason(ref, reason):
    got = outside_bundle_reason(ref)
    assert (got is None) if reason is None else (reason in got)


# --- disk headers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("images")
    with open(d / "base.raw", "wb") as f:
        f.truncate(4 * 1024 * 1024)

    def run(*args):
        subprocess.run(["qemu-img", *args], check=True, capture_output=True, cwd=d)

    run("create", "-q", "-f", "qcow2", "plain.qcow2", "4M")
    run("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "backed.qcow2")
    run("create", "-q", "-f", "qcow2", "-o", "data_file=data.raw", "datafile.qcow2", "4M")
    run("convert", "-q", "-O", "vmdk", "-o", "subformat=streamOptimized", "base.raw", "so.vmdk")
    run("create", "-q", "-f", "vmdk", "-b", "so.vmdk", "-F", "vmdk", "delta.vmdk")
    run("convert", "-q", "-O", "vpc", "base.raw", "dynamic.vhd")
    run("convert", "-q", "-O", "vpc", "-o", "subformat=fixed", "base.raw", "fixed.vhd")
    run("convert", "-q", "-O", "vhdx", "base.raw", "plain.vhdx")
    return d


@pytest.mark.parametrize(
    "name, fmt, sub, refs",
    [
        ("base.raw", "raw", "", 0),
        ("plain.qcow2", "qcow2", "v3", 0),
        ("backed.qcow2", "qcow2", "v3", 1),
        ("datafile.qcow2", "qcow2", "v3", 1),
        ("so.vmdk", "vmdk", "streamOptimized", 0),
        ("delta.vmdk", "vmdk", "monolithicSparse", 1),
        ("dynamic.vhd", "vpc", "dynamic", 0),
        ("fixed.vhd", "vpc", "fixed", 0),
        ("plain.vhdx", "vhdx", "dynamic", 0),
    ],
)
def test_sniff_real_images(images, name, fmt, sub, refs):
    header = sniff_bytes((images / name).read_bytes())
    assert (header.format, header.subformat, min(len(header.references), 1)) == (fmt, sub, refs)


def test_differencing_vhd_footer_is_a_reference(images):
    data = bytearray((images / "dynamic.vhd").read_bytes())
    data[60:64] = (4).to_bytes(4, "big")  # disk type: differencing
    assert sniff_bytes(bytes(data)).references


@pytest.mark.parametrize("data", [b"QFI\xfb\0\0\0\x09" + b"\0" * 200, b"QFI\xfb", b"KDMV\x07" + b"\0" * 100, b"vhdxfile" + b"\0" * 10])
def test_corrupt_headers_raise_only_parse_error(data):
    with pytest.raises(ParseError):
        sniff_bytes(data)


# --- SSH keys ----------------------------------------------------------------------


def test_public_key_fingerprint_matches_openssh_format():
    _, line = sample.ed25519_keypair("me@host")
    key = parse_public_key_line(line)
    import base64
    import hashlib

    blob = base64.b64decode(line.split()[1])
    assert key.fingerprint == "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert key.type == "ssh-ed25519" and key.comment == "me@host"


def test_authorized_keys_options_comments_and_junk():
    _, line = sample.ed25519_keypair("c")
    entries = parse_authorized_keys(f'# x\n\ncommand="echo a b",no-pty {line}\ngarbage-line\n')
    assert [e.line for e in entries] == [3, 4]
    assert entries[0].key.fingerprint == parse_public_key_line(line).fingerprint
    assert entries[1].key is None


def test_private_key_public_half_without_decrypting():
    private, line = sample.ed25519_keypair("c")
    assert private_key_public(private).fingerprint == parse_public_key_line(line).fingerprint
    rsa = private_key_public(sample.rsa_pem_private_key())
    assert rsa.type == "ssh-rsa" and rsa.fingerprint.startswith("SHA256:")
    assert private_key_public(b"-----BEGIN OPENSSH PRIVATE KEY-----\n!!!\n-----END OPENSSH PRIVATE KEY-----\n") is None
    assert private_key_public(b"not a key") is None
    assert fingerprint(b"") == "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"


# --- OVF structure: collections, sections, networks, licences, vmw:Config ---------------------

ENVELOPE = ('<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" '
            'xmlns:vmw="http://www.vmware.com/schema/ovf">{}</Envelope>')  # fmt: skip


def _system(sid: str, body: str = "") -> str:
    return f'<VirtualSystem ovf:id="{sid}"><Info>vm</Info>{body}</VirtualSystem>'


def _nested(depth: int) -> bytes:
    inner = _system("vm")
    for level in range(depth):
        inner = f'<VirtualSystemCollection ovf:id="c{level}"><Info>vApp</Info>{inner}</VirtualSystemCollection>'
    return ENVELOPE.format(inner).encode()


def test_nesting_is_bounded_before_anything_recurses():
    from certify.bundle.ovf import MAX_DEPTH
    from certify.bundle.sanitize_ovf import sanitize_ovf

    def nested(depth):
        return sample.ovf_descriptor("vm", "d.vmdk", 1, 1).replace("  </VirtualSystem>", "<AnnotationSection><Info>x</Info><Annotation>"
                                                                    + "<b>" * depth + "</b>" * depth + "</Annotation></AnnotationSection></VirtualSystem>").encode()  # fmt: skip

    assert parse_ovf(nested(MAX_DEPTH - 6)).systems == ("vm",)  # Envelope, VirtualSystem, AnnotationSection, Annotation above
    for depth in (MAX_DEPTH, 100_000):
        for parse in (parse_ovf, sanitize_ovf):
            with pytest.raises(ParseError, match=f"nested more than {MAX_DEPTH} deep"):
                parse(nested(depth))


def test_virtual_system_collections_are_bounded():
    from certify.bundle.ovf import MAX_COLLECTION_DEPTH, MAX_SYSTEMS

    assert parse_ovf(_nested(MAX_COLLECTION_DEPTH)).systems == ("vm",)
    with pytest.raises(ParseError, match=f"nested more than {MAX_COLLECTION_DEPTH} deep"):
        parse_ovf(_nested(MAX_COLLECTION_DEPTH + 1))
    many = "".join(_system(f"vm{i}") for i in range(MAX_SYSTEMS + 1))
    collection = f'<VirtualSystemCollection ovf:id="c"><Info>vApp</Info>{many}</VirtualSystemCollection>'
    with pytest.raises(ParseError, match=f"{MAX_SYSTEMS + 1} VirtualSystems"):
        parse_ovf(ENVELOPE.format(collection).encode())
    fine = "".join(_system(f"vm{i}") for i in range(3))
    assert parse_ovf(ENVELOPE.format(f'<VirtualSystemCollection ovf:id="c"><Info>v</Info>{fine}</VirtualSystemCollection>').encode()).systems == ("vm0", "vm1", "vm2")


@pytest.mark.parametrize(
    "section, where, refused",
    [
        ('<AcmeSection><Info>x</Info></AcmeSection>', "envelope", True),
        ('<AcmeSection ovf:required="true"><Info>x</Info></AcmeSection>', "system", True),
        ('<acme:Magic xmlns:acme="urn:acme"><Info>x</Info></acme:Magic>', "system", True),
        ('<AcmeSection ovf:required="false"><Info>x</Info></AcmeSection>', "system", False),
        ('<acme:Magic xmlns:acme="urn:acme" ovf:required="false"/>', "envelope", False),
        ('<vmw:BootOrderSection vmw:type="disk"><Info>boot order</Info></vmw:BootOrderSection>', "system", False),
        ('<EulaSection><Info>x</Info><License>be nice</License></EulaSection>', "system", False),
    ],
)
def test_unknown_required_sections_are_refused_known_and_optional_ones_are_not(section, where, refused):
    data = ENVELOPE.format(section + _system("vm") if where == "envelope" else _system("vm", section)).encode()
    if refused:
        with pytest.raises(ParseError, match="is required .* not one this tool understands"):
            parse_ovf(data)
    else:
        optional = parse_ovf(data).optional_sections
        assert [s.name for s in optional] == (["AcmeSection"] if "Acme" in section else ["Magic"] if "Magic" in section else [])


def test_networks_licences_and_item_details_are_facts():
    body = ('<EulaSection><Info>x</Info><License>\n  Use it kindly.\n</License></EulaSection>'
            '<VirtualHardwareSection><Info>hw</Info>'
            '<Item xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">'
            '<rasd:Connection>VM Network</rasd:Connection><rasd:ElementName>nic</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID>'
            '<rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType><rasd:ResourceType>10</rasd:ResourceType></Item>'
            '</VirtualHardwareSection>')  # fmt: skip
    networks = '<NetworkSection><Info>n</Info><Network ovf:name="VM Network"><Description>the  LAN</Description></Network></NetworkSection>'
    ovf = parse_ovf(ENVELOPE.format(networks + _system("vm", body)).encode())
    assert [(n.name, n.description) for n in ovf.networks] == [("VM Network", "the LAN")]
    assert [(e.system, e.text) for e in ovf.eulas] == [("vm", "Use it kindly.")]
    assert [(i.subtype, i.connections) for i in ovf.items] == [("VmxNet3", ("VM Network",))]
    descriptor = from_ovf("a.ovf", ovf)
    assert [n.name for n in descriptor.networks] == ["VM Network"] and descriptor.licenses[0].value == "Use it kindly."
    from certify.bundle.ovf import MAX_LICENSE_CHARS

    huge = ENVELOPE.format(_system("vm", f"<EulaSection><Info>x</Info><License>{'x' * (MAX_LICENSE_CHARS + 1)}</License></EulaSection>"))
    with pytest.raises(ParseError, match="EulaSection License"):
        parse_ovf(huge.encode())


def test_vmw_config_is_read_like_extra_config_and_scoped_per_device():
    hw = ('<VirtualHardwareSection><Info>hw</Info>'
          '<Item><Info>a</Info><vmw:Config vmw:key="slotInfo.pciSlotNumber" vmw:value="32"/></Item>'
          '<Item><Info>b</Info><vmw:Config vmw:key="slotInfo.pciSlotNumber" vmw:value="33"/></Item>'
          '<vmw:Config vmw:key="firmware" vmw:value="efi"/>'
          '<vmw:ExtraConfig vmw:key="firmware" vmw:value="bios"/></VirtualHardwareSection>')  # fmt: skip
    ovf = parse_ovf(ENVELOPE.format(_system("vm", hw)).encode())
    assert [(e.element, e.key, e.value) for e in ovf.extra_config] == [
        ("Config", "slotInfo.pciSlotNumber", "32"), ("Config", "slotInfo.pciSlotNumber", "33"),
        ("Config", "firmware", "efi"), ("ExtraConfig", "firmware", "bios")]  # fmt: skip
    scopes = [e.system for e in ovf.extra_config]
    assert scopes[0] != scopes[1] and scopes[2] == scopes[3] == "vm"
    assert [e.source for e in from_ovf("a.ovf", ovf).entries] == ["vmw:Config"] * 3 + ["vmw:ExtraConfig"]
    bad = ENVELOPE.format(_system("vm", '<VirtualHardwareSection><Info>hw</Info><vmw:Config vmw:key="a b" vmw:value="x"/></VirtualHardwareSection>'))
    with pytest.raises(ParseError, match="vmw:Config key 'a b' is not a VMX key"):
        parse_ovf(bad.encode())


def _item(fields: str) -> bytes:
    rasd = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
    hw = f'<VirtualHardwareSection><Info>hw</Info><Item xmlns:rasd="{rasd}"><rasd:ElementName>x</rasd:ElementName>{fields}</Item></VirtualHardwareSection>'
    return ENVELOPE.format(_system("vm", hw)).encode()


@pytest.mark.parametrize(
    "fields, match",
    [
        ("<rasd:InstanceID>9</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:ResourceType>21</rasd:ResourceType>",
         "2 ResourceType fields"),
        ("<rasd:InstanceID>9</rasd:InstanceID><rasd:InstanceID>10</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType>",
         "2 InstanceID fields"),
        ("<rasd:ResourceType>10</rasd:ResourceType><rasd:ResourceSubType>E1000</rasd:ResourceSubType>"
         "<rasd:ResourceSubType>vmware.cdrom.atapi</rasd:ResourceSubType>", "2 ResourceSubType fields"),
        ("<rasd:ResourceType>021</rasd:ResourceType>", "ResourceType '021' is not a plain decimal number"),
        ("<rasd:ResourceType>+21</rasd:ResourceType>", "ResourceType '\\+21' is not a plain decimal number"),
        ("<rasd:ResourceType>0x15</rasd:ResourceType>", "ResourceType '0x15' is not a plain decimal number"),
        ("<rasd:ResourceType>２１</rasd:ResourceType>", "is not a plain decimal number"),
    ],
)  # fmt: skip
def test_hardware_items_cannot_disguise_their_type(fields, match):
    with pytest.raises(ParseError, match=match):
        parse_ovf(_item(fields))


def test_hardware_items_with_repeated_list_fields_and_canonical_types_parse():
    fields = ("<rasd:ResourceType>17</rasd:ResourceType><rasd:HostResource>ovf:/disk/a</rasd:HostResource>"
              "<rasd:HostResource>ovf:/disk/b</rasd:HostResource><rasd:Connection>n1</rasd:Connection><rasd:Connection>n2</rasd:Connection>")  # fmt: skip
    (item,) = parse_ovf(_item(fields)).items
    assert item.resource_type == "17" and item.host_resources == ("ovf:/disk/a", "ovf:/disk/b") and item.connections == ("n1", "n2")


@pytest.mark.parametrize("holder", ["VirtualSystemCollection", "ProductSection"])
def test_a_hardware_section_belongs_directly_in_a_virtual_system(holder):
    hw = ('<VirtualHardwareSection><Info>hw</Info>'
          '<vmw:ExtraConfig vmw:key="sharedFolder0.hostPath" vmw:value="/"/></VirtualHardwareSection>')  # fmt: skip
    if holder == "VirtualSystemCollection":
        body = f'<VirtualSystemCollection ovf:id="c"><Info>vApp</Info>{hw}{_system("vm")}</VirtualSystemCollection>'
    else:
        body = _system("vm", f"<ProductSection><Info>p</Info>{hw}</ProductSection>")
    with pytest.raises(ParseError, match=f"VirtualHardwareSection inside '{holder}'"):
        parse_ovf(ENVELOPE.format(body).encode())


@pytest.mark.parametrize(
    "value, shown",
    [
        ("https://user:pa@ss@host/x", "https://***@host/x"),
        ("https://user:secret@host/x?token=abc#frag", "https://***@host/x?***"),
        ("http://host/x#access_token=abc", "http://host/x#***"),
        ("smb://dom;user:p@w@fileserver/share", "smb://***@fileserver/share"),
        ("telnet://0.0.0.0:2323", "telnet://0.0.0.0:2323"),
        ("/vmfs/volumes/ds/vm.vmdk?x=1", "/vmfs/volumes/ds/vm.vmdk?***"),
        ("[datastore1] vm/vm.vmdk", "[datastore1] vm/vm.vmdk"),
    ],
)
def test_redact_masks_all_of_the_userinfo_queries_and_fragments(value, shown):
    assert redact(value) == shown


def test_tar_member_headers_of_huge_and_long_named_files_as_writers_leave_them():
    """What tarfile, GNU tar and VirtualBox write where the ustar fields cannot hold a size or a name passes; the same
    fields contradicting a value they could hold do not."""
    from test_ingest import _header, _pax, _sealed

    from certify.bundle.tarheaders import member_problem

    def member(name: str, size_field: bytes, extended: bytes = b"") -> bytes:
        header = _header(name, 0)
        header[124:136] = size_field
        return extended + bytes(_sealed(header))

    huge = str(9 * 1024**3).encode()
    for field in (b"00000000000\0", b"77777777777\0", b"\x80" + (9 * 1024**3).to_bytes(11, "big")):
        assert member_problem(member("disk.vmdk", field, _pax([(b"size", huge)]))) is None, field
    assert member_problem(member("disk.vmdk", b"\x80" + (9 * 1024**3).to_bytes(11, "big"))) is None  # GNU base-256, no PAX
    assert member_problem(member("disk.vmdk", b"00000000000\0", _pax([(b"size", b"1024")]))) == (
        "its PAX header says 1024 bytes, its ustar header 0: readers that ignore PAX would read another archive")
    assert member_problem(member("disk.vmdk", b"\xff" + bytes(11))).startswith("the size field of its header")  # a negative size
    # A name the ustar field cannot hold (non-ASCII: tarfile writes '?'; over 100 bytes: its first 100) is PAX's alone.
    assert member_problem(member("?t?.txt", b"00000000000\0", _pax([(b"path", "\u00e9t\u00e9.txt".encode())]))) is None
    assert member_problem(member("d" * 100, b"00000000000\0", _pax([(b"path", b"d" * 150)]))) is None
    assert member_problem(member("a.txt", b"00000000000\0", _pax([(b"path", b"b.txt")]))) == (
        "its PAX path b'b.txt' and its ustar name b'a.txt' differ")
    # An extended header whose size runs past the headers given: a problem, not an IndexError.
    pax = bytes(_sealed(_header("././@PaxHeader", 28, kind=b"x")))
    assert member_problem(pax) == "its headers do not end where its data begins"
