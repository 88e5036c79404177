"""FP32 vs INT8 vs pruned vs pruned+INT8 for a trained ERI run, per runtime, plus the accuracy guard at work.

    python benchmarks/quantize_eri.py runs/eri/<run> --ratio 0.5 --finetune-epochs 3

Steps: export FP32 (ONNX + OpenVINO IR), INT8 for ONNX Runtime and OpenVINO with the guard, prune +
fine-tune into ``pruned-<ratio>/`` and export + quantize that too, then one interleaved ``bench_run``
over every artifact (torch eager as reference).  Finally the guard case: a copy of the run whose
model gets a function-preserving outlier channel (FP32 outputs unchanged, see ``inject_outlier``),
quantized with and without the guard.  Results: benchmarks/results/quantize-eri.{json,md}.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
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
    ap.add_argument("--calib-samples", type=int, default=64)
    ap.add_argument("--sensitivity-samples", type=int, default=4)
    ap.add_argument("--guard-runtimes", default="onnxruntime,openvino")
    ap.add_argument("--budget", type=float, default=4.0, help="timed seconds per variant")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--skip-prepare", action="store_true", help="reuse artifacts already in the run")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import edgeaffect.runs as runs
    from edgeaffect.bench import BenchConfig, bench_run, machine_info
    from edgeaffect.export import export_onnx, export_openvino, export_run
    from edgeaffect.quantize.config import QuantConfig
    from edgeaffect.quantize.pipeline import quantize_run
    from edgeaffect.quantize.prune import load_model_any, prune_run, pruned_dirname

    # bench/export rebuild models through runs.load_model; until it restores pruned structures itself
    # (one line, see edgeaffect.quantize.prune.restore_structure) route it through load_model_any.
    runs.load_model = lambda ckpt, map_location="cpu": load_model_any(ckpt)

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
        prune_run(run, args.ratio, finetune_epochs=args.finetune_epochs)
        timings["prune_finetune_s"] = time.perf_counter() - t
        model = load_model_any(pruned / "checkpoint.pt")
        export_onnx(model, pruned / "model.onnx")
        export_openvino(pruned / "model.onnx", pruned / "openvino" / "model.xml", spec=model.spec)
        pquant = quantize_run(pruned, ["onnxruntime", "openvino"], cfg)
    else:
        quant = json.loads((run / "quantize/report.json").read_text())
        pquant = json.loads((pruned / "quantize/report.json").read_text())
    pruning = json.loads((pruned / "manifest.json").read_text())["pruning"]

    rows = bench_run(run, ["onnxruntime", "openvino", "torch"], ["fp32", "int8"],
                     BenchConfig(batches=(1, 8), budget_s=args.budget, rounds=6, threads=args.threads,
                                 isolate=False, limit=64), show_progress=False)

    result = {"date": dt.datetime.now().isoformat(timespec="seconds"), "machine": machine_info(),
              "command": " ".join(["python", "benchmarks/quantize_eri.py", *sys.argv[1:]]),
              "threads": args.threads, "model": quant["model"], "timings_s": timings,
              "int8": {rt: {k: r[k] for k in ("fp32_metric", "int8_metric", "drop_points", "kept_float", "agreement")}
                       for rt, r in quant["runtimes"].items()},
              "pruned_int8": {rt: {k: r[k] for k in ("fp32_metric", "int8_metric", "drop_points", "kept_float")}
                              for rt, r in pquant["runtimes"].items()},
              "pruning": {k: pruning[k] for k in ("ratio", "importance", "finetune_epochs", "before",
                                                   "pruned_no_finetune", "after", "speedup_flops")},
              "bench": rows, "guard": None}
    save(result, args.out)   # written once before the guard case, which takes longest

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
    save(result, args.out)
    print(markdown(result))


def save(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "quantize-eri.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (out / "quantize-eri.md").write_text(markdown(result) + "\n")


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"# INT8 and pruning on the ERI model ({r['model']})", "",
             f"{r['date']}, {m.get('cpu', '')} ({m.get('cpus', '')} CPUs; torch {m.get('torch', '?')}, onnxruntime {m.get('onnxruntime', '?')}, openvino {m.get('openvino', '?')}), threads={r['threads']}; "
             f"command: `{r['command']}`", ""]
    rows = r["bench"]
    ref = {(x["runtime"], x["batch"]): x for x in rows if x["precision"] == "fp32" and not x["variant"]}
    lines += ["| runtime | variant | batch | p50 ms | speed-up vs FP32 (same runtime) | vs torch | size MB | "
              f"{rows[0]['metric_name']} | agreement |", "|---|---|---|---|---|---|---|---|---|"]
    for x in sorted(rows, key=lambda x: (x["runtime"], x["batch"], x["variant"], x["precision"])):
        base = ref.get((x["runtime"], x["batch"]))
        sp = base["p50_ms"] / x["p50_ms"] if base else float("nan")
        label = f"{x['variant'] + ' ' if x['variant'] else ''}{x['precision']}"
        vt = x.get("speedup_vs_torch")
        lines.append(f"| {x['runtime']} | {label} | {x['batch']} | {x['p50_ms']:.2f} | {sp:.2f}x | "
                     f"{(f'{vt:.2f}x' if vt else '-')} | {x['size_mb']:.2f} | "
                     f"{x['metric'] if x['metric'] is None else round(x['metric'], 4)} | {x['agreement']:.3f} |")
    p = r["pruning"]
    lines += ["", f"Pruning {p['ratio']} ({p['importance']}, {p['finetune_epochs']} fine-tune epochs): params "
              f"{p['before']['params']:,} -> {p['after']['params']:,}, GFLOPs {p['before']['gflops']} -> "
              f"{p['after']['gflops']} ({p['speedup_flops']}x), metric {p['before']['metric']:.4f} -> "
              f"{p['pruned_no_finetune']['metric']:.4f} (no fine-tune) -> {p['after']['metric']:.4f}", ""]
    lines += ["INT8 guard results (val metric, drop in points):", ""]
    for name in ("int8", "pruned_int8"):
        for rt, q in r[name].items():
            lines.append(f"- {name} {rt}: FP32 {q['fp32_metric']:.4f} -> INT8 {q['int8_metric']:.4f}, drop "
                         f"{q['drop_points']:.2f}, {len(q['kept_float'])} layer(s) kept in float")
    g = r["guard"]
    if not g:
        return "\n".join(lines)
    lines += ["", "## Accuracy guard case", "", f"How: {g['how']}.", ""]
    for rt in ("onnxruntime", "openvino"):
        if rt in g:
            for i, a in enumerate(g[rt]["attempts"]):
                lines.append(f"- {rt} attempt {i}: {len(a['kept_float'])} float layer(s) -> {a['metric']:.4f} "
                             f"(drop {a['drop_points']:.2f} pts)")
            lines.append(f"- {rt}: {g[rt]['message']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
