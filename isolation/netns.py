"""Network namespaces and veth links: the router, the uplink stand-in, one per workload.

Effectful. Everything created here is named with the provider's prefix and
lives inside namespaces the project owns: the host's own namespace only gets
the ``/run/netns/<prefix>-*`` handles. ``ip -n`` with ``-batch`` and veths
created with both ends in place, because each ``ip netns exec`` or interface
move costs ~18 ms.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import json
import os
import subprocess
from collections.abc import Iterator

from certify.errors import CertifyError, UsageError
from certify.isolation.model import Provider, Workload
from certify.isolation.render import UPLINK_PORT

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000


@functools.cache
def _libc() -> ctypes.CDLL:
    # Looked up on first use: find_library runs helper programs, which a scan must never pay for.
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class IsolationError(CertifyError):
    """The kernel refused or failed an operation: exit 3, nothing admitted."""


@contextlib.contextmanager
def host_lock(prefix: str) -> Iterator[None]:
    """One change at a time per prefix: two batch admissions must not take the same address."""
    import fcntl

    path = f"/run/certify-{prefix}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def require_root() -> None:
    if os.geteuid() != 0:
        raise UsageError("isolation needs root (CAP_NET_ADMIN) to make namespaces and rulesets")


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the calling thread inside a named namespace (Python 3.11 has no os.setns)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY)
    except OSError:
        os.close(own)
        raise IsolationError(f"network namespace {name} does not exist") from None
    try:
        if _libc().setns(target, CLONE_NEWNET) != 0:
            raise IsolationError(f"cannot enter network namespace {name}: {os.strerror(ctypes.get_errno())}")
        yield
    finally:
        _libc().setns(own, CLONE_NEWNET)
        os.close(target)
        os.close(own)


def ip(*args: str, batch: list[str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["ip", *args] + (["-batch", "-"] if batch is not None else [])
    done = subprocess.run(cmd, input="\n".join(batch or []) + "\n" if batch is not None else None,
                          capture_output=True, text=True)  # fmt: skip
    if check and done.returncode != 0:
        raise IsolationError(f"'{' '.join(cmd)}' failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    return done


def exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def project_namespaces(prefix: str) -> list[str]:
    """The namespaces this prefix names: router, uplink and workloads, nothing else."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    ours = {f"{prefix}-rtr", f"{prefix}-uplink"}
    return sorted(n for n in names if n in ours or n.startswith(f"{prefix}-w-"))


def _sysctl(ns: str, key: str, value: str) -> None:
    # /proc/sys/net is per namespace for the thread that opens it.
    with entered(ns), open("/proc/sys/" + key.replace(".", "/"), "w") as f:
        f.write(value)


def ensure_router(provider: Provider) -> bool:
    """The router and uplink namespaces, linked; True when they had to be made.

    A new router does not forward until ``enable_forwarding``: the caller turns
    it on once the ruleset is in place and read back. What this call made is
    removed again if a later step of it fails.
    """
    rtr, up = provider.router_ns, provider.uplink_ns
    made: list[str] = []
    try:
        if not exists(rtr):
            ip("netns", "add", rtr)
            made.append(rtr)
            ip("-n", rtr, "link", "set", "lo", "up")
        if not exists(up):
            ip("netns", "add", up)
            made.append(up)
            _quiet_ratelimit(up)
        if ip("-n", rtr, "link", "show", UPLINK_PORT, check=False).returncode != 0:
            ip("-n", rtr, "link", "add", UPLINK_PORT, "type", "veth", "peer", "name", "eth0", "netns", up)
            plen = provider.uplink.prefixlen
            ip("-n", up, batch=[f"addr add {provider.uplink_peer_address}/{plen} dev eth0", "link set eth0 up", "link set lo up",
                                f"route add default via {provider.uplink_router_address}"])  # fmt: skip
            ip("-n", rtr, batch=[f"addr add {provider.uplink_router_address}/{plen} dev {UPLINK_PORT}",
                                 f"link set {UPLINK_PORT} up", f"route replace default via {provider.uplink_peer_address}"])  # fmt: skip
            made.append(UPLINK_PORT)
    except BaseException:
        for name in made:
            if name != UPLINK_PORT:
                remove_namespace(name)
        raise
    return bool(made)


def enable_forwarding(provider: Provider) -> None:
    # New namespaces start with forwarding off, which is what we want until the tables hold.
    _sysctl(provider.router_ns, "net.ipv4.ip_forward", "1")


def _quiet_ratelimit(ns: str) -> None:
    # Port-unreachable answers are rate limited per peer (1/s): a verifier would read a closed port as blocked.
    _sysctl(ns, "net.ipv4.icmp_ratelimit", "0")


def forwarding(provider: Provider) -> bool:
    with entered(provider.router_ns), open("/proc/sys/net/ipv4/ip_forward") as f:
        return f.read().strip() == "1"


def _blackholes(provider: Provider) -> set[str]:
    done = ip("-j", "-n", provider.router_ns, "route", "show", "type", "blackhole")
    return {r.get("dst") for r in json.loads(done.stdout or "[]")}


def missing_blackholes(provider: Provider) -> list[str]:
    return sorted({str(v.cidr) for v in provider.vdcs.values()} - _blackholes(provider))


def sync_blackholes(provider: Provider) -> None:
    """A blackhole route per vDC network in the router: an unassigned tenant address is nowhere,
    rather than behind the default route to the uplink (where it would leak, or loop)."""
    have = _blackholes(provider)
    want = {str(v.cidr) for v in provider.vdcs.values()}
    batch = [f"route replace blackhole {net}" for net in sorted(want - have)]
    batch += [f"route del blackhole {net}" for net in sorted(have - want) if net]
    if batch:
        ip("-n", provider.router_ns, batch=batch)


def add_workload(provider: Provider, w: Workload) -> None:
    """A namespace standing in for the VM's NIC, and its port on the router."""
    ns = provider.workload_ns(w)
    if exists(ns):
        raise IsolationError(f"network namespace {ns} already exists")
    ip("netns", "add", ns)
    try:
        ip("-n", provider.router_ns, "link", "add", w.port, "type", "veth", "peer", "name", "eth0", "netns", ns, "address", w.mac)
        ip("-n", ns, batch=[f"addr add {w.address}/30 dev eth0", "link set eth0 up", "link set lo up",
                            f"route add default via {w.router_address}"])  # fmt: skip
        ip("-n", provider.router_ns, batch=[f"addr add {w.router_address}/30 dev {w.port}", f"link set {w.port} up"])
        _quiet_ratelimit(ns)
    except IsolationError:
        remove_namespace(ns)
        raise


def remove_namespace(name: str) -> None:
    # The veth pair goes with its namespace.
    if exists(name):
        ip("netns", "del", name)


def forget_flows(router_ns: str, address: str | None = None) -> None:
    """Drop conntrack state in the router, for one address or all of it.

    Tenant allow rules are stateful: without this, a flow a removed rule or an
    evicted workload had opened would live on as 'established'. TCP is picked
    up again mid-stream, so flows the model still allows carry on.
    """
    base = ["ip", "netns", "exec", router_ns, "conntrack"]
    commands = [base + ["-F"]] if address is None else [base + ["-D", "-s", address], base + ["-D", "-d", address]]
    for cmd in commands:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True)
        except FileNotFoundError:
            raise IsolationError("the conntrack tool is missing (apt install conntrack)") from None
        # 'conntrack -D' exits 1 when nothing matched; anything else is a real failure.
        if done.returncode not in (0, 1) or "conntrack: not found" in done.stderr or "No such file" in done.stderr:
            raise IsolationError(f"'{' '.join(cmd)}' failed: {done.stderr.strip() or done.returncode}")


def teardown(prefix: str) -> list[str]:
    """Delete every namespace with the prefix (workloads first, the router last); the tables go with the router."""
    names = project_namespaces(prefix)
    router = f"{prefix}-rtr"
    for name in sorted(names, key=lambda n: n == router):
        remove_namespace(name)
    return names
