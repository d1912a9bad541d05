"""Command line of admission and isolation: admit, evict, admissions, isolation apply|verify|status|teardown.

Exit codes: 0 done (admitted, verified), 1 refused or not verified, 2 usage or
provider-file error, 3 the kernel failed an operation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from certify.errors import UsageError
from certify.isolation import admission, deploy, netns, verify
from certify.isolation.model import Provider, load_provider, parse_services
from certify.isolation.registry import Registry

COMMANDS = ("admit", "evict", "admissions", "isolation")
DEFAULT_STATE_DIR = "/var/lib/certify"


def add_parsers(sub: Any) -> None:
    def common(p: argparse.ArgumentParser, fmt: bool = True) -> None:
        p.add_argument("--config", required=True, metavar="PROVIDER.yaml", help="the provider file (see examples/provider.yaml)")
        p.add_argument("--registry", metavar="DB", help="admission registry (default: provider.registry, else "
                       f"{DEFAULT_STATE_DIR}/PROVIDER.admissions.sqlite)")  # fmt: skip
        if fmt:
            p.add_argument("--format", default="text", choices=["text", "json"])

    admit_p = sub.add_parser("admit", help="admit a certified artifact into a vDC behind verified isolation")
    admit_p.add_argument("artifact")
    admit_p.add_argument("--certificate", required=True, metavar="CERT", help="the signed record 'certify scan --certificate' wrote")
    admit_p.add_argument("--vdc", required=True, metavar="NAME")
    admit_p.add_argument("--name", metavar="WORKLOAD", help="workload name (default: from the artifact's file name)")
    admit_p.add_argument("--service", action="append", default=[], metavar="PROTO/PORT",
                         help="a port the appliance serves, e.g. tcp/443 (repeatable)")  # fmt: skip
    admit_p.add_argument("--key", action="append", default=[], metavar="PUBLIC_KEY",
                         help="certifier public key (repeatable; default: provider.certifier_keys)")  # fmt: skip
    common(admit_p)
    evict_p = sub.add_parser("evict", help="remove an admitted workload and its isolation")
    evict_p.add_argument("workload")
    evict_p.add_argument("--vdc", required=True, metavar="NAME")
    common(evict_p)
    list_p = sub.add_parser("admissions", help="list admitted workloads (from the registry)")
    list_p.add_argument("--all", action="store_true", help="include evicted admissions and every event")
    common(list_p)
    iso = sub.add_parser("isolation", help="per-vDC network isolation: apply, verify, status, teardown")
    iso_sub = iso.add_subparsers(dest="isolation_command", required=True, parser_class=type(iso))
    apply_p = iso_sub.add_parser("apply", help="make namespaces and rulesets match the provider file (idempotent)")
    common(apply_p)
    verify_p = iso_sub.add_parser("verify", help="probe every pair with real packets and compare with the model")
    verify_p.add_argument("-o", "--output", metavar="FILE", help="also write the JSON result here")
    verify_p.add_argument("--no-spoof", action="store_true", help="skip the forged-packet cases")
    common(verify_p)
    status_p = iso_sub.add_parser("status", help="drift and counters; with --vdc, that tenant's own view only")
    status_p.add_argument("--vdc", metavar="NAME", help="the customer view of one vDC (never the provider table)")
    common(status_p)
    teardown_p = iso_sub.add_parser("teardown", help="remove every namespace, link and table this provider file's prefix made")
    common(teardown_p, fmt=False)


def _registry_path(args: argparse.Namespace, provider: Provider) -> str:
    if args.registry:
        return args.registry
    if provider.registry:
        return os.path.join(os.path.dirname(os.path.abspath(args.config)), provider.registry)
    return os.path.join(DEFAULT_STATE_DIR, f"{provider.name}.admissions.sqlite")


def _open_registry(args: argparse.Namespace, provider: Provider) -> Registry:
    path = _registry_path(args, provider)
    if not args.registry and not provider.registry:
        try:
            os.makedirs(DEFAULT_STATE_DIR, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{DEFAULT_STATE_DIR}: cannot make the state directory ({exc.strerror}); pass --registry DB") from None
    return Registry(path)


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    if getattr(args, "format", "text") == "json":
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def run(args: argparse.Namespace) -> int:
    provider = load_provider(args.config)
    for note in provider.notes:
        print(f"certify: note: {note}", file=sys.stderr)
    if args.command != "admissions":  # reading the registry needs no privileges
        netns.require_root()
    if args.command == "admissions":
        registry = _open_registry(args, provider)
        try:
            return _run(args, provider, registry)
        finally:
            registry.close()
    with netns.host_lock(provider.prefix):
        if args.command == "isolation" and args.isolation_command == "teardown":
            removed = deploy.teardown(provider.prefix)
            print(f"removed {len(removed)} namespace(s){': ' + ', '.join(removed) if removed else ''} (tables went with {provider.router_ns})")
            return 0
        registry = _open_registry(args, provider)
        try:
            return _run(args, provider, registry)
        finally:
            registry.close()


def _run(args: argparse.Namespace, provider: Provider, registry: Registry) -> int:
    if args.command == "admit":
        keys = args.key or [os.path.join(os.path.dirname(os.path.abspath(args.config)), k) for k in provider.certifier_keys]
        services = tuple(parse_services(args.service, "--service"))
        try:
            done = admission.admit(provider, registry, args.artifact, args.certificate, args.vdc, keys, args.name, services)
        except admission.AdmissionRefused as exc:
            print(f"certify: not admitted: {exc}", file=sys.stderr)
            if args.format == "json":
                print(json.dumps({"admitted": False, "reason": str(exc)}, indent=2))
            return 1
        r = done.record
        head = "already admitted" if done.already else "admitted"
        text = (f"{head}: {r['workload']} in vDC {r['vdc']} (account {r['account']}) at {r['address']} "
                f"[{r['mac']}], artifact {r['artifact_name']} sha256 {r['artifact_sha256'][:16]}..., "
                f"certificate {r['certificate_id'][:23]}..., ruleset {r['ruleset_digest'][:23]}...")  # fmt: skip
        if done.verification is not None:
            text = verify.summary(done.verification) + text
        _print(args, {"admitted": not done.already, "already_admitted": done.already, "admission": r}, text)
        return 0
    if args.command == "evict":
        row = admission.evict(provider, registry, args.vdc, args.workload)
        _print(args, {"evicted": row}, f"evicted: {row['workload']} from vDC {row['vdc']} ({row['address']})")
        return 0
    if args.command == "admissions":
        rows = registry.history() if args.all else registry.active()
        data: dict[str, Any] = {"admissions": rows}
        if args.all:
            data["events"] = registry.events()
        lines = [f"{'VDC':<16} {'WORKLOAD':<20} {'ADDRESS':<15} {'ACCOUNT':<12} {'ADMITTED':<20} {'EVICTED':<20} ARTIFACT"]
        for r in rows:
            lines.append(f"{r['vdc']:<16} {r['workload']:<20} {r['address']:<15} {r['account']:<12} {r['admitted_at']:<20} "
                         f"{r['evicted_at'] or '-':<20} {r['artifact_name']} {r['artifact_sha256'][:12]}")  # fmt: skip
        for e in data.get("events", []):
            lines.append(f"{e['at']} {e['action']} {e['vdc']}/{e['workload']}: {e['outcome']} {e['detail']}")
        _print(args, data, "\n".join(lines) if rows or args.all else "no admissions")
        return 0
    model = admission.model_with_admissions(provider, registry)
    sub = args.isolation_command
    if sub == "apply":
        change = deploy.reconcile(model)
        lines = [f"drift found: {d}" for d in change.drift]
        lines += [f"created {n}" for n in change.created] + [f"removed {n}" for n in change.removed]
        lines.append("applied: the host matches the model" if change.changed else "no changes: the host already matches the model")
        _print(args, change.as_dict(), "\n".join(lines))
        return 0
    if sub == "verify":
        if args.output:  # refused before minutes of probing, not after
            parent = os.path.dirname(os.path.abspath(args.output))
            if not os.path.isdir(parent) or not os.access(parent, os.W_OK) or os.path.isdir(args.output):
                raise UsageError(f"{args.output}: cannot write the result there (no such directory, or not writable)")
        result = verify.verify(model, spoofing=not args.no_spoof)
        data = verify.as_json(result)
        if args.output:
            try:
                with open(args.output, "w", encoding="utf-8") as f:
                    json.dump(data, f, indent=2, sort_keys=True)
            except OSError as exc:
                raise UsageError(f"{args.output}: cannot write the result: {exc.strerror}") from None
        _print(args, data, verify.summary(result))
        return 0 if result.ok else 1
    if sub == "status":
        if args.vdc:
            if args.vdc not in model.vdcs:
                raise UsageError(f"{args.vdc}: no such vDC in the provider file")
            view = deploy.customer_view(model, args.vdc)
            lines = [f"vDC {view['vdc']} (account {view['account']}, {view['cidr']})", "workloads:"]
            lines += [f"  {w['name']} {w['address']} {' '.join(w['services'])}" for w in view["workloads"]] or ["  none"]
            lines += ["desired rules:"] + [f"  {d}" for d in view["desired"]] + ["effective rules (packets, bytes):"]
            for chain, rules in view["effective"].items():
                lines += [f"  {chain}:"] + [f"    {r['rule']}: {r['packets']} packets, {r['bytes']} bytes" for r in rules]
            _print(args, view, "\n".join(lines))
            return 0
        st = deploy.status(model)
        lines = [f"router namespace {st['router']}; ruleset {st['ruleset_digest']}"]
        lines += [f"  {w['vdc']}/{w['name']} {w['address']} {w['port']} ({w['origin']}){'' if w['present'] else ' MISSING'}"
                  for w in st["workloads"]]  # fmt: skip
        lines += [f"missing namespace: {n}" for n in st["namespaces"]["missing"]]
        lines += [f"unexpected namespace: {n}" for n in st["namespaces"]["unexpected"]]
        lines += [f"drift: {d}" for d in st["drift"]] or ["no drift: the kernel matches the model"]
        for chain, counters in st["counters"].items():
            lines += [f"{chain}:"] + [f"  {k}: {v['packets']} packets" for k, v in counters.items()]
        _print(args, st, "\n".join(lines))
        return 0 if not st["drift"] and not st["namespaces"]["missing"] else 1
    raise UsageError(f"unknown isolation command {sub}")
