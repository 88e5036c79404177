"""NNCF preset x model type for the OpenVINO INT8 of a run: val metric, agreement, p50 (interleaved).

    python benchmarks/quantize_ov_presets.py runs/eri/<run> --calib-samples 64

Chooses ``QuantConfig.ov_preset`` / ``ov_model_type`` by measurement.  Every variant is calibrated on the
same stratified train samples; latency is timed in interleaved rounds at batch 8, 1 thread.
Results: benchmarks/results/<date>-quantize-ov-presets.{json,md}.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--calib-samples", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=4, help="timed calls per variant per round")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()

    import openvino as ov

    from edgeaffect.bench import machine_info
    from edgeaffect.runtimes.openvino import int8 as ovq
    from edgeaffect.quantize.calibration import load_split, select_calibration
    from edgeaffect.quantize.config import QuantConfig
    from edgeaffect.evaluate import compare, drop_points, from_dataset, predict, score
    from edgeaffect.runtimes.openvino.int8 import ov_runtime
    from edgeaffect.quantize.pipeline import fp32_onnx
    from edgeaffect.runs import open_run

    load = {"start": os.getloadavg()}
    run, model = open_run(args.run)
    task, train = load_split(run, "train")
    _, val = load_split(run, "val")
    calib = select_calibration(task, train, run.spec, args.calib_samples)
    samples = from_dataset(val, run.spec, "val", str(run.data_dir), limit=None)
    onnx_path = fp32_onnx(run, model)
    fp32_out = predict(ov_runtime(ovq.read_float(onnx_path)), samples)
    fp32 = score(run.spec, fp32_out, samples.target)
    core = ov.Core()
    cfgs = {"FP32": None}
    for preset in ("performance", "mixed"):
        for mtype in ("transformer", "default"):
            cfgs[f"{preset}/{mtype}"] = QuantConfig.preset("openvino", calib_samples=args.calib_samples, ov_preset=preset,
                                                             ov_model_type=mtype)
    rows, compiled = {}, {}
    feeds = samples.head(args.batch)
    with tempfile.TemporaryDirectory(prefix="ov-presets-") as tmp:
        for name, cfg in cfgs.items():
            if cfg is None:
                m = ovq.read_float(onnx_path)
                rows[name] = {"metric": fp32, "drop_points": 0.0, "quantize_s": 0.0}
            else:
                t = time.perf_counter()
                xml = ovq.quantize(onnx_path, calib, cfg, Path(tmp) / name.replace("/", "-") / "model.int8.xml")
                q_s = time.perf_counter() - t
                out = predict(ov_runtime(xml, precision="int8"), samples)
                metric = score(run.spec, out, samples.target)
                rows[name] = {"metric": metric, "drop_points": drop_points(run.spec, fp32, metric),
                              "quantize_s": round(q_s, 1), **compare(run.spec, fp32_out, out)}
                m = core.read_model(str(xml))
            compiled[name] = core.compile_model(m, "CPU", {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY"})
        times = {n: [] for n in compiled}
        for _ in range(args.rounds):
            for n, c in compiled.items():
                req = c.create_infer_request()
                req.infer(feeds)
                for _ in range(args.iters):
                    t = time.perf_counter()
                    req.infer(feeds)
                    times[n].append((time.perf_counter() - t) * 1000)
    base = float(np.median(times["FP32"]))
    for n, r in rows.items():
        r["p50_ms"] = float(np.median(times[n]))
        r["speedup_vs_fp32"] = base / r["p50_ms"]
    load["end"] = os.getloadavg()
    result = {"date": dt.datetime.now().isoformat(timespec="seconds"), "machine": machine_info(), "load_avg": load,
              "command": " ".join(["python", "benchmarks/quantize_ov_presets.py", *sys.argv[1:]]),
              "model": run.spec.name, "metric": task.metric, "batch": args.batch, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{result['date'][:10]}-quantize-ov-presets"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# OpenVINO INT8: NNCF preset x model type ({result['model']})", "",
             f"{result['date']}; command: `{result['command']}`; load average {load['start'][0]:.1f} -> "
             f"{load['end'][0]:.1f} on 2 shared CPUs; p50 of {args.rounds} interleaved rounds, batch {args.batch}, 1 thread.", "",
             f"| variant | {task.metric} | drop pts | agreement | max abs diff | p50 ms | vs FP32 | quantize s |",
             "|---|---|---|---|---|---|---|---|"]
    for n, r in rows.items():
        lines.append(f"| {n} | {r['metric']:.4f} | {r['drop_points']:.2f} | {r.get('kind', '')} {r.get('agreement', 1.0):.3f} | "
                     f"{r.get('max_abs_diff', 0.0):.3f} | {r['p50_ms']:.1f} | {r['speedup_vs_fp32']:.2f}x | {r['quantize_s']} |")
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
