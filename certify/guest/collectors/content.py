"""The content scan: secret rules over a bounded selection of guest files, read in one batch.

Candidates come from the inventory (no per-file round trip) and are read
with ONE ``read_many``: reading a cold small file costs ~1.5 ms under TCG
and an appliance may hold 100,000 of them, so what is read is chosen:

- config and home trees (/etc, /root, /home/*, /var/lib/cloud,
  /var/spool/cron, /tmp, /var/tmp): every regular file up to 1 MiB,
  except dependency and cache trees (node_modules, site-packages,
  dist-packages, __pycache__, .cache, .git objects...) and the SSH host keys
  of every server (ssh-host-keys-present owns them);
- other homes listed in /etc/passwd (/var/lib/postgresql...): their dot
  files and dot directories only;
- application trees (/opt, /srv, /var/www, /usr/local, and /usr/share/<app>,
  i.e. /usr/share minus the distribution's data directories: doc, man,
  locale, zoneinfo, icons, perl5, python3...): files whose name marks keys,
  credentials or configuration (*.pem, *.key, *.crt, *.p8, *.ppk, *.asc,
  id_*, .env/*.env, *.conf, *.cfg, *.ini, *.yml, *.yaml, *.json, *.toml,
  *.properties, *.xml, *.sh, *.tfvars, credentials*, *secret*, .npmrc...)
  and any file up to 16 KiB directly in a directory named keys, certs,
  ssl, private, secrets, conf or config;
- text logs under /var/log and shell histories in every home (size and
  content); binary logs (wtmp, btmp, lastlog, journal files, compressed
  rotations) are judged by size only and not read.

At most MAX_CANDIDATES files and MAX_TOTAL_BYTES are read, well-known
credential locations first; what was left out is counted in the fact's
coverage so a report can say what was not looked at.
"""

from __future__ import annotations

import fnmatch
import posixpath
from dataclasses import dataclass, field

from certify.guest.collectors.ssh import find_host_keys
from certify.guest.parsers import answerfiles, cloudinit, secrets, vncpasswd
from certify.guest.parsers.passwd import guest_accounts
from certify.guest.parsers.sshkeys import private_key_public
from certify.guest.reader import GuestReader, Inventory, Stat
from certify.model import GuestCollector
from certify.plugins.hookspecs import hookimpl

# The module docstring's body, shown as the collector's and the checks' "what is read" (absent under -OO)
WHAT_IS_READ = (__doc__ or "").partition("\n\n")[2].strip()
MAX_FILE_SIZE = secrets.DEFAULT_MAX_SIZE
MAX_CANDIDATES = 10_000
MAX_TOTAL_BYTES = 96 * 1024 * 1024
SMALL_IN_KEY_DIR = 16 * 1024

CONFIG_TREES = ("/etc", "/var/lib/cloud", "/var/spool/cron", "/tmp", "/var/tmp")
APP_TREES = ("/opt", "/srv", "/var/www", "/usr/local")
# /usr/share/<dir> that hold distribution data, not an application's files
DISTRO_SHARE = frozenset(
    "doc man info locale i18n zoneinfo icons fonts mime terminfo X11 common-licenses lintian ca-certificates "
    "keyrings applications pixmaps themes sounds backgrounds help gtk-doc vim zsh bash-completion dbus-1 "
    "polkit-1 glib-2.0 gir-1.0 gettext aclocal pkgconfig misc menu consolefonts consoletrans keymaps kbd "
    "file dict base-files base-passwd debconf debianutils dpkg initramfs-tools pam pam-configs systemd "
    "tabset bug lua javascript xml sgml sgml-base emacs texmf texlive groff tcltk util-linux os-prober grub "
    "calendar fontconfig thumbnails metainfo appdata unicode libthai perl perl5 python python3 pyshared "
    "apport bash-completion grub-common xml-core iso-codes publicsuffix mime-info GConf".split()
)
_DISTRO_SHARE_PREFIXES = ("perl", "python", "ruby", "gcc", "gdb", "llvm", "kde", "qt", "gnome", "gtk")
SKIP_DIRS = frozenset({"node_modules", "__pycache__", "site-packages", "dist-packages", ".cache", ".npm", ".rustup",
                       ".m2", ".gradle", ".cargo", ".git", ".svn", ".hg", ".venv", "venv"})  # fmt: skip
KEY_DIRS = frozenset({"keys", "certs", "ssl", "private", "secrets", "secret", "conf", "config"})
CREDENTIAL_EXTENSIONS = frozenset(
    "pem key crt cer p8 ppk asc gpg env conf cfg cnf ini yml yaml json toml properties xml sh tfvars tfstate jks".split()
)
CREDENTIAL_NAMES = frozenset({".env", ".git-credentials", ".npmrc", ".pypirc", ".netrc", ".pgpass", ".my.cnf",
                              "config.json", "wp-config.php", "config.php", "settings.py", "local_settings.py"})  # fmt: skip
CREDENTIAL_NAME_GLOBS = ("id_*", "credentials*", "*secret*", "*password*", "*token*", ".env.*", "*.env")

HISTORY_NAMES = (".bash_history", ".zsh_history", ".sh_history", ".ash_history", ".history", ".histfile",
                 ".python_history", ".mysql_history", ".psql_history", ".node_repl_history", ".lesshst", ".viminfo",
                 ".rediscli_history", ".sqlite_history", ".dbshell", ".mongosh_history", ".irb_history",
                 ".php_history", ".Rhistory", ".local/share/fish/fish_history")  # fmt: skip
LOG_ROOT = "/var/log"
LOG_EXTRA = ("/var/run/utmp", "/run/utmp")
LOG_EXTRA_DIRS = ("/var/run/faillock", "/run/faillock")
BINARY_LOG_GLOBS = ("wtmp*", "btmp*", "lastlog*", "faillog*", "utmp*", "*.journal", "*.journal~", "*.gz", "*.xz",
                    "*.bz2", "*.zst", "*.lz4", "*.Z")  # fmt: skip
INSTALLER_FILES = ("/root/anaconda-ks.cfg", "/root/original-ks.cfg", "/root/initial-setup-ks.cfg",
                   "/root/anaconda-post.log", "/root/anaconda-post-nochroot.log")  # fmt: skip
INSTALLER_GLOBS = ("install.log*", "preseed.cfg", "*.preseed", "ks.cfg", "*-ks.cfg", "autoinstall.yaml",
                   "autoinstall-user-data")  # fmt: skip
INSTALLER_DIRS = ("/var/log/installer", "/var/log/anaconda")
CLOUD_INIT_INSTANCE_FILES = ("user-data.txt", "user-data.txt.i", "vendor-data.txt", "vendor-data.txt.i",
                             "vendor-data2.txt", "vendor-data2.txt.i", "cloud-config.txt", "vendor-cloud-config.txt")  # fmt: skip
VNC_HOME_FILES = (".vnc/passwd", ".config/tigervnc/passwd", ".vnc/x11vnc.pass")
VNC_ETC_GLOBS = ("/etc/vnc*", "/etc/x11vnc.pass", "/etc/tigervnc/*passwd*", "/etc/tightvnc*", "/etc/vnc/config.d/*",
                 "/etc/vnc/*passwd*", "/etc/tightvnc/*passwd*")  # fmt: skip
# home-relative files whose mere presence is a cloud credential (some are SQLite or MSAL binaries)
CLOUD_FILES = (".aws/credentials", ".config/gcloud/credentials.db", ".config/gcloud/access_tokens.db",
               ".config/gcloud/application_default_credentials.json", ".config/gcloud/legacy_credentials/*",
               ".azure/accessTokens.json", ".azure/msal_token_cache.*", ".azure/service_principal_entries.*")  # fmt: skip
CLOUD_CONTENT_FILES = (".aws/config",)  # a cloud file only when a rule matches in it
# home-relative registry and SaaS credential files: reported when they hold a credential
DEV_SAAS_FILES = (".git-credentials", ".npmrc", ".pypirc", ".docker/config.json", ".config/gh/hosts.yml",
                  ".gem/credentials", ".cargo/credentials", ".cargo/credentials.toml",
                  ".terraform.d/credentials.tfrc.json", ".config/hub")  # fmt: skip
_SYSTEM_HOMES = ("/proc", "/sys", "/dev", "/run", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot")

# What a file is, for deciding which check reports it. Histories, logs and VNC files are
# reported (with their content matches) only by their own checks; cloud-init and
# installer files by their own checks for passwords, by the content checks for keys and tokens.
HISTORY, LOG, VNC, CLOUD_INIT, INSTALLER, CLOUD_FILE, DEV_SAAS_FILE = (
    "history", "log", "vnc", "cloud-init", "installer", "cloud-file", "dev-saas-file")  # fmt: skip


@dataclass(frozen=True)
class ScannedFile:
    path: str
    disk: str | None
    size: int
    uid: int
    mode: int
    binary: bool
    truncated: bool  # longer than what was scanned
    lines: int  # newlines in what was read
    matches: tuple[secrets.SecretMatch, ...]
    more_matches: bool
    key_fingerprint: str | None  # public half of the first private key in it, when derivable
    role: str | None
    personal: bool  # inside a home: /root, /home/*, or a dot path of another passwd home


@dataclass(frozen=True)
class HistoryFile:
    path: str
    disk: str | None
    kind: str  # file, symlink, directory, fifo, socket, device
    size: int
    target: str | None = None  # a symlink's target text
    scanned: ScannedFile | None = None


@dataclass(frozen=True)
class LogFile:
    path: str
    disk: str | None
    size: int
    scanned: ScannedFile | None  # None: binary by name, or over the read bound


@dataclass(frozen=True)
class VncFile:
    path: str
    disk: str | None
    size: int
    password: vncpasswd.VncPassword | None


@dataclass(frozen=True)
class CloudInitFile:
    path: str
    disk: str | None
    issues: tuple[cloudinit.CloudInitIssue, ...]


@dataclass(frozen=True)
class InstallerResidue:
    path: str  # an answer file, or an installer log directory
    disk: str | None
    files: tuple[str, ...]  # the non-empty files it stands for
    size: int
    answers: tuple[tuple[str, answerfiles.PasswordAnswer], ...]  # (file, answer)
    unread: tuple[str, ...]  # files over the read bound: their answers are unknown


@dataclass(frozen=True)
class Coverage:
    considered: int  # candidate files selected from the inventory
    read: int
    binary: int  # read, not scanned (a NUL in the first 8 KiB)
    too_large: int  # over MAX_FILE_SIZE: not read
    over_budget: int  # beyond MAX_CANDIDATES / MAX_TOTAL_BYTES: not read
    not_utf8_names: int  # names the inventory could not pass to libguestfs
    examples_skipped: tuple[str, ...] = ()

    def describe(self) -> str:
        text = (f"{self.considered} files considered, {self.read} read ({self.binary} binary, not scanned), "
                f"{self.too_large} over {MAX_FILE_SIZE // 1024} KiB and {self.over_budget} over the read budget skipped")  # fmt: skip
        if self.not_utf8_names:
            text += f", {self.not_utf8_names} names not UTF-8 unseen"
        return text


@dataclass(frozen=True)
class ContentScan:
    files: dict[str, ScannedFile]  # every file read, by path
    homes: tuple[str, ...]
    histories: tuple[HistoryFile, ...]
    logs: tuple[LogFile, ...]
    vnc: tuple[VncFile, ...]
    cloud_init: tuple[CloudInitFile, ...]
    installer: tuple[InstallerResidue, ...]
    cloud_files: tuple[str, ...]  # present, non-empty well-known cloud credential files
    coverage: Coverage
    too_large: tuple[str, ...] = field(default=())


# -- where things are ---------------------------------------------------------


def _under(path: str, root: str) -> bool:
    return path.startswith(root.rstrip("/") + "/")


def homes(reader: GuestReader, inventory: Inventory) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(full homes: /root and /home/*, dot-only homes: other directories /etc/passwd names as homes)."""
    full = {"/root"} | {p for p in inventory.children("/home") if (st := inventory.get(p)) is not None and st.is_dir}
    passwd_stat = inventory.get("/etc/passwd")
    accounts = guest_accounts(reader) if passwd_stat is not None and passwd_stat.is_file else []
    others = set()
    for account in accounts:
        home = account.home
        st = inventory.get(home) if home else None
        if st is None or not st.is_dir or home in full or home in ("/", "/etc", "/var", "/var/lib", "/home", "/tmp"):
            continue
        if any(home == s or _under(home, s) for s in _SYSTEM_HOMES) or any(_under(home, f) for f in full):
            continue
        others.add(home)
    return tuple(sorted(full)), tuple(sorted(others))


def _home_of(path: str, all_homes: tuple[str, ...]) -> str | None:
    return max((h for h in all_homes if _under(path, h)), key=len, default=None)


def _skipped_tree(relative_parts: list[str]) -> bool:
    """Dependency, cache and VCS object trees: big, and their keys are test fixtures; .git/config is kept."""
    dirs = relative_parts[:-1]
    if ".git" in dirs and relative_parts[-2:] == [".git", "config"]:
        return False
    return any(d in SKIP_DIRS for d in dirs)


def credential_like(path: str) -> bool:
    """Whether an application-tree file's name marks keys, credentials or configuration."""
    name = posixpath.basename(path)
    lower = name.lower()
    ext = lower.rsplit(".", 1)[-1] if "." in lower.lstrip(".") else ""
    if ext in CREDENTIAL_EXTENSIONS or lower in CREDENTIAL_NAMES:
        return True
    return any(fnmatch.fnmatchcase(lower, g) for g in CREDENTIAL_NAME_GLOBS)


def _app_share(path: str) -> bool:
    """/usr/share/<app>/...: an application's directory, not distribution data."""
    if not _under(path, "/usr/share"):
        return False
    top = path.split("/")[3] if path.count("/") >= 4 else ""
    return bool(top) and top not in DISTRO_SHARE and not top.startswith(_DISTRO_SHARE_PREFIXES)


def _in_key_dir(path: str, st: Stat) -> bool:
    return posixpath.basename(posixpath.dirname(path)).lower() in KEY_DIRS and st.size <= SMALL_IN_KEY_DIR


def _matches_home_file(path: str, home: str, patterns: tuple[str, ...]) -> bool:
    relative = path[len(home) + 1 :]
    return any(fnmatch.fnmatchcase(relative, p) for p in patterns)


def role_of(path: str, home: str | None) -> str | None:
    if home is not None:
        relative = path[len(home) + 1 :]
        if relative in HISTORY_NAMES:
            return HISTORY
        if relative in VNC_HOME_FILES:
            return VNC
        if any(fnmatch.fnmatchcase(relative, p) for p in CLOUD_FILES + CLOUD_CONTENT_FILES):
            return CLOUD_FILE
        if relative in DEV_SAAS_FILES:
            return DEV_SAAS_FILE
    if _under(path, LOG_ROOT) or path in LOG_EXTRA or any(_under(path, d) for d in LOG_EXTRA_DIRS):
        return INSTALLER if any(path == d or _under(path, d) for d in INSTALLER_DIRS) else LOG
    if path in INSTALLER_FILES or (
        (_under(path, "/root") or _under(path, "/etc")) and any(fnmatch.fnmatchcase(posixpath.basename(path), g) for g in INSTALLER_GLOBS)
    ):
        return INSTALLER
    if _cloud_init_path(path):
        return CLOUD_INIT
    if any(fnmatch.fnmatchcase(path, g) for g in VNC_ETC_GLOBS):
        return VNC
    return None


def _cloud_init_path(path: str) -> bool:
    if path == "/etc/cloud/cloud.cfg" or fnmatch.fnmatchcase(path, "/etc/cloud/cloud.cfg.d/*"):
        return True
    if _under(path, "/var/lib/cloud/seed"):
        return True
    parts = path.split("/")
    return len(parts) == 7 and parts[1:5] == ["var", "lib", "cloud", "instances"] and parts[6] in CLOUD_INIT_INSTANCE_FILES


def binary_log(path: str) -> bool:
    return any(fnmatch.fnmatchcase(posixpath.basename(path), g) for g in BINARY_LOG_GLOBS)


def _priority(path: str, home: str | None, role: str | None, host_keys: frozenset[str] = frozenset()) -> int | None:
    """0: well-known credential places, 1: config/home trees and logs, 2: application trees; None: not read."""
    parts = path.strip("/").split("/")
    if role in (HISTORY, VNC, CLOUD_FILE, DEV_SAAS_FILE, CLOUD_INIT, INSTALLER):
        return 0
    if role == LOG:
        return None if binary_log(path) else 1
    if home is not None and path[len(home) + 1 :].startswith(".ssh/"):
        return 0
    if _skipped_tree(parts):
        return None
    if fnmatch.fnmatchcase(path, "/etc/ssh/ssh_host_*") or path in host_keys:
        return None  # ssh-host-keys-present owns them
    if home is not None or any(_under(path, t) for t in CONFIG_TREES):
        return 1
    return None


def _app_candidate(path: str, st: Stat) -> bool:
    if not (any(_under(path, t) for t in APP_TREES) or _app_share(path)):
        return False
    if _skipped_tree(path.strip("/").split("/")):
        return False
    return credential_like(path) or _in_key_dir(path, st)


# -- the collector --------------------------------------------------------------


def collect_content(reader: GuestReader) -> ContentScan:
    inventory = reader.inventory()
    host_keys = frozenset(k.path for k in find_host_keys(reader))  # dropbear's, configured HostKeys: not read twice
    full_homes, dot_homes = homes(reader, inventory)
    all_homes = full_homes + dot_homes

    candidates: dict[str, tuple[int, Stat, str | None, str | None]] = {}  # path -> (priority, stat, role, home)
    histories_seen: list[tuple[str, Stat, str]] = []
    log_entries: list[tuple[str, Stat]] = []
    for path, st in inventory:
        home = _home_of(path, all_homes)
        if home in dot_homes and not path[len(home) + 1 :].startswith("."):
            home = None  # /var/www/site/... is an application tree, not someone's dot files
        role = role_of(path, home)
        if role == HISTORY:
            histories_seen.append((path, st, home))
        if not st.is_file:
            continue
        if role == LOG:
            log_entries.append((path, st))
        priority = _priority(path, home, role, host_keys)
        if priority is None and _app_candidate(path, st):
            priority = 2
        if priority is not None:
            candidates[path] = (priority, st, role, home)

    wanted, too_large, over_budget = [], [], []
    budget = MAX_TOTAL_BYTES
    for path, (priority, st, role, _home) in sorted(candidates.items(), key=lambda item: (item[1][0], item[0])):
        if st.size > MAX_FILE_SIZE:
            too_large.append(path)
        elif len(wanted) >= MAX_CANDIDATES or st.size > budget:
            over_budget.append(path)
        else:
            wanted.append(path)
            budget -= st.size
    contents = reader.read_many(wanted, MAX_FILE_SIZE)

    files: dict[str, ScannedFile] = {}
    binary = 0
    hostname = str(reader.os.get("hostname") or "")
    vnc, cloud, installer_reads = [], [], {}
    for path in sorted(contents):
        data = contents[path]
        _priority_, st, role, home = candidates[path]
        if role == VNC:
            vnc.append(VncFile(path, reader.disk_file(path), st.size, vncpasswd.analyze(data, (hostname,), "pass" in posixpath.basename(path).lower()) if data else None))
            continue
        result = secrets.scan(data, max_size=MAX_FILE_SIZE)
        binary += result.binary
        fingerprint = None
        if any(m.category == secrets.PRIVATE_KEY for m in result.matches) or (result.binary and posixpath.basename(path).startswith("id_")):
            key = private_key_public(data)  # a binary id_* may be dbclient's key, in dropbear's format (~/.ssh/id_dropbear)
            fingerprint = key.describe() if key else None
        personal = home is not None
        files[path] = ScannedFile(
            path=path, disk=reader.disk_file(path), size=st.size, uid=st.uid, mode=st.mode, binary=result.binary,
            truncated=st.size > len(data), lines=data.count(b"\n"), matches=result.matches,
            more_matches=result.more_matches, key_fingerprint=fingerprint, role=role, personal=personal,
        )  # fmt: skip
        if role == CLOUD_INIT and not result.binary:
            issues = cloudinit.analyze(data.decode("utf-8", "replace"))
            if issues:
                cloud.append(CloudInitFile(path, reader.disk_file(path), tuple(issues)))
        if role == INSTALLER and not result.binary:
            installer_reads[path] = tuple(answerfiles.password_answers(data.decode("utf-8", "replace")))

    histories = []
    for path, st, _home in histories_seen:
        kind = _kind(st)
        target = reader.readlink(path) if st.is_link else None
        histories.append(HistoryFile(path, reader.disk_file(path), kind, st.size, target, files.get(path)))

    logs = tuple(LogFile(p, reader.disk_file(p), st.size, files.get(p)) for p, st in log_entries)
    return ContentScan(
        files=files,
        homes=all_homes,
        histories=tuple(histories),
        logs=logs,
        vnc=tuple(vnc),
        cloud_init=tuple(cloud),
        installer=_installer_residue(reader, inventory, installer_reads, set(too_large)),
        cloud_files=tuple(
            p for p, (_, st, role, home) in sorted(candidates.items())
            if role == CLOUD_FILE and st.size > 0 and home is not None and _matches_home_file(p, home, CLOUD_FILES)
        ),
        coverage=Coverage(
            considered=len(candidates), read=len(contents), binary=binary, too_large=len(too_large),
            over_budget=len(over_budget), not_utf8_names=len(inventory.unstatable),
            examples_skipped=tuple((too_large + over_budget)[:10]),
        ),
        too_large=tuple(too_large),
    )  # fmt: skip


def _kind(st: Stat) -> str:
    import stat as statmod

    for test, name in ((statmod.S_ISREG, "file"), (statmod.S_ISLNK, "symlink"), (statmod.S_ISDIR, "directory"),
                       (statmod.S_ISFIFO, "fifo"), (statmod.S_ISSOCK, "socket")):  # fmt: skip
        if test(st.mode):
            return name
    return "device"


def _installer_residue(
    reader: GuestReader, inventory: Inventory, reads: dict[str, tuple], too_large: set[str]
) -> tuple[InstallerResidue, ...]:
    """One entry per answer file, one per installer log directory (its files summed up)."""
    groups: dict[str, list[str]] = {}
    for path, st in inventory:
        if not st.is_file or st.size == 0:
            continue
        directory = next((d for d in INSTALLER_DIRS if _under(path, d)), None)
        if directory is not None:
            groups.setdefault(directory, []).append(path)
        elif role_of(path, "/root" if _under(path, "/root") else None) == INSTALLER:
            groups.setdefault(path, []).append(path)
    out = []
    for key, members in sorted(groups.items()):
        answers = tuple((m, a) for m in members for a in reads.get(m, ()))
        size = sum(inventory.get(m).size for m in members)  # type: ignore[union-attr]
        unread = tuple(m for m in members if m in too_large)
        out.append(InstallerResidue(key, reader.disk_file(key), tuple(members), size, answers, unread))
    return tuple(out)


@hookimpl
def certify_guest_collectors() -> list[GuestCollector]:
    return [
        GuestCollector(os_types=("linux",), name="content_scan", collect=collect_content, description=WHAT_IS_READ),
    ]
