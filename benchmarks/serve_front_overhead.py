"""What the bounded HTTP front of `edgeaffect serve` costs: the same requests through the front and straight to
Triton's internal HTTP port (find it with `ss -ltnp | grep tritonserver`: the loopback port that is not
--port + 1 or + 2).

    edgeaffect serve tiny.onnx --port 18320 &      # tests/test_serve.py's tiny model: 1x64x64 fp32 in, 7 out
    python benchmarks/serve_front_overhead.py 18320 INTERNAL_PORT --input face --shape 1,1,64,64

Prints the median latency of 200 sequential batch-1 requests and the requests per second that 8 threads get
in 2 s, for each path, in two interleaved rounds.
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time

import numpy as np

import edgeaffect


def measure(port: int, feeds: dict) -> tuple[float, float]:
    rt = edgeaffect.load(f"http://127.0.0.1:{port}", timeout=30)
    try:
        for _ in range(20):
            rt.infer(feeds)
        times = []
        for _ in range(200):
            t = time.perf_counter()
            rt.infer(feeds)
            times.append((time.perf_counter() - t) * 1e3)
        done, stop = [0], time.monotonic() + 2.0

        def worker():
            while time.monotonic() < stop:
                rt.infer(feeds)
                done[0] += 1

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return statistics.median(times), done[0] / 2.0
    finally:
        rt.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("front_port", type=int)
    p.add_argument("triton_port", type=int)
    p.add_argument("--input", default="face")
    p.add_argument("--shape", default="1,1,64,64")
    a = p.parse_args()
    feeds = {a.input: np.zeros([int(d) for d in a.shape.split(",")], np.float32)}
    for rnd in (1, 2):
        for name, port in (("front", a.front_port), ("direct", a.triton_port)):
            p50, rate = measure(port, feeds)
            print(f"round {rnd} {name:6s}: p50 {p50:.2f} ms sequential, {rate:.0f} requests/s with 8 threads")


if __name__ == "__main__":
    main()
