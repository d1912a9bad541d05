"""Which VMX and OVF settings are dangerous, and what a cloud writes instead.

The one home of these rules: the descriptor checks report what they match and
the sanitizers remove or rewrite it, so both read the same tables. A
``vmw:ExtraConfig`` entry is a raw VMX line, so every VMX rule applies to it too.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib

# Keys whose value names a file or folder on the host, one pattern each. This one list drives both
# storage-path-outside-bundle (scan) and the sanitizers: a value that leaves the bundle is reported
# and removed, whatever else the key's namespace is removed for.
PATH_KEYS = (
    r"(scsi|ide|sata|nvme)\d+:\d+\.filename",  # disks and CD images
    r"(floppy|serial|parallel)\d+\.filename",  # image files, host devices, files a port writes
    r"sharedfolder\d+\.hostpath",
    r"nvram",
    r"extendedconfigfile",
    r"checkpoint\.vmstate",
    r"workingdir",
    r"suspend\.directory",
    r"redologdir",
    r"sched\.swap\.(dir|derivedname)",
    r"log\.filename",
    r"vmxstats\.filename",
    r"migrate\.hostlog",
    r"replay\.filename",
    r"filesearchpath",
    r"(?!guestinfo\.)[^=]+\.filename",  # every other *.fileName the VMM opens (snapshots, sound, ...)
)
PATH_KEY = re.compile(r"^(" + "|".join(PATH_KEYS) + r")$", re.IGNORECASE)
DISK_FILENAME_KEY = re.compile(r"^" + PATH_KEYS[0] + r"$", re.IGNORECASE)
_PATH_LIST_KEY = re.compile(r"^filesearchpath$", re.IGNORECASE)


def key_paths(key: str, value: str) -> list[str]:
    """The storage names a path-bearing key's value holds: fileSearchPath is a ';'-separated list."""
    if not value or not PATH_KEY.match(key):
        return []
    if _PATH_LIST_KEY.match(key):
        return [part for part in value.split(";") if part.strip()]
    return [value]


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
    # Inside the bundle these name nothing harmful, but where the VMM keeps them is the cloud's to choose.
    (r"(sched\.swap\..*|workingdir|suspend\.directory|redologdir|checkpoint\.vmstate|vmxstats\.filename"
     r"|migrate\.hostlog|log\.filename|filesearchpath|replay\.filename)", "host-owned location: the cloud chooses it", ""),
    (r"(answer\.msg\..*|msg\.autoanswer)", "pre-answered hypervisor question", ""),
    (r"guestinfo\..*", "guest-readable data, may carry secrets", "descriptor-secret"),
    (r"sched\.mem\.pshare\.salt", "page sharing across VMs", "vmx-isolation-settings"),
]
_REMOVE = [(re.compile(p + "$", re.IGNORECASE), reason, check) for p, reason, check in REMOVE]
SECRET_KEYS = re.compile(r"remotedisplay\.vnc\.(password|key)$|guestinfo\..*", re.IGNORECASE)


def removal_for(key: str) -> tuple[str, str] | None:
    """(reason, check id) when a VMX key (or an OVF vmw:ExtraConfig/vmw:Config key) must go, else None."""
    return next(((reason, check) for rx, reason, check in _REMOVE if rx.match(key)), None)


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

# deviceType values of a disk or CD namespace (scsi0:1) that pass a host device through.
RAW_DEVICE_TYPES = {"cdrom-raw", "atapi-cdrom", "scsi-passthru", "rawdisk", "scsi-cdrom"}
# CIM ResourceType numbers of OVF hardware items that bind host hardware (35: VirtualBox's sound card).
HOST_ITEM_TYPES = {"14": "floppy drive", "21": "serial port", "22": "parallel port", "23": "USB controller", "35": "sound card"}
# rasd:ResourceSubType of an OVF item backed by a host (or console client) device rather than an image:
# vmware.cdrom.atapi / remoteatapi / remotepassthrough (the OVF form of cdrom-raw), PCI pass-through,
# vmware.soundcard.* (host audio, as sound.present in a VMX).
HOST_ITEM_SUBTYPE = re.compile(r"(atapi|passthrough|passthru|soundcard)", re.IGNORECASE)

DEFAULT_EXTRACONFIG_ALLOWED = [
    "cpuid.coresPerSocket", "svga.present", "svga.autodetect", "svga.vramSize", "svga.numDisplays",
    "tools.syncTime", "tools.upgrade.policy", "time.synchronize.*", "disk.EnableUUID", "numa.*",
]  # fmt: skip

# vmw:Config (VirtualMachineConfigSpec) fields real exports carry (descriptors.md §2.4), and device fields of Items.
DEFAULT_CONFIG_ALLOWED = [
    "firmware", "nestedHVEnabled", "flags.vvtdEnabled", "flags.vbsEnabled", "tools.syncTimeWithHost",
    "tools.afterPowerOn", "tools.afterResume", "tools.beforeGuestStandby", "tools.beforeGuestShutdown",
    "tools.beforeGuestReboot", "tools.toolsUpgradePolicy", "powerOpInfo.*", "bootOptions.efiSecureBootEnabled",
    "bootOptions.bootDelay", "bootOptions.enterBIOSSetup", "cpuHotAddEnabled", "cpuHotRemoveEnabled",
    "memoryHotAddEnabled", "virtualICH7MPresent", "virtualSMCPresent", "slotInfo.pciSlotNumber",
    "connectable.startConnected", "connectable.connected", "wakeOnLanEnabled", "videoRamSizeInKB",
    "enable3DSupport", "use3dRenderer", "numDisplays", "useAutoDetect", "graphicsMemorySizeInKB",
]  # fmt: skip

# Whole words only: 'passthrough', 'compass' and 'tokenizer' are not secrets.
SECRET_NAME = re.compile(r"(?<![a-z])(pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|credentials?)(?![a-z])",
                         re.IGNORECASE)  # fmt: skip


def secret_name(key: str) -> bool:
    """A key named like a secret; camelCase words count as words (adminPassword, vami.rootPassword, apiToken)."""
    words = re.sub(r"([A-Z])([A-Z][a-z])", r"\1_\2", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key))
    return bool(SECRET_NAME.search(words))


NOT_TEXT_TYPES = ("boolean", "uint", "sint", "int", "real")  # an ovf:type that cannot hold a secret
_SECRET_CONTENT = re.compile(r"passw(or)?d|chpasswd|ssh_authorized_keys|PRIVATE KEY-----", re.IGNORECASE)


def secret_content(value: str) -> bool:
    """Credentials in a value, also inside base64 (wrapped or not) and gzip, as cloud-init user data travels."""
    if _SECRET_CONTENT.search(value):
        return True
    try:
        raw = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = zlib.decompressobj(wbits=31).decompress(raw, 1024 * 1024)  # bounded: no gzip bomb
        except zlib.error:
            return False
    return bool(_SECRET_CONTENT.search(raw.decode("utf-8", "replace")))
