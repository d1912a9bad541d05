"""Prove the isolation with packets, modelled on cyclonus and the netpol e2e suite.

The expected matrix comes from the model (``expect``); the observed one from
inside the namespaces: a kernel ``connect()`` and a scapy SYN per TCP cell,
UDP datagrams to echo listeners, scapy echo requests. Negative cells are
probed again once. Forged packets (other tenants' addresses, a neighbour's,
an unassigned one, the uplink's, a foreign MAC) must not arrive: sniffers at
the destinations say what did, the anti-spoof counter says they reached the
router. A table with no expected-open or no expected-blocked cell proves
nothing and fails.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from certify.isolation import agent, deploy, expect, render, state
from certify.isolation.expect import ROUTER, UPLINK, Cell, Endpoint
from certify.isolation.model import CONTROL_PORT, Provider, Workload, allocate_address
from certify.isolation.netns import IsolationError
from certify.isolation.ruleset import Ruleset

PROBE_TIMEOUT = 1.5
SPOOF_COPIES = 3
FORGED_MAC = "02:de:ad:be:ef:01"


@dataclass
class Observation:
    kernel: str | None = None  # open | closed | blocked (None: not probed this way)
    scapy: str | None = None

    @property
    def verdict(self) -> bool | None:
        """True reachable, False blocked, None inconclusive (the two probes disagree)."""
        seen = [v for v in (self.kernel, self.scapy) if v is not None]
        if not seen:
            return None
        reach = {v in ("open", "closed") for v in seen}
        return reach.pop() if len(reach) == 1 else None


@dataclass
class SpoofCase:
    case: str
    sender: str  # endpoint name
    src: str
    src_mac: str | None
    dst: str
    dport: int
    sport: int
    expect_delivered: bool
    delivered: bool | None = None

    @property
    def forged(self) -> bool:
        return not self.case.startswith("control")


def _key(c: Cell) -> tuple[str, str, str]:
    return (c.src, c.dst, str(c.service))


@dataclass
class Result:
    cells: list[Cell]
    observed: dict[tuple[str, str, str], Observation]
    spoof: list[SpoofCase] = field(default_factory=list)
    anti_spoof_delta: int | None = None
    anti_spoof_expected: int = 0
    problems: list[str] = field(default_factory=list)  # state checks and completeness
    focus: str | None = None  # only the pairs involving this workload were probed

    def observation(self, c: Cell) -> Observation:
        """What was seen for a cell; an empty observation (inconclusive) when it was not probed."""
        return self.observed.get(_key(c), Observation())

    @property
    def mismatches(self) -> list[Cell]:
        return [c for c in self.cells if self.observation(c).verdict not in (None, c.expected)]

    @property
    def inconclusive(self) -> list[Cell]:
        return [c for c in self.cells if self.observation(c).verdict is None]

    @property
    def spoof_failures(self) -> list[SpoofCase]:
        return [s for s in self.spoof if s.delivered != s.expect_delivered]

    @property
    def ok(self) -> bool:
        return not (self.problems or self.mismatches or self.inconclusive or self.spoof_failures)


# ---------------------------------------------------------------------------- running agents


def _agent(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-m", "certify.isolation.agent", *args]


class _Listeners:
    """One listener process per destination namespace, started together, stopped together."""

    def __init__(self, provider: Provider, cells: list[Cell]) -> None:
        self.procs: dict[str, subprocess.Popen] = {}
        ports: dict[str, dict[str, set[int]]] = {}
        for c in cells:
            if c.dst == ROUTER:
                continue
            # Every destination gets a listener, ports or not: its sniffer is what sees a forged packet arrive.
            svc = ports.setdefault(c.dst, {"tcp": set(), "udp": set()})
            if c.service.protocol != "icmp" and c.service.port != CONTROL_PORT:
                svc[c.service.protocol].add(c.service.port)
        self.provider = provider
        self.ports = ports

    def __enter__(self) -> _Listeners:
        try:
            for name, svc in self.ports.items():
                job = json.dumps({"tcp": sorted(svc["tcp"]), "udp": sorted(svc["udp"])})
                self.procs[name] = subprocess.Popen(_agent(_ns_of(self.provider, name), "listen", job), stdin=subprocess.PIPE,
                                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
            for name, proc in self.procs.items():
                line = proc.stdout.readline() if proc.stdout else ""
                if line.strip() != "ready":
                    err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
                    raise IsolationError(f"listener in {name} did not start: {err.strip().splitlines()[-1:] or 'no answer'}")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    proc.stdin.close()  # type: ignore[union-attr]
                    proc.wait(timeout=3)
                except (OSError, subprocess.TimeoutExpired):
                    proc.kill()
                    proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()

    def marked(self) -> dict[str, list[dict[str, Any]]]:
        out = {}
        for name, proc in self.procs.items():
            proc.stdin.write("report\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            out[name] = json.loads(proc.stdout.readline())["marked"]  # type: ignore[union-attr]
        return out


def _workload(provider: Provider, key: str) -> Workload:
    """The workload an endpoint name (vdc.name) stands for."""
    vdc, _, name = key.partition(".")
    w = provider.workload(vdc, name)
    assert w is not None, key
    return w


def _ns_of(provider: Provider, endpoint: str) -> str:
    return provider.uplink_ns if endpoint == UPLINK else provider.workload_ns(_workload(provider, endpoint))


def _run_agent(ns: str, mode: str, job: dict[str, Any], timeout: float) -> dict[str, Any]:
    done = subprocess.run(_agent(ns, mode), input=json.dumps(job), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise IsolationError(f"{mode} agent in {ns} failed: {(done.stderr.strip().splitlines() or ['exit ' + str(done.returncode)])[-1]}")
    return json.loads(done.stdout)


def _address(provider: Provider, src: Endpoint, dst: str) -> str:
    if dst == ROUTER:
        return str(expect.router_address_for(provider, src))
    if dst == UPLINK:
        return str(provider.uplink_peer_address)
    return str(_workload(provider, dst).address)


def _port_macs(provider: Provider) -> dict[str, str]:
    """Router port name -> its MAC, in one call."""
    done = subprocess.run(["ip", "-j", "-n", provider.router_ns, "link", "show"], capture_output=True, text=True)
    return {link["ifname"]: link.get("address") for link in json.loads(done.stdout or "[]")}


def _probe(provider: Provider, cells: list[Cell], spoof: list[SpoofCase], parallel: int) -> tuple[dict[tuple[str, str, str], Observation], int]:
    """One agent per source: its probes (negatives retried once), then its forged packets."""
    points = {e.name: e for e in expect.endpoints(provider)}
    by_src: dict[str, list[Cell]] = {}
    for c in cells:
        by_src.setdefault(c.src, []).append(c)
    spoof_by_src: dict[str, list[SpoofCase]] = {}
    for sc in spoof:
        spoof_by_src.setdefault(sc.sender, []).append(sc)

    def run(src: str) -> tuple[dict[tuple[str, str, str], Observation], int]:
        batch = by_src.get(src, [])
        targets = [{"id": i, "dst": _address(provider, points[src], c.dst), "proto": c.service.protocol, "port": c.service.port}
                   for i, c in enumerate(batch)]  # fmt: skip
        job: dict[str, Any] = {"targets": targets, "timeout": PROBE_TIMEOUT, "retries": 1}
        if spoof_by_src.get(src):
            w = points[src].workload
            job["spoof"] = {"packets": [{"src": c.src, "src_mac": c.src_mac, "dst": c.dst, "dport": c.dport, "sport": c.sport}
                                        for c in spoof_by_src[src]],
                            "copies": SPOOF_COPIES, "gateway": str(w.router_address) if w else None,
                            "gateway_mac": port_macs.get(w.port) if w else None}  # fmt: skip
        answer = _run_agent(_ns_of(provider, src), "probe", job, timeout=120)
        out = {}
        for i, c in enumerate(batch):
            out[_key(c)] = Observation(answer["kernel"].get(str(i)), answer["scapy"].get(str(i)))
        return out, int(answer.get("sent", 0))

    observed: dict[tuple[str, str, str], Observation] = {}
    sent = 0
    sources = sorted(set(by_src) | set(spoof_by_src))
    port_macs = _port_macs(provider) if spoof else {}
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for part, n in pool.map(run, sources):
            observed.update(part)
            sent += n
    return observed, sent


# ---------------------------------------------------------------------------- spoofing


def _reach(provider: Provider, source: Endpoint) -> list[tuple[Endpoint, int]]:
    """Where honest TCP from ``source`` arrives, computed from the model like the cells: listened-on ports
    before the closed control port, then by destination name and port."""
    found = []
    for dst in expect.endpoints(provider):
        for service in expect.services_of(provider, dst):
            if service.protocol == "tcp" and dst.name != source.name and expect.reachable(provider, source, dst, service):
                found.append((service.port == CONTROL_PORT, dst.name, service.port, dst))
    return [(f[3], f[2]) for f in sorted(found, key=lambda f: f[:3])]


def _claiming(w: Workload, address: ipaddress.IPv4Address) -> Endpoint:
    """The endpoint an address of w's vDC would be, were its packets honest."""
    return Endpoint(f"{w.vdc}.(unassigned {address})", address, Workload("", w.vdc, address, ""))


def spoof_cases(provider: Provider, cells: list[Cell], focus: str | None = None) -> list[SpoofCase]:
    """For every tenant source, forged packets and one honest control.

    A forged packet goes where honest packets from the source it claims arrive (one claiming the sender's
    own address with a foreign MAC, like the control, where the sender's own address reaches), so the
    anti-spoof rule is all that keeps it from the sniffer there: towards a destination nothing would
    reach, it would prove nothing but the counter. A case with no such destination is not sent. The
    uplink's address opens nothing from a tenant port at all; it goes where the control goes.
    """
    cases: list[SpoofCase] = []
    # A case is told apart by source port, address and destination together: ports are handed out per
    # (source, destination, port), so the control and a forged MAC, or two senders claiming one address, differ.
    sports: dict[tuple[str, str, int], Iterator[int]] = {}

    def sport(src: str, dst: str, dport: int) -> int:
        port = next(sports.setdefault((src, dst, dport), iter(agent.SPOOF_SPORTS)), None)
        if port is None:
            raise IsolationError(f"more than {len(agent.SPOOF_SPORTS)} forged packets from {src} to {dst}:{dport}: "
                                 "too many workloads to tell them apart; verify with --no-spoof")  # fmt: skip
        return port

    workloads = list(provider.workloads)
    taken = [w.address for w in workloads]
    points = {e.name: e for e in expect.endpoints(provider)}
    reaches: dict[str, list[tuple[Endpoint, int]]] = {}

    def reached(source: Endpoint, sender: str) -> tuple[Endpoint, int] | None:
        # Never the sender itself: its own sniffer would not tell the router's work apart.
        if source.name not in reaches:
            reaches[source.name] = _reach(provider, source)
        return next((t for t in reaches[source.name] if t[0].name != sender), None)

    for w in workloads:
        if focus is not None and w.key != focus:
            continue
        forged: list[tuple[str, str, str | None, tuple[Endpoint, int] | None, bool]] = []
        own = reached(points[w.key], w.key)
        forged.append(("control: own address and MAC", str(w.address), None, own, True))
        other = next(((o, t) for o in workloads if o.vdc != w.vdc for t in [reached(points[o.key], w.key)] if t), None)
        if other:
            forged.append((f"another tenant's address ({other[0].key})", str(other[0].address), None, other[1], False))
        neighbour = next(((o, t) for o in workloads if o.vdc == w.vdc and o.key != w.key
                          for t in [reached(points[o.key], w.key)] if t), None)  # fmt: skip
        if neighbour:
            forged.append((f"a neighbour's address ({neighbour[0].key})", str(neighbour[0].address), None, neighbour[1], False))
        free = allocate_address(provider.vdcs[w.vdc], taken)
        if free is not None:
            forged.append(("an unassigned address of its vDC", str(free), None, reached(_claiming(w, free), w.key), False))
        forged.append(("the uplink's address", str(provider.uplink_peer_address), None, own, False))
        forged.append(("its own address with a forged MAC", str(w.address), FORGED_MAC, own, False))
        for case, src, mac, target, delivered in forged:
            if target is not None:
                dst = _address(provider, points[w.key], target[0].name)
                cases.append(SpoofCase(case, w.key, src, mac, dst, target[1], sport(src, dst, target[1]), delivered))
    # From the uplink, a tenant's own vDC address: the intra-vDC allow must never see it.
    for w in workloads:
        if focus is not None and w.key != focus:
            continue
        neighbour = next((o for o in workloads if o.vdc == w.vdc and o.key != w.key), None)
        tcp = next((c for c in cells if c.dst == w.key and c.src == neighbour.key and c.expected and c.service.protocol == "tcp"), None) if neighbour else None
        if neighbour is None or tcp is None:
            continue
        src, dst = str(neighbour.address), str(w.address)
        cases.append(SpoofCase(f"from the uplink, forging {neighbour.key}", UPLINK, src, None, dst, tcp.service.port,
                               sport(src, dst, tcp.service.port), False))  # fmt: skip
        break
    return cases


def _anti_spoof_count(ruleset: Ruleset) -> int:
    chain = ruleset.observed_objects([("chain", render.BASE, "base_pre")]).chains.get((render.BASE, "base_pre"))
    return chain.counters.get(render.ANTI_SPOOF, (0, 0))[0] if chain else 0


# ---------------------------------------------------------------------------- the whole verification


def verify(provider: Provider, focus: str | None = None, parallel: int = 8, spoofing: bool = True) -> Result:
    """Probe the live namespaces against the model; ``focus`` limits it to the cells of one workload."""
    cells = expect.expected_cells(provider, focus)
    result = Result(cells, {}, focus=focus)
    # State before packets (cyclonus checks the cluster first). A missing namespace or port leaves
    # nothing to probe from or to; ruleset drift alone is still probed, so its effect is shown.
    broken_host = deploy.host_problems(provider)
    result.problems += [f"the host differs from the model: {d}" for d in broken_host]
    if broken_host:
        return result
    if not any(c.expected for c in cells) or all(c.expected for c in cells):
        result.problems.append("the model gives no expected-open or no expected-blocked cell: a probe would prove nothing")
    ruleset = Ruleset(provider.router_ns)
    # Probes alone miss a rule that opens a port nobody listens on, or a binding with nothing to spoof from.
    want = state.desired(render.full(provider))
    result.problems += [f"the host differs from the model: {d}" for d in state.problems(want, ruleset.observed())]
    result.spoof = spoof_cases(provider, cells, focus) if spoofing else []
    result.anti_spoof_expected = SPOOF_COPIES * sum(1 for c in result.spoof if c.sender != UPLINK and c.forged)
    with _Listeners(provider, cells) as listeners:
        before = _anti_spoof_count(ruleset)
        result.observed, _ = _probe(provider, cells, result.spoof, parallel)
        if result.spoof:
            time.sleep(0.3)  # let the last forged frames reach the sniffers
            arrived = {(m["sport"], m["src"], m["dst"], m["dport"]) for marks in listeners.marked().values() for m in marks}
            for sc in result.spoof:
                sc.delivered = (sc.sport, sc.src, sc.dst, sc.dport) in arrived
            result.anti_spoof_delta = _anti_spoof_count(ruleset) - before
            if result.anti_spoof_delta < result.anti_spoof_expected:
                result.problems.append(f"the anti-spoof rule counted {result.anti_spoof_delta} packets, "
                                       f"{result.anti_spoof_expected} forged ones were sent")  # fmt: skip
    missing = [c for c in cells if _key(c) not in result.observed]
    if missing:
        result.problems.append(f"{len(missing)} cell(s) were not probed (incomplete matrix)")
    return result


# ---------------------------------------------------------------------------- output


def _mark(ob: Observation) -> str:
    return "?" if ob.verdict is None else "." if ob.verdict else "X"


def truth_table(result: Result) -> str:
    """Rows are sources, columns destinations; each cell one character per probed service:
    '.' reachable, 'X' blocked, '?' inconclusive. A '!' after a cell marks a mismatch with the model."""
    rows = sorted({c.src for c in result.cells}, key=lambda n: (n == UPLINK, n))
    cols = sorted({c.dst for c in result.cells}, key=lambda n: (n in (UPLINK, ROUTER), n == ROUTER, n))
    grid: dict[tuple[str, str], list[Cell]] = {}
    for c in result.cells:
        grid.setdefault((c.src, c.dst), []).append(c)
    text_cells: dict[tuple[str, str], str] = {}
    for key, cs in grid.items():
        cs.sort(key=lambda c: c.service)
        marks = "".join(_mark(result.observation(c)) for c in cs)
        bad = any(result.observation(c).verdict is not c.expected for c in cs)
        text_cells[key] = marks + ("!" if bad else "")
    width = max([len(r) for r in rows] + [7])
    colw = {d: max(len(d), *(len(text_cells.get((r, d), "")) for r in rows)) for d in cols}
    corner = "src\\dst"
    lines = [f"{corner:<{width}}  " + "  ".join(f"{d:<{colw[d]}}" for d in cols)]
    for r in rows:
        lines.append(f"{r:<{width}}  " + "  ".join(f"{(text_cells.get((r, d)) or ('-' if r == d else '')):<{colw[d]}}" for d in cols))
    legend = [f"(only pairs involving {result.focus} were probed; other cells are blank)"] if result.focus else []
    legend += ["", "services per destination (one character each, in this order):"]
    for d in cols:
        services = sorted({c.service for c in result.cells if c.dst == d})
        legend.append(f"  {d}: " + " ".join(str(s) for s in services))
    return "\n".join(lines + legend) + "\n"


def summary(result: Result) -> str:
    lines = [truth_table(result)]
    for c in result.mismatches:
        ob = result.observation(c)
        lines.append(f"MISMATCH {c.src} -> {c.dst} {c.service}: model says {'open' if c.expected else 'blocked'}, "
                     f"observed kernel={ob.kernel} scapy={ob.scapy}")  # fmt: skip
    for c in result.inconclusive:
        ob = result.observation(c)
        lines.append(f"INCONCLUSIVE {c.src} -> {c.dst} {c.service}: kernel={ob.kernel} scapy={ob.scapy}")
    if result.spoof:
        held = sum(1 for s in result.spoof if s.delivered == s.expect_delivered)
        lines.append(f"spoofing: {held}/{len(result.spoof)} cases as expected; anti-spoof counter +{result.anti_spoof_delta} "
                     f"(forged packets sent from tenants: {result.anti_spoof_expected})")  # fmt: skip
        for s in result.spoof_failures:
            lines.append(f"SPOOF {s.sender} {s.case} -> {s.dst}:{s.dport}: {'delivered' if s.delivered else 'not delivered'}, "
                         f"expected {'delivered' if s.expect_delivered else 'dropped'}")  # fmt: skip
    lines.extend(f"PROBLEM {p}" for p in result.problems)
    total = len(result.cells)
    right = total - len(result.mismatches) - len(result.inconclusive)
    lines.append(f"{'VERIFIED' if result.ok else 'NOT VERIFIED'}: {right}/{total} cells match the model")
    return "\n".join(lines) + "\n"


def as_json(result: Result) -> dict[str, Any]:
    def cell(c: Cell) -> dict[str, Any]:
        ob = result.observation(c)
        return {"src": c.src, "dst": c.dst, "service": str(c.service), "expected": "open" if c.expected else "blocked",
                "observed": {None: "inconclusive", True: "open", False: "blocked"}[ob.verdict],
                "kernel": ob.kernel, "scapy": ob.scapy}  # fmt: skip

    return {
        "verified": result.ok,
        "cells": [cell(c) for c in result.cells],
        "mismatches": [cell(c) for c in result.mismatches],
        "inconclusive": [cell(c) for c in result.inconclusive],
        "spoofing": [{"sender": s.sender, "case": s.case, "src": s.src, "src_mac": s.src_mac, "dst": s.dst, "dport": s.dport,
                      "expected": "delivered" if s.expect_delivered else "dropped",
                      "observed": "delivered" if s.delivered else "dropped"} for s in result.spoof],  # fmt: skip
        "anti_spoof": {"counted": result.anti_spoof_delta, "sent": result.anti_spoof_expected},
        "problems": result.problems,
        "truth_table": truth_table(result),
    }
