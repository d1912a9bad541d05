"""Descriptor facts: VMX lines and OVF entries in one shape checks can share.

``vmw:ExtraConfig`` entries are raw VMX lines carried in an OVF, so both
feed the same ``entries`` list and every VMX rule sees both.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

from certify.bundle.ovf import OvfDescriptor
from certify.bundle.vmx import VmxFile
from certify.bundle.vmx_policy import key_paths
from certify.model import Layer, Location

# ovf:/disk/ID and ovf:/file/ID (the Home Assistant OS export drops the scheme: /disk/ID).
_PACKAGE_RESOURCE = re.compile(r"^(ovf:)?/(disk|file)/[^/]+$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_DRIVE = re.compile(r"^[A-Za-z]:")
_DATASTORE = re.compile(r"^\s*\[[^\]]*\]")


@dataclass(frozen=True)
class ConfigEntry:
    key: str
    value: str
    location: Location
    scope: str = ""  # the OVF VirtualSystem (and device) a vmw:ExtraConfig/vmw:Config entry belongs to
    source: str = ""  # "" for a VMX line; "vmw:ExtraConfig" or "vmw:Config" in an OVF

    @property
    def norm(self) -> str:
        return self.key.lower()


@dataclass(frozen=True)
class StorageRef:
    """A name the descriptor wants storage from: a disk fileName, a File href."""

    value: str
    location: Location
    reason: str | None = None  # set when the value is wrong whatever it says (a non-package HostResource)


@dataclass(frozen=True)
class Setting:
    """Something else the descriptor declares: an OVF property, a hardware family, a placeholder."""

    name: str
    value: str
    location: Location
    secret: bool = False  # declared a password (ovf:password="true")
    kind: str = ""  # an OVF property's ovf:type; a hardware item's rasd:ResourceSubType


@dataclass(frozen=True)
class Descriptor:
    kind: str  # "vmx" or "ovf"
    file: str
    entries: tuple[ConfigEntry, ...]  # VMX lines, or vmw:ExtraConfig lines of an OVF
    storage_refs: tuple[StorageRef, ...]
    properties: tuple[Setting, ...] = ()  # OVF ProductSection properties
    hardware_versions: tuple[Setting, ...] = ()  # virtualHW.version, or each vmx-NN family an OVF lists
    placeholders: tuple[Setting, ...] = ()  # unresolved template variables in the raw text
    devices: tuple[Setting, ...] = ()  # OVF hardware items: name = rasd:ResourceType, value = ElementName
    shared_folders: tuple[Setting, ...] = ()  # vbox:Machine SharedFolder host paths
    networks: tuple[Setting, ...] = ()  # OVF NetworkSection: name = network name, value = its description
    licenses: tuple[Setting, ...] = ()  # OVF EulaSection License texts (display only)
    vbox_settings: tuple[Setting, ...] = ()  # vbox:Machine host bindings: name = kind (port, nic, ...), value = what it names

    def get(self, key: str) -> ConfigEntry | None:
        """The first entry for ``key``, case-insensitive."""
        key = key.lower()
        return next((e for e in self.entries if e.norm == key), None)

    def matching(self, pattern: str) -> Iterator[tuple[ConfigEntry, re.Match]]:
        """Every entry whose key matches ``pattern`` (case-insensitive), duplicates included."""
        regex = re.compile(pattern, re.IGNORECASE)
        for entry in self.entries:
            match = regex.match(entry.key)
            if match:
                yield entry, match


_OFF = {"false", "no", "0", "off", ""}


def is_on(value: str) -> bool:
    """VMware reads TRUE/true/yes/1; anything not plainly off counts as on (the safe reading)."""
    return value.strip().lower() not in _OFF


def is_plainly_true(value: str) -> bool:
    """For keys where TRUE is the safe value (isolation.*.disable): anything else is unsafe."""
    return value.strip().lower() in ("true", "yes", "1")


def outside_bundle_reason(ref: str) -> str | None:
    """Why a storage name points outside the bundle, or None if it stays inside.

    The name is judged as text only: the file it names is never opened.
    """
    if any(ord(c) < 32 or ord(c) == 127 for c in ref):
        return "contains control characters"
    if _DATASTORE.match(ref):
        return "is a datastore path"
    if _DRIVE.match(ref) or ref.startswith(("/", "\\")):
        return "is an absolute path"
    if _SCHEME.match(ref):
        return "is a URL"
    if ".." in re.split(r"[/\\]", ref):
        return "climbs out of the bundle with '..'"
    return None


def path_outside_reason(key: str, value: str) -> str | None:
    """Why a path-bearing key's value leaves the bundle (the first of its names that does), or None."""
    return next((reason for path in key_paths(key, value) if (reason := outside_bundle_reason(path))), None)


# ${VAR} (shell, packer, envsubst), {{ ... }} (Jinja, Go templates), @@VAR@@.
_PLACEHOLDER = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_.\-]*\}|\{\{[^{}\n]{1,200}\}\}|@@[A-Za-z_][A-Za-z0-9_.\-]*@@")
_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)(\S*)")
_QUERY = re.compile(r"\?\S*")


def _redact_url(match: re.Match) -> str:
    scheme, rest = match.group(1), match.group(2)
    end = next((i for i, c in enumerate(rest) if c in "/?#"), len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:  # user:password@host: the host follows the last '@' of the authority
        authority = "***@" + authority.rsplit("@", 1)[1]
    cut = next((i for i, c in enumerate(tail) if c in "?#"), None)
    if cut is not None:
        tail = tail[:cut] + tail[cut] + "***"
    return scheme + authority + tail


def redact(value: str) -> str:
    """A path or URL fit for a report: credentials (userinfo), query strings and fragments masked."""
    return _QUERY.sub("?***", _URL.sub(_redact_url, value))


def find_placeholders(name: str, text: str) -> tuple[Setting, ...]:
    """Template variables a build left unresolved: ${X}, {{x}}, @@X@@, with their lines."""
    found = []
    for number, line in enumerate(text.split("\n"), start=1):
        for match in _PLACEHOLDER.finditer(line):
            found.append(Setting(name=match.group(), value="", location=Location(layer=Layer.DESCRIPTOR, file=name, line=number)))
    return tuple(found)


def from_vmx(name: str, vmx: VmxFile, text: str = "") -> Descriptor:
    entries = tuple(
        ConfigEntry(key=e.key, value=e.value, location=Location(layer=Layer.DESCRIPTOR, file=name, key=e.key, line=e.line))
        for e in vmx.entries
    )
    hardware = tuple(
        Setting(name=e.key, value=e.value, location=e.location) for e in entries if e.norm == "virtualhw.version"
    )
    return Descriptor(kind="vmx", file=name, entries=entries, storage_refs=_path_refs(entries),
                      hardware_versions=hardware, placeholders=find_placeholders(name, text))  # fmt: skip


def _path_refs(entries: tuple[ConfigEntry, ...]) -> tuple[StorageRef, ...]:
    return tuple(StorageRef(value=path, location=e.location) for e in entries for path in key_paths(e.key, e.value))


def from_ovf(name: str, ovf: OvfDescriptor, text: str = "") -> Descriptor:
    entries = tuple(
        ConfigEntry(key=e.key, value=e.value, location=Location(layer=Layer.DESCRIPTOR, file=name, key=e.key, line=e.line),
                    scope=e.system, source=f"vmw:{e.element}")
        for e in ovf.extra_config
    )  # fmt: skip
    hrefs = tuple(
        StorageRef(
            # Percent-decoded once, as a deployer resolving the href would.
            value=urllib.parse.unquote(f.href),
            location=Location(layer=Layer.DESCRIPTOR, file=name, key=f"References/File[@ovf:id={f.id!r}]/@ovf:href", line=f.line),
        )
        for f in ovf.files
    )
    properties = tuple(
        Setting(name=p.key, value=p.value, secret=p.password, kind=p.type,
                location=Location(layer=Layer.DESCRIPTOR, file=name, key=f"Property[@ovf:key={p.key!r}]", line=p.line))
        for p in ovf.properties
    )  # fmt: skip
    # One setting per VirtualSystemType: its vmx-NN families, space-separated (others, e.g. Cisco's, dropped).
    hardware = tuple(
        Setting(name="vssd:VirtualSystemType", value=" ".join(f[4:] for f in h.value.lower().split() if f.startswith("vmx-")),
                location=Location(layer=Layer.DESCRIPTOR, file=name, key="vssd:VirtualSystemType", line=h.line))
        for h in ovf.hardware if any(f.startswith("vmx-") for f in h.value.lower().split())
    )  # fmt: skip
    networks = tuple(
        Setting(name=n.name, value=n.description,
                location=Location(layer=Layer.DESCRIPTOR, file=name, key=f"Network[@ovf:name={n.name!r}]", line=n.line))
        for n in ovf.networks
    )  # fmt: skip
    licenses = tuple(
        Setting(name=e.system, value=e.text, location=Location(layer=Layer.DESCRIPTOR, file=name, key="EulaSection/License", line=e.line))
        for e in ovf.eulas
    )  # fmt: skip
    devices = tuple(
        Setting(name=item.resource_type, value=item.name, kind=item.subtype,
                location=Location(layer=Layer.DESCRIPTOR, file=name, key=f"Item[rasd:ResourceType={item.resource_type}]", line=item.line))
        for item in ovf.items
    )  # fmt: skip
    # An Item's HostResource must name a disk or file of the package; anything else is host storage.
    host_resources = tuple(
        StorageRef(value=resource, location=Location(layer=Layer.DESCRIPTOR, file=name, key="rasd:HostResource", line=item.line),
                   reason=outside_bundle_reason(resource) or "is not an ovf:/disk/ or ovf:/file/ reference to the package")
        for item in ovf.items for resource in item.host_resources if not _PACKAGE_RESOURCE.match(resource)
    )  # fmt: skip
    vbox = tuple(
        Setting(name=v.kind, value=v.value, location=Location(layer=Layer.DESCRIPTOR, file=name, key=v.element, line=v.line))
        for v in ovf.vbox_settings if v.kind != "disk"
    )  # fmt: skip
    # A vbox:Machine medium VirtualBox would open: judged like any other storage name.
    vbox_media = tuple(
        StorageRef(value=v.value, location=Location(layer=Layer.DESCRIPTOR, file=name, key=v.element, line=v.line),
                   reason=f"({v.element}) {outside_bundle_reason(v.value)}" if outside_bundle_reason(v.value) else None)
        for v in ovf.vbox_settings if v.kind == "disk"
    )  # fmt: skip
    # ExtraConfig lines become VMX lines: their paths are judged exactly as a VMX's.
    return Descriptor(kind="ovf", file=name, entries=entries, storage_refs=hrefs + _path_refs(entries) + host_resources + vbox_media,
                      properties=properties, hardware_versions=hardware, placeholders=find_placeholders(name, text),
                      devices=devices, networks=networks, licenses=licenses, vbox_settings=vbox, shared_folders=tuple(
                          Setting(name="vbox:SharedFolder", value=f.value,
                                  location=Location(layer=Layer.DESCRIPTOR, file=name, key="vbox:SharedFolder/@hostPath", line=f.line))
                          for f in ovf.vbox_shared_folders))  # fmt: skip
