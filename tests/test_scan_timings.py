"""The report's timings split the guest stage: appliance open, then each collector (no appliance launched)."""

from __future__ import annotations

from certify.guest import accel
from certify.guest import reader as guest_reader
from certify.pipeline import ScanOptions, scan
from certify.plugins.manager import load_registry
from certify.policy.profile import load_profile
from certify.sample import base_system
from tests.memguest import MemoryGuestFS


class InspectableMemoryGuestFS(MemoryGuestFS):
    """The in-memory guest plus the session calls open_guest makes."""

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


def test_every_guest_collector_is_timed_and_the_stage_keys_stay(monkeypatch, tmp_path):
    monkeypatch.setattr(accel, "choose", lambda: accel.Accel(None, "test"))
    monkeypatch.setattr(guest_reader, "_launch", lambda disks, workdir, settings: InspectableMemoryGuestFS(base_system()))
    disk = tmp_path / "appliance.img"
    disk.write_bytes(b"\0" * 1024 * 1024)
    report = scan(str(disk), ScanOptions(profile=load_profile("isv-selftest"), workdir_parent=str(tmp_path)))
    timings = report.timings
    assert set(timings) >= {"ingest", "guest", "guest_open", "checks", "total", "collectors"}
    assert timings["collectors"] and all(isinstance(v, float) and v >= 0 for v in timings["collectors"].values())
    registry = load_registry()
    assert set(timings["collectors"]) == {f for c in registry.checks.values() for f in c.facts} & set(registry.collectors)
    assert timings["guest_open"] <= timings["guest"]
    assert 0 <= timings["inventory_walk"] <= sum(timings["collectors"].values())  # the one walk, reported on its own
