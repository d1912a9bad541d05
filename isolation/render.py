"""Provider model -> libnftables JSON commands. Pure: no kernel, no root.

Two tables in the router namespace (see README, "Isolation"):

* ``inet certify_base``, the provider's: anti-spoofing, no cross-vDC traffic
  but the pairs the provider allows, ports tenants may never use, nobody
  connects to the router, the per-workload flow cap. A drop in any base
  chain is final, so nothing in the managed table can reopen it. Its
  invariants do not depend on conntrack holding an entry and come before any
  ``established`` accept, so revoking a pair cuts live flows too.
* ``inet certify_vdc``, the managed allow-list: default drop, one chain pair
  per vDC reached through interval verdict maps, the customers' rules.

Hook priorities are part of the module's contract: anti-spoof at -300
(before conntrack), provider forward and input at -10, managed forward at 0,
the flow cap at 10 (after every chain that may drop, so it counts only the
connections the whole policy lets through).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from certify.isolation.model import Provider, Rule, Vdc, Workload

FAMILY = "inet"
BASE = "certify_base"
MANAGED = "certify_vdc"
UPLINK_PORT = "uplink"


@dataclass(frozen=True)
class BaseChain:
    table: str
    name: str
    hook: str
    prio: int
    policy: str


BASE_CHAINS = (
    BaseChain(BASE, "base_pre", "prerouting", -300, "accept"),
    BaseChain(BASE, "base_forward", "forward", -10, "accept"),
    BaseChain(BASE, "base_input", "input", -10, "drop"),
    BaseChain(MANAGED, "managed_forward", "forward", 0, "drop"),
    BaseChain(BASE, "base_flows", "forward", 10, "accept"),
)
BASE_SETS = {
    "tenant_ports": {"type": "ifname"},
    "port_src": {"type": ["ifname", "ether_addr", "ipv4_addr"]},
    "tenant_nets": {"type": "ipv4_addr", "flags": ["interval"]},
    "vdc_pairs": {"type": ["ipv4_addr", "ipv4_addr"], "flags": ["interval"]},
    "same_vdc": {"type": ["ipv4_addr", "ipv4_addr"], "flags": ["interval"]},
    "blocked_egress": {"type": ["inet_proto", "inet_service"]},
    "blocked_ingress": {"type": ["inet_proto", "inet_service"]},
}
DISPATCH = {"dispatch_in": "daddr", "dispatch_out": "saddr"}
ANTI_SPOOF = "provider: anti-spoof (port, MAC, address)"
UNKNOWN_PORT = "provider: nothing from a port that is not a listed tenant"
CROSS_VDC = "provider: no cross-vDC traffic"
BLOCKED_INGRESS = "provider: ports never opened from outside the workload's vDC"
FLOW_CAP = "provider: at most {} tracked connections per workload"

# ---------------------------------------------------------------------------- expression helpers


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _payload(protocol: str, field: str) -> dict[str, Any]:
    return {"payload": {"protocol": protocol, "field": field}}


def _match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _prefix(net: ipaddress.IPv4Network) -> Any:
    if net.prefixlen == 32:
        return str(net.network_address)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _ct(key: str) -> dict[str, Any]:
    return {"ct": {"key": key}}


COUNTER: dict[str, Any] = {"counter": None}
ACCEPT: dict[str, Any] = {"accept": None}
DROP: dict[str, Any] = {"drop": None}
FROM_TENANT = _match(_meta("iifname"), "@tenant_ports")
TO_TENANT = _match(_meta("oifname"), "@tenant_ports")
ESTABLISHED = _match(_ct("state"), {"set": ["established", "related"]})
ORIGINAL = _match(_ct("direction"), "original")


def _rule(table: str, chain: str, comment: str, *expr: Any) -> dict[str, Any]:
    return {"add": {"rule": {"family": FAMILY, "table": table, "chain": chain, "expr": list(expr), "comment": comment}}}


# ---------------------------------------------------------------------------- desired state


def base_rules(max_flows: int = 4096) -> list[dict[str, Any]]:
    """The provider table's rules: the same for every model but the flow limit; the sets carry the data."""
    proto_port = {"concat": [_meta("l4proto"), _payload("th", "dport")]}
    uplink_in = _match(_meta("iifname"), UPLINK_PORT)
    uplink_out = _match(_meta("oifname"), UPLINK_PORT)
    return [
        # Fail closed: a port the sets do not list (a workload half admitted or half evicted) is not a
        # tenant the rules below would hold to its binding, so nothing from it goes anywhere.
        _rule(BASE, "base_pre", UNKNOWN_PORT, _match(_meta("iifname"), "lo", "!="), _match(_meta("iifname"), UPLINK_PORT, "!="),
              _match(_meta("iifname"), "@tenant_ports", "!="), COUNTER, DROP),
        _rule(BASE, "base_pre", "provider: no IPv6 from tenants (not offered)",
              FROM_TENANT, _match(_meta("nfproto"), "ipv6"), COUNTER, DROP),
        _rule(BASE, "base_pre", ANTI_SPOOF, FROM_TENANT,
              _match({"concat": [_meta("iifname"), _payload("ether", "saddr"), _payload("ip", "saddr")]}, "@port_src", "!="),
              COUNTER, DROP),
        _rule(BASE, "base_pre", "provider: tenant addresses never arrive from the uplink",
              uplink_in, _match(_payload("ip", "saddr"), "@tenant_nets"), COUNTER, DROP),
        # Stateless: no conntrack entry (or a missing one) can bypass these two.
        _rule(BASE, "base_forward", "provider: tenant networks never leave by the uplink",
              uplink_out, _match(_payload("ip", "daddr"), "@tenant_nets"), COUNTER, DROP),
        _rule(BASE, "base_forward", "provider: nothing turns back to the uplink", uplink_in, uplink_out, COUNTER, DROP),
        # A blocked port holds for every connection opened towards it, live ones included. A reply is not one:
        # a packet to the port in the reply direction answers a connection its receiver opened from that port.
        # A packet conntrack cannot place has no direction: it is invalid, and the managed table drops it.
        _rule(BASE, "base_forward", "provider: ports tenants may never reach on the uplink",
              FROM_TENANT, uplink_out, _match(proto_port, "@blocked_egress"), ORIGINAL, COUNTER, DROP),
        # From the uplink and from every other vDC alike: inside its own vDC a port is the tenant's business.
        _rule(BASE, "base_forward", BLOCKED_INGRESS,
              TO_TENANT, _match(proto_port, "@blocked_ingress"), ORIGINAL,
              _match({"concat": [_payload("ip", "saddr"), _payload("ip", "daddr")]}, "@same_vdc", "!="), COUNTER, DROP),
        _rule(BASE, "base_forward", "provider: allowed vDC pair",
              FROM_TENANT, TO_TENANT, _match({"concat": [_payload("ip", "saddr"), _payload("ip", "daddr")]}, "@vdc_pairs"),
              ACCEPT),
        _rule(BASE, "base_forward", "provider: replies within an allowed vDC pair",
              FROM_TENANT, TO_TENANT, _match(_ct("direction"), "reply"),
              _match({"concat": [_payload("ip", "daddr"), _payload("ip", "saddr")]}, "@vdc_pairs"), ACCEPT),
        _rule(BASE, "base_forward", CROSS_VDC, FROM_TENANT, TO_TENANT, COUNTER, DROP),
        _rule(BASE, "base_input", "provider: loopback", _match(_meta("iifname"), "lo"), ACCEPT),
        _rule(BASE, "base_input", "provider: replies to the router", ESTABLISHED, ACCEPT),
        _rule(BASE, "base_input", "provider: nobody opens connections to the router", COUNTER, DROP),
        _rule(MANAGED, "managed_forward", "established", ESTABLISHED, ACCEPT),
        _rule(MANAGED, "managed_forward", "invalid", _match(_ct("state"), "invalid"), COUNTER, DROP),
        _rule(MANAGED, "managed_forward", "dispatch to the destination vDC",
              {"vmap": {"key": _payload("ip", "daddr"), "data": "@dispatch_in"}}),
        _rule(MANAGED, "managed_forward", "dispatch to the source vDC",
              {"vmap": {"key": _payload("ip", "saddr"), "data": "@dispatch_out"}}),
        _rule(MANAGED, "managed_forward", "default deny", COUNTER, DROP),
        # Conntrack is one table for the whole router: no tenant may fill it for the others. Counted here,
        # after every chain that may drop, so attempts the policy refuses do not use up the allowance.
        _rule(BASE, "base_flows", FLOW_CAP.format(max_flows),
              FROM_TENANT, _match(_ct("state"), "new", "in"),
              # A meter: libnftables 1.0.6 JSON cannot declare the dynamic set a named one would need.
              {"meter": {"name": "tenant_flows", "key": _payload("ip", "saddr"), "size": 65535,
                         "stmt": {"ct count": {"val": max_flows, "inv": True}}}}, COUNTER, DROP),
    ]  # fmt: skip


def base_elements(provider: Provider) -> dict[str, list[Any]]:
    """The provider sets' elements for the model."""
    vdcs = sorted(provider.vdcs.values(), key=lambda v: int(v.cidr.network_address))
    pairs = [(v.cidr, v.cidr) for v in vdcs]
    pairs += sorted((provider.vdcs[a].cidr, provider.vdcs[b].cidr) for a, b in provider.policy.cross_vdc)
    return {
        "tenant_ports": sorted(w.port for w in provider.workloads),
        "port_src": [port_binding(w) for w in sorted(provider.workloads, key=lambda w: w.port)],
        "tenant_nets": [_prefix(v.cidr) for v in vdcs],
        "vdc_pairs": [{"concat": [_prefix(a), _prefix(b)]} for a, b in pairs],
        "same_vdc": [{"concat": [_prefix(v.cidr), _prefix(v.cidr)]} for v in vdcs],
        "blocked_egress": [{"concat": [s.protocol, s.port]} for s in provider.policy.blocked_egress],
        "blocked_ingress": [{"concat": [s.protocol, s.port]} for s in provider.policy.blocked_ingress],
    }


def port_binding(w: Workload) -> dict[str, Any]:
    return {"concat": [w.port, w.mac, str(w.address)]}


def dispatch_elements(provider: Provider) -> dict[str, list[Any]]:
    vdcs = sorted(provider.vdcs.values(), key=lambda v: int(v.cidr.network_address))
    return {
        "dispatch_in": [[_prefix(v.cidr), {"jump": {"target": v.chain_stem + "_in"}}] for v in vdcs],
        "dispatch_out": [[_prefix(v.cidr), {"jump": {"target": v.chain_stem + "_out"}}] for v in vdcs],
    }


def vdc_chains(vdc: Vdc) -> tuple[str, str]:
    return vdc.chain_stem + "_in", vdc.chain_stem + "_out"


def vdc_rules(provider: Provider, vdc: Vdc) -> list[dict[str, Any]]:
    """The tenant-visible chains of one vDC: what may enter it, and whether it may leave by the uplink."""
    chain_in, chain_out = vdc_chains(vdc)
    rules = []
    if vdc.intra_open:
        rules.append(_rule(MANAGED, chain_in, f"vdc {vdc.name}: intra-vDC",
                           _match(_payload("ip", "saddr"), _prefix(vdc.cidr)), COUNTER, ACCEPT))  # fmt: skip
    for rule in vdc.rules:
        exprs = _customer_rule(provider, vdc, rule)
        if exprs is not None:
            rules.append(_rule(MANAGED, chain_in, f"vdc {vdc.name} rule {rule.name}", *exprs, COUNTER, ACCEPT))
    if vdc.egress:
        rules.append(_rule(MANAGED, chain_out, f"vdc {vdc.name}: egress to the uplink",
                           _match(_meta("oifname"), UPLINK_PORT), COUNTER, ACCEPT))  # fmt: skip
    return rules


def _customer_rule(provider: Provider, vdc: Vdc, rule: Rule) -> list[Any] | None:
    exprs: list[Any] = []
    if rule.source == "uplink":
        exprs.append(_match(_meta("iifname"), UPLINK_PORT))
    elif rule.source.startswith("vdc:"):
        exprs.append(_match(_payload("ip", "saddr"), _prefix(provider.vdcs[rule.source[4:]].cidr)))
    else:
        assert rule.source_net is not None
        exprs.append(_match(_payload("ip", "saddr"), _prefix(rule.source_net)))
    if rule.targets is not None:
        addresses = sorted((w.address for w in provider.workloads if w.vdc == vdc.name and w.name in rule.targets), key=int)
        if not addresses:
            return None  # its workloads are not admitted yet
        right: Any = str(addresses[0]) if len(addresses) == 1 else {"set": [str(a) for a in addresses]}
        exprs.append(_match(_payload("ip", "daddr"), right))
    if rule.protocol == "icmp":
        exprs.append(_match(_payload("icmp", "type"), "echo-request"))
    else:
        ports: Any = rule.ports[0] if len(rule.ports) == 1 else {"set": list(rule.ports)}
        exprs.append(_match(_payload(rule.protocol, "dport"), ports))
    return exprs


def rule_targets(vdc: Vdc, workload: str) -> bool:
    """Whether a vDC's chains name this workload, so admitting or evicting it re-renders them."""
    return any(r.targets is not None and workload in r.targets for r in vdc.rules)


# ---------------------------------------------------------------------------- commands


def _obj(kind: str, table: str, name: str, **extra: Any) -> dict[str, Any]:
    return {kind: {"family": FAMILY, "table": table, "name": name, **extra}}


def skeleton(vdc_chain_names: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Tables, chains, sets and maps: idempotent ``add``s.

    Chains come before the maps: a verdict map declared in the same batch
    before the chain its element jumps to makes the batch fail with ENOENT.
    """
    cmds: list[dict[str, Any]] = [{"add": {"table": {"family": FAMILY, "name": t}}} for t in (BASE, MANAGED)]
    for c in BASE_CHAINS:
        cmds.append({"add": _obj("chain", c.table, c.name, type="filter", hook=c.hook, prio=c.prio, policy=c.policy)})
    for name in vdc_chain_names:
        cmds.append({"add": _obj("chain", MANAGED, name)})
    for name, spec in BASE_SETS.items():
        cmds.append({"add": _obj("set", BASE, name, **spec)})
    for name in DISPATCH:
        cmds.append({"add": _obj("map", MANAGED, name, type="ipv4_addr", map="verdict", flags=["interval"])})
    return cmds


def _elements(verb: str, table: str, name: str, elements: list[Any]) -> list[dict[str, Any]]:
    return [{verb: _obj("element", table, name, elem=elements)}] if elements else []


def full(provider: Provider, existing_managed_chains: Iterable[str] = ()) -> list[dict[str, Any]]:
    """One transaction that makes the kernel match the model, flushing in place.

    Flush-in-place keeps tables, chains and sets (hitless under churn, where
    delete and re-add lost SYNs); ``flush table`` alone would keep set
    elements, so every set and map is flushed by name. Chains of vDCs no
    longer in the model are flushed and deleted after the maps that jump to
    them are emptied.
    """
    wanted = []
    for vdc in sorted(provider.vdcs.values(), key=lambda v: v.name):
        wanted.extend(vdc_chains(vdc))
    cmds = skeleton(wanted)
    for c in BASE_CHAINS:
        cmds.append({"flush": _obj("chain", c.table, c.name)})
    for name in BASE_SETS:
        cmds.append({"flush": _obj("set", BASE, name)})
    for name in DISPATCH:
        cmds.append({"flush": _obj("map", MANAGED, name)})
    fixed = {c.name for c in BASE_CHAINS}
    for name in sorted(set(existing_managed_chains) - set(wanted) - fixed):
        cmds.append({"flush": _obj("chain", MANAGED, name)})
        cmds.append({"delete": _obj("chain", MANAGED, name)})
    for name in wanted:
        cmds.append({"flush": _obj("chain", MANAGED, name)})
    for name, elements in base_elements(provider).items():  # no elements for the kernel's own sets
        cmds += _elements("add", BASE, name, elements)
    for name, elements in dispatch_elements(provider).items():
        cmds += _elements("add", MANAGED, name, elements)
    cmds += base_rules(provider.policy.max_flows_per_workload)
    for vdc in sorted(provider.vdcs.values(), key=lambda v: v.name):
        cmds += vdc_rules(provider, vdc)
    return cmds


def _rerender_vdc(provider: Provider, vdc: Vdc) -> list[dict[str, Any]]:
    cmds = []
    for name in vdc_chains(vdc):
        cmds.append({"flush": _obj("chain", MANAGED, name)})
    return cmds + vdc_rules(provider, vdc)


def admit(provider: Provider, workload: Workload) -> list[dict[str, Any]]:
    """Add one workload to a kernel that already holds the model without it (one transaction)."""
    cmds = _elements("add", BASE, "tenant_ports", [workload.port])
    cmds += _elements("add", BASE, "port_src", [port_binding(workload)])
    vdc = provider.vdc_of(workload)
    if rule_targets(vdc, workload.name):
        cmds += _rerender_vdc(provider, vdc)
    return cmds


def evict(provider_after: Provider, workload: Workload) -> list[dict[str, Any]]:
    """Remove one workload; ``provider_after`` is the model without it."""
    cmds = _elements("delete", BASE, "port_src", [port_binding(workload)])
    cmds += _elements("delete", BASE, "tenant_ports", [workload.port])
    vdc = provider_after.vdcs[workload.vdc]
    if rule_targets(vdc, workload.name):
        cmds += _rerender_vdc(provider_after, vdc)
    return cmds


def teardown() -> list[dict[str, Any]]:
    # nft 1.0.6 has no 'destroy': add then delete is idempotent even when a table is absent.
    cmds: list[dict[str, Any]] = []
    for t in (MANAGED, BASE):
        cmds += [{"add": {"table": {"family": FAMILY, "name": t}}}, {"delete": {"table": {"family": FAMILY, "name": t}}}]
    return cmds


def document(cmds: list[dict[str, Any]]) -> dict[str, Any]:
    return {"nftables": [{"metainfo": {"json_schema_version": 1}}, *cmds]}


def digest(provider: Provider) -> str:
    """sha256 of the desired ruleset: what an admission record pins."""
    material = json.dumps(full(provider), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(material.encode()).hexdigest()
