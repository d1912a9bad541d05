"""Ingest an upload: identify it, bring its files in safely, find its descriptor and disks.

Nothing in an upload is trusted. An OVA is streamed once into the work
directory (``certify.bundle.ova``); the files of an OVF or VMX directory, or a bare
disk, are copied in (``certify.bundle.files``). Descriptors are parsed, manifests
and signatures verified, and every disk's format checked against its bytes
before anything reaches qemu.
"""

from __future__ import annotations

import codecs
import os
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from certify.bundle import diskformat, manifest, signature
from certify.bundle.descriptor import Descriptor, from_ovf, from_vmx, outside_bundle_reason
from certify.bundle.disk import BundleDisk
from certify.bundle.files import Limits, MissingFile, Staging, show
from certify.bundle.manifest import ManifestEntry
from certify.bundle.ova import extract
from certify.bundle.ovf import OvfDescriptor, OvfDisk, capacity_bytes, parse_ovf
from certify.bundle.signature import Signer
from certify.bundle.vmx import parse_vmx
from certify.bundle.vmx_policy import DISK_FILENAME_KEY
from certify.errors import InputRejected, ParseError, UsageError
from certify.model import Layer, Location

DESCRIPTOR_LIMIT = 8 * 1024 * 1024
_PACKAGE_RESOURCE = re.compile(r"^(ovf:)?/(disk|file)/([^/]+)$")  # ovf:/disk/ID, ovf:/file/ID (or without the scheme)
DISK_EXTENSIONS = tuple(diskformat.EXTENSION_FORMATS)
# Split VMDKs whose extents are files of the bundle; device-mapping types are refused.
SAFE_CREATE_TYPES = {"monolithicFlat", "monolithicSparse", "twoGbMaxExtentFlat", "twoGbMaxExtentSparse",
                     "vmfs", "vmfsSparse", "streamOptimized"}  # fmt: skip
EXTENT_FORMATS = {"FLAT": diskformat.RAW, "VMFS": diskformat.RAW, "SPARSE": diskformat.VMDK, "VMFSSPARSE": diskformat.VMDK}


@dataclass
class Bundle:
    kind: str  # ova, ovf, vmx, disk
    sha256: str
    root: str  # the private copy in the work directory: every reader and qemu use it
    source: str | None = None  # the upload's own directory, for bundles copied from one
    descriptor: Descriptor | None = None
    disks: list[BundleDisk] = field(default_factory=list)
    disk_facts: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    manifest: str | None = None  # the verified .mf, when the bundle has one
    members: list[str] = field(default_factory=list)
    signer: Signer | None = None
    disk_issues: list[DiskIssue] = field(default_factory=list)

    def files(self) -> list[str]:
        """Names (relative to root) of the files the bundle consists of."""
        names = [d["file"] for d in self.disk_facts]
        names += [i.file for i in self.disk_issues if i.check != "dangling-reference"]  # refused, but present all the same
        names += [n for n in (self.descriptor.file if self.descriptor else None, self.manifest) if n]
        return sorted(set(names))

    def facts(self) -> BundleFacts:
        return BundleFacts(kind=self.kind, descriptor=self.descriptor.file if self.descriptor else None,
                           manifest=self.manifest, members=tuple(self.members), signer=self.signer,
                           disk_issues=tuple(self.disk_issues))  # fmt: skip


@dataclass(frozen=True)
class DiskIssue:
    """A disk (or a file a descriptor names) that was not opened, and why."""

    check: str  # dangling-reference, disk-format-mismatch, disk-external-reference, disk-hidden-state or disk-corrupt
    file: str
    location: Location
    evidence: str


class _DiskRefused(Exception):
    def __init__(self, check: str, evidence: str):
        super().__init__(evidence)
        self.check, self.evidence = check, evidence


@dataclass(frozen=True)
class BundleFacts:
    """What checks may know about the bundle as a whole (no host paths)."""

    kind: str
    descriptor: str | None
    manifest: str | None
    members: tuple[str, ...] = ()  # every file the upload holds (an OVA's members, a directory's files)
    signer: Signer | None = None  # who signed the manifest, when a .cert verified
    disk_issues: tuple[DiskIssue, ...] = ()


def identify(path: str) -> str:
    """The artifact kind of a path, from its type and name (the bytes are checked later)."""
    if os.path.isdir(path):
        return "directory"
    name = path.lower()
    for suffix, kind in ((".ova", "ova"), (".ovf", "ovf"), (".vmx", "vmx")):
        if name.endswith(suffix):
            return kind
    if name.endswith(DISK_EXTENSIONS):
        return "disk"
    raise UsageError(
        f"{path}: not a recognised appliance (expected .ova, .ovf, .vmx, a directory holding one, "
        f"or a disk image: {', '.join(DISK_EXTENSIONS)})"
    )


@dataclass(frozen=True)
class IngestPolicy:
    """What a profile (and --trust-store) asks of an upload beyond being safe to read."""

    strict_ova_order: bool = False  # reject an OVA not laid out per DSP0243 (else a note)
    reject_sha1_manifest: bool = False  # reject a manifest with SHA1 digests (else a note)
    anchors: tuple[x509.Certificate, ...] | None = None  # the trust store; None when none was given
    require_trusted_signer: bool = False  # reject an upload no signer the anchors vouch for signed


def ingest(path: str, workdir: str, limits: Limits = Limits(), policy: IngestPolicy = IngestPolicy()) -> Bundle:
    """Bring the upload at ``path`` into ``workdir``, holding it to ``limits`` and ``policy``."""
    bundle = _ingest(path, workdir, limits, policy)
    if policy.require_trusted_signer:
        signer = bundle.signer
        if signer is None:
            what = "a VMX or disk image carries no signature" if bundle.kind in ("vmx", "disk") else "the package is not signed"
            raise InputRejected(f"{os.path.basename(path)}: {what}, and the profile requires a trusted signer")
        if not signer.trusted:
            raise InputRejected(f"{os.path.basename(path)}: signer {signer.subject} is not trusted ({signer.trust or 'no trust store'}), "
                                "and the profile requires a trusted signer")  # fmt: skip
    return bundle


def _ingest(path: str, workdir: str, limits: Limits, policy: IngestPolicy) -> Bundle:
    if not os.path.lexists(path):
        raise UsageError(f"{path}: no such file or directory")
    kind = identify(path)
    if kind == "directory":
        path, kind = _descriptor_in(path)
    if not os.path.isfile(path):
        raise UsageError(f"{path}: not a regular file")
    if kind == "ova":
        return _ingest_ova(path, workdir, limits, policy)
    source, name = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    files = Staging(source, os.path.join(workdir, "bundle"), limits)
    if kind == "disk":
        bundle = Bundle(kind="disk", sha256="", root=files.root, source=source, members=[name])
        declared = diskformat.EXTENSION_FORMATS[os.path.splitext(name)[1].lower()]
        _add_disk(bundle, files, name, declared, Location(layer=Layer.DISK, file=name))
        bundle.sha256 = files.digest(name)
        return bundle
    bundle = Bundle(kind=kind, sha256="", root=files.root, source=source, members=_listing(source))
    if kind == "ovf":
        mf_name = name.rsplit(".", 1)[0] + ".mf"  # NAME.mf beside NAME.ovf
        entries = _manifest_entries(files, mf_name) if os.path.lexists(os.path.join(source, mf_name)) else None
        data = _read_descriptor(files, name)
        ovf = _parse_ovf(name, data)
        if entries is None and os.path.lexists(os.path.join(source, name.rsplit(".", 1)[0] + ".cert")):
            raise InputRejected(f"{show(name)}: a .cert without a manifest signs nothing")
        _attach_ovf(bundle, files, name, ovf, data)  # stages the disks and their extents
        if entries is not None:
            for listed in [e.name for e in entries]:
                files.try_stage(listed)  # one the bundle lacks is reported by verify()
            cert_name = mf_name[:-3] + ".cert"
            has_cert = os.path.lexists(os.path.join(source, cert_name))
            # Checked only now, so every file qemu will open (extents too) must be listed.
            bundle.notes.extend(_weak_digests(mf_name, entries, manifest.verify(entries, files.digests, exempt={mf_name, cert_name}), policy))
            bundle.manifest = mf_name
            if has_cert:
                bundle.signer = _verify_signature(files, mf_name, cert_name, policy)
    else:
        data = _read_descriptor(files, name)
        _attach_vmx(bundle, files, name, data)
    bundle.sha256 = files.digest(name)
    return bundle


def _listing(directory: str, limit: int = 10_000) -> list[str]:
    """Names of the regular files beside the descriptor (names only: nothing is opened)."""
    with os.scandir(directory) as entries:
        names = sorted(e.name for _, e in zip(range(limit), entries) if e.is_file(follow_symlinks=False))
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes, kept by Python as surrogates
            raise InputRejected(f"file {show(name)} beside the descriptor: its name is not valid UTF-8") from None
    return names


def _descriptor_in(directory: str) -> tuple[str, str]:
    with os.scandir(directory) as scan:
        named = [e for e in scan if e.name.lower().endswith((".ovf", ".vmx"))]
    found = sorted(e.name for e in named if e.is_file(follow_symlinks=False))
    if not found:
        links = sorted(e.name for e in named if e.is_symlink())
        if links:
            raise InputRejected(f"descriptor {show(links[0])}: refused: it is a symbolic link")
        raise UsageError(f"{directory}: directory holds no .ovf or .vmx descriptor")
    if len(found) > 1:
        raise UsageError(f"{directory}: directory holds several descriptors ({', '.join(found)}); name one")
    return os.path.join(directory, found[0]), found[0].lower().rsplit(".", 1)[1]


def _read_descriptor(files: Staging, name: str) -> bytes:
    with files.open(name, DESCRIPTOR_LIMIT, what="descriptor") as f:
        data = f.read(DESCRIPTOR_LIMIT + 1)
    if len(data) > DESCRIPTOR_LIMIT:
        raise InputRejected(f"{show(name)}: descriptor is larger than {DESCRIPTOR_LIMIT} bytes")
    return data


def _sniff(files: Staging, name: str, what: str, expected: str | None) -> tuple[diskformat.DiskHeader, int]:
    """A disk's header and size; a file of the ``expected`` format that does not hold what its header promises is a disk-corrupt refusal.

    A damaged file of another format is returned as a bare header of that format: the mismatch is what the caller reports.
    """
    label = f"{what} {show(name)}"
    with files.open(name, what=what) as f:
        size = os.fstat(f.fileno()).st_size

        def read(offset: int, length: int) -> bytes:
            f.seek(offset)
            return f.read(length)

        try:
            return diskformat.sniff(read, size), size
        except diskformat.CorruptDisk as exc:
            if exc.format is not None and exc.format != expected:
                return diskformat.DiskHeader(format=exc.format), size
            raise _DiskRefused("disk-corrupt", f"{label}: {exc}") from None
        except ParseError as exc:
            raise InputRejected(f"{label}: {exc}") from None


def _verify_disk(files: Staging, name: str, declared: str | None) -> tuple[BundleDisk, dict[str, Any]]:
    """Check that a disk's bytes are the declared format, hold what their header promises, and name no other file."""
    try:
        header, size = _sniff(files, name, "disk", declared)
    except MissingFile:
        raise _DiskRefused("dangling-reference", f"disk {show(name)} is referenced but not in the bundle") from None
    if declared is None:
        raise _DiskRefused("disk-format-mismatch", f"disk {show(name)}: the descriptor declares no format this tool knows")
    if header.format != declared:
        hint = " (a VHD keeps its footer in its last 512 bytes and this file has none: was it cut short?)" if declared == diskformat.VPC else ""
        raise _DiskRefused("disk-format-mismatch", f"disk {show(name)}: declared {declared} but its bytes are {header.format}{hint}")
    if header.references:
        raise _DiskRefused("disk-external-reference", f"disk {show(name)} refers to other files ({'; '.join(header.references)})")
    base = posixpath.dirname(name.replace("\\", "/"))
    _own_name(files, name, base, header, f"disk {show(name)}")
    if header.hidden_state:
        raise _DiskRefused("disk-hidden-state", f"disk {show(name)} holds guest state this scan would not read: {'; '.join(header.hidden_state)}")
    if header.extents and header.subformat not in SAFE_CREATE_TYPES:
        raise _DiskRefused("disk-external-reference", f"disk {show(name)}: VMDK createType {header.subformat!r} maps host devices")
    for extent in header.extents:
        if extent.file:  # a file-less extent (ZERO) opens nothing
            _verify_extent(files, name, posixpath.join(base, extent.file), extent)
    facts = {
        "file": name,
        "format": header.format,
        "subformat": header.subformat,
        "virtual_size": header.virtual_size,
        "size": size,
        "sha256": files.digest(name),
    }
    return BundleDisk(path=files.path(name), name=name, format=declared), facts


def _own_name(files: Staging, name: str, base: str, header: diskformat.DiskHeader, label: str) -> None:
    """A sparse VMDK's embedded descriptor names its one extent: itself, or a name no other file of the bundle has."""
    own = header.own_name
    if own and own != posixpath.basename(name) and files.exists(posixpath.join(base, own)):
        raise _DiskRefused("disk-external-reference", f"{label}: its embedded descriptor names {show(own)}, another file of the bundle, as its extent")


def _verify_extent(files: Staging, disk: str, path: str, extent: diskformat.Extent) -> None:
    """An extent is opened by qemu with the type its descriptor gives: its bytes must be that type, as long as the descriptor says."""
    label = f"disk {show(disk)}: extent {show(extent.file)}"
    if outside_bundle_reason(extent.file) or "/" in extent.file or "\\" in extent.file:
        raise _DiskRefused("disk-external-reference", f"{label} is not a file beside the descriptor")
    expected = EXTENT_FORMATS.get(extent.type)
    if expected is None:
        raise _DiskRefused("disk-external-reference", f"disk {show(disk)}: extent type {extent.type} maps a device or is not supported")
    try:
        header, size = _sniff(files, path, f"disk {show(disk)}: extent", expected)
    except MissingFile:
        raise _DiskRefused("dangling-reference", f"{label} is not in the bundle") from None
    if header.references or header.extents:
        raise _DiskRefused("disk-external-reference", f"{label} refers to other files")
    if header.format != expected:
        raise _DiskRefused("disk-format-mismatch", f"{label} is not a plain {extent.type} extent ({header.format})")
    _own_name(files, path, posixpath.dirname(path), header, label)
    if expected == diskformat.VMDK and header.virtual_size != extent.sectors * 512:
        raise _DiskRefused("disk-corrupt", f"{label} holds {header.virtual_size} bytes, the descriptor says {extent.sectors * 512}")
    if expected == diskformat.RAW and size < (extent.offset + extent.sectors) * 512:
        raise _DiskRefused("disk-corrupt", f"{label}: disk truncated: the descriptor maps sectors {extent.offset} to "
                                           f"{extent.offset + extent.sectors} of it, and it holds {size // 512}")  # fmt: skip


# --- descriptors ---------------------------------------------------------------------


def _parse_ovf(name: str, data: bytes) -> OvfDescriptor:
    try:
        return parse_ovf(data)
    except ParseError as exc:
        raise InputRejected(f"{name}: {exc}") from None


def _manifest_entries(files: Staging, name: str) -> list[ManifestEntry]:
    with files.open(name, manifest.MAX_BYTES, what="manifest") as f:
        data = f.read(manifest.MAX_BYTES + 1)
    try:
        entries = manifest.parse_manifest(data)
    except ParseError as exc:
        raise InputRejected(f"{show(name)}: {exc}") from None
    files.algorithms |= {e.algorithm for e in entries}  # files copied from now on get them too
    return entries


def _add_disk(bundle: Bundle, files: Staging, name: str, declared: str | None, where: Location,
              capacity: int | None = None, size: int | None = None) -> None:  # fmt: skip
    """Verify a disk and add it for the guest; one that cannot be opened safely becomes an issue.

    ``capacity`` and ``size`` are what an OVF declares for it (ovf:capacity, ovf:size).
    """
    try:
        guest_disk, facts = _verify_disk(files, name, declared)
        virtual = facts["virtual_size"]
        if virtual is not None and virtual > files.limits.max_virtual_bytes:
            raise InputRejected(f"disk {show(name)} claims {virtual} bytes, over the {files.limits.max_virtual_bytes}-byte quota")
        if capacity is not None and virtual is not None and virtual > capacity:
            raise _DiskRefused("disk-format-mismatch", f"disk {show(name)} holds {virtual} bytes, more than the {capacity} the OVF declares")
        if size is not None and facts["size"] != size:
            raise InputRejected(f"disk {show(name)} is {facts['size']} bytes, but the OVF's ovf:size says {size}")
    except _DiskRefused as refused:
        bundle.disk_issues.append(DiskIssue(check=refused.check, file=name, location=where, evidence=refused.evidence))
        return
    bundle.disks.append(guest_disk)
    bundle.disk_facts.append(facts)


MAX_SIZE_DIGITS = 20  # 10**20 bytes is beyond any disk; more digits only make int() slow or refuse


def _declared_size(descriptor: str, href: str, text: str | None) -> int | None:
    """A File's ovf:size in bytes; None when it is not a plain number (a template); InputRejected when absurdly long."""
    digits = (text or "").strip()
    if not re.fullmatch(r"[0-9]+", digits):
        return None
    if len(digits) > MAX_SIZE_DIGITS:
        raise InputRejected(f"{descriptor}: file {show(href)} declares an ovf:size of {len(digits)} digits (at most {MAX_SIZE_DIGITS})")
    return int(digits)


_XML_ENCODING = re.compile(rb"""^<\?xml[^>]{0,200}?\bencoding\s*=\s*["']([A-Za-z][A-Za-z0-9._\-]{0,40})["']""")
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"), (b"<\0?\0", "utf-16-le"), (b"\0<\0?", "utf-16-be"))  # fmt: skip


def xml_text(data: bytes) -> str:
    """An XML document's text in the encoding it is written in (BOM, then XML declaration, else UTF-8), for searching.

    The parser has already accepted the document, so its encoding is known to Python; an undecodable byte becomes U+FFFD.
    """
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), None)
    if encoding is None:
        match = _XML_ENCODING.match(data)
        encoding = match.group(1).decode("ascii") if match else "utf-8"
    try:
        return data.decode(encoding, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


def _dangling(bundle: Bundle, files: Staging, name: str, where: Location, what: str) -> None:
    if not files.exists(name, what=what):
        bundle.disk_issues.append(DiskIssue(check="dangling-reference", file=name, location=where,
                                            evidence=f"{what} {show(name)} is referenced but not in the bundle"))  # fmt: skip


def _attach_ovf(bundle: Bundle, files: Staging, name: str, ovf: OvfDescriptor, data: bytes) -> None:
    bundle.descriptor = from_ovf(name, ovf, xml_text(data))
    for section in ovf.optional_sections:
        bundle.notes.append(f"{name}: optional section {show(section.name)} (line {section.line}) is not read; a deployer may ignore it too")
    declared = {n.name for n in ovf.networks}
    for item in ovf.items:
        for network in item.connections:
            if network not in declared:
                bundle.notes.append(f"{name}: line {item.line}: connects to network {show(network)}, which NetworkSection does not declare")
    refs = {f.id: f for f in ovf.files}
    href_location = {r.location.line: r.location for r in bundle.descriptor.storage_refs}
    disk_files: dict[str, str] = {}  # file id -> the Disk using it
    for disk in ovf.disks:
        _check_disk_declaration(name, disk, files.limits)
        if disk.file_ref and disk.file_ref in disk_files:
            raise InputRejected(f"{name}: Disks {show(disk_files[disk.file_ref])} and {show(disk.disk_id)} both use file {show(disk.file_ref)}")
        ref = refs.get(disk.file_ref or "")
        if ref is None:
            where = Location(layer=Layer.DESCRIPTOR, file=name, key=f"Disk[@ovf:diskId={disk.disk_id!r}]/@ovf:fileRef", line=disk.line)
            bundle.disk_issues.append(DiskIssue(check="dangling-reference", file=disk.file_ref or "", location=where,
                                                evidence=f"Disk {show(disk.disk_id)} names file id {show(disk.file_ref or '')}, which References does not list"))  # fmt: skip
            continue
        disk_files[ref.id] = disk.disk_id
        if outside_bundle_reason(ref.href):
            continue  # reported by storage-path-outside-bundle; never opened
        if ref.compression or ref.chunk_size:
            raise InputRejected(f"{name}: disk file {show(ref.href)} is compressed or chunked, which is not supported yet")
        size = _declared_size(name, ref.href, ref.size)
        _add_disk(bundle, files, ref.href, diskformat.format_from_ovf(disk.format), href_location[ref.line],
                  capacity=capacity_bytes(disk), size=size)  # fmt: skip
    for ref in ovf.files:  # ISOs and other files the package says it carries
        if ref.id not in disk_files and not outside_bundle_reason(ref.href):
            _dangling(bundle, files, ref.href, href_location[ref.line], "file")
    declared = {"disk": {d.disk_id for d in ovf.disks}, "file": set(refs)}
    for item in ovf.items:  # a device bound to a disk or file the package never declares
        for resource in item.host_resources:
            match = _PACKAGE_RESOURCE.match(resource)
            if match and match.group(3) not in declared[match.group(2)]:
                where = Location(layer=Layer.DESCRIPTOR, file=name, key="rasd:HostResource", line=item.line)
                evidence = f"item {show(item.name)} uses {show(resource)}, which the package does not declare"
                bundle.disk_issues.append(DiskIssue(check="dangling-reference", file=resource, location=where, evidence=evidence))


def _check_disk_declaration(name: str, disk: OvfDisk, limits: Limits) -> None:
    """A Disk must be standalone and declare a capacity in bytes within the quota."""
    if disk.parent_ref:
        raise InputRejected(f"{name}: Disk {show(disk.disk_id)} is a delta of {show(disk.parent_ref)} (ovf:parentRef); "
                            "flatten it into one standalone disk")  # fmt: skip
    if disk.capacity is None:
        return
    capacity = capacity_bytes(disk)
    if capacity is None:
        raise InputRejected(f"{name}: Disk {show(disk.disk_id)}: ovf:capacity {show(disk.capacity, 40)} in "
                            f"{show(disk.capacity_units or 'byte', 40)} is not a whole number of bytes")  # fmt: skip
    if capacity > limits.max_virtual_bytes:
        raise InputRejected(f"{name}: Disk {show(disk.disk_id)} declares {capacity} bytes, over the {limits.max_virtual_bytes}-byte quota")


def _attach_vmx(bundle: Bundle, files: Staging, name: str, data: bytes) -> None:
    try:
        vmx = parse_vmx(data)
    except ParseError as exc:
        raise InputRejected(f"{name}: {exc}") from None
    bundle.descriptor = from_vmx(name, vmx, data.decode(vmx.encoding, "replace"))
    for entry in vmx.entries:
        if not DISK_FILENAME_KEY.match(entry.key) or outside_bundle_reason(entry.value) or not entry.value:
            continue
        where = Location(layer=Layer.DESCRIPTOR, file=name, key=entry.key, line=entry.line)
        device = vmx.get(entry.key.rsplit(".", 1)[0] + ".deviceType")
        device_type = device.value.strip().lower() if device else ""
        if device_type == "cdrom-image":
            _dangling(bundle, files, entry.value, where, "CD-ROM image")  # not a guest disk, but must be here
        elif not device_type or device_type.endswith(("harddisk", "disk")):
            _add_disk(bundle, files, entry.value, diskformat.VMDK, where)
        # other device types are host devices: host-device-passthrough reports them


# --- OVA -----------------------------------------------------------------------------


def _ingest_ova(path: str, workdir: str, limits: Limits, policy: IngestPolicy) -> Bundle:
    root = os.path.join(workdir, "bundle")
    ova = extract(path, root, limits, lambda name, digests: _manifest_entries(Staging(None, root, limits, digests), name))
    order, digests, mf_name, entries = ova.order, ova.digests, ova.manifest, ova.entries
    descriptors = [n for n in order if "/" not in n and n.lower().endswith(".ovf")]
    if len(descriptors) != 1:
        found = ", ".join(descriptors) or "none"
        raise InputRejected(f"{os.path.basename(path)}: an OVA must hold exactly one .ovf at its top level (found {found})")
    bundle = Bundle(kind="ova", sha256=ova.sha256, root=root, members=order)

    def out_of_order(problem: str) -> None:  # DSP0243 order lets a deployer read the descriptor first
        if policy.strict_ova_order:
            raise InputRejected(f"{os.path.basename(path)}: {problem} (the profile requires DSP0243 member order)")
        bundle.notes.append(problem)

    if order[0] != descriptors[0]:
        out_of_order(f"the OVF descriptor is not the first member of the OVA ({show(order[0])} is)")
    certificates = [n for n in order if "/" not in n and n.lower().endswith(".cert")]
    if len(certificates) > 1:
        raise InputRejected(f"{os.path.basename(path)}: more than one .cert ({', '.join(map(show, certificates))})")
    if certificates and mf_name is None:
        raise InputRejected(f"{os.path.basename(path)}: a .cert without a manifest signs nothing")
    if entries is not None and mf_name is not None:
        bundle.notes.extend(_weak_digests(mf_name, entries, manifest.verify(entries, digests, exempt={mf_name, *certificates}), policy))
        bundle.manifest = mf_name
        if certificates:
            bundle.signer = _verify_signature(Staging(None, root, limits, digests), mf_name, certificates[0], policy)
        if not _placed_per_spec(order, descriptors[0], mf_name, certificates):
            out_of_order("the manifest and certificate are not where DSP0243 puts them (right after the OVF, or last)")
    files = Staging(None, root, limits, digests)
    data = _read_descriptor(files, descriptors[0])
    _attach_ovf(bundle, files, descriptors[0], _parse_ovf(descriptors[0], data), data)
    return bundle


def _weak_digests(mf_name: str, entries: list[ManifestEntry], notes: list[str], policy: IngestPolicy) -> list[str]:
    """The manifest's notes (on weak digests), or a rejection when the profile refuses SHA1."""
    if policy.reject_sha1_manifest and any(e.algorithm == "SHA1" for e in entries):
        raise InputRejected(f"{show(mf_name)} uses SHA1 digests, and the profile requires SHA256 or SHA512")
    return notes


def _placed_per_spec(order: list[str], ovf: str, mf: str, certs: list[str]) -> bool:
    tail = [mf, *certs]
    return order[1 : 1 + len(tail)] == tail and order[0] == ovf or order[-len(tail) :] == tail


def _verify_signature(files: Staging, mf_name: str, cert_name: str, policy: IngestPolicy) -> Signer:
    """The .cert must sign exactly this manifest's bytes; a bad signature rejects the upload (a SHA1 one too, when the profile refuses SHA1)."""
    if cert_name.rsplit(".", 1)[0] != mf_name.rsplit(".", 1)[0]:
        raise InputRejected(f"{show(cert_name)} does not belong to the manifest {show(mf_name)}")
    with files.open(cert_name, signature.MAX_BYTES, what="certificate") as f:
        cert_data = f.read(signature.MAX_BYTES + 1)
    with files.open(mf_name, manifest.MAX_BYTES, what="manifest") as f:
        mf_data = f.read(manifest.MAX_BYTES + 1)
    try:
        parsed = signature.parse_signature_file(cert_data)
        if parsed.manifest != mf_name:
            raise ParseError(f"it signs {show(parsed.manifest)}, not {show(mf_name)}")
        if policy.reject_sha1_manifest and parsed.algorithm == "SHA1":
            raise ParseError("the signature uses SHA1, and the profile requires SHA256 or SHA512")
        return signature.verify_signature(parsed, mf_data, anchors=policy.anchors)
    except ParseError as exc:
        raise InputRejected(f"{show(cert_name)}: {exc}") from None


