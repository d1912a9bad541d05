"""Guest fact ``residue``: what the build VM left behind, for the residue checks.

Everything comes from the shared inventory walk; the few files whose content
decides (machine-id, interface and udev configuration, crontabs) are fetched
in one ``read_many``, and files named like core dumps have their ELF header
sniffed (a handful of bounded reads, never the whole core).
"""

from __future__ import annotations

import dataclasses

from certify.guest.parsers import residue
from certify.guest.reader import GuestReader
from certify.model import GuestCollector
from certify.plugins.hookspecs import hookimpl

CONTENT_LIMIT = 256 * 1024  # configuration files; larger ones are reported as unread, not half-parsed
CORE_HEADER = 64
CORE_SNIFF_MAX = 200  # core-named files sniffed; past this a tree of files called 'core' is source, not dumps


def collect_residue(reader: GuestReader) -> residue.ResidueFacts:
    inventory = reader.inventory()
    trees = residue.gather(inventory, residue.tree_roots())
    # tar streams whole files: one too large to be configuration is left out rather than copied
    wanted = [p for p in residue.content_paths(inventory) if (st := inventory.get(p)) is not None and st.size <= CONTENT_LIMIT]
    contents = reader.read_many(wanted, CONTENT_LIMIT)
    machine_id = inventory.get(residue.MACHINE_ID)
    if machine_id is not None and machine_id.is_link:  # rare: judge what it points at
        target = reader.read(residue.MACHINE_ID, CONTENT_LIMIT)
        if target is not None:
            contents[residue.MACHINE_ID] = target
    candidates = residue.core_candidates(inventory, trees)
    cores = {p for p in candidates[:CORE_SNIFF_MAX] if residue.is_elf_core(reader.read(p, CORE_HEADER) or b"")}
    facts = residue.find_residue(inventory, contents, cores, trees)
    for name in ("identity", "network", "mac_bindings", "scheduled", "package_caches", "scratch", "cloud_agent"):
        items = getattr(facts, name)
        setattr(facts, name, [dataclasses.replace(r, disk=reader.disk_file(r.path)) for r in items])
    return facts


@hookimpl
def certify_guest_collectors() -> list[GuestCollector]:
    return [
        GuestCollector(os_types=("linux",), name="residue", collect=collect_residue,
                       description="build residue: identity files, leases, MAC bindings, crontabs, caches, "
                                   "temporary and crash files, cloud agent state (Linux)"),
    ]  # fmt: skip
