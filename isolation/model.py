"""The provider model: accounts, vDCs, customer rules, provider policy, workloads.

Pure: a YAML document in, validated plain data out. Every error names the file
and the field, because libnftables silently ignores what it does not know and
resolves a malformed address as a host name: nothing unchecked may reach it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from certify.errors import UsageError

# Always fullmatch: '$' would also accept a trailing newline into port, chain and namespace names.
NAME = re.compile(r"[a-z][a-z0-9-]{0,30}[a-z0-9]|[a-z]")
PREFIX = re.compile(r"[a-z][a-z0-9]{0,11}")
MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
PROTOCOLS = ("tcp", "udp", "icmp")
# RFC 1918 and the shared address space (RFC 6598): never loopback, multicast or anything routed elsewhere.
TENANT_SPACES = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"))
# The verifier probes this port everywhere: no listener, no rule may open it.
CONTROL_PORT = 9


class ModelError(UsageError):
    """The provider file cannot be used: exit 2 with a one-line reason."""


@dataclass(frozen=True, order=True)
class Service:
    """A protocol and port a workload offers or a rule opens; ICMP echo has no port."""

    protocol: str
    port: int = 0

    def __str__(self) -> str:
        return self.protocol if self.protocol == "icmp" else f"{self.protocol}/{self.port}"

    @classmethod
    def parse(cls, text: object, where: str) -> Service:
        if not isinstance(text, str):
            raise ModelError(f"{where}: a service is written 'tcp/443', 'udp/53' or 'icmp', not {text!r}")
        proto, _, port = text.strip().lower().partition("/")
        if proto == "icmp" and not port:
            return cls("icmp")
        if proto not in ("tcp", "udp") or not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
            raise ModelError(f"{where}: {text!r} is not a service ('tcp/443', 'udp/53' or 'icmp')")
        return cls(proto, int(port))


@dataclass(frozen=True)
class Account:
    name: str
    contact: str = ""


@dataclass(frozen=True)
class Rule:
    """A customer's ingress allow rule on one vDC.

    ``source`` is ``uplink``, ``vdc:NAME`` (a vDC the provider pairs with this
    one) or a network inside this vDC.
    """

    vdc: str
    name: str
    protocol: str
    ports: tuple[int, ...]
    source: str
    source_net: ipaddress.IPv4Network | None
    targets: tuple[str, ...] | None  # workload names; None: every workload of the vDC

    def opens(self, service: Service) -> bool:
        return service.protocol == self.protocol and (self.protocol == "icmp" or service.port in self.ports)

    def applies_to(self, workload: str) -> bool:
        return self.targets is None or workload in self.targets

    def services(self) -> list[Service]:
        return [Service("icmp")] if self.protocol == "icmp" else [Service(self.protocol, p) for p in self.ports]


@dataclass(frozen=True)
class Vdc:
    name: str
    account: str
    cidr: ipaddress.IPv4Network
    egress: bool
    intra_open: bool  # every workload of the vDC reaches every other (the default, like a security group)
    rules: tuple[Rule, ...] = ()

    @property
    def chain_stem(self) -> str:
        # Names are [a-z0-9-]; '-' -> '_' is one-to-one and keeps nft keywords out of chain names.
        return "vdc_" + self.name.replace("-", "_")


@dataclass(frozen=True)
class Policy:
    """What tenants may never do; enforced in the provider table, beyond any customer rule."""

    cross_vdc: frozenset[tuple[str, str]] = frozenset()  # (from, to) the provider permits
    blocked_egress: tuple[Service, ...] = ()  # never reachable on the uplink from a tenant
    # Never opened to a workload from outside its own vDC: from the uplink or from any other vDC.
    # Between workloads of one vDC they are the tenant's own business (an open vDC reaches every port).
    blocked_ingress: tuple[Service, ...] = ()
    max_flows_per_workload: int = 4096  # connections the policy lets one workload open: conntrack is shared


@dataclass(frozen=True)
class Workload:
    name: str
    vdc: str
    address: ipaddress.IPv4Address
    mac: str
    services: tuple[Service, ...] = ()
    origin: str = "config"  # config | admission

    @property
    def key(self) -> str:
        return f"{self.vdc}.{self.name}"

    @property
    def link(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{self.address}/30", strict=False)

    @property
    def router_address(self) -> ipaddress.IPv4Address:
        hosts = list(self.link.hosts())
        return hosts[0] if hosts[0] != self.address else hosts[1]

    @property
    def port(self) -> str:
        """The router-side interface (15 characters at most, stable for a workload)."""
        return "vi-" + hashlib.sha256(self.key.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Provider:
    name: str
    prefix: str
    uplink: ipaddress.IPv4Network
    accounts: dict[str, Account]
    vdcs: dict[str, Vdc]
    policy: Policy
    workloads: tuple[Workload, ...] = ()
    registry: str | None = None  # path from the file, resolved by the caller
    certifier_keys: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=(), compare=False)

    # Names of what the project creates; teardown removes these and nothing else.
    @property
    def router_ns(self) -> str:
        return f"{self.prefix}-rtr"

    @property
    def uplink_ns(self) -> str:
        return f"{self.prefix}-uplink"

    def workload_ns(self, workload: Workload) -> str:
        return f"{self.prefix}-w-{workload.vdc}.{workload.name}"

    @property
    def uplink_router_address(self) -> ipaddress.IPv4Address:
        return list(self.uplink.hosts())[0]

    @property
    def uplink_peer_address(self) -> ipaddress.IPv4Address:
        return list(self.uplink.hosts())[1]

    def vdc_of(self, workload: Workload) -> Vdc:
        return self.vdcs[workload.vdc]

    def workload(self, vdc: str, name: str) -> Workload | None:
        return next((w for w in self.workloads if w.vdc == vdc and w.name == name), None)

    def with_workloads(self, extra: Iterable[Workload]) -> Provider:
        merged = list(self.workloads)
        for w in extra:
            check_workload_fits(self, merged, w)
            merged.append(w)
        return replace(self, workloads=tuple(merged))

    def without_workload(self, vdc: str, name: str) -> Provider:
        return replace(self, workloads=tuple(w for w in self.workloads if not (w.vdc == vdc and w.name == name)))


# ---------------------------------------------------------------------------- loading


def load_provider(path: str) -> Provider:
    try:
        with open(path, "rb") as f:
            data = f.read(4 * 1024 * 1024 + 1)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the provider file: {exc.strerror}") from None
    if len(data) > 4 * 1024 * 1024:
        raise ModelError(f"{path}: the provider file is larger than 4 MiB")
    return parse_provider(data, path)


def parse_provider(data: bytes | str, source: str = "<provider>") -> Provider:
    return _Loader(source).provider(_load_yaml(data, source))


MAX_DEPTH = 32
MAX_NODES = 500_000
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_yaml(data: bytes | str, source: str) -> Any:
    """YAML without the parts that hurt: no anchors or aliases (an alias bomb expands a small file into
    gigabytes), no duplicate keys (the last one would silently win), bounded nesting (libyaml's composer
    recurses in C, past Python's recursion guard). Checked on the event stream, which is iterative."""

    def fail(message: str, event: Any) -> ModelError:
        mark = getattr(event, "start_mark", None)
        return ModelError(f"{source}: {message}" + (f" (line {mark.line + 1})" if mark else ""))

    try:
        stack: list[list[Any]] = []  # per open collection: [is_mapping, expecting_key, keys seen]
        for count, event in enumerate(yaml.parse(data, Loader=_LOADER)):
            if count > MAX_NODES:
                raise fail("too large a document", event)
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise fail("anchors and aliases are not allowed", event)
            if isinstance(event, (yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent)) and stack and stack[-1][0]:
                frame = stack[-1]
                if frame[1] and isinstance(event, yaml.ScalarEvent):
                    if event.value in frame[2]:
                        raise fail(f"duplicate key {event.value!r}", event)
                    frame[2].add(event.value)
                frame[1] = not frame[1]
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                stack.append([isinstance(event, yaml.MappingStartEvent), True, set()])
                if len(stack) > MAX_DEPTH:
                    raise fail(f"nested deeper than {MAX_DEPTH} levels", event)
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                stack.pop()
        return yaml.load(data, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ModelError(f"{source}: not valid YAML{where}") from None
    except (ValueError, RecursionError):
        raise ModelError(f"{source}: not valid YAML") from None


class _Loader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> ModelError:
        return ModelError(f"{self.source}: {where}: {message}")

    def mapping(self, value: Any, where: str, allowed: set[str], required: Iterable[str] = ()) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, "must be a mapping")
        unknown = sorted(str(k) for k in value if k not in allowed)
        if unknown:
            raise self.fail(where, f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
        for key in required:
            if key not in value:
                raise self.fail(where, f"missing {key!r}")
        return value

    def sequence(self, value: Any, where: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(where, "must be a list")
        return value

    def name(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not NAME.fullmatch(value):
            raise self.fail(where, f"{value!r} is not a name (lower-case letters, digits and '-', at most 32, starting with a letter)")
        return value

    def network(self, value: Any, where: str) -> ipaddress.IPv4Network:
        try:
            net = ipaddress.IPv4Network(str(value), strict=True)
        except ValueError as exc:
            raise self.fail(where, f"{value!r} is not an IPv4 network ({exc})") from None
        return net

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, f"must be true or false, not {value!r}")
        return value

    def provider(self, doc: Any) -> Provider:
        top = self.mapping(doc, "top level", {"provider", "accounts", "vdcs", "policy", "workloads"}, ("accounts", "vdcs"))
        head = self.mapping(top.get("provider") or {}, "provider", {"name", "prefix", "uplink", "registry", "certifier_keys"})
        name = self.name(head.get("name", "provider"), "provider.name")
        prefix = head.get("prefix", "certify")
        if not isinstance(prefix, str) or not PREFIX.fullmatch(prefix):
            raise self.fail("provider.prefix", f"{prefix!r} must be 1-12 lower-case letters or digits, starting with a letter")
        uplink = self.network(head.get("uplink", "192.0.2.0/30"), "provider.uplink")
        if uplink.prefixlen != 30:
            raise self.fail("provider.uplink", "must be a /30 (the router and the uplink peer)")
        if uplink.is_multicast or uplink.is_loopback or uplink.is_link_local or uplink.is_unspecified or uplink.is_reserved \
                or uplink.overlaps(ipaddress.IPv4Network("0.0.0.0/8")):  # fmt: skip
            raise self.fail("provider.uplink", f"{uplink} is not a unicast network a router can use")
        registry = head.get("registry")
        if registry is not None and not isinstance(registry, str):
            raise self.fail("provider.registry", "must be a path")
        keys = tuple(self.sequence(head.get("certifier_keys"), "provider.certifier_keys"))
        if not all(isinstance(k, str) for k in keys):
            raise self.fail("provider.certifier_keys", "must be a list of paths to public keys")

        accounts: dict[str, Account] = {}
        for i, raw in enumerate(self.sequence(top["accounts"], "accounts")):
            item = self.mapping(raw, f"accounts[{i}]", {"name", "contact"}, ("name",))
            acc = Account(self.name(item["name"], f"accounts[{i}].name"), str(item.get("contact", "")))
            if acc.name in accounts:
                raise self.fail(f"accounts[{i}]", f"account {acc.name!r} is defined twice")
            accounts[acc.name] = acc
        if not accounts:
            raise self.fail("accounts", "at least one account (the chargeback owner of a vDC) is needed")

        policy = self.policy(top.get("policy") or {})
        raw_vdcs = self.sequence(top["vdcs"], "vdcs")
        names = [self.name(self.mapping(v, f"vdcs[{i}]", _VDC_KEYS, ("name",))["name"], f"vdcs[{i}].name") for i, v in enumerate(raw_vdcs)]
        vdcs: dict[str, Vdc] = {}
        for i, raw in enumerate(raw_vdcs):
            vdc = self.vdc(raw, f"vdcs[{i}]", accounts, set(names), policy)
            if vdc.name in vdcs:
                raise self.fail(f"vdcs[{i}]", f"vDC {vdc.name!r} is defined twice")
            vdcs[vdc.name] = vdc
        self.no_overlap(vdcs, uplink)
        for a, b in policy.cross_vdc:
            for end in (a, b):
                if end not in vdcs:
                    raise self.fail("policy.cross_vdc", f"names vDC {end!r}, which is not defined")

        base = Provider(name, prefix, uplink, accounts, vdcs, policy, (), registry, keys)
        workloads: list[Workload] = []
        pending = []
        for i, raw in enumerate(self.sequence(top.get("workloads"), "workloads")):
            item = self.mapping(raw, f"workloads[{i}]", {"name", "vdc", "address", "mac", "services"}, ("name", "vdc"))
            wname = self.name(item["name"], f"workloads[{i}].name")
            vdc_name = self.name(item["vdc"], f"workloads[{i}].vdc")
            if vdc_name not in vdcs:
                raise self.fail(f"workloads[{i}].vdc", f"{vdc_name!r} is not a defined vDC")
            services = tuple(parse_services(item.get("services"), f"{self.source}: workloads[{i}].services"))
            address = None
            if item.get("address") is not None:
                address = parse_workload_address(item["address"], vdcs[vdc_name], f"{self.source}: workloads[{i}].address")
            mac = None
            if item.get("mac") is not None:
                mac = parse_mac(item["mac"], f"{self.source}: workloads[{i}].mac")
            pending.append((i, wname, vdc_name, address, mac, services))
        # Explicit addresses first, so allocation never takes one a later entry names.
        for i, wname, vdc_name, address, mac, services in sorted(pending, key=lambda p: p[3] is None):
            if address is None:
                address = allocate_address(vdcs[vdc_name], [w.address for w in workloads])
                if address is None:
                    raise self.fail(f"workloads[{i}]", f"vDC {vdc_name} has no free /30 left")
            w = Workload(wname, vdc_name, address, mac or mac_for(address), services)
            try:
                check_workload_fits(base, workloads, w)
            except ModelError as exc:
                raise self.fail(f"workloads[{i}]", str(exc)) from None
            workloads.append(w)
        order = {p[1] + "." + p[2]: p[0] for p in pending}
        workloads.sort(key=lambda w: order[w.name + "." + w.vdc])
        notes = tuple(_unmatched_targets(vdcs, workloads))
        return replace(base, workloads=tuple(workloads), notes=notes)

    def policy(self, raw: Any) -> Policy:
        item = self.mapping(raw, "policy", {"cross_vdc", "blocked_egress", "blocked_ingress", "max_flows_per_workload"})
        pairs = set()
        for i, p in enumerate(self.sequence(item.get("cross_vdc"), "policy.cross_vdc")):
            pair = self.mapping(p, f"policy.cross_vdc[{i}]", {"from", "to"}, ("from", "to"))
            a, b = self.name(pair["from"], f"policy.cross_vdc[{i}].from"), self.name(pair["to"], f"policy.cross_vdc[{i}].to")
            if a == b:
                raise self.fail(f"policy.cross_vdc[{i}]", "a vDC always reaches itself; name two different vDCs")
            pairs.add((a, b))
        blocked = {}
        for key in ("blocked_egress", "blocked_ingress"):
            services = parse_services(item.get(key), f"{self.source}: policy.{key}")
            if any(s.protocol == "icmp" for s in services):
                raise self.fail(f"policy.{key}", "takes tcp/PORT and udp/PORT entries only")
            blocked[key] = tuple(services)
        flows = item.get("max_flows_per_workload", 4096)
        if isinstance(flows, bool) or not isinstance(flows, int) or not 16 <= flows <= 1_000_000:
            raise self.fail("policy.max_flows_per_workload", f"{flows!r} must be a number of connections from 16 to 1000000")
        return Policy(frozenset(pairs), blocked["blocked_egress"], blocked["blocked_ingress"], flows)

    def vdc(self, raw: Any, where: str, accounts: dict[str, Account], vdc_names: set[str], policy: Policy) -> Vdc:
        item = self.mapping(raw, where, _VDC_KEYS, ("name", "account", "cidr"))
        name = self.name(item["name"], f"{where}.name")
        where = f"vdcs[{name}]"
        if self.name(item["account"], f"{where}.account") not in accounts:
            raise self.fail(f"{where}.account", f"{item['account']!r} is not a defined account")
        cidr = self.network(item["cidr"], f"{where}.cidr")
        if not any(cidr.subnet_of(space) for space in TENANT_SPACES) or cidr.prefixlen > 29:
            raise self.fail(f"{where}.cidr", f"{cidr} must be a network of at most /29 inside 10.0.0.0/8, 172.16.0.0/12, "
                                             "192.168.0.0/16 or 100.64.0.0/10")  # fmt: skip
        intra = item.get("intra_vdc", "open")
        if intra not in ("open", "rules"):
            raise self.fail(f"{where}.intra_vdc", f"{intra!r} must be 'open' (every workload reaches every other) or 'rules'")
        egress = self.boolean(item.get("egress", False), f"{where}.egress")
        rules = []
        for i, r in enumerate(self.sequence(item.get("rules"), f"{where}.rules")):
            rules.append(self.rule(r, f"{where}.rules[{i}]", name, cidr, vdc_names, policy))
        seen = set()
        for r in rules:
            if r.name in seen:
                raise self.fail(f"{where}.rules", f"rule name {r.name!r} is used twice")
            seen.add(r.name)
        return Vdc(name, item["account"], cidr, egress, intra == "open", tuple(rules))

    def rule(self, raw: Any, where: str, vdc: str, cidr: ipaddress.IPv4Network, vdc_names: set[str], policy: Policy) -> Rule:
        item = self.mapping(raw, where, {"name", "protocol", "ports", "from", "to"}, ("name", "protocol", "from"))
        name = self.name(item["name"], f"{where}.name")
        proto = item["protocol"]
        if proto not in PROTOCOLS:
            raise self.fail(f"{where}.protocol", f"{proto!r} must be one of {', '.join(PROTOCOLS)}")
        ports: tuple[int, ...] = ()
        if proto == "icmp":
            if item.get("ports"):
                raise self.fail(f"{where}.ports", "icmp rules take no ports")
        else:
            raw_ports = self.sequence(item.get("ports"), f"{where}.ports")
            if not raw_ports:
                raise self.fail(f"{where}.ports", f"a {proto} rule needs at least one port")
            for p in raw_ports:
                if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= 65535:
                    raise self.fail(f"{where}.ports", f"{p!r} is not a port (1-65535)")
            ports = tuple(sorted(set(raw_ports)))
            if CONTROL_PORT in ports:
                raise self.fail(f"{where}.ports", f"port {CONTROL_PORT} is reserved as the verifier's closed control port")
        source = item["from"]
        source_net = None
        if source == "uplink":
            self.no_blocked_port(where, name, vdc, proto, ports, "the uplink", policy)
        elif isinstance(source, str) and source.startswith("vdc:"):
            other = source[4:]
            if other not in vdc_names:
                raise self.fail(f"{where}.from", f"{other!r} is not a defined vDC")
            if other == vdc:
                raise self.fail(f"{where}.from", f"use this vDC's network ({cidr}) for traffic from inside it")
            if (other, vdc) not in policy.cross_vdc:
                raise self.fail(f"{where}.from", f"the provider does not allow {other} -> {vdc} (add it to policy.cross_vdc)")
            self.no_blocked_port(where, name, vdc, proto, ports, source, policy)
        else:
            try:
                source_net = ipaddress.IPv4Network(str(source), strict=True)
            except ValueError:
                raise self.fail(f"{where}.from", f"{source!r} must be 'uplink', 'vdc:NAME' or a network inside {cidr}") from None
            if not source_net.subnet_of(cidr):
                raise self.fail(f"{where}.from", f"{source_net} is not inside this vDC ({cidr}); use 'vdc:NAME' or 'uplink'")
            source = str(source_net)
        targets = None
        if item.get("to") is not None:
            raw_targets = item["to"] if isinstance(item["to"], list) else [item["to"]]
            targets = tuple(self.name(t, f"{where}.to") for t in raw_targets)
        return Rule(vdc, name, proto, ports, source, source_net, targets)

    def no_blocked_port(self, where: str, rule: str, vdc: str, proto: str, ports: tuple[int, ...], source: str,
                        policy: Policy) -> None:
        """A rule from outside the vDC may not open a port the provider blocks (the kernel would drop it anyway)."""
        blocked = [f"{proto}/{p}" for p in ports if Service(proto, p) in policy.blocked_ingress]
        if blocked:
            raise self.fail(where, f"rule {rule!r} opens {', '.join(blocked)} to vDC {vdc} from {source}, which the provider "
                                   "never allows from outside the vDC (policy.blocked_ingress)")  # fmt: skip

    def no_overlap(self, vdcs: dict[str, Vdc], uplink: ipaddress.IPv4Network) -> None:
        # Classification is by address in one router namespace, so vDC networks may not overlap.
        items = sorted(vdcs.values(), key=lambda v: (int(v.cidr.network_address), v.cidr.prefixlen))
        for a, b in zip(items, items[1:]):
            if a.cidr.overlaps(b.cidr):
                raise self.fail("vdcs", f"{a.name} ({a.cidr}) and {b.name} ({b.cidr}) overlap; vDC networks on one host must not")
        for v in items:
            if v.cidr.overlaps(uplink):
                raise self.fail("vdcs", f"{v.name} ({v.cidr}) overlaps the uplink {uplink}")


_VDC_KEYS = {"name", "account", "cidr", "egress", "intra_vdc", "rules"}


def _unmatched_targets(vdcs: dict[str, Vdc], workloads: list[Workload]) -> Iterable[str]:
    present = {(w.vdc, w.name) for w in workloads}
    for vdc in vdcs.values():
        for rule in vdc.rules:
            for t in rule.targets or ():
                if (vdc.name, t) not in present:
                    yield f"rule {vdc.name}/{rule.name} names workload {t}, which is not in the file (it applies once admitted)"


# ---------------------------------------------------------------------------- values


def parse_services(value: Any, where: str) -> list[Service]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ModelError(f"{where}: must be a list such as [tcp/443, udp/53, icmp]")
    services = [Service.parse(v, where) for v in value]
    for s in services:
        if s.port == CONTROL_PORT:
            raise ModelError(f"{where}: port {CONTROL_PORT} is reserved as the verifier's closed control port")
    return sorted(set(services))


def parse_mac(value: Any, where: str) -> str:
    text = str(value).lower()
    if not MAC.fullmatch(text):
        raise ModelError(f"{where}: {value!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
    first = int(text[:2], 16)
    if first & 1:
        raise ModelError(f"{where}: {value} is a multicast MAC address")
    return text


def parse_workload_address(value: Any, vdc: Vdc, where: str) -> ipaddress.IPv4Address:
    try:
        address = ipaddress.IPv4Address(str(value))
    except ValueError:
        raise ModelError(f"{where}: {value!r} is not an IPv4 address") from None
    if address not in vdc.cidr:
        raise ModelError(f"{where}: {address} is not inside vDC {vdc.name} ({vdc.cidr})")
    link = ipaddress.IPv4Network(f"{address}/30", strict=False)
    if address in (link.network_address, link.broadcast_address):
        raise ModelError(f"{where}: {address} is the network or broadcast address of its /30 link")
    return address


def mac_for(address: ipaddress.IPv4Address) -> str:
    """A locally administered MAC derived from the (unique) address, as the recipe binds port, MAC and IP."""
    return "02:00:" + ":".join(f"{b:02x}" for b in address.packed)


def allocate_address(vdc: Vdc, taken: Iterable[ipaddress.IPv4Address]) -> ipaddress.IPv4Address | None:
    """The workload address of the first /30 of the vDC with nothing in use (router .1, workload .2)."""
    used = {ipaddress.IPv4Network(f"{a}/30", strict=False) for a in taken if a in vdc.cidr}
    for link in vdc.cidr.subnets(new_prefix=30):
        if link not in used:
            return link.network_address + 2
    return None


def check_workload_fits(provider: Provider, existing: Iterable[Workload], new: Workload) -> None:
    if new.vdc not in provider.vdcs:
        raise ModelError(f"workload {new.name}: vDC {new.vdc!r} is not defined")
    # Registry rows meet a provider file that may have changed since: hold them to the same rules.
    parse_workload_address(new.address, provider.vdcs[new.vdc], f"workload {new.key}")
    for w in existing:
        if (w.vdc, w.name) == (new.vdc, new.name):
            raise ModelError(f"workload {new.name} is already in vDC {new.vdc}")
        if w.link.overlaps(new.link):
            raise ModelError(f"workload {new.key} ({new.address}) shares the /30 link of {w.key} ({w.address})")
        if w.mac == new.mac:
            raise ModelError(f"workload {new.key} has the MAC address of {w.key} ({w.mac})")
        if w.port == new.port:
            raise ModelError(f"workload {new.key} and {w.key} hash to the same port name; rename one")
