"""Make the host match the model: reconcile, admit, evict, status, teardown.

Incremental changes are the normal path (one small transaction each); a full
reconcile flushes in place and makes the kernel match the model, reporting the
drift it found. Every change is read back before it counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from certify.errors import UsageError
from certify.isolation import netns, render, state
from certify.isolation.model import Provider, Workload
from certify.isolation.netns import IsolationError
from certify.isolation.ruleset import Ruleset


@dataclass
class Change:
    """What a reconcile did; empty lists when the host already matched."""

    created: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    ruleset_applied: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.created or self.removed or self.ruleset_applied)

    def as_dict(self) -> dict[str, Any]:
        return {"changed": self.changed, "created": self.created, "removed": self.removed, "drift": self.drift,
                "ruleset_applied": self.ruleset_applied}  # fmt: skip


def _read_back(ruleset: Ruleset, provider: Provider, want: state.RulesetState) -> None:
    problems = state.problems(want, ruleset.observed())
    if problems:
        raise IsolationError(f"the ruleset read back from {provider.router_ns} does not match the model: {problems[0]}")


def reconcile(provider: Provider) -> Change:
    """Router, uplink, one namespace per workload, and both tables exactly as the model says.

    If the kernel refuses the ruleset, the namespaces this call made are removed
    again; what stood before (namespaces and tables) is left as it was.
    """
    netns.require_root()
    change = Change()
    router_made = netns.ensure_router(provider)
    if router_made:
        change.created.append(provider.router_ns)
    try:
        _reconcile(provider, change)
    except BaseException:
        made = [n for n in change.created if n != provider.router_ns]
        for ns in made + ([provider.router_ns, provider.uplink_ns] if router_made else []):
            netns.remove_namespace(ns)
        raise
    return change


def _reconcile(provider: Provider, change: Change) -> None:
    netns.sync_blackholes(provider)
    wanted = {provider.workload_ns(w): w for w in provider.workloads}
    for ns in netns.project_namespaces(provider.prefix):
        if ns.startswith(f"{provider.prefix}-w-") and ns not in wanted:
            netns.remove_namespace(ns)
            change.removed.append(ns)
    ports = _router_ports(provider)
    for ns, w in wanted.items():
        if ports.get(w.port) == str(w.router_address) and netns.exists(ns):
            continue
        if netns.exists(ns):  # half made, or its address changed in the model
            netns.remove_namespace(ns)
            change.removed.append(ns)
        netns.add_workload(provider, w)
        change.created.append(ns)
    ruleset = Ruleset(provider.router_ns)
    have = ruleset.observed()
    want = state.desired(render.full(provider))
    change.drift = state.problems(want, have)
    if change.drift:
        managed = [name for (table, name) in have.chains if table == render.MANAGED]
        # The router namespace is the project's: a table it did not make could bypass or undo its own.
        foreign = [{"delete": {"table": {"family": family, "name": name}}} for family, name in have.foreign]
        ruleset.apply(foreign + render.full(provider, managed))
        change.ruleset_applied = True
        _read_back(ruleset, provider, want)
        if state.removes(want, have):
            netns.forget_flows(provider.router_ns)
    netns.enable_forwarding(provider)


def _router_ports(provider: Provider) -> dict[str, str]:
    """Router-side port name -> its IPv4 address (the first, which is the only one we give it), in one call."""
    done = netns.ip("-j", "-n", provider.router_ns, "-4", "addr", "show")
    ports: dict[str, str] = {}
    for link in json.loads(done.stdout or "[]"):
        for addr in link.get("addr_info", []):
            ports.setdefault(link["ifname"], addr.get("local"))
    return ports


def host_problems(provider: Provider) -> list[str]:
    """What the namespaces and links lack, next to the ruleset's drift: ports, forwarding, blackholes."""
    if not netns.exists(provider.router_ns):
        return ["isolation is not applied on this host"]
    out = [] if netns.exists(provider.uplink_ns) else [f"network namespace {provider.uplink_ns} is missing"]
    ports = _router_ports(provider)
    for w in provider.workloads:
        if not netns.exists(provider.workload_ns(w)):
            out.append(f"workload {w.key}: namespace {provider.workload_ns(w)} is missing")
        elif ports.get(w.port) != str(w.router_address):
            out.append(f"workload {w.key}: router port {w.port} is missing or does not hold {w.router_address}")
    if not netns.forwarding(provider):
        out.append(f"{provider.router_ns} does not forward")
    out += [f"no blackhole route for vDC network {net} (unassigned addresses would follow the default route)"
            for net in netns.missing_blackholes(provider)]  # fmt: skip
    return out


def admit(before: Provider, workload: Workload) -> Provider:
    """Add one workload incrementally; on any failure nothing of it is left. Returns the model with it."""
    netns.require_root()
    after = before.with_workloads([workload])
    if not netns.exists(before.router_ns):
        raise UsageError(f"isolation is not set up on this host ({before.router_ns} is missing): "
                             "run 'certify isolation apply --config FILE' first")  # fmt: skip
    ruleset = Ruleset(before.router_ns)
    vdc = after.vdc_of(workload)
    # The vDC's chains are made in the same transaction as everything else of a model holding it:
    # their presence says an incremental change applies. Listing more would cost ~8 ms an object at 1,000 vDCs.
    have = ruleset.observed_objects([("chain", render.MANAGED, render.vdc_chains(vdc)[0])])
    incremental = (render.MANAGED, render.vdc_chains(vdc)[0]) in have.chains
    netns.add_workload(after, workload)
    try:
        if incremental:
            ruleset.apply(render.admit(after, workload))
            _read_back_workload(ruleset, after, workload, present=True)
        else:
            reconcile(after)
    except BaseException:
        undo(before, workload)
        raise
    return after


def _read_back_workload(ruleset: Ruleset, provider: Provider, workload: Workload, present: bool) -> None:
    """Read back exactly what admitting or evicting one workload changed: its port bindings, and its vDC's
    chains when a rule names it. Not whole tables: the provider's vDC sets hold thousands of intervals."""
    vdc = provider.vdc_of(workload)
    rerendered = render.rule_targets(vdc, workload.name)
    objects = [("set", render.BASE, "tenant_ports"), ("set", render.BASE, "port_src")]
    objects += [("chain", render.MANAGED, name) for name in render.vdc_chains(vdc)] if rerendered else []
    have = ruleset.observed_objects(objects)
    for name, element in (("port_src", render.port_binding(workload)), ("tenant_ports", workload.port)):
        if (state.canon(element) in have.elements.get((render.BASE, name), set())) != present:
            raise IsolationError(f"read-back: {workload.key} is {'missing from' if present else 'still in'} set {name}")
    if rerendered:
        want = state.desired(render.skeleton(render.vdc_chains(vdc)) + render.vdc_rules(provider, vdc))
        for name in render.vdc_chains(vdc):
            key = (render.MANAGED, name)
            if want.chains[key].rules != have.chains.get(key, state.ChainState()).rules:
                raise IsolationError(f"read-back: chain {name} does not hold the rules of the model")


def undo(before: Provider, workload: Workload) -> None:
    """Best effort back to ``before``: the namespace goes, the kernel is reconciled to the model without it."""
    netns.remove_namespace(before.workload_ns(workload))
    if netns.exists(before.router_ns):
        reconcile(before)


def evict(after: Provider, workload: Workload) -> None:
    """Remove one workload (``after`` is the model without it): its bindings, its namespace, its flows.

    Once its port leaves the sets the provider table drops whatever still comes
    from it, so each step leaves the host closed, never open.
    """
    netns.require_root()
    if not netns.exists(after.router_ns):
        netns.remove_namespace(after.workload_ns(workload))
        return
    if workload.vdc not in after.vdcs:  # its vDC left the provider file: only a full reconcile knows what to drop
        netns.remove_namespace(after.workload_ns(workload))
        reconcile(after)
        return
    ruleset = Ruleset(after.router_ns)
    try:
        ruleset.apply(render.evict(after, workload))
        _read_back_workload(ruleset, after, workload, present=False)
    except IsolationError:
        # The kernel had drifted (an element already gone): make it match the model instead.
        netns.remove_namespace(after.workload_ns(workload))
        reconcile(after)
    netns.remove_namespace(after.workload_ns(workload))
    netns.forget_flows(after.router_ns, str(workload.address))


def status(provider: Provider) -> dict[str, Any]:
    """The provider's view: namespaces, drift, counters of the provider table."""
    present = netns.project_namespaces(provider.prefix)
    wanted = [provider.router_ns, provider.uplink_ns, *(provider.workload_ns(w) for w in provider.workloads)]
    out: dict[str, Any] = {
        "router": provider.router_ns,
        "namespaces": {"missing": [n for n in wanted if n not in present], "unexpected": [n for n in present if n not in wanted]},
        "workloads": [{"vdc": w.vdc, "name": w.name, "address": str(w.address), "mac": w.mac, "port": w.port,
                       "origin": w.origin, "services": [str(s) for s in w.services],
                       "present": netns.exists(provider.workload_ns(w))} for w in provider.workloads],  # fmt: skip
        "drift": [],
        "counters": {},
        "ruleset_digest": render.digest(provider),
    }
    out["drift"] = host_problems(provider)
    if not netns.exists(provider.router_ns):
        return out
    have = Ruleset(provider.router_ns).observed()
    out["drift"] += state.problems(state.desired(render.full(provider)), have)
    out["counters"] = {f"{t} {c}": {k: {"packets": p, "bytes": b} for k, (p, b) in ch.counters.items()}
                       for (t, c), ch in sorted(have.chains.items()) if t == render.BASE}  # fmt: skip
    return out


def customer_view(provider: Provider, vdc_name: str) -> dict[str, Any]:
    """One vDC's own rules, desired and effective with counters; never the provider table or another vDC."""
    vdc = provider.vdcs[vdc_name]
    desired = [describe_rule(r) for r in vdc.rules]
    if vdc.intra_open:
        desired.insert(0, "allow everything between workloads of this vDC")
    desired.append("allow egress to the uplink" if vdc.egress else "no egress to the uplink")
    effective: dict[str, list[dict[str, Any]]] = {}
    if netns.exists(provider.router_ns):
        have = Ruleset(provider.router_ns).observed()
        for name in render.vdc_chains(vdc):
            chain = have.chains.get((render.MANAGED, name))
            effective[name] = [] if chain is None else [
                {"rule": comment, "packets": chain.counters.get(comment, (0, 0))[0], "bytes": chain.counters.get(comment, (0, 0))[1]}
                for comment, _ in chain.rules
            ]  # fmt: skip
    workloads = [{"name": w.name, "address": str(w.address), "services": [str(s) for s in w.services]}
                 for w in provider.workloads if w.vdc == vdc_name]  # fmt: skip
    return {"vdc": vdc.name, "account": vdc.account, "cidr": str(vdc.cidr), "workloads": workloads,
            "desired": desired, "effective": effective}  # fmt: skip


def describe_rule(rule: Any) -> str:
    what = "icmp echo" if rule.protocol == "icmp" else f"{rule.protocol}/{','.join(str(p) for p in rule.ports)}"
    source = {"uplink": "the uplink"}.get(rule.source, rule.source.replace("vdc:", "vDC "))
    to = "every workload" if rule.targets is None else ", ".join(rule.targets)
    return f"{rule.name}: allow {what} from {source} to {to}"


def teardown(prefix: str) -> list[str]:
    netns.require_root()
    return netns.teardown(prefix)
