"""Checks on the VM descriptor: the VMX, or the OVF and its vmw:ExtraConfig."""

from __future__ import annotations

from dataclasses import replace

from certify.bundle.descriptor import Descriptor, is_on, outside_bundle_reason, redact
from certify.checkdef import check
from certify.model import Layer, Severity, fail
from certify.plugins.hookspecs import hookimpl

_VNC_SECRETS = ("remotedisplay.vnc.password", "remotedisplay.vnc.key")


@check(
    id="vmx-vnc-enabled",
    severity=Severity.HIGH,
    layer=Layer.DESCRIPTOR,
    title="VNC console enabled in the VM configuration",
    remediation=(
        "Remove every RemoteDisplay.vnc.* key from the VMX (and from vmw:ExtraConfig in the OVF). "
        "Console access is the provider's to grant; a stored VNC password or key is recoverable by "
        "anyone who reads the descriptor."
    ),
    references=(
        "VMware: RemoteDisplay.vnc.key is a reversible encoding of the VNC password",
        "packer-plugin-vmware step_clean_vmx only sets RemoteDisplay.vnc.enabled = FALSE and leaves the password",
        "vSphere: vmw:ExtraConfig entries are copied into the .vmx",
    ),
)
def vmx_vnc_enabled(descriptor: Descriptor):
    """The hypervisor would open a VNC server on the host for this VM's console.

    Critical when a password or key is stored with it: those are reversible.
    """
    # Every occurrence counts: with duplicate keys, readers disagree on which wins.
    for setting in descriptor.vbox_settings:
        if setting.name == "remote-display":
            yield fail(setting.location, f"{setting.location.key} = {setting.value}: VirtualBox opens a remote console (VRDE) on the host")
    switched_on = [e for e in descriptor.entries if e.norm == "remotedisplay.vnc.enabled" and is_on(e.value)]
    if not switched_on:
        return
    secrets = sorted({e.key for e in descriptor.entries if e.norm in _VNC_SECRETS and e.value})
    port = descriptor.get("RemoteDisplay.vnc.port")
    for entry in switched_on:
        evidence = f"{entry.key} = {entry.value!r}"
        if port:
            evidence += f", port {port.value}"
        if secrets:
            evidence += f"; a secret is stored in {', '.join(secrets)} (value not shown)"
        yield fail(entry.location, evidence, severity=Severity.CRITICAL if secrets else None)


@check(
    id="storage-path-outside-bundle",
    severity=Severity.CRITICAL,
    layer=Layer.DESCRIPTOR,
    title="Descriptor points at storage outside the bundle",
    remediation=(
        "Reference disks only by the bare file name of a file shipped in the bundle "
        "(e.g. fileName = \"appliance-disk1.vmdk\"), and leave host-owned locations (workingDir, sched.swap.*, "
        "log.fileName, nvram, fileSearchPath, ...) out or inside the bundle; `certify sanitize` removes exactly what "
        "this check reports. Absolute paths, datastore paths, '..' and URLs "
        "would let the appliance read another tenant's or the host's storage."
    ),
    params={"allow_subdirectories": True},
    references=(
        "CVE-2022-47951: VMDK descriptor naming a host file read by the image service",
        "virt-v2v input/OVA.ml: an href comes from an untrusted source and must not leave the package",
        "libguestfs guestfs-security: never let qemu open files an image names",
    ),
)
def storage_path_outside_bundle(descriptor: Descriptor, params):
    """A disk fileName (VMX), a File href (OVF), or any other key whose value names host storage
    (nvram, workingDir, sched.swap.*, log.fileName, each directory of fileSearchPath, every
    *.fileName), that names something outside the upload.

    Judged from the text alone; the named file is never opened. With
    ``allow_subdirectories`` off, only bare file names are accepted.
    """
    for ref in descriptor.storage_refs:
        reason = ref.reason or outside_bundle_reason(ref.value)
        if reason is None and not params["allow_subdirectories"] and ("/" in ref.value or "\\" in ref.value):
            reason = "is not a bare file name (this profile allows no subdirectories)"
        if reason:
            shown = redact(ref.value)
            yield fail(replace(ref.location, path=shown), f"{shown!r} {reason}; it was not opened")


@hookimpl
def certify_checks():
    return [vmx_vnc_enabled, storage_path_outside_bundle]
