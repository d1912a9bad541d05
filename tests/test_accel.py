"""KVM detection: an unusable /dev/kvm is found by a cheap probe, once, and remembered."""

from __future__ import annotations

import os
import platform
import stat

import pytest

from certify.guest import accel

QEMU = {"x86_64": "qemu-system-x86_64", "aarch64": "qemu-system-aarch64"}[platform.machine()]


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    """A fake qemu on PATH that logs each call, a fake /dev/kvm, a private cache."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kvm = tmp_path / "kvm"
    kvm.write_text("")
    monkeypatch.setattr(accel, "KVM_DEVICE", str(kvm))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LIBGUESTFS_BACKEND_SETTINGS", raising=False)
    log = tmp_path / "calls"

    def install(script_body: str):
        qemu = bin_dir / QEMU
        qemu.write_text(f"#!/bin/sh\necho called >> {log}\n{script_body}\n")
        qemu.chmod(qemu.stat().st_mode | stat.S_IEXEC)

    def calls() -> int:
        return len(log.read_text().splitlines()) if log.exists() else 0

    return install, calls


BROKEN = """cat >/dev/null
echo '{"QMP": {}}'
echo 'qemu-system: error: failed to set MSR 0x10a to 0x69' >&2
exit 134"""
WORKING = """cat >/dev/null
echo '{"QMP": {}}'
echo '{"return": {}}'
echo '{"return": {"enabled": true, "present": true}}'
exit 0"""


def test_unusable_kvm_forces_tcg_and_is_probed_once(fake_env):
    install, calls = fake_env
    install(BROKEN)
    first = accel.choose()
    assert first.backend_settings == ["force_tcg"] and first.tcg
    assert "failed to set MSR" in first.description
    assert accel.choose() == first
    assert calls() == 1  # the second scan trusted the cache


def test_usable_kvm_is_used(fake_env):
    install, calls = fake_env
    install(WORKING)
    assert accel.choose().backend_settings == []
    assert calls() == 1


def test_a_failed_kvm_launch_overrides_a_good_probe(fake_env):
    install, calls = fake_env
    install(WORKING)
    accel.choose()
    accel.remember(False, "appliance launch failed on KVM")
    assert accel.choose().tcg and calls() == 1


def test_user_settings_win(monkeypatch):
    monkeypatch.setenv("LIBGUESTFS_BACKEND_SETTINGS", "force_kvm")
    assert accel.choose().backend_settings is None
