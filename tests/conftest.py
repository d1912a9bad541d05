"""Session fixtures: test appliances built by code, scanned once each.

A libguestfs launch costs tens of seconds under TCG, so every guest image is
built in ONE launch, and the scans that boot an appliance run concurrently,
once per session; tests read their JSON reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import plants
import pytest
import shapes

from certify import sample
from certify.guest.parsers.sshkeys import parse_public_key_line

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CERTIFY = [sys.executable, "-m", "certify"]


def run_certify(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*CERTIFY, *args], capture_output=True, text=True, env=env, **kw)


@dataclass
class Planted:
    """What the dirty image holds, so tests can assert exact findings."""

    host_ed25519_fp: str
    root_key_fp: str
    alice_key_fps: tuple[str, str]
    weird_key_fp: str


def _fp(public_line: str) -> str:
    key = parse_public_key_line(public_line)
    assert key and key.fingerprint
    return key.fingerprint


def dirty_spec() -> tuple[sample.GuestSpec, Planted]:
    spec = sample.base_system("vendor-build-07", users=("alice", "bob", "we[ir]d"))
    host_private, host_public = sample.ed25519_keypair("root@vendor-build-07")
    spec.add("/etc/ssh/ssh_host_ed25519_key", host_private, 0o600)
    spec.add("/etc/ssh/ssh_host_ed25519_key.pub", host_public + "\n")
    spec.add("/etc/ssh/ssh_host_rsa_key", sample.rsa_pem_private_key(), 0o600)  # no .pub beside it
    _, root_key = sample.ed25519_keypair("packer@vendor-ci")
    for i, home in enumerate(("/root", "/home/alice", "/home/bob", "/home/we[ir]d")):
        uid = 0 if i == 0 else 999 + i
        spec.mkdir(f"{home}/.ssh", 0o700, owner=(uid, uid))  # as sshd wants them: only the keys are findings
    spec.add("/root/.ssh/authorized_keys", root_key + "\n", 0o600)
    _, alice1 = sample.ed25519_keypair("alice@laptop")
    _, alice2 = sample.ed25519_keypair("deploy")
    spec.add("/home/alice/.ssh/authorized_keys2", f'# team keys\n\n{alice1}\nfrom="10.0.0.1",no-pty {alice2}\n', 0o600)
    spec.add("/home/bob/.ssh/authorized_keys", "# nothing here\n\n", 0o600)  # comments only: not a finding
    spec.add("/home/bob/.ssh/authorized_keys.bak", root_key + "\n", 0o600)  # not a name sshd reads
    _, weird = sample.ed25519_keypair("weird")
    spec.add("/home/we[ir]d/.ssh/authorized_keys", weird + "\n", 0o600)  # glob characters in a home
    return spec, Planted(_fp(host_public), _fp(root_key), (_fp(alice1), _fp(alice2)), _fp(weird))


def clean_spec() -> sample.GuestSpec:
    spec = sample.base_system("localhost")
    spec.mkdir("/root/.ssh", 0o700)
    spec.mkdir("/home/alice/.ssh", 0o700, owner=(1000, 1000))
    spec.add("/home/alice/.ssh/authorized_keys", "# keys are added at first boot by cloud-init\n", 0o600, owner=(1000, 1000))
    return spec


BARE_QCOW2_SHAPE = "alpine-appliance"
VNC_EXTRA = {"RemoteDisplay.vnc.enabled": "TRUE", "RemoteDisplay.vnc.port": "5901", "RemoteDisplay.vnc.password": "vendor123"}


@dataclass
class Appliances:
    dirty_ova: Path
    clean_ova: Path
    qcow2: Path
    empty_disk: Path
    planted: Planted
    qcow2_host_fp: str
    shapes: dict[str, shapes.Shape]  # tests/shapes.py: several disks, LVM, xfs/btrfs, three distro families
    shape_artifacts: dict[str, Path]
    shape_signatures: dict[str, list[tuple[str | None, str]]]  # what each raw disk held, read on the host
    catalog: dict[str, Path]  # "dirty" / "clean": tests/plants composed, as bare qcow2 disks
    raw_disks: dict[str, list[str]]  # every image above by name, as the raw disks it was built on (sparse files)


def to_qcow2(raw: str, qcow2: Path) -> None:
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, str(qcow2)], check=True)


def disk_signature(raw: str) -> tuple[str | None, str]:
    """(partition table, signature of the first partition or the whole disk), by util-linux on the host: no launch."""
    table = subprocess.run(["sfdisk", "--json", raw], capture_output=True, text=True)
    label, offset = None, 0
    if table.returncode == 0 and table.stdout.strip():
        parts = json.loads(table.stdout)["partitiontable"]
        label, offset = parts["label"], parts["partitions"][0]["start"] * parts.get("sectorsize", 512)
    found = subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", "-O", str(offset), raw], capture_output=True, text=True)
    return label, found.stdout.strip()


def package(shape: shapes.Shape, disks: list[str], out: Path) -> Path:
    """The shape's raw disks as the bundle it is uploaded as."""
    artifact = out / shape.artifact_name
    if shape.kind == "ova":
        sample.make_ova(str(artifact), disks)
    elif shape.kind == "vmx":
        artifact.parent.mkdir()
        sample.make_vmx(str(artifact), disks)
    else:
        assert len(disks) == 1, "a bare disk upload is one disk"
        to_qcow2(disks[0], artifact)
    return artifact


@pytest.fixture(scope="session")
def appliances(tmp_path_factory) -> Appliances:
    """Every guest image of the session, built in ONE libguestfs launch."""
    out = tmp_path_factory.mktemp("appliances")
    dirty, planted = dirty_spec()
    shape_specs = shapes.shapes()
    raws = {str(out / "dirty.raw"): dirty, str(out / "clean.raw"): clean_spec(),
            str(out / "catalog-dirty.raw"): plants.catalog_dirty(), str(out / "catalog-clean.raw"): plants.catalog_clean(),
            **{str(out / f"{name}.raw"): shape.spec for name, shape in shape_specs.items()}}  # fmt: skip
    disks = sample.build_images(raws)
    sample.make_ova(str(out / "dirty-appliance.ova"), str(out / "dirty.raw"), VNC_EXTRA)
    sample.make_ova(str(out / "clean-appliance.ova"), str(out / "clean.raw"))
    catalog = {which: out / f"catalog-{which}.qcow2" for which in ("dirty", "clean")}
    for which, artifact in catalog.items():
        to_qcow2(str(out / f"catalog-{which}.raw"), artifact)
    signatures, artifacts = {}, {}
    for name, shape in shape_specs.items():
        shape_disks = disks[str(out / f"{name}.raw")]
        signatures[name] = [disk_signature(d) for d in shape_disks]
        artifacts[name] = package(shape, shape_disks, out)
    raw_disks = {Path(image).stem: paths for image, paths in disks.items()}  # kept: the inspection-parity launch reads them
    with open(out / "blank.img", "wb") as f:  # no partition table, no filesystem, no OS
        f.truncate(16 * 1024 * 1024)
    # The bare qcow2 upload is the Alpine shape: one scan serves both, one launch fewer.
    bare = shape_specs[BARE_QCOW2_SHAPE]
    return Appliances(out / "dirty-appliance.ova", out / "clean-appliance.ova", artifacts[BARE_QCOW2_SHAPE],
                      out / "blank.img", planted, bare.fingerprints["/etc/ssh/ssh_host_ed25519_key"],
                      shape_specs, artifacts, signatures, catalog, raw_disks)  # fmt: skip


@pytest.fixture
def blank_disk(tmp_path) -> Path:
    """A disk with nothing on it: a scan still boots an appliance to look (the tests that stop one part way)."""
    disk = tmp_path / "blank.img"
    with open(disk, "wb") as f:
        f.truncate(64 * 1024 * 1024)
    return disk


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory) -> Path:
    """The example third-party plugin, installed as a real distribution into its own directory."""
    site = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
         "--no-build-isolation", "--target", str(site), str(REPO / "tests" / "plugin_example")],
        check=True, capture_output=True,
    )  # fmt: skip
    return site


def env_with_plugin(site: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return env


@dataclass
class Scan:
    returncode: int
    report: dict
    stderr: str
    outdir: Path
    facts: Path  # what the scan gathered (--save-facts), to judge again without a launch
    env: dict[str, str] | None  # the environment it ran in (the plugin's, for one)
    args: list[str]


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory) -> tuple[Path, Path]:
    prefix = tmp_path_factory.mktemp("keys") / "signing"
    assert run_certify("keygen", "-o", str(prefix)).returncode == 0
    return prefix, Path(f"{prefix}.pub")


@pytest.fixture(scope="session")
def guest_scans(appliances, plugin_site, signing_key, tmp_path_factory) -> dict[str, Scan]:
    """Every scan that boots an appliance, run once and concurrently; tests read what they wrote (reports and facts)."""
    out = tmp_path_factory.mktemp("reports")
    every_format = ["--format", "json,sarif,junit,html,text"]
    jobs = {
        "dirty": (appliances.dirty_ova, None, every_format),
        "clean+plugin": (appliances.clean_ova, env_with_plugin(plugin_site),
                         ["--format", "json", "--certificate", str(out / "clean+plugin" / "cert.json"), "--key", str(signing_key[0])]),
        "qcow2": (appliances.qcow2, None, ["--format", "json"]),
        "no-os": (appliances.empty_disk, None, ["--format", "json"]),
        **{f"shape:{name}": (artifact, None, ["--format", "json"])
           for name, artifact in appliances.shape_artifacts.items() if name != BARE_QCOW2_SHAPE},
        **{f"catalog-{which}": (artifact, None, ["--format", "json", "--profile", "isv-selftest"])
           for which, artifact in appliances.catalog.items()},
    }  # fmt: skip
    procs = {}
    for name, (artifact, env, args) in jobs.items():
        outdir = out / name.replace(":", "-")
        outdir.mkdir()
        target = outdir if "," in args[1] else outdir / "report.json"
        facts = out / f"{outdir.name}.facts.json"
        cmd = [*CERTIFY, "scan", str(artifact), *args, "-o", str(target), "--save-facts", str(facts)]
        # Output goes to files, not pipes: with this many scans, one waited on last could fill its pipe and stall.
        log = out / f"{outdir.name}.stderr"
        with open(log, "w") as stderr:
            procs[name] = (subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=stderr), outdir, log, facts, env, args)
    scans = {}
    for name, (proc, outdir, log, facts, env, args) in procs.items():
        proc.wait(timeout=1800)
        stderr = log.read_text()
        report = outdir / "report.json"
        assert report.exists(), f"scan {name} wrote no report (exit {proc.returncode}): {stderr}"
        assert facts.exists(), f"scan {name} saved no facts (exit {proc.returncode}): {stderr}"
        scans[name] = Scan(proc.returncode, json.loads(report.read_text()), stderr, outdir, facts, env, args)
    scans[f"shape:{BARE_QCOW2_SHAPE}"] = scans["qcow2"]
    return scans
