"""Isolation on a real kernel: namespaces, both tables, packets, admission. Needs root.

Every test works under its own namespace prefix and tears it down even when it
fails; a namespace left behind fails the module.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path
from unittest import mock

import pytest
from conftest import run_certify

from certify.isolation import admission, deploy, netns, render, state
from certify.isolation import verify as verification
from certify.isolation.agent import SPOOF_SPORTS
from certify.isolation.model import Rule, parse_provider
from certify.isolation.registry import Registry
from certify.model import Report, Severity, Verdict
from certify.policy.certificate import build_record, keygen, load_private_key

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and nftables need root")

MODEL = """
provider: {{name: kernel-test, prefix: {prefix}, uplink: 192.0.2.0/30}}
accounts: [{{name: alpha}}, {{name: beta}}]
vdcs:
  - name: a
    account: alpha
    cidr: 10.61.1.0/24
    egress: true
    rules:
      - {{name: web, protocol: tcp, ports: [80], from: uplink, to: [a1]}}
  - name: b
    account: beta
    cidr: 10.61.2.0/24
    egress: false
    intra_vdc: rules
    rules:
      - {{name: db-local, protocol: tcp, ports: [5432], from: 10.61.2.0/28, to: [b1]}}
      - {{name: db-from-a, protocol: tcp, ports: [5432], from: "vdc:a", to: [b1]}}
policy:
  cross_vdc: [{{from: a, to: b}}]
  blocked_egress: [tcp/25]
  blocked_ingress: [tcp/23]
workloads:
  - {{name: a1, vdc: a, services: [tcp/80]}}
  - {{name: a2, vdc: a}}
  - {{name: b1, vdc: b, services: [tcp/5432]}}
  - {{name: b2, vdc: b, address: 10.61.2.6}}
"""


# Prefixes this run used. Another checkout may run this module at the same time: its namespaces are not
# ours to judge or remove, so each prefix is unique to the test and the process.
USED: set[str] = set()


@pytest.fixture(scope="module", autouse=True)
def no_leftovers():
    yield
    names = os.listdir(netns.NETNS_DIR) if os.path.isdir(netns.NETNS_DIR) else []
    left = [n for n in names if any(n.startswith(p) for p in USED)]
    for name in left:
        netns.remove_namespace(name)
    assert not left, f"namespaces left behind: {left}"


@pytest.fixture
def prefix(request):
    name = "cfyt" + hashlib.sha256(f"{request.node.name} {os.getpid()}".encode()).hexdigest()[:6]
    USED.add(name)
    yield name
    netns.teardown(name)
    assert netns.project_namespaces(name) == []


def _provider(prefix: str, text: str = MODEL):
    return parse_provider(MODEL.format(prefix=prefix) if text is MODEL else text, "test.yaml")


def _nft(ns: str, *args: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "nft", *args], check=True, capture_output=True, text=True).stdout


def _ruleset(ns: str) -> tuple:
    """The ruleset with handles kept and counter values dropped: what must not change."""
    have = state.observed(json.loads(_nft(ns, "-j", "-a", "list", "ruleset")))
    return ({k: (c.hook, c.prio, c.policy, c.rules) for k, c in have.chains.items()}, have.elements)


def _handle(ns: str, table: str, chain: str, comment: str) -> int:
    listing = json.loads(_nft(ns, "-j", "-a", "list", "chain", "inet", table, chain))
    return next(o["rule"]["handle"] for o in listing["nftables"] if "rule" in o and o["rule"].get("comment") == comment)


def _bad_cells(result: verification.Result) -> set[tuple[str, str, str]]:
    return {(c.src, c.dst, str(c.service)) for c in result.mismatches}


def test_apply_is_idempotent_verified_and_repairs_drift(prefix):
    p = _provider(prefix)
    first = deploy.reconcile(p)
    assert first.ruleset_applied and p.router_ns in first.created and len(first.created) == 5
    listing = _ruleset(p.router_ns)
    second = deploy.reconcile(p)
    assert not second.changed and second.drift == []
    assert _ruleset(p.router_ns) == listing  # applying twice changes nothing (counters aside)

    result = verification.verify(p)
    assert result.ok, verification.summary(result)
    assert any(c.expected for c in result.cells) and not all(c.expected for c in result.cells)
    assert {s.case.split(" (")[0] for s in result.spoof} >= {"control: own address and MAC", "another tenant's address",
                                                             "an unassigned address of its vDC", "the uplink's address",
                                                             "its own address with a forged MAC"}  # fmt: skip
    assert result.anti_spoof_delta >= result.anti_spoof_expected > 0

    # Mutation: the managed table lets everything through. The provider table still holds
    # every cross-vDC and port invariant; the verifier names exactly the cells that leak.
    handle = _handle(p.router_ns, render.MANAGED, "managed_forward", "default deny")
    _nft(p.router_ns, "delete", "rule", "inet", render.MANAGED, "managed_forward", "handle", str(handle))
    _nft(p.router_ns, "chain", "inet", render.MANAGED, "managed_forward", "{ policy accept ; }")
    drift = deploy.status(p)["drift"]
    assert any("managed_forward: policy is 'accept'" in d for d in drift), drift
    broken = verification.verify(p, spoofing=False)
    assert not broken.ok
    bad = _bad_cells(broken)
    assert ("b.b1", "uplink", "tcp/80") in bad  # b has no egress
    assert ("uplink", "a.a1", "tcp/9") in bad  # the control port, never opened
    assert ("b.b2", "b.b1", "icmp") in bad  # b only opens tcp/5432 inside itself
    assert ("a.a1", "b.b2", "tcp/9") in bad  # a -> b is a provider-allowed pair: only the customer's rules held it
    assert not [c for c in bad if c[0].startswith("b.") and c[1].startswith("a.")]  # b -> a is no pair: held
    assert not [c for c in bad if (c[0], c[2]) == ("uplink", "tcp/23") or (c[1], c[2]) == ("uplink", "tcp/25")]  # policy held
    assert not [c for c in bad if c[2] == "tcp/23" and c[0].split(".")[0] != c[1].split(".")[0]]  # from any other vDC too
    assert "!" in verification.truth_table(broken)

    repaired = deploy.reconcile(p)
    assert repaired.ruleset_applied and repaired.drift
    assert deploy.status(p)["drift"] == []
    assert verification.verify(p, spoofing=False).ok


def test_anti_spoof_removed_is_caught(prefix):
    p = _provider(prefix)
    deploy.reconcile(p)
    handle = _handle(p.router_ns, render.BASE, "base_pre", render.ANTI_SPOOF)
    _nft(p.router_ns, "delete", "rule", "inet", render.BASE, "base_pre", "handle", str(handle))
    result = verification.verify(p)
    leaked = {(s.sender, s.case.split(" (")[0]) for s in result.spoof_failures}
    # Inside a, any source address of a is accepted: an unassigned one and a forged MAC now get through.
    assert {("a.a1", "an unassigned address of its vDC"), ("a.a1", "its own address with a forged MAC")} <= leaked
    # Every forged case went where its claimed source's honest packets arrive, so with the rule gone each one
    # arrives: none proved only the counter. The uplink's address opens nothing from a tenant port.
    forged = [s for s in result.spoof if s.forged and s.sender != "uplink"]
    assert {s.case.split(" (")[0] for s in forged} >= {"another tenant's address", "a neighbour's address"}
    assert [s for s in forged if not s.delivered] == [s for s in forged if s.case == "the uplink's address"]
    assert not [s for s in result.spoof_failures if s.expect_delivered]  # the honest controls still arrive
    assert result.anti_spoof_delta == 0 and not result.ok


def test_cross_vdc_pair_removed_from_provider_table_is_caught(prefix):
    p = _provider(prefix)
    deploy.reconcile(p)
    # Without the a->b pair in the provider set, the customer's db-from-a rule must stop working.
    _nft(p.router_ns, "delete", "element", "inet", render.BASE, "vdc_pairs", "{ 10.61.1.0/24 . 10.61.2.0/24 }")
    result = verification.verify(p, spoofing=False)
    assert _bad_cells(result) == {("a.a1", "b.b1", "tcp/5432"), ("a.a2", "b.b1", "tcp/5432")}


def test_failed_transaction_changes_nothing(prefix):
    p = _provider(prefix)
    deploy.reconcile(p)
    before = _ruleset(p.router_ns)
    ruleset = __import__("certify.isolation.ruleset", fromlist=["Ruleset"]).Ruleset(p.router_ns)
    bad = render.full(p) + [{"add": {"rule": {"family": "inet", "table": render.MANAGED, "chain": "no_such_chain", "expr": [{"accept": None}]}}}]
    with pytest.raises(netns.IsolationError, match="nothing changed"):
        ruleset.apply([{"flush": {"chain": {"family": "inet", "table": render.BASE, "name": "base_pre"}}}, *bad])
    assert _ruleset(p.router_ns) == before


def test_teardown_removes_only_its_own(prefix):
    p = _provider(prefix)
    deploy.reconcile(p)
    other = prefix + "x-rtr"  # shares the first letters, not the prefix
    netns.ip("netns", "add", other)
    try:
        removed = deploy.teardown(prefix)
        assert set(removed) == {p.router_ns, p.uplink_ns, *(p.workload_ns(w) for w in p.workloads)}
        assert netns.project_namespaces(prefix) == [] and netns.exists(other)
    finally:
        netns.remove_namespace(other)


# ---------------------------------------------------------------------------- admission


def _certified(tmp_path: Path, name: str = "appliance.qcow2"):
    """A minimal signed record for real bytes, made by the same code 'certify scan --certificate' uses."""
    artifact = tmp_path / name
    artifact.write_bytes(os.urandom(4096))
    private, public = keygen(str(tmp_path / "signing"))
    report = Report(tool_version="test", artifact_path=str(artifact), artifact_kind="disk",
                    artifact_sha256=hashlib.sha256(artifact.read_bytes()).hexdigest(), verdict=Verdict.PASS,
                    profile="default", threshold=Severity.HIGH)  # fmt: skip
    record = build_record(report, load_private_key(private), now=datetime.datetime(2026, 11, 30, tzinfo=datetime.timezone.utc))
    cert = tmp_path / "appliance.cert.json"
    cert.write_text(json.dumps(record))
    return artifact, cert, public


@pytest.fixture
def applied(prefix, tmp_path):
    """A provider file, its registry and a certified artifact, with the isolation applied through the CLI."""
    config = tmp_path / "provider.yaml"
    config.write_text(MODEL.format(prefix=prefix))
    artifact, cert, public = _certified(tmp_path)
    db = tmp_path / "admissions.sqlite"
    base = ["--config", str(config), "--registry", str(db)]
    done = run_certify("isolation", "apply", *base)
    assert done.returncode == 0, done.stderr
    return config, artifact, cert, public, db, base


def test_admit_verify_record_evict(prefix, applied):
    _, artifact, cert, public, db, base = applied

    done = run_certify("admit", str(artifact), "--certificate", str(cert), "--vdc", "a", "--key", public,
                       "--service", "tcp/8443", "--format", "json", *base)  # fmt: skip
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)["admission"]
    assert (row["workload"], row["vdc"], row["account"]) == ("appliance", "a", "alpha")
    assert row["artifact_sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert row["address"] == "10.61.1.10" and row["services"] == ["tcp/8443"]  # a1, a2 hold the first two /30s
    assert row["ruleset_digest"].startswith("sha256:") and row["certificate_id"].startswith("sha256:")
    assert row["verification"]["mismatches"] == 0 and row["verification"]["cells"] > 0
    p = _provider(prefix)
    assert netns.exists(f"{prefix}-w-a.appliance")
    assert deploy.status(admission.model_with_admissions(p, Registry(str(db))))["drift"] == []

    again = run_certify("admit", str(artifact), "--certificate", str(cert), "--vdc", "a", "--key", public, *base)
    assert again.returncode == 0 and again.stdout.startswith("already admitted")
    listed = json.loads(run_certify("admissions", "--format", "json", *base).stdout)["admissions"]
    assert [(r["vdc"], r["workload"]) for r in listed] == [("a", "appliance")]

    gone = run_certify("evict", "appliance", "--vdc", "a", *base)
    assert gone.returncode == 0, gone.stderr
    assert not netns.exists(f"{prefix}-w-a.appliance")
    assert deploy.status(p)["drift"] == []
    assert json.loads(run_certify("admissions", "--format", "json", *base).stdout)["admissions"] == []
    history = json.loads(run_certify("admissions", "--all", "--format", "json", *base).stdout)
    assert history["admissions"][0]["evicted_at"] and [e["action"] for e in history["events"]] == ["admit", "evict"]


def test_admit_refuses_other_bytes_and_bad_input(prefix, applied):
    config, artifact, cert, public, _, base = applied
    artifact.write_bytes(artifact.read_bytes() + b"x")
    refused = run_certify("admit", str(artifact), "--certificate", str(cert), "--vdc", "a", "--key", public, *base)
    assert refused.returncode == 1 and "not the certified" in refused.stderr and refused.stderr.count("\n") == 1
    assert not netns.exists(f"{prefix}-w-a.appliance")
    assert json.loads(run_certify("admissions", "--format", "json", *base).stdout)["admissions"] == []
    unknown = run_certify("admit", str(artifact), "--certificate", str(cert), "--vdc", "nope", "--key", public, *base)
    assert unknown.returncode == 2 and "nope: no such vDC" in unknown.stderr
    config.write_text(MODEL.format(prefix=prefix).replace("egress: true", "egres: true"))
    typo = run_certify("isolation", "apply", *base)
    assert typo.returncode == 2 and "unknown key 'egres'" in typo.stderr and "Traceback" not in typo.stderr


def test_failed_verification_undoes_the_admission(prefix, tmp_path):
    p = _provider(prefix)
    deploy.reconcile(p)
    artifact, cert, public = _certified(tmp_path)
    registry = Registry(str(tmp_path / "admissions.sqlite"))
    failing = verification.Result(cells=[], observed={}, problems=["simulated: a cell leaked"])
    with mock.patch.object(verification, "verify", return_value=failing):
        with pytest.raises(admission.AdmissionRefused, match="admission undone"):
            admission.admit(p, registry, str(artifact), str(cert), "a", [public])
    assert not netns.exists(f"{prefix}-w-a.appliance")
    assert deploy.status(p)["drift"] == []  # the kernel is back to the model without it
    assert registry.active() == [] and registry.events()[-1]["outcome"] == "refused"


def test_customer_view_shows_only_its_own_vdc(prefix, applied, tmp_path):
    base = applied[-1]
    view = run_certify("isolation", "status", "--vdc", "b", *base)
    assert view.returncode == 0
    text = view.stdout
    assert "vdc_b_in" in text and "db-from-a" in text and "packets" in text
    for secret in ("certify_base", "provider:", "vdc_a_", "a1", "anti-spoof", "10.61.1."):
        assert secret not in text, secret
    provider_view = run_certify("isolation", "status", "--format", "json", *base)
    assert provider_view.returncode == 0 and json.loads(provider_view.stdout)["drift"] == []
    out = tmp_path / "verify.json"
    proof = run_certify("isolation", "verify", "--no-spoof", "--format", "json", "-o", str(out), *base)
    assert proof.returncode == 0, proof.stdout[-2000:]
    data = json.loads(out.read_text())
    assert data == json.loads(proof.stdout) and data["verified"] and data["mismatches"] == []
    assert {c["observed"] for c in data["cells"]} == {"open", "blocked"} and "src\\dst" in data["truth_table"]
    cell = next(c for c in data["cells"] if (c["src"], c["dst"], c["service"]) == ("uplink", "a.a1", "tcp/80"))
    assert cell["expected"] == "open" and cell["kernel"] == "open" and cell["scapy"] == "open"


SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 80)); s.listen(1)
print("ready", flush=True)
conn, _ = s.accept()
conn.settimeout(30)
while data := conn.recv(64):
    conn.sendall(data)
"""
CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], 80), timeout=3)
c.settimeout(2)
for line in sys.stdin:
    try:
        c.sendall(b"ping"); print("echo" if c.recv(64) == b"ping" else "other", flush=True)
    except OSError:
        print("cut", flush=True)
"""


def test_removing_a_rule_cuts_established_flows(prefix):
    p = _provider(prefix)
    deploy.reconcile(p)
    a1 = p.workload("a", "a1")
    python = __import__("sys").executable
    server = subprocess.Popen(["ip", "netns", "exec", p.workload_ns(a1), python, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    client = None
    try:
        assert server.stdout.readline().strip() == "ready"
        client = subprocess.Popen(["ip", "netns", "exec", p.uplink_ns, python, "-c", CLIENT, str(a1.address)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip

        def exchange() -> str:
            client.stdin.write("go\n")
            client.stdin.flush()
            return client.stdout.readline().strip()

        assert exchange() == "echo"
        revoked = parse_provider(MODEL.format(prefix=prefix).replace("      - {name: web, protocol: tcp, ports: [80], from: uplink, to: [a1]}\n", ""))
        assert deploy.reconcile(revoked).ruleset_applied
        assert exchange() == "cut"  # the established flow did not outlive the rule
    finally:
        for proc in (client, server):
            if proc is not None:
                proc.kill()
                proc.wait()


def test_a_port_missing_from_the_sets_is_dropped_and_reported(prefix):
    """Half admitted or half evicted: a live port the sets do not list must not be a way around anti-spoof."""
    p = _provider(prefix)
    deploy.reconcile(p)
    b1 = p.workload("b", "b1")
    _nft(p.router_ns, "delete", "element", "inet", render.BASE, "port_src", f"{{ {b1.port} . {b1.mac} . {b1.address} }}")
    _nft(p.router_ns, "delete", "element", "inet", render.BASE, "tenant_ports", f"{{ {b1.port} }}")
    result = verification.verify(p)
    assert any("set certify_base tenant_ports" in problem for problem in result.problems)
    from_b1 = [s for s in result.spoof if s.sender == "b.b1"]
    assert from_b1 and not [s for s in from_b1 if s.delivered]  # forged or not, nothing from it arrives
    assert not result.ok


def test_dormant_and_foreign_tables_are_drift_and_apply_repairs_them(prefix):
    p = _provider(prefix)
    deploy.reconcile(p)
    _nft(p.router_ns, "add", "table", "inet", render.BASE, "{ flags dormant ; }")
    _nft(p.router_ns, "add", "table", "ip", "sneaky")
    drift = deploy.status(p)["drift"]
    assert "table inet certify_base has flags (dormant turns every chain of it off; the model sets none)" in drift
    assert "table ip sneaky in the router namespace is not the provider's" in drift
    assert deploy.reconcile(p).ruleset_applied
    assert deploy.status(p)["drift"] == []
    assert "sneaky" not in _nft(p.router_ns, "list", "tables")


def test_links_forwarding_and_blackholes_are_checked_and_repaired(prefix):
    p = _provider(prefix)
    deploy.reconcile(p)
    a2 = p.workload("a", "a2")
    netns.ip("-n", p.router_ns, "link", "del", a2.port)  # takes the workload's eth0 with it
    netns.ip("-n", p.router_ns, "route", "del", "blackhole", "10.61.2.0/24")
    with netns.entered(p.router_ns), open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write("0")
    drift = deploy.status(p)["drift"]
    assert f"workload a.a2: router port {a2.port} is missing or does not hold {a2.router_address}" in drift
    assert f"{p.router_ns} does not forward" in drift
    assert any("no blackhole route for vDC network 10.61.2.0/24" in d for d in drift)
    assert any("does not forward" in problem for problem in verification.verify(p, spoofing=False).problems)
    repaired = deploy.reconcile(p)
    assert p.workload_ns(a2) in repaired.created
    assert deploy.status(p)["drift"] == []


def test_unassigned_tenant_addresses_do_not_leave_by_the_uplink(prefix):
    p = _provider(prefix)
    deploy.reconcile(p)
    a1 = p.workload("a", "a1")
    python = __import__("sys").executable
    agent = [python, "-m", "certify.isolation.agent"]
    sniffer = subprocess.Popen(["ip", "netns", "exec", p.uplink_ns, *agent, "listen", '{"tcp": [], "udp": []}'],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert sniffer.stdout.readline().strip() == "ready"
        honest, to_a, to_b = SPOOF_SPORTS[:3]
        packets = [{"src": str(a1.address), "dst": dst, "dport": 80, "sport": sport}
                   for dst, sport in ((str(p.uplink_peer_address), honest), ("10.61.1.99", to_a), ("10.61.2.99", to_b))]
        job = {"targets": [], "spoof": {"packets": packets, "copies": 2, "gateway": str(a1.router_address)}}
        subprocess.run(["ip", "netns", "exec", p.workload_ns(a1), *agent, "probe"], input=json.dumps(job), text=True,
                       check=True, capture_output=True)  # fmt: skip
        __import__("time").sleep(0.5)
        sniffer.stdin.write("report\n")
        sniffer.stdin.flush()
        seen = {m["sport"] for m in json.loads(sniffer.stdout.readline())["marked"]}
        assert seen == {honest}  # the honest packet to the uplink arrives; unassigned tenant addresses go nowhere
    finally:
        sniffer.kill()
        sniffer.wait()


def test_evict_works_when_the_provider_file_now_disagrees(prefix, applied):
    config, artifact, cert, public, _, base = applied
    bad_name = run_certify("admit", str(artifact), "--certificate", str(cert), "--vdc", "a", "--key", public,
                           "--name", "UPPER;$(id)", *base)  # fmt: skip
    assert bad_name.returncode == 2 and "--name" in bad_name.stderr
    assert not [n for n in netns.project_namespaces(prefix) if "UPPER" in n]
    done = run_certify("admit", str(artifact), "--certificate", str(cert), "--vdc", "a", "--key", public, *base)
    assert done.returncode == 0, done.stderr
    # The file now gains a workload without an address: it is allocated the admission's /30.
    config.write_text(MODEL.format(prefix=prefix) + "  - {name: a3, vdc: a}\n")
    status = run_certify("isolation", "status", *base)
    assert status.returncode == 2 and "give the provider file's workload an explicit address" in status.stderr
    gone = run_certify("evict", "appliance", "--vdc", "a", *base)
    assert gone.returncode == 0, gone.stderr
    assert run_certify("isolation", "apply", *base).returncode == 0
    assert run_certify("isolation", "status", *base).returncode == 0


HOLDER = """
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 80)); s.listen(64)
held = []
print("ready", flush=True)
while True:
    conn, _ = s.accept()
    held.append(conn)
"""
OPENER = """
import select, socket, sys
# First a burst of attempts the policy refuses, more than the cap, left pending so their SYNs keep coming;
# then connections it allows, one at a time.
refused = []
for dst, port in [(d, int(p)) for d, p in (t.split(":") for t in sys.argv[3].split(","))] * 16 if sys.argv[3] else []:
    s = socket.socket(); s.setblocking(False); s.connect_ex((dst, port)); refused.append(s)
held, outcomes = [], ""
for _ in range(int(sys.argv[2])):
    try:
        held.append(socket.create_connection((sys.argv[1], 80), timeout=1)); outcomes += "o"
    except OSError:
        outcomes += "x"
answered = len(select.select([], refused, [], 0)[1])  # a SYN that got through would have met a RST
print(outcomes, len(refused), answered, flush=True)
"""


def test_a_workload_cannot_fill_the_routers_conntrack_table(prefix):
    """The cap counts the connections the policy lets through; a burst of refused attempts uses none of it."""
    p = _provider(prefix, MODEL.format(prefix=prefix).replace("  blocked_ingress: [tcp/23]\n",
                                                              "  blocked_ingress: [tcp/23]\n  max_flows_per_workload: 16\n"))
    assert p.policy.max_flows_per_workload == 16
    deploy.reconcile(p)
    a1, b1, b2 = p.workload("a", "a1"), p.workload("b", "b1"), p.workload("b", "b2")
    # Refused by the provider table (a blocked egress port) and by the managed one (a permitted pair, no rule).
    refused = f"{p.uplink_peer_address}:25,{b1.address}:9,{b2.address}:5432"
    python = __import__("sys").executable
    holder = subprocess.Popen(["ip", "netns", "exec", p.uplink_ns, python, "-c", HOLDER], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        opener = ["ip", "netns", "exec", p.workload_ns(a1), python, "-c", OPENER, str(p.uplink_peer_address)]
        done = subprocess.run([*opener, "18", refused], capture_output=True, text=True, timeout=90)
        outcomes, attempts, answered = done.stdout.split()
        assert int(attempts) == 48 > p.policy.max_flows_per_workload and answered == "0"
        # Right after the burst, the whole allowance: each of the first 16 connects, and not one more.
        assert outcomes == "o" * 16 + "xx"
    finally:
        holder.kill()
        holder.wait()


DEFAULTS = """
provider: {{name: kernel-defaults, prefix: {prefix}, uplink: 192.0.2.0/30}}
accounts: [{{name: alpha}}, {{name: gamma}}]
vdcs:
  - {{name: a, account: alpha, cidr: 10.62.1.0/24, egress: true}}
  - name: c                            # neither egress nor intra_vdc: the defaults
    account: gamma
    cidr: 10.62.3.0/24
    rules:
      - {{name: mail, protocol: tcp, ports: [25], from: "vdc:a"}}   # a blocked_egress port, between tenants
policy:
  cross_vdc: [{{from: a, to: c}}]
  blocked_egress: [tcp/25]
  blocked_ingress: [tcp/23]
workloads:
  - {{name: a1, vdc: a}}
  - {{name: c1, vdc: c, services: [tcp/23, tcp/25]}}
  - {{name: c2, vdc: c}}
"""


def test_defaults_and_blocked_ports_hold_on_the_kernel(prefix):
    """What the README leaves to defaults, observed; and a blocked port stays closed to another vDC even when a
    rule the loader refuses (made by hand here) opens it."""
    p = parse_provider(DEFAULTS.format(prefix=prefix), "defaults.yaml")
    c = p.vdcs["c"]
    telnet = Rule("c", "telnet", "tcp", (23,), "vdc:a", None, None)
    p = replace(p, vdcs={**p.vdcs, "c": replace(c, rules=(*c.rules, telnet))})
    assert "vdc c rule telnet" in json.dumps(render.full(p))
    deploy.reconcile(p)
    result = verification.verify(p, spoofing=False)
    assert result.ok, verification.summary(result)
    seen = {(c.src, c.dst, str(c.service)): result.observation(c) for c in result.cells}
    reach = {key: ob.verdict for key, ob in seen.items()}
    assert reach[("c.c1", "uplink", "tcp/80")] is False  # egress absent: blocked
    assert reach[("c.c2", "uplink", "udp/53")] is False
    assert reach[("c.c2", "c.c1", "tcp/25")] is True  # intra_vdc absent: open
    assert reach[("c.c2", "c.c1", "tcp/23")] is True  # a blocked port inside an open vDC: open
    assert reach[("a.a1", "c.c1", "tcp/23")] is False  # ... from another vDC: closed, whatever the rule says
    assert reach[("uplink", "c.c1", "tcp/23")] is False
    assert reach[("a.a1", "c.c1", "tcp/25")] is True  # a rule between tenants on a blocked_egress port: open
    assert reach[("a.a1", "uplink", "tcp/25")] is False  # ... to the uplink: blocked
    assert seen[("c.c2", "c.c1", "tcp/9")].kernel == "closed"  # the control port: reached only where every port is
    assert reach[("a.a1", "c.c1", "tcp/9")] is False


BOUND_CLIENT = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", int(sys.argv[2])))
s.settimeout(3)
try:
    s.connect((sys.argv[1], 80)); print("connected")
except OSError as exc:
    print("failed", exc)
"""


def test_a_blocked_port_refuses_connections_to_it_not_replies(prefix):
    """A connection opened from a blocked port is answered: the answer is no connection to that port.
    a1 opens one from tcp/23 (blocked_ingress) to the uplink; the uplink opens one from tcp/25 (blocked_egress)
    to a1's web port, which the customer opened to it."""
    p = _provider(prefix)
    deploy.reconcile(p)
    a1 = p.workload("a", "a1")
    python = __import__("sys").executable
    for server_ns, client_ns, server, sport in ((p.uplink_ns, p.workload_ns(a1), p.uplink_peer_address, 23),
                                                (p.workload_ns(a1), p.uplink_ns, a1.address, 25)):  # fmt: skip
        holder = subprocess.Popen(["ip", "netns", "exec", server_ns, python, "-c", HOLDER], stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "ready"
            done = subprocess.run(["ip", "netns", "exec", client_ns, python, "-c", BOUND_CLIENT, str(server), str(sport)],
                                  capture_output=True, text=True, timeout=30)  # fmt: skip
            assert done.stdout.strip() == "connected", (sport, done.stdout + done.stderr)
        finally:
            holder.kill()
            holder.wait()
    result = verification.verify(p, focus="a.a1", spoofing=False)
    assert result.ok, verification.summary(result)
    # Connections to those ports are still refused: to a1's tcp/23 from outside vDC a, to the uplink's tcp/25.
    to_blocked = [c for c in result.cells if (c.dst, str(c.service)) in (("a.a1", "tcp/23"), ("uplink", "tcp/25")) and c.src != "a.a2"]
    assert len(to_blocked) == 4 and not [c for c in to_blocked if result.observation(c).verdict is not False]


def test_a_refused_first_apply_leaves_nothing_behind(prefix):
    p = _provider(prefix)
    refused = mock.patch.object(__import__("certify.isolation.ruleset", fromlist=["Ruleset"]).Ruleset, "apply",
                                side_effect=netns.IsolationError("nftables rejected the transaction (simulated)"))  # fmt: skip
    with refused, pytest.raises(netns.IsolationError, match="simulated"):
        deploy.reconcile(p)
    assert netns.project_namespaces(prefix) == []
