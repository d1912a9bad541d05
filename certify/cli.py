"""Command line: argument parsing and exit codes, nothing else.

Exit codes (a public contract): 0 certified, 1 not certified, 2 input rejected
or usage error, 3 internal error or a scan past its --timeout, 130/143 ended by
SIGINT/SIGTERM, 141 a reader of standard output that left early (``| head``).
``verify-certificate``: 0 valid, 1 invalid. ``judge`` exits as ``scan`` would
on the facts it reads; a facts file it cannot read is a usage error (2). ``batch``: the worst outcome of its
uploads (0 all certified, 1 any not certified or rejected, 3 any not judged),
2 when nothing was scanned for a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
import traceback
from dataclasses import replace
from typing import NoReturn

from certify import __version__
from certify.batch.command import run_batch_command
from certify.bundle.files import Limits
from certify.bundle.ovf import MAX_BYTES as OVF_MAX_BYTES
from certify.bundle.sanitize_ovf import sanitize_ovf
from certify.bundle.sanitize_vmx import render_vmx, sanitize_vmx
from certify.bundle.truststore import load_trust_store
from certify.bundle.vmx import MAX_BYTES as VMX_MAX_BYTES
from certify.bundle.vmx import parse_vmx
from certify.errors import CertifyError, ParseError, UsageError, first_line
from certify.isolation import cli as isolation_cli
from certify.model import Report, Severity, Verdict
from certify.factsjson import FactsEncodeError, FactsFormatError, FactTypes
from certify.gathered import Gathered
from certify.pipeline import ScanOptions, gather, judge
from certify.plugins.manager import Registry, load_registry
from certify.policy.baseline import load_baseline
from certify.policy.certificate import CertificateInvalid, build_record, keygen, load_private_key, verify
from certify.policy.profile import load_profile, shipped_names
from certify.policy.waivers import load_waivers
from certify.progress import Progress
from certify.scanguard import DEFAULT_TIMEOUT, ScanInterrupted
from certify.service import cli as service_cli
from certify.units import duration_argument, size_argument

EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a process SIGPIPE ended
SEVERITIES = [s.label for s in Severity]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"certify: error: {message} (see 'certify --help')\n")


def _severity(text: str) -> Severity:
    try:
        return Severity.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a positive whole number")
    return int(text)


def _fd(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a file descriptor number")
    fd = int(text)
    try:
        os.fstat(fd)
    except OSError:
        raise argparse.ArgumentTypeError(f"file descriptor {fd} is not open") from None
    return fd


def _stage_writer(fd: int):
    """``on_stage`` writing JSON lines to ``fd``; a reader that went away stops the stream, not the scan."""
    os.set_inheritable(fd, False)  # the appliance's qemu must not hold the stream open
    stream = os.fdopen(fd, "w", encoding="utf-8", buffering=1)
    broken = False

    def write(stage: str) -> None:
        nonlocal broken
        if broken:
            return
        try:
            stream.write(json.dumps({"stage": stage}) + "\n")
        except OSError:
            broken = True

    return write


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="certify", description="Certify a virtual appliance offline before it enters the cloud.")
    parser.add_argument("--version", action="version", version=f"certify {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    scan_p = sub.add_parser("scan", help="inspect an appliance and decide whether it may enter the cloud")
    scan_p.add_argument("path", help=".ova, .ovf, .vmx, a directory holding one, or a disk image")
    scan_p.add_argument("--format", default="text", help="report format(s), comma-separated: text, json, sarif, junit, html")
    scan_p.add_argument("-o", "--output", metavar="PATH",
                        help="report file (one format) or directory, made if absent (several: report.json, .sarif, .xml, .html, .txt)")
    scan_p.add_argument("--profile", default="default", metavar="NAME|FILE", help="policy profile (see 'certify profiles')")
    scan_p.add_argument("--fail-on", type=_severity, metavar="SEVERITY", help="fail at this severity, overriding the profile")
    scan_p.add_argument("--severity", type=_severity, metavar="SEVERITY", help="show findings at or above this in text/html")
    scan_p.add_argument("--waivers", metavar="FILE", help="YAML waivers: accepted findings with reason and expiry")
    scan_p.add_argument("--baseline", metavar="REPORT", help="a previous JSON report: mark the findings already known")
    scan_p.add_argument("--certificate", metavar="OUT", help="on a pass, write a signed certification record here")
    scan_p.add_argument("--key", metavar="PRIVATE_KEY", help="Ed25519 key that signs --certificate (see 'certify keygen')")
    scan_p.add_argument("--workdir", metavar="DIR", help="where the private work directory is made (default: $TMPDIR)")
    scan_p.add_argument("--timeout", type=duration_argument, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"stop the appliance and end with verdict error (exit 3) past this (90, 90s, 30m, 2h; "
                             f"default {DEFAULT_TIMEOUT // 60}m)")  # fmt: skip
    scan_p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    scan_p.add_argument("--no-color", action="store_true", help="plain text even on a terminal")  # fmt: skip
    scan_p.add_argument("--timings", action="store_true",
                        help="end the text report with where the scan's time went (the JSON report always has them)")
    scan_p.add_argument("--trust-store", metavar="PEM", help="CA (or pinned signer) certificates that vouch for package signers")
    scan_p.add_argument("--save-facts", metavar="FILE",
                        help="also write the gathered facts (JSON, mode 0600) for 'certify judge' to judge again without a launch")
    scan_p.add_argument("--every-fact", action="store_true",
                        help="gather the facts of every installed check, not only the profile's (with --save-facts: "
                             "to judge later under any profile)")
    scan_p.add_argument("--progress-fd", type=_fd, metavar="FD",
                        help="write each pipeline stage as it starts to this open file descriptor, one JSON line each "
                             '({"stage": "ingest"}); for programs that run scans')  # fmt: skip
    limits = scan_p.add_argument_group("ingest limits (an upload over one is rejected, exit 2)")
    limits.add_argument("--max-members", type=_count, metavar="N", help=f"files in an OVA (default {Limits.max_members})")
    for flag, what, default in (("--max-total-size", "bytes of all files together", f"{Limits.max_total_bytes >> 30}G"),
                                ("--max-member-size", "bytes of any one file", f"{Limits.max_member_bytes >> 30}G"),
                                ("--max-virtual-size", "virtual size a disk may claim", f"{Limits.max_virtual_bytes >> 40}T")):
        limits.add_argument(flag, type=size_argument, metavar="SIZE", help=f"{what} (default {default})")

    batch_p = sub.add_parser("batch", help="scan many uploads on local workers: one JSON line each, resumable")
    batch_p.add_argument("paths", nargs="*", metavar="PATH", help="uploads, as scan takes them")
    batch_p.add_argument("--from-list", metavar="FILE", help="more uploads, one path a line ('-': standard input; # comments)")
    batch_p.add_argument("-j", "--jobs", type=_count, default=1, metavar="N", help="scans at once (default 1)")
    batch_p.add_argument("--state", metavar="DIR", help="record results and reports here; a re-run skips what was judged")
    batch_p.add_argument("--format", default="jsonl", choices=["jsonl"], help="result lines on stdout (default jsonl)")
    batch_p.add_argument("--profile", default="default", metavar="NAME|FILE", help="policy profile (see 'certify profiles')")
    batch_p.add_argument("--fail-on", type=_severity, metavar="SEVERITY", help="fail at this severity, overriding the profile")
    batch_p.add_argument("--waivers", metavar="FILE", help="YAML waivers, as for scan")
    batch_p.add_argument("--timeout", type=duration_argument, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                         help=f"wall-clock limit of each scan; past it the scan is killed (default {DEFAULT_TIMEOUT // 60}m)")
    batch_p.add_argument("--workdir", metavar="DIR", help="where each scan's private work directory is made (default: $TMPDIR)")
    batch_p.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary on stderr")

    sanitize_p = sub.add_parser("sanitize", help="write a VMX or OVF descriptor a provider can load, and every change made")
    sanitize_p.add_argument("input", help="the .vmx or .ovf to sanitize (it is never modified)")
    sanitize_p.add_argument("-o", "--output", required=True, metavar="OUT",
                            help="the sanitized descriptor; the changes go to OUT.changes.json")  # fmt: skip

    checks_p = sub.add_parser("checks", help="list the check catalog")
    checks_p.add_argument("--format", default="text", choices=["text", "json"])
    explain_p = sub.add_parser("explain", help="what a check looks for, why it matters, how to fix it")
    explain_p.add_argument("check_id")
    profiles_p = sub.add_parser("profiles", help="list the shipped policy profiles")
    profiles_p.add_argument("--format", default="text", choices=["text", "json"])
    keygen_p = sub.add_parser("keygen", help="make an Ed25519 key pair for signing certificates")
    keygen_p.add_argument("-o", "--output", required=True, metavar="PREFIX", help="writes PREFIX and PREFIX.pub")
    verify_p = sub.add_parser("verify-certificate", help="check a certificate's signature and the artifact's digests")
    verify_p.add_argument("certificate")
    verify_p.add_argument("artifact")
    verify_p.add_argument("--key", required=True, metavar="PUBLIC_KEY")
    judge_p = sub.add_parser("judge", help="judge facts saved by 'scan --save-facts' again: another profile or waivers, no launch")
    judge_p.add_argument("path", metavar="FACTS", help="a facts file written by 'certify scan --save-facts'")
    judge_p.add_argument("--format", default="text", help="report format(s), comma-separated: text, json, sarif, junit, html")
    judge_p.add_argument("-o", "--output", metavar="PATH", help="report file (one format) or directory (several)")
    judge_p.add_argument("--profile", default="default", metavar="NAME|FILE", help="policy profile (see 'certify profiles')")
    judge_p.add_argument("--fail-on", type=_severity, metavar="SEVERITY", help="fail at this severity, overriding the profile")
    judge_p.add_argument("--severity", type=_severity, metavar="SEVERITY", help="show findings at or above this in text/html")
    judge_p.add_argument("--waivers", metavar="FILE", help="YAML waivers: accepted findings with reason and expiry")
    judge_p.add_argument("--baseline", metavar="REPORT", help="a previous JSON report: mark the findings already known")
    judge_p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    judge_p.add_argument("--no-color", action="store_true", help="plain text even on a terminal")
    judge_p.add_argument("--timings", action="store_true",
                         help="end the text report with the judging's timings and those of the gathering")
    judge_p.set_defaults(certificate=None, key=None, save_facts=None)
    isolation_cli.add_parsers(sub)
    service_cli.add_parsers(sub)
    return parser


def _list_checks(registry: Registry, fmt: str) -> int:
    checks = [c.as_dict() for c in registry.checks.values()]
    if fmt == "json":
        print(json.dumps(checks, indent=2))
        return 0
    width = max((len(c["id"]) for c in checks), default=2)
    print(f"{'ID':<{width}}  {'SEVERITY':<8}  {'LAYER':<10}  TITLE")
    for c in checks:
        print(f"{c['id']:<{width}}  {c['severity']:<8}  {c['layer']:<10}  {c['title']}")
    return 0


def _explain(registry: Registry, check_id: str) -> int:
    check = registry.checks.get(check_id)
    if check is None:
        raise UsageError(f"{check_id}: no such check (see 'certify checks')")
    print(f"{check.id}: {check.title}")
    print(f"severity {check.severity.label}, layer {check.layer.value}, looks at: {', '.join(check.facts)}")
    for heading, body in (("What it looks for and why", check.description), ("How to fix", check.remediation)):
        if body:
            print(f"\n{heading}\n" + textwrap.indent(textwrap.fill(" ".join(body.split()), 96), "  "))
    if check.params:
        print("\nParameters (a profile's params can tune them)")
        for name, default in sorted(check.params.items()):
            print(f"  {name} = {default!r}")
    if check.references:
        print("\nReferences\n" + "\n".join(f"  {r}" for r in check.references))
    return 0


def _profiles(fmt: str) -> int:
    profiles = [load_profile(n) for n in shipped_names()]
    if fmt == "json":
        print(json.dumps([{"name": p.name, "fail_on": p.fail_on.label, "description": p.description} for p in profiles], indent=2))
        return 0
    width = max(len(p.name) for p in profiles)
    for p in profiles:
        print(f"{p.name:<{width}}  fails at {p.fail_on.label:<8}  {p.description}")
    return 0


def _report_directory(path: str) -> bool:
    """Check -o DIR for several formats; True when DIR is to be made (its parent exists and is writable)."""
    if os.path.isdir(path):
        if not os.access(path, os.W_OK):
            raise UsageError(f"{path}: the report directory is not writable")
        return False
    if os.path.lexists(path):
        raise UsageError(f"{path}: exists and is not a directory; several formats need -o DIR")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"{path}: the report directory's parent {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{path}: cannot make the report directory: {parent} is not writable")
    return True


def _check_output_path(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"{path}: the directory for the output does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{path}: the directory for the output is not writable")
    if os.path.lexists(path) and (os.path.islink(path) or not os.path.isfile(path)):
        raise UsageError(f"{path}: exists and is not a regular file; not replacing it")


def _output_targets(args: argparse.Namespace, formats: list[str], registry: Registry, new_directory: bool) -> list[str | None]:
    """Where each format goes (None: stdout), checked before the scan starts.

    No output may be the upload, a file of a bundle read in place, or another output.
    Reports bound for a directory still to be made replace nothing and need no check.
    """
    if len(formats) > 1:
        reports: list[str | None] = [os.path.join(args.output, "report" + registry.reporters[f].extension) for f in formats]
    else:
        reports = [args.output]
    targets = [t for t in [*reports, args.certificate, args.save_facts] if t]
    for target in targets:
        if not (new_directory and target in reports):
            _check_output_path(target)
    resolved = [os.path.realpath(t) for t in targets]
    if len(set(resolved)) != len(resolved):
        raise UsageError("two outputs (report, certificate, saved facts) would be written to the same file")
    artifact = os.path.realpath(args.path)
    for target, real in zip(targets, resolved):
        if real == artifact:
            raise UsageError(f"{target}: would overwrite the upload")
    return reports


def _refuse_bundle_files(targets: list[str | None], report: Report) -> None:
    """A bundle read in place (OVF or VMX directory) must not lose a file to an output."""
    if report.bundle_root is None:
        return
    bundle = {os.path.realpath(os.path.join(report.bundle_root, name)) for name in report.bundle_files}
    for target in targets:
        if target and os.path.realpath(target) in bundle:
            raise UsageError(f"{target}: would overwrite a file of the upload; nothing written")


def _silence_stdout() -> None:
    """The reader of standard output left (``| head``): what is still to come goes nowhere, quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _write(text: str, path: str | None, mode: int | None = None) -> None:
    if path is None:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:  # the scan's other outputs (files, certificate) are still written
            _silence_stdout()
        return
    directory = os.path.dirname(os.path.abspath(path))
    if mode is None:
        mode = os.stat(path).st_mode & 0o777 if os.path.isfile(path) else 0o644
    try:
        fd, tmp = tempfile.mkstemp(prefix=".certify-", dir=directory)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        os.unlink(tmp)
        raise UsageError(f"{path}: cannot write: {exc.strerror}") from None


def _formats(args: argparse.Namespace, registry: Registry) -> tuple[list[str], bool]:
    """The report formats asked for, and whether -o names a report directory still to be made."""
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    unknown = [f for f in formats if f not in registry.reporters]
    if not formats or unknown:
        raise UsageError(f"unknown report format {', '.join(unknown) or repr(args.format)} (have: {', '.join(sorted(registry.reporters))})")
    if len(formats) > 1 and not args.output:
        raise UsageError("several formats need -o DIR")
    return formats, bool(args.output and len(formats) > 1 and _report_directory(args.output))


def _make_report_directory(args: argparse.Namespace, new_directory: bool) -> None:
    if new_directory:  # every argument is checked by now: a usage error leaves nothing behind
        try:
            os.mkdir(args.output)
        except OSError as exc:
            raise UsageError(f"{args.output}: cannot make the report directory: {exc.strerror}") from None


def _scan(args: argparse.Namespace, registry: Registry) -> int:
    formats, new_directory = _formats(args, registry)
    if not os.path.lexists(args.path):
        raise UsageError(f"{args.path}: no such file or directory")
    if args.workdir and not (os.path.isdir(args.workdir) and os.access(args.workdir, os.W_OK)):
        raise UsageError(f"{args.workdir}: not a writable directory for the work directory")
    if bool(args.certificate) != bool(args.key):
        raise UsageError("--certificate and --key go together")
    report_targets = _output_targets(args, formats, registry, new_directory)
    key = load_private_key(args.key) if args.key else None
    on_stage = _stage_writer(args.progress_fd) if args.progress_fd is not None else None
    progress = Progress(sys.stderr, enabled=not args.quiet, on_stage=on_stage)
    options = ScanOptions(
        profile=load_profile(args.profile),
        fail_on=args.fail_on,
        waivers=load_waivers(args.waivers) if args.waivers else [],
        baseline=load_baseline(args.baseline) if args.baseline else None,
        baseline_path=args.baseline,
        workdir_parent=args.workdir,
        limits=_limits(args),
        trust_anchors=load_trust_store(args.trust_store) if args.trust_store else None,
        progress=progress,
        timeout=args.timeout,
        every_fact=args.every_fact,
    )
    _make_report_directory(args, new_directory)
    gathered = None
    try:
        gathered = gather(args.path, options, registry)
        report = judge(gathered, options, registry)
    except CertifyError:
        raise
    except Exception as exc:  # a bug: still give the batch job a report it can read
        report = _internal_error(args, options, exc)
    _refuse_bundle_files([*report_targets, args.certificate, args.save_facts], report)  # before anything is written
    facts_failed = False
    if args.save_facts:
        if gathered is None:
            facts_failed = True
            print("certify: no facts written: the scan ended in an internal error before they were gathered", file=sys.stderr)
        else:
            try:
                types = FactTypes.for_collectors(registry.collectors.values())
                # ASCII: a path or file name that is not UTF-8 (kept as surrogates) comes back as it was.
                _write(json.dumps(gathered.to_json(types), indent=1) + "\n", args.save_facts, mode=0o600)
                progress.step(f"facts written to {args.save_facts}")
            except FactsEncodeError as exc:  # a collector's bug: the report still goes out, the exit says so
                facts_failed = True
                print(f"certify: {args.save_facts}: no facts written: {exc}", file=sys.stderr)
    code = _deliver(args, registry, options, report, formats, report_targets, progress, key)
    return EXIT_INTERNAL if facts_failed and code in (0, 1) else code


def _judge(args: argparse.Namespace, registry: Registry) -> int:
    formats, new_directory = _formats(args, registry)
    gathered = _read_facts(args.path, registry)
    report_targets = _output_targets(args, formats, registry, new_directory)
    progress = Progress(sys.stderr, enabled=not args.quiet)
    options = ScanOptions(
        profile=load_profile(args.profile),
        fail_on=args.fail_on,
        waivers=load_waivers(args.waivers) if args.waivers else [],
        baseline=load_baseline(args.baseline) if args.baseline else None,
        baseline_path=args.baseline,
        progress=progress,
    )
    _make_report_directory(args, new_directory)
    progress.step(f"judging the facts of {gathered.artifact_path} (sha256 {gathered.artifact_sha256}) gathered by certify {gathered.tool_version}")
    try:
        report = judge(gathered, options, registry)
    except CertifyError:
        raise
    except Exception as exc:  # a bug: as in scan, a report the batch job can read
        report = _internal_error(args, options, exc)
    return _deliver(args, registry, options, report, formats, report_targets, progress, None)


def _read_facts(path: str, registry: Registry) -> Gathered:
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such facts file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: a directory, not a facts file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, or nested past what the parser takes
        raise UsageError(f"{path}: not a facts file: not JSON ({first_line(exc)})") from None
    try:
        return Gathered.from_json(doc, FactTypes.for_collectors(registry.collectors.values()))
    except FactsFormatError as exc:
        raise UsageError(f"{path}: not a usable facts file: {exc}") from None


def _internal_error(args: argparse.Namespace, options: ScanOptions, exc: Exception) -> Report:
    if os.environ.get("CERTIFY_DEBUG"):
        traceback.print_exc()
    message = f"internal error: {type(exc).__name__}: {exc}"
    print(f"certify: {message}", file=sys.stderr)
    return Report(tool_version=__version__, artifact_path=args.path, artifact_kind=None,
                  artifact_sha256=None, verdict=Verdict.ERROR, profile=options.profile.name,
                  threshold=options.threshold, errors=[message])  # fmt: skip


def _deliver(args: argparse.Namespace, registry: Registry, options: ScanOptions, report: Report, formats: list[str],
             report_targets: list[str | None], progress: Progress, key: object) -> int:  # fmt: skip
    """The report in every format asked for, the certificate on a pass, and the exit code."""
    if report.verdict is Verdict.REJECTED:
        print(f"certify: {args.path}: rejected: {report.rejection}", file=sys.stderr)
    elif report.verdict is Verdict.ERROR:
        for error in report.errors:
            print(f"certify: {args.path}: error: {error}", file=sys.stderr)

    _refuse_bundle_files([*report_targets, args.certificate], report)
    display_min = args.severity if args.severity is not None else options.profile.display_min
    color = args.output is None and sys.stdout.isatty() and not args.no_color and not os.environ.get("NO_COLOR")
    for fmt, target in zip(formats, report_targets):
        # Only when asked: a plugin's reporter written before the option need not know it.
        extra = {"timings": True} if getattr(args, "timings", False) else {}
        _write(registry.reporters[fmt].render(report, color=color, display_min=display_min, **extra), target)

    if args.certificate and key is not None:
        if report.verdict is Verdict.PASS:
            _write(json.dumps(build_record(report, key), indent=2, sort_keys=True) + "\n", args.certificate)
            progress.step(f"certificate written to {args.certificate}")
        else:
            print(f"certify: no certificate written: the verdict is {report.verdict.value}", file=sys.stderr)
    progress.step(f"verdict: {report.verdict.value} (exit {report.verdict.exit_code})")
    return report.verdict.exit_code


def _limits(args: argparse.Namespace) -> Limits:
    given = {"max_members": args.max_members, "max_total_bytes": args.max_total_size,
             "max_member_bytes": args.max_member_size, "max_virtual_bytes": args.max_virtual_size}  # fmt: skip
    return replace(Limits(), **{k: v for k, v in given.items() if v is not None})


def _sanitize(args: argparse.Namespace) -> int:
    if not os.path.isfile(args.input):
        raise UsageError(f"{args.input}: no such file")
    kind = args.input.lower().rsplit(".", 1)[-1]
    if kind not in ("vmx", "ovf"):
        raise UsageError(f"{args.input}: sanitize takes a .vmx or an .ovf")
    changes_path = args.output + ".changes.json"
    for target in (args.output, changes_path):
        _check_output_path(target)
        if os.path.exists(target) and os.path.samefile(target, args.input):
            raise UsageError(f"{target}: would overwrite the input")
    limit = VMX_MAX_BYTES if kind == "vmx" else OVF_MAX_BYTES
    with open(args.input, "rb") as f:
        data = f.read(limit + 1)
    try:
        if kind == "vmx":
            pairs, changes = sanitize_vmx(parse_vmx(data))
            text = render_vmx(pairs)
        else:
            text, changes = sanitize_ovf(data)
    except ParseError as exc:
        print(f"certify: {args.input}: rejected: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _write(text, args.output)
    _write(json.dumps({"input": args.input, "output": args.output, "changes": [c.as_dict() for c in changes]},
                      indent=2, sort_keys=True) + "\n", changes_path)  # fmt: skip
    print(f"certify: {len(changes)} change(s); sanitized {kind.upper()} in {args.output}, changes in {changes_path}", file=sys.stderr)
    return 0


def _verify(args: argparse.Namespace) -> int:
    try:
        record = verify(args.certificate, args.artifact, args.key)
    except CertificateInvalid as exc:
        print(f"certify: {args.certificate}: INVALID: {exc}", file=sys.stderr)
        return 1
    print(f"valid: {record['artifact']['name']} sha256 {record['artifact']['sha256']} certified under profile "
          f"{record['profile']} by certify {record['tool']['version']} at {record['issued_at']}")  # fmt: skip
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.command == "keygen":
        private, public = keygen(args.output)
        print(f"wrote {private} (private, keep it secret) and {public}")
        return 0
    if args.command == "verify-certificate":
        return _verify(args)
    if args.command == "profiles":
        return _profiles(args.format)
    if args.command == "sanitize":
        return _sanitize(args)
    if args.command in isolation_cli.COMMANDS:
        return isolation_cli.run(args)
    if args.command == "batch":
        return run_batch_command(args)
    if args.command in service_cli.COMMANDS:
        return service_cli.run(args)
    registry = load_registry()
    if args.command == "checks":
        return _list_checks(registry, args.format)
    if args.command == "explain":
        return _explain(registry, args.check_id)
    if args.command == "judge":
        return _judge(args, registry)
    return _scan(args, registry)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code = _run(args)
        sys.stdout.flush()  # here, not at interpreter exit, so a reader that left is noticed below
        return code
    except UsageError as exc:
        print(f"certify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CertifyError as exc:
        print(f"certify: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    except ScanInterrupted as exc:
        print(f"certify: {exc.reason}: the appliance was stopped and the work directory removed", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("certify: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # a bug: one line, exit 3, never the "not certified" exit 1
        if os.environ.get("CERTIFY_DEBUG"):
            traceback.print_exc()
        print(f"certify: internal error: {type(exc).__name__}: {exc} (CERTIFY_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
