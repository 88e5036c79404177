"""What `Run.verify` costs now that it hashes every file on every check (no size/mtime cache).

    python benchmarks/verify_hash_cost.py --sizes-mb 5,50,200 --repeats 5

Writes random files of each size to a temporary folder, hashes each ``repeats`` times with
``edgeaffect.fileio.sha256_file`` (what verification calls) and prints the min and median in ms
(the page cache warm: a file just written or just loaded, as at load time).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from edgeaffect.fileio import sha256_file


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes-mb", default="5,50,200")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        for mb in (int(s) for s in args.sizes_mb.split(",")):
            path = Path(tmp) / f"{mb}.bin"
            path.write_bytes(os.urandom(mb << 20))
            sha256_file(path)
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                sha256_file(path)
                times.append((time.perf_counter() - t0) * 1e3)
            print(f"{mb:>5} MB  min {min(times):8.1f} ms  median {statistics.median(times):8.1f} ms  "
                  f"({mb / min(times) * 1e3:.0f} MB/s)")
            path.unlink()


if __name__ == "__main__":
    main()
