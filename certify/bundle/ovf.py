"""An OVF descriptor parser: bytes in, plain data out, only ParseError escapes.

XML is parsed with defusedxml with DTDs forbidden, so no entity, external
reference or XInclude is ever resolved. Only OVF 1.x and 2.x are accepted.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from xml.parsers.expat import ExpatError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from certify.bundle.vmx import KEY as VMX_KEY
from certify.errors import ParseError

MAX_BYTES = 8 * 1024 * 1024
MAX_SYSTEMS = 64  # VirtualSystems in one package, nested ones included
MAX_COLLECTION_DEPTH = 4  # VirtualSystemCollections inside one another
MAX_LICENSE_CHARS = 256 * 1024  # one EulaSection License: display text, nothing more
MAX_DEPTH = 64  # elements inside one another; real descriptors stay under 20

OVF_NAMESPACES = {
    "http://schemas.dmtf.org/ovf/envelope/1": "1.x",
    "http://schemas.dmtf.org/ovf/envelope/2": "2.x",
}
OVF_09_NAMESPACE = "http://www.vmware.com/schema/ovf/1/envelope"
VMW = "http://www.vmware.com/schema/ovf"
VBOX = "http://www.virtualbox.org/ovf/machine"
XINCLUDE = "http://www.w3.org/2001/XInclude"
VSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"

_LINE = "{urn:certify:parse}line"

# Sections this parser reads or knows to be harmless. Any other section the
# descriptor marks required (ovf:required defaults to true, DSP0243) must make a
# deployment fail; a certification cannot vouch for what it does not read.
KNOWN_SECTIONS = {
    "AnnotationSection", "DeploymentOptionSection", "DiskSection", "EulaSection", "InstallSection",
    "NetworkSection", "OperatingSystemSection", "ProductSection", "ResourceAllocationSection",
    "StartupSection", "VirtualHardwareSection", "BootDeviceSection", "EnvironmentFilesSection",
    "SharedDiskSection", "ScaleOutSection", "PlacementGroupSection", "PlacementSection",
}  # fmt: skip
# Vendor sections real exports carry, often without ovf:required="false" (the
# kubernetes image-builder template's vmw:BootOrderSection): known, read or harmless.
KNOWN_VENDOR_SECTIONS = {
    (VMW, "BootOrderSection"), (VMW, "IpAssignmentSection"), (VMW, "StorageGroupSection"),
    (VMW, "StorageSection"), (VBOX, "Machine"),
}  # fmt: skip
# Children of an Envelope, VirtualSystem or VirtualSystemCollection that are not sections.
_NOT_SECTIONS = {"Info", "Name", "References", "Strings", "VirtualSystem", "VirtualSystemCollection"}


@dataclass(frozen=True)
class OvfFile:
    id: str
    href: str
    size: str | None
    compression: str | None
    chunk_size: str | None
    line: int


@dataclass(frozen=True)
class OvfDisk:
    disk_id: str
    file_ref: str | None
    capacity: str | None
    format: str | None
    line: int
    capacity_units: str | None = None
    parent_ref: str | None = None  # ovf:parentRef: a delta disk on another Disk


@dataclass(frozen=True)
class ExtraConfig:
    """A ``vmw:ExtraConfig`` entry (a raw VMX line carried inside the OVF), or a ``vmw:Config`` one.

    ``system`` scopes duplicates: the VirtualSystem, plus the hardware section
    or Item a ``vmw:Config`` belongs to.
    """

    key: str
    value: str
    line: int
    system: str
    element: str = "ExtraConfig"  # or "Config": a VirtualMachineConfigSpec field


@dataclass(frozen=True)
class Network:
    """A NetworkSection Network: a logical network the deployer maps to one of its own."""

    name: str
    description: str
    line: int


@dataclass(frozen=True)
class Eula:
    """An EulaSection License: display text only."""

    system: str
    text: str
    line: int


@dataclass(frozen=True)
class OptionalSection:
    """A section this parser does not read, marked ovf:required="false": ignored, as a deployer may."""

    name: str
    line: int


@dataclass(frozen=True)
class Property:
    """A ProductSection property: deployed into the guest's OVF environment in clear."""

    key: str
    value: str  # a default: ovf:value, or one of its <Value ovf:value> children
    password: bool  # ovf:password="true"
    type: str  # ovf:type: string, boolean, uint8, ...
    line: int


@dataclass(frozen=True)
class HardwareFamily:
    """A vssd:VirtualSystemType, e.g. 'vmx-19' (several may be listed, space-separated)."""

    value: str
    line: int


@dataclass(frozen=True)
class HardwareItem:
    """A VirtualHardwareSection Item (or 2.x StorageItem/EthernetPortItem)."""

    resource_type: str
    host_resources: tuple[str, ...]
    name: str
    line: int
    subtype: str = ""  # rasd:ResourceSubType, e.g. vmware.cdrom.atapi
    connections: tuple[str, ...] = ()  # rasd:Connection: NetworkSection names


@dataclass(frozen=True)
class VboxSetting:
    """A vbox:Machine setting VirtualBox would apply on import that reaches the host.

    ``kind``: remote-display, port (UART/LPT backed by the host), host-drive,
    usb-filter, audio (host sound), nic (bridged/host-only/generic adapter) or
    disk (a medium's location).
    """

    kind: str
    element: str  # e.g. vbox:UART/Port[@slot='0']
    value: str
    line: int


@dataclass(frozen=True)
class OvfDescriptor:
    version: str
    files: tuple[OvfFile, ...]
    disks: tuple[OvfDisk, ...]
    systems: tuple[str, ...]
    extra_config: tuple[ExtraConfig, ...]
    properties: tuple[Property, ...] = ()
    hardware: tuple[HardwareFamily, ...] = ()
    items: tuple[HardwareItem, ...] = ()
    vbox_shared_folders: tuple[HardwareFamily, ...] = ()  # hostPath of each vbox:Machine SharedFolder
    networks: tuple[Network, ...] = ()
    eulas: tuple[Eula, ...] = ()
    optional_sections: tuple[OptionalSection, ...] = ()
    vbox_settings: tuple[VboxSetting, ...] = ()  # vbox:Machine settings beyond shared folders


class _LineTreeBuilder(ET.TreeBuilder):
    """Records the source line of every element as a private attribute, and the namespace prefixes declared."""

    expat = None

    def __init__(self) -> None:
        super().__init__()
        self.prefixes: list[tuple[str, str]] = []

    def start_ns(self, prefix, uri):  # noqa: D102 - XMLParser target protocol
        self.prefixes.append((prefix or "", uri))

    def start(self, tag, attrs):  # noqa: D102 - TreeBuilder protocol
        attrs = dict(attrs)
        attrs[_LINE] = str(self.expat.CurrentLineNumber if self.expat else 0)
        return super().start(tag, attrs)


def parse_tree(data: bytes) -> tuple[ET.Element, list[tuple[str, str]]]:
    """The element tree (each element's source line under the private LINE_ATTR) and the (prefix, uri) pairs declared.

    For rewriting a descriptor (certify sanitize); ParseError on anything parse_ovf would refuse at the XML level.
    """
    builder = _LineTreeBuilder()
    return _parse_xml(data, builder), builder.prefixes


LINE_ATTR = _LINE


def _parse_xml(data: bytes, builder: _LineTreeBuilder | None = None) -> ET.Element:
    builder = builder or _LineTreeBuilder()
    parser = DefusedXMLParser(target=builder, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    builder.expat = parser.parser
    try:
        parser.feed(data)
        return parser.close()
    except DefusedXmlException as exc:
        raise ParseError(f"forbidden XML construct: {type(exc).__name__}") from None
    except (ET.ParseError, ExpatError) as exc:
        raise ParseError(f"malformed XML: {exc}") from None
    except (LookupError, UnicodeError, ValueError) as exc:  # an XML declaration naming a bogus or binary codec
        raise ParseError(f"unusable XML encoding: {str(exc)[:80]}") from None
    except RecursionError:
        raise ParseError("XML nested too deeply") from None


def _attr(elem: ET.Element, ns: str, name: str) -> str | None:
    """An attribute in the envelope namespace; unqualified as a fallback (seen in the wild)."""
    value = elem.get(f"{{{ns}}}{name}")
    return value if value is not None else elem.get(name)


def parse_ovf(data: bytes, *, max_bytes: int = MAX_BYTES) -> OvfDescriptor:
    if len(data) > max_bytes:
        raise ParseError(f"OVF descriptor is {len(data)} bytes, over the {max_bytes}-byte limit")
    root = _parse_xml(data)
    ns, _, local = root.tag[1:].partition("}") if root.tag.startswith("{") else ("", "", root.tag)
    if ns == OVF_09_NAMESPACE:
        raise ParseError("OVF 0.9 (VMware pre-standard) is not supported; re-export as OVF 1.0 or later")
    if local != "Envelope" or ns not in OVF_NAMESPACES:
        raise ParseError(f"root element is {root.tag!r}, not an OVF 1.x/2.x Envelope")

    def line(elem: ET.Element) -> int:
        return int(elem.get(_LINE, "0"))

    def q(name: str) -> str:
        return f"{{{ns}}}{name}"

    files = []
    for elem in root.iterfind(f"{q('References')}/{q('File')}"):
        file_id, href = _attr(elem, ns, "id"), _attr(elem, ns, "href")
        if not file_id or href is None:
            raise ParseError(f"line {line(elem)}: File without ovf:id or ovf:href")
        files.append(
            OvfFile(
                id=file_id,
                href=href,
                size=_attr(elem, ns, "size"),
                compression=_attr(elem, ns, "compression"),
                chunk_size=_attr(elem, ns, "chunkSize"),
                line=line(elem),
            )
        )
    ids = [f.id for f in files]
    if len(set(ids)) != len(ids):
        raise ParseError("two References/File elements share one ovf:id")

    disks = []
    for elem in root.iterfind(f"{q('DiskSection')}/{q('Disk')}"):
        disk_id = _attr(elem, ns, "diskId")
        if not disk_id:
            raise ParseError(f"line {line(elem)}: Disk without ovf:diskId")
        disks.append(
            OvfDisk(
                disk_id=disk_id,
                file_ref=_attr(elem, ns, "fileRef"),
                capacity=_attr(elem, ns, "capacity"),
                format=_attr(elem, ns, "format"),
                line=line(elem),
                capacity_units=_attr(elem, ns, "capacityAllocationUnits"),
                parent_ref=_attr(elem, ns, "parentRef"),
            )
        )

    for elem in root.iter():
        if isinstance(elem.tag, str) and elem.tag.startswith(f"{{{XINCLUDE}}}"):
            raise ParseError(f"line {line(elem)}: XInclude ({_local(elem.tag)}) is never resolved; a descriptor must be one file")
    _check_structure(root, ns)
    for holder in root.iter():
        for child in holder:
            if child.tag == q("VirtualHardwareSection") and holder.tag != q("VirtualSystem"):
                raise ParseError(f"line {line(child)}: VirtualHardwareSection inside {_local(holder.tag)[:60]!r}; "
                                 "it belongs directly in a VirtualSystem")  # fmt: skip
    systems, extra = [], []
    for system in root.iter(q("VirtualSystem")):
        system_id = _attr(system, ns, "id") or ""
        systems.append(system_id)
        extra += _config_entries(system, system_id, line, q)
    if not systems:
        raise ParseError("no VirtualSystem in the descriptor")
    if len(set(systems)) != len(systems):
        raise ParseError("two VirtualSystems share one ovf:id")
    properties = []
    for elem in root.iter(q("Property")):
        key, kind = _attr(elem, ns, "key") or "", (_attr(elem, ns, "type") or "").strip().lower()
        password = (_attr(elem, ns, "password") or "").strip().lower() in ("true", "1")
        defaults = [(elem, _attr(elem, ns, "value") or "")]
        defaults += [(v, _attr(v, ns, "value") or "") for v in elem.iter(q("Value"))]
        properties += [Property(key=key, value=value, password=password, type=kind, line=line(where)) for where, value in defaults]
    hardware = [HardwareFamily(value=(elem.text or "").strip(), line=line(elem)) for elem in root.iter(f"{{{VSSD}}}VirtualSystemType")]
    items = [_item(elem, line(elem)) for elem in root.iter() if _local(elem.tag) in ("Item", "StorageItem", "EthernetPortItem")]
    networks = [Network(name=_attr(elem, ns, "name") or "", description=" ".join(elem.findtext(q("Description"), "").split())[:200],
                        line=line(elem)) for elem in root.iterfind(f"{q('NetworkSection')}/{q('Network')}")]  # fmt: skip
    eulas = []
    for system in root.iter(q("VirtualSystem")):
        for elem in system.iterfind(f"{q('EulaSection')}/{q('License')}"):
            text = "".join(elem.itertext())
            if len(text) > MAX_LICENSE_CHARS:
                raise ParseError(f"line {line(elem)}: an EulaSection License of {len(text)} characters (limit {MAX_LICENSE_CHARS})")
            eulas.append(Eula(system=_attr(system, ns, "id") or "", text=text.strip(), line=line(elem)))
    # A vbox:Machine block is a second, complete machine configuration; VirtualBox imports its shared folders.
    shared = [HardwareFamily(value=elem.get("hostPath", ""), line=line(elem))
              for machine in root.iter(f"{{{VBOX}}}Machine") for elem in machine.iter() if _local(elem.tag) == "SharedFolder"]  # fmt: skip
    return OvfDescriptor(
        version=OVF_NAMESPACES[ns],
        files=tuple(files),
        disks=tuple(disks),
        systems=tuple(systems),
        extra_config=tuple(extra),
        properties=tuple(properties),
        hardware=tuple(hardware),
        items=tuple(items),
        vbox_shared_folders=tuple(shared),
        networks=tuple(networks),
        eulas=tuple(eulas),
        optional_sections=tuple(_optional_sections(root, ns, line)),
        vbox_settings=tuple(setting for machine in root.iter(f"{{{VBOX}}}Machine") for setting in read_vbox_settings(machine, line)),
    )


_VBOX_NIC_MODES = {"BridgedInterface", "HostOnlyInterface", "HostOnlyNetwork", "GenericInterface", "CloudNetwork"}


def read_vbox_settings(machine: ET.Element, line) -> list[VboxSetting]:
    """What a vbox:Machine would bind on the host: VRDE console, host-backed ports, USB filters, host NICs, media paths.

    Elements are read by local name, as VirtualBox writes its settings without a
    namespace. Settings under a NIC's DisabledModes are remembered, not used.
    """
    found: list[VboxSetting] = []
    disabled = {id(e) for d in machine.iter() if _local(d.tag) == "DisabledModes" for e in d.iter()}
    for parent, elem in [(p, c) for p in machine.iter() for c in p]:
        name = _local(elem.tag)
        if id(elem) in disabled:
            continue
        if name == "RemoteDisplay" and (elem.get("enabled") or "false").strip().lower() not in ("false", "0", "no", "off"):
            ports = [p.get("value", "") for p in elem.iter() if _local(p.tag) == "Property" and p.get("name") == "TCP/Ports"]
            found.append(VboxSetting("remote-display", "vbox:RemoteDisplay/@enabled", elem.get("enabled", "") + (f", TCP ports {ports[0]}" if ports else ""), line(elem)))
        elif name == "Port" and _local(parent.tag) in ("UART", "LPT"):
            mode = (elem.get("hostMode") or "").strip()
            path = elem.get("path") or ""
            if mode and mode.lower() != "disconnected":  # VirtualBox's default mode is Disconnected
                kind = _local(parent.tag)
                found.append(VboxSetting("port", f"vbox:{kind}/Port[@slot={elem.get('slot', '')!r}]", f"hostMode={mode or '(none)'} path={path}", line(elem)))
        elif name == "HostDrive":
            found.append(VboxSetting("host-drive", "vbox:HostDrive/@src", elem.get("src", ""), line(elem)))
        elif name == "AttachedDevice" and (elem.get("passthrough") or "").strip().lower() == "true":
            found.append(VboxSetting("host-drive", "vbox:AttachedDevice/@passthrough", "true", line(elem)))
        elif name == "AudioAdapter" and (elem.get("enabled") or "false").strip().lower() not in ("false", "0", "no", "off"):
            found.append(VboxSetting("audio", "vbox:AudioAdapter/@enabled", elem.get("driver") or elem.get("controller") or "", line(elem)))
        elif name == "DeviceFilter":
            found.append(VboxSetting("usb-filter", f"vbox:USB/DeviceFilters/DeviceFilter[@name={elem.get('name', '')!r}]",
                                     elem.get("name", ""), line(elem)))  # fmt: skip
        elif name in _VBOX_NIC_MODES:
            shown = elem.get("name") or elem.get("driver") or ""
            found.append(VboxSetting("nic", f"vbox:Adapter/{name}", shown, line(elem)))
        elif name in ("HardDisk", "Image") and elem.get("location") is not None:
            found.append(VboxSetting("disk", f"vbox:{name}/@location", elem.get("location", ""), line(elem)))
    return found



def _config_entries(system: ET.Element, system_id: str, line, q) -> list[ExtraConfig]:
    """vmw:ExtraConfig and vmw:Config anywhere in a VirtualSystem, each scoped to what it configures.

    Both become settings of the VM and must be keys a VMX could hold, so every
    VMX rule can judge them. A ``vmw:Config`` inside an Item configures that
    device: the same key on two devices is not a duplicate.
    """
    scopes: dict[int, str] = {}
    for index, hardware in enumerate(system.iter(q("VirtualHardwareSection"))):
        scope = system_id if index == 0 else f"{system_id}#{index}"
        for elem in hardware.iter():
            scopes[id(elem)] = scope
        for number, item in enumerate(hardware):
            if _local(item.tag) in ("Item", "StorageItem", "EthernetPortItem"):
                for elem in item.iter():
                    scopes[id(elem)] = f"{scope}/item{number}"
    entries = []
    for elem in system.iter():
        if elem.tag not in (f"{{{VMW}}}ExtraConfig", f"{{{VMW}}}Config"):
            continue
        kind = _local(elem.tag)
        key = (elem.get(f"{{{VMW}}}key") or "").strip()
        if not VMX_KEY.match(key):
            raise ParseError(f"line {line(elem)}: vmw:{kind} key {key[:60]!r} is not a VMX key")
        scope = scopes.get(id(elem), system_id)
        if kind == "ExtraConfig":  # VM-wide VMX lines, wherever written
            scope = scope.split("/item")[0]
        entries.append(ExtraConfig(key=key, value=elem.get(f"{{{VMW}}}value", ""), line=line(elem), system=scope, element=kind))
    return entries


def _required(elem: ET.Element, ns: str) -> bool:
    """ovf:required defaults to true (DSP0243); only an explicit false makes a section optional."""
    return (_attr(elem, ns, "required") or "true").strip().lower() not in ("false", "0")


def _sections(root: ET.Element, ns: str) -> Iterator[ET.Element]:
    """Section elements of the Envelope and of every VirtualSystem(Collection), wherever nested."""
    holders = [root, *root.iter(f"{{{ns}}}VirtualSystem"), *root.iter(f"{{{ns}}}VirtualSystemCollection")]
    for holder in holders:
        for child in holder:
            if isinstance(child.tag, str) and not (child.tag.startswith(f"{{{ns}}}") and _local(child.tag) in _NOT_SECTIONS):
                yield child


def _known(elem: ET.Element, ns: str) -> bool:
    uri, _, local = elem.tag[1:].partition("}") if elem.tag.startswith("{") else ("", "", elem.tag)
    return (uri == ns and local in KNOWN_SECTIONS) or (uri, local) in KNOWN_VENDOR_SECTIONS


def unknown_sections(root: ET.Element) -> list[ET.Element]:
    """Sections of a parsed Envelope this parser does not read (optional ones, once parse_ovf has accepted the document)."""
    ns = root.tag[1:].partition("}")[0] if root.tag.startswith("{") else ""
    return [e for e in _sections(root, ns) if not _known(e, ns)]


def _optional_sections(root: ET.Element, ns: str, line) -> list[OptionalSection]:
    return [OptionalSection(name=_local(e.tag), line=line(e)) for e in unknown_sections(root)]


def _check_structure(root: ET.Element, ns: str) -> None:
    """Bounded nesting, VirtualSystemCollections and systems; no required unknown section."""
    stack = [(root, 1)]
    while stack:  # iteratively: the depth is what is being bounded
        elem, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ParseError(f"line {elem.get(_LINE)}: elements nested more than {MAX_DEPTH} deep")
        stack.extend((child, depth + 1) for child in elem)

    def walk(elem: ET.Element, depth: int) -> None:
        for child in elem:
            if child.tag == f"{{{ns}}}VirtualSystemCollection":
                if depth + 1 > MAX_COLLECTION_DEPTH:
                    raise ParseError(f"line {child.get(_LINE)}: VirtualSystemCollections nested more than {MAX_COLLECTION_DEPTH} deep")
                walk(child, depth + 1)

    walk(root, 0)
    count = sum(1 for _ in root.iter(f"{{{ns}}}VirtualSystem"))
    if count > MAX_SYSTEMS:
        raise ParseError(f"{count} VirtualSystems in one package (limit {MAX_SYSTEMS})")
    for elem in _sections(root, ns):
        if not _known(elem, ns) and _required(elem, ns):
            shown = _local(elem.tag)[:60]
            raise ParseError(f"line {elem.get(_LINE)}: section {shown!r} is required (no ovf:required=\"false\") "
                             "but not one this tool understands; a deployer must refuse it too")  # fmt: skip


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


# CIM_ResourceAllocationSettingData properties that hold one value (HostResource and Connection are arrays).
SINGLE_ITEM_FIELDS = frozenset({
    "ResourceType", "OtherResourceType", "ResourceSubType", "InstanceID", "ElementName", "Caption", "Description",
    "PoolID", "ConsumerVisibility", "AllocationUnits", "VirtualQuantity", "VirtualQuantityUnits", "Reservation",
    "Limit", "Weight", "AutomaticAllocation", "AutomaticDeallocation", "Parent", "Address", "AddressOnParent",
    "MappingBehavior",
})  # fmt: skip
_RESOURCE_TYPE = re.compile(r"0|[1-9][0-9]{0,4}")


def _item(elem: ET.Element, line: int) -> HardwareItem:
    """Fields read by local name: rasd: in 1.x Items, sasd:/epasd: in 2.x ones."""
    fields: dict[str, list[str]] = {}
    for child in elem:
        fields.setdefault(_local(child.tag), []).append((child.text or "").strip())
    repeated = sorted(name for name in SINGLE_ITEM_FIELDS if len(fields.get(name, ())) > 1)
    if repeated:
        name = repeated[0]
        raise ParseError(f"line {line}: hardware item has {len(fields[name])} {name} fields; readers disagree on which one counts")
    resource_type = (fields.get("ResourceType") or [""])[0]
    if resource_type and not _RESOURCE_TYPE.fullmatch(resource_type):
        raise ParseError(f"line {line}: ResourceType {resource_type[:20]!r} is not a plain decimal number (no sign, no leading zeros)")
    return HardwareItem(
        resource_type=resource_type,
        host_resources=tuple(v for v in fields.get("HostResource", []) if v),
        name=(fields.get("ElementName") or [""])[0],
        line=line,
        subtype=(fields.get("ResourceSubType") or [""])[0],
        connections=tuple(v for v in fields.get("Connection", []) if v),
    )


# DSP0004 programmatic units as OVF writers use them: byte, byte * 2^N, byte * 10^N; and the names some tools write.
_UNITS = re.compile(r"^byte(?:\s*\*\s*(2|10)\^(\d{1,2}))?$", re.IGNORECASE)
_NAMED_UNITS = {"kb": 2**10, "mb": 2**20, "gb": 2**30, "tb": 2**40, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def _unit_bytes(units: str | None) -> int | None:
    text = " ".join((units or "byte").split())
    named = _NAMED_UNITS.get(text.lower())
    if named:
        return named
    match = _UNITS.match(text)
    if match is None:
        return None
    return int(match.group(1)) ** int(match.group(2)) if match.group(1) else 1


def capacity_bytes(disk: OvfDisk) -> int | None:
    """A Disk's declared capacity in bytes, or None when it is not a plain number (templates, odd units)."""
    text = (disk.capacity or "").strip()
    unit = _unit_bytes(disk.capacity_units)
    if not re.fullmatch(r"[0-9]{1,20}", text) or unit is None:
        return None
    return int(text) * unit
