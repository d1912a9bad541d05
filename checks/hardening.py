"""Checks on how a descriptor was written: leftovers, secrets, differentials, hardening values."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator

from certify.bundle.descriptor import Descriptor, is_on, is_plainly_true
from certify.bundle.vmx_policy import (
    DEFAULT_CONFIG_ALLOWED,
    DEFAULT_EXTRACONFIG_ALLOWED,
    HARDENING,
    NOT_TEXT_TYPES,
    secret_content,
    secret_name,
)
from certify.checkdef import check
from certify.model import Layer, Location, Result, Severity, fail, not_applicable
from certify.plugins.hookspecs import hookimpl


@check(
    id="duplicate-descriptor-key",
    severity=Severity.HIGH,
    layer=Layer.DESCRIPTOR,
    title="A descriptor key is set more than once",
    remediation=(
        "Set each key once. Readers disagree on which occurrence wins (virt-v2v keeps the first, others the "
        "last), so a duplicate lets a bundle show one value to a scanner and another to the hypervisor."
    ),
    references=("virt-v2v input/parse_vmx.ml: duplicate keys are warned about and the first kept",),
)
def duplicate_descriptor_key(descriptor: Descriptor) -> Iterator[Result]:
    """The same key twice (case-insensitive) in a VMX, or in one VirtualSystem's ExtraConfig."""
    seen: dict[tuple[str, str], list] = {}
    for entry in descriptor.entries:
        seen.setdefault((entry.scope, entry.norm), []).append(entry)
    for group in seen.values():
        if len(group) > 1:
            lines = ", ".join(str(e.location.line) for e in group)
            differ = "with different values" if len({e.value for e in group}) > 1 else "with the same value"
            yield fail(group[1].location, f"{group[0].key} is set {len(group)} times (lines {lines}) {differ}")


@check(
    id="unresolved-template-placeholder",
    severity=Severity.HIGH,
    layer=Layer.DESCRIPTOR,
    title="Descriptor still holds unresolved template variables",
    remediation=(
        "Render the template before exporting: replace every ${VAR}, {{var}} and @@VAR@@ with its value. An "
        "unbuilt descriptor deploys with literal placeholders as file names, sizes and settings."
    ),
    references=("kubernetes-sigs/image-builder OVF template and VyOS build template (corpus) ship such placeholders",),
)
def unresolved_template_placeholder(descriptor: Descriptor) -> Iterator[Result]:
    """Template syntax left in the descriptor text by a build that never rendered it."""
    for placeholder in descriptor.placeholders:
        yield fail(placeholder.location, f"unresolved template variable {placeholder.name}")


@check(
    id="descriptor-secret",
    severity=Severity.HIGH,
    layer=Layer.DESCRIPTOR,
    title="Descriptor carries a password, key or token",
    remediation=(
        "Remove stored secrets from the descriptor: RemoteDisplay.vnc.password/key (reversible even when VNC is "
        "off), guestinfo.* secrets and user data with passwords or keys, and default values of OVF password "
        "properties. Let the deployer supply them at deploy time."
    ),
    references=(
        "Cisco CSR1000v OVF: 'plain-text password will be recoverable from the OVF descriptor file'",
        "packer-plugin-vmware leaves RemoteDisplay.vnc.password behind when it disables VNC",
    ),
)
def descriptor_secret(descriptor: Descriptor) -> Iterator[Result]:
    """A stored credential anywhere in the descriptor. The value itself is never reported."""
    for entry, _ in descriptor.matching(r"^remotedisplay\.vnc\.(password|key)$"):
        if entry.value:
            yield fail(entry.location, f"{entry.key} holds a value (not shown)")
    for entry, _ in descriptor.matching(r"^guestinfo\..+$"):
        if entry.value and (secret_name(entry.key) or secret_content(entry.value)):
            yield fail(entry.location, f"{entry.key} holds a secret readable from inside the guest (value not shown)")
    for prop in descriptor.properties:
        if not prop.value:
            continue
        named = secret_name(prop.name) and not prop.kind.startswith(NOT_TEXT_TYPES)
        if prop.secret or named or secret_content(prop.value):
            kind = "password property" if prop.secret else "property named like a secret" if named else "property whose default holds credentials"
            yield fail(prop.location, f"{kind} {prop.name!r} has a default value (not shown)")


@check(
    id="vmx-hardware-version",
    severity=Severity.MEDIUM,
    layer=Layer.DESCRIPTOR,
    title="Virtual hardware version outside the supported window",
    remediation=(
        "Export with a virtual hardware version the target platform supports (virtualHW.version in the VMX, "
        "vmx-NN in the OVF's VirtualSystemType); versions below 13 predate ESXi 6.5 and miss current "
        "security features."
    ),
    params={"min_version": 13, "max_version": 22},
    references=("vmware/govmomi vim25/types/hardware_version.go: vmx-13 is ESXi 6.5, vmx-21 ESXi 8.0 U2, vmx-22 VCF 9",),
)
def vmx_hardware_version(descriptor: Descriptor, params) -> Iterator[Result]:
    """The VMX must state its hardware version (and be config.version 8); each vmx-NN an OVF lists must be in the window."""
    low, high = params["min_version"], params["max_version"]
    if descriptor.kind == "vmx" and not descriptor.hardware_versions:
        yield fail(Location(layer=Layer.DESCRIPTOR, file=descriptor.file), "no virtualHW.version: the hypervisor would choose one")
    if descriptor.kind == "vmx":
        for entry, _ in descriptor.matching(r"^config\.version$"):
            if entry.value.strip() != "8":  # the only VMX file format version VMware writes and libvirt reads
                yield fail(entry.location, f"config.version = {entry.value[:20]!r}: a VMX is version 8")
    for setting in descriptor.hardware_versions:
        versions = setting.value.split() or [""]
        # An OVF may list several families; the deployer picks one, so one in the window is enough.
        if not any(_number(v) is not None and low <= _number(v) <= high for v in versions):
            yield fail(setting.location, f"hardware version {setting.value.strip()!r} is outside {low}-{high}")


def _number(text: str) -> int | None:
    return int(text) if re.fullmatch(r"[0-9]{1,9}", text.strip()) else None


# vSphere 8.0 VM STIG V2R1 values; a key left out takes its safe default, so only explicit values are judged.
ISOLATION_BOOLEANS = {
    "isolation.tools.copy.disable": True,
    "isolation.tools.dnd.disable": True,
    "isolation.tools.paste.disable": True,
    "isolation.tools.diskShrink.disable": True,
    "isolation.tools.diskWiper.disable": True,
    "isolation.device.connectable.disable": True,
    "isolation.device.edit.disable": True,
    "tools.guestlib.enableHostInfo": False,
    "mks.enable3d": False,
}
ISOLATION_LIMITS = {"RemoteDisplay.maxConnections": 1, "tools.setinfo.sizeLimit": 1048576}


@check(
    id="vmx-isolation-settings",
    severity=Severity.LOW,
    layer=Layer.DESCRIPTOR,
    title="VM isolation settings weaker than the vSphere STIG",
    remediation=(
        "Drop the weakened keys (the defaults are safe) or set the STIG values: isolation.tools.* and "
        "isolation.device.* = TRUE, tools.guestlib.enableHostInfo and mks.enable3d = FALSE, "
        "RemoteDisplay.maxConnections = 1, tools.setinfo.sizeLimit = 1048576, no sched.mem.pshare.salt."
    ),
    references=("vSphere 8.0 Virtual Machine STIG V2R1: V-258703..V-258712, V-258715",),
)
def vmx_isolation_settings(descriptor: Descriptor) -> Iterator[Result]:
    """Copy/paste, drag and drop, disk shrink, device edits, host info and the like explicitly allowed."""
    for key, wanted in ISOLATION_BOOLEANS.items():
        for entry, _ in descriptor.matching(re.escape(key) + "$"):
            safe = is_plainly_true(entry.value) if wanted else not is_on(entry.value)
            if not safe:
                yield fail(entry.location, f"{entry.key} = {entry.value!r} (STIG: {'TRUE' if wanted else 'FALSE'})")
    for key, limit in ISOLATION_LIMITS.items():
        for entry, _ in descriptor.matching(re.escape(key) + "$"):
            number = _number(entry.value)
            if number is None or number > limit:
                yield fail(entry.location, f"{entry.key} = {entry.value[:40]!r} (STIG: at most {limit})")
    for entry, _ in descriptor.matching(r"^sched\.mem\.pshare\.salt$"):
        yield fail(entry.location, f"{entry.key} is set: page sharing across VMs (STIG: must not exist)")


_STIG_VALUES = {k.lower(): v for k, v in HARDENING.items()}


@check(
    id="extraconfig-smuggling",
    severity=Severity.HIGH,
    layer=Layer.DESCRIPTOR,
    title="OVF carries raw VMX settings outside the allowed set",
    remediation=(
        "Remove vmw:ExtraConfig entries the appliance does not need. They are copied verbatim into the VMX at "
        "deploy time (ovftool filters them only with a whitelist; vCenter merely warns), so they can switch "
        "on anything a VMX can."
    ),
    params={"allowed_keys": DEFAULT_EXTRACONFIG_ALLOWED},
    references=("vSphere REST Ovf_ExtraConfig: settings 'transferred directly to the .vmx file'",),
)
def extraconfig_smuggling(descriptor: Descriptor, params) -> Iterator[Result]:
    """Every vmw:ExtraConfig key not on the allowed list (glob patterns, tunable by profile), and every
    vmw:Config field not on the fixed list of configuration fields real exports carry.

    A vSphere STIG isolation key set to exactly its STIG value (what ``certify
    sanitize`` writes) hardens the VM and is not counted.
    """
    if descriptor.kind != "ovf":
        yield not_applicable("only OVF descriptors carry vmw:ExtraConfig")
        return
    allowed = [p.lower() for p in params["allowed_keys"]]
    config_allowed = [p.lower() for p in DEFAULT_CONFIG_ALLOWED]
    for entry in descriptor.entries:
        if entry.source == "vmw:Config":  # VirtualMachineConfigSpec fields: their own allowed list
            if not any(fnmatch.fnmatchcase(entry.norm, p) for p in config_allowed):
                yield fail(entry.location, f"vmw:Config {entry.key} is not a configuration field on the allowed list")
            continue
        if entry.source != "vmw:ExtraConfig":
            continue
        if _STIG_VALUES.get(entry.norm) == entry.value:
            continue
        if not any(fnmatch.fnmatchcase(entry.norm, p) for p in allowed):
            yield fail(entry.location, f"vmw:ExtraConfig {entry.key} would be written into the VMX")


@hookimpl
def certify_checks():
    return [duplicate_descriptor_key, unresolved_template_placeholder, descriptor_secret, vmx_hardware_version,
            vmx_isolation_settings, extraconfig_smuggling]  # fmt: skip
