"""The report's timings split the guest stage: appliance open, then each collector (no appliance launched);
``--timings`` shows them at the end of the text report."""

from __future__ import annotations

from certify.guest import accel
from certify.guest import reader as guest_reader
from certify.pipeline import ScanOptions, scan
from certify.plugins.manager import load_registry
from certify.policy.profile import load_profile
from certify.sample import base_system
from tests.memguest import MemoryGuestFS


class InspectableMemoryGuestFS(MemoryGuestFS):
    """The in-memory guest plus the session calls open_guest makes: no block devices, so inspect_os decides."""

    def list_devices(self):
        raise RuntimeError("list_devices: an in-memory guest has no block devices")

    def inspect_os(self):
        return ["/dev/sda1"]

    def inspect_get_mountpoints(self, root):
        return {"/": "/dev/sda1"}

    def mount_ro(self, device, mountpoint):
        pass

    def inspect_get_type(self, root):
        return "linux"

    def inspect_get_distro(self, root):
        return "debian"

    def inspect_get_product_name(self, root):
        return "12"

    def inspect_get_major_version(self, root):
        return 12

    def inspect_get_minor_version(self, root):
        return 0

    def inspect_get_arch(self, root):
        return "x86_64"

    def inspect_get_hostname(self, root):
        return "appliance"

    def shutdown(self):
        pass

    def close(self):
        pass


def memory_scan(monkeypatch, tmp_path):
    """A full scan of a disk image whose guest is the in-memory one: every stage runs, no appliance."""
    monkeypatch.setattr(accel, "choose", lambda: accel.Accel(None, "test"))
    monkeypatch.setattr(guest_reader, "_launch", lambda disks, workdir, settings: InspectableMemoryGuestFS(base_system()))
    disk = tmp_path / "appliance.img"
    disk.write_bytes(b"\0" * 1024 * 1024)
    return scan(str(disk), ScanOptions(profile=load_profile("isv-selftest"), workdir_parent=str(tmp_path)))


def test_every_guest_collector_is_timed_and_the_stage_keys_stay(monkeypatch, tmp_path):
    report = memory_scan(monkeypatch, tmp_path)
    timings = report.timings
    assert set(timings) >= {"ingest", "guest", "guest_open", "checks", "total", "collectors"}
    assert timings["collectors"] and all(isinstance(v, float) and v >= 0 for v in timings["collectors"].values())
    registry = load_registry()
    assert set(timings["collectors"]) == {f for c in registry.checks.values() for f in c.facts} & set(registry.collectors)
    assert timings["guest_open"] <= timings["guest"]
    assert 0 <= timings["inventory_walk"] <= sum(timings["collectors"].values())  # the one walk, reported on its own
    # how each part was done, and why the cheaper way was not (the in-memory guest has neither blkid nor find)
    assert timings["methods"] == {
        "inspection": "inspect_os", "inspection_fallback": "list_devices: an in-memory guest has no block devices",
        "inventory": "walk", "inventory_fallback": "debug sh: MemoryGuestFS does not implement debug",
    }  # fmt: skip


def test_the_text_report_says_where_the_time_went_when_asked(monkeypatch, tmp_path):
    from reports.text import render

    report = memory_scan(monkeypatch, tmp_path)
    assert "TIMINGS" not in render(report)
    text = render(report, timings=True)
    section = text[text.index("TIMINGS"):].splitlines()
    labels = [line.split()[0] for line in section[1:]]
    assert labels[:2] == ["ingest", "guest"] and labels[-2:] == ["checks", "total"]
    assert "launch," in labels and "inventory" in labels and "collectors" in labels
    assert "      inspection by inspect_os: list_devices: an in-memory guest has no block devices" in section
    assert "      inventory by walk: debug sh: MemoryGuestFS does not implement debug" in section
    slowest = max(report.timings["collectors"].items(), key=lambda item: item[1])[0]
    assert any(line.split()[0] == slowest for line in section)  # the slowest collector, by name
    assert section[-1].split()[1] == f"{report.timings['total']:.2f}"


def test_timings_of_a_report_judged_from_stored_facts_show_both_judging_and_gathering():
    from reports.text import timing_lines

    lines = timing_lines({"reevaluated": True, "checks": 0.01, "total": 0.02,
                          "gathered": {"ingest": 1.0, "guest": 9.0, "guest_open": 6.0, "collectors": {"accounts": 2.0},
                                       "total": 10.0}})
    assert lines[0].startswith("  judged from stored facts in 0.02 s (checks 0.01 s)")
    assert any("guest" in line and "9.00 s" in line and "90%" in line for line in lines)
    assert any("accounts" in line and "2.00 s" in line for line in lines)
    assert timing_lines({}) == ["  no timings recorded"]


def test_scan_and_judge_take_timings_and_other_formats_are_unchanged(tmp_path):
    from conftest import run_certify

    vmx = tmp_path / "a.vmx"
    vmx.write_text('config.version = "8"\nRemoteDisplay.vnc.enabled = "TRUE"\n')
    facts = tmp_path / "facts.json"
    scanned = run_certify("scan", str(vmx), "--timings", "-q", "--save-facts", str(facts))
    assert scanned.returncode == 1 and "\nTIMINGS\n  ingest " in scanned.stdout and "  total " in scanned.stdout
    judged = run_certify("judge", str(facts), "--timings", "-q")
    assert judged.returncode == 1 and "judged from stored facts in" in judged.stdout
    plain = run_certify("scan", str(vmx), "-q")
    assert "TIMINGS" not in plain.stdout
    as_json = run_certify("scan", str(vmx), "--timings", "-q", "--format", "json")
    assert as_json.returncode == 1 and "TIMINGS" not in as_json.stdout and '"timings"' in as_json.stdout
