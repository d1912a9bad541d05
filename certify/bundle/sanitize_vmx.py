"""Translate and scour a VMX: keep what a cloud may load, record every change and why.

Pure: a parsed VMX in, the sanitized lines and the list of changes out.
Removing rather than rewriting identity (uuid, MAC) keeps the result stable:
sanitizing the output again changes nothing, and the hypervisor generates new
identities on first power-on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from certify.bundle.descriptor import DISK_FILENAME_KEY, PATH_KEY, outside_bundle_reason
from certify.bundle.vmx import VmxEntry, VmxFile

# (key pattern, reason, check id), first match wins. Namespaces like 'serial0.' go whole.
REMOVE = [
    (r"remotedisplay\.vnc\..*", "VNC console and its stored secret", "vmx-vnc-enabled"),
    (r"(sharedfolder\d*|hgfs)\..*", "host folder shared with the guest", "shared-folder"),
    (r"(serial|parallel|floppy)\d+\..*", "port or drive backed by the host", "host-device-passthrough"),
    (r"(usb|ehci|usb_xhci)(\..*|:\d+\..*)", "host USB devices", "host-device-passthrough"),
    (r"pcipassthru\d+\..*", "host PCI device", "host-device-passthrough"),
    (r"sound\..*", "host audio device", "host-device-passthrough"),
    (r"(debugstub\..*|monitor\.debugonstartguest(32|64))", "debugger endpoint on the host", "host-listener-or-pipe"),
    (r"vmsafe\..*", "introspection endpoint", "host-listener-or-pipe"),
    (r"(vmci\d+\.unrestricted|allowunrestrictedcommunication)", "VMCI channel to other VMs on the host", "host-listener-or-pipe"),
    (r"ethernet\d+\.(vnet|bsdname|connectiontype|networkname|pvnid|dvs\..*|filter\d+\..*)", "binding to a host network",
     "host-device-passthrough"),
    (r"ethernet\d+\.(address|generatedaddress|generatedaddressoffset|checkmacaddress)", "MAC address: regenerated on deploy", ""),
    (r"(uuid\.(bios|location)|vc\.uuid|vm\.genid(x)?)", "identity: regenerated on deploy", ""),
    (r"(sched\.swap\..*|workingdir|suspend\.directory|redologdir|checkpoint\.vmstate|vmxstats\.filename"
     r"|migrate\.hostlog|log\.filename|filesearchpath|replay\.filename)", "host-owned location", "storage-path-outside-bundle"),
    (r"(answer\.msg\..*|msg\.autoanswer)", "pre-answered hypervisor question", ""),
    (r"guestinfo\..*", "guest-readable data, may carry secrets", "descriptor-secret"),
    (r"sched\.mem\.pshare\.salt", "page sharing across VMs", "vmx-isolation-settings"),
]
_REMOVE = [(re.compile(p + "$", re.IGNORECASE), reason, check) for p, reason, check in REMOVE]
_RAW_DEVICES = {"cdrom-raw", "atapi-cdrom", "scsi-passthru", "rawdisk", "scsi-cdrom"}
SECRET_KEYS = re.compile(r"remotedisplay\.vnc\.(password|key)$|guestinfo\..*", re.IGNORECASE)

# vSphere 8.0 VM STIG V2R1 values, written explicitly.
HARDENING = {
    "isolation.tools.copy.disable": "TRUE",
    "isolation.tools.dnd.disable": "TRUE",
    "isolation.tools.paste.disable": "TRUE",
    "isolation.tools.diskShrink.disable": "TRUE",
    "isolation.tools.diskWiper.disable": "TRUE",
    "isolation.tools.hgfs.disable": "TRUE",
    "isolation.device.connectable.disable": "TRUE",
    "isolation.device.edit.disable": "TRUE",
    "tools.guestlib.enableHostInfo": "FALSE",
    "mks.enable3d": "FALSE",
    "RemoteDisplay.maxConnections": "1",
    "tools.setinfo.sizeLimit": "1048576",
}


@dataclass(frozen=True)
class Change:
    action: str  # remove or set
    key: str
    old: str | None
    new: str | None
    reason: str
    check: str  # the check that would report what was there ("" for housekeeping)
    line: int | None

    def as_dict(self) -> dict:
        return {"action": self.action, "key": self.key, "old": self.old, "new": self.new,
                "reason": self.reason, "check": self.check, "line": self.line}  # fmt: skip


def _device_namespaces(vmx: VmxFile) -> dict[str, tuple[str, str]]:
    """Disk and CD namespaces (scsi0:0) that must go whole, with the reason and check."""
    doomed: dict[str, tuple[str, str]] = {}
    for entry in vmx.entries:
        namespace = entry.key.rsplit(".", 1)[0].lower()
        if DISK_FILENAME_KEY.match(entry.key) and entry.value and outside_bundle_reason(entry.value):
            doomed[namespace] = (f"storage outside the bundle ({outside_bundle_reason(entry.value)})", "storage-path-outside-bundle")
        if entry.norm.endswith(".devicetype") and entry.value.strip().lower() in _RAW_DEVICES:
            doomed.setdefault(namespace, ("host device passed through", "host-device-passthrough"))
    return doomed


def removal_for(key: str) -> tuple[str, str] | None:
    """(reason, check id) when a VMX key (or an OVF vmw:ExtraConfig/vmw:Config key) must go, else None."""
    return next(((reason, check) for rx, reason, check in _REMOVE if rx.match(key)), None)


def _shown(entry: VmxEntry) -> str:
    return "(not shown)" if SECRET_KEYS.match(entry.key) and entry.value else entry.value


def sanitize_vmx(vmx: VmxFile) -> tuple[list[tuple[str, str]], list[Change]]:
    """(the sanitized key/value pairs in order, the changes made)."""
    doomed = _device_namespaces(vmx)
    kept: dict[str, tuple[str, str]] = {}  # norm -> (key, value); the first occurrence wins, as virt-v2v reads
    changes: list[Change] = []
    for entry in vmx.entries:
        namespace = entry.key.rsplit(".", 1)[0].lower()
        rule = doomed.get(namespace) or removal_for(entry.key)
        if entry.norm == ".encoding":  # the output is always UTF-8 and says so on its first line
            if entry.value.strip().upper().replace("_", "-") not in ("UTF-8", "UTF8"):
                changes.append(Change("remove", entry.key, entry.value, None, "re-encoded as UTF-8", "", entry.line))
            continue
        if rule is None and PATH_KEY.match(entry.key) and entry.value and outside_bundle_reason(entry.value):
            rule = (f"storage outside the bundle ({outside_bundle_reason(entry.value)})", "storage-path-outside-bundle")
        if rule is None and entry.norm in kept:
            rule = ("duplicate key: the first value is kept", "duplicate-descriptor-key")
        if rule:
            changes.append(Change("remove", entry.key, _shown(entry), None, rule[0], rule[1], entry.line))
            continue
        kept[entry.norm] = (entry.key, entry.value)
    for key, value in HARDENING.items():
        current = kept.get(key.lower())
        if current is None or current[1] != value:
            old = current[1] if current else None
            kept[key.lower()] = (current[0] if current else key, value)
            changes.append(Change("set", key, old, value, "vSphere 8 VM STIG value", "vmx-isolation-settings", None))
    for namespace in sorted({k.rsplit(".", 1)[0] for k in kept if re.match(r"ethernet\d+\.", k)}):
        key = f"{namespace}.addressType"
        current = kept.get(key.lower())
        if current is None or current[1].lower() != "generated":
            kept[key.lower()] = (current[0] if current else key, "generated")
            changes.append(Change("set", key, current[1] if current else None, "generated",
                                  "MAC address: regenerated on deploy", "", None))  # fmt: skip
    return list(kept.values()), changes


def _escape(value: str) -> str:
    return re.sub(r'[|"\x00-\x1f]', lambda m: f"|{ord(m.group()):02X}", value)


def render_vmx(pairs: list[tuple[str, str]]) -> str:
    lines = ['.encoding = "UTF-8"'] + [f'{key} = "{_escape(value)}"' for key, value in pairs]
    return "\n".join(lines) + "\n"
