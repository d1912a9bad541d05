"""The connectivity a provider model promises, computed from the model alone.

Never from the rendered rules: a rendering bug must show up as a mismatch, not
be verified by itself.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from certify.isolation.model import CONTROL_PORT, Provider, Service, Workload

UPLINK = "uplink"
ROUTER = "router"
# What the uplink stand-in (the internet) listens on, so egress has open cells to prove.
UPLINK_SERVICES = (Service("tcp", 80), Service("tcp", 443), Service("udp", 53))


@dataclass(frozen=True)
class Endpoint:
    """A probe source or destination: a workload, the uplink peer, or the router."""

    name: str  # workload key (vdc.name), "uplink" or "router"
    address: ipaddress.IPv4Address | None  # None for the router: its address depends on the source's link
    workload: Workload | None = None


def router_address_for(provider: Provider, src: Endpoint) -> ipaddress.IPv4Address:
    """The router's address on the source's own link."""
    return src.workload.router_address if src.workload else provider.uplink_router_address


def endpoints(provider: Provider) -> list[Endpoint]:
    points = [Endpoint(w.key, w.address, w) for w in provider.workloads]
    points.append(Endpoint(UPLINK, provider.uplink_peer_address))
    return points


def services_of(provider: Provider, dst: Endpoint) -> list[Service]:
    """What is probed at a destination: its services, what rules open there, and a closed control port."""
    found: set[Service] = {Service("tcp", CONTROL_PORT), Service("icmp")}
    if dst.name == ROUTER:
        return sorted(found | {Service("tcp", 22)})
    if dst.workload is None:
        return sorted(found | set(UPLINK_SERVICES) | set(provider.policy.blocked_egress))
    w = dst.workload
    found |= set(w.services)
    for rule in provider.vdcs[w.vdc].rules:
        if rule.applies_to(w.name):
            found |= set(rule.services())
    found |= set(provider.policy.blocked_ingress)
    return sorted(found)


def reachable(provider: Provider, src: Endpoint, dst: Endpoint, service: Service) -> bool:
    """Whether the model lets a new connection from src reach dst on service.

    What the README leaves to defaults: a vDC without ``egress`` reaches nothing on the uplink; one without
    ``intra_vdc`` is open inside (every port, blocked ones included); ``blocked_egress`` is about the uplink
    only, so a rule between two vDCs may open such a port. The control port is never listened on and no rule
    names it: it is reached (closed) only where every port is, inside an open vDC and by egress.
    """
    if dst.name == ROUTER:
        return False  # nobody opens connections to the router
    if src.workload is None:  # from the uplink
        if dst.workload is None or service in provider.policy.blocked_ingress:
            return False
        return any(r.source == UPLINK and r.opens(service) and r.applies_to(dst.workload.name)
                   for r in provider.vdcs[dst.workload.vdc].rules)  # fmt: skip
    s = src.workload
    if dst.workload is None:  # to the uplink
        return provider.vdcs[s.vdc].egress and service not in provider.policy.blocked_egress
    d = dst.workload
    dvdc = provider.vdcs[d.vdc]
    if s.vdc == d.vdc:
        if dvdc.intra_open:
            return True
        return any(r.source_net is not None and s.address in r.source_net and r.opens(service) and r.applies_to(d.name)
                   for r in dvdc.rules)  # fmt: skip
    # Blocked ports hold against every other vDC, whatever its rules say; inside a vDC they are the tenant's.
    if (s.vdc, d.vdc) not in provider.policy.cross_vdc or service in provider.policy.blocked_ingress:
        return False
    return any(r.source == f"vdc:{s.vdc}" and r.opens(service) and r.applies_to(d.name) for r in dvdc.rules)


@dataclass(frozen=True)
class Cell:
    src: str
    dst: str
    service: Service
    expected: bool


def expected_cells(provider: Provider, focus: str | None = None) -> list[Cell]:
    """Every ordered pair (loopback ignored) and every probed service; with ``focus``, the pairs touching it."""
    points = endpoints(provider)
    router = Endpoint(ROUTER, None)
    cells = []
    for src in points:
        for dst in [*points, router]:
            if dst.name == src.name:
                continue
            if focus is not None and focus not in (src.name, dst.name):
                continue
            for service in services_of(provider, dst):
                cells.append(Cell(src.name, dst.name, service, reachable(provider, src, dst, service)))
    return cells
