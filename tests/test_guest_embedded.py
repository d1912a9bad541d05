"""What embedded and appliance distributions (BusyBox, Buildroot, OpenWrt, Alpine) use where a full distribution has
something else: their init systems, crond, BusyBox's login, OpenWrt's UCI, opkg, their entropy seeds."""

from __future__ import annotations

import shapes
from memguest import scan_spec

from certify import sample
from certify.guest.parsers.crypt import make_hash

CLEARTEXT, VENDOR, EMPTY, USABLE, WEAK, IDENTITY, SCHEDULED, SETID = (
    "cleartext-remote-services", "vendor-remote-access", "account-empty-password", "account-usable-password",
    "default-or-weak-password", "instance-identity-and-entropy", "scheduled-jobs-residue", "suid-sgid-inventory")  # fmt: skip
TUNNEL = "/usr/bin/ssh -N -R 2222:localhost:22 support@bastion.vendor.example"


def scan(spec, tmp_path, check_id, os_info=None):
    result = scan_spec(spec, tmp_path, [check_id], os_info)
    found = {(path, sev) for (i, path, sev, status) in result["findings"] if i == check_id and status == "fail"}
    return result["status"][check_id], found, {p: e for (i, p), e in result["evidence"].items() if i == check_id}


def script(text: str) -> str:
    return "#!/bin/sh /etc/rc.common\nSTART=50\n" + text


# -- services started at boot by init systems that are not systemd ----------------------------------------------


def test_telnet_started_by_openwrt_busybox_rcs_openrc_and_inittab(tmp_path):
    spec = sample.base_system()
    spec.add("/etc/init.d/telnet", script("start() { telnetd -l /bin/login.sh; }\n"), 0o755)
    spec.symlink("/etc/rc.d/S50telnet", "../init.d/telnet")  # OpenWrt: enabled
    spec.add("/etc/init.d/S50utelnetd", "#!/bin/sh\nutelnetd -d\n", 0o755)  # BusyBox rcS runs /etc/init.d/S??*
    spec.symlink("/etc/runlevels/default/telnetd", "/etc/init.d/telnetd")  # OpenRC
    spec.add("/etc/inittab", "::sysinit:/etc/init.d/rcS\n::respawn:/bin/busybox telnetd -F -l /bin/sh\n#::respawn:/usr/sbin/tftpd\n")
    status, found, evidence = scan(spec, tmp_path, CLEARTEXT)
    assert found == {(p, "high") for p in ("/etc/rc.d/S50telnet", "/etc/init.d/S50utelnetd", "/etc/runlevels/default/telnetd",
                                           "/etc/inittab")}  # fmt: skip
    assert evidence["/etc/rc.d/S50telnet"] == "OpenWrt init link starts telnet at boot (telnet)"
    assert evidence["/etc/inittab"] == "inittab (respawn) starts telnet: /bin/busybox telnetd -F -l /bin/sh"


def test_an_init_script_that_is_not_enabled_starts_nothing(tmp_path):
    spec = sample.base_system().add("/etc/init.d/telnet", script("start() { telnetd; }\n"), 0o755)  # no /etc/rc.d link
    assert scan(spec, tmp_path, CLEARTEXT)[0] == "pass"


def test_back_channels_in_busybox_crontabs_boot_scripts_and_inittab(tmp_path):
    spec = sample.base_system()
    spec.add("/etc/crontabs/root", f"*/5 * * * * {TUNNEL}\n0 3 * * * /usr/sbin/logrotate /etc/logrotate.conf\n")
    spec.add("/etc/init.d/S99support", f"#!/bin/sh\n# open the vendor's support channel\n{TUNNEL} &\n", 0o755)
    spec.add("/etc/inittab", f"::respawn:{TUNNEL}\n")
    status, found, evidence = scan(spec, tmp_path, VENDOR)
    assert found == {("/etc/crontabs/root", "medium"), ("/etc/init.d/S99support", "medium"), ("/etc/inittab", "medium")}
    assert "started at boot by BusyBox rcS script /etc/init.d/S99support" in evidence["/etc/init.d/S99support"]


def test_openwrt_autossh_sections(tmp_path):
    enabled = ("config autossh 'support'\n\toption ssh '-i /etc/dropbear/id_rsa -N -T -R 2222:localhost:22 support@bastion'\n"
               "\toption monitorport '20000'\n")  # fmt: skip
    spec = sample.base_system().add("/etc/config/autossh", enabled).add("/etc/init.d/autossh", script("\n"), 0o755)
    assert scan(spec, tmp_path, VENDOR)[0] == "pass"  # the service is not enabled: no /etc/rc.d link
    spec.symlink("/etc/rc.d/S80autossh", "../init.d/autossh")
    status, found, evidence = scan(spec, tmp_path, VENDOR)
    assert found == {("/etc/config/autossh", "medium")} and "section 'support'" in evidence["/etc/config/autossh"]
    spec.add("/etc/config/autossh", enabled.replace("\toption monitorport", "\toption enabled '0'\n\toption monitorport"))
    assert scan(spec, tmp_path, VENDOR)[0] == "pass"  # as the package ships it


# -- BusyBox's login, OpenWrt's host name ------------------------------------------------------------------------


def _with_account(spec: sample.GuestSpec, passwd: str, shadow: str) -> sample.GuestSpec:
    for path, line in (("/etc/passwd", passwd), ("/etc/shadow", shadow)):
        content, mode = spec.files[path]
        spec.files[path] = (content + line.encode() + b"\n", mode)
    return spec


def test_busybox_login_reads_shadow_behind_a_star(tmp_path):
    spec = _with_account(sample.base_system(), "support:*:1010:1010::/home/support:/bin/sh", "support::19700:0:99999:7:::")
    assert scan(spec, tmp_path, EMPTY)[0] == "pass"  # pam_unix: '*' in /etc/passwd is a locked account
    spec.add("/bin/busybox", sample.ELF_X86_64_HEADER, 0o755).symlink("/bin/login", "busybox")
    status, found, evidence = scan(spec, tmp_path, EMPTY)
    assert found == {("/etc/shadow", "critical")}
    assert "/etc/passwd holds '*', and BusyBox login/su (/bin/login -> busybox) then read /etc/shadow" in evidence["/etc/shadow"]
    hashed = _with_account(sample.base_system(), "svc:*:1011:1011::/:/bin/sh", f"svc:{make_hash('x9-unguessable', '$6$')}:19700::::::")
    hashed.add("/bin/busybox", sample.ELF_X86_64_HEADER, 0o755).symlink("/bin/su", "/bin/busybox")
    assert scan(hashed, tmp_path, USABLE)[1] == {("/etc/shadow", "high")}


def test_openwrt_host_name_is_tried_as_a_password(tmp_path):
    spec = sample.base_system()
    spec.hostname = ""  # OpenWrt has no /etc/hostname: inspection finds none
    spec.remove("/etc/hostname").add("/etc/config/system", "config system\n\toption hostname 'edge-router-7'\n\toption timezone 'UTC'\n")
    content, mode = spec.files["/etc/shadow"]
    spec.files["/etc/shadow"] = (content.replace(b"root:*:", f"root:{make_hash('edge-router-7', '$1$')}:".encode()), mode)
    status, found, evidence = scan(spec, tmp_path, WEAK)
    assert found == {("/etc/shadow", "critical")} and "the guest's host name" in evidence["/etc/shadow"]


# -- seeds, crontabs, opkg -----------------------------------------------------------------------------------------


def test_embedded_entropy_seeds(tmp_path):
    spec = sample.base_system().add("/etc/urandom.seed", bytes(512), 0o600).add("/var/lib/seedrng/seed.credit", bytes(512), 0o600)
    status, found, evidence = scan(spec, tmp_path, IDENTITY)
    assert found == {("/etc/urandom.seed", "medium"), ("/var/lib/seedrng/seed.credit", "medium")}
    assert evidence["/etc/urandom.seed"].startswith("OpenWrt random seed")


def test_busybox_crontabs_are_judged_like_cron_d(tmp_path):
    spec = sample.base_system().add("/etc/crontabs/root", "0 4 * * * /usr/sbin/logrotate /etc/logrotate.conf\n")
    assert scan(spec, tmp_path, SCHEDULED)[0] == "pass"  # the appliance's own schedule
    spec.add("/etc/crontabs/root", "0 4 * * * /usr/sbin/logrotate /etc/logrotate.conf\n*/10 * * * * /tmp/build/heartbeat.sh\n")
    status, found, evidence = scan(spec, tmp_path, SCHEDULED)
    assert found == {("/etc/crontabs/root", "medium")} and "line 2 runs /tmp/build/heartbeat.sh" in evidence["/etc/crontabs/root"]


def test_opkg_owns_files_but_records_no_digest(tmp_path):
    spec = sample.base_system()
    spec.add("/usr/lib/opkg/status", "Package: busybox\nVersion: 1.36.1-1\nStatus: install user installed\n\n")
    spec.add("/usr/lib/opkg/info/busybox.list", "/bin/busybox\t0o4755\n/bin/sh\n")
    spec.add("/bin/busybox", sample.ELF_X86_64_HEADER, 0o4755)
    spec.add("/usr/bin/helper", sample.ELF_X86_64_HEADER, 0o4755)
    status, found, evidence = scan(spec, tmp_path, SETID)
    assert found == {("/usr/bin/helper", "high"), ("/bin/busybox", "high")}  # busybox: never setuid, whatever owns it
    assert "no opkg package owns it" in evidence["/usr/bin/helper"]
    spec.add("/bin/busybox", sample.ELF_X86_64_HEADER, 0o755).add("/usr/sbin/pppd", sample.ELF_X86_64_HEADER, 0o4755)
    spec.add("/usr/lib/opkg/info/ppp.list", "/usr/sbin/pppd\n")
    status, found, evidence = scan(spec, tmp_path, SETID)
    assert status == "fail" and "owned by opkg package ppp, which records no digest" in evidence["/usr/sbin/pppd"]


# -- whole images ------------------------------------------------------------------------------------------------

OPENWRT_INSPECTED = {"type": "linux", "distro": "unknown", "version": "23.5", "product_name": "OpenWrt 23.05.5", "hostname": "unknown"}


def _guest_check_ids() -> list[str]:
    from certify.model import Layer
    from certify.plugins.manager import get_plugin_manager, load_registry

    return sorted(i for i, c in load_registry(get_plugin_manager(autoload=False)).checks.items() if c.layer == Layer.GUEST)


def test_openwrt_base_is_clean_and_the_shape_fails_with_exactly_its_planted_findings(tmp_path):
    """The OpenWrt shape in memory, inspected as libguestfs inspects it (tests/test_guest_shapes.py asserts the real scan)."""
    ids = _guest_check_ids()
    clean = scan_spec(sample.openwrt_system(), tmp_path, ids, OPENWRT_INSPECTED)
    assert set(clean["status"].values()) == {"pass"}, clean["evidence"]
    shape = shapes.openwrt_dropbear()
    dirty = scan_spec(shape.spec, tmp_path, ids, OPENWRT_INSPECTED)
    assert {(i, p, s) for (i, p, s, status) in dirty["findings"] if status == "fail"} == {f[:3] for f in shape.failing}
    assert shape.fingerprints["/etc/dropbear/dropbear_ed25519_host_key"] in \
        dirty["evidence"][("ssh-host-keys-present", "/etc/dropbear/dropbear_ed25519_host_key")]  # fmt: skip
