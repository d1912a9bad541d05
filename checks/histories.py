"""Shell histories and logs left from the build: residue whose content the secret rules read.

Both checks own the secrets found in their files (the content checks skip
histories and logs), and raise their severity on a match instead.
"""

from __future__ import annotations

from certify.checkdef import check
from certify.guest.collectors import content
from certify.guest.collectors.content import ContentScan, ScannedFile
from certify.model import Layer, Location, Severity, fail
from certify.plugins.hookspecs import hookimpl

from .secrets import describe_matches

NULL_TARGETS = ("/dev/null",)


def _content_note(scanned: ScannedFile | None, size: int) -> str:
    if scanned is None:
        return f"over {content.MAX_FILE_SIZE // 1024} KiB: content not scanned" if size > content.MAX_FILE_SIZE else "content not read"
    if scanned.binary:
        return "binary, content not scanned"
    note = f"{scanned.lines} line{'s' if scanned.lines != 1 else ''}" + (f" in the first {content.MAX_FILE_SIZE // 1024} KiB" if scanned.truncated else "")
    if scanned.matches:
        note += "; matches secret rules: " + describe_matches(scanned.path, scanned.matches, scanned.more_matches)
    return note


@check(
    id="shell-history-present",
    severity=Severity.MEDIUM,
    layer=Layer.GUEST,
    title="Shell and REPL histories left in the image",
    remediation=(
        "Truncate or delete the histories of root and every user before exporting (and build with "
        "HISTFILE=/dev/null or 'unset HISTFILE'). A history holding a secret is critical: revoke the "
        "secret, it is in every copy of the image."
    ),
    references=(
        "Azure Marketplace certification test 'Bash History' (200.5.1)",
        "AWS EC2 user guide (shared AMIs): shred the shell history, it contains your secret access key",
        "virt-sysprep operations bash-history, zsh-history",
        "Lynis HOME-9310 (a history that is not a regular file is suspicious)",
    ),
)
def shell_history_present(content_scan: ContentScan):
    """In /root, every /home/* and every /etc/passwd home: .bash_history, .zsh_history, .sh_history,
    .ash_history, .history, .histfile, .python_history, .mysql_history, .psql_history,
    .node_repl_history, .lesshst, .viminfo, .rediscli_history, .sqlite_history, .dbshell, .irb_history,
    .php_history, .Rhistory, .local/share/fish/fish_history. An empty file or a symlink to /dev/null
    passes; a non-empty file fails (medium, critical when its content matches a secret rule); a FIFO,
    directory or symlink elsewhere is reported. Evidence gives size, line count and the redacted matches,
    never the commands."""
    for h in content_scan.histories:
        where = Location(layer=Layer.GUEST, file=h.disk, path=h.path)
        if h.kind == "symlink":
            if h.target not in NULL_TARGETS:
                yield fail(where, f"symlink to {h.target!r} instead of /dev/null: the shell writes its history there")
        elif h.kind != "file":
            yield fail(where, f"a {h.kind} where the history file belongs (a history that is not a regular file hides or redirects it)")
        elif h.size > 0:
            scanned = h.scanned
            severity = Severity.CRITICAL if scanned is not None and scanned.matches else None
            yield fail(where, f"{h.size} bytes, {_content_note(scanned, h.size)}", severity=severity)


@check(
    id="log-files-present",
    severity=Severity.MEDIUM,
    layer=Layer.GUEST,
    title="Log files and login records from the build left in the image",
    remediation=(
        "Truncate the logs before exporting (a clean image ships them empty or absent): for example "
        "'find /var/log -type f -exec truncate -s 0 {} +', journalctl --rotate --vacuum-time=1s, and empty "
        "wtmp/btmp/lastlog. A log holding a secret is high: revoke the secret first."
    ),
    references=(
        "virt-sysprep operations logfiles, utmp, pam-data",
        "oci-image-cleanup (truncates /var/log)",
        "Azure waagent -deprovision removes /var/log/waagent.log",
    ),
)
def log_files_present(content_scan: ContentScan):
    """Every non-empty regular file under /var/log (text logs, messages*, secure*, auth.log*, syslog*,
    audit/*, journal/*, wtmp/btmp/lastlog/faillog, application logs in subdirectories), /var/run/utmp,
    /run/utmp and /var/run/faillock/*: any byte counts, since a clean image ships its logs empty or
    absent. /var/log/installer and /var/log/anaconda are installer-answer-files'. Text logs up to 1 MiB
    are scanned with the secret rules (a match raises the finding to high); binary logs (wtmp, btmp,
    lastlog, journal files, compressed rotations) are judged by size only."""
    for log in content_scan.logs:
        if log.size == 0:
            continue
        scanned = log.scanned
        severity = Severity.HIGH if scanned is not None and scanned.matches else None
        if scanned is None and content.binary_log(log.path):
            note = "binary log, not read"
        else:
            note = _content_note(scanned, log.size)
        yield fail(Location(layer=Layer.GUEST, file=log.disk, path=log.path), f"{log.size} bytes, {note}", severity=severity)


@hookimpl
def certify_checks():
    return [shell_history_present, log_files_present]
