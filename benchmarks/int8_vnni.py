"""INT8 against f32 and bf16 on this CPU: which quantization placement pays off, per runtime (interleaved).

    python benchmarks/int8_vnni.py RUN [--batch 8] [--threads 1] [--calib-samples 64]

RUN must hold model.onnx and openvino/model.xml (``edgeaffect export RUN``).  Every INT8 variant is
calibrated on the same stratified train samples and scored on the whole val split; all variants are
timed in interleaved rounds in one process (bench's engine), so machine drift hits them alike.  Each row
records what its compute layers ran in (read back from the runtime).
Results: benchmarks/results/<date>-int8-<cpu>.{json,md}.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def ort_variants(run, onnx_path, calib, work):
    """(label, path) of ONNX Runtime INT8 placements: our preset, dense ops only, symmetric activations."""
    from edgeaffect.runtimes.onnxruntime import int8 as oq
    from edgeaffect.quantize.config import QuantConfig

    prepared = oq.prepare(onnx_path, work / "prepared.onnx")
    out = []
    for label, cfg in (
        ("all ops, U8S8 (preset)", QuantConfig.preset("onnxruntime")),
        ("Conv/MatMul/Gemm only, U8S8", QuantConfig.preset("onnxruntime", op_types=("Conv", "MatMul", "Gemm"))),
        ("all ops, S8S8", QuantConfig.preset("onnxruntime", activation_symmetric=True)),
        ("Conv/MatMul/Gemm only, S8S8", QuantConfig.preset("onnxruntime", op_types=("Conv", "MatMul", "Gemm"),
                                                                activation_symmetric=True)),
    ):
        slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
        ranges = oq.calibrate(prepared, calib, cfg, work / f"ranges-{slug}.json")
        out.append((label, oq.quantize(prepared, ranges, work / f"{slug}.onnx", cfg)))
    return out


def ov_variants(onnx_path, calib, work, spec):
    """(label, xml) of NNCF placements: our preset (transformer model type) and the default model type."""
    from edgeaffect.runtimes.openvino import int8 as ovq
    from edgeaffect.quantize.config import QuantConfig

    out = []
    stem = ovq.narrow_convs(onnx_path)
    for label, cfg, keep in (("NNCF transformer type", QuantConfig.preset("openvino", ov_model_type="transformer"), ()),
                             ("NNCF default type", QuantConfig.preset("openvino", ov_model_type="default"), ()),
                             ("NNCF default type, RGB stem float", QuantConfig.preset("openvino", ov_model_type="default"), stem)):
        slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
        out.append((label, ovq.quantize(onnx_path, calib, cfg, work / slug / "model.int8.xml", keep, spec=spec)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--calib-samples", type=int, default=64)
    ap.add_argument("--budget", type=float, default=12.0, help="seconds of timed inference per variant")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()

    from edgeaffect import precision
    from edgeaffect.runtimes.openvino.settings import openvino_config
    from edgeaffect.runtimes.registry import unsupported
    from edgeaffect.bench import BenchConfig, _Variant, percentiles, time_interleaved
    from edgeaffect.evaluate import from_dataset, predict, score
    from edgeaffect.quantize.calibration import load_split, select_calibration
    from edgeaffect.runs import open_run
    from edgeaffect.runtimes.registry import Artifact, load

    run, _ = open_run(args.run)
    task, train = load_split(run, "train")
    _, val = load_split(run, "val")
    calib = select_calibration(task, train, run.spec, args.calib_samples)
    val_samples = from_dataset(val, run.spec, "val", str(run.data_dir), limit=None)
    work = args.run / "quantize" / "int8-vnni"
    work.mkdir(parents=True, exist_ok=True)
    onnx_path = args.run / "model.onnx"

    plan = [("onnxruntime", "fp32", "FP32", onnx_path, {})]
    plan += [("onnxruntime", "int8", label, p, {}) for label, p in ort_variants(run, onnx_path, calib, work)]
    plan += [("openvino", "fp32", "f32", args.run / "openvino" / "model.xml", {})]
    if not unsupported("openvino", "bf16"):
        plan += [("openvino", "bf16", "bf16", args.run / "openvino" / "model.xml", {})]
    rest = openvino_config("int8")["INFERENCE_PRECISION_HINT"]   # what our int8 runs its float part in
    for label, xml in ov_variants(onnx_path, calib, work, run.spec):
        plan += [("openvino", "int8", f"{label}, {rest} rest", xml, {})]
        if rest != "f32":   # the same IR with the float remainder forced to f32, for comparison
            plan += [("openvino", "int8", f"{label}, f32 rest", xml, {"config": {"INFERENCE_PRECISION_HINT": "f32"}})]

    variants, rows = [], []
    for runtime, prec, label, path, extra in plan:
        opts = {"threads": args.threads, "precision": prec, **extra}
        if runtime == "openvino":
            opts["batch"] = args.batch
        rt = load(path, runtime=runtime, **opts)
        metric = score(run.spec, predict(rt, val_samples, args.batch), val_samples.target)   # pads the last batch
        v = _Variant(Artifact(runtime, prec, Path(path)), args.batch, runtime=rt)
        v.feeds = val_samples.head(args.batch)
        v.row = {"runtime": runtime, "precision": prec, "variant": label, "metric": metric,
                 "executed_precision": rt.executed_precision, "precision_mix": rt.precision_mix(),
                 "path": str(Path(path).relative_to(args.run))}
        variants.append(v)
        print(f"loaded {runtime} {label}: {task.metric} {metric:.4f}, ran as {rt.executed_precision} "
              f"{rt.precision_mix()}", flush=True)
    cfg = BenchConfig(batches=(args.batch,), budget_s=args.budget, rounds=args.rounds, warmup=3, isolate=False)
    time_interleaved(variants, cfg)
    base = {rt: next(v for v in variants if (v.artifact.runtime, v.artifact.precision) == (rt, "fp32"))
            for rt in ("onnxruntime", "openvino")}
    bf16 = next((v for v in variants if v.artifact.precision == "bf16"), None)
    for v in variants:
        st = percentiles(v.times)
        ref = percentiles(base[v.artifact.runtime].times)["p50_ms"]
        rows.append({**v.row, **st, "iterations": len(v.times), "speedup_vs_fp32": ref / st["p50_ms"],
                     "speedup_vs_bf16": (percentiles(bf16.times)["p50_ms"] / st["p50_ms"])
                     if bf16 is not None and v.artifact.runtime == "openvino" else None})
        v.runtime.close()
    machine = precision.machine(args.threads)
    result = {"machine": machine, "run": str(args.run), "model": run.spec.name, "batch": args.batch,
              "metric": task.metric, "eval_samples": len(val_samples), "calibration": calib.describe(), "rows": rows}
    day = dt.date.today().isoformat()
    cpu = "amx" if "amx_int8" in machine["isa"] else "vnni" if "avx512_vnni" in machine["isa"] else "avx2"
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{day}-int8-{run.spec.name}-{cpu}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    lines = [f"# INT8 placements, {run.spec.name}, batch {args.batch}, {args.threads} thread(s)", "",
             f"CPU: {machine['cpu']}; ISA: {' '.join(machine['isa'])}; {machine['versions']}", "",
             f"`python benchmarks/int8_vnni.py {args.run} --batch {args.batch} --threads {args.threads}` "
             f"({args.budget:g} s per variant in {args.rounds} interleaved rounds); {task.metric} on "
             f"{len(val_samples)} val samples.", "",
             "| runtime | variant | ran as (compute layers) | p50 ms | x FP32 | x bf16 | " + task.metric + " |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        mix = ", ".join(f"{k} {n}" for k, n in sorted(r["precision_mix"].items()))
        xb = f"{r['speedup_vs_bf16']:.2f}" if r["speedup_vs_bf16"] else "-"
        lines.append(f"| {r['runtime']} | {r['variant']} | {r['executed_precision']} ({mix}) | {r['p50_ms']:.2f} | "
                     f"{r['speedup_vs_fp32']:.2f} | {xb} | {r['metric']:.4f} |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
