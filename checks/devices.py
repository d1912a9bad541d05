"""Checks for what a descriptor would connect to the host: devices, listeners, folders."""

from __future__ import annotations

import re
from collections.abc import Iterator

from certify.bundle.descriptor import Descriptor, is_on, is_plainly_true, redact
from certify.bundle.vmx_policy import HOST_ITEM_SUBTYPE, HOST_ITEM_TYPES, RAW_DEVICE_TYPES
from certify.checkdef import check
from certify.model import Layer, Result, Severity, fail
from certify.plugins.hookspecs import hookimpl

# VirtualBox UART/LPT host modes that open a pipe or socket on the host (RawFile and HostDevice write host files/devices).
_VBOX_LISTENER_MODES = {"hostpipe", "tcp", "tcpserver", "udp"}


def _vbox_port_mode(setting) -> str:
    return setting.value.split(" ", 1)[0].removeprefix("hostMode=").strip().lower()


@check(
    id="host-device-passthrough",
    severity=Severity.HIGH,
    layer=Layer.DESCRIPTOR,
    title="VM configuration attaches host devices",
    remediation=(
        "Remove host device bindings: raw CD-ROM/SCSI pass-through, floppy drives backed by host devices, "
        "serial and parallel ports backed by host devices or writing host files, USB auto-connect, PCI pass-through, "
        "sound and host NIC bindings "
        "(ethernetN.vnet/bsdName, bridged). The cloud attaches the devices and networks a tenant is given."
    ),
    references=("vSphere 8 VM STIG V-258722 (floppy), V-258724 (parallel), V-258725 (serial), V-258726 (USB), V-258727 (PCI)",),
)
def host_device_passthrough(descriptor: Descriptor) -> Iterator[Result]:
    """A device key that binds the VM to hardware or networks of the host it lands on."""
    for entry, _ in descriptor.matching(r"^(scsi|ide|sata|nvme)\d+:\d+\.devicetype$"):
        if entry.value.strip().lower() in RAW_DEVICE_TYPES:
            yield fail(entry.location, f"{entry.key} = {entry.value!r}: a host device passed through")
    for entry, m in descriptor.matching(r"^(floppy|serial|parallel)(\d+)\.filetype$"):
        kind = entry.value.strip().lower()
        if kind == "device":
            yield fail(entry.location, f"{entry.key} = 'device': {m.group(1)} port backed by a host device")
        elif m.group(1).lower() != "floppy" and kind in ("file", "thinprint"):  # network and pipe: host-listener-or-pipe
            yield fail(entry.location, f"{entry.key} = {kind!r}: {m.group(1)} port output goes to the host")
    for entry, _ in descriptor.matching(r"^(usb\.autoconnect\.device\d+|usb\.generic\..+)$"):
        yield fail(entry.location, f"{entry.key}: host USB devices attach to the VM")
    for entry, _ in descriptor.matching(r"^(pcipassthru\d+|sound)\.present$"):
        if is_on(entry.value):
            yield fail(entry.location, f"{entry.key} = {entry.value!r}: host {'sound' if entry.norm.startswith('sound') else 'PCI device'} attached")
    for item in descriptor.devices:
        if item.name in HOST_ITEM_TYPES:
            yield fail(item.location, f"hardware item {item.value or item.name!r}: a {HOST_ITEM_TYPES[item.name]} for the VM")
        elif HOST_ITEM_SUBTYPE.search(item.kind):
            yield fail(item.location, f"hardware item {item.value or item.name!r} ({item.kind}): a host device passed through")
    for entry, _ in descriptor.matching(r"^ethernet\d+\.(vnet|bsdname|connectiontype)$"):
        if entry.norm.endswith("connectiontype") and entry.value.strip().lower() not in ("bridged", "custom", "hostonly"):
            continue
        yield fail(entry.location, f"{entry.key} = {entry.value!r}: NIC bound to a host network")
    # A vbox:Machine is a second machine configuration VirtualBox imports with the OVF.
    for setting in descriptor.vbox_settings:
        if setting.name == "port" and _vbox_port_mode(setting) not in _VBOX_LISTENER_MODES:
            yield fail(setting.location, f"{setting.location.key} {redact(setting.value)}: VirtualBox port backed by the host")
        elif setting.name == "host-drive":
            yield fail(setting.location, f"{setting.location.key} = {redact(setting.value)!r}: VirtualBox host drive passed through")
        elif setting.name == "usb-filter":
            yield fail(setting.location, f"{setting.location.key}: VirtualBox attaches matching host USB devices")
        elif setting.name == "audio":
            yield fail(setting.location, f"{setting.location.key}: VirtualBox plays and records through the host's sound device")
        elif setting.name == "nic":
            yield fail(setting.location, f"{setting.location.key} {setting.value!r}: VirtualBox NIC bound to a host network")


@check(
    id="host-listener-or-pipe",
    severity=Severity.CRITICAL,
    layer=Layer.DESCRIPTOR,
    title="VM configuration opens a listener or pipe on the host",
    remediation=(
        "Remove network and pipe serial ports (serialN.fileType = network/pipe, serialN.network.endPoint, "
        "serialN.vspc), debug stubs (debugStub.*), VMsafe endpoints (vmsafe.*) and unrestricted VMCI "
        "(vmciN.unrestricted): each opens a socket, pipe or channel in the host's hypervisor process that tenants "
        "must never reach."
    ),
    references=("vSphere 8 VM STIG V-258725 (serial ports)", "VMsafe: vSTIG ESXI5-VM-000052..54",
                "vmci0.unrestricted: vSTIG ESXI5-VM-000011"),
)
def host_listener_or_pipe(descriptor: Descriptor) -> Iterator[Result]:
    """A socket, pipe or debugger endpoint the hypervisor would open on the host for this VM."""
    for entry, _ in descriptor.matching(r"^serial\d+\.filetype$"):
        if entry.value.strip().lower() in ("network", "pipe"):
            yield fail(entry.location, f"{entry.key} = {entry.value!r}: serial port as a host {entry.value.strip().lower()}")
    for entry, _ in descriptor.matching(r"^serial\d+\.(network\.endpoint|pipe\.endpoint|vspc)$"):
        yield fail(entry.location, f"{entry.key} = {redact(entry.value)!r}")
    for entry, _ in descriptor.matching(r"^serial\d+\.filename$"):
        if re.match(r"^(telnet|tcp|udp|ssl|tls|vspc)s?://", entry.value.strip(), re.IGNORECASE):
            yield fail(entry.location, f"{entry.key} = {redact(entry.value)!r}: serial port listens on the host network")
    for entry, _ in descriptor.matching(r"^(debugstub\..+|monitor\.debugonstartguest(32|64)|vmsafe\.(enable|agentaddress|agentport))$"):
        if entry.norm.startswith("vmsafe.agent") or is_on(entry.value):
            yield fail(entry.location, f"{entry.key} = {entry.value!r}: debugger or introspection endpoint")
    for entry, _ in descriptor.matching(r"^(vmci\d+\.unrestricted|allowunrestrictedcommunication)$"):  # the VMX key, the vmw:Config field
        if is_on(entry.value):
            yield fail(entry.location, f"{entry.key} = {entry.value!r}: a VMCI channel to every other VM on the host")
    for setting in descriptor.vbox_settings:
        if setting.name == "port" and _vbox_port_mode(setting) in _VBOX_LISTENER_MODES:
            yield fail(setting.location, f"{setting.location.key} {redact(setting.value)}: VirtualBox port as a host pipe or socket")


@check(
    id="shared-folder",
    severity=Severity.CRITICAL,
    layer=Layer.DESCRIPTOR,
    title="VM configuration shares a host folder with the guest",
    remediation=(
        "Remove every sharedFolderN.* key and hgfs.mapRootShare/linkRootShare, and set "
        "isolation.tools.hgfs.disable = \"TRUE\": a shared folder exposes host files to the guest."
    ),
    references=("libvirt src/vmx/vmx.c: sharedFolderN.hostPath maps a host directory into the guest",),
)
def shared_folder(descriptor: Descriptor) -> Iterator[Result]:
    """Host directories mapped into the guest (HGFS), or HGFS switched on explicitly."""
    for entry, _ in descriptor.matching(r"^sharedfolder\d+\.hostpath$"):
        yield fail(entry.location, f"{entry.key} = {entry.value!r}: host folder shared with the guest")
    for folder in descriptor.shared_folders:
        yield fail(folder.location, f"vbox:Machine shares host folder {redact(folder.value)!r} with the guest")
    for entry, _ in descriptor.matching(r"^hgfs\.(maprootshare|linkrootshare)$"):
        if is_on(entry.value):
            yield fail(entry.location, f"{entry.key} = {entry.value!r}: the host's root share is mapped")
    for hgfs, _ in descriptor.matching(r"^isolation\.tools\.hgfs\.disable$"):
        if not is_plainly_true(hgfs.value):  # for a *.disable key, only a clear TRUE is safe
            yield fail(hgfs.location, f"{hgfs.key} = {hgfs.value!r}: host-guest file sharing switched on")


@hookimpl
def certify_checks():
    return [host_device_passthrough, host_listener_or_pipe, shared_folder]
