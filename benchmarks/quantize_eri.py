"""FP32 vs INT8 vs pruned vs pruned+INT8 for a trained ERI run, per runtime, plus the accuracy guard at work.

    python benchmarks/quantize_eri.py runs/eri/<run> --ratio 0.5 --finetune-epochs 3

Steps: export FP32 (ONNX + OpenVINO IR), INT8 for ONNX Runtime and OpenVINO with the guard, prune +
fine-tune into ``pruned-<ratio>/`` and export + quantize that too, then one interleaved ``bench_run``
over every artifact (torch eager as reference).  Finally the guard case: a copy of the run whose
model gets a function-preserving outlier channel (FP32 outputs unchanged, see ``inject_outlier``),
quantized with and without the guard.  A calibration-size sweep (plain INT8, ONNX Runtime) shows
where the metric stops moving.  Results: benchmarks/results/<date>-quantize-eri.{json,md}.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def inject_outlier(run: Path, scale: float = 1000.0) -> str:
    """Scale one channel of the video embedding's final LayerNorm by ``scale`` and the fusion head's
    matching input weights by 1/scale: the same function, but one activation channel 1000x larger
    than the rest (the way outlier channels appear in trained transformers)."""
    import torch

    from edgeaffect.quantize.prune import load_model_any
    from edgeaffect.runs import save_checkpoint

    model = load_model_any(run / "checkpoint.pt")
    feeds = {k: torch.from_numpy(v) for k, v in model.spec.dummy_inputs(2).items()}
    with torch.no_grad():
        before = model(*feeds.values())
        norm = model.video.transformer.norm
        norm.weight[0] *= scale
        norm.bias[0] *= scale
        model.head.net[0].weight[:, 0] /= scale
        after = model(*feeds.values())
    diff = float((after - before).abs().max())
    payload = torch.load(run / "checkpoint.pt", weights_only=False)
    save_checkpoint(run / "checkpoint.pt", model, payload["model"], payload.get("overrides", {}))
    return f"video.transformer.norm channel 0 x{scale:g}, head.net.0 input 0 /{scale:g}; FP32 max abs change {diff:.2e}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--finetune-epochs", type=int, default=3)
    ap.add_argument("--distill", type=float, default=0.0, help="distillation weight during fine-tuning")
    ap.add_argument("--lr", type=float, default=5e-4, help="fine-tuning learning rate")
    ap.add_argument("--calib-samples", type=int, default=128)
    ap.add_argument("--sensitivity-samples", type=int, default=4)
    ap.add_argument("--guard-runtimes", default="onnxruntime,openvino")
    ap.add_argument("--budget", type=float, default=4.0, help="timed seconds per variant")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--skip-prepare", action="store_true", help="reuse artifacts already in the run")
    ap.add_argument("--reuse", type=Path, help="take the calibration sweep and guard case from this earlier result JSON")
    ap.add_argument("--calib-sweep", default="8,16,32,64,128", help="calibration sizes for the plain-INT8 sweep ('' = skip)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from edgeaffect.bench import BenchConfig, bench_run, machine_info
    from edgeaffect.export import export_run
    from edgeaffect.quantize.config import QuantConfig
    from edgeaffect.quantize.pipeline import quantize_run
    from edgeaffect.quantize.prune import prune_run, pruned_dirname

    load = {"start": os.getloadavg()}
    run = args.run
    cfg = QuantConfig(calib_samples=args.calib_samples, sensitivity_samples=args.sensitivity_samples)
    timings = {}
    pruned = run / pruned_dirname(args.ratio)
    if not args.skip_prepare:
        t = time.perf_counter()
        export_run(run, ["onnx", "openvino"])
        timings["export_s"] = time.perf_counter() - t
        t = time.perf_counter()
        quant = quantize_run(run, ["onnxruntime", "openvino"], cfg)
        timings["int8_s"] = time.perf_counter() - t
        t = time.perf_counter()
        prune_run(run, args.ratio, finetune_epochs=args.finetune_epochs, distill=args.distill, lr=args.lr)
        timings["prune_finetune_s"] = time.perf_counter() - t
        export_run(pruned, ["onnx", "openvino"])
        pquant = quantize_run(pruned, ["onnxruntime", "openvino"], cfg)
    else:
        quant = json.loads((run / "quantize/report.json").read_text())
        pquant = json.loads((pruned / "quantize/report.json").read_text())
    pruning = json.loads((pruned / "manifest.json").read_text())["pruning"]

    load["before_bench"] = os.getloadavg()
    rows = bench_run(run, ["onnxruntime", "openvino", "torch"], ["fp32", "int8"],
                     BenchConfig(batches=(1, 8), budget_s=args.budget, rounds=6, threads=args.threads,
                                 isolate=False, limit=64), show_progress=False)
    load["after_bench"] = os.getloadavg()

    result = {"date": dt.datetime.now().isoformat(timespec="seconds"), "machine": machine_info(),
              "command": " ".join(["python", "benchmarks/quantize_eri.py", *sys.argv[1:]]),
              "threads": args.threads, "model": quant["model"], "timings_s": timings,
              "int8": {rt: {k: r[k] for k in ("fp32_metric", "int8_metric", "drop_points", "kept_float", "agreement")}
                       for rt, r in quant["runtimes"].items()},
              "pruned_int8": {rt: {k: r[k] for k in ("fp32_metric", "int8_metric", "drop_points", "kept_float", "agreement")}
                              for rt, r in pquant["runtimes"].items()},
              "pruning": {k: pruning[k] for k in ("ratio", "importance", "finetune_epochs", "before",
                                                   "pruned_no_finetune", "after", "speedup_flops")},
              "prunings": [{k: p[k] for k in ("ratio", "importance", "finetune_epochs", "distill", "before",
                                               "pruned_no_finetune", "after", "speedup_flops")}
                           for p in (json.loads((d / "manifest.json").read_text())["pruning"]
                                     for d in sorted(run.glob("pruned-*")) if (d / "checkpoint.pt").exists())],
              "bench": rows, "load_avg": load, "goals": goals(rows, quant), "sweep": None, "guard": None}
    save(result, args.out)   # written once before the guard case, which takes longest

    earlier = json.loads(args.reuse.read_text()) if args.reuse else None
    if earlier:
        result.update(sweep=earlier["sweep"], guard=earlier["guard"], reused_from=earlier["date"])
        load["end"] = os.getloadavg()
        save(result, args.out)
        print(markdown(result))
        return
    if args.calib_sweep:
        result["sweep"] = calib_sweep(run, [int(n) for n in args.calib_sweep.split(",")], cfg)
        save(result, args.out)

    # the accuracy guard at work, on a copy of the run
    guard_run = run.parent / f"{run.name}-outlier"
    shutil.rmtree(guard_run, ignore_errors=True)
    guard_run.mkdir()
    for name in ("checkpoint.pt", "manifest.json"):
        shutil.copy(run / name, guard_run / name)
    how = inject_outlier(guard_run)
    g = quantize_run(guard_run, args.guard_runtimes.split(","), cfg)
    guard = {"how": how, **{rt: {k: r[k] for k in ("passed", "fp32_metric", "int8_metric", "drop_points",
                                                    "kept_float", "attempts", "message")}
                              for rt, r in g["runtimes"].items()}}
    guard["top_sensitive"] = {rt: r["sensitivity"][:5] for rt, r in g["runtimes"].items()}

    result["guard"] = guard
    load["end"] = os.getloadavg()
    save(result, args.out)
    print(markdown(result))


def calib_sweep(run: Path, sizes: list[int], cfg) -> list[dict]:
    """Plain INT8 (no guard) for ONNX Runtime at each calibration size, on a scratch copy of the run:
    metric, drop and calibration time, to choose the default size by measurement."""
    from edgeaffect.quantize.pipeline import quantize_run

    scratch = run.parent / f"{run.name}-calib-sweep"
    out = []
    for n in sizes:
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        for name in ("checkpoint.pt", "manifest.json", "model.onnx"):
            shutil.copy(run / name, scratch / name)
        t = time.perf_counter()
        r = quantize_run(scratch, ["onnxruntime"], cfg.replace(calib_samples=n, guard=False))
        q = r["runtimes"]["onnxruntime"]
        out.append({"samples": r["calibration"]["samples"], "strata": r["calibration"]["strata"],
                    "fp32_metric": q["fp32_metric"], "int8_metric": q["int8_metric"], "drop_points": q["drop_points"],
                    "agreement": q["agreement"].get("agreement"), "agreement_kind": q["agreement"].get("kind"), "seconds": round(time.perf_counter() - t, 1)})
    shutil.rmtree(scratch, ignore_errors=True)
    return out


GOALS = {"speedup_vs_fp32_b8": 2.5, "speedup_vs_torch_b8": 8.0, "size_ratio": 0.20, "metric_drop_points": 1.0}


def goals(rows: list[dict], quant: dict) -> dict:
    """Our targets for pruned+INT8 per runtime: >= 2.5x FP32 (same runtime, batch 8), >= 8x torch eager
    FP32 (batch 8), <= 20 % of the FP32 ONNX size, metric within 1 point of unpruned FP32."""
    def row(rt, prec, variant, batch):
        return next((x for x in rows if x["runtime"] == rt and x["precision"] == prec
                     and x["variant"] == variant and x["batch"] == batch), None)

    scale = quant.get("metric_scale") or 1.0
    onnx_fp32 = row("onnxruntime", "fp32", "", 8)
    torch8 = row("torch", "fp32", "", 8)
    out = {}
    for rt, variant in sorted({(x["runtime"], x["variant"]) for x in rows if x["variant"] and x["runtime"] != "torch"}):
        fp32, pq = row(rt, "fp32", "", 8), row(rt, "int8", variant, 8)
        if not (fp32 and pq):
            continue
        g = {"speedup_vs_fp32_b8": fp32["p50_ms"] / pq["p50_ms"],
             "speedup_vs_torch_b8": torch8["p50_ms"] / pq["p50_ms"] if torch8 else None,
             "size_ratio": pq["size_mb"] / onnx_fp32["size_mb"] if onnx_fp32 else None,
             "metric_drop_points": (fp32["metric"] - pq["metric"]) / scale
             if fp32["metric"] is not None and pq["metric"] is not None else None}
        g["met"] = {k: (v is not None and (v <= GOALS[k] if k in ("size_ratio", "metric_drop_points") else v >= GOALS[k]))
                    for k, v in g.items() if k in GOALS}
        out[f"{rt} {variant}"] = g
    return out


def save(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{result['date'][:10]}-quantize-eri"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (out / f"{stem}.md").write_text(markdown(result) + "\n")


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"# INT8 and pruning on the ERI model ({r['model']})", "",
             f"{r['date']}, {m.get('cpu', '')} ({m.get('cpus', '')} CPUs; torch {m.get('torch', '?')}, onnxruntime {m.get('onnxruntime', '?')}, openvino {m.get('openvino', '?')}), threads={r['threads']}; "
             f"command: `{r['command']}`", ""]
    rows = r["bench"]
    ref = {(x["runtime"], x["batch"]): x for x in rows if x["precision"] == "fp32" and not x["variant"]}
    lines += ["| runtime | variant | batch | p50 ms | speed-up vs FP32 (same runtime) | vs torch | size MB | "
              f"{rows[0]['metric_name']} | agreement | max abs diff |", "|---|---|---|---|---|---|---|---|---|---|"]
    for x in sorted(rows, key=lambda x: (x["runtime"], x["batch"], x["variant"], x["precision"])):
        base = ref.get((x["runtime"], x["batch"]))
        sp = base["p50_ms"] / x["p50_ms"] if base else float("nan")
        label = f"{x['variant'] + ' ' if x['variant'] else ''}{x['precision']}"
        vt = x.get("speedup_vs_torch")
        lines.append(f"| {x['runtime']} | {label} | {x['batch']} | {x['p50_ms']:.2f} | {sp:.2f}x | "
                     f"{(f'{vt:.2f}x' if vt else '-')} | {x['size_mb']:.2f} | "
                     f"{x['metric'] if x['metric'] is None else round(x['metric'], 4)} | {x['agreement']:.3f} | "
                     f"{x['max_abs_diff']:.3f} |")
    lines += ["", "agreement and max abs diff are against unpruned torch FP32 on the same val clips; for these "
              "7 intensities in [0, 1] agreement means every output within 0.01 (a strict test: INT8 moves "
              "outputs by a few hundredths while the metric stays put; see the dominant-emotion agreement below)."]
    for p in r.get("prunings", [r["pruning"]]):
        lines += ["", f"Pruning {p['ratio']} ({p['importance']}, {p['finetune_epochs']} fine-tune epochs): params "
              f"{p['before']['params']:,} -> {p['after']['params']:,}, GFLOPs {p['before']['gflops']} -> "
              f"{p['after']['gflops']} ({p['speedup_flops']}x), metric {p['before']['metric']:.4f} -> "
              f"{p['pruned_no_finetune']['metric']:.4f} (no fine-tune) -> {p['after']['metric']:.4f}"]
    lines += [""]
    la = r.get("load_avg", {})
    lines += [f"Load average (1/5/15 min) at start {fmt_load(la.get('start'))}, before bench {fmt_load(la.get('before_bench'))}, "
              f"after bench {fmt_load(la.get('after_bench'))} (2 shared CPUs: p50 of interleaved rounds).", ""]
    if r.get("goals"):
        lines += ["## Goals for pruned+INT8 (batch 8)", "",
                  "| runtime | vs FP32 same runtime (goal >= 2.5x) | vs torch eager FP32 (goal >= 8x) | "
                  "size vs FP32 ONNX (goal <= 20 %) | metric drop pts vs FP32 (goal <= 1) |", "|---|---|---|---|---|"]
        for rt, g in r["goals"].items():
            cell = lambda k, f: ("-" if g[k] is None else f.format(g[k])) + (" met" if g["met"][k] else " **not met**")
            lines.append(f"| {rt} | {cell('speedup_vs_fp32_b8', '{:.2f}x')} | {cell('speedup_vs_torch_b8', '{:.2f}x')} | "
                         f"{cell('size_ratio', '{:.0%}')} | {cell('metric_drop_points', '{:.2f}')} |")
        lines.append("")
    if r.get("sweep"):
        lines += ["## Calibration size (ONNX Runtime, plain INT8 without the guard)", "",
                  "| samples | INT8 metric | drop pts | agreement with FP32 | seconds |", "|---|---|---|---|---|"]
        for s in r["sweep"]:
            ag = s.get("agreement")
            lines.append(f"| {s['samples']} | {s['int8_metric']:.4f} | {s['drop_points']:.2f} | "
                         f"{'-' if ag is None else f'{ag:.3f}'} | {s['seconds']} |")
        lines.append("")
    lines += ["INT8 guard results (val metric, drop in points):", ""]
    for name in ("int8", "pruned_int8"):
        for rt, q in r[name].items():
            ag = q.get("agreement") or {}
            lines.append(f"- {name} {rt}: FP32 {q['fp32_metric']:.4f} -> INT8 {q['int8_metric']:.4f}, drop "
                         f"{q['drop_points']:.2f}, {len(q['kept_float'])} layer(s) kept in float"
                         + (f"; agreement with FP32 ({ag['kind']}) {ag['agreement']:.3f}, max abs diff "
                            f"{ag['max_abs_diff']:.3f}" if ag else ""))
    g = r["guard"]
    if not g:
        return "\n".join(lines)
    lines += ["", "## Accuracy guard case", "", f"How: {g['how']}."
              + (f" (Measured in the run of {r['reused_from']}.)" if r.get("reused_from") else ""), ""]
    for rt in ("onnxruntime", "openvino"):
        if rt in g:
            for i, a in enumerate(g[rt]["attempts"]):
                lines.append(f"- {rt} attempt {i}: {len(a['kept_float'])} float layer(s) -> {a['metric']:.4f} "
                             f"(drop {a['drop_points']:.2f} pts)")
            lines.append(f"- {rt}: {g[rt]['message']}")
    return "\n".join(lines)


def fmt_load(v) -> str:
    return "-" if not v else "/".join(f"{x:.1f}" for x in v)


if __name__ == "__main__":
    main()
