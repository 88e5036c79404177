"""Does our runtime wrapper add overhead?  Ours vs the runtimes' own tools, on the same file and settings.

- OpenVINO: ``edgeaffect`` OpenVinoRuntime vs OpenVINO's ``benchmark_app`` (ships with pip openvino)
  on the same IR, static shape, device, hint, streams and threads (sync API);
- ONNX Runtime: our OnnxRuntime.infer vs a bare ``InferenceSession.run`` loop on the same file,
  providers and thread count.

Rounds alternate between the two sides so machine drift hits both alike; each
side's median latency is the median over rounds of the per-round medians.
Also reports achieved GFLOP/s (FLOPs counted from the ONNX graph) against the
machine's nominal FP32 peak.

    python benchmarks/compare_native.py RUN_DIR --batch 1,8 --threads 2 --rounds 5 --seconds 4
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgeaffect.bench import machine_info, onnx_flops  # noqa: E402
from edgeaffect.fileio import write_json, write_text  # noqa: E402
from edgeaffect.runtimes import load  # noqa: E402

NOMINAL_GFLOPS = 157.0  # 2 Zen 3 cores x 2 FMA x 8 fp32 lanes x 2 x ~2.45 GHz (DESIGN.md §4)


def timed_loop(fn, seconds: float) -> list[float]:
    times = []
    end = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        times.append(t1 - t0)
        if t1 >= end:
            return times


def benchmark_app(xml: Path, shapes: str, threads: int, seconds: float) -> float:
    """Median latency (ms) reported by OpenVINO's benchmark_app."""
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    cmd = [exe, "-m", str(xml), "-d", "CPU", "-hint", "latency", "-api", "sync", "-nstreams", "1",
           "-nthreads", str(threads), "-shape", shapes, "-t", str(max(1, round(seconds)))]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"benchmark_app failed: {out.stderr.strip().splitlines()[-1:]}")
    m = re.search(r"Median:\s+([\d.]+)\s*ms", out.stdout)
    if not m:
        raise SystemExit("benchmark_app printed no median latency")
    return float(m.group(1))


def compare(run: Path, batch: int, threads: int, rounds: int, seconds: float) -> dict:
    import onnxruntime as ort

    onnx_path, xml = run / "model.onnx", run / "openvino" / "model.xml"
    ov_rt = load(xml, runtime="openvino", batch=batch, threads=threads, streams=1, hint="LATENCY")
    feeds = ov_rt.spec.dummy_inputs(batch=batch)
    shapes = ",".join(f"{t.name}[{','.join(str(d) for d in t.concrete(batch))}]" for t in ov_rt.spec.inputs)
    ort_rt = load(onnx_path, runtime="onnxruntime", threads=threads, providers="cpu")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    bare = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    for _ in range(3):
        ov_rt.infer(feeds), ort_rt.infer(feeds), bare.run(None, feeds)
    res = {k: [] for k in ("ours_openvino", "benchmark_app", "ours_onnxruntime", "bare_session")}
    for r in range(rounds):
        sides = [("ours_openvino", lambda: ov_rt.infer(feeds)), ("benchmark_app", None),
                 ("ours_onnxruntime", lambda: ort_rt.infer(feeds)), ("bare_session", lambda: bare.run(None, feeds))]
        if r % 2:
            sides = [sides[1], sides[0], sides[3], sides[2]]
        for name, fn in sides:
            ms = benchmark_app(xml, shapes, threads, seconds) if fn is None else \
                1000 * float(np.median(timed_loop(fn, seconds)))
            res[name].append(ms)
    ov_rt.close(), ort_rt.close()
    med = {k: float(np.median(v)) for k, v in res.items()}
    flops = onnx_flops(onnx_path, batch=1) * batch
    return {
        "batch": batch, "threads": threads, "rounds": rounds, "seconds_per_side": seconds,
        "median_ms": med, "per_round_ms": res,
        "openvino_vs_benchmark_app": med["ours_openvino"] / med["benchmark_app"],
        "onnxruntime_vs_bare_session": med["ours_onnxruntime"] / med["bare_session"],
        "gflop_per_inference": flops / 1e9,
        "gflops_per_s": {k: flops / (med[k] / 1000) / 1e9 for k in ("ours_openvino", "ours_onnxruntime")},
        "nominal_gflops": NOMINAL_GFLOPS,
    }


def markdown(results: list[dict], meta: dict, run: Path) -> str:
    lines = [f"# Wrapper overhead vs native tools — {meta['date']}", "",
             f"Machine: {meta.get('cpu', '?')} ({meta['cpus']} cores, shared with other jobs), "
             f"onnxruntime {meta.get('onnxruntime')}, openvino {meta.get('openvino')}, torch {meta.get('torch')}.",
             f"Model: `{run}` (FLOPs from the ONNX graph). Nominal FP32 peak {NOMINAL_GFLOPS:.0f} GFLOP/s (2 cores).", "",
             "| batch | threads | ours OpenVINO ms | benchmark_app ms | ratio | ours ORT ms | bare session ms | ratio "
             "| GFLOP/inf | OV GFLOP/s | ORT GFLOP/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        m = r["median_ms"]
        lines.append(f"| {r['batch']} | {r['threads']} | {m['ours_openvino']:.2f} | {m['benchmark_app']:.2f} | "
                     f"{r['openvino_vs_benchmark_app']:.3f} | {m['ours_onnxruntime']:.2f} | {m['bare_session']:.2f} | "
                     f"{r['onnxruntime_vs_bare_session']:.3f} | {r['gflop_per_inference']:.3f} | "
                     f"{r['gflops_per_s']['ours_openvino']:.1f} | {r['gflops_per_s']['ours_onnxruntime']:.1f} |")
    lines += ["", "Ratio = ours / native median latency (1.00 = no overhead). Medians over alternating rounds."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="run directory with model.onnx and openvino/model.xml")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    a = ap.parse_args()
    results = [compare(a.run, int(b), a.threads, a.rounds, a.seconds) for b in a.batch.split(",")]
    meta = machine_info()
    stamp = meta["date"][:10]
    write_json(a.out / f"{stamp}-compare-native.json", {"meta": meta, "run": str(a.run), "results": results})
    md = markdown(results, meta, a.run)
    write_text(a.out / f"{stamp}-compare-native.md", md)
    print(md)


if __name__ == "__main__":
    main()
