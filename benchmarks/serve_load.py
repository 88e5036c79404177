"""N concurrent camera streams against `edgeaffect serve` on loopback, with and without dynamic batching.

Each stream is a thread sending batch-1 requests back to back (closed loop, one face per request, the demo's
worst case) through the triton client runtime for ``--seconds``; the same work also runs in-process (N threads
on one local runtime, batch 1).  Reports predictions/s and per-request p50/p95 latency, names the CPU.

    .venv/bin/python benchmarks/serve_load.py runs/eri/quickstart --out benchmarks/results/serve_load.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu() -> dict:
    info = {}
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("Model name", "CPU(s)", "Flags"):
            info[key.strip()] = value.strip()
    flags = set(info.pop("Flags", "").split())
    info["flags"] = sorted(f for f in flags if f.startswith(("avx", "amx")) or f in ("fma", "f16c"))
    return info


def load_streams(make_runtime, feeds: dict, streams: int, seconds: float) -> dict:
    """``streams`` threads, each its own closed loop of batch-1 infer calls; returns throughput and latency."""
    lat: list[list[float]] = [[] for _ in range(streams)]
    answered = [0] * streams
    start = threading.Barrier(streams + 1)
    rt = make_runtime()

    def run(i: int):
        start.wait()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            out = rt.infer(feeds)
            lat[i].append(time.perf_counter() - t0)
            answered[i] += len(next(iter(out.values())))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    rt.close()
    a = np.concatenate([np.asarray(x) for x in lat]) * 1000
    return {"streams": streams, "predictions_per_s": sum(answered) / wall, "requests": int(a.size),
            "p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95))}


def start_server(model: str, port: int, args: list[str]) -> subprocess.Popen:
    log = open(f"/tmp/serve_load-{port}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "edgeaffect", "serve", model, "--port", str(port), *args],
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    end = time.monotonic() + 180
    while "serving " not in Path(log.name).read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > end:
            raise SystemExit(f"server did not start: {Path(log.name).read_text()[-2000:]}")
        time.sleep(0.5)
    return proc


def main() -> None:
    import edgeaffect

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="run directory or exported model")
    ap.add_argument("--runtime", default="onnxruntime")
    ap.add_argument("--streams", default="1,4,16")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--port", type=int, default=18800)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--delays-us", default="2000", help="queue delays to measure with dynamic batching")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/serve_load.json")
    a = ap.parse_args()
    streams = [int(s) for s in a.streams.split(",")]
    local = edgeaffect.load(a.model if not Path(a.model).is_dir() else Path(a.model) / "model.onnx")
    feeds = local.spec.dummy_inputs(batch=1)
    rows = []
    for n in streams:  # in-process: one runtime, N threads, batch 1
        rows.append({"mode": "in-process", **load_streams(lambda: edgeaffect.load(local.path), feeds, n, a.seconds)})
        print(rows[-1], flush=True)
    configs = [(f"server, dynamic batching (max {a.max_batch}, delay {d} us)",
                ["--max-batch", str(a.max_batch), "--queue-delay-us", d]) for d in a.delays_us.split(",")]
    configs.append(("server, no dynamic batching", ["--no-dynamic-batching"]))
    for i, (label, args) in enumerate(configs):
        port = a.port + 10 * i
        proc = start_server(str(a.model), port, ["--runtime", a.runtime, *args])
        try:
            url = f"http://127.0.0.1:{port}"
            for n in streams:
                rows.append({"mode": label, **load_streams(lambda: edgeaffect.load(url, timeout=30.0), feeds, n, a.seconds)})
                print(rows[-1], flush=True)
        finally:
            proc.terminate()
            proc.wait(60)
    result = {"cpu": cpu(), "model": local.spec.name, "runtime": a.runtime, "seconds_per_point": a.seconds,
              "inputs": {t.name: list(t.concrete(1)) for t in local.inputs}, "rows": rows,
              "command": " ".join([Path(sys.executable).name, *sys.argv])}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
