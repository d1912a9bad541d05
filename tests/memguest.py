"""An in-memory guest: the libguestfs calls GuestReader makes, answered from a GuestSpec.

Collectors and checks are tested against it without an appliance launch;
the session-built images then prove the same results through libguestfs.
"""

from __future__ import annotations

import fnmatch
import io
import posixpath
import re
import stat
import tarfile
from pathlib import Path
from typing import Any

from certify.bundle.disk import BundleDisk
from certify.guest.reader import GuestReader
from certify.model import Facts
from certify.sample import GuestSpec

DEBIAN = {"type": "linux", "distro": "debian", "product_name": "12.8", "version": "12.8", "arch": "x86_64",
          "hostname": "appliance", "root": "/dev/sda1"}  # fmt: skip


class MemoryGuestFS:
    def __init__(self, spec: GuestSpec):
        self.nodes: dict[str, tuple[int, int, int, bytes | str]] = {"/": (stat.S_IFDIR | 0o755, 0, 0, b"")}

        def owner(path):
            return spec.owners.get(path, (0, 0))

        def parents(path):
            parent = posixpath.dirname(path)
            while parent not in self.nodes:
                self.nodes[parent] = (stat.S_IFDIR | 0o755, 0, 0, b"")
                parents(parent)

        for path, mode in spec.dirs.items():
            parents(path)
            self.nodes[path] = (stat.S_IFDIR | mode, *owner(path), b"")
        for path, (content, mode) in spec.files.items():
            parents(path)
            self.nodes[path] = (stat.S_IFREG | mode, *owner(path), content)
        for path, target in spec.links.items():
            parents(path)
            self.nodes[path] = (stat.S_IFLNK | 0o777, *owner(path), target)

    # -- path resolution -------------------------------------------------
    def _resolve(self, path: str, depth: int = 0) -> str | None:
        if depth > 40:
            return None
        parts = [p for p in path.split("/") if p]
        current = "/"
        for i, part in enumerate(parts):
            candidate = posixpath.normpath(posixpath.join(current, part))
            node = self.nodes.get(candidate)
            if node is None:
                return None
            if stat.S_ISLNK(node[0]):
                target = node[3]
                base = "/" if target.startswith("/") else current
                resolved = self._resolve(posixpath.join(base, target), depth + 1)
                if resolved is None:
                    return None
                candidate = resolved
            current = candidate
        return current

    def _stat(self, path: str | None) -> dict[str, int]:
        if path is None or path not in self.nodes:
            raise RuntimeError("No such file or directory")
        mode, uid, gid, content = self.nodes[path]
        size = len(content) if stat.S_ISREG(mode) else (len(content) if stat.S_ISLNK(mode) else 4096)
        return {"st_mode": mode, "st_uid": uid, "st_gid": gid, "st_size": size, "st_ino": hash(path) & 0xFFFFFF}

    # -- the libguestfs calls --------------------------------------------
    def statns(self, path):
        return self._stat(self._resolve(path))

    def lstatns(self, path):
        parent = self._resolve(posixpath.dirname(path))
        return self._stat(None if parent is None else posixpath.join(parent, posixpath.basename(path)))

    def _each(self, call, directory, names, failed):
        """The ...list calls: ``call`` on every name in ``directory``, ``failed`` where it errs, as the daemon answers."""
        out = []
        for name in names:
            try:
                out.append(call(posixpath.join(directory, name)))
            except RuntimeError:
                out.append(failed)
        return out

    def lstatnslist(self, directory, names):
        return self._each(self.lstatns, directory, names, {"st_mode": -1, "st_uid": -1, "st_gid": -1, "st_size": -1, "st_ino": -1})

    def readlink(self, path):
        parent = self._resolve(posixpath.dirname(path))
        node = self.nodes.get(posixpath.join(parent, posixpath.basename(path))) if parent else None
        if node is None or not stat.S_ISLNK(node[0]):
            raise RuntimeError("Invalid argument")
        return node[3]

    def readlinklist(self, directory, names):
        return self._each(self.readlink, directory, names, "")

    def pread(self, path, count, offset):
        node = self.nodes[self._resolve(path)]
        return node[3][offset : offset + count]

    def glob_expand(self, pattern):
        want = pattern.split("/")
        return [p for p in self.nodes if len(p.split("/")) == len(want) and p != "/"
                and all(fnmatch.fnmatchcase(a, b) for a, b in zip(p.split("/"), want))]  # fmt: skip

    def find0(self, directory, hostfile):
        prefix = directory.rstrip("/") + "/"
        names = sorted(p[len(prefix):] for p in self.nodes if p.startswith(prefix) and p != directory)
        Path(hostfile).write_bytes(b"".join(n.encode("utf-8", "surrogateescape") + b"\0" for n in names))

    def _children(self, directory):
        prefix = directory.rstrip("/") + "/"
        return sorted(p[len(prefix):] for p in self.nodes if p.startswith(prefix) and p != directory and "/" not in p[len(prefix):])

    def readdir(self, directory):
        names = self._children(directory)
        for name in names:  # the binding decodes names strictly, failing the whole call
            try:
                name.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise UnicodeDecodeError("utf-8", name.encode("utf-8", "surrogateescape"), exc.start, exc.end, "invalid") from None
        kinds = {stat.S_IFDIR: "d", stat.S_IFREG: "r", stat.S_IFLNK: "l"}
        found = [(n, kinds.get(stat.S_IFMT(self.nodes[posixpath.join(directory, n)][0]), "u")) for n in names]
        return [{"ino": 1, "ftyp": kind, "name": name} for name, kind in [(".", "d"), ("..", "d"), *found]]

    def ls0(self, directory, hostfile):
        Path(hostfile).write_bytes(b"".join(n.encode("utf-8", "surrogateescape") + b"\0" for n in self._children(directory)))

    def tar_out(self, directory, hostfile, excludes=()):
        patterns = [re.sub(r"\\(.)", r"\1", e) for e in excludes]
        prefix = directory.rstrip("/") + "/"
        with tarfile.open(hostfile, "w") as tar:
            for path in sorted(self.nodes):
                if not path.startswith(prefix):
                    continue
                relative = "./" + path[len(prefix):]
                if any(relative == p or relative.startswith(p + "/") for p in patterns):
                    continue
                mode, uid, gid, content = self.nodes[path]
                info = tarfile.TarInfo(relative)
                info.mode, info.uid, info.gid = stat.S_IMODE(mode), uid, gid
                if stat.S_ISREG(mode):
                    info.size = len(content)
                    tar.addfile(info, io.BytesIO(content))
                elif stat.S_ISDIR(mode):
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif stat.S_ISLNK(mode):
                    info.type, info.linkname = tarfile.SYMTYPE, content
                    tar.addfile(info)

    def device_index(self, device):
        return 0

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"MemoryGuestFS does not implement {name}")


def memory_reader(spec: GuestSpec, workdir: str | Path, os_info: dict | None = None) -> GuestReader:
    info = dict(DEBIAN if os_info is None else os_info)
    info["hostname"] = spec.hostname
    return GuestReader(MemoryGuestFS(spec), {"/": "/dev/sda1"}, [BundleDisk("/x", "disk1.vmdk", "vmdk")], info, str(workdir))


def guest_facts(reader: GuestReader, names) -> Facts:
    """Run the installed collectors of ``names`` as the pipeline does."""
    from certify.pipeline import collect_fact
    from certify.plugins.manager import get_plugin_manager, load_registry

    registry = load_registry(get_plugin_manager(autoload=False))
    facts = Facts()
    for name in names:
        collect_fact(facts, name, registry.collectors[name], reader)
    return facts


def scan_spec(spec: GuestSpec, workdir: str | Path, ids, os_info: dict | None = None) -> dict[str, Any]:
    """Run the checks ``ids`` over a spec: {"status": {id: status}, "findings": {(id, path, severity, status)}, "evidence": {...}}."""
    from certify.plugins.manager import get_plugin_manager, load_registry
    from certify.runner import run_checks

    registry = load_registry(get_plugin_manager(autoload=False))
    checks = [registry.checks[i] for i in ids]
    reader = memory_reader(spec, workdir, os_info)
    facts = guest_facts(reader, sorted({f for c in checks for f in c.facts}))
    findings, status = run_checks(checks, facts)
    return {
        "status": {k: v.value for k, v in status.items()},
        "findings": {(f.check_id, f.location.path if f.location else None, f.severity.label, f.status.value) for f in findings},
        "evidence": {(f.check_id, f.location.path if f.location else None): f.evidence for f in findings},
    }
