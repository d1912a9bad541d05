"""Checks on what the build VM left behind: identity, network state, jobs, caches, scratch files, agent state.

Audit-mode virt-sysprep: each check reports the files that operation would
remove or reset, with their size and why they matter, and deletes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

from certify.checkdef import check
from certify.guest.collectors.residue import CONTENT_LIMIT
from certify.guest.parsers.residue import Residue, ResidueFacts
from certify.model import Layer, Location, Result, Severity, Status, fail
from certify.plugins.hookspecs import hookimpl


def _report(facts: ResidueFacts, items: list[Residue]) -> Iterator[Result]:
    for item in items:
        location = Location(layer=Layer.GUEST, file=item.disk, path=item.path, line=item.line)
        if item.unread:  # the content decides and was not seen: never a pass
            yield Result(status=Status.NOT_EVALUATED, location=location,
                         evidence=f"{item.reason} (over {CONTENT_LIMIT} bytes or unreadable)")  # fmt: skip
        else:
            yield fail(location, item.describe(), severity=Severity.MEDIUM if item.core else None)


@check(
    id="instance-identity-and-entropy",
    severity=Severity.MEDIUM,
    layer=Layer.GUEST,
    title="Per-instance identifiers or entropy seeds shipped in the image",
    remediation=(
        "Truncate /etc/machine-id to an empty file (systemd generates a new ID at first boot), make "
        "/var/lib/dbus/machine-id a symlink to it or delete it, and delete random seeds "
        "(/var/lib/systemd/random-seed, /var/lib/random-seed, /var/lib/urandom/random-seed, /etc/random.seed, "
        "OpenWrt's /etc/urandom.seed, SeedRNG's /var/lib/seedrng/seed.*), "
        "/var/lib/systemd/credential.secret and the yum and smolt UUID files before capture."
    ),
    references=(
        "virt-sysprep operations machine-id, random-seed, yum-uuid, smolt-uuid",
        "virt-sysprep SECURITY 'Random seed': clones with the same seed start with the same entropy",
        "openstack-k8s-operators/ci-framework PR #1591: identical machine-id on every VM made from one image",
        "oci-image-cleanup: machine-id, random seed and yum uuid are reset",
    ),
)
def instance_identity_and_entropy(residue: ResidueFacts) -> Iterator[Result]:
    """A machine ID, random seed or UUID file that every clone of the image would share.

    /etc/machine-id passes when absent, empty or 'uninitialized' (systemd
    then generates one at first boot); the ID is shown redacted to its first
    8 hex digits. /var/lib/dbus/machine-id passes as a symlink to
    /etc/machine-id and fails as a regular non-empty file. Seed and UUID
    files fail when non-empty.
    """
    yield from _report(residue, residue.identity)


@check(
    id="network-identity-residue",
    severity=Severity.LOW,
    layer=Layer.GUEST,
    title="Build network state left in the image: DHCP leases, pinned host names, build resolvers",
    remediation=(
        "Delete DHCP client and server lease files (/var/lib/dhcp, /var/lib/dhclient, /var/lib/dhcpcd, "
        "NetworkManager leases and secret_key), drop HOSTNAME=/DHCP_HOSTNAME= from ifcfg files, and ship "
        "/etc/resolv.conf as a symlink to the resolver manager's file (or let DHCP write it) instead of a "
        "static file naming the build network's resolvers."
    ),
    references=(
        "virt-sysprep operations dhcp-client-state, dhcp-server-state, net-hostname",
        "WALinuxAgent deprovision: del_dhcp_lease, reset_hostname, del_resolv",
        "oci-image-cleanup: leases and resolv.conf",
    ),
)
def network_identity_residue(residue: ResidueFacts) -> Iterator[Result]:
    """Non-empty DHCP lease, DUID and per-host secret files; host names pinned in ifcfg files;
    a regular /etc/resolv.conf whose nameservers are on a private build network.

    Empty lease files pass (isc-dhcp-server creates dhcpd.leases empty on
    purpose). /etc/resolv.conf passes as a symlink (systemd-resolved,
    resolvconf) and when its resolvers are public or link-local (a
    vendor's or the cloud's choice); it fails only for RFC 1918, ULA or CGNAT
    addresses, such as QEMU's 10.0.2.3 or libvirt's 192.168.122.1.
    /etc/hostname and /etc/hosts are not reported: every image has them and
    a name alone cannot tell a build host from an intended default.
    systemd-networkd keeps its leases under /run, which is never in an image.
    """
    yield from _report(residue, residue.network)


@check(
    id="persistent-net-mac-binding",
    severity=Severity.MEDIUM,
    layer=Layer.GUEST,
    title="Network configuration bound to the build VM's MAC address",
    remediation=(
        "Remove MAC pinning: delete /etc/udev/rules.d/70-persistent-net.rules and other rules matching "
        "ATTR{address}, drop HWADDR=/MACADDR= from ifcfg files, mac-address= from NetworkManager "
        "connections, macaddress: from netplan and MACAddress= from systemd-networkd files. Match "
        "interfaces by name or driver instead; a new instance has a new MAC and its NIC would stay down "
        "or be renamed."
    ),
    references=(
        "Oracle Cloud Marketplace guideline G03: no hard-coded MAC addresses (70-persistent-net.rules)",
        "virt-sysprep operations udev-persistent-net, net-hwaddr, net-nmconn",
        "oci-image-cleanup: udev rules and ifcfg files",
    ),
)
def persistent_net_mac_binding(residue: ResidueFacts) -> Iterator[Result]:
    """A literal MAC address in udev rules (ATTR{address}==), ifcfg files (HWADDR=, MACADDR=,
    SUSE's LLADDR=), NetworkManager connections (mac-address=, cloned-mac-address=), netplan
    (macaddress:, also in curtin's 50-curtin-networking.cfg), systemd-networkd [Match]/[Link]
    MACAddress= and ifupdown hwaddress. Wildcards and comments are not bindings.
    """
    yield from _report(residue, residue.mac_bindings)


@check(
    id="scheduled-jobs-residue",
    severity=Severity.MEDIUM,
    layer=Layer.GUEST,
    title="User crontabs, at jobs or build-looking system cron entries in the image",
    remediation=(
        "Remove user crontabs (/var/spool/cron) and queued at jobs left by the build, and system cron "
        "entries (and BusyBox's /etc/crontabs/* entries) that run programs from /tmp, /root or home directories "
        "or pipe downloads into a shell. Ship intended jobs as packaged files under /etc/cron.d (or /etc/crontabs "
        "on BusyBox) that run installed programs, and declare them."
    ),
    references=(
        "virt-sysprep operation cron-spool",
        "AWS 'Guidelines for shared Linux AMIs': verify that all cron jobs are legitimate",
    ),
)
def scheduled_jobs_residue(residue: ResidueFacts) -> Iterator[Result]:
    """Every non-empty user crontab and queued at job is reported (an appliance's own jobs belong in
    /etc/cron.d). Without the package database a system entry cannot be told shipped or not, so only
    entries in /etc/crontab and /etc/cron.d that run a program from /tmp, /var/tmp, /dev/shm, /root or
    /home, or pipe curl/wget into a shell, are reported: stock entries (Debian's e2scrub_all, php's
    sessionclean, sysstat) run programs from /usr and pass. The queues' own bookkeeping (.SEQ) passes.
    BusyBox crond's /etc/crontabs/* are an appliance's configured schedule and are judged like /etc/cron.d.
    """
    yield from _report(residue, residue.scheduled)


@check(
    id="package-cache-residue",
    severity=Severity.INFO,
    layer=Layer.GUEST,
    title="Package manager caches left in the image",
    remediation=(
        "Run 'apt-get clean', 'dnf clean all', 'yum clean all', 'zypper clean --all' or 'apk cache clean' "
        "before capture, and remove /var/lib/rpm/__db.* files. Cached packages waste space in every copy "
        "and show what the build installed and from where."
    ),
    references=("virt-sysprep operations package-manager-cache, rpm-db",),
)
def package_cache_residue(residue: ResidueFacts) -> Iterator[Result]:
    """One finding per cache directory with its file count and size: downloaded .deb files,
    apt's *.bin caches, dnf/yum/zypp/apk/pacman caches, and rpm's Berkeley DB environment files.
    Empty files (apt's archives/lock) pass. /var/lib/apt/lists is not reported: it is the package
    index, which virt-sysprep's package-manager-cache also keeps and many official images ship.
    """
    yield from _report(residue, residue.package_caches)


@check(
    id="scratch-and-crash-residue",
    severity=Severity.LOW,
    layer=Layer.GUEST,
    title="Temporary files, crash dumps, core files or editor backups in the image",
    remediation=(
        "Empty /tmp and /var/tmp, delete crash dumps (/var/crash, /var/log/dump, /var/spool/abrt, "
        "/var/lib/systemd/coredump) and core files, and remove editor backups (*~, *.swp, *.bak, *.orig) "
        "from /etc, /root, /srv and /home before capture. Cores and crash dumps are process memory and can "
        "hold keys and passwords."
    ),
    references=(
        "virt-sysprep operations tmp-files, crash-data, abrt-data, backup-files",
        "oci-image-cleanup: /tmp is emptied",
    ),
)
def scratch_and_crash_residue(residue: ResidueFacts) -> Iterator[Result]:
    """Entries in /tmp and /var/tmp (a directory is reported once, with what it holds; empty
    directories, systemd-private-* and the X11/ICE socket directories that tmpfiles creates at boot
    pass), crash dumps, ELF core files (type ET_CORE, named core or core.<pid>) in /, /root, /home and
    /srv, and editor backups in /etc, /root, /srv and /home. Core files and crash dumps are medium.
    /var is not searched for backups (Debian keeps its own in /var/backups) and the account database
    backups (/etc/passwd- and the like) belong to passwd-backup-files. Past 20 entries in one
    directory the rest are summarised in one finding on the directory.
    """
    yield from _report(residue, residue.scratch)


@check(
    id="cloud-agent-state-residue",
    severity=Severity.MEDIUM,
    layer=Layer.GUEST,
    title="Cloud agent state from the build VM (stale instance data, may skip first-boot provisioning)",
    remediation=(
        "Run 'cloud-init clean --logs' and 'waagent -deprovision' (or delete /var/lib/cloud/instance, "
        "/var/lib/cloud/instances/*, /var/lib/cloud/data, /var/lib/cloud/sem, the cloud-init logs and the "
        "Azure agent's state and ovf-env.xml) before capture. Stale state makes cloud-init and the Azure "
        "agent treat a new instance as already provisioned, and its user data may hold secrets."
    ),
    references=(
        "WALinuxAgent deprovision: del_dirs, del_lib_dir_files, del_ext_handler_files",
        "oci-image-cleanup: /var/lib/cloud/* is purged",
        "Azure/aks-engine PR #1865: cloud-init clean --logs before capture",
    ),
)
def cloud_agent_state_residue(residue: ResidueFacts) -> Iterator[Result]:
    """cloud-init's instance link and per-instance directories, data and semaphores, non-empty
    cloud-init logs; the Azure agent's ovf-env.xml (own finding: it may hold the admin password and
    custom data, never shown), its goal state, certificates, extension settings and 'provisioned' marker
    (one finding), and waagent.log; SSM agent directories named after an instance ID.
    /var/lib/cloud/scripts and /var/lib/cloud/seed are vendor content and pass, as do empty
    directories and the agent's auto-updated WALinuxAgent-* code. /var/lib/google is not reported
    (no instance state of known layout there).
    """
    yield from _report(residue, residue.cloud_agent)


@hookimpl
def certify_checks():
    return [instance_identity_and_entropy, network_identity_residue, persistent_net_mac_binding,
            scheduled_jobs_residue, package_cache_residue, scratch_and_crash_residue, cloud_agent_state_residue]  # fmt: skip
