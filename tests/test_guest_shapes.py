"""Appliance shapes that must work (tests/shapes.py), each a real image scanned once in the session.

Several disks in one appliance, root on LVM, ext4/xfs/btrfs, GPT/MBR/no
partition table, Debian/Ubuntu, RHEL-family, Alpine and OpenWrt layouts:
each is inspected, and its planted findings are reported on the disk that
holds them.
"""

from __future__ import annotations

import pytest

import shapes

pytestmark = pytest.mark.guest

SHAPES = sorted(shapes.shapes())
# Checks that tell shipped binaries from added ones by the package database: an Alpine image has
# no dpkg or rpm database, so they cannot evaluate there and must say so.
PACKAGE_DATABASE_CHECKS = ("suid-sgid-inventory",)


def guest_failures(report: dict) -> set[tuple]:
    return {(f["id"], f["location"].get("path"), f["severity"], f["location"].get("file"))
            for f in report["findings"] if f["status"] == "fail" and f["location"]["layer"] == "guest"}  # fmt: skip


@pytest.mark.parametrize("name", SHAPES)
def test_shape_was_built_as_its_layout_says(appliances, name):
    shape = appliances.shapes[name]
    assert appliances.shape_signatures[name] == shape.disk_signatures


@pytest.mark.parametrize("name", SHAPES)
def test_shape_is_inspected_with_every_disk(guest_scans, appliances, name):
    shape = appliances.shapes[name]
    scan = guest_scans[f"shape:{name}"]
    report = scan.report
    assert report["errors"] == [], scan.stderr
    guest = report["guest"]
    assert (guest["type"], guest["distro"], guest["version"], guest["hostname"]) == (
        "linux", shape.distro, shape.version, shape.hostname or shape.spec.hostname), scan.stderr  # fmt: skip
    assert len(report["disks"]) == len(shape.spec.layout.disks)
    assert f"with {len(shape.spec.layout.disks)} disk(s)" in scan.stderr


@pytest.mark.parametrize("name", SHAPES)
def test_shape_reports_exactly_its_planted_findings_on_the_disk_holding_them(guest_scans, appliances, name):
    shape = appliances.shapes[name]
    report = guest_scans[f"shape:{name}"].report
    assert guest_failures(report) == shape.failing
    assert report["verdict"] == "fail"
    for check_id in {f[0] for f in shape.failing}:
        assert report["check_status"][check_id] == "fail"


@pytest.mark.parametrize("name", SHAPES)
def test_shape_checks_that_cannot_evaluate_say_why(guest_scans, name):
    report = guest_scans[f"shape:{name}"].report
    for check_id, status in report["check_status"].items():
        if status == "not-evaluated":
            reasons = [f["evidence"] for f in report["findings"] if f["id"] == check_id and f["status"] == "not-evaluated"]
            assert reasons and all(reasons), check_id


def test_alpine_without_dpkg_or_rpm_database_is_not_evaluated_where_a_check_needs_one(guest_scans):
    report = guest_scans["shape:alpine-appliance"].report
    needing = [c for c in PACKAGE_DATABASE_CHECKS if c in report["check_status"]]
    if not needing:
        pytest.skip(f"none of {PACKAGE_DATABASE_CHECKS} is installed yet")
    for check_id in needing:
        assert report["check_status"][check_id] == "not-evaluated"
        assert any(f["id"] == check_id and "no package database" in f["evidence"] and "/bin/bbsuid" in f["evidence"]
                   for f in report["findings"])  # fmt: skip


def test_shape_keys_are_named_by_the_fingerprint_of_the_planted_key(guest_scans, appliances):
    """Keys in every format a shape plants (OpenSSH's, dropbear's binary one) are shown by fingerprint, never as material."""
    for name, shape in appliances.shapes.items():
        report = guest_scans[f"shape:{name}"].report
        evidence = {f["location"].get("path"): f["evidence"] for f in report["findings"] if f["id"] == "ssh-host-keys-present"}
        for path, fingerprint in shape.fingerprints.items():
            assert fingerprint in evidence[path], (name, path)

