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


def paired_loop(fn_a, fn_b, seconds: float) -> tuple[list[float], list[float]]:
    """Alternate a and b call by call, so both see the same machine state at every moment."""
    ta, tb = [], []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for fn, acc in ((fn_a, ta), (fn_b, tb)) if len(ta) % 2 == 0 else ((fn_b, tb), (fn_a, ta)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    return ta, tb


def benchmark_app(xml: Path, shapes: str, threads: int, seconds: float) -> float:
    """Median latency (ms) reported by OpenVINO's benchmark_app."""
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    # benchmark_app only takes -nthreads/-nstreams with -hint none; one stream and N threads is what
    # our LATENCY-hinted runtime with threads=N, streams=1 compiles to.
    cmd = [exe, "-m", str(xml), "-d", "CPU", "-hint", "none", "-api", "sync", "-nstreams", "1",
           "-nthreads", str(threads), "-shape", shapes, "-t", str(max(1, round(seconds)))]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        lines = (out.stderr.strip() or out.stdout.strip()).splitlines()
        raise SystemExit(f"benchmark_app failed: {[ln for ln in lines if 'ERROR' in ln][-1:] or lines[-1:]}")
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
        # OpenVINO: benchmark_app is its own process, so whole slices alternate.
        sides = [("ours_openvino", lambda: ov_rt.infer(feeds)), ("benchmark_app", None)]
        for name, fn in sides if r % 2 == 0 else sides[::-1]:
            ms = benchmark_app(xml, shapes, threads, seconds) if fn is None else \
                1000 * float(np.median(timed_loop(fn, seconds)))
            res[name].append(ms)
        # ONNX Runtime: same process, so calls alternate one by one.
        ours, bare_t = paired_loop(lambda: ort_rt.infer(feeds), lambda: bare.run(None, feeds), seconds)
        res["ours_onnxruntime"].append(1000 * float(np.median(ours)))
        res["bare_session"].append(1000 * float(np.median(bare_t)))
    # What the wrapper itself adds per call: feed validation (names, dtypes, shapes, batch) and the dict.
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        ort_rt.validate(feeds)
    validate_us = (time.perf_counter() - t0) / n * 1e6
    ov_rt.close(), ort_rt.close()
    med = {k: float(np.median(v)) for k, v in res.items()}
    flops = onnx_flops(onnx_path, batch=1) * batch
    return {
        "batch": batch, "threads": threads, "rounds": rounds, "seconds_per_side": seconds,
        "median_ms": med, "per_round_ms": res, "wrapper_validate_us": validate_us,
        "openvino_vs_benchmark_app": med["ours_openvino"] / med["benchmark_app"],
        "onnxruntime_vs_bare_session": med["ours_onnxruntime"] / med["bare_session"],
        "gflop_per_inference": flops / 1e9,
        "gflops_per_s": {k: flops / (med[k] / 1000) / 1e9 for k in ("ours_openvino", "ours_onnxruntime")},
        "nominal_gflops": NOMINAL_GFLOPS,
    }


def markdown(results: list[dict], meta: dict, run: Path) -> str:
    lines = [f"# Wrapper overhead vs native tools — {meta['date']}", "",
             f"Machine: {meta.get('cpu', '?')} ({meta['cpus']} cores, shared with other jobs), "
             f"onnxruntime {meta.get('onnxruntime')}, openvino {meta.get('openvino')}.",
             f"Model: `{run}` (FLOPs from the ONNX graph). Nominal FP32 peak {NOMINAL_GFLOPS:.0f} GFLOP/s (2 cores).", "",
             "| batch | threads | ours OpenVINO ms | benchmark_app ms | ratio | ours ORT ms | bare session ms | ratio "
             "| GFLOP/inf | OV GFLOP/s | ORT GFLOP/s | wrapper µs/call |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        m = r["median_ms"]
        lines.append(f"| {r['batch']} | {r['threads']} | {m['ours_openvino']:.2f} | {m['benchmark_app']:.2f} | "
                     f"{r['openvino_vs_benchmark_app']:.3f} | {m['ours_onnxruntime']:.2f} | {m['bare_session']:.2f} | "
                     f"{r['onnxruntime_vs_bare_session']:.3f} | {r['gflop_per_inference']:.3f} | "
                     f"{r['gflops_per_s']['ours_openvino']:.1f} | {r['gflops_per_s']['ours_onnxruntime']:.1f} | "
                     f"{r['wrapper_validate_us']:.0f} |")
    lines += ["", "Ratio = ours / native median latency (1.00 = no overhead). OpenVINO: medians over rounds that "
              "alternate whole slices with benchmark_app (same IR, static shape, 1 stream, sync API, same threads). "
              "ORT: our wrapper and a bare InferenceSession.run alternate call by call on the same file. "
              "wrapper µs/call: the feed validation our infer() adds, timed alone."]
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
