"""Translate and scour a VMX: keep what a cloud may load, record every change and why.

Pure: a parsed VMX in, the sanitized lines and the list of changes out.
Removing rather than rewriting identity (uuid, MAC) keeps the result stable:
sanitizing the output again changes nothing, and the hypervisor generates new
identities on first power-on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from certify.bundle.descriptor import outside_bundle_reason, path_outside_reason
from certify.bundle.vmx import VmxEntry, VmxFile
from certify.bundle.vmx_policy import DISK_FILENAME_KEY, HARDENING, RAW_DEVICE_TYPES, SECRET_KEYS, removal_for


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
        if entry.norm.endswith(".devicetype") and entry.value.strip().lower() in RAW_DEVICE_TYPES:
            doomed.setdefault(namespace, ("host device passed through", "host-device-passthrough"))
    return doomed


def path_rule(key: str, value: str) -> tuple[str, str] | None:
    """(reason, check) when a path-bearing key names storage outside the bundle: what scan reports, removed.

    It comes before the namespace rules, so a change cites the check that reports the same key.
    """
    reason = path_outside_reason(key, value)
    return (f"storage outside the bundle ({reason})", "storage-path-outside-bundle") if reason else None


def _shown(entry: VmxEntry) -> str:
    return "(not shown)" if SECRET_KEYS.match(entry.key) and entry.value else entry.value


def sanitize_vmx(vmx: VmxFile) -> tuple[list[tuple[str, str]], list[Change]]:
    """(the sanitized key/value pairs in order, the changes made)."""
    doomed = _device_namespaces(vmx)
    kept: dict[str, tuple[str, str]] = {}  # norm -> (key, value); the first occurrence wins, as virt-v2v reads
    changes: list[Change] = []
    for entry in vmx.entries:
        namespace = entry.key.rsplit(".", 1)[0].lower()
        rule = doomed.get(namespace) or path_rule(entry.key, entry.value) or removal_for(entry.key)
        if entry.norm == ".encoding":  # the output is always UTF-8 and says so on its first line
            if entry.value.strip().upper().replace("_", "-") not in ("UTF-8", "UTF8"):
                changes.append(Change("remove", entry.key, entry.value, None, "re-encoded as UTF-8", "", entry.line))
            continue
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
