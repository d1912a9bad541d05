"""Decide whether the libguestfs appliance may use KVM or must use TCG.

``/dev/kvm`` can exist and still be unusable: in nested VMs qemu aborts on
it ("failed to set MSR"). A QMP round trip with the vCPU stopped (``-S``)
reaches the point where that happens in a few milliseconds, far cheaper than
a failed appliance launch. The answer is cached per boot, qemu binary and
kernel, so it is paid once.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

FORCE_TCG = "force_tcg"
KVM_DEVICE = "/dev/kvm"
_QMP = b'{"execute":"qmp_capabilities"}\n{"execute":"query-kvm"}\n{"execute":"quit"}\n'
_MACHINES = {"x86_64": ("qemu-system-x86_64", "q35"), "aarch64": ("qemu-system-aarch64", "virt")}


@dataclass(frozen=True)
class Accel:
    backend_settings: list[str] | None  # None: leave libguestfs' own settings alone
    description: str

    @property
    def tcg(self) -> bool:
        return self.backend_settings is not None and FORCE_TCG in self.backend_settings


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "certify" / "accel.json"


def _cache_key(qemu: str) -> str:
    st = os.stat(qemu)
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = ""
    parts = [qemu, str(st.st_mtime_ns), str(st.st_size), os.uname().release, boot_id]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def probe_kvm(qemu: str, machine: str, timeout: float = 30.0) -> tuple[bool, str]:
    """Start qemu on KVM with the vCPU stopped and ask it whether KVM is on."""
    cmd = [qemu, "-accel", "kvm", "-M", machine, "-cpu", "host", "-nodefaults", "-no-user-config",
           "-display", "none", "-m", "64", "-S", "-qmp", "stdio"]  # fmt: skip
    try:
        proc = subprocess.run(cmd, input=_QMP, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"qemu did not answer on KVM ({type(exc).__name__})"
    enabled = b'"enabled": true' in proc.stdout
    if proc.returncode == 0 and enabled:
        return True, "KVM"
    errors = [line for line in proc.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return False, errors[0].strip() if errors else f"qemu exited with status {proc.returncode} on KVM"


def choose() -> Accel:
    if "LIBGUESTFS_BACKEND_SETTINGS" in os.environ:
        return Accel(None, "as set in LIBGUESTFS_BACKEND_SETTINGS")
    if not os.access(KVM_DEVICE, os.R_OK | os.W_OK):
        return Accel(None, "software emulation (no usable /dev/kvm)")
    binary, machine = _MACHINES.get(platform.machine(), (None, None))
    qemu = shutil.which(binary) if binary else None
    if not qemu or not machine:
        return Accel(None, "hypervisor chosen by libguestfs")
    key = _cache_key(qemu)
    path = cache_path()
    try:
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return _accel(cached["kvm"], cached["reason"])
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    usable, reason = probe_kvm(qemu, machine)
    remember(usable, reason, key=key)
    return _accel(usable, reason)


def remember(usable: bool, reason: str, *, key: str | None = None) -> None:
    """Store the answer; a launch that fails on KVM after a good probe calls this too."""
    if key is None:
        binary, _ = _MACHINES.get(platform.machine(), (None, None))
        qemu = shutil.which(binary) if binary else None
        if not qemu:
            return
        key = _cache_key(qemu)
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "kvm": usable, "reason": reason}))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs a re-probe next time


def _accel(usable: bool, reason: str) -> Accel:
    if usable:
        return Accel([], "KVM")
    return Accel([FORCE_TCG], f"software emulation (TCG): KVM unusable: {reason}")
