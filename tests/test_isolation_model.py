"""The isolation model, its rendering, state comparison and promised connectivity.

Pure tests: no root, no namespaces, no kernel. Every model is built here from
inline YAML; only ``test_example_provider_parses`` reads examples/provider.yaml.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from certify.isolation import agent, expect, render, state
from certify.isolation import verify as verification
from certify.isolation.expect import Endpoint
from certify.isolation.model import ModelError, Policy, Provider, Service, Workload, parse_provider
from certify.isolation.render import BASE, MANAGED

REPO = Path(__file__).resolve().parent.parent
SRC = "tenants/p.yaml"

# Two vDCs: a (intra-vDC open, egress, https from the uplink to `web` only) and
# b (intra-vDC by rules: tcp/5432 from its 10.2.0.0/28; tcp/8080 from vDC a).
BASE_YAML = """
provider: {name: test-cloud, prefix: tst, uplink: 192.0.2.0/30}
accounts:
  - {name: acme, contact: ops@acme.example}
  - {name: globex}
vdcs:
  - name: a
    account: acme
    cidr: 10.1.0.0/24
    egress: true
    rules:
      - {name: https, protocol: tcp, ports: [443], from: uplink, to: [web]}
  - name: b
    account: globex
    cidr: 10.2.0.0/24
    intra_vdc: rules
    rules:
      - {name: db, protocol: tcp, ports: [5432], from: 10.2.0.0/28}
      - {name: from-a, protocol: tcp, ports: [8080], from: "vdc:a"}
policy:
  cross_vdc:
    - {from: a, to: b}
  blocked_egress: [tcp/25]
  blocked_ingress: [tcp/23]
workloads:
  - {name: web, vdc: a, services: [tcp/443]}
  - {name: app, vdc: a}
  - {name: db, vdc: b, services: [tcp/5432]}
  - {name: cache, vdc: b, address: 10.2.0.6}
  - {name: far, vdc: b, address: 10.2.0.66}
"""

# What allocation gives the base model (cache's /30 is skipped by db).
ADDRESSES = {"a.web": "10.1.0.2", "a.app": "10.1.0.6", "b.db": "10.2.0.2", "b.cache": "10.2.0.6", "b.far": "10.2.0.66"}

Mutator = Callable[[dict[str, Any]], None]


# ---------------------------------------------------------------------------- helpers


def base_doc() -> dict[str, Any]:
    return yaml.safe_load(BASE_YAML)


def parse_doc(doc: dict[str, Any]) -> Provider:
    return parse_provider(yaml.safe_dump(doc, sort_keys=False), SRC)


def _walk(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def put(path: tuple[Any, ...], value: Any) -> Mutator:
    def mutate(doc: dict[str, Any]) -> None:
        _walk(doc, path[:-1])[path[-1]] = value

    return mutate


def push(path: tuple[Any, ...], item: Any) -> Mutator:
    def mutate(doc: dict[str, Any]) -> None:
        _walk(doc, path).append(item)

    return mutate


def drop(path: tuple[Any, ...]) -> Mutator:
    def mutate(doc: dict[str, Any]) -> None:
        del _walk(doc, path[:-1])[path[-1]]

    return mutate


def every(*mutators: Mutator) -> Mutator:
    def mutate(doc: dict[str, Any]) -> None:
        for m in mutators:
            m(doc)

    return mutate


def provider(*mutators: Mutator) -> Provider:
    doc = base_doc()
    every(*mutators)(doc)
    return parse_doc(doc)


def model_error(text: str | bytes) -> str:
    """The message of the ModelError parsing ``text`` raises, checked to be a clean one-liner."""
    with pytest.raises(ModelError) as info:
        parse_provider(text, SRC)
    message = str(info.value)
    assert "\n" not in message
    assert "Traceback" not in message
    assert "<class" not in message and " object at 0x" not in message
    assert "Error(" not in message  # no repr of an exception object
    return message


def port_of(key: str) -> str:
    return "vi-" + hashlib.sha256(key.encode()).hexdigest()[:10]


def mac_of(address: str) -> str:
    return "02:00:" + ":".join(f"{int(b):02x}" for b in address.split("."))


def prefix(net: str) -> Any:
    addr, length = net.split("/")
    return {"prefix": {"addr": addr, "len": int(length)}}


def split(cmd: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    (verb, body), = cmd.items()
    (kind, obj), = body.items()
    return verb, kind, obj


def rules_of(cmds: list[dict[str, Any]], chain: str) -> list[dict[str, Any]]:
    return [obj for verb, kind, obj in map(split, cmds) if verb == "add" and kind == "rule" and obj["chain"] == chain]


def set_refs(expr: Any) -> set[str]:
    if isinstance(expr, str):
        return {expr[1:]} if expr.startswith("@") else set()
    if isinstance(expr, dict):
        return set().union(*(set_refs(v) for v in expr.values())) if expr else set()
    if isinstance(expr, list):
        return set().union(*(set_refs(v) for v in expr)) if expr else set()
    return set()


def jump_targets(expr: Any) -> set[str]:
    if isinstance(expr, dict):
        found = {expr[k]["target"] for k in ("jump", "goto") if isinstance(expr.get(k), dict)}
        return found.union(*(jump_targets(v) for v in expr.values()))
    if isinstance(expr, list):
        return set().union(*(jump_targets(v) for v in expr)) if expr else set()
    return set()


def ordering_problems(cmds: list[dict[str, Any]], existing_chains: Iterable[tuple[str, str]] = ()) -> list[str]:
    """Everything a command uses that the batch has not added before it (or the kernel already holds)."""
    tables: set[str] = set()
    chains: set[tuple[str, str]] = set(existing_chains)
    sets: set[tuple[str, str]] = set()
    map_targets: dict[tuple[str, str], set[str]] = {}
    for verb, kind, obj in map(split, cmds):
        if verb == "add" and kind == "element":
            map_targets.setdefault((obj["table"], obj["name"]), set()).update(jump_targets(obj["elem"]))
    problems = []
    for i, (verb, kind, obj) in enumerate(map(split, cmds)):
        if kind == "table":
            if verb == "add":
                tables.add(obj["name"])
            continue
        table = obj["table"]
        if table not in tables:
            problems.append(f"{i}: {verb} {kind} in table {table} before the table")
        if kind == "chain":
            if verb == "add":
                chains.add((table, obj["name"]))
            elif (table, obj["name"]) not in chains:
                problems.append(f"{i}: {verb} chain {obj['name']} before it is added")
        elif kind in ("set", "map"):
            if verb == "add":
                for target in sorted(map_targets.get((table, obj["name"]), ())):
                    if (table, target) not in chains:
                        problems.append(f"{i}: map {obj['name']} declared before chain {target}")
                sets.add((table, obj["name"]))
            elif (table, obj["name"]) not in sets:
                problems.append(f"{i}: {verb} {kind} {obj['name']} before it is added")
        elif kind == "element":
            if (table, obj["name"]) not in sets:
                problems.append(f"{i}: elements of {obj['name']} before it is added")
            for target in sorted(jump_targets(obj["elem"])):
                if (table, target) not in chains:
                    problems.append(f"{i}: element jumps to {target}, not added")
        elif kind == "rule":
            if (table, obj["chain"]) not in chains:
                problems.append(f"{i}: rule in chain {obj['chain']} before it is added")
            for ref in sorted(set_refs(obj["expr"])):
                if (table, ref) not in sets:
                    problems.append(f"{i}: rule references @{ref}, not added")
            for target in sorted(jump_targets(obj["expr"])):
                if (table, target) not in chains:
                    problems.append(f"{i}: rule jumps to {target}, not added")
    return problems


def endpoint(p: Provider, name: str) -> Endpoint:
    if name == expect.ROUTER:
        return Endpoint(expect.ROUTER, None)
    return {e.name: e for e in expect.endpoints(p)}[name]


def svc(text: str) -> Service:
    return Service.parse(text, "test")


# ---------------------------------------------------------------------------- model: validation

NEW_RULE = {"name": "extra", "protocol": "tcp", "ports": [22], "from": "uplink"}
ALLOWED_TOP = "accounts, policy, provider, vdcs, workloads"

INVALID = [
    # unknown keys, everywhere
    pytest.param(put(("vdc",), []), "top level", f"unknown key 'vdc' (allowed: {ALLOWED_TOP})", id="unknown-top"),
    pytest.param(put(("provider", "uplinks"), "x"), "provider",
                 "unknown key 'uplinks' (allowed: certifier_keys, name, prefix, registry, uplink)", id="unknown-provider"),
    pytest.param(put(("accounts", 1, "email"), "x"), "accounts[1]", "unknown key 'email' (allowed: contact, name)",
                 id="unknown-account"),
    pytest.param(put(("vdcs", 1, "egres"), True), "vdcs[1]",
                 "unknown key 'egres' (allowed: account, cidr, egress, intra_vdc, name, rules)", id="unknown-vdc"),
    pytest.param(put(("vdcs", 1, "rules", 1, "port"), 22), "vdcs[b].rules[1]",
                 "unknown key 'port' (allowed: from, name, ports, protocol, to)", id="unknown-rule"),
    pytest.param(put(("policy", "blocked"), ["tcp/25"]), "policy",
                 "unknown key 'blocked' (allowed: blocked_egress, blocked_ingress, cross_vdc, max_flows_per_workload)", id="unknown-policy"),
    pytest.param(put(("policy", "cross_vdc", 0, "too"), "b"), "policy.cross_vdc[0]", "unknown key 'too' (allowed: from, to)",
                 id="unknown-cross-vdc-pair"),
    pytest.param(put(("workloads", 2, "ip"), "10.2.0.2"), "workloads[2]",
                 "unknown key 'ip' (allowed: address, mac, name, services, vdc)", id="unknown-workload"),
    # required keys and shapes
    pytest.param(drop(("accounts",)), "top level", "missing 'accounts'", id="missing-accounts"),
    pytest.param(drop(("vdcs", 0, "cidr")), "vdcs[0]", "missing 'cidr'", id="missing-cidr"),
    pytest.param(drop(("vdcs", 0, "rules", 0, "from")), "vdcs[a].rules[0]", "missing 'from'", id="missing-from"),
    pytest.param(put(("accounts",), []), "accounts", "at least one account", id="no-account"),
    pytest.param(put(("vdcs",), {"a": 1}), "vdcs", "must be a list", id="vdcs-not-list"),
    # networks
    pytest.param(push(("vdcs",), {"name": "c", "account": "acme", "cidr": "10.1.0.128/25"}), "vdcs",
                 "a (10.1.0.0/24) and c (10.1.0.128/25) overlap; vDC networks on one host must not", id="overlap"),
    pytest.param(push(("vdcs",), {"name": "c", "account": "acme", "cidr": "10.2.0.0/24"}), "vdcs",
                 "b (10.2.0.0/24) and c (10.2.0.0/24) overlap", id="overlap-equal"),
    pytest.param(push(("vdcs",), {"name": "c", "account": "acme", "cidr": "8.8.8.0/24"}), "vdcs[c].cidr",
                 "8.8.8.0/24 must be a network of at most /29 inside 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10", id="cidr-public"),
    pytest.param(push(("vdcs",), {"name": "c", "account": "acme", "cidr": "10.3.0.0/30"}), "vdcs[c].cidr",
                 "10.3.0.0/30 must be a network of at most /29 inside 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10", id="cidr-too-small"),
    pytest.param(push(("vdcs",), {"name": "c", "account": "acme", "cidr": "10.3.0.1/24"}), "vdcs[c].cidr",
                 "'10.3.0.1/24' is not an IPv4 network", id="cidr-host-bits"),
    pytest.param(put(("provider", "uplink"), "10.1.0.252/30"), "vdcs",
                 "a (10.1.0.0/24) overlaps the uplink 10.1.0.252/30", id="cidr-overlaps-uplink"),
    pytest.param(put(("provider", "uplink"), "192.0.2.0/29"), "provider.uplink", "must be a /30", id="uplink-not-30"),
    pytest.param(put(("vdcs", 0, "account"), "initech"), "vdcs[a].account", "'initech' is not a defined account",
                 id="undefined-account"),
    pytest.param(put(("vdcs", 0, "intra_vdc"), "closed"), "vdcs[a].intra_vdc", "'closed' must be 'open'", id="intra-vdc"),
    pytest.param(put(("vdcs", 0, "egress"), "yes"), "vdcs[a].egress", "must be true or false, not 'yes'", id="egress-not-bool"),
    # cross-vDC sources need the provider's pair, in that direction
    pytest.param(push(("vdcs", 0, "rules"), {**NEW_RULE, "from": "vdc:b"}), "vdcs[a].rules[1].from",
                 "the provider does not allow b -> a (add it to policy.cross_vdc)", id="from-vdc-reverse-pair"),
    pytest.param(put(("policy", "cross_vdc"), []), "vdcs[b].rules[1].from",
                 "the provider does not allow a -> b (add it to policy.cross_vdc)", id="from-vdc-no-pair"),
    pytest.param(push(("vdcs", 0, "rules"), {**NEW_RULE, "from": "vdc:nowhere"}), "vdcs[a].rules[1].from",
                 "'nowhere' is not a defined vDC", id="from-vdc-undefined"),
    pytest.param(push(("vdcs", 0, "rules"), {**NEW_RULE, "from": "vdc:a"}), "vdcs[a].rules[1].from",
                 "use this vDC's network (10.1.0.0/24) for traffic from inside it", id="from-vdc-itself"),
    pytest.param(push(("policy", "cross_vdc"), {"from": "a", "to": "z"}), "policy.cross_vdc",
                 "names vDC 'z', which is not defined", id="cross-vdc-undefined"),
    pytest.param(push(("policy", "cross_vdc"), {"from": "a", "to": "a"}), "policy.cross_vdc[1]",
                 "a vDC always reaches itself", id="cross-vdc-self"),
    # rule sources inside the vDC
    pytest.param(put(("vdcs", 1, "rules", 0, "from"), "10.1.0.0/28"), "vdcs[b].rules[0].from",
                 "10.1.0.0/28 is not inside this vDC (10.2.0.0/24); use 'vdc:NAME' or 'uplink'", id="from-cidr-outside"),
    pytest.param(put(("vdcs", 1, "rules", 0, "from"), "10.2.0.0/23"), "vdcs[b].rules[0].from",
                 "10.2.0.0/23 is not inside this vDC (10.2.0.0/24)", id="from-cidr-wider"),
    pytest.param(put(("vdcs", 1, "rules", 0, "from"), "10.2.0.1/28"), "vdcs[b].rules[0].from",
                 "'10.2.0.1/28' must be 'uplink', 'vdc:NAME' or a network inside 10.2.0.0/24", id="from-cidr-host-bits"),
    pytest.param(put(("vdcs", 1, "rules", 0, "from"), "internet"), "vdcs[b].rules[0].from",
                 "'internet' must be 'uplink', 'vdc:NAME' or a network inside 10.2.0.0/24", id="from-garbage"),
    # provider policy beats customer rules: blocked ports hold from the uplink and from every other vDC
    pytest.param(push(("vdcs", 0, "rules"), {**NEW_RULE, "ports": [22, 23]}), "vdcs[a].rules[1]",
                 "rule 'extra' opens tcp/23 to vDC a from the uplink, which the provider never allows from outside the vDC "
                 "(policy.blocked_ingress)", id="blocked-ingress-from-uplink"),
    pytest.param(push(("vdcs", 1, "rules"), {**NEW_RULE, "ports": [23, 8081], "from": "vdc:a"}), "vdcs[b].rules[2]",
                 "rule 'extra' opens tcp/23 to vDC b from vdc:a, which the provider never allows from outside the vDC "
                 "(policy.blocked_ingress)", id="blocked-ingress-from-vdc"),
    pytest.param(every(put(("policy", "blocked_ingress"), ["tcp/23", "udp/161", "tcp/3389"]),
                       push(("vdcs", 1, "rules"), {**NEW_RULE, "ports": [3389, 80, 23], "from": "vdc:a"})), "vdcs[b].rules[2]",
                 "rule 'extra' opens tcp/23, tcp/3389 to vDC b from vdc:a", id="blocked-ingress-every-port-named"),
    # protocols and ports
    pytest.param(push(("vdcs", 0, "rules"), {"name": "ping", "protocol": "icmp", "ports": [8], "from": "uplink"}),
                 "vdcs[a].rules[1].ports", "icmp rules take no ports", id="icmp-with-ports"),
    pytest.param(drop(("vdcs", 0, "rules", 0, "ports")), "vdcs[a].rules[0].ports", "a tcp rule needs at least one port",
                 id="tcp-without-ports"),
    pytest.param(push(("vdcs", 0, "rules"), {**NEW_RULE, "protocol": "udp", "ports": []}), "vdcs[a].rules[1].ports",
                 "a udp rule needs at least one port", id="udp-empty-ports"),
    pytest.param(put(("vdcs", 0, "rules", 0, "protocol"), "sctp"), "vdcs[a].rules[0].protocol",
                 "'sctp' must be one of tcp, udp, icmp", id="protocol"),
    pytest.param(put(("vdcs", 0, "rules", 0, "ports"), [0]), "vdcs[a].rules[0].ports", "0 is not a port (1-65535)", id="port-0"),
    pytest.param(put(("vdcs", 0, "rules", 0, "ports"), [443, 65536]), "vdcs[a].rules[0].ports", "65536 is not a port (1-65535)",
                 id="port-65536"),
    pytest.param(put(("vdcs", 0, "rules", 0, "ports"), [True]), "vdcs[a].rules[0].ports", "True is not a port (1-65535)",
                 id="port-bool"),
    pytest.param(put(("vdcs", 0, "rules", 0, "ports"), ["443"]), "vdcs[a].rules[0].ports", "'443' is not a port (1-65535)",
                 id="port-string"),
    pytest.param(put(("vdcs", 0, "rules", 0, "ports"), [443.0]), "vdcs[a].rules[0].ports", "443.0 is not a port (1-65535)",
                 id="port-float"),
    pytest.param(put(("vdcs", 0, "rules", 0, "ports"), [443, 9]), "vdcs[a].rules[0].ports",
                 "port 9 is reserved as the verifier's closed control port", id="rule-control-port"),
    pytest.param(put(("workloads", 0, "services"), ["tcp/443", "tcp/9"]), "workloads[0].services",
                 "port 9 is reserved as the verifier's closed control port", id="service-control-port"),
    pytest.param(put(("policy", "blocked_ingress"), ["tcp/9"]), "policy.blocked_ingress",
                 "port 9 is reserved as the verifier's closed control port", id="blocked-control-port"),
    pytest.param(put(("policy", "blocked_egress"), ["udp/9"]), "policy.blocked_egress",
                 "port 9 is reserved as the verifier's closed control port", id="blocked-egress-control-port"),
    pytest.param(push(("vdcs", 1, "rules"), {**NEW_RULE, "protocol": "udp", "ports": [9], "from": "vdc:a"}),
                 "vdcs[b].rules[2].ports", "port 9 is reserved as the verifier's closed control port", id="rule-control-port-udp"),
    pytest.param(put(("workloads", 0, "services"), ["tcp/0"]), "workloads[0].services",
                 "'tcp/0' is not a service ('tcp/443', 'udp/53' or 'icmp')", id="service-port-0"),
    pytest.param(put(("workloads", 0, "services"), ["udp/65536"]), "workloads[0].services",
                 "'udp/65536' is not a service", id="service-port-65536"),
    pytest.param(put(("workloads", 0, "services"), ["sctp/80"]), "workloads[0].services", "'sctp/80' is not a service",
                 id="service-protocol"),
    pytest.param(put(("workloads", 0, "services"), [443]), "workloads[0].services",
                 "a service is written 'tcp/443', 'udp/53' or 'icmp', not 443", id="service-int"),
    pytest.param(put(("workloads", 0, "services"), [True]), "workloads[0].services",
                 "a service is written 'tcp/443', 'udp/53' or 'icmp', not True", id="service-bool"),
    pytest.param(put(("workloads", 0, "services"), "tcp/443"), "workloads[0].services",
                 "must be a list such as [tcp/443, udp/53, icmp]", id="services-not-list"),
    pytest.param(put(("policy", "blocked_egress"), ["icmp"]), "policy.blocked_egress",
                 "takes tcp/PORT and udp/PORT entries only", id="blocked-icmp"),
    # names
    pytest.param(put(("workloads", 0, "name"), "Web"), "workloads[0].name",
                 "'Web' is not a name (lower-case letters, digits and '-', at most 32, starting with a letter)", id="name-upper"),
    pytest.param(put(("workloads", 0, "name"), "w" * 33), "workloads[0].name", f"'{'w' * 33}' is not a name", id="name-33"),
    pytest.param(put(("workloads", 0, "name"), "1web"), "workloads[0].name", "'1web' is not a name", id="name-digit-first"),
    pytest.param(put(("workloads", 0, "name"), "web-"), "workloads[0].name", "'web-' is not a name", id="name-hyphen-last"),
    pytest.param(put(("workloads", 0, "name"), "my_web"), "workloads[0].name", "'my_web' is not a name", id="name-underscore"),
    pytest.param(put(("vdcs", 1, "name"), "B"), "vdcs[1].name", "'B' is not a name", id="vdc-name-upper"),
    pytest.param(put(("accounts", 1, "name"), "9lobex"), "accounts[1].name", "'9lobex' is not a name", id="account-name-digit"),
    pytest.param(put(("vdcs", 0, "rules", 0, "name"), "HTTPS"), "vdcs[a].rules[0].name", "'HTTPS' is not a name",
                 id="rule-name-upper"),
    pytest.param(put(("vdcs", 0, "rules", 0, "to"), ["Web"]), "vdcs[a].rules[0].to", "'Web' is not a name", id="rule-to-upper"),
    pytest.param(put(("provider", "name"), "Test_Cloud"), "provider.name", "'Test_Cloud' is not a name", id="provider-name"),
    pytest.param(put(("provider", "prefix"), "Tst"), "provider.prefix",
                 "'Tst' must be 1-12 lower-case letters or digits, starting with a letter", id="prefix-upper"),
    pytest.param(put(("provider", "prefix"), "abcdefghijklm"), "provider.prefix", "'abcdefghijklm' must be 1-12", id="prefix-13"),
    pytest.param(put(("provider", "prefix"), "1tst"), "provider.prefix", "'1tst' must be 1-12", id="prefix-digit-first"),
    pytest.param(put(("provider", "prefix"), "ts-t"), "provider.prefix", "'ts-t' must be 1-12", id="prefix-hyphen"),
    pytest.param(put(("provider", "prefix"), 7), "provider.prefix", "7 must be 1-12", id="prefix-int"),
    # duplicates
    pytest.param(push(("vdcs",), {"name": "a", "account": "acme", "cidr": "10.9.0.0/24"}), "vdcs[2]",
                 "vDC 'a' is defined twice", id="duplicate-vdc"),
    pytest.param(push(("accounts",), {"name": "acme"}), "accounts[2]", "account 'acme' is defined twice", id="duplicate-account"),
    pytest.param(push(("vdcs", 0, "rules"), {**NEW_RULE, "name": "https"}), "vdcs[a].rules", "rule name 'https' is used twice",
                 id="duplicate-rule"),
    pytest.param(push(("workloads",), {"name": "app", "vdc": "a"}), "workloads[5]", "workload app is already in vDC a",
                 id="duplicate-workload"),
    # workloads
    pytest.param(push(("workloads",), {"name": "x", "vdc": "z"}), "workloads[5].vdc", "'z' is not a defined vDC",
                 id="workload-vdc-undefined"),
    pytest.param(push(("workloads",), {"name": "x", "vdc": "a", "address": "10.2.0.10"}), "workloads[5].address",
                 "10.2.0.10 is not inside vDC a (10.1.0.0/24)", id="address-outside"),
    pytest.param(push(("workloads",), {"name": "x", "vdc": "a", "address": "10.1.0.8"}), "workloads[5].address",
                 "10.1.0.8 is the network or broadcast address of its /30 link", id="address-network"),
    pytest.param(push(("workloads",), {"name": "x", "vdc": "a", "address": "10.1.0.11"}), "workloads[5].address",
                 "10.1.0.11 is the network or broadcast address of its /30 link", id="address-broadcast"),
    pytest.param(push(("workloads",), {"name": "x", "vdc": "a", "address": "10.1.0.300"}), "workloads[5].address",
                 "'10.1.0.300' is not an IPv4 address", id="address-invalid"),
    pytest.param(push(("workloads",), {"name": "x", "vdc": "b", "address": "10.2.0.5"}), "workloads[5]",
                 "workload b.x (10.2.0.5) shares the /30 link of b.cache (10.2.0.6)", id="shared-link"),
    pytest.param(push(("workloads",), {"name": "x", "vdc": "a", "mac": "01:00:5e:00:00:01"}), "workloads[5].mac",
                 "01:00:5e:00:00:01 is a multicast MAC address", id="mac-multicast"),
    pytest.param(push(("workloads",), {"name": "x", "vdc": "a", "mac": "02:00:00:00:00"}), "workloads[5].mac",
                 "'02:00:00:00:00' is not a MAC address (aa:bb:cc:dd:ee:ff)", id="mac-short"),
    pytest.param(push(("workloads",), {"name": "x", "vdc": "b", "mac": mac_of("10.1.0.2")}), "workloads[5]",
                 "workload b.x has the MAC address of a.web (02:00:0a:01:00:02)", id="mac-duplicate"),
    pytest.param(every(push(("vdcs",), {"name": "c", "account": "acme", "cidr": "10.3.0.0/29"}),
                       *[push(("workloads",), {"name": f"c{i}", "vdc": "c"}) for i in range(3)]),
                 "workloads[7]", "vDC c has no free /30 left", id="vdc-full"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "where", "reason"), INVALID)
def test_invalid_model_names_source_field_and_reason(mutate: Mutator, where: str, reason: str) -> None:
    doc = base_doc()
    mutate(doc)
    message = model_error(yaml.safe_dump(doc, sort_keys=False))
    head = f"{SRC}: {where}: "
    assert message.startswith(head), message
    assert reason in message[len(head):], message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("accounts: [{name: acme}\n", f"{SRC}: not valid YAML (line 2)", id="unclosed-flow"),
        pytest.param("accounts:\n  - name: a\n bad: 1\n", f"{SRC}: not valid YAML (line 3)", id="bad-indent"),
        pytest.param(b"\xff\xfe\x00accounts", f"{SRC}: not valid YAML", id="not-utf8"),
        pytest.param("accounts: !!python/object/apply:os.system [true]\n", f"{SRC}: not valid YAML (line 1)", id="python-tag"),
        pytest.param("- accounts\n- vdcs\n", f"{SRC}: top level: must be a mapping", id="top-list"),
        pytest.param("just words", f"{SRC}: top level: must be a mapping", id="top-scalar"),
        pytest.param("", f"{SRC}: top level: must be a mapping", id="empty"),
    ],
)
def test_unparseable_file_is_one_line_error(text: str | bytes, message: str) -> None:
    assert model_error(text) == message


# Regressions: each of these once crashed or slipped through.


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(put(("workloads", 0, "vdc"), ["a"]), id="workload-vdc-list"),
        pytest.param(put(("vdcs", 0, "account"), ["acme"]), id="vdc-account-list"),
    ],
)
def test_unhashable_reference_is_a_model_error(mutate: Mutator) -> None:
    doc = base_doc()
    mutate(doc)
    assert "is not a name" in model_error(yaml.safe_dump(doc))


@pytest.mark.parametrize("port", ["\u00b2", "\u0663"])
def test_non_ascii_digit_port_is_a_model_error(port: str) -> None:
    doc = base_doc()
    put(("workloads", 0, "services"), [f"tcp/{port}"])(doc)
    assert "is not a service" in model_error(yaml.safe_dump(doc))


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(put(("workloads", 0, "name"), "web\n"), id="workload-name"),
        pytest.param(put(("vdcs", 0, "rules", 0, "name"), "https\n"), id="rule-name"),
        pytest.param(put(("provider", "prefix"), "tst\n"), id="prefix"),
        pytest.param(push(("workloads",), {"name": "x", "vdc": "a", "mac": "02:00:00:00:00:01\n"}), id="mac"),
    ],
)  # fmt: skip
def test_trailing_newline_is_not_a_name(mutate: Mutator) -> None:
    doc = base_doc()
    mutate(doc)
    model_error(yaml.safe_dump(doc))


def test_duplicated_rule_is_reported_as_extra() -> None:
    want = state.desired(render.full(provider()))
    have = copy.deepcopy(want)
    rules = have.chains[(BASE, "base_input")].rules
    rules.append(rules[-1])
    assert state.drift(want, have) == [f"chain certify_base base_input: not in the model: {rules[-1][0]!r}"]


def test_registry_workload_outside_its_vdc_is_refused() -> None:
    p = provider()
    with pytest.raises(ModelError, match="is not inside vDC"):
        p.with_workloads([Workload("x", "a", ipaddress.IPv4Address("172.16.0.2"), "02:00:00:00:00:01")])


def test_valid_edge_values_are_accepted() -> None:
    p = provider(
        put(("workloads", 0, "name"), "w" * 32),
        put(("vdcs", 0, "rules", 0, "to"), ["w" * 32]),
        put(("provider", "prefix"), "abcdefghijkl"),
        push(("vdcs", 0, "rules"), {"name": "x", "protocol": "udp", "ports": [65535, 1, 1], "from": "uplink"}),
        # a blocked_ingress port may be opened from inside the vDC, just not from outside it
        push(("vdcs", 1, "rules"), {"name": "t", "protocol": "tcp", "ports": [23], "from": "10.2.0.0/28"}),
        # blocked ports are per protocol: udp/23 is not tcp/23
        push(("vdcs", 1, "rules"), {"name": "u", "protocol": "udp", "ports": [23], "from": "vdc:a"}),
        push(("workloads",), {"name": "web", "vdc": "b"}),  # a name is unique per vDC only
    )
    assert p.prefix == "abcdefghijkl"
    assert p.vdcs["a"].rules[1].ports == (1, 65535)
    assert p.vdcs["b"].rules[2].source_net == ipaddress.IPv4Network("10.2.0.0/28")
    assert [w.key for w in p.workloads] == ["a." + "w" * 32, "a.app", "b.db", "b.cache", "b.far", "b.web"]
    assert p.notes == ()


def test_rule_naming_an_absent_workload_is_a_note_not_an_error() -> None:
    p = provider(drop(("workloads", 0)))
    assert p.workload("a", "web") is None
    assert p.notes == ("rule a/https names workload web, which is not in the file (it applies once admitted)",)


def test_example_provider_parses() -> None:
    path = REPO / "examples" / "provider.yaml"
    p = parse_provider(path.read_bytes(), str(path))
    assert sorted(p.vdcs) == ["acme-dev", "acme-prod", "globex-analytics", "initech-erp"]
    assert {w.key: str(w.address) for w in p.workloads} == {
        "acme-prod.storefront": "10.10.1.2",
        "acme-dev.build": "10.10.2.2",
        "globex-analytics.warehouse": "10.20.0.2",
        "globex-analytics.etl": "10.20.0.6",
        "initech-erp.erp": "10.30.0.2",
    }
    assert p.policy.cross_vdc == frozenset({("acme-dev", "acme-prod")})
    assert p.notes == ()
    assert state.drift(state.desired(render.full(p)), state.desired(render.full(p))) == []


# ---------------------------------------------------------------------------- model: allocation

ALLOC_YAML = """
accounts: [{name: acme}]
vdcs: [{name: a, account: acme, cidr: 10.1.0.0/24}]
workloads:
  - {name: first, vdc: a}
  - {name: pinned, vdc: a, address: 10.1.0.1}
  - {name: second, vdc: a}
  - {name: later, vdc: a, address: 10.1.0.14}
  - {name: third, vdc: a}
"""


def test_allocation_skips_links_named_later_in_the_file() -> None:
    p = parse_provider(ALLOC_YAML, SRC)
    assert [(w.name, str(w.address)) for w in p.workloads] == [
        ("first", "10.1.0.6"),  # 10.1.0.0/30 is pinned's, listed later
        ("pinned", "10.1.0.1"),
        ("second", "10.1.0.10"),  # 10.1.0.12/30 is later's
        ("later", "10.1.0.14"),
        ("third", "10.1.0.18"),
    ]
    pinned = p.workload("a", "pinned")
    assert pinned is not None and str(pinned.router_address) == "10.1.0.2"
    assert str(p.workload("a", "first").router_address) == "10.1.0.5"  # type: ignore[union-attr]


def test_mac_and_port_derive_from_address_and_key() -> None:
    p = parse_provider(ALLOC_YAML + "  - {name: own-mac, vdc: a, mac: 'AA:BB:CC:DD:EE:FF'}\n", SRC)
    for w in p.workloads[:-1]:
        assert w.mac == "02:00:" + ":".join(f"{b:02x}" for b in w.address.packed)
        assert w.port == port_of(f"a.{w.name}")
        assert re.fullmatch(r"vi-[0-9a-f]{10}", w.port) and len(w.port) <= 15
    assert p.workload("a", "first").mac == "02:00:0a:01:00:06"  # type: ignore[union-attr]
    assert p.workloads[-1].mac == "aa:bb:cc:dd:ee:ff"  # given MACs are kept, lower-cased
    assert len({w.port for w in p.workloads}) == len(p.workloads)


def _extra(name: str, vdc: str, address: str, mac: str | None = None) -> Workload:
    return Workload(name, vdc, ipaddress.IPv4Address(address), mac or mac_of(address), origin="admission")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(_extra("new", "a", "10.1.0.1"), "workload a.new (10.1.0.1) shares the /30 link of a.web (10.1.0.2)", id="link"),
        pytest.param(_extra("web", "a", "10.1.0.250"), "workload web is already in vDC a", id="name"),
        pytest.param(_extra("new", "a", "10.1.0.250", mac_of("10.2.0.66")),
                     "workload a.new has the MAC address of b.far (02:00:0a:02:00:42)", id="mac"),
        pytest.param(_extra("new", "z", "10.9.0.2"), "workload new: vDC 'z' is not defined", id="vdc"),
    ],
)  # fmt: skip
def test_with_workloads_refuses_a_clash(extra: Workload, message: str) -> None:
    p = provider()
    with pytest.raises(ModelError) as info:
        p.with_workloads([extra])
    assert str(info.value) == message


def test_with_workloads_refuses_a_clash_within_the_batch() -> None:
    p = provider()
    with pytest.raises(ModelError, match=r"^workload a\.two \(10\.1\.0\.249\) shares the /30 link of a\.one \(10\.1\.0\.250\)$"):
        p.with_workloads([_extra("one", "a", "10.1.0.250"), _extra("two", "a", "10.1.0.249")])


def test_with_and_without_workloads() -> None:
    p = provider()
    more = p.with_workloads([_extra("new", "a", "10.1.0.250")])
    assert [w.key for w in more.workloads] == [*ADDRESSES, "a.new"]
    assert [w.key for w in p.workloads] == list(ADDRESSES)  # the original is unchanged
    assert more.without_workload("a", "new") == p


# ---------------------------------------------------------------------------- render


def test_full_is_deterministic_and_digest_follows_rules() -> None:
    one, two = provider(), provider()
    assert render.full(one) == render.full(two)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", render.digest(one))
    assert render.digest(one) == render.digest(two)
    changed = provider(put(("vdcs", 0, "rules", 0, "ports"), [8443]))
    assert render.full(changed) != render.full(one)
    assert render.digest(changed) != render.digest(one)


def test_full_declares_everything_before_use() -> None:
    cmds = render.full(provider())
    assert ordering_problems(cmds) == []
    verbs = [split(c)[:2] for c in cmds]
    assert verbs[:2] == [("add", "table"), ("add", "table")]
    maps = {obj["name"]: jump_targets(obj["elem"]) for verb, kind, obj in map(split, cmds) if kind == "element"}
    # the check above is not vacuous: the maps do jump to the vDC chains
    assert maps["dispatch_in"] == {"vdc_a_in", "vdc_b_in"}
    assert maps["dispatch_out"] == {"vdc_a_out", "vdc_b_out"}


def test_ordering_check_catches_a_map_declared_before_its_chains() -> None:
    cmds = render.full(provider())
    declare = next(i for i, c in enumerate(cmds) if split(c)[:2] == ("add", "map"))
    first_vdc_chain = next(i for i, c in enumerate(cmds) if split(c)[:2] == ("add", "chain") and split(c)[2]["name"] == "vdc_a_in")
    moved = cmds[:first_vdc_chain] + [cmds[declare]] + [c for i, c in enumerate(cmds[first_vdc_chain:], first_vdc_chain) if i != declare]
    assert ordering_problems(moved)[0] == f"{first_vdc_chain}: map dispatch_in declared before chain vdc_a_in"


def test_base_chains_hooks_priorities_policies() -> None:
    cmds = render.full(provider())
    hooked = {(o["table"], o["name"]): (o["type"], o["hook"], o["prio"], o["policy"])
              for v, k, o in map(split, cmds) if v == "add" and k == "chain" and "hook" in o}  # fmt: skip
    assert hooked == {
        (BASE, "base_pre"): ("filter", "prerouting", -300, "accept"),
        (BASE, "base_forward"): ("filter", "forward", -10, "accept"),
        (BASE, "base_input"): ("filter", "input", -10, "drop"),
        (MANAGED, "managed_forward"): ("filter", "forward", 0, "drop"),
        (BASE, "base_flows"): ("filter", "forward", 10, "accept"),
    }
    plain = [(o["table"], o["name"]) for v, k, o in map(split, cmds) if v == "add" and k == "chain" and "hook" not in o]
    assert plain == [(MANAGED, "vdc_a_in"), (MANAGED, "vdc_a_out"), (MANAGED, "vdc_b_in"), (MANAGED, "vdc_b_out")]
    assert state.base_chain_problems(state.desired(cmds)) == []


def test_flow_cap_counts_only_what_every_forward_chain_let_through() -> None:
    """The meter sits in a chain hooked after every forward chain that drops: a refused attempt never reaches it."""
    cmds = render.full(provider(put(("policy", "max_flows_per_workload"), 16)))
    metered = {(o["table"], o["chain"]) for v, k, o in map(split, cmds) if v == "add" and k == "rule" and "meter" in str(o["expr"])}
    assert metered == {(BASE, "base_flows")}
    forward = {c.name: c.prio for c in render.BASE_CHAINS if c.hook == "forward"}
    droppers = {name for v, k, o in map(split, cmds) if v == "add" and k == "rule" and {"drop": None} in o["expr"]
                for name in [o["chain"]] if name in forward} | {c.name for c in render.BASE_CHAINS if c.policy == "drop" and c.name in forward}  # fmt: skip
    assert droppers == {"base_forward", "managed_forward", "base_flows"}
    assert all(forward["base_flows"] > forward[name] for name in droppers - {"base_flows"})
    (cap,) = rules_of(cmds, "base_flows")
    assert cap["comment"] == "provider: at most 16 tracked connections per workload"
    assert cap["expr"][:2] == [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "@tenant_ports"}},
                               {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}}]  # fmt: skip
    assert cap["expr"][2]["meter"]["stmt"] == {"ct count": {"val": 16, "inv": True}} and cap["expr"][-1] == {"drop": None}


def test_blocked_ingress_holds_outside_the_destinations_vdc_only() -> None:
    """One rule for the uplink and every other vDC: a blocked port to a tenant, unless source and destination share a vDC."""
    p = provider()
    (rule,) = [r for r in rules_of(render.full(p), "base_forward") if r["comment"] == render.BLOCKED_INGRESS]
    assert rule["expr"] == [
        {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "@tenant_ports"}},
        {"match": {"op": "==", "left": {"concat": [{"meta": {"key": "l4proto"}}, {"payload": {"protocol": "th", "field": "dport"}}]},
                   "right": "@blocked_ingress"}},
        {"match": {"op": "==", "left": {"ct": {"key": "direction"}}, "right": "original"}},
        {"match": {"op": "!=", "left": {"concat": [{"payload": {"protocol": "ip", "field": "saddr"}},
                                                   {"payload": {"protocol": "ip", "field": "daddr"}}]}, "right": "@same_vdc"}},
        {"counter": None},
        {"drop": None},
    ]  # fmt: skip
    a, b = prefix("10.1.0.0/24"), prefix("10.2.0.0/24")
    assert render.base_elements(p)["same_vdc"] == [{"concat": [a, a]}, {"concat": [b, b]}]  # never a cross-vDC pair
    comments = [r["comment"] for r in rules_of(render.full(p), "base_forward")]
    assert comments.index(render.BLOCKED_INGRESS) < comments.index("provider: allowed vDC pair")  # before any accept


def test_port_src_binds_port_mac_address_per_workload() -> None:
    p = provider()
    elements = render.base_elements(p)
    expected = [{"concat": [port_of(k), mac_of(a), a]} for k, a in ADDRESSES.items()]
    assert sorted(elements["port_src"], key=str) == sorted(expected, key=str)
    assert len(elements["port_src"]) == 5
    assert elements["tenant_ports"] == sorted(port_of(k) for k in ADDRESSES)
    assert elements["tenant_nets"] == [prefix("10.1.0.0/24"), prefix("10.2.0.0/24")]
    assert elements["blocked_egress"] == [{"concat": ["tcp", 25]}]
    assert elements["blocked_ingress"] == [{"concat": ["tcp", 23]}]
    adds = [o for v, k, o in map(split, render.full(p)) if v == "add" and k == "element" and o["name"] == "port_src"]
    assert [a["elem"] for a in adds] == [elements["port_src"]]


def test_vdc_pairs_hold_self_pairs_and_policy_pairs_in_direction() -> None:
    a, b = prefix("10.1.0.0/24"), prefix("10.2.0.0/24")
    p = provider()
    assert render.base_elements(p)["vdc_pairs"] == [{"concat": [a, a]}, {"concat": [b, b]}, {"concat": [a, b]}]
    reverse = replace(p, policy=replace(p.policy, cross_vdc=frozenset({("b", "a")})))
    assert render.base_elements(reverse)["vdc_pairs"] == [{"concat": [a, a]}, {"concat": [b, b]}, {"concat": [b, a]}]
    alone = replace(p, policy=Policy())
    assert render.base_elements(alone)["vdc_pairs"] == [{"concat": [a, a]}, {"concat": [b, b]}]


def test_targeted_rule_renders_only_once_its_workload_is_present() -> None:
    parsed_without = provider(drop(("workloads", 0)))
    comments = [split(c)[2]["comment"] for c in render.vdc_rules(parsed_without, parsed_without.vdcs["a"])]
    assert comments == ["vdc a: intra-vDC", "vdc a: egress to the uplink"]
    with_web = provider()
    web = with_web.workload("a", "web")
    assert web is not None
    https = [r for r in rules_of(render.full(with_web), "vdc_a_in") if r["comment"] == "vdc a rule https"]
    assert [r["expr"] for r in https] == [[
        {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "uplink"}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.1.0.2"}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 443}},
        {"counter": None},
        {"accept": None},
    ]]  # fmt: skip
    without = with_web.without_workload("a", "web")
    assert "vdc a rule https" not in [r["comment"] for r in rules_of(render.full(without), "vdc_a_in")]
    admitted = without.with_workloads([web])
    assert render.vdc_rules(admitted, admitted.vdcs["a"]) == render.vdc_rules(with_web, with_web.vdcs["a"])


def test_vdc_chains_render_sources_and_egress() -> None:
    p = provider()
    b_in = rules_of(render.full(p), "vdc_b_in")
    assert [(r["comment"], r["expr"][0]["match"]["right"], r["expr"][1]["match"]["right"]) for r in b_in] == [
        ("vdc b rule db", prefix("10.2.0.0/28"), 5432),
        ("vdc b rule from-a", prefix("10.1.0.0/24"), 8080),
    ]
    assert rules_of(render.full(p), "vdc_b_out") == []  # egress false: nothing leaves by the uplink
    assert [r["comment"] for r in rules_of(render.full(p), "vdc_a_out")] == ["vdc a: egress to the uplink"]


def test_full_deletes_stale_chains_only() -> None:
    p = provider()
    cmds = render.full(p, existing_managed_chains=["vdc_old_in", "managed_forward", "vdc_a_in"])
    touched = [(v, o["name"]) for v, k, o in map(split, cmds) if k == "chain" and o["name"] == "vdc_old_in"]
    assert touched == [("flush", "vdc_old_in"), ("delete", "vdc_old_in")]
    deletes = [(k, o["name"]) for v, k, o in map(split, cmds) if v == "delete"]
    assert deletes == [("chain", "vdc_old_in")]
    index = {(v, k, o["name"]): i for i, (v, k, o) in enumerate(map(split, cmds)) if k in ("chain", "map")}
    assert index[("flush", "map", "dispatch_in")] < index[("delete", "chain", "vdc_old_in")]
    assert index[("flush", "map", "dispatch_out")] < index[("delete", "chain", "vdc_old_in")]
    assert ordering_problems(cmds, existing_chains={(MANAGED, "vdc_old_in")}) == []
    assert not [c for c in render.full(p) if "delete" in c]
    assert state.desired(cmds) == state.desired(render.full(p))


def test_admit_untargeted_workload_adds_only_its_elements() -> None:
    p = provider()
    app = p.workload("a", "app")
    assert app is not None
    assert render.admit(p, app) == [
        {"add": {"element": {"family": "inet", "table": BASE, "name": "tenant_ports", "elem": [port_of("a.app")]}}},
        {"add": {"element": {"family": "inet", "table": BASE, "name": "port_src",
                             "elem": [{"concat": [port_of("a.app"), "02:00:0a:01:00:06", "10.1.0.6"]}]}}},
    ]  # fmt: skip


def test_admit_targeted_workload_rerenders_its_vdc() -> None:
    p = provider()
    web = p.workload("a", "web")
    assert web is not None
    cmds = render.admit(p, web)
    assert [split(c)[:2] for c in cmds[:2]] == [("add", "element"), ("add", "element")]
    assert [e for c in cmds[:2] for e in split(c)[2]["elem"]] == [port_of("a.web"), {"concat": [port_of("a.web"), mac_of("10.1.0.2"), "10.1.0.2"]}]
    assert cmds[2:4] == [
        {"flush": {"chain": {"family": "inet", "table": MANAGED, "name": "vdc_a_in"}}},
        {"flush": {"chain": {"family": "inet", "table": MANAGED, "name": "vdc_a_out"}}},
    ]
    assert cmds[4:] == render.vdc_rules(p, p.vdcs["a"])
    assert "vdc a rule https" in [split(c)[2]["comment"] for c in cmds[4:]]
    assert not [c for c in cmds if split(c)[2].get("chain", split(c)[2].get("name", "")).startswith("vdc_b")]


def test_evict_deletes_the_elements_and_rerenders_when_targeted() -> None:
    p = provider()
    app, web = p.workload("a", "app"), p.workload("a", "web")
    assert app is not None and web is not None
    binding = {"concat": [port_of("a.app"), "02:00:0a:01:00:06", "10.1.0.6"]}
    assert render.evict(p.without_workload("a", "app"), app) == [
        {"delete": {"element": {"family": "inet", "table": BASE, "name": "port_src", "elem": [binding]}}},
        {"delete": {"element": {"family": "inet", "table": BASE, "name": "tenant_ports", "elem": [port_of("a.app")]}}},
    ]
    after = p.without_workload("a", "web")
    cmds = render.evict(after, web)
    assert [split(c)[:2] for c in cmds[:4]] == [("delete", "element"), ("delete", "element"), ("flush", "chain"), ("flush", "chain")]
    assert cmds[4:] == render.vdc_rules(after, after.vdcs["a"])
    assert "vdc a rule https" not in [split(c)[2]["comment"] for c in cmds[4:]]


def test_teardown_removes_both_tables_idempotently() -> None:
    assert render.teardown() == [
        {"add": {"table": {"family": "inet", "name": MANAGED}}},
        {"delete": {"table": {"family": "inet", "name": MANAGED}}},
        {"add": {"table": {"family": "inet", "name": BASE}}},
        {"delete": {"table": {"family": "inet", "name": BASE}}},
    ]


# ---------------------------------------------------------------------------- state


def test_desired_has_no_drift_against_itself() -> None:
    want = state.desired(render.full(provider()))
    assert want.tables == {BASE, MANAGED}
    assert len(want.chains) == 9  # five base chains, two per vDC
    assert state.drift(want, copy.deepcopy(want)) == []


@pytest.mark.parametrize(
    ("change", "line"),
    [
        pytest.param(lambda s: s.chains[(BASE, "base_input")].rules.pop(0),
                     "chain certify_base base_input: missing or changed: 'provider: loopback'", id="rule-removed"),
        pytest.param(lambda s: setattr(s.chains[(MANAGED, "managed_forward")], "policy", "accept"),
                     "chain certify_vdc managed_forward: policy is 'accept', the model says 'drop'", id="policy"),
        pytest.param(lambda s: setattr(s.chains[(BASE, "base_pre")], "prio", 0),
                     "chain certify_base base_pre: prio is 0, the model says -300", id="prio"),
        pytest.param(lambda s: s.elements[(BASE, "tenant_ports")].add('"vi-0000000000"'),
                     "set certify_base tenant_ports: 0 element(s) missing, 1 not in the model", id="extra-element"),
        pytest.param(lambda s: s.elements[(BASE, "port_src")].pop(),
                     "set certify_base port_src: 1 element(s) missing, 0 not in the model", id="missing-element"),
        pytest.param(lambda s: s.chains.pop((MANAGED, "vdc_b_in")), "chain certify_vdc vdc_b_in is missing", id="chain-missing"),
        pytest.param(lambda s: s.chains.setdefault((MANAGED, "vdc_old_in"), state.ChainState()),
                     "chain certify_vdc vdc_old_in is not in the model", id="chain-extra"),
        pytest.param(lambda s: s.chains[(BASE, "base_input")].rules.reverse(),
                     "chain certify_base base_input: rules are in another order", id="order"),
        pytest.param(lambda s: s.tables.discard(MANAGED), "table inet certify_vdc is missing", id="table-missing"),
    ],
)  # fmt: skip
def test_one_change_is_one_drift_line(change: Callable[[state.RulesetState], Any], line: str) -> None:
    want = state.desired(render.full(provider()))
    have = copy.deepcopy(want)
    change(have)
    assert state.drift(want, have) == [line]


def test_every_change_is_reported_in_order() -> None:
    want = state.desired(render.full(provider()))
    have = copy.deepcopy(want)
    have.elements[(BASE, "vdc_pairs")].clear()
    have.chains[(MANAGED, "vdc_a_in")].rules.pop()
    have.chains[(BASE, "base_forward")].hook = "postrouting"
    assert state.drift(want, have) == [
        "chain certify_base base_forward: hook is 'postrouting', the model says 'forward'",
        "chain certify_vdc vdc_a_in: missing or changed: 'vdc a rule https'",
        "set certify_base vdc_pairs: 3 element(s) missing, 0 not in the model",
    ]


def test_base_chain_problems_name_the_wrong_chain() -> None:
    have = state.desired(render.full(provider()))
    have.chains[(BASE, "base_input")].policy = "accept"
    del have.chains[(MANAGED, "managed_forward")]
    assert state.base_chain_problems(have) == [
        "base chain certify_base base_input is on input/-10/accept, not input/-10/drop",
        "base chain certify_vdc managed_forward is missing",
    ]


def _listing() -> dict[str, Any]:
    """A hand-written ``nft -j list ruleset`` of one chain and one set, as the kernel reports them."""
    iif_lo = {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lo"}}
    established = {"match": {"op": "==", "left": {"ct": {"key": "state"}}, "right": {"set": ["established", "related"]}}}
    return {"nftables": [
        {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
        {"table": {"family": "inet", "name": BASE, "handle": 7}},
        {"table": {"family": "inet", "name": "filter", "handle": 1}},
        {"chain": {"family": "inet", "table": "filter", "name": "input", "handle": 1,
                   "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
        {"table": {"family": "ip", "name": BASE, "handle": 2}},
        {"chain": {"family": "inet", "table": BASE, "name": "base_input", "handle": 3,
                   "type": "filter", "hook": "input", "prio": -10, "policy": "drop"}},
        {"rule": {"family": "inet", "table": BASE, "chain": "base_input", "handle": 11,
                  "comment": "provider: loopback", "expr": [iif_lo, {"accept": None}]}},
        {"rule": {"family": "inet", "table": BASE, "chain": "base_input", "handle": 12,
                  "comment": "provider: replies to the router", "expr": [established, {"accept": None}]}},
        {"rule": {"family": "inet", "table": BASE, "chain": "base_input", "handle": 13,
                  "comment": "provider: nobody opens connections to the router",
                  "expr": [{"counter": {"packets": 3, "bytes": 180}}, {"drop": None}]}},
        {"set": {"family": "inet", "table": BASE, "name": "tenant_ports", "handle": 4, "type": "ifname",
                 "elem": ["vi-aaaaaaaaaa", "vi-bbbbbbbbbb"]}},
    ]}  # fmt: skip


def test_observed_reads_counters_and_matches_desired_form() -> None:
    have = state.observed(_listing())
    assert have.tables == {BASE}
    assert set(have.chains) == {(BASE, "base_input")}
    chain = have.chains[(BASE, "base_input")]
    assert (chain.hook, chain.prio, chain.policy) == ("input", -10, "drop")
    assert chain.counters == {"provider: nobody opens connections to the router": (3, 180)}
    assert have.elements == {(BASE, "tenant_ports"): {'"vi-aaaaaaaaaa"', '"vi-bbbbbbbbbb"'}}

    full = render.full(provider())
    chain_cmd = next(c for c in full if split(c)[:2] == ("add", "chain") and split(c)[2]["name"] == "base_input")
    want = state.desired([
        {"add": {"table": {"family": "inet", "name": BASE}}},
        chain_cmd,
        *[{"add": {"rule": r}} for r in rules_of(full, "base_input")],
        {"add": {"set": {"family": "inet", "table": BASE, "name": "tenant_ports", "type": "ifname"}}},
        {"add": {"element": {"family": "inet", "table": BASE, "name": "tenant_ports", "elem": ["vi-bbbbbbbbbb", "vi-aaaaaaaaaa"]}}},
    ])  # fmt: skip
    assert want.chains[(BASE, "base_input")].rules == chain.rules
    # Other tables in the router namespace are drift: they could bypass or undo the provider's.
    assert have.foreign == [("inet", "filter"), ("ip", BASE)]
    assert state.drift(want, have) == ["table inet filter in the router namespace is not the provider's",
                                       f"table ip {BASE} in the router namespace is not the provider's"]  # fmt: skip
    have.foreign = []
    assert state.drift(want, have) == []
    assert state.drift(want, state.observed({"nftables": []})) == ["table inet certify_base is missing"]


# ---------------------------------------------------------------------------- expect


@pytest.mark.parametrize(
    ("src", "dst", "service", "reachable"),
    [
        # intra-vDC: a is open on any port, b only by its rules
        ("a.web", "a.app", "tcp/1234", True),
        ("a.app", "a.web", "udp/53", True),
        ("a.web", "a.app", "icmp", True),
        ("b.db", "b.cache", "tcp/5432", True),  # both inside 10.2.0.0/28
        ("b.cache", "b.db", "tcp/5432", True),
        ("b.db", "b.cache", "tcp/80", False),
        ("b.db", "b.cache", "icmp", False),
        ("b.far", "b.db", "tcp/5432", False),  # 10.2.0.66 is outside the /28
        # cross-vDC: only a -> b, only on what b's rule opens to vdc:a
        ("a.web", "b.db", "tcp/8080", True),
        ("a.app", "b.far", "tcp/8080", True),
        ("a.web", "b.db", "tcp/5432", False),
        ("b.db", "a.web", "tcp/8080", False),
        ("b.db", "a.web", "tcp/443", False),
        ("b.far", "a.app", "icmp", False),
        # from the uplink: only https to web
        ("uplink", "a.web", "tcp/443", True),
        ("uplink", "a.web", "tcp/80", False),
        ("uplink", "a.app", "tcp/443", False),
        ("uplink", "a.web", "tcp/23", False),
        ("uplink", "b.db", "tcp/5432", False),
        # to the uplink: a has egress but never tcp/25; b has no egress
        ("a.web", "uplink", "tcp/443", True),
        ("a.web", "uplink", "udp/53", True),
        ("a.web", "uplink", "tcp/25", False),
        ("b.db", "uplink", "tcp/443", False),
        # nobody opens connections to the router
        ("a.web", "router", "tcp/22", False),
        ("a.web", "router", "icmp", False),
        ("uplink", "router", "tcp/22", False),
        ("b.db", "router", "tcp/9", False),
    ],
)
def test_reachable(src: str, dst: str, service: str, reachable: bool) -> None:
    p = provider()
    assert expect.reachable(p, endpoint(p, src), endpoint(p, dst), svc(service)) is reachable


def test_cross_vdc_needs_the_pair_and_the_named_source() -> None:
    p = provider(
        push(("vdcs",), {"name": "c", "account": "acme", "cidr": "10.3.0.0/24"}),
        push(("policy", "cross_vdc"), {"from": "c", "to": "b"}),
        push(("workloads",), {"name": "x", "vdc": "c"}),
    )
    db = endpoint(p, "b.db")
    assert expect.reachable(p, endpoint(p, "a.web"), db, svc("tcp/8080")) is True
    assert expect.reachable(p, endpoint(p, "c.x"), db, svc("tcp/8080")) is False  # paired, but b's rule names vdc:a
    revoked = replace(p, policy=replace(p.policy, cross_vdc=frozenset({("c", "b")})))
    assert expect.reachable(revoked, endpoint(revoked, "a.web"), endpoint(revoked, "b.db"), svc("tcp/8080")) is False


def test_blocked_ingress_beats_a_customer_rule() -> None:
    p = provider()
    # Rules the loader would refuse, made by hand: the policy still wins, from the uplink and from another vDC.
    strict = replace(p, policy=replace(p.policy, blocked_ingress=(svc("tcp/443"), svc("tcp/8080"))))
    assert expect.reachable(p, endpoint(p, "uplink"), endpoint(p, "a.web"), svc("tcp/443")) is True
    assert expect.reachable(strict, endpoint(strict, "uplink"), endpoint(strict, "a.web"), svc("tcp/443")) is False
    assert expect.reachable(p, endpoint(p, "a.web"), endpoint(p, "b.db"), svc("tcp/8080")) is True
    assert expect.reachable(strict, endpoint(strict, "a.web"), endpoint(strict, "b.db"), svc("tcp/8080")) is False
    # Inside a vDC a blocked port is the tenant's own: open in an open vDC, opened by a rule in a closed one.
    assert expect.reachable(strict, endpoint(strict, "a.app"), endpoint(strict, "a.web"), svc("tcp/443")) is True
    inside = provider(put(("policy", "blocked_ingress"), ["tcp/5432"]))
    assert expect.reachable(inside, endpoint(inside, "b.cache"), endpoint(inside, "b.db"), svc("tcp/5432")) is True


# Everything the README leaves to defaults, in one model: vDC c names neither egress nor intra_vdc; a rule
# from vDC a opens tcp/25, a blocked_egress port, between the two tenants.
DEFAULTS = every(
    push(("accounts",), {"name": "initech"}),
    push(("vdcs",), {"name": "c", "account": "initech", "cidr": "10.3.0.0/24",
                     "rules": [{"name": "mail", "protocol": "tcp", "ports": [25], "from": "vdc:a"}]}),
    push(("policy", "cross_vdc"), {"from": "a", "to": "c"}),
    push(("workloads",), {"name": "c1", "vdc": "c", "services": ["tcp/23", "tcp/25"]}),
    push(("workloads",), {"name": "c2", "vdc": "c"}),
)  # fmt: skip


@pytest.mark.parametrize(
    ("src", "dst", "service", "reachable"),
    [
        # egress absent: nothing leaves by the uplink, not even the ports the uplink serves
        ("c.c1", "uplink", "tcp/80", False),
        ("c.c2", "uplink", "udp/53", False),
        # intra_vdc absent: open, on every port
        ("c.c2", "c.c1", "tcp/25", True),
        ("c.c2", "c.c1", "icmp", True),
        # a blocked_ingress port between workloads of one open vDC: open
        ("c.c2", "c.c1", "tcp/23", True),
        ("c.c1", "c.c2", "tcp/23", True),
        # ... and closed to every other source
        ("a.web", "c.c1", "tcp/23", False),
        ("uplink", "c.c1", "tcp/23", False),
        # a rule between tenants on a blocked_egress port: open (blocked_egress is about the uplink only)
        ("a.web", "c.c1", "tcp/25", True),
        ("a.app", "c.c2", "tcp/25", True),
        ("c.c1", "a.web", "tcp/443", False),  # the pair has one direction
        ("a.web", "uplink", "tcp/25", False),
        # the control port: nothing listens, no rule names it; reached (closed) only where every port is
        ("c.c2", "c.c1", "tcp/9", True),
        ("a.web", "c.c1", "tcp/9", False),
        ("uplink", "c.c1", "tcp/9", False),
        ("c.c1", "uplink", "tcp/9", False),
    ],
)
def test_defaults_the_readme_leaves_open(src: str, dst: str, service: str, reachable: bool) -> None:
    p = provider(DEFAULTS)
    assert (p.vdcs["c"].egress, p.vdcs["c"].intra_open) == (False, True)
    assert expect.reachable(p, endpoint(p, src), endpoint(p, dst), svc(service)) is reachable
    # and the verifier probes each of these cells
    assert (src, dst, svc(service)) in {(c.src, c.dst, c.service) for c in expect.expected_cells(p)}


def test_egress_false_vdc_reaches_nothing_upstream() -> None:
    p = provider(put(("vdcs", 0, "egress"), False))
    src = endpoint(p, "a.web")
    for service in ("tcp/80", "tcp/443", "udp/53", "icmp"):
        assert expect.reachable(p, src, endpoint(p, "uplink"), svc(service)) is False
    assert expect.reachable(p, src, endpoint(p, "a.app"), svc("tcp/80")) is True  # intra-vDC is unaffected


def test_probed_services_per_destination() -> None:
    cells = expect.expected_cells(provider())

    def probed(src: str, dst: str) -> set[str]:
        return {str(c.service) for c in cells if (c.src, c.dst) == (src, dst)}

    assert probed("uplink", "a.web") == {"icmp", "tcp/9", "tcp/23", "tcp/443"}
    assert probed("a.web", "b.db") == {"icmp", "tcp/9", "tcp/23", "tcp/5432", "tcp/8080"}
    assert probed("a.web", "uplink") == {"icmp", "tcp/9", "tcp/25", "tcp/80", "tcp/443", "udp/53"}
    assert probed("uplink", "router") == {"icmp", "tcp/9", "tcp/22"}


def test_control_port_is_probed_everywhere_and_opened_by_no_rule() -> None:
    p = provider()
    cells = expect.expected_cells(p)
    names = [*ADDRESSES, "uplink"]
    pairs = {(s, d) for s in names for d in [*names, "router"] if s != d}
    control = [c for c in cells if c.service == Service("tcp", 9)]
    assert {(c.src, c.dst) for c in control} == pairs
    assert len(control) == len(pairs)
    # Only paths open on every port carry it (reached, but closed): intra-vDC in a, and a's egress.
    assert {(c.src, c.dst) for c in control if c.expected} == {
        ("a.web", "a.app"), ("a.app", "a.web"), ("a.web", "uplink"), ("a.app", "uplink"),
    }


def test_expected_cells_hold_open_and_blocked() -> None:
    cells = expect.expected_cells(provider())
    assert {c.expected for c in cells} == {True, False}
    assert len({(c.src, c.dst, c.service) for c in cells}) == len(cells)
    assert not [c for c in cells if c.src == c.dst]
    assert not [c for c in cells if c.dst == "router" and c.expected]
    opened = {(c.src, c.dst, str(c.service)) for c in cells if c.expected and c.src != "uplink" and c.dst != "uplink"
              and c.src.split(".")[0] != c.dst.split(".")[0]}  # fmt: skip
    assert opened == {("a.web", "b.db", "tcp/8080"), ("a.web", "b.cache", "tcp/8080"), ("a.web", "b.far", "tcp/8080"),
                      ("a.app", "b.db", "tcp/8080"), ("a.app", "b.cache", "tcp/8080"), ("a.app", "b.far", "tcp/8080")}  # fmt: skip


@pytest.mark.parametrize("focus", ["b.db", "a.web", "uplink"])
def test_focus_keeps_only_cells_touching_it(focus: str) -> None:
    p = provider()
    everything = expect.expected_cells(p)
    focused = expect.expected_cells(p, focus=focus)
    assert focused == [c for c in everything if focus in (c.src, c.dst)]
    assert {c.src for c in focused} | {c.dst for c in focused} == {*ADDRESSES, "uplink", "router"}
    assert 0 < len(focused) < len(everything)


# ---------------------------------------------------------------------------- hostile provider files


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("accounts: " + "[" * 100_000 + "]" * 100_000, "nested deeper than 32 levels"),
        ("x: &a [1, 2]\naccounts: [*a, *a]\nvdcs: []", "anchors and aliases are not allowed"),
        ("accounts: [{name: a}]\nvdcs: [{name: v, account: a, cidr: 10.0.0.0/24, egress: false, egress: true}]",
         "duplicate key 'egress'"),
    ],
)  # fmt: skip
def test_hostile_yaml_is_refused_before_it_is_built(text: str, message: str) -> None:
    assert message in model_error(text)


@pytest.mark.parametrize("cidr", ["127.0.0.0/29", "0.0.0.0/29", "255.255.255.0/29", "224.0.0.0/24", "192.0.2.0/24"])
def test_vdc_networks_are_tenant_address_space(cidr: str) -> None:
    doc = base_doc()
    put(("vdcs", 0, "cidr"), cidr)(doc)
    assert "must be a network of at most /29 inside 10.0.0.0/8" in model_error(yaml.safe_dump(doc))


@pytest.mark.parametrize("flows", [0, 15, 1_000_001, True, "many"])
def test_flow_limit_is_a_sane_number(flows: object) -> None:
    doc = base_doc()
    put(("policy", "max_flows_per_workload"), flows)(doc)
    assert "must be a number of connections from 16 to 1000000" in model_error(yaml.safe_dump(doc))


@pytest.mark.parametrize("uplink", ["224.0.0.0/30", "0.0.0.0/30", "127.0.0.0/30", "255.255.255.252/30", "169.254.0.0/30"])
def test_uplink_is_a_unicast_network(uplink: str) -> None:
    doc = base_doc()
    put(("provider", "uplink"), uplink)(doc)
    assert "is not a unicast network a router can use" in model_error(yaml.safe_dump(doc))


def test_dormant_table_is_drift() -> None:
    want = state.desired(render.full(provider()))
    have = copy.deepcopy(want)
    have.table_flags[BASE] = ["set"]
    assert state.drift(want, have) == ["table inet certify_base has flags (dormant turns every chain of it off; the model sets none)"]


def test_removes_is_true_only_when_something_goes() -> None:
    want = state.desired(render.full(provider()))
    have = copy.deepcopy(want)
    assert not state.removes(want, have)
    have.chains[(BASE, "base_input")].rules.pop()  # the kernel lacks a rule: applying adds it
    assert not state.removes(want, have)
    have = copy.deepcopy(want)
    have.elements[(BASE, "tenant_ports")].add('"vi-0000000000"')  # the kernel holds a port the model dropped
    assert state.removes(want, have)


def test_unlisted_ports_are_dropped_first() -> None:
    """Fail closed: the first provider rule drops what comes from a port the tenant sets do not list."""
    first = rules_of(render.full(provider()), "base_pre")[0]
    assert first["comment"] == render.UNKNOWN_PORT
    assert first["expr"][:3] == [
        {"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "lo"}},
        {"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "uplink"}},
        {"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "@tenant_ports"}},
    ] and first["expr"][-1] == {"drop": None}


# ---------------------------------------------------------------------------- spoofing cases


def _claimed(p: Provider, sender: str, address: str) -> Endpoint | None:
    """Whom a forged source address claims to be: a workload, or an unassigned address of the sender's vDC."""
    for e in expect.endpoints(p):
        if e.workload is not None and str(e.address) == address:
            return e
    vdc = p.vdcs[sender.split(".")[0]]
    if ipaddress.IPv4Address(address) in vdc.cidr:
        return Endpoint("unassigned", ipaddress.IPv4Address(address), Workload("", vdc.name, ipaddress.IPv4Address(address), ""))
    return None  # the uplink's address


@pytest.mark.parametrize("mutate", [pytest.param(every(), id="base"), pytest.param(DEFAULTS, id="defaults")])
def test_forged_packets_go_where_their_honest_source_arrives(mutate: Mutator) -> None:
    """Each forged packet targets a destination its claimed source reaches, so only anti-spoofing stops it."""
    p = provider(mutate)
    points = {str(e.address): e for e in expect.endpoints(p)}
    cases = verification.spoof_cases(p, expect.expected_cells(p))
    from_tenants = [c for c in cases if c.sender != expect.UPLINK]
    assert {c.sender for c in from_tenants} == {w.key for w in p.workloads}
    for c in from_tenants:
        sender, dst = points[str(p.workload(*c.sender.split(".")).address)], points[c.dst]
        assert dst.name != c.sender, c
        claimed = sender if c.src_mac or c.case.startswith("control") else _claimed(p, c.sender, c.src)
        if claimed is None:
            assert c.src == str(p.uplink_peer_address)
            claimed = sender  # the uplink's address opens nothing from a tenant port: it goes where the control goes
        assert expect.reachable(p, claimed, dst, Service("tcp", c.dport)), c
        assert c.expect_delivered is c.case.startswith("control")
    assert len({(c.sport, c.src, c.dst, c.dport) for c in cases}) == len(cases)


def test_a_sender_that_reaches_nothing_sends_no_control() -> None:
    """b.far (outside b's /28, no egress) reaches no one: its own address has no destination to prove anything at."""
    p = provider()
    cells = expect.expected_cells(p)
    assert not [c for c in cells if c.src == "b.far" and c.expected]
    far = [c for c in verification.spoof_cases(p, cells) if c.sender == "b.far"]
    # What it forges still goes where the claimed source reaches: a.web to a.app (every port), b.db and an
    # unassigned address inside b's /28 to b.cache on the db rule's port.
    assert [(c.case.split(" (")[0], c.src, c.dst, c.dport) for c in far] == [
        ("another tenant's address", "10.1.0.2", "10.1.0.6", 23),
        ("a neighbour's address", "10.2.0.2", "10.2.0.6", 5432),
        ("an unassigned address of its vDC", "10.2.0.10", "10.2.0.6", 5432),
    ]


def test_spoof_cases_outnumbering_the_marked_ports_are_still_told_apart() -> None:
    doc = base_doc()
    push(("vdcs",), {"name": "c", "account": "acme", "cidr": "10.3.0.0/24"})(doc)
    for i in range(180):
        push(("workloads",), {"name": f"n{i}", "vdc": "abc"[i % 3]})(doc)
    p = parse_doc(doc)
    cases = verification.spoof_cases(p, expect.expected_cells(p))
    assert len(cases) > len(agent.SPOOF_SPORTS)
    assert len({(c.sport, c.src, c.dst, c.dport) for c in cases}) == len(cases)
    assert {c.sport for c in cases} <= set(agent.SPOOF_SPORTS)


class _CutShortNft:
    """libnftables as nftables 1.0.6 behaves with a dormant table: now and then its JSON comes out cut short."""

    def __init__(self, replies):
        self.replies = list(replies)

    def cmd(self, command):
        return 0, self.replies.pop(0), ""


def _ruleset_answering(replies):
    from certify.isolation.ruleset import Ruleset

    ruleset = Ruleset.__new__(Ruleset)  # no namespace needed: only the listing's reading is under test
    ruleset._nft, ruleset.router_ns = _CutShortNft(replies), "cfytest"
    return ruleset


def test_a_listing_cut_short_is_read_again():
    good = '{"nftables": [{"table": {"family": "inet", "name": "t", "handle": 1, "flags": "dormant"}}]}'
    cut = good[: good.index('"dormant"')] + "\n"
    assert _ruleset_answering([cut, cut, good]).listing()["nftables"][0]["table"]["flags"] == "dormant"


def test_a_listing_that_never_reads_is_an_isolation_error():
    from certify.isolation.netns import IsolationError
    from certify.isolation.ruleset import LISTING_ATTEMPTS

    with pytest.raises(IsolationError, match=f"unreadable JSON for the ruleset of cfytest {LISTING_ATTEMPTS} times"):
        _ruleset_answering(['{"nftables": [\n'] * LISTING_ATTEMPTS).listing()
