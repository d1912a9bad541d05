"""The CLI contract: commands, exit codes, one-line errors. No guest launch here."""

from __future__ import annotations

import json
import subprocess
import sys
import os
import tarfile
import textwrap
from pathlib import Path

from conftest import env_with_plugin, run_certify


def write_vmx(directory, body: str):
    path = directory / "appliance.vmx"
    path.write_text(textwrap.dedent(body).lstrip())
    return path


def test_vmx_pointing_at_host_file_fails_without_reading_it(tmp_path):
    vmx = write_vmx(tmp_path, """
        config.version = "8"
        virtualHW.version = "19"
        scsi0.present = "TRUE"
        scsi0:0.present = "TRUE"
        scsi0:0.fileName = "/etc/shadow"
    """)
    report_path = tmp_path / "report.json"
    # Record every file the process opens (Python audit events), then run the real CLI in it.
    probe = textwrap.dedent(f"""
        import json, sys
        opened = []
        sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" else None)
        from certify.cli import main
        rc = main(["scan", {str(vmx)!r}, "--format", "json", "-o", {str(report_path)!r}, "-q"])
        print(json.dumps({{"rc": rc, "opened": opened}}))
    """)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    outcome = json.loads(result.stdout.splitlines()[-1])
    assert outcome["rc"] == 1
    assert not any("shadow" in path for path in outcome["opened"])
    assert "appliance.vmx" in outcome["opened"]  # the hook does see the files the scan reads (opened by name in their folder)
    report = json.loads(report_path.read_text())
    assert report["verdict"] == "fail"
    storage = [{k: v for k, v in f.items() if k not in ("fingerprint",)} for f in report["findings"] if f["id"] == "storage-path-outside-bundle"]
    assert storage == [
        {
            "id": "storage-path-outside-bundle",
            "severity": "critical",
            "title": "Descriptor points at storage outside the bundle",
            "status": "fail",
            "location": {"layer": "descriptor", "file": "appliance.vmx", "key": "scsi0:0.fileName", "line": 5, "path": "/etc/shadow"},
            "evidence": "'/etc/shadow' is an absolute path; it was not opened",
            "remediation": storage[0]["remediation"],
            "code": None,
            "waiver": None,
            "known": False,
        }
    ]
    # With no disk inside the bundle, guest checks say so instead of passing.
    assert report["check_status"]["ssh-host-keys-present"] == "not-evaluated"


def test_vnc_in_vmx_text_report(tmp_path):
    vmx = write_vmx(tmp_path, """
        RemoteDisplay.vnc.enabled = "TRUE"
        RemoteDisplay.vnc.port = "5900"
    """)
    result = run_certify("scan", str(vmx), "-q")
    assert result.returncode == 1
    assert "NOT CERTIFIED" in result.stdout
    assert "vmx-vnc-enabled" in result.stdout and "appliance.vmx:1 RemoteDisplay.vnc.enabled" in result.stdout
    assert "fix" in result.stdout


def test_missing_path_is_a_one_line_usage_error(tmp_path):
    result = run_certify("scan", str(tmp_path / "nope.ova"), "-q")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"certify: {tmp_path / 'nope.ova'}: no such file or directory"]
    assert result.stdout == ""


def test_unknown_file_type_is_a_usage_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    result = run_certify("scan", str(path), "-q")
    assert result.returncode == 2
    assert "not a recognised appliance" in result.stderr and "Traceback" not in result.stderr


def test_bad_option_is_a_one_line_usage_error():
    result = run_certify("scan", "--format", "yaml", "x.ova")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


def test_report_into_missing_directory_fails_before_scanning(tmp_path):
    vmx = write_vmx(tmp_path, 'config.version = "8"\n')
    result = run_certify("scan", str(vmx), "-o", str(tmp_path / "no" / "r.json"), "-q")
    assert result.returncode == 2
    assert "does not exist" in result.stderr


def test_hostile_ova_is_rejected_with_exit_2_and_a_json_report(tmp_path):
    ova = tmp_path / "evil.ova"
    with tarfile.open(ova, "w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("../../etc/cron.d/evil")
        info.size = 0
        tar.addfile(info)
    out = tmp_path / "r.json"
    result = run_certify("scan", str(ova), "--format", "json", "-o", str(out), "-q")
    assert result.returncode == 2
    report = json.loads(out.read_text())
    assert report["verdict"] == "rejected"
    assert "climbs out" in report["rejection"]["reason"]
    assert report["findings"] == [] and report["checks_run"] == []
    assert result.stderr.strip().splitlines() == [f"certify: {ova}: rejected: {report['rejection']['reason']}"]


def test_checks_lists_the_catalog():
    result = run_certify("checks", "--format", "json")
    assert result.returncode == 0
    catalog = {c["id"]: c for c in json.loads(result.stdout)}
    assert {k: (v["severity"], v["layer"]) for k, v in catalog.items()} == {
        "ssh-host-keys-present": ("high", "guest"),
        "ssh-authorized-keys-present": ("critical", "guest"),
        "vmx-vnc-enabled": ("high", "descriptor"),
        "storage-path-outside-bundle": ("critical", "descriptor"),
        "manifest-missing": ("medium", "bundle"),
        "unsigned-bundle": ("info", "bundle"),
        "saved-memory-state": ("high", "bundle"),
        "bundle-extraneous-files": ("medium", "bundle"),
        "host-device-passthrough": ("high", "descriptor"),
        "host-listener-or-pipe": ("critical", "descriptor"),
        "shared-folder": ("critical", "descriptor"),
        "descriptor-secret": ("high", "descriptor"),
        "duplicate-descriptor-key": ("high", "descriptor"),
        "unresolved-template-placeholder": ("high", "descriptor"),
        "vmx-hardware-version": ("medium", "descriptor"),
        "vmx-isolation-settings": ("low", "descriptor"),
        "extraconfig-smuggling": ("high", "descriptor"),
        "dangling-reference": ("high", "descriptor"),
        "disk-format-mismatch": ("critical", "disk"),
        "disk-external-reference": ("critical", "disk"),
        "disk-hidden-state": ("critical", "disk"),
        "disk-corrupt": ("high", "disk"),
        "account-empty-password": ("critical", "guest"),
        "account-file-permissions": ("high", "guest"),
        "account-usable-password": ("high", "guest"),
        "cleartext-remote-services": ("high", "guest"),
        "cloud-agent-state-residue": ("medium", "guest"),
        "cloud-init-seeded-secrets": ("high", "guest"),
        "cloud-provider-credentials": ("critical", "guest"),
        "default-or-weak-password": ("critical", "guest"),
        "dev-saas-registry-tokens": ("high", "guest"),
        "extra-uid0-accounts": ("critical", "guest"),
        "hardcoded-app-secrets": ("high", "guest"),
        "home-and-ssh-dir-permissions": ("medium", "guest"),
        "installer-answer-files": ("high", "guest"),
        "instance-identity-and-entropy": ("medium", "guest"),
        "log-files-present": ("medium", "guest"),
        "network-identity-residue": ("low", "guest"),
        "package-cache-residue": ("info", "guest"),
        "passwd-backup-files": ("medium", "guest"),
        "persistent-net-mac-binding": ("medium", "guest"),
        "private-key-material": ("high", "guest"),
        "rhosts-netrc-trust-files": ("high", "guest"),
        "root-login-not-locked": ("high", "guest"),
        "scheduled-jobs-residue": ("medium", "guest"),
        "scratch-and-crash-residue": ("low", "guest"),
        "shell-history-present": ("medium", "guest"),
        "ssh-host-key-permissions": ("high", "guest"),
        "ssh-user-private-keys": ("critical", "guest"),
        "sshd-hardening-baseline": ("low", "guest"),
        "sshd-password-authentication": ("high", "guest"),
        "sshd-permit-empty-passwords": ("high", "guest"),
        "sshd-permit-root-login": ("high", "guest"),
        "sudo-config": ("medium", "guest"),
        "suid-sgid-inventory": ("medium", "guest"),
        "system-accounts-login": ("medium", "guest"),
        "vendor-remote-access": ("medium", "guest"),
        "vnc-password-file": ("critical", "guest"),
        "world-writable-files": ("medium", "guest"),
    }
    assert all(c["title"] and c["remediation"] for c in catalog.values())
    text = run_certify("checks")
    assert text.returncode == 0 and "ssh-host-keys-present" in text.stdout


def test_third_party_plugin_shows_in_checks(plugin_site):
    result = run_certify("checks", "--format", "json", env=env_with_plugin(plugin_site))
    assert result.returncode == 0, result.stderr
    ids = {c["id"] for c in json.loads(result.stdout)}
    assert "acme-generic-hostname" in ids and "ssh-host-keys-present" in ids


def test_plugin_autoload_can_be_disabled(plugin_site):
    env = env_with_plugin(plugin_site) | {"CERTIFY_DISABLE_PLUGIN_AUTOLOAD": "1"}
    result = run_certify("checks", "--format", "json", env=env)
    assert "acme-generic-hostname" not in {c["id"] for c in json.loads(result.stdout)}


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "certify"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("certify ")


def test_outputs_never_replace_devices_links_or_the_upload(tmp_path):
    import os

    vmx = write_vmx(tmp_path, 'RemoteDisplay.vnc.enabled = "TRUE"\n')
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "elsewhere.json")
    for target, message in [(fifo, "not a regular file"), (link, "not a regular file"), (vmx, "would overwrite the upload")]:
        result = run_certify("scan", str(vmx), "-q", "--format", "json", "-o", str(target))
        assert result.returncode == 2 and message in result.stderr, (target, result.stderr)
    assert fifo.is_fifo() and link.is_symlink() and "RemoteDisplay" in vmx.read_text()
    # A directory upload: its descriptor is only known once read, and still never overwritten.
    result = run_certify("scan", str(tmp_path), "-q", "--format", "json", "-o", str(vmx))
    assert result.returncode == 2 and "would overwrite a file of the upload" in result.stderr
    assert "RemoteDisplay" in vmx.read_text()
    same = run_certify("scan", str(vmx), "-q", "-o", str(tmp_path / "r.json"), "--certificate", str(tmp_path / "r.json"),
                       "--key", str(tmp_path / "k"))  # fmt: skip
    assert same.returncode == 2


def test_existing_report_keeps_its_mode(tmp_path):
    vmx = write_vmx(tmp_path, 'RemoteDisplay.vnc.enabled = "TRUE"\n')
    out = tmp_path / "r.json"
    out.write_text("old")
    out.chmod(0o640)
    assert run_certify("scan", str(vmx), "-q", "--format", "json", "-o", str(out)).returncode == 1
    assert oct(out.stat().st_mode & 0o777) == "0o640" and out.read_text().startswith("{")


def test_a_disk_that_is_not_what_it_claims_fails_without_booting_anything(tmp_path):
    import subprocess as sp

    sp.run(["qemu-img", "create", "-q", "-f", "qcow2", str(tmp_path / "disk.vmdk"), "4M"], check=True)
    write_vmx(tmp_path, 'virtualHW.version = "19"\nscsi0:0.fileName = "disk.vmdk"\n'
                        'ide1:0.deviceType = "cdrom-image"\nide1:0.fileName = "tools.iso"\n')  # fmt: skip
    out = tmp_path / "r.json"
    result = run_certify("scan", str(tmp_path), "--format", "json", "-o", str(out))
    report = json.loads(out.read_text())
    assert result.returncode == 1 and report["verdict"] == "fail"
    assert "starting the inspection appliance" not in result.stderr
    failing = {(f["id"], f["severity"], f["location"].get("key")) for f in report["findings"] if f["status"] == "fail"}
    assert failing == {("disk-format-mismatch", "critical", "scsi0:0.fileName"), ("dangling-reference", "high", "ide1:0.fileName")}
    assert report["check_status"]["ssh-host-keys-present"] == "not-evaluated"
    assert "not every disk could be opened safely" in next(f["evidence"] for f in report["findings"] if f["id"] == "ssh-host-keys-present")


def test_a_hostile_scan_writes_only_its_report_and_reads_no_file_it_names(tmp_path):
    """Audit every open() of a whole scan: writes only in the work directory or the report, never the input."""
    bundle = tmp_path / "upload"
    bundle.mkdir()
    outside = tmp_path / "host-secret"
    outside.write_text("do not read")
    (bundle / "vm.vmx").write_text(
        f'scsi0:0.fileName = "{outside}"\nserial0.fileName = "{outside}"\nnvram = "../host-secret"\n'
        'sharedFolder0.hostPath = "/"\nide1:0.deviceType = "cdrom-image"\nide1:0.fileName = "../../etc/shadow"\n'
    )  # fmt: skip
    before = {p.name: p.read_bytes() for p in bundle.iterdir()}
    work, report = tmp_path / "work", tmp_path / "report.json"
    work.mkdir()
    probe = textwrap.dedent(f"""
        import json, os, sys
        events = []
        def hook(event, args):
            if event == "open" and isinstance(args[0], str):
                flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
                mode = args[1] if isinstance(args[1], str) else ""
                writes = bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)) or any(c in mode for c in "wax+")
                events.append((os.path.abspath(args[0]), writes))
        sys.addaudithook(hook)
        from certify.cli import main
        rc = main(["scan", {str(bundle)!r}, "--workdir", {str(work)!r}, "--format", "json", "-o", {str(report)!r}, "-q"])
        print(json.dumps({{"rc": rc, "events": events}}))
    """)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path)
    outcome = json.loads(result.stdout.splitlines()[-1])
    assert outcome["rc"] == 1
    written = {path for path, writes in outcome["events"] if writes}
    assert any(path.startswith(str(work)) for path in written)  # the hook does see the scan's own writes
    for path in written:  # the private work directory, the report (via a temporary beside it), the KVM probe cache
        allowed = path.startswith(str(work)) or os.path.dirname(path) == str(tmp_path) and (
            path == str(report) or os.path.basename(path).startswith(".certify-")) or "/.cache/certify/" in path
        assert allowed, path
    assert not any("host-secret" in path or path.endswith("shadow") for path, _ in outcome["events"])
    assert {p.name: p.read_bytes() for p in bundle.iterdir()} == before
    assert list(work.iterdir()) == []  # the work directory is removed when the scan ends


# --- ingest limits and OVA order: policy from the command line and the profile -------------------


def _ova(path, names):
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in names:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            import io

            tar.addfile(info, io.BytesIO(data))
    return path


def test_ingest_limits_come_from_the_command_line(tmp_path):
    ova = _ova(tmp_path / "a.ova", [(f"f{i}.txt", b"x" * 100) for i in range(5)])
    for args, reason in ((["--max-members", "3"], "more than 3 members"), (["--max-member-size", "50"], "size limit"),
                         (["--max-total-size", "250B"], "size limit")):  # fmt: skip
        out = tmp_path / "r.json"
        result = run_certify("scan", str(ova), "--format", "json", "-o", str(out), "-q", *args)
        assert result.returncode == 2, result.stderr
        assert reason in json.loads(out.read_text())["rejection"]["reason"]
    # Generous limits let the same upload through ingestion (it then fails for holding no descriptor).
    result = run_certify("scan", str(ova), "-q", "--max-members", "10", "--max-total-size", "1K", "--format", "json")
    assert result.returncode == 2 and "exactly one .ovf" in json.loads(result.stdout)["rejection"]["reason"]


def test_bad_limit_values_are_one_line_usage_errors(tmp_path):
    huge = "1" + "0" * 400 + ".5"  # a float overflow once
    for args in (["--max-members", "0"], ["--max-members", "many"], ["--max-total-size", "12Q"], ["--max-member-size", "-5"],
                 ["--max-virtual-size", ""], ["--max-total-size", huge], ["--max-member-size", "9" * 30],
                 ["--max-virtual-size", "8192P"], ["--max-total-size", "1" + "0" * 5000]):  # fmt: skip
        result = run_certify("scan", str(tmp_path / "a.ova"), *args)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert args[0] in result.stderr and "Traceback" not in result.stderr and len(result.stderr) < 300


def test_strict_ova_order_is_a_profile_switch(tmp_path):
    from certify import sample

    ovf = sample.ovf_descriptor("vm", "vm-disk1.vmdk", None, 4096).encode()
    ova = _ova(tmp_path / "late.ova", [("vm-disk1.vmdk", b"\0" * 4096), ("vm.ovf", ovf)])
    profile = tmp_path / "strict.yaml"
    profile.write_text("extends: default\nstrict_ova_order: true\n")
    result = run_certify("scan", str(ova), "-q", "--profile", str(profile), "--format", "json")
    assert result.returncode == 2
    assert json.loads(result.stdout)["rejection"]["reason"] == (
        "late.ova: the OVF descriptor is not the first member of the OVA ('vm-disk1.vmdk' is) (the profile requires DSP0243 member order)")


def test_sha1_manifests_are_refused_under_a_profile_that_says_so(tmp_path):
    import hashlib

    from certify import sample

    ovf = sample.ovf_descriptor("vm", "vm-disk1.vmdk", None, 4096).encode()
    disk = b"\0" * 4096
    manifest = f"SHA1(vm.ovf)= {hashlib.sha1(ovf).hexdigest()}\nSHA1(vm-disk1.vmdk)= {hashlib.sha1(disk).hexdigest()}\n".encode()
    ova = _ova(tmp_path / "old.ova", [("vm.ovf", ovf), ("vm.mf", manifest), ("vm-disk1.vmdk", disk)])
    profile = tmp_path / "sha2-only.yaml"
    profile.write_text("extends: default\nreject_sha1_manifest: true\n")
    result = run_certify("scan", str(ova), "-q", "--profile", str(profile), "--format", "json")
    assert result.returncode == 2
    assert json.loads(result.stdout)["rejection"]["reason"] == "'vm.mf' uses SHA1 digests, and the profile requires SHA256 or SHA512"


def test_several_formats_make_the_report_directory_when_its_parent_exists(tmp_path):
    vmx = write_vmx(tmp_path, 'RemoteDisplay.vnc.enabled = "TRUE"\n')
    made = tmp_path / "reports"
    result = run_certify("scan", str(vmx), "-q", "--format", "json,text,sarif", "-o", str(made))
    assert result.returncode == 1, result.stderr
    assert sorted(p.name for p in made.iterdir()) == ["report.json", "report.sarif", "report.txt"]
    again = run_certify("scan", str(vmx), "-q", "--format", "json,text", "-o", str(made))  # an existing one is reused
    assert again.returncode == 1, again.stderr
    for target, message in [(tmp_path / "no" / "reports", "parent"), (vmx, "exists and is not a directory")]:
        refused = run_certify("scan", str(vmx), "-q", "--format", "json,text", "-o", str(target))
        assert refused.returncode == 2 and message in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "no").exists()
    # A usage error found after -o was checked leaves no directory behind.
    late = run_certify("scan", str(vmx), "-q", "--format", "json,text", "-o", str(tmp_path / "late"), "--profile", "nonesuch")
    assert late.returncode == 2 and not (tmp_path / "late").exists()


def test_a_reader_that_leaves_early_ends_the_output_quietly():
    for args in (["checks", "--format", "json"], ["checks"], ["explain", "shared-folder"], ["profiles"]):
        # stdout is a pipe nobody reads from: the first write fails with EPIPE, as after `| head` has exited
        reader, writer = os.pipe()
        os.close(reader)
        result = subprocess.run([sys.executable, "-m", "certify", *args], stdout=writer, stderr=subprocess.PIPE, text=True)
        os.close(writer)
        assert (result.returncode, result.stderr) == (141, ""), args


def test_a_scan_whose_reader_left_still_returns_its_verdict_and_writes_its_files(tmp_path):
    vmx = write_vmx(tmp_path, 'RemoteDisplay.vnc.enabled = "TRUE"\n')
    reader, writer = os.pipe()
    os.close(reader)
    result = subprocess.run([sys.executable, "-m", "certify", "scan", str(vmx), "--format", "text", "-q"],
                            stdout=writer, stderr=subprocess.PIPE, text=True)  # fmt: skip
    os.close(writer)
    assert result.returncode == 1 and "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
