"""Guest scan speed: a full ``certify scan`` against the floor of opening the image at all.

Run as root from the checkout: .venv/bin/python benchmarks/guest_bench.py [--images debian,manyfiles] [--repeat N]
                                                                         [--probe-walk] [--keep]

The floor is what any offline inspection pays: a bare python-guestfs handle,
the drive added read-only, launch (same backend settings as certify), inspect,
mount read-only every inspected mountpoint, shutdown, close. The scan is
``certify scan IMAGE --profile isv-selftest --format json`` as a subprocess,
so interpreter start, plugin loading and ingest (hashing the image) count too.
Floor and scan runs alternate so drift in the shared machine hits both alike.

Targets: scan/floor <= 1.0 on a real Debian image, <= 1.25 on one holding
100,000 small files (earlier: 1.25 and 1.5). Figures are printed; nothing is
asserted. --parity also lists each image both ways in one launch (the
appliance's find and the walk through libguestfs) and runs both inspections
(certify's probe and inspect_os), and says whether they agree.

Images are built once and cached in $XDG_CACHE_HOME/certify/bench (default
~/.cache/certify/bench); --rebuild makes them anew. Building needs debootstrap
(apt-get install debootstrap), mkfs.ext4 >= 1.43 (-d), sfdisk and qemu-img,
and a Debian mirror (the one in /etc/apt/sources.list*, else deb.debian.org).
No appliance is needed to build: mkfs.ext4 -d fills the filesystem from the
host directory at an offset inside the partitioned image file.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITE = "bookworm"
# What a small cloud appliance built from Debian carries beyond minbase: an init,
# a kernel, cloud-init (and so Python), remote login, privilege escalation,
# scheduling, logging, networking, unattended security updates. No bootloader:
# nothing here boots the image, and grub's postinst wants a real disk.
PACKAGES = ("systemd-sysv", "linux-image-cloud-amd64", "cloud-init", "openssh-server", "sudo", "cron", "rsyslog",
            "logrotate", "unattended-upgrades", "iproute2", "ifupdown", "isc-dhcp-client", "netbase", "ca-certificates",
            "curl", "less", "vim-tiny", "procps",
            "python3-cffi-backend")  # debootstrap does not resolve virtual packages: python3-cryptography needs it
DISK_SIZE = 3 * 1024**3
PART_OFFSET = 1024 * 1024
MANY_FILES = 100_000
TARGETS = {"debian": 1.0, "manyfiles": 1.25}
ETC_READ_LIMIT = 64 * 1024


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "certify" / "bench"


def log(message: str) -> None:
    print(message, flush=True)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kwargs)


# ---------------------------------------------------------------- image building

def mirror() -> str:
    """The Debian mirror apt is configured with (deb822 or one-line), else deb.debian.org."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for match in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+/debian)/?\s", text, re.M):
            return match.group(1)
    return "http://deb.debian.org/debian"


def require_tools() -> None:
    missing = [t for t in ("debootstrap", "mkfs.ext4", "sfdisk", "qemu-img") if shutil.which(t) is None]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: apt-get install debootstrap e2fsprogs fdisk qemu-utils")


def build_debian_root(root: Path) -> None:
    """debootstrap --variant=minbase plus PACKAGES, then the touches an appliance build gives it."""
    stamp = root.parent / (root.name + ".done")
    if stamp.exists():
        return
    require_tools()
    shutil.rmtree(root, ignore_errors=True)
    url = mirror()
    log(f"  debootstrap {SUITE} minbase + {len(PACKAGES)} packages from {url} into {root}")
    start = time.monotonic()
    run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(root), url],
        stdout=subprocess.DEVNULL)
    (root / "etc/hostname").write_text("bench-appliance\n")
    (root / "etc/machine-id").write_text("")  # as a sysprep'ed image has it
    (root / "etc/network/interfaces.d/eth0").write_text("auto eth0\niface eth0 inet dhcp\n")
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    for lists in (root / "var/lib/apt/lists").glob("*_Packages"):
        lists.unlink()  # apt-get clean && rm lists, as image builds do
    stamp.write_text(f"{time.monotonic() - start:.0f}\n")
    log(f"  debootstrap took {time.monotonic() - start:.0f} s")


def add_many_files(root: Path, count: int) -> str:
    """An application's data: a content-addressed object store plus a static web tree.

    80% objects in /var/lib/app/objects/<2 hex>/<38 hex> (git-like: 256 buckets),
    mode 0640 owned by the service account; 20% in /srv/app/static/<section>/<page>/<n>.<ext>,
    mode 0644 root. Sizes 64 B to 8 KiB, skewed small.
    """
    rng = random.Random(4)
    uid = gid = 990
    with open(root / "etc/passwd", "a") as f:
        f.write(f"app:x:{uid}:{gid}:application service:/var/lib/app:/usr/sbin/nologin\n")
    with open(root / "etc/group", "a") as f:
        f.write(f"app:x:{gid}:\n")
    with open(root / "etc/shadow", "a") as f:
        f.write("app:!:19800::::::\n")
    with open(root / "etc/gshadow", "a") as f:
        f.write("app:!::\n")
    objects = count * 4 // 5
    static = count - objects
    store = root / "var/lib/app/objects"
    for i in range(objects):
        name = f"{rng.getrandbits(160):040x}"
        bucket = store / name[:2]
        bucket.mkdir(parents=True, exist_ok=True)
        path = bucket / name[2:]
        path.write_bytes(rng.randbytes(int(64 * 2 ** rng.uniform(0, 7))))
        os.chown(path, uid, gid)
        os.chmod(path, 0o640)
    for d in [root / "var/lib/app", store, *store.iterdir()]:
        os.chown(d, uid, gid)
        os.chmod(d, 0o750)
    exts = ("html", "css", "js", "json", "svg")
    words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()
    for i in range(static):
        section, page = i % 40, (i // 40) % 25
        directory = root / f"srv/app/static/s{section:02d}/p{page:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        size = int(64 * 2 ** rng.uniform(0, 7))
        text = " ".join(rng.choice(words) for _ in range(size // 6))
        (directory / f"{i:06d}.{exts[i % len(exts)]}").write_text(text[:size] + "\n")
    return (f"{objects:,} objects in /var/lib/app/objects/<2 hex>/<38 hex> (256 buckets, 0640 app:app) + "
            f"{static:,} files in /srv/app/static/sNN/pNN/NNNNNN.<html|css|js|json|svg> (1,000 dirs, 0644 root); "
            "64 B-8 KiB each")


def make_disk(root: Path, image: Path) -> None:
    """MBR disk, one ext4 partition filled from ``root`` on the host, an fstab naming it by UUID; qcow2."""
    fs_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, str(image)))
    (root / "etc/fstab").write_text(f"UUID={fs_uuid} / ext4 errors=remount-ro 0 1\n")
    raw = image.with_suffix(".raw")
    with open(raw, "wb") as f:
        f.truncate(DISK_SIZE)
    run(["sfdisk", "-q", str(raw)], input=f"start={PART_OFFSET // 512}, type=83, bootable\n".encode())
    size_k = (DISK_SIZE - PART_OFFSET) // 1024
    run(["mkfs.ext4", "-q", "-F", "-U", fs_uuid, "-L", "root", "-E", f"offset={PART_OFFSET}", "-d", str(root),
         str(raw), f"{size_k}k"])
    run(["qemu-img", "convert", "-q", "-O", "qcow2", str(raw), str(image)])
    raw.unlink()


def count_files(root: Path) -> tuple[int, int]:
    entries = size = 0
    for dirpath, dirnames, filenames in os.walk(root):
        entries += len(dirnames) + len(filenames)
        for name in filenames:
            try:
                size += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return entries, size


@dataclass
class Image:
    name: str
    path: Path
    entries: int
    data_bytes: int
    layout: str
    build_seconds: float


def build_images(names: list[str], rebuild: bool) -> dict[str, Image]:
    base = cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    debian_root = base / "debian-root"
    if rebuild:
        for p in base.glob("*"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    images = {}
    for name in names:
        image = base / f"{name}.qcow2"
        meta = base / f"{name}.json"
        if not (image.exists() and meta.exists()):
            log(f"building the {name} image (cached in {base})")
            start = time.monotonic()
            build_debian_root(debian_root)
            root = debian_root
            layout = "debootstrap --variant=minbase " + SUITE + " + " + " ".join(PACKAGES)
            if name == "manyfiles":
                root = base / "manyfiles-root"
                shutil.rmtree(root, ignore_errors=True)
                run(["cp", "-a", str(debian_root), str(root)])
                layout += "; plus " + add_many_files(root, MANY_FILES)
            entries, size = count_files(root)
            make_disk(root, image)
            if root != debian_root:
                shutil.rmtree(root)
            seconds = time.monotonic() - start
            meta.write_text(json.dumps({"entries": entries, "bytes": size, "layout": layout, "build_seconds": seconds}))
            log(f"  built {image} in {seconds:.0f} s")
        m = json.loads(meta.read_text())
        images[name] = Image(name, image, m["entries"], m["bytes"], m["layout"], m["build_seconds"])
    return images


# ---------------------------------------------------------------- the floor and the scan

@contextmanager
def bare_guest(image: Path, phases: dict[str, float], *, memsize: int | None = None, smp: int | None = None):
    """The floor, phase by phase: handle, read-only drive, launch, inspect, mount_ro; shutdown and close on exit."""
    import guestfs

    from certify.guest import accel

    settings = accel.choose().backend_settings
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        t = time.monotonic()
        g = guestfs.GuestFS(python_return_dict=True, close_on_exit=False)
        if "LIBGUESTFS_BACKEND" not in os.environ:
            g.set_backend("direct")
        if settings is not None:
            g.set_backend_settings(settings)
        if memsize:
            g.set_memsize(memsize)
        if smp:
            g.set_smp(smp)
        g.set_tmpdir(tmp)
        g.add_drive_opts(str(image), readonly=True, format="qcow2")
        g.launch()
        phases["launch"] = time.monotonic() - t
        try:
            t = time.monotonic()
            roots = g.inspect_os()
            phases["inspect"] = time.monotonic() - t
            t = time.monotonic()
            mounts = g.inspect_get_mountpoints(roots[0])
            for mountpoint in sorted(mounts, key=len):
                g.mount_ro(mounts[mountpoint], mountpoint)
            phases["mount"] = time.monotonic() - t
            yield g, roots[0], mounts, tmp
        finally:
            t = time.monotonic()
            g.shutdown()
            g.close()
            phases["shutdown"] = time.monotonic() - t


def floor_run(image: Path) -> dict[str, float]:
    phases: dict[str, float] = {}
    start = time.monotonic()
    with bare_guest(image, phases):
        pass
    phases["total"] = time.monotonic() - start
    return phases


def scan_run(image: Path, out_dir: Path) -> tuple[float, dict]:
    report = out_dir / "report.json"
    cmd = [str(REPO / ".venv/bin/certify"), "scan", str(image), "--profile", "isv-selftest", "--format", "json",
           "-o", str(report), "-q"]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - start
    if proc.returncode not in (0, 1) or not report.exists():
        sys.exit(f"certify scan exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return seconds, json.loads(report.read_text())


# ---------------------------------------------------------------- the primitives' budget (--probe-walk)

def timed(fn):
    t = time.monotonic()
    value = fn()
    return time.monotonic() - t, value


def walk_cross_dir(g, workdir: str, batch: int = 1000) -> int:
    """find0, then lstatnslist("/", relative paths) in batches: one round trip per `batch` entries, not per directory."""
    with tempfile.NamedTemporaryFile(dir=workdir) as f:
        g.find0("/", f.name)
        names = [n.decode("utf-8", "surrogateescape") for n in f.read().split(b"\0") if n]
    count = 0
    for i in range(0, len(names), batch):
        count += len(g.lstatnslist("/", names[i:i + batch]))
    return count


def walk_find0(g, workdir: str) -> int:
    """The walk certify used first: find0 for every path, then lstatnslist per directory."""
    from collections import defaultdict

    with tempfile.NamedTemporaryFile(dir=workdir) as f:
        g.find0("/", f.name)
        raw = f.read()
    by_dir = defaultdict(list)
    for name in raw.split(b"\0"):
        if name:
            parent, _, base = ("/" + name.decode("utf-8", "surrogateescape")).rpartition("/")
            by_dir[parent or "/"].append(base)
    return sum(len(g.lstatnslist(d, names)) for d, names in sorted(by_dir.items()))


def walk_readdir(g) -> int:
    """Breadth of the tree by directory: readdir (one reply per directory) + lstatnslist, recursing on S_ISDIR.

    find0 sends one protocol chunk per path, so its cost grows with files;
    this grows with directories.
    """
    import stat as statmod

    count, pending = 0, ["/"]
    while pending:
        directory = pending.pop()
        names = [d["name"] for d in g.readdir(directory) if d["name"] not in (".", "..")]
        if not names:
            continue
        for name, st in zip(names, g.lstatnslist(directory, names)):
            count += 1
            if statmod.S_ISDIR(st["st_mode"]):
                pending.append(directory.rstrip("/") + "/" + name)
    return count


def probe_launch_variants(image: Path, results: dict) -> None:
    """Launch with two vCPUs (MTTCG can run them on two host threads) and with more memory: launch and cold walk."""
    from certify.guest.reader import GuestReader

    for label, kwargs in (("smp=2", {"smp": 2}), ("memsize=2048", {"memsize": 2048})):
        phases: dict[str, float] = {}
        with bare_guest(image, phases, **kwargs) as (g, root, mounts, tmp):
            reader = GuestReader(g, dict(mounts), [], {}, tmp)
            walk, inv = timed(reader.inventory)
        results[f"{label}: launch"] = phases["launch"]
        results[f"{label}: inspect+mount"] = phases["inspect"] + phases["mount"]
        results[f"{label}: inventory cold"] = walk


def probe_walk(image: Path, results: dict) -> None:
    """Inside one appliance: cold/warm cost of find0, the inventory walk and read_many of /etc."""
    from certify.bundle.disk import BundleDisk
    from certify.guest.reader import GuestReader, _os_info

    phases: dict[str, float] = {}
    with bare_guest(image, phases) as (g, root, mounts, tmp):
        disks = [BundleDisk(str(image), image.name, "qcow2")]
        mounted = dict(mounts)
        info = _os_info(g, root)

        def cold():
            g.sync()
            g.drop_caches(3)

        def listing():
            with tempfile.NamedTemporaryFile(dir=tmp) as f:
                g.find0("/", f.name)
                return f.read().count(b"\0")

        cold()
        results["find0 cold"], n = timed(listing)
        results["find0 entries"] = n
        results["find0 warm"], _ = timed(listing)  # find0 sends one protocol chunk per path: CPU-bound under TCG
        cold()
        reader = GuestReader(g, mounted, disks, info, tmp)
        results["inventory cold"], inv = timed(reader.inventory)
        results["inventory entries"] = len(inv)
        results["directories"] = sum(1 for _, st in inv if st.is_dir)
        reader = GuestReader(g, mounted, disks, info, tmp)
        results["inventory warm"], _ = timed(reader.inventory)
        etc = [p for p, st in inv.under("/etc") if st.is_file and st.size <= ETC_READ_LIMIT]
        results["/etc files <=64KiB"] = len(etc)
        results["/etc bytes"] = sum(inv.get(p).size for p in etc)
        cold()
        reader._inventory = inv  # noqa: SLF001 - the walk is not what is timed here
        results["read_many /etc cold"], got = timed(lambda: reader.read_many(etc, ETC_READ_LIMIT))
        results["read_many /etc files"] = len(got)
        results["read_many /etc warm"], _ = timed(lambda: reader.read_many(etc, ETC_READ_LIMIT))
        cold()
        results["walk find0+lstatnslist cold"], n = timed(lambda: walk_find0(g, tmp))
        results["walk find0+lstatnslist warm"], n = timed(lambda: walk_find0(g, tmp))
        cold()
        results["walk readdir+lstatnslist cold"], n = timed(lambda: walk_readdir(g))
        results["walk readdir+lstatnslist entries"] = n
        results["walk readdir+lstatnslist warm"], n = timed(lambda: walk_readdir(g))
        # Can one lstatnslist call span directories (names relative to /)? Fewer round trips if so.
        try:
            g.lstatnslist("/", ["etc/hostname"])
            results["lstatnslist across dirs"] = "accepted"
        except RuntimeError as exc:
            results["lstatnslist across dirs"] = f"refused ({str(exc).splitlines()[0][:60]})"
        if results["lstatnslist across dirs"] == "accepted":
            cold()
            results["walk, cross-dir batches cold"], n = timed(lambda: walk_cross_dir(g, tmp))
            results["walk, cross-dir batches warm"], n = timed(lambda: walk_cross_dir(g, tmp))
        # One round trip on a warm path: what a per-file loop pays per call before any I/O.
        t = time.monotonic()
        for _ in range(200):
            g.lstatns("/etc/hostname")
        results["round trip (lstatns, warm)"] = (time.monotonic() - t) / 200
        few = etc[:200]
        cold()
        t = time.monotonic()
        for p in few:
            g.pread(p, ETC_READ_LIMIT, 0)
        results["pread per file (cold)"] = (time.monotonic() - t) / max(1, len(few))


# ---------------------------------------------------------------- parity (--parity)

def parity(image: Path, results: dict) -> None:
    """One launch: certify's probe against inspect_os, then the find listing against the walk, entry for entry."""
    from certify.guest import identify
    from certify.guest.reader import GuestReader, _os_info

    phases: dict[str, float] = {}
    with bare_guest(image, phases) as (g, root, mounts, tmp):
        g.umount_all()
        results["inspect_os"] = phases["inspect"]
        t, probed = timed(lambda: identify.probe(g))
        results["probe"] = t
        answer = identify.certain_root(probed)
        if isinstance(answer, str):
            results["inspection parity"] = f"probe left it to inspect_os: {answer}"
        else:
            same = answer.root == root and answer.mountpoints == mounts and answer.os_info == _os_info(g, root)
            results["inspection parity"] = "identical" if same else f"DIFFERENT: {answer} vs {mounts} {_os_info(g, root)}"
        for mountpoint in sorted(mounts, key=len):
            g.mount_ro(mounts[mountpoint], mountpoint)
        listed = GuestReader(g, dict(mounts), [], {}, tmp)
        results["find listing"], listed_inventory = timed(listed.inventory)
        results["listing method"] = listed.inventory_method + (f" ({listed.inventory_fallback})" if listed.inventory_fallback else "")
        walked = GuestReader(g, dict(mounts), [], {}, tmp)
        results["walk"], walked_inventory = timed(walked._walk)  # noqa: SLF001 - the reference
        differ = [p for p in set(listed_inventory.entries) | set(walked_inventory.entries)
                  if listed_inventory.get(p) != walked_inventory.get(p)]  # fmt: skip
        results["entries compared"] = len(walked_inventory)
        same = not differ and listed_inventory.unstatable == walked_inventory.unstatable
        results["inventory parity"] = "identical" if same else f"DIFFERENT: {len(differ)} entries, e.g. {sorted(differ)[:3]}"


# ---------------------------------------------------------------- main

def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", default="debian,manyfiles", help="comma-separated: debian, manyfiles")
    parser.add_argument("--repeat", type=int, default=1, help="floor/scan pairs per image (medians are reported)")
    parser.add_argument("--probe-walk", action="store_true", help="also time inventory() and read_many() in one launch")
    parser.add_argument("--probe-launch", action="store_true",
                        help="with --probe-walk: also launch with smp=2 and with memsize=2048 and time the walk")
    parser.add_argument("--parity", action="store_true",
                        help="also compare the probe with inspect_os and the find listing with the walk, in one launch")
    parser.add_argument("--keep", action="store_true", help=f"keep each scan's report.json under {cache_dir()}/reports")
    parser.add_argument("--rebuild", action="store_true", help="build the cached images anew")
    args = parser.parse_args()
    names = [n.strip() for n in args.images.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown image(s) {', '.join(unknown)}: choose from {', '.join(TARGETS)}")
    if os.geteuid() != 0:
        sys.exit("run as root: debootstrap and the image build need it")
    sys.path.insert(0, str(REPO))
    from certify.guest import accel

    images = build_images(names, args.rebuild)
    log(f"appliance: {accel.choose().description}; {os.cpu_count()} host cores")
    rows = []
    for name in names:
        image = images[name]
        log(f"\n== {name}: {image.path} ({image.path.stat().st_size / 1e6:.0f} MB qcow2)")
        log(f"   {image.entries:,} entries, {image.data_bytes / 1e6:.0f} MB in regular files; "
            f"built in {image.build_seconds:.0f} s")
        log(f"   layout: {image.layout}")
        floors, scans, floor_phases, reports = [], [], [], []
        for i in range(args.repeat):
            phases = floor_run(image.path)
            floors.append(phases["total"])
            floor_phases.append(phases)
            log(f"   floor #{i + 1}: {phases['total']:.1f} s (" +
                ", ".join(f"{k} {v:.1f}" for k, v in phases.items() if k != "total") + ")")
            with tempfile.TemporaryDirectory(prefix="bench-scan-") as out:
                seconds, report = scan_run(image.path, Path(out))
            scans.append(seconds)
            reports.append(report)
            if args.keep:
                kept = cache_dir() / "reports" / f"{name}-{i + 1}.json"
                kept.parent.mkdir(parents=True, exist_ok=True)
                kept.write_text(json.dumps(report, indent=1))
                log(f"   report kept: {kept}")
            t = report.get("timings", {})
            log(f"   scan  #{i + 1}: {seconds:.1f} s wall; report timings: " +
                ", ".join(f"{k} {v:.1f}" for k, v in t.items() if not isinstance(v, dict)))
        floor, scan = median(floors), median(scans)
        ratio = scan / floor
        last = reports[-1]
        timings = last.get("timings", {})
        statuses = last.get("check_status", {})
        log(f"   verdict {last.get('verdict')}; {len(statuses)} checks run; "
            f"{sum(1 for f in last.get('findings', []) if f.get('status') == 'fail')} failing findings")
        collectors = timings.get("collectors") or {}
        if collectors:
            log("   per collector (last scan): " + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(collectors.items())))
        guest, opened = timings.get("guest"), timings.get("guest_open")
        if guest is not None and opened is not None:
            rest = guest - opened - sum(collectors.values())
            log(f"   guest stage {guest:.1f} s = open (launch+inspect+mount) {opened:.1f} + collectors "
                f"{sum(collectors.values()):.1f} + shutdown/other {rest:.1f}")
        log(f"   floor median {floor:.1f} s, scan median {scan:.1f} s: ratio {ratio:.2f} "
            f"(target <= {TARGETS[name]}: {'met' if ratio <= TARGETS[name] else 'NOT met'}); "
            f"scan budget left at the target {floor * TARGETS[name] - scan:+.1f} s")
        probe: dict = {}
        if args.parity:
            checked: dict = {}
            parity(image.path, checked)
            log("   parity (one launch): " + "; ".join(
                f"{k} {v:.2f} s" if isinstance(v, float) else f"{k}: {v:,}" if isinstance(v, int) else f"{k}: {v}"
                for k, v in checked.items()))
        if args.probe_walk:
            probe_walk(image.path, probe)
            if args.probe_launch:
                probe_launch_variants(image.path, probe)
            log("   primitives (one launch, caches dropped before each cold figure):")
            for key, value in probe.items():
                if isinstance(value, str):
                    shown = value
                elif isinstance(value, int):
                    shown = f"{value:,}"
                else:
                    shown = f"{value * 1e3:.2f} ms" if value < 0.1 else f"{value:.2f} s"
                log(f"     {key:<32} {shown}")
            if probe.get("inventory entries"):
                log(f"     inventory cold per entry         {probe['inventory cold'] / probe['inventory entries'] * 1e6:.0f} us")
                # Collectors of the full catalog walk once and read /etc in one batch: what that adds to today's scan.
                projected = (scan + probe["inventory cold"] + probe["read_many /etc cold"]) / floor
                log(f"   projected ratio with one cold inventory + one /etc read_many added: {projected:.2f} "
                    f"(target <= {TARGETS[name]})")
        rows.append((name, image, floor, scan, ratio, timings, probe))

    log("\n" + "=" * 100)
    header = f"{'image':<10} {'entries':>9} {'floor s':>8} {'scan s':>8} {'ratio':>6} {'target':>6} {'met':>4} " \
             f"{'ingest':>7} {'g.open':>7} {'collect':>8} {'checks':>7}"
    if args.probe_walk:
        header += f" {'walk cold':>10} {'etc read':>9}"
    log(header)
    for name, image, floor, scan, ratio, timings, probe in rows:
        collect = sum((timings.get("collectors") or {}).values())
        line = (f"{name:<10} {image.entries:>9,} {floor:>8.1f} {scan:>8.1f} {ratio:>6.2f} {TARGETS[name]:>6} "
                f"{'yes' if ratio <= TARGETS[name] else 'no':>4} {timings.get('ingest', 0):>7.1f} "
                f"{timings.get('guest_open', float('nan')):>7.1f} {collect:>8.1f} {timings.get('checks', 0):>7.1f}")
        if args.probe_walk:
            line += f" {probe.get('inventory cold', float('nan')):>10.1f} {probe.get('read_many /etc cold', float('nan')):>9.1f}"
        log(line)
    log(f"(medians of {args.repeat} alternating floor/scan pair(s); ingest/g.open/collect/checks from the last scan's "
        "report timings; nothing here fails a test)")


if __name__ == "__main__":
    main()
