"""Demo benchmark: `edgeaffect demo --bench` on a 640x480 one-face clip, per runtime and precision.

    python benchmarks/demo_bench.py [--work /tmp/demo_bench] [--seconds 10] [--eri]

Steps (all offline): render a 640x480, 30 fps clip of a real face (skimage's astronaut) with a voice track;
import the FER2013 zoo model and export it (ONNX, OpenVINO IR; INT8 files are used when present); then for
each artifact run the demo twice:
  - ``async``  the file played as a 30 fps camera (``--realtime``): detection and inference on worker
               threads, as a user sees it; FPS is capped by the source, prediction rate and age show the model;
  - ``sync``   every frame waits for detection (every 5th frame) and inference: all stages in sequence,
               the conservative throughput.
With ``--eri`` the same for the ERI audio-visual model (untrained weights: speed only).
Results go to ``benchmarks/demo_results.json`` and a Markdown table on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sh(args: list[str]) -> None:
    subprocess.run(args, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def prepare(work: Path, seconds: float, eri: bool) -> tuple[Path, list[Path]]:
    sys.path.insert(0, str(ROOT))
    import torch

    torch.set_num_threads(1)
    from edgeaffect import runs, zoo
    from edgeaffect.demo.clips import render_clip
    from edgeaffect.export import export_run
    from edgeaffect.fileio import write_json
    from edgeaffect.models import create_model

    clip = work / "face640x480.mp4"
    if not clip.exists():
        render_clip(clip, seconds=seconds, fps=30, size=(640, 480), faces=1, kind="real")
    models = []
    fer = work / "fer2013"
    if not (fer / "model.onnx").exists():
        zoo.import_model("fer2013", fer)
        export_run(fer, ("onnx", "openvino"))
    models.append(fer)
    if eri:
        er = work / "eri_dual_branch"
        if not (er / "model.onnx").exists():
            er.mkdir(parents=True, exist_ok=True)
            m = create_model("eri_dual_branch").eval()
            runs.save_checkpoint(er / "checkpoint.pt", m, "eri_dual_branch", {})
            write_json(er / "manifest.json", {"spec": m.spec.to_dict(), "note": "untrained weights, speed only"})
            export_run(er, ("onnx", "openvino"))
        models.append(er)
    return clip, models


def bench(clip: Path, run: Path, runtime: str, precision: str, mode: str, out: Path) -> dict:
    args = [sys.executable, "-m", "edgeaffect", "demo", "--source", str(clip), "--model", str(run),
            "--runtime", runtime, "--precision", precision, "--headless", "--bench", "--bench-json", str(out)]
    args += ["--mode", "sync"] if mode == "sync" else ["--mode", "async", "--realtime"]
    sh(args)
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "edgeaffect_demo_bench")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--eri", action="store_true", help="also the ERI audio-visual model")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "demo_results.json")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    clip, models = prepare(a.work, a.seconds, a.eri)
    from edgeaffect.runtimes.registry import discover_artifacts

    rows = []
    for run in models:
        for art in discover_artifacts(run):
            if art.variant or art.precision == "fp16":
                continue
            for mode in ("async", "sync"):
                s = bench(clip, run, art.runtime, art.precision, mode, a.work / f"{run.name}-{art.label}-{mode}.json")
                rows.append({"model": s["model"], "runtime": art.runtime, "precision": art.precision, "mode": mode,
                             "fps": s["fps"], "p95_latency_ms": s["latency_ms"]["p95"],
                             "inference_rate": s["inference_rate"], "prediction_age_p95_ms": s["prediction_age_ms"]["p95"],
                             "stages_ms": {k: round(v["mean"], 2) for k, v in s["stages_ms"].items()},
                             "frames": s["frames"], "skipped_busy": s["skipped_busy"]})
                print(f"{run.name} {art.label} {mode}: FPS {s['fps']:.1f}", file=sys.stderr)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"clip": "640x480 30 fps, one real face (skimage astronaut), "
                                          f"{a.seconds:g} s", "rows": rows}, indent=2) + "\n")
    stages = ("decode", "detect", "track", "preprocess", "infer", "overlay")
    print("| model | runtime | prec | mode | FPS | p95 latency ms | pred/s | pred age p95 ms | "
          + " | ".join(f"{s} ms" for s in stages) + " |")
    print("|" + "---|" * (8 + len(stages)))
    for r in rows:
        print(f"| {r['model']} | {r['runtime']} | {r['precision']} | {r['mode']} | {r['fps']:.1f} | "
              f"{r['p95_latency_ms']:.1f} | {r['inference_rate']:.1f} | {r['prediction_age_p95_ms']:.1f} | "
              + " | ".join(f"{r['stages_ms'][s]:.2f}" for s in stages) + " |")


if __name__ == "__main__":
    main()
