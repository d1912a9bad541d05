"""Stored facts: the codec, the Gathered document, staleness, and gather/judge without a launch."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import tarfile
import io
import textwrap
from dataclasses import replace

import plants
import pytest
from memguest import guest_facts, memory_reader

from certify import sample
from certify.errors import UsageError
from certify.factsjson import FactsEncodeError, FactsFormatError, FactTypes, decode, encode
from certify.gathered import FORMAT_VERSION, Gathered, stale_facts
from certify.model import Facts, GuestCollector, Layer, Location, Severity, Status, Verdict
from certify.pipeline import ScanOptions, gather, judge, scan
from certify.plugins.manager import get_plugin_manager, load_registry
from certify.policy.profile import load_profile


@pytest.fixture(scope="module")
def registry():
    return load_registry(get_plugin_manager(autoload=False))


@pytest.fixture(scope="module")
def types(registry):
    return FactTypes.for_collectors(registry.collectors.values())


def roundtrip(value, types):
    """Through JSON text, as a stored document travels."""
    return decode(json.loads(json.dumps(encode(value, types))), types)


def assert_exact(value, back, types):
    """Equal, of the same types all the way down (== alone takes 1 == True == 1.0 and (1,) != [1] only at the top)."""
    assert back == value
    assert encode(back, types) == encode(value, types)


# ---- the codec: every kind of value ----


class Colour(enum.Enum):
    RED = "red"
    ALSO_RED = "red"  # an alias: the member is named, so the alias comes back as the member it is


class Level(enum.IntEnum):
    LOW = 1


@dataclasses.dataclass
class Mutable:
    items: list
    note: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Frozen:
    key: tuple
    when: datetime.datetime
    derived: int = dataclasses.field(init=False, default=0)

    def __post_init__(self):
        object.__setattr__(self, "derived", len(self.key))


@dataclasses.dataclass(frozen=True)
class Checked:
    value: int

    def __post_init__(self):
        if self.value < 0:
            raise ValueError("negative")


@pytest.fixture(scope="module")
def local_types():
    return FactTypes([Colour, Level, Mutable, Frozen, Checked, Severity, Layer, Location])


@pytest.mark.parametrize("value", [
    None, True, False, 0, -(2**70), 1.5, -0.0, "", "é\udcff\x00", [],
    (), (1,), ((1, 2), [3, (4,)]), [1, True, 1.0],
    set(), {1, "1", (1, 2)}, frozenset({b"x", None}),
    {}, {"a": 1, "$": "not a tag"}, {1: "one", True: "?", (1, 2): [None], None: {}, 2.5: b""},
    {"k": None},
    b"", b"\x00\xff" * 10,
    datetime.date(2024, 2, 29), datetime.datetime(2024, 1, 2, 3, 4, 5, 6), datetime.time(23, 59, 59, 999999),
    datetime.datetime(2024, 1, 2, 3, 4, tzinfo=datetime.timezone(datetime.timedelta(hours=-5, minutes=-30))),
    datetime.timedelta(days=-3, seconds=5, microseconds=7),
])  # fmt: skip
def test_plain_values_come_back_exactly(value, local_types):
    assert_exact(value, roundtrip(value, local_types), local_types)


def test_non_finite_floats_come_back(local_types):
    back = roundtrip([float("inf"), float("-inf"), float("nan")], local_types)
    assert back[:2] == [float("inf"), float("-inf")] and back[2] != back[2]


def test_tuples_lists_and_none_versus_missing_stay_apart(local_types):
    value = {"list": [1, [2]], "tuple": (1, (2,)), "none": None}
    back = roundtrip(value, local_types)
    assert type(back["list"]) is list and type(back["list"][1]) is list
    assert type(back["tuple"]) is tuple and type(back["tuple"][1]) is tuple
    assert "none" in back and back["none"] is None and "missing" not in back
    assert list(back) == ["list", "tuple", "none"]  # insertion order kept


def test_enums_and_dataclasses_frozen_or_not(local_types):
    value = [Colour.RED, Colour.ALSO_RED, Level.LOW, Severity.HIGH, Mutable([Frozen(key=(1, 2), when=datetime.datetime(2020, 1, 1))]),
             Location(layer=Layer.GUEST, path="/etc/x", line=3), Mutable([], note=None)]  # fmt: skip
    back = roundtrip(value, local_types)
    assert_exact(value, back, local_types)
    assert back[0] is Colour.RED and back[1] is Colour.RED and back[2] is Level.LOW and type(back[2]) is Level
    frozen = back[4].items[0]
    assert type(frozen) is Frozen and frozen.derived == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        frozen.key = ()


def test_stored_state_comes_back_without_running_init(local_types):
    """A dataclass's checks or derived fields apply when it is made, not when a stored one is read back."""
    doc = encode(Checked(1), local_types)
    doc["fields"]["value"] = -1
    assert decode(doc, local_types).value == -1
    frozen = encode(Frozen(key=(1,), when=datetime.datetime(2020, 1, 1)), local_types)
    frozen["fields"]["derived"] = 7
    assert decode(frozen, local_types).derived == 7


def test_values_the_format_cannot_carry_are_refused_when_written(local_types):
    class NotAFact:
        pass

    @dataclasses.dataclass
    class Unregistered:
        x: int

    for value, message in [(NotAFact(), "cannot be stored"), (Unregistered(1), "not a registered fact type"),
                           (Verdict.PASS, "not a registered fact type"),
                           (bytearray(b"x"), "cannot be stored"), ({"a": [1, {2: object()}]}, "value['a'][1][2]")]:  # fmt: skip
        with pytest.raises(FactsEncodeError, match=message.replace("[", r"\[").replace("]", r"\]")):
            encode(value, local_types)
    import zoneinfo

    with pytest.raises(FactsEncodeError, match="fixed offset"):
        encode(datetime.datetime(2020, 1, 1, tzinfo=zoneinfo.ZoneInfo("UTC")), local_types)


@pytest.mark.parametrize("doc, message", [
    ({"$": "dc", "type": "os:system", "fields": {}}, "not a known fact type"),
    ({"$": "dc", "type": "subprocess:Popen", "fields": {"args": "id"}}, "not a known fact type"),
    ({"$": "enum", "type": "builtins:object", "name": "x"}, "not a known fact type"),
    ({"$": "enum", "type": f"{__name__}:Colour", "name": "BLUE"}, "has no member 'BLUE'"),
    ({"$": "enum", "type": f"{__name__}:Mutable", "name": "x"}, "is not an enum"),
    ({"$": "dc", "type": f"{__name__}:Colour", "fields": {}}, "is not a dataclass"),
    ({"$": "dc", "type": f"{__name__}:Mutable", "fields": {"items": []}}, "missing: note"),
    ({"$": "dc", "type": f"{__name__}:Mutable", "fields": {"items": [], "note": None, "x": 1}}, "unknown: x"),
    ({"a": 1}, "without its type tag"),
    ({"$": "pickle", "data": ""}, "unknown value tag"),
    ({"$": "tuple", "items": 3}, "not a list"),
    ({"$": "tuple", "items": [], "more": 1}, "takes the keys"),
    ({"$": "set", "items": [[1]]}, "not hashable"),
    ({"$": "dict", "items": [[[1], 2]]}, "not hashable"),
    ({"$": "dict", "items": [[1]]}, "pair"),
    ({"$": "dict", "map": {}, "items": []}, "either a map"),
    ({"$": "bytes", "b64": "!!"}, "not base64"),
    ({"$": "date", "iso": "yesterday"}, "not an ISO date"),
    ({"$": "timedelta", "d": 10**10, "s": 0, "us": 0}, "out of range"),
    ({"$": "float", "text": "1e999"}, "only nan"),
    (float("nan"), "non-finite"),
])  # fmt: skip
def test_documents_that_name_unknown_types_or_are_malformed_are_refused(doc, message, local_types):
    with pytest.raises(FactsFormatError, match=message):
        decode(doc, local_types)


def test_deep_nesting_is_a_format_error(local_types):
    doc: object = 1
    for _ in range(100_000):
        doc = [doc]
    with pytest.raises(FactsFormatError, match="nested too deeply"):
        decode(doc, local_types)


# ---- the real fact types of every built-in collector ----


@pytest.mark.parametrize("spec", [plants.catalog_dirty, plants.catalog_clean], ids=["dirty", "clean"])
def test_every_builtin_collectors_facts_come_back_exactly(spec, registry, types, tmp_path):
    reader = memory_reader(spec(), tmp_path)
    facts = guest_facts(reader, sorted(registry.collectors))
    assert set(facts.values) == set(registry.collectors)  # each one gathered a value to carry
    for name, value in facts.values.items():
        assert_exact(value, roundtrip(value, types), types)


def test_a_plugins_fact_types_are_registered_from_its_collector(registry):
    module_types = FactTypes.for_collectors([GuestCollector(name="local", collect=test_a_plugins_fact_types_are_registered_from_its_collector)])
    assert Mutable in module_types and Colour in module_types  # defined beside the collector's function
    outside = FactTypes.for_collectors([GuestCollector(name="x", collect=len, fact_types=(Mutable,))])
    assert Mutable in outside and Colour not in outside  # builtins' len: only what fact_types names
    assert Mutable not in FactTypes.for_collectors(registry.collectors.values())


# ---- Gathered: the stored document ----


def _gathered(**changes) -> Gathered:
    base = Gathered(tool_version="0.1", artifact_path="up/\udcffload.ova", artifact_kind="ova", artifact_sha256="ab" * 32,
                    ingest_policy={"strict_ova_order": False, "reject_sha1_manifest": False, "require_trusted_signer": False},
                    facts=Facts(values={"residue": None, "descriptor": (1, b"x")}, not_applicable={"accounts": "windows"},
                                unavailable={"sshd_config": "unreadable"}),
                    collector_versions={"residue": "1", "accounts": "1", "sshd_config": "2"},
                    errors=["e"], notes=["n"], guest={"type": "linux", "mountpoints": {"/": "/dev/sda1"}},
                    disks=[{"file": "d.vmdk", "size": 1}], bundle_root=None, bundle_files=["d.vmdk"],
                    timings={"ingest": 0.1, "collectors": {"residue": 0.2}, "total": 1.0})  # fmt: skip
    return replace(base, **changes)


def test_gathered_round_trips_through_json_text(types):
    gathered = _gathered()
    text = json.dumps(gathered.to_json(types))
    back = Gathered.from_json(json.loads(text), types)
    assert back == gathered and back.stored and not gathered.stored
    assert json.dumps(back.to_json(types)) == text
    assert back.artifact_path == "up/\udcffload.ova"
    doc = json.loads(text)
    assert doc["format"] == "certify-facts" and doc["format_version"] == FORMAT_VERSION
    assert doc["artifact"]["sha256"] == "ab" * 32 and doc["collector_versions"]["sshd_config"] == "2"


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format_version=2), "version 2 is not one this certify reads"),
    (lambda d: d.pop("format"), "not a certify facts document"),
    (lambda d: d.pop("errors"), "missing \\['errors'\\]"),
    (lambda d: d.update(extra=1), "unknown \\['extra'\\]"),
    (lambda d: d.update(errors="e"), "errors: not a list of strings"),
    (lambda d: d["collector_versions"].update(x=2), "collector_versions: not an object of str"),
    (lambda d: d["facts"]["values"].update(x={"$": "dc", "type": "os:system", "fields": {}}), "facts.values\\['x'\\]: value: type 'os:system'"),
    (lambda d: d.update(guest=[]), "guest: not an object"),
    (lambda d: d.update(artifact=None), "artifact: not an object"),
])  # fmt: skip
def test_bad_documents_say_what_is_wrong(change, message, types):
    doc = _gathered().to_json(types)
    change(doc)
    with pytest.raises(FactsFormatError, match=message):
        Gathered.from_json(doc, types)
    with pytest.raises(FactsFormatError, match="not a certify facts document"):
        Gathered.from_json([], types)


# ---- staleness ----


def _collector(name: str, version: str = "1") -> GuestCollector:
    return GuestCollector(name=name, collect=lambda reader: None, version=version)


def test_stale_facts_are_those_of_a_changed_new_or_vanished_collector():
    gathered = _gathered(collector_versions={"residue": "1", "accounts": "1", "gone": "3"})
    installed = {"residue": _collector("residue"), "accounts": _collector("accounts", "2"), "new": _collector("new", "1")}
    assert stale_facts(gathered, installed) == {
        "accounts": "facts gathered by collector accounts version 1; installed version 2: scan again",
        "gone": "facts gathered by collector gone version 3, which is no longer installed",
        "new": "no facts of collector new (version 1) were gathered for this upload: scan again",
    }


def _no_disk_vmx(tmp_path):
    """A VMX whose only disk is a host path: descriptor findings, guest facts unavailable, no launch."""
    (tmp_path / "vm").mkdir()
    vmx = tmp_path / "vm" / "appliance.vmx"
    vmx.write_text(textwrap.dedent("""\
        config.version = "8"
        virtualHW.version = "19"
        scsi0:0.present = "TRUE"
        scsi0:0.fileName = "/etc/shadow"
        RemoteDisplay.vnc.enabled = "TRUE"
    """))
    return vmx


def _with_collector(registry, name, version):
    collectors = dict(registry.collectors)
    collectors[name] = replace(collectors[name], version=version)
    return replace(registry, collectors=collectors)


def test_judging_stale_facts_never_passes_the_checks_that_read_them(registry, types, tmp_path):
    reader = memory_reader(plants.catalog_clean(), tmp_path)
    gathered = _gathered(facts=guest_facts(reader, sorted(registry.collectors)),
                         collector_versions={name: "1" for name in registry.collectors}, errors=[])  # fmt: skip
    stored = Gathered.from_json(json.loads(json.dumps(gathered.to_json(types))), types)
    fresh = judge(stored, ScanOptions(), registry)
    bumped = judge(stored, ScanOptions(), _with_collector(registry, "sshd_config", "2"))
    readers = {c.id for c in registry.checks.values() if "sshd_config" in c.facts}
    assert readers
    for check_id, status in fresh.check_status.items():
        if check_id in readers:
            assert bumped.check_status[check_id] is Status.NOT_EVALUATED
            evidence = [f.evidence for f in bumped.findings if f.check_id == check_id]
            assert any("facts gathered by collector sshd_config version 1; installed version 2: scan again" in e for e in evidence)
        else:
            assert bumped.check_status[check_id] is status  # only that collector's facts went stale
    assert bumped.reevaluated and bumped.timings["reevaluated"] is True

    without = replace(registry, collectors={k: v for k, v in registry.collectors.items() if k != "residue"})
    gone = judge(stored, ScanOptions(), without)
    for check in registry.checks.values():
        if "residue" in check.facts:
            assert gone.check_status[check.id] is Status.NOT_EVALUATED
            assert any("which is no longer installed" in f.evidence for f in gone.findings if f.check_id == check.id)


def test_a_fact_no_scan_gathered_is_not_evaluated_under_a_profile_that_reads_it(registry, tmp_path):
    """Facts gathered for a narrow profile: a wider one finds the missing facts unavailable, never a pass."""
    narrow = tmp_path / "narrow.yaml"
    narrow.write_text("extends: default\ninclude: [vmx-*, storage-*]\n")
    vmx = _no_disk_vmx(tmp_path)
    options = ScanOptions(profile=load_profile(str(narrow)))
    gathered = gather(str(vmx), options, registry)
    assert gathered.collector_versions == {}
    wide = judge(gathered, ScanOptions(), registry)
    assert wide.check_status["ssh-host-keys-present"] is Status.NOT_EVALUATED
    assert any("no facts of collector ssh_host_keys" in f.evidence for f in wide.findings if f.check_id == "ssh-host-keys-present")
    every = gather(str(vmx), replace(options, every_fact=True), registry)
    assert set(every.collector_versions) == {n for c in registry.checks.values() for n in c.facts if n in registry.collectors}


# ---- scan = judge(gather), and judging stored facts, on uploads that launch nothing ----


def _ova(path, members):
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _bad_disk_vmx(tmp_path):
    import subprocess

    (tmp_path / "bad").mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(tmp_path / "bad" / "disk.vmdk"), "4M"], check=True)
    vmx = tmp_path / "bad" / "appliance.vmx"
    vmx.write_text('virtualHW.version = "19"\nscsi0:0.fileName = "disk.vmdk"\nide1:0.deviceType = "cdrom-image"\nide1:0.fileName = "tools.iso"\n')
    return vmx


def comparable(report) -> dict:
    return {
        "verdict": report.verdict,
        "findings": sorted((f.check_id, f.fingerprint, f.status, f.severity, f.evidence, f.code) for f in report.findings),
        "status": report.check_status,
        "errors": report.errors,
        "notes": report.notes,
        "rejection": report.rejection,
        "identity": (report.artifact_kind, report.artifact_sha256),
    }


@pytest.mark.parametrize("upload", ["no-disk-vmx", "bad-disk-vmx", "hostile-ova"])
@pytest.mark.parametrize("profile", ["default", "aws-marketplace"])
def test_stored_facts_judge_as_the_scan_did(upload, profile, registry, types, tmp_path):
    if upload == "no-disk-vmx":
        path = _no_disk_vmx(tmp_path)
    elif upload == "bad-disk-vmx":
        path = _bad_disk_vmx(tmp_path)
    else:
        path = _ova(tmp_path / "evil.ova", [("../../etc/passwd", b"x")])
    options = ScanOptions(profile=load_profile(profile), today=datetime.date(2026, 1, 1))
    report = scan(str(path), options, registry)
    gathered = gather(str(path), options, registry)
    stored = Gathered.from_json(json.loads(json.dumps(gathered.to_json(types))), types)
    assert stored == gathered
    again = judge(stored, options, registry)
    assert comparable(again) == comparable(report)
    assert again.reevaluated and not report.reevaluated
    if upload == "hostile-ova":
        assert report.verdict is Verdict.REJECTED and report.rejection
    else:
        assert set(again.timings) == {"reevaluated", "gathered", "checks", "total"} and "ingest" in again.timings["gathered"]
        assert {"ingest", "checks", "total"} <= set(report.timings) and "reevaluated" not in report.timings


def test_facts_gathered_under_other_ingest_switches_are_refused(registry, types, tmp_path):
    ovf = sample.ovf_descriptor("vm", "vm-disk1.vmdk", None, 4096).encode()
    ova = _ova(tmp_path / "late.ova", [("vm-disk1.vmdk", b"\0" * 4096), ("vm.ovf", ovf)])
    strict = tmp_path / "strict.yaml"
    strict.write_text("extends: default\nstrict_ova_order: true\n")
    rejected = gather(str(ova), ScanOptions(profile=load_profile(str(strict))), registry)
    assert rejected.rejection and "first member" in rejected.rejection
    assert judge(rejected, ScanOptions(profile=load_profile(str(strict))), registry).verdict is Verdict.REJECTED
    with pytest.raises(UsageError, match="profile default ingests with strict_ova_order off, unlike the scan that gathered"):
        judge(rejected, ScanOptions(), registry)


def test_ingest_facts_of_another_ingest_version_are_stale(registry, types, tmp_path):
    vmx = _no_disk_vmx(tmp_path)
    gathered = gather(str(vmx), ScanOptions(), registry)
    doc = gathered.to_json(types)
    assert doc["ingest_version"] == "1"
    doc["ingest_version"] = "0"
    older = judge(Gathered.from_json(doc, types), ScanOptions(), registry)
    fresh = judge(gathered, ScanOptions(), registry)
    for check in registry.checks.values():
        if {"descriptor", "bundle"} & set(check.facts):
            assert older.check_status[check.id] is Status.NOT_EVALUATED, check.id
            assert any("facts gathered by ingest version 0; this certify's is 1: scan again" in f.evidence
                       for f in older.findings if f.check_id == check.id)  # fmt: skip
        else:
            assert older.check_status[check.id] is fresh.check_status[check.id], check.id
    assert older.verdict is Verdict.FAIL
