"""Translate and scour an OVF descriptor: keep what a cloud may load, record every change and why.

Pure: the descriptor's bytes in, the sanitized XML text and the list of
changes out; only ParseError escapes (for a descriptor the scanner would
reject too). The same rules as for a VMX apply to ``vmw:ExtraConfig`` and
``vmw:Config`` entries. What goes:

- References/File entries that are not bare names of files in the package,
  and the Disks and hardware Items that use them;
- hardware Items of host devices (floppy, serial, parallel, USB, sound, CD-ROM
  or PCI pass-through) and Items whose HostResource is not a package disk/file;
- VNC, shared folders, serial/parallel ports, debug stubs, host-owned
  locations, guestinfo and identity (uuids, MAC addresses) in ExtraConfig or
  Config, ExtraConfig keys not on the allowed list, duplicates (first kept);
- vbox:Machine blocks (a second, VirtualBox-only machine configuration) and
  optional sections the parser does not read;
- default values of password properties.

The vSphere 8 STIG isolation values are written as ``vmw:ExtraConfig`` in
every VirtualHardwareSection. Sanitizing the output again changes nothing.
"""

from __future__ import annotations

import fnmatch
import re
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from certify.bundle.descriptor import outside_bundle_reason, redact
from certify.bundle.ovf import LINE_ATTR, VBOX, VMW, parse_ovf, parse_tree, read_vbox_settings, unknown_sections
from certify.bundle.sanitize_vmx import Change, path_rule
from certify.bundle.vmx_policy import (
    DEFAULT_CONFIG_ALLOWED,
    DEFAULT_EXTRACONFIG_ALLOWED,
    HARDENING,
    HOST_ITEM_SUBTYPE,
    HOST_ITEM_TYPES,
    NOT_TEXT_TYPES,
    RAW_DEVICE_TYPES,
    SECRET_KEYS,
    removal_for,
    secret_content,
    secret_name,
)

XML_NS = "http://www.w3.org/XML/1998/namespace"
# Prefixes written for well-known namespaces a document did not name itself.
KNOWN_PREFIXES = {
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData": "rasd",
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData": "vssd",
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_StorageAllocationSettingData": "sasd",
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_EthernetPortAllocationSettingData": "epasd",
    "http://schemas.dmtf.org/wbem/wscim/1/common": "cim",
    "http://www.w3.org/2001/XMLSchema-instance": "xsi",
    VMW: "vmw",
    VBOX: "vbox",
}  # fmt: skip
# The STIG keys are kept here whatever their value: _harden then writes the STIG value.
ALLOWED_EXTRACONFIG = [p.lower() for p in DEFAULT_EXTRACONFIG_ALLOWED] + [k.lower() for k in HARDENING]
ALLOWED_CONFIG = [p.lower() for p in DEFAULT_CONFIG_ALLOWED]
_HARDENING_KEYS = {k.lower() for k in HARDENING}
_DEVICE_NAMESPACE = re.compile(r"^(scsi|ide|sata|nvme)\d+:\d+$", re.IGNORECASE)
# vmw:Config fields (VirtualMachineConfigSpec) that are identity or let the guest plug devices in.
CONFIG_REMOVE = [
    (re.compile(r"(uuid|instanceuuid|locationid)$", re.IGNORECASE), "identity: regenerated on deploy", ""),
    (re.compile(r"connectable\.allowguestcontrol$", re.IGNORECASE), "the guest could connect and disconnect the device", ""),
]
_PACKAGE_RESOURCE = re.compile(r"^(ovf:)?/(disk|file)/([^/]+)$")
_NIC_TYPES = {"10", "11"}
_ITEMS = ("Item", "StorageItem", "EthernetPortItem")
_NCNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _uri(tag: str) -> str:
    return tag[1:].partition("}")[0] if tag.startswith("{") else ""


@dataclass
class _Doc:
    root: ET.Element
    ns: str
    parents: dict[int, ET.Element]
    changes: list[Change] = field(default_factory=list)
    pending: dict[int, tuple[ET.Element, set[int]]] = field(default_factory=dict)  # parent id -> (parent, ids to remove)

    def attr(self, elem: ET.Element, name: str) -> str | None:
        value = elem.get(f"{{{self.ns}}}{name}")
        return value if value is not None else elem.get(name)

    def q(self, name: str) -> str:
        return f"{{{self.ns}}}{name}"

    def line(self, elem: ET.Element) -> int | None:
        text = elem.get(LINE_ATTR)
        return int(text) if text and text.isdigit() else None

    def change(self, action: str, key: str, old: str | None, new: str | None, reason: str, check: str, elem: ET.Element | None) -> None:
        self.changes.append(Change(action, key, old, new, reason, check, self.line(elem) if elem is not None else None))

    def remove(self, elem: ET.Element) -> None:
        """Mark ``elem`` for removal; flush() takes marked children out, one pass per parent."""
        parent = self.parents[id(elem)]
        self.pending.setdefault(id(parent), (parent, set()))[1].add(id(elem))

    def flush(self) -> None:
        """Take out every marked element, keeping the indentation of what follows: each parent rebuilt once."""
        for parent, doomed in self.pending.values():
            children = list(parent)
            kept = [c for c in children if id(c) not in doomed]
            if children and id(children[-1]) in doomed:  # the last child's tail is the indentation of the parent's end tag
                if kept:
                    kept[-1].tail = children[-1].tail
                else:
                    parent.text = children[-1].tail
            parent[:] = kept
        self.pending.clear()

    def append(self, parent: ET.Element, elem: ET.Element) -> None:
        """Add ``elem`` as the last child, indented like its siblings."""
        children = list(parent)
        if children:
            elem.tail = children[-1].tail
            children[-1].tail = children[-2].tail if len(children) > 1 else parent.text
        else:
            elem.tail = parent.tail
        parent.append(elem)
        self.parents[id(elem)] = parent


def sanitize_ovf(data: bytes) -> tuple[str, list[Change]]:
    """(the sanitized descriptor as XML text, the changes made). ParseError for a descriptor the scanner refuses."""
    parse_ovf(data)  # every structural rule of the scanner first: what it refuses is not rewritten either
    root, prefixes = parse_tree(data)
    doc = _Doc(root=root, ns=_uri(root.tag), parents={id(c): p for p in root.iter() for c in p})
    removed_files = _files(doc)
    doc.flush()
    removed_disks = _disks(doc, removed_files)
    doc.flush()
    for machine in [e for e in root.iter(f"{{{VBOX}}}Machine")]:
        doc.change("remove", "vbox:Machine", None, None, "VirtualBox machine settings: a second configuration (shared folders, "
                   "host ports and NICs, host paths, identity) a deployer must not import", _vbox_check(machine), machine)  # fmt: skip
        doc.remove(machine)
    for section in unknown_sections(root):  # optional (parse_ovf refused required ones): nothing vouches for them
        doc.change("remove", _local(section.tag), None, None, "optional section this tool does not read", "", section)
        doc.remove(section)
    doc.flush()
    for system in root.iter(doc.q("VirtualSystem")):
        _system(doc, system, removed_files, removed_disks)
    hardware = {id(h) for h in root.iter(doc.q("VirtualHardwareSection"))}
    for item in [e for e in root.iter() if _local(e.tag) in _ITEMS and id(doc.parents.get(id(e))) not in hardware]:
        doc.change("remove", f"{_local(item.tag)} (misplaced)", None, None, "hardware item outside a VirtualHardwareSection", "", item)
        doc.remove(item)
    doc.flush()
    _properties(doc)
    doc.flush()
    return serialize(root, doc.ns, prefixes), doc.changes


def _vbox_check(machine: ET.Element) -> str:
    """The check that reports the worst of what a vbox:Machine binds on the host ('' when it binds nothing)."""
    if any(_local(e.tag) == "SharedFolder" for e in machine.iter()):
        return "shared-folder"
    kinds = {v.kind for v in read_vbox_settings(machine, lambda e: 0)}
    order = [("port", "host-device-passthrough"), ("disk", "storage-path-outside-bundle"), ("remote-display", "vmx-vnc-enabled"),
             ("host-drive", "host-device-passthrough"), ("usb-filter", "host-device-passthrough"), ("audio", "host-device-passthrough"),
             ("nic", "host-device-passthrough")]  # fmt: skip
    return next((check for kind, check in order if kind in kinds), "")


# --- References, disks -------------------------------------------------------------------


def _files(doc: _Doc) -> dict[str, tuple[str, str]]:
    """Remove Files that are not bare names inside the package; their ids -> (reason, check)."""
    removed = {}
    for references in doc.root.iterfind(doc.q("References")):
        for elem in list(references.iterfind(doc.q("File"))):
            file_id, href = doc.attr(elem, "id") or "", doc.attr(elem, "href") or ""
            name = urllib.parse.unquote(href)
            why = outside_bundle_reason(name) or ("is not a bare file name" if "/" in name or "\\" in name else None)
            if why:
                doc.change("remove", f"References/File[@ovf:id={file_id!r}]", redact(href), None,
                           f"not a bare name of a file in the package: the href {why}", "storage-path-outside-bundle", elem)  # fmt: skip
                doc.remove(elem)
                removed[file_id] = ("its file is not a bare name of a file in the package", "storage-path-outside-bundle")
    return removed


def _disks(doc: _Doc, removed_files: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """Remove Disks whose file went or was never listed; their ids -> (reason, check)."""
    listed = {doc.attr(f, "id") for f in doc.root.iterfind(f"{doc.q('References')}/{doc.q('File')}")}
    removed = {}
    for section in doc.root.iterfind(doc.q("DiskSection")):
        for elem in list(section.iterfind(doc.q("Disk"))):
            disk_id, ref = doc.attr(elem, "diskId") or "", doc.attr(elem, "fileRef")
            if not ref:  # a blank disk the deployer creates
                continue
            if ref in removed_files:
                reason, check = removed_files[ref]
            elif ref not in listed:
                reason, check = "names a file References does not list", "dangling-reference"
            else:
                continue
            doc.change("remove", f"Disk[@ovf:diskId={disk_id!r}]", None, None, reason, check, elem)
            doc.remove(elem)
            removed[disk_id] = (f"its disk was removed ({reason})", check)
    return removed


# --- one VirtualSystem: hardware items, ExtraConfig and Config -----------------------------


def _system(doc: _Doc, system: ET.Element, removed_files: dict, removed_disks: dict) -> None:
    known = {
        "disk": {doc.attr(d, "diskId") for d in doc.root.iter(doc.q("Disk"))},
        "file": {doc.attr(f, "id") for f in doc.root.iter(doc.q("File"))},
    }
    hardware_sections = list(system.iter(doc.q("VirtualHardwareSection")))
    # vmw:ExtraConfig/Config belong right inside a VirtualHardwareSection or one of its Items; the scanner
    # reads them wherever they are, so elsewhere they go.
    placed = {id(c) for h in hardware_sections for c in h}
    placed |= {id(c) for h in hardware_sections for i in h if _local(i.tag) in _ITEMS for c in i}
    configs = (f"{{{VMW}}}ExtraConfig", f"{{{VMW}}}Config")
    for elem in [e for e in system.iter() if e.tag in configs and id(e) not in placed]:
        doc.change("remove", _config_key(elem), _shown(elem), None, f"vmw:{_local(elem.tag)} outside its place in a VirtualHardwareSection",
                   "extraconfig-smuggling", elem)  # fmt: skip
        doc.remove(elem)
    doc.flush()
    for hardware in hardware_sections:
        for item in [c for c in hardware if _local(c.tag) in _ITEMS]:
            if _item(doc, item, known, {"disk": removed_disks, "file": removed_files}):
                _config(doc, item, extra_allowed=False)
        _config(doc, hardware, extra_allowed=True)
        _harden(doc, hardware)


def _fields(item: ET.Element) -> dict[str, list[ET.Element]]:
    fields: dict[str, list[ET.Element]] = {}
    for child in item:
        fields.setdefault(_local(child.tag), []).append(child)
    return fields


def _item(doc: _Doc, item: ET.Element, known: dict[str, set], removed: dict[str, dict]) -> bool:
    """Remove a host-backed item (False), or strip its MAC address and keep it (True)."""
    fields = _fields(item)

    def text(name: str) -> str:
        return ((fields.get(name) or [ET.Element("x")])[0].text or "").strip()

    kind, subtype, name = text("ResourceType"), text("ResourceSubType"), text("ElementName")
    key = f"Item[rasd:InstanceID={text('InstanceID')!r}]"
    reason = check = None
    if kind in HOST_ITEM_TYPES:
        reason, check = f"host device: a {HOST_ITEM_TYPES[kind]}", "host-device-passthrough"
    elif subtype and HOST_ITEM_SUBTYPE.search(subtype):
        reason, check = f"host device passed through ({subtype})", "host-device-passthrough"
    for resource in [(r.text or "").strip() for r in fields.get("HostResource", [])]:
        if reason or not resource:
            continue
        match = _PACKAGE_RESOURCE.match(resource)
        if not match:
            why = outside_bundle_reason(resource) or "is not an ovf:/disk/ or ovf:/file/ reference to the package"
            reason, check = f"host resource {redact(resource)!r} {why}", "storage-path-outside-bundle"
        elif match.group(3) in removed[match.group(2)]:
            reason, check = removed[match.group(2)][match.group(3)]
        elif match.group(3) not in known[match.group(2)]:
            reason, check = f"names {match.group(2)} {match.group(3)!r}, which the package does not declare", "dangling-reference"
    if reason:
        doc.change("remove", key, name or None, None, reason, check or "", item)
        doc.remove(item)
        return False
    if kind in _NIC_TYPES or _local(item.tag) == "EthernetPortItem":
        for address in fields.get("Address", []):
            doc.change("remove", f"{key}/Address", (address.text or "").strip(), None, "MAC address: regenerated on deploy", "", address)
            doc.remove(address)
    return True


def _config_key(elem: ET.Element) -> str:
    return f"vmw:{_local(elem.tag)}[@vmw:key={(elem.get(f'{{{VMW}}}key') or '').strip()!r}]"


def _shown(elem: ET.Element) -> str:
    key, value = (elem.get(f"{{{VMW}}}key") or "").strip(), elem.get(f"{{{VMW}}}value", "")
    if value and (SECRET_KEYS.match(key) or secret_name(key) or secret_content(value)):
        return "(not shown)"
    return redact(value)


def _config(doc: _Doc, holder: ET.Element, extra_allowed: bool) -> None:
    """The vmw:ExtraConfig/vmw:Config children of a hardware section or an item, through the VMX rules.

    Both kinds get the same path, device and host-owned rules; a vmw:Config must
    also be a configuration field on the allowed list, and never a STIG key
    (_harden writes those as vmw:ExtraConfig, so the output has one value for each).
    """
    seen: set[str] = set()
    elems = [c for c in holder if c.tag in (f"{{{VMW}}}ExtraConfig", f"{{{VMW}}}Config")]
    doomed: dict[str, tuple[str, str]] = {}  # disk/CD namespaces (scsi0:1) that go whole, as in a VMX
    for elem in elems:
        key, value = (elem.get(f"{{{VMW}}}key") or "").strip(), elem.get(f"{{{VMW}}}value", "")
        namespace = key.rsplit(".", 1)[0].lower()
        if not _DEVICE_NAMESPACE.match(namespace):
            continue
        if key.lower().endswith(".filename") and value and outside_bundle_reason(value):
            doomed[namespace] = (f"storage outside the bundle ({outside_bundle_reason(value)})", "storage-path-outside-bundle")
        if key.lower().endswith(".devicetype") and value.strip().lower() in RAW_DEVICE_TYPES:
            doomed.setdefault(namespace, ("host device passed through", "host-device-passthrough"))
    for elem in elems:
        kind, key = _local(elem.tag), (elem.get(f"{{{VMW}}}key") or "").strip()
        value = elem.get(f"{{{VMW}}}value", "")
        rule = doomed.get(key.rsplit(".", 1)[0].lower()) or path_rule(key, value) or removal_for(key)
        if rule is None and kind == "Config":
            rule = next(((r, c) for rx, r, c in CONFIG_REMOVE if rx.match(key)), None)
        if rule is None and kind == "Config" and key.lower() in _HARDENING_KEYS:
            rule = ("STIG key as vmw:Config: its STIG value is written as vmw:ExtraConfig", "vmx-isolation-settings")
        if rule is None and key.lower() in seen:  # ExtraConfig and Config of one scope are one namespace to the scanner
            rule = ("duplicate key: the first value is kept", "duplicate-descriptor-key")
        if rule is None and kind == "ExtraConfig":
            if not extra_allowed:
                rule = ("vmw:ExtraConfig inside a hardware item", "extraconfig-smuggling")
            elif not any(fnmatch.fnmatchcase(key.lower(), p) for p in ALLOWED_EXTRACONFIG):
                rule = ("raw VMX setting not on the allowed list", "extraconfig-smuggling")
        if rule is None and kind == "Config" and not any(fnmatch.fnmatchcase(key.lower(), p) for p in ALLOWED_CONFIG):
            rule = ("configuration field not on the allowed list", "extraconfig-smuggling")
        if rule:
            doc.change("remove", _config_key(elem), _shown(elem), None, rule[0], rule[1], elem)
            doc.remove(elem)
            continue
        seen.add(key.lower())
    doc.flush()


def _harden(doc: _Doc, hardware: ET.Element) -> None:
    """The STIG isolation values, as vmw:ExtraConfig of this hardware section."""
    present = {(e.get(f"{{{VMW}}}key") or "").strip().lower(): e for e in hardware if e.tag == f"{{{VMW}}}ExtraConfig"}
    for key, value in HARDENING.items():
        elem = present.get(key.lower())
        if elem is None:
            elem = ET.Element(f"{{{VMW}}}ExtraConfig", {f"{{{doc.ns}}}required": "false", f"{{{VMW}}}key": key, f"{{{VMW}}}value": value})
            doc.append(hardware, elem)
            doc.change("set", f"vmw:ExtraConfig[@vmw:key={key!r}]", None, value, "vSphere 8 VM STIG value", "vmx-isolation-settings", None)
        elif elem.get(f"{{{VMW}}}value") != value:
            doc.change("set", _config_key(elem), elem.get(f"{{{VMW}}}value"), value, "vSphere 8 VM STIG value", "vmx-isolation-settings", elem)
            elem.set(f"{{{VMW}}}value", value)


# --- ProductSection properties ------------------------------------------------------------


def _properties(doc: _Doc) -> None:
    """Default values of password properties (and of properties that hold credentials) are cleared."""
    for prop in doc.root.iter(doc.q("Property")):
        key, kind = doc.attr(prop, "key") or "", (doc.attr(prop, "type") or "").strip().lower()
        password = (doc.attr(prop, "password") or "").strip().lower() in ("true", "1")
        named = secret_name(key) and not kind.startswith(NOT_TEXT_TYPES)
        where = f"Property[@ovf:key={key!r}]"
        holders = [prop, *prop.iter(doc.q("Value"))]
        for holder in holders:
            value = doc.attr(holder, "value") or ""
            if value and (password or named or secret_content(value)):
                qualified = f"{{{doc.ns}}}value" if holder.get(f"{{{doc.ns}}}value") is not None else "value"
                why = "stored secret: the deployer supplies it"
                if holder is prop:
                    holder.set(qualified, "")
                    doc.change("set", f"{where}/@ovf:value", "(not shown)", "", why, "descriptor-secret", holder)
                else:
                    doc.change("remove", f"{where}/Value", "(not shown)", None, why, "descriptor-secret", holder)
                    doc.remove(holder)


# --- writing XML ----------------------------------------------------------------------------


def _prefix_map(root: ET.Element, ns: str, declared: list[tuple[str, str]]) -> dict[str, str]:
    """uri -> prefix for every namespace in use: the envelope as the default namespace (and 'ovf' for
    its attributes), others by the document's own prefix where it is usable, then well-known ones."""
    used = set()
    for elem in root.iter():
        used.add(_uri(elem.tag))
        used.update(_uri(a) for a in elem.attrib if a != LINE_ATTR)
    used -= {"", ns, XML_NS}
    mapping = {ns: "ovf"}
    taken = {"ovf", "xml", "xmlns"}
    own = {}
    for prefix, uri in declared:
        own.setdefault(uri, prefix)
    counter = 0  # generated prefixes ns0, ns1, ...: the search goes on where it stopped, never from 0 again
    for uri in sorted(used):
        for candidate in (own.get(uri, ""), KNOWN_PREFIXES.get(uri, "")):
            if candidate and _NCNAME.match(candidate) and candidate.lower() not in taken and not candidate.lower().startswith("xml"):
                break
        else:
            while f"ns{counter}" in taken:
                counter += 1
            candidate = f"ns{counter}"
        mapping[uri] = candidate
        taken.add(candidate.lower())
    return mapping


def _escape(text: str, attribute: bool = False) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if attribute:
        text = text.replace('"', "&quot;").replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")
    return text.replace("\r", "&#13;")


def serialize(root: ET.Element, ns: str, declared: list[tuple[str, str]]) -> str:
    """The tree as UTF-8 XML text: namespaces declared once on the root, deterministic, private attributes dropped."""
    mapping = _prefix_map(root, ns, declared)

    def name(qualified: str, default: str) -> str:
        uri, local = (qualified[1:].split("}", 1) if qualified.startswith("{") else ("", qualified))
        if uri == XML_NS:
            return f"xml:{local}"
        if uri == default and default:  # elements only: attributes never take the default namespace
            return local
        return f"{mapping[uri]}:{local}" if uri else local

    out = ['<?xml version="1.0" encoding="UTF-8"?>\n']

    def write(elem: ET.Element, default: str | None) -> None:
        attrs = []
        if default is None:  # the root: every namespace declared once
            default = ns
            attrs = [f'xmlns="{_escape(ns, True)}"'] + [
                f'xmlns:{p}="{_escape(u, True)}"' for u, p in sorted(mapping.items(), key=lambda kv: kv[1])]  # fmt: skip
        if _uri(elem.tag) == "" and default:  # an element in no namespace: undeclare the default below it
            default = ""
            attrs.append('xmlns=""')
        attrs += [f'{name(k, "")}="{_escape(v, True)}"' for k, v in elem.attrib.items() if k != LINE_ATTR]
        tag = name(elem.tag, default)
        out.append(f"<{tag}" + "".join(" " + a for a in attrs))
        if len(elem) == 0 and not elem.text:
            out.append("/>")
        else:
            out.append(">" + _escape(elem.text or ""))
            for child in elem:
                write(child, default)
                out.append(_escape(child.tail or ""))
            out.append(f"</{tag}>")

    write(root, None)
    out.append("\n")
    return "".join(out)

