"""Property-based fuzzing of every parser of untrusted bytes: only ParseError may escape, and fast.

The seeds are real files (the shared corpus, qemu-made image headers); hypothesis
mutates them and also throws raw bytes. A deadline catches super-linear paths.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_parsers import CORPUS

from certify.bundle.descriptor import from_ovf, from_vmx
from certify.bundle.diskformat import sniff_bytes
from certify.bundle.manifest import parse_manifest
from certify.bundle.ovf import parse_ovf
from certify.bundle.vmx import parse_vmx
from certify.errors import ParseError
from certify import sample
from certify.guest.parsers.sshkeys import parse_authorized_keys, private_key_public

FUZZ = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
VMX_SEEDS = [p.read_bytes() for p in sorted(CORPUS.glob("*.vmx"))]
OVF_SEEDS = [p.read_bytes() for p in sorted(CORPUS.glob("*.ovf"))]


def mutated(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """A seed with a few byte flips, insertions or truncations, or plain random bytes."""

    @st.composite
    def mutate(draw) -> bytes:
        data = bytearray(draw(st.sampled_from(seeds)))
        for _ in range(draw(st.integers(0, 8))):
            if not data:
                break
            pos = draw(st.integers(0, len(data) - 1))
            action = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
            if action == "flip":
                data[pos] = draw(st.integers(0, 255))
            elif action == "insert":
                data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
            elif action == "delete":
                del data[pos : pos + draw(st.integers(1, 64))]
            else:
                del data[pos:]
        return bytes(data)

    return st.one_of(mutate(), st.binary(max_size=4096))


@FUZZ
@given(mutated(VMX_SEEDS))
def test_vmx_parser(data):
    try:
        vmx = parse_vmx(data)
    except ParseError:
        return
    from_vmx("a.vmx", vmx, data.decode(vmx.encoding, "replace"))


@FUZZ
@given(mutated(OVF_SEEDS))
def test_ovf_parser(data):
    try:
        ovf = parse_ovf(data)
    except ParseError:
        return
    from_ovf("a.ovf", ovf, data.decode("utf-8", "replace"))


@pytest.fixture(scope="module")
def image_seeds(tmp_path_factory) -> list[bytes]:
    d = tmp_path_factory.mktemp("seeds")
    with open(d / "base.raw", "wb") as f:
        f.truncate(1024 * 1024)
    commands = [
        ["create", "-q", "-f", "qcow2", "a.qcow2", "1M"],
        ["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "b.qcow2"],
        ["create", "-q", "-f", "qcow2", "-o", "data_file=data.raw", "c.qcow2", "1M"],
        ["create", "-q", "-f", "vmdk", "s.vmdk", "1M"],
        ["convert", "-q", "-O", "vmdk", "-o", "subformat=streamOptimized", "base.raw", "so.vmdk"],
        ["convert", "-q", "-O", "vmdk", "-o", "subformat=monolithicFlat", "base.raw", "flat.vmdk"],
        ["convert", "-q", "-O", "vpc", "base.raw", "d.vhd"],
        ["convert", "-q", "-O", "vpc", "-o", "subformat=fixed,force_size=on", "base.raw", "f.vhd"],
        ["convert", "-q", "-O", "vhdx", "base.raw", "a.vhdx"],
        ["convert", "-q", "-O", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", "base.raw", "split.vmdk"],
        ["create", "-q", "-f", "qcow2", "bitmaps.qcow2", "1M"],
        ["bitmap", "--add", "bitmaps.qcow2", "backup-0"],  # a bitmap directory qemu reads on every open
    ]
    for args in commands:
        subprocess.run(["qemu-img", *args], check=True, capture_output=True, cwd=d)
    # Descriptors with what a VMDK descriptor is held to: extents of each access and type, comments, keys.
    (d / "extents.vmdk").write_text('# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n'
                                    '\n# Extent description\nRW 2048 FLAT "a-flat.vmdk" 0\nRDONLY 8 FLAT "b.vmdk" 4\nRW 16 ZERO\n'
                                    'NOACCESS 1 SPARSE "c.vmdk"\n\tRW\t2048\tVMFS "d.vmdk"\r\nddb.adapterType = "ide"\n')  # fmt: skip
    # Headers and descriptors live in the first few hundred KiB (the bitmap directory just past 320); keep seeds small.
    return [p.read_bytes()[: 384 * 1024] for p in sorted(d.iterdir()) if p.name not in ("base.raw", "data.raw")]


def test_disk_header_sniffer(image_seeds):
    @FUZZ
    @given(mutated(image_seeds))
    def run(data):
        try:
            sniff_bytes(data)
        except ParseError:
            pass

    run()


@pytest.fixture(scope="module")
def whole_images(tmp_path_factory) -> list[tuple[bytes, list[int]]]:
    """Whole qemu-made images of every subformat, with the offsets where their structure lies.

    The raw disk is zeros but for a few marked sectors, so nearly every non-zero
    byte of an image is header, table or footer: mutations go there, where the
    checks of what a header promises (tables inside the file, footers,
    checksums, sizes, snapshots, bitmaps, logs) read.
    """
    d = tmp_path_factory.mktemp("whole")
    with open(d / "base.raw", "wb") as f:
        f.truncate(2 * 1024 * 1024 + 1536)
        for offset in (0, 70_000, 1024 * 1024 + 4096, 2 * 1024 * 1024 + 1024):
            f.seek(offset)
            f.write(b"\xa5" * 16)
    commands = [
        ["-O", "qcow2", "-o", "compat=0.10", "v2.qcow2"], ["-O", "qcow2", "v3.qcow2"], ["-O", "qcow2", "-c", "c.qcow2"],
        ["-O", "qcow2", "-o", "extended_l2=on,cluster_size=16k", "x.qcow2"], ["-O", "qcow2", "-o", "cluster_size=512", "s.qcow2"],
        ["-O", "vmdk", "ms.vmdk"], ["-O", "vmdk", "-o", "subformat=streamOptimized", "so.vmdk"],
        ["-O", "vpc", "d.vhd"], ["-O", "vpc", "-o", "subformat=fixed", "f.vhd"],
        ["-O", "vpc", "-o", "subformat=dynamic,force_size=on", "q.vhd"], ["-O", "qcow2", "b.qcow2"],
        ["-O", "vhdx", "-o", "block_size=1M,log_size=1M", "d.vhdx"],
    ]  # fmt: skip
    for args in commands:
        subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", *args[:-1], "base.raw", args[-1]], check=True, capture_output=True, cwd=d)
    subprocess.run(["qemu-img", "snapshot", "-c", "old", "v3.qcow2"], check=True, capture_output=True, cwd=d)
    subprocess.run(["qemu-img", "bitmap", "--add", "b.qcow2", "backup-0"], check=True, capture_output=True, cwd=d)
    seeds = []
    for path in sorted(p for p in d.iterdir() if p.name != "base.raw"):
        data = path.read_bytes()
        structure = [i for i in range(0, len(data), 8) if data[i : i + 8].strip(b"\0\xa5")]
        seeds.append((data, structure[:: max(1, len(structure) // 4096)] + [len(data) - 1536, len(data) - 512]))
    return seeds


def _seal_vhd_footers(data: bytearray) -> None:
    """Give each VHD footer of an image (at byte 0 and at the end) the checksum of its bytes."""
    for at in (0, len(data) - 512):
        if at >= 0 and data[at : at + 8] == b"conectix" and len(data) >= at + 512:
            data[at + 64 : at + 68] = bytes(4)
            data[at + 64 : at + 68] = (~sum(data[at : at + 512]) & 0xFFFFFFFF).to_bytes(4, "big")


def test_disk_integrity_checks(whole_images):
    """Whole images, bytes changed where their structure lies or cut anywhere: only ParseError (CorruptDisk is one) escapes."""

    @st.composite
    def damaged(draw) -> bytes:
        data, structure = draw(st.sampled_from(whole_images))
        data = bytearray(data)
        for _ in range(draw(st.integers(1, 6))):
            pos = min(draw(st.sampled_from(structure)) + draw(st.integers(0, 15)), len(data) - 1)
            action = draw(st.sampled_from(["flip", "flip", "word", "cut"]))
            if action == "flip":
                data[pos] = draw(st.integers(0, 255))
            elif action == "word":
                width = draw(st.sampled_from([2, 4, 8]))
                data[pos : pos + width] = draw(st.integers(0, 256**width - 1)).to_bytes(width, draw(st.sampled_from(["big", "little"])))
            else:
                del data[draw(st.integers(0, len(data) - 1)) :]
                break
        if draw(st.booleans()):  # a VHD footer changed and sealed again, as a forger would: past its checksum
            _seal_vhd_footers(data)
        return bytes(data)

    @FUZZ
    @given(damaged())
    def run(data):
        try:
            sniff_bytes(data)
        except ParseError:
            pass

    run()


@FUZZ
@given(st.one_of(st.binary(max_size=2048), st.text(max_size=2048).map(str.encode),
                 st.lists(st.tuples(st.sampled_from(["SHA1", "SHA256", "SHA512", "MD5", "sha256"]), st.text(max_size=20),
                                    st.text("0123456789abcdefABCDEF", max_size=130)))
                 .map(lambda rows: "".join(f"{a}({n})= {h}\n" for a, n, h in rows).encode())))  # fmt: skip
def test_manifest_parser(data):
    try:
        parse_manifest(data)
    except ParseError:
        pass


@FUZZ
@given(st.text(max_size=4096))
def test_authorized_keys_and_private_keys_never_raise(text):
    parse_authorized_keys(text)
    private_key_public(text.encode("utf-8", "replace"))
    private_key_public(b"-----BEGIN OPENSSH PRIVATE KEY-----\n" + text.encode("utf-8", "replace") + b"\n-----END OPENSSH PRIVATE KEY-----\n")


@pytest.fixture(scope="module")
def ova_seeds(tmp_path_factory) -> list[bytes]:
    """Small OVAs as tarfile and GNU tar write them: ustar, GNU long names, PAX paths and records, folders."""
    d = tmp_path_factory.mktemp("ovas")
    src = d / "src"
    names = ["vm.ovf", "sub/" + "a" * 120 + ".vmdk", "\u00e9t\u00e9.mf"]
    for name in names:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(b"<x/>" * 40)
    seeds = []
    for fmt in (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
            for name in names if fmt != tarfile.USTAR_FORMAT else names[::2]:
                tar.add(src / name, arcname=name)
        seeds.append(buf.getvalue()[:8192])
    for fmt in ("gnu", "posix"):
        done = subprocess.run(["tar", f"--format={fmt}", "-cf", "-", *names], cwd=src, capture_output=True, check=True)
        seeds.append(done.stdout[:8192])
    return seeds


def _header_blocks(ova: bytes) -> list[int]:
    """Where each 512-byte header of an archive lies, extended headers included."""
    blocks = []
    with tarfile.open(fileobj=io.BytesIO(ova)) as tar:
        for member in tar:
            at = member.offset
            while at < member.offset_data:
                blocks.append(at)
                size = int(ova[at + 124 : at + 136].strip(b"\0 ") or b"0", 8)
                at += 512 + (-(-size // 512) * 512 if ova[at + 156 : at + 157] in (b"x", b"L") else 0)
    return blocks


def headers_changed(ova_seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """An archive whose headers (and the PAX records or long names after them) have a few bytes changed, each header
    then sealed with its right checksum as a writer would: mutations that reach past tarfile to what extract judges."""
    seeds = [(ova, _header_blocks(ova)) for ova in ova_seeds]

    @st.composite
    def change(draw) -> bytes:
        ova, blocks = draw(st.sampled_from(seeds))
        data = bytearray(ova)
        for _ in range(draw(st.integers(1, 4))):
            at = min(draw(st.sampled_from(blocks)) + draw(st.integers(0, 1023)), len(data) - 1)
            data[at] = draw(st.one_of(st.sampled_from(b"\0 0127=\nx5L/"), st.integers(0, 255)))
        for at in blocks:
            header = data[at : at + 512]
            header[148:156] = b" " * 8
            data[at + 148 : at + 156] = b"%06o\0 " % sum(header)
        return bytes(data)

    return change()


def test_tar_member_header_parser(ova_seeds):
    from certify.bundle.tarheaders import member_problem

    chains = []
    for ova in ova_seeds:
        with tarfile.open(fileobj=io.BytesIO(ova)) as tar:
            chains += [ova[m.offset : m.offset_data] for m in tar]

    @FUZZ
    @given(mutated(chains))
    def run(data):
        assert member_problem(data) is None or isinstance(member_problem(data), str)

    run()


def test_ova_extraction(ova_seeds, tmp_path):
    """Mutated archives, headers and records included: only InputRejected escapes extract (no RecursionError, no
    tarfile error of its own)."""
    from certify.bundle.files import Limits
    from certify.bundle.ova import extract
    from certify.errors import InputRejected

    @FUZZ
    @given(st.one_of(mutated(ova_seeds), headers_changed(ova_seeds)))
    def run(data):
        with tempfile.TemporaryDirectory(dir=tmp_path) as work:
            with open(os.path.join(work, "a.ova"), "wb") as f:
                f.write(data)
            try:
                extract(os.path.join(work, "a.ova"), os.path.join(work, "bundle"), Limits(), lambda name, digests: [])
            except InputRejected:
                pass

    run()


DROPBEAR_SEEDS = [sample.dropbear_keypair(t)[0]
                  for t in ("ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256")]  # fmt: skip


@FUZZ
@given(mutated(DROPBEAR_SEEDS))
def test_dropbear_and_tinyssh_key_parsers_never_raise(data):
    from certify.guest.parsers.sshkeys import tinyssh_public_key, tinyssh_secret_key_public

    key = private_key_public(data)
    assert key is None or key.fingerprint.startswith("SHA256:")
    tinyssh_public_key("ed25519.pk", data[:32])
    tinyssh_public_key("nistp256ecdsa.pk", data[:64])
    tinyssh_secret_key_public(".ed25519.sk", data[:64])


@FUZZ
@given(st.text(max_size=2048))
def test_dropbear_configuration_parsers_never_raise(text):
    from certify.guest.parsers.dropbear import (
        DropbearOptions,
        Origin,
        apply_args,
        command_words,
        inittab_entries,
        openwrt_defaults,
        options_from_shell_file,
        options_from_uci,
    )
    from certify.guest.parsers.hostkeys import gitea_host_keys, libssh_host_keys
    from certify.guest.parsers.uci import parse_uci

    for section in parse_uci(text).sections:
        options_from_uci("/etc/config/dropbear", section, openwrt_defaults(text))
    options_from_shell_file("/etc/default/dropbear", text)
    for entry in inittab_entries(text):
        apply_args(DropbearOptions(), command_words(entry.command), Origin("/etc/inittab", entry.line))
    apply_args(DropbearOptions(), text.split(), Origin("x"))
    libssh_host_keys("/etc/ssh/libssh_server_config", text)
    gitea_host_keys("/srv/custom/conf/app.ini", text)


@pytest.fixture(scope="module")
def pem_seed() -> bytes:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "seed")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))  # fmt: skip
    return b"SHA256(vm.mf)= " + b"ab" * 64 + b"\n" + cert.public_bytes(serialization.Encoding.PEM) * 2


def test_signature_file_and_pem_bundle_parsers(pem_seed):
    from certify.bundle.signature import parse_pem_certificates, parse_signature_file

    @FUZZ
    @given(mutated([pem_seed]))
    def run(data):
        for parse in (parse_signature_file, parse_pem_certificates):
            try:
                parse(data)
            except ParseError:
                pass

    run()


@FUZZ
@given(st.text(max_size=40))
def test_size_parser_only_raises_value_error(text):
    from certify.units import parse_size

    try:
        assert 0 < parse_size(text) < 2**63
    except ValueError:
        pass


def test_size_parser_bounds():
    import pytest

    from certify.units import parse_size

    assert parse_size("1.5T") == 3 << 39 and parse_size("0.5K") == 512 and parse_size("8191P") == 8191 << 50
    assert parse_size(str(2**63 - 1)) == 2**63 - 1
    for text, reason in ((str(2**63), "too large"), ("8192P", "too large"), ("1" + "0" * 400 + ".5", "too long"), ("1e5", "not a size")):
        with pytest.raises(ValueError, match=reason):
            parse_size(text)


# ---- stored facts: the decoder takes any JSON and only ever raises FactsFormatError ----

_TAGS = st.sampled_from(["dict", "tuple", "set", "frozenset", "bytes", "float", "enum", "dc", "date", "datetime", "time",
                         "timedelta", "pickle", ""])  # fmt: skip
_TYPE_NAMES = st.sampled_from(["certify.model:Severity", "certify.model:Location", "certify.bundle.ingest:BundleFacts",
                               "certify.guest.reader:Stat", "os:system", "builtins:eval", "certify.model:Facts", ""])  # fmt: skip
_KEYS = st.one_of(st.sampled_from(["$", "items", "map", "type", "fields", "name", "b64", "iso", "text", "d", "s", "us",
                                   "layer", "path", "HIGH"]), st.text(max_size=8))  # fmt: skip
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                     st.text(max_size=20), _TAGS, _TYPE_NAMES)  # fmt: skip


def _json_values() -> st.SearchStrategy:
    def tagged(children):
        return st.builds(lambda tag, rest: {"$": tag, **rest}, _TAGS, st.dictionaries(_KEYS, children, max_size=4))

    return st.recursive(_SCALARS, lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(_KEYS, children, max_size=4), tagged(children)), max_leaves=30)


@FUZZ
@given(_json_values())
def test_facts_decoder_raises_only_format_errors(doc):
    from certify.factsjson import FactsFormatError, decode

    try:
        decode(doc, _FACT_TYPES)
    except FactsFormatError:
        pass


@FUZZ
@given(st.data())
def test_stored_facts_documents_raise_only_format_errors(data):
    """A real document with one part replaced by arbitrary JSON."""
    from certify.factsjson import FactsFormatError
    from certify.gathered import Gathered

    doc = json.loads(_FACTS_DOC)
    parts = [("facts", "values"), ("facts",), ("artifact",), ("guest",), ("disks",), ("timings",), ("collector_versions",),
             ("format_version",), ("errors",), ()]  # fmt: skip
    where = data.draw(st.sampled_from(parts))
    value = data.draw(_json_values())
    if where:
        target = doc
        for key in where[:-1]:
            target = target[key]
        target[where[-1]] = value
    else:
        doc = value
    try:
        Gathered.from_json(doc, _FACT_TYPES)
    except FactsFormatError:
        pass


def _facts_doc() -> str:
    from certify.gathered import Gathered
    from certify.model import Facts, Layer, Location, Severity

    gathered = Gathered(tool_version="0", artifact_path="a.ova", artifact_kind="ova", artifact_sha256="00" * 32,
                        facts=Facts(values={"x": (Severity.HIGH, Location(layer=Layer.GUEST, path="/p"), b"\x00", {1: {2}})}),
                        guest={"type": "linux"}, disks=[{"file": "d"}], timings={"total": 1.0})  # fmt: skip
    return json.dumps(gathered.to_json(_FACT_TYPES))


def _fact_types():
    from certify.factsjson import FactTypes

    return FactTypes.builtin()


_FACT_TYPES = _fact_types()
_FACTS_DOC = _facts_doc()
