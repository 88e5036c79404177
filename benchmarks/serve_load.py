"""N concurrent camera streams against `edgeaffect serve` on loopback, with and without dynamic batching.

Each stream is a thread sending batch-1 requests back to back (closed loop, one face per request, the demo's
worst case) through the triton client runtime for ``--seconds``; the same work also runs in-process (N threads
on one local runtime, batch 1).  Reports predictions/s and per-request p50/p95 latency, and for the server rows
the CPU time per request of each process (the clients, tritonserver, the Python backend stubs, the serving
process that runs the model), which is what says where a 2-core box spends its time.  Names the CPU.

    .venv/bin/python benchmarks/serve_load.py runs/eri/quickstart --runtime openvino --instances 1,2 \
        --out benchmarks/results/serve_load.json
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


def load_streams(make_runtime, feeds: dict, streams: int, seconds: float, pids: list[int] | None = None) -> dict:
    """``streams`` threads, each its own closed loop of batch-1 infer calls; returns throughput and latency
    (and the CPU ms per request of each role among ``pids``)."""
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
    before = cpu_seconds(pids) if pids else {}
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    after = cpu_seconds(pids) if pids else {}
    rt.close()
    a = np.concatenate([np.asarray(x) for x in lat]) * 1000
    row = {"streams": streams, "predictions_per_s": sum(answered) / wall, "requests": int(a.size),
           "p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95))}
    if after:
        row["cpu_ms_per_request"] = {k: round((v - before.get(k, 0.0)) * 1000 / max(1, a.size), 2) for k, v in after.items()}
    return row


def _process_tree(root: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for line in subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout.splitlines():
        pid, ppid = map(int, line.split())
        kids.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += kids.get(pid, [])
    return found


def cpu_seconds(pids: list[int]) -> dict[str, float]:
    """CPU seconds (user + system) so far, summed per process role."""
    roles = {"tritonserver": "tritonserver", "triton_python_b": "python backend stubs"}
    out: dict[str, float] = {}
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        role = "clients" if pid == os.getpid() else roles.get(comm, "serving process (model)")
        out[role] = out.get(role, 0.0) + (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return out


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
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--instances", default="1", help="server model instances to measure, e.g. 1,2")
    ap.add_argument("--streams", default="1,4,16")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--port", type=int, default=18800)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--delays-us", default="5000", help="queue delays to measure with dynamic batching")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/serve_load.json")
    a = ap.parse_args()
    streams = [int(s) for s in a.streams.split(",")]
    model_file = Path(a.model) / "model.onnx" if Path(a.model).is_dir() else Path(a.model)
    local = edgeaffect.load(model_file)
    feeds = local.spec.dummy_inputs(batch=1)
    rows = []
    for n in streams:  # in-process: one ONNX Runtime session (thread-safe), N threads, batch 1
        rows.append({"mode": "in-process (onnxruntime fp32)",
                     **load_streams(lambda: edgeaffect.load(local.path), feeds, n, a.seconds)})
        print(rows[-1], flush=True)
    configs = []
    for inst in a.instances.split(","):
        common = ["--runtime", a.runtime, "--precision", a.precision, "--instances", inst]
        configs += [(f"server, {inst} instance(s), dynamic batching (max {a.max_batch}, delay {d} us)",
                     [*common, "--max-batch", str(a.max_batch), "--queue-delay-us", d]) for d in a.delays_us.split(",")]
        configs.append((f"server, {inst} instance(s), no dynamic batching", [*common, "--no-dynamic-batching"]))
    for i, (label, args) in enumerate(configs):
        port = a.port + 10 * i
        proc = start_server(str(a.model), port, args)
        try:
            url = f"http://127.0.0.1:{port}"
            pids = [os.getpid(), *_process_tree(proc.pid)]
            for n in streams:
                row = load_streams(lambda: edgeaffect.load(url, timeout=30.0), feeds, n, a.seconds, pids)
                rows.append({"mode": label, **row})
                print(rows[-1], flush=True)
        finally:
            proc.terminate()
            proc.wait(60)
    result = {"cpu": cpu(), "model": local.spec.name, "runtime": a.runtime, "precision": a.precision,
              "seconds_per_point": a.seconds, "load_average_at_end": list(os.getloadavg()),
              "inputs": {t.name: list(t.concrete(1)) for t in local.inputs}, "rows": rows,
              "command": " ".join([Path(sys.executable).name, *sys.argv])}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
