"""The cheap ways give what the thorough ones give, on every test image, in ONE shared launch.

- Inspection: certify's probe (certify/guest/identify.py) against libguestfs'
  ``inspect_os``: same roots, OS fields and mountpoints wherever the probe is
  certain, and it is certain of every plain Linux image here; it leaves the
  rest to inspect_os with a reason.
- Inventory: the appliance's one ``find`` listing against the walk through
  libguestfs, entry for entry (path, type, mode, uid, gid, size, link
  target, and the names it could not pass back), on every image and on a
  scratch filesystem of odd names: newlines, bytes that are not UTF-8,
  paths of 3,000 bytes, every file type.

The 100,000-file image is compared the same way by benchmarks/guest_bench.py --parity.
"""

from __future__ import annotations

import tempfile

import pytest

from certify.guest import accel, identify
from certify.guest.reader import GuestReader, _os_info

pytestmark = pytest.mark.guest

NOT_PROBED = {"openwrt-appliance": "os-release ID=openwrt is not one libguestfs knows: it goes on to release files"}
SCRATCH_BYTES = 64 * 1024 * 1024
LONG = "L" * 250


def _odd_names_script() -> str:
    """Shell run in the appliance to fill the scratch filesystem: names libguestfs' API cannot create."""
    long_dir = "/".join([LONG] * 12)  # 3,000 bytes below the root
    return f"""set -e; cd "$root"; nl="$(printf '\\nx')"; nl="${{nl%x}}"  # $(...) strips a bare trailing newline
mkdir -p srv/names "srv/{long_dir}" "srv/caf$(printf '\\351')/inner"
printf x > "srv/names/two${{nl}}lines"; printf xy > "srv/names/tab$(printf '\\t')and space"
printf z > "srv/names/latin-$(printf '\\377').txt"; printf q > "srv/caf$(printf '\\351')/inner/under.txt"
printf long > "srv/{long_dir}/end.txt"
ln -s "target with${{nl}}newline" "srv/names/link${{nl}}name"
ln -s "caf$(printf '\\351')" srv/names/latin-target; ln -s ../names srv/names/loop
mkfifo srv/names/fifo; mknod srv/names/null c 1 3; mknod srv/names/disk b 8 0
touch srv/names/setuid srv/names/sticky-dir; chown 1234:5678 srv/names/setuid; chmod 4755 srv/names/setuid
mkdir srv/names/tmp; chmod 1777 srv/names/tmp; chmod 0 srv/names/sticky-dir
"""


@pytest.fixture(scope="module")
def parity_handle(appliances):
    """Every test image's raw disks, read-only, plus one writable scratch disk, in one appliance."""
    import guestfs

    g = guestfs.GuestFS(python_return_dict=True, close_on_exit=False)
    g.set_backend("direct")
    if (settings := accel.choose().backend_settings) is not None:
        g.set_backend_settings(settings)
    workdir = tempfile.mkdtemp(prefix="parity-")
    g.set_tmpdir(workdir)
    owners: dict[str, str] = {}  # appliance disk -> image name
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    for name, paths in sorted(appliances.raw_disks.items()):
        for path in paths:
            g.add_drive_opts(path, readonly=True, format="raw")
            owners[f"/dev/sd{next(letters)}"] = name
    g.add_drive_scratch(SCRATCH_BYTES)
    scratch = f"/dev/sd{next(letters)}"
    g.launch()
    try:
        yield g, owners, scratch, workdir
    finally:
        g.shutdown()
        g.close()


@pytest.fixture(scope="module")
def inspections(parity_handle):
    g, owners, scratch, _ = parity_handle
    g.mkfs("ext4", scratch)  # a filesystem with no system on it: neither way may call it a root
    probed = identify.probe(g)
    roots = g.inspect_os()
    thorough = {root: (g.inspect_get_mountpoints(root), _os_info(g, root)) for root in roots}
    return probed, thorough, owners


LOGICAL_VOLUMES = {"/dev/rl/root": "rocky-appliance"}  # tests/shapes.py: the one image on LVM


def _image_of(device: str, owners: dict[str, str]) -> str:
    return owners[device.rstrip("0123456789")] if device.startswith("/dev/sd") else LOGICAL_VOLUMES[device]


def test_probe_finds_the_roots_inspect_os_finds_with_the_same_fields_and_mountpoints(inspections):
    probed, thorough, owners = inspections
    assert set(probed.roots) <= set(thorough)
    for root, found in probed.roots.items():
        mountpoints, info = thorough[root]
        assert found.os_info == info, _image_of(root, owners)
        assert found.mountpoints == mountpoints, _image_of(root, owners)
        assert found.method == "probe" and found.root == root


def test_probe_is_certain_of_every_plain_linux_image_and_says_why_not_of_the_rest(inspections):
    probed, thorough, owners = inspections
    certain = {_image_of(root, owners) for root in probed.roots}
    left = {_image_of(root, owners) for root in thorough} - certain
    assert left == set(NOT_PROBED), probed.doubts
    assert len(certain) == len(thorough) - len(NOT_PROBED) >= 7  # Debian-, Ubuntu-, Rocky (LVM)- and Alpine (btrfs)-based
    assert any("openwrt" in doubt or "os-release" in doubt for doubt in probed.doubts), probed.doubts


def test_a_single_doubt_or_a_second_root_leaves_the_decision_to_inspect_os(inspections):
    probed, _, _ = inspections
    assert isinstance(identify.certain_root(probed), str)  # several roots and a doubt: never the probe's answer
    one = identify.Probe(roots=dict(list(probed.roots.items())[:1]))
    assert isinstance(identify.certain_root(one), identify.Inspection)
    assert identify.certain_root(identify.Probe(roots=one.roots, doubts=["/dev/sdz1 holds ntfs"])) == "/dev/sdz1 holds ntfs"
    assert identify.certain_root(identify.Probe()) == "no Linux root found"


def _inventories(g, workdir: str, root: str, mountpoints: dict[str, str]):
    """Both inventories of one image. Its root at /; its other filesystems where they mount (fstab names like
    /dev/sda1 point at another image's disk in a handle holding them all: those are left out)."""
    g.umount_all()
    mounts = {"/": root}
    g.mount_ro(root, "/")
    for mountpoint in sorted(mountpoints, key=len):
        if mountpoint != "/":
            try:
                g.mount_ro(mountpoints[mountpoint], mountpoint)
                mounts[mountpoint] = mountpoints[mountpoint]
            except RuntimeError:
                pass
    listed = GuestReader(g, mounts, [], {}, workdir)
    listed_inventory = listed.inventory()
    walked = GuestReader(g, mounts, [], {}, workdir)
    walked_inventory = walked._walk()  # noqa: SLF001 - today's walk, the reference
    g.umount_all()
    return listed, listed_inventory, walked_inventory


def _assert_same(listed_inventory, walked_inventory, what: str) -> None:
    differ = sorted(p for p in set(listed_inventory.entries) | set(walked_inventory.entries)
                    if listed_inventory.get(p) != walked_inventory.get(p))  # fmt: skip
    assert not differ, f"{what}: {len(differ)} entries differ, first {[(p, listed_inventory.get(p), walked_inventory.get(p)) for p in differ[:3]]}"
    assert listed_inventory.unstatable == walked_inventory.unstatable, what


def test_find_listing_equals_the_walk_on_every_test_image(parity_handle, inspections):
    g, owners, _, workdir = parity_handle
    _, thorough, _ = inspections
    compared: dict[str, int] = {}  # image -> symlinks with a target
    for root, (mountpoints, _) in sorted(thorough.items()):
        image = _image_of(root, owners)
        listed, listed_inventory, walked_inventory = _inventories(g, workdir, root, mountpoints)
        assert listed.inventory_method == "find", (image, listed.inventory_fallback)
        assert len(listed_inventory) > 30, image
        _assert_same(listed_inventory, walked_inventory, image)
        compared[image] = sum(1 for _, st in listed_inventory if st.is_link and st.target)
    assert len(compared) == len(thorough) and sum(compared.values()) > 0, compared  # symlink targets were compared too


def test_find_listing_equals_the_walk_on_odd_names(parity_handle, inspections):
    g, _, scratch, workdir = parity_handle
    g.mount(scratch, "/")
    g.debug("sh", [_odd_names_script()])
    g.umount_all()
    listed, listed_inventory, walked_inventory = _inventories(g, workdir, scratch, {})
    assert listed.inventory_method == "find", listed.inventory_fallback
    _assert_same(listed_inventory, walked_inventory, "odd names")
    entries = listed_inventory.entries
    assert entries["/srv/names/two\nlines"].is_file and entries["/srv/names/two\nlines"].size == 1
    assert entries["/srv/names/link\nname"].target == "target with\nnewline"
    assert entries["/srv/names/loop"].is_link and not any(p.startswith("/srv/names/loop/") for p in entries)
    assert entries["/srv/names/latin-target"].target is None  # a target that is not UTF-8, as readlink gives it
    assert entries["/srv/names/setuid"].mode & 0o7777 == 0o4755 and entries["/srv/names/setuid"].uid == 1234
    assert entries["/srv/names/tmp"].perms == 0o1777
    long_file = "/srv/" + "/".join([LONG] * 12) + "/end.txt"
    assert entries[long_file].size == 4 and len(long_file) > 3000
    assert listed_inventory.unstatable == ("/srv/caf\udce9", "/srv/names/latin-\udcff.txt")
    kinds = {oct(st.mode >> 12) for _, st in listed_inventory}
    assert {"0o1", "0o2", "0o4", "0o6", "0o10", "0o12"} <= kinds  # fifo, char, dir, block, file, link
