"""Command line: argument parsing and exit codes, nothing else.

Exit codes (a public contract): 0 certified, 1 not certified, 2 input rejected
or usage error, 3 internal error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
from typing import NoReturn

from certify import __version__
from certify.errors import CertifyError, UsageError
from certify.model import Report, Verdict
from certify.pipeline import DEFAULT_PROFILE, DEFAULT_THRESHOLD, ScanOptions, scan
from certify.plugins.manager import Registry, load_registry
from certify.progress import Progress

EXIT_USAGE = 2
EXIT_INTERNAL = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"certify: error: {message} (see 'certify --help')\n")


def _parser(reporters: list[str]) -> argparse.ArgumentParser:
    parser = _Parser(prog="certify", description="Certify a virtual appliance offline before it enters the cloud.")
    parser.add_argument("--version", action="version", version=f"certify {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    scan_p = sub.add_parser("scan", help="inspect an appliance and decide whether it may enter the cloud")
    scan_p.add_argument("path", help=".ova, .ovf, .vmx, a directory holding one, or a disk image")
    scan_p.add_argument("--format", default="text", choices=reporters, help="report format (default: text)")
    scan_p.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    scan_p.add_argument("--workdir", metavar="DIR", help="where the private work directory is made (default: $TMPDIR)")
    scan_p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    scan_p.add_argument("--no-color", action="store_true", help="plain text even on a terminal")

    checks_p = sub.add_parser("checks", help="list the check catalog")
    checks_p.add_argument("--format", default="text", choices=["text", "json"])
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


def _check_output_path(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"{path}: the directory for the report does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{path}: the directory for the report is not writable")
    if os.path.isdir(path):
        raise UsageError(f"{path}: is a directory, not a report file")


def _write(text: str, path: str | None) -> None:
    if path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".certify-report-", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _scan(args: argparse.Namespace, registry: Registry) -> int:
    if args.output:
        _check_output_path(args.output)
    if not os.path.lexists(args.path):
        raise UsageError(f"{args.path}: no such file or directory")
    if args.workdir and not os.path.isdir(args.workdir):
        raise UsageError(f"{args.workdir}: work directory parent does not exist")
    progress = Progress(sys.stderr, enabled=not args.quiet)
    options = ScanOptions(workdir_parent=args.workdir, progress=progress)
    try:
        report = scan(args.path, options, registry)
    except CertifyError:
        raise
    except Exception as exc:  # a bug: still give the batch job a report it can read
        if os.environ.get("CERTIFY_DEBUG"):
            traceback.print_exc()
        message = f"internal error: {type(exc).__name__}: {exc}"
        print(f"certify: {message}", file=sys.stderr)
        report = Report(tool_version=__version__, artifact_path=args.path, artifact_kind=None,
                        artifact_sha256=None, verdict=Verdict.ERROR, profile=DEFAULT_PROFILE,
                        threshold=DEFAULT_THRESHOLD, errors=[message])  # fmt: skip
    if report.verdict is Verdict.REJECTED:
        print(f"certify: {args.path}: rejected: {report.rejection}", file=sys.stderr)
    color = args.output is None and sys.stdout.isatty() and not args.no_color and not os.environ.get("NO_COLOR")
    _write(registry.reporters[args.format].render(report, color=color), args.output)
    progress.step(f"verdict: {report.verdict.value} (exit {report.verdict.exit_code})")
    return report.verdict.exit_code


def main(argv: list[str] | None = None) -> int:
    try:
        registry = load_registry()
    except CertifyError as exc:
        print(f"certify: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    args = _parser(sorted(registry.reporters)).parse_args(argv)
    try:
        if args.command == "checks":
            return _list_checks(registry, args.format)
        return _scan(args, registry)
    except UsageError as exc:
        print(f"certify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CertifyError as exc:
        print(f"certify: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        print("certify: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
