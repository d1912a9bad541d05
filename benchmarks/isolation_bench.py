"""Isolation speed: admit/evict at 1,000 vDCs, a full reconcile of 1,000 vDCs, a 10-workload verification.

Run as root: .venv/bin/python benchmarks/isolation_bench.py [--vdcs 1000]
Prints figures; it asserts nothing. Uses the prefix 'cfyb' and tears it down.
Targets (issue): admit < 100 ms at 1,000 vDCs; reconcile of 1,000 vDCs in one
transaction < 1 s; a 10-workload verification in seconds.
"""

from __future__ import annotations

import argparse
import statistics
import time

from certify.isolation import deploy, netns, render, state
from certify.isolation import verify as verification
from certify.isolation.model import Workload, mac_for, parse_provider
from certify.isolation.ruleset import Ruleset

PREFIX = "cfyb"


def big_model(n: int) -> str:
    lines = [f"provider: {{name: bench, prefix: {PREFIX}}}", "accounts: [{name: a1}, {name: a2}, {name: a3}]", "vdcs:"]
    for i in range(n):
        lines.append(f"  - {{name: v{i}, account: a{i % 3 + 1}, cidr: 10.{100 + i // 256}.{i % 256}.0/24, egress: {str(i % 2 == 0).lower()}, "
                     f"rules: [{{name: https, protocol: tcp, ports: [443], from: uplink}}]}}")
    return "\n".join(lines) + "\n"


def small_model() -> str:
    return f"""
provider: {{name: bench, prefix: {PREFIX}}}
accounts: [{{name: a}}, {{name: b}}]
vdcs:
  - {{name: x, account: a, cidr: 10.70.1.0/24, egress: true, rules: [{{name: web, protocol: tcp, ports: [443], from: uplink}}]}}
  - {{name: y, account: a, cidr: 10.70.2.0/24, rules: [{{name: api, protocol: tcp, ports: [8080], from: "vdc:x"}}]}}
  - {{name: z, account: b, cidr: 10.70.3.0/24, intra_vdc: rules}}
policy: {{cross_vdc: [{{from: x, to: y}}], blocked_egress: [tcp/25]}}
workloads:
""" + "".join(f"  - {{name: w{i}, vdc: {'xyz'[i % 3]}, services: [tcp/443, tcp/8080]}}\n" for i in range(10))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vdcs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    netns.require_root()
    netns.teardown(PREFIX)
    try:
        t = time.perf_counter()
        provider = parse_provider(big_model(args.vdcs))
        print(f"model of {args.vdcs} vDCs parsed in {ms(time.perf_counter() - t)}")
        t = time.perf_counter()
        cmds = render.full(provider)
        print(f"render: {len(cmds)} commands in {ms(time.perf_counter() - t)}")
        deploy.reconcile(provider)  # cold create
        ruleset = Ruleset(provider.router_ns)
        replace, validate, total = [], [], []
        for _ in range(args.rounds):
            t = time.perf_counter()
            cmds = render.full(provider, ruleset.managed_chains())
            ruleset.apply(cmds)  # a dry run validates, then the one transaction
            total.append(time.perf_counter() - t)
            replace.append(ruleset.last_timings["transaction"])
            validate.append(ruleset.last_timings["validation"])
        print(f"full reconcile of {args.vdcs} vDCs, flush in place: the transaction {ms(statistics.median(replace))} "
              f"[target < 1 s]; its dry-run validation {ms(statistics.median(validate))}; "
              f"with listing and render {ms(statistics.median(total))} (medians of {args.rounds})")
        t = time.perf_counter()
        drift = state.drift(state.desired(render.full(provider)), ruleset.observed())
        print(f"read-back and drift check: {ms(time.perf_counter() - t)} ({len(drift)} differences)")

        admits, evicts = [], []
        model = provider
        for i in range(args.rounds):
            vdc = provider.vdcs[f"v{(i * 97) % args.vdcs}"]
            address = vdc.cidr.network_address + 2
            w = Workload(f"bench{i}", vdc.name, address, mac_for(address), ())
            t = time.perf_counter()
            after = deploy.admit(model, w)
            admits.append(time.perf_counter() - t)
            t = time.perf_counter()
            deploy.evict(model, w)
            evicts.append(time.perf_counter() - t)
        print(f"admit one workload (namespace + veth + addressing + rules + read-back) at {args.vdcs} vDCs: "
              f"median {ms(statistics.median(admits))}, max {ms(max(admits))}  [target < 100 ms]")
        print(f"evict one workload at {args.vdcs} vDCs: median {ms(statistics.median(evicts))}")
        del after
        netns.teardown(PREFIX)

        small = parse_provider(small_model())
        deploy.reconcile(small)
        t = time.perf_counter()
        result = verification.verify(small)
        took = time.perf_counter() - t
        print(f"verification of a {len(small.workloads)}-workload matrix: {len(result.cells)} cells, "
              f"{len(result.spoof)} spoof cases, {took:.1f} s, {'verified' if result.ok else 'NOT verified'}")
    finally:
        netns.teardown(PREFIX)


if __name__ == "__main__":
    main()
