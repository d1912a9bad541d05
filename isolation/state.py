"""Ruleset state as plain data, from the desired commands or from the kernel's JSON listing.

Pure. Comparing the two is how every apply is read back (libnftables ignores
unknown JSON keys, so "rc 0" proves little) and how drift is found.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from certify.isolation.render import BASE, BASE_CHAINS, FAMILY, MANAGED

TABLES = (BASE, MANAGED)


@dataclass
class ChainState:
    hook: str | None = None
    prio: int | None = None
    policy: str | None = None
    rules: list[tuple[str, str]] = field(default_factory=list)  # (comment, canonical expression)
    counters: dict[str, tuple[int, int]] = field(default_factory=dict)  # comment -> (packets, bytes)


@dataclass
class RulesetState:
    tables: set[str] = field(default_factory=set)
    table_flags: dict[str, list[str]] = field(default_factory=dict)  # any flag (dormant: every chain of it off)
    foreign: list[tuple[str, str]] = field(default_factory=list)  # (family, name) of other tables in the router namespace
    chains: dict[tuple[str, str], ChainState] = field(default_factory=dict)
    elements: dict[tuple[str, str], set[str]] = field(default_factory=dict)


def canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _strip_counters(expr: Any) -> Any:
    if isinstance(expr, dict):
        return {k: (None if k == "counter" else _strip_counters(v)) for k, v in expr.items()}
    if isinstance(expr, list):
        return [_strip_counters(x) for x in expr]
    return expr


def _counter(expr: list[Any]) -> tuple[int, int] | None:
    for e in expr:
        if isinstance(e, dict) and isinstance(e.get("counter"), dict):
            return int(e["counter"].get("packets", 0)), int(e["counter"].get("bytes", 0))
    return None


def desired(cmds: list[dict[str, Any]]) -> RulesetState:
    """What the kernel holds after these commands run on an empty namespace (flushes are no-ops there)."""
    state = RulesetState()
    for cmd in cmds:
        verb, body = next(iter(cmd.items()))
        kind, obj = next(iter(body.items()))
        if verb == "delete" and kind == "chain":
            state.chains.pop((obj["table"], obj["name"]), None)
        if verb != "add":
            continue
        if kind == "table":
            state.tables.add(obj["name"])
        elif kind == "chain":
            chain = state.chains.setdefault((obj["table"], obj["name"]), ChainState())
            chain.hook, chain.prio, chain.policy = obj.get("hook"), obj.get("prio"), obj.get("policy")
        elif kind in ("set", "map"):
            state.elements.setdefault((obj["table"], obj["name"]), set())
        elif kind == "element":
            state.elements.setdefault((obj["table"], obj["name"]), set()).update(canon(e) for e in obj["elem"])
        elif kind == "rule":
            state.chains[(obj["table"], obj["chain"])].rules.append((obj.get("comment", ""), canon(obj["expr"])))
    return state


def observed(listing: dict[str, Any]) -> RulesetState:
    """The state of our two tables in a ``list table`` JSON output (other tables are not ours)."""
    state = RulesetState()
    for item in listing.get("nftables", []):
        kind, obj = next(iter(item.items()))
        if kind == "metainfo":
            continue
        table = obj.get("name") if kind == "table" else obj.get("table")
        if obj.get("family") != FAMILY or table not in TABLES:
            if kind == "table":  # anything else hooked into the router could bypass or undo ours
                state.foreign.append((str(obj.get("family")), str(table)))
            continue
        if kind == "table":
            state.tables.add(table)
            # nft 1.0.6 prints a garbage string as the flags' value: only their presence is reliable.
            if "flags" in obj:
                state.table_flags[table] = ["set"]
        elif kind == "chain":
            chain = state.chains.setdefault((table, obj["name"]), ChainState())
            chain.hook, chain.prio, chain.policy = obj.get("hook"), obj.get("prio"), obj.get("policy")
        elif kind in ("set", "map"):
            elems = obj.get("elem", [])
            state.elements[(table, obj["name"])] = {canon(e) for e in (elems if isinstance(elems, list) else [elems])}
        elif kind == "rule":
            chain = state.chains.setdefault((table, obj["chain"]), ChainState())
            comment = obj.get("comment", "")
            chain.rules.append((comment, canon(_strip_counters(obj["expr"]))))
            counter = _counter(obj["expr"])
            if counter is not None:
                chain.counters[comment] = counter
    return state


def drift(want: RulesetState, have: RulesetState) -> list[str]:
    """Every way the kernel differs from the model, one line each; empty when they match."""
    out = [f"table {family} {name} in the router namespace is not the provider's" for family, name in have.foreign]
    for table in TABLES:
        if table in want.tables and table not in have.tables:
            out.append(f"table {FAMILY} {table} is missing")
        elif have.table_flags.get(table):
            out.append(f"table {FAMILY} {table} has flags (dormant turns every chain of it off; the model sets none)")
    if any("is missing" in line for line in out):
        return out
    for key in sorted(set(want.chains) | set(have.chains)):
        name = f"chain {key[0]} {key[1]}"
        w, h = want.chains.get(key), have.chains.get(key)
        if h is None:
            out.append(f"{name} is missing")
            continue
        if w is None:
            out.append(f"{name} is not in the model")
            continue
        for attr in ("hook", "prio", "policy"):
            if getattr(w, attr) != getattr(h, attr):
                out.append(f"{name}: {attr} is {getattr(h, attr)!r}, the model says {getattr(w, attr)!r}")
        if w.rules != h.rules:
            want_n, have_n = Counter(w.rules), Counter(h.rules)
            missing = [c for c, _ in (want_n - have_n).elements()]
            extra = [c for c, _ in (have_n - want_n).elements()]
            detail = "; ".join(
                [f"missing or changed: {c!r}" for c in missing] + [f"not in the model: {c!r}" for c in extra]
            ) or "rules are in another order"
            out.append(f"{name}: {detail}")
    for key in sorted(set(want.elements) | set(have.elements)):
        name = f"set {key[0]} {key[1]}"
        w_el, h_el = want.elements.get(key), have.elements.get(key)
        if h_el is None:
            out.append(f"{name} is missing")
        elif w_el is None:
            out.append(f"{name} is not in the model")
        elif w_el != h_el:
            out.append(f"{name}: {len(w_el - h_el)} element(s) missing, {len(h_el - w_el)} not in the model")
    return out


def removes(want: RulesetState, have: RulesetState) -> bool:
    """Whether making ``have`` into ``want`` takes anything away (a rule, an element, a chain).

    Only then may an established flow have lost its allowance, so only then is
    conntrack state dropped: a flush also costs allowed UDP flows their state.
    """
    for key, chain in have.chains.items():
        wanted = want.chains.get(key)
        if wanted is None or Counter(chain.rules) - Counter(wanted.rules):
            return True
    return any(elements - want.elements.get(key, set()) for key, elements in have.elements.items())


def problems(want: RulesetState, have: RulesetState) -> list[str]:
    """Base chains off their hook, priority or policy first, then every other difference."""
    return base_chain_problems(have) + drift(want, have)


def base_chain_problems(have: RulesetState) -> list[str]:
    """The read-back assertion that matters most: every base chain on its hook, priority and policy."""
    out = []
    for c in BASE_CHAINS:
        h = have.chains.get((c.table, c.name))
        if h is None:
            out.append(f"base chain {c.table} {c.name} is missing")
        elif (h.hook, h.prio, h.policy) != (c.hook, c.prio, c.policy):
            out.append(f"base chain {c.table} {c.name} is on {h.hook}/{h.prio}/{h.policy}, not {c.hook}/{c.prio}/{c.policy}")
    return out
