"""Re-run export + bench for trained runs and for every registered model, and record the results.

Trained runs (``--runs``) are measured with their eval split (metric + agreement).
Registered models without a trained run (``--models``, default: all) get a fresh
untrained run in a scratch folder: latency, memory and agreement only (their
metric would mean nothing).  Results go to ``benchmarks/results/<date>-suite.{json,md}``
with the machine and library versions.

    python benchmarks/suite.py --runs runs/eri/exp1 --models eri_audio,eri_video --batch 1,8 --budget 4
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgeaffect.bench import BenchConfig, bench_run, machine_info  # noqa: E402
from edgeaffect.export import export_run  # noqa: E402
from edgeaffect.fileio import read_json, write_json, write_text  # noqa: E402
from edgeaffect.models import create_model, list_models  # noqa: E402
from edgeaffect.runs import MANIFEST, save_checkpoint  # noqa: E402


def scratch_run(name: str, root: Path) -> Path:
    model = create_model(name)
    run = root / name
    run.mkdir(parents=True, exist_ok=True)
    save_checkpoint(run / "checkpoint.pt", model, name, {})
    write_json(run / MANIFEST, {"spec": model.spec.to_dict(), "note": "untrained: latency only"})
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="", help="comma-separated trained run directories")
    ap.add_argument("--models", default="all", help="registered models to measure untrained ('all', 'none', or names)")
    ap.add_argument("--runtime", default="onnxruntime,openvino,torch")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--budget", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    a = ap.parse_args()
    cfg = BenchConfig(batches=tuple(int(b) for b in a.batch.split(",")), budget_s=a.budget, rounds=4,
                      threads=a.threads)
    runtimes = a.runtime.split(",")
    targets = [Path(r) for r in a.runs.split(",") if r]
    names = list_models() if a.models == "all" else [] if a.models == "none" else a.models.split(",")
    results = []
    with tempfile.TemporaryDirectory(prefix="edgeaffect-suite-") as tmp:
        targets += [scratch_run(n, Path(tmp)) for n in names]
        for run in targets:
            print(f"== {run}", flush=True)
            export_run(run, [f for f in ("onnx", "openvino") if f == "onnx" or f in runtimes], exporter="dynamo")
            rows = bench_run(run, runtimes, ["fp32"], cfg)
            model_name = read_json(run / MANIFEST)["spec"]["name"]
            results.append({"run": str(run), "model": model_name, "rows": rows})
    meta = machine_info()
    stamp = meta["date"][:10]
    write_json(a.out / f"{stamp}-suite.json", {"meta": meta, "config": cfg.__dict__, "results": results})
    lines = [f"# edgeaffect bench suite — {meta['date']}", "",
             f"{meta.get('cpu', '?')} ({meta['cpus']} cores, shared machine); torch {meta.get('torch')}, "
             f"onnxruntime {meta.get('onnxruntime')}, openvino {meta.get('openvino')}.",
             f"Command: `python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}`. Registered models without "
             "a trained run are measured untrained: latency, memory and agreement only (no metric).", "",
             "| run | runtime | batch | p50 ms | p99 ms | ×torch | GFLOP/s | RSS MB | size MB | metric | agreement |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        for r in res["rows"]:
            fmt = lambda v, f: "-" if v is None else f.format(v)  # noqa: E731
            lines.append(f"| {Path(res['run']).name} | {r['runtime']} | {r['batch']} | {r['p50_ms']:.2f} | "
                         f"{r['p99_ms']:.2f} | {fmt(r['speedup_vs_torch'], '{:.2f}')} | "
                         f"{fmt(r['gflops_per_s'], '{:.1f}')} | {fmt(r['peak_rss_mb'], '{:.0f}')} | "
                         f"{r['size_mb']:.2f} | {fmt(r['metric'], '{:.4f}')} | {r['agreement']:.3f} |")
    write_text(a.out / f"{stamp}-suite.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
