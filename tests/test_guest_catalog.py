"""The guest check catalog over the session's catalog images: exact findings per check.

The same expectations (tests/plants) are asserted twice: against an
in-memory guest (fast, no launch) and against the real images through
libguestfs (one shared launch per image).
"""

from __future__ import annotations

import pytest
from memguest import scan_spec

import plants

ALL_IDS = sorted({c for t in plants.topics() for c in t.CHECKS})

@pytest.fixture(scope="module")
def memory_scans(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("memscan")
    return {
        "dirty": scan_spec(plants.catalog_dirty(), workdir, ALL_IDS),
        "clean": scan_spec(plants.catalog_clean(), workdir, ALL_IDS),
    }

def failing(scan: dict, check_id: str) -> set[tuple]:
    return {(i, path, sev) for (i, path, sev, status) in scan["findings"] if i == check_id and status == "fail"}

@pytest.mark.parametrize("check_id", ALL_IDS)
def test_memory_dirty_image_has_exactly_the_planted_findings(memory_scans, check_id):
    expected = plants.expected_dirty()[check_id]
    assert failing(memory_scans["dirty"], check_id) == expected
    assert memory_scans["dirty"]["status"][check_id] == ("fail" if expected else "pass")

@pytest.mark.parametrize("check_id", ALL_IDS)
def test_memory_clean_image_passes(memory_scans, check_id):
    assert memory_scans["clean"]["status"][check_id] == "pass", memory_scans["clean"]["evidence"]


# --- the same expectations on real images, built in the session's one launch and scanned with isv-selftest ---


def report_failing(report: dict, check_id: str) -> set[tuple]:
    return {(f["id"], f["location"].get("path"), f["severity"]) for f in report["findings"]
            if f["id"] == check_id and f["status"] == "fail"}  # fmt: skip


@pytest.mark.guest
@pytest.mark.parametrize("check_id", ALL_IDS)
def test_real_dirty_image_has_exactly_the_planted_findings(guest_scans, check_id):
    report = guest_scans["catalog-dirty"].report
    expected = plants.expected_dirty()[check_id]
    assert report["profile"] == "isv-selftest" and report["errors"] == []
    assert report_failing(report, check_id) == expected
    assert report["check_status"][check_id] == ("fail" if expected else "pass")


@pytest.mark.guest
@pytest.mark.parametrize("check_id", ALL_IDS)
def test_real_clean_image_passes(guest_scans, check_id):
    report = guest_scans["catalog-clean"].report
    assert report["check_status"][check_id] == "pass", [f for f in report["findings"] if f["id"] == check_id]
