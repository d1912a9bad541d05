"""Cost of checking a disk header's promises against the file: 100 GiB images, tables fully allocated.

Run from the checkout: .venv/bin/python benchmarks/disk_integrity_bench.py [--size 100G] [--repeat N]

qemu-img makes each image sparse on the host (a qcow2 with preallocation=metadata
has every L2 table, and every L2 entry names a cluster, so the walk is the
longest a real image of that size asks for). Each image is sniffed as ingest
does, through a file read callback; the time and the number of reads are
printed. Nothing is asserted: top-level tables are read whole, the tables
they name at most diskimage.LOWER_TABLE_BUDGET bytes (a fully allocated
2 TiB image; --size 1T takes about half a second here).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time

from certify.bundle.diskformat import sniff

IMAGES = {
    "qcow2 (metadata preallocated)": ["-f", "qcow2", "-o", "preallocation=metadata"],
    "vmdk monolithicSparse": ["-f", "vmdk", "-o", "subformat=monolithicSparse"],
    "vmdk streamOptimized": ["-f", "vmdk", "-o", "subformat=streamOptimized"],
    "vpc dynamic": ["-f", "vpc"],
    "vhdx dynamic": ["-f", "vhdx"],
}


def timed_sniff(path: str) -> tuple[float, int]:
    reads = 0
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size

        def read(offset: int, length: int) -> bytes:
            nonlocal reads
            reads += 1
            f.seek(offset)
            return f.read(length)

        start = time.perf_counter()
        sniff(read, size)
        return time.perf_counter() - start, reads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="100G")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="certify-bench-") as tmp:
        for label, options in IMAGES.items():
            path = os.path.join(tmp, "image")
            subprocess.run(["qemu-img", "create", "-q", *options, path, args.size], check=True)
            best, reads = min(timed_sniff(path) for _ in range(args.repeat))
            print(f"{label:32} {args.size:>6}  {best * 1000:8.1f} ms  {reads:6} reads")
            os.unlink(path)


if __name__ == "__main__":
    main()
