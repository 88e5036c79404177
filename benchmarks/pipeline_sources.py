"""Sources per box: one demo process, N copies of a real clip played ``--realtime`` (as N cameras).

    .venv/bin/python benchmarks/pipeline_sources.py --clip WolfgangLanger_Pexels.mp4 --model runs/zoo/fer2013 \\
        --sources 1,2,4,8,16,24 --seconds 10 --out benchmarks/results/DATE-sources-per-box-CPU.json

With ``--repeats`` the curve is run that many times over (interleaved: the machine's noise is shared) and each
row gives medians; ``--busy-job`` runs a busy-looping process beside it (another job on the box).
For each N: fresh predictions (% of frames with faces whose prediction came from that frame or the one
before), prediction age p95, frames skipped (dropped while busy), detection ran %, FPS per source and the
stages' mean ms, with the load average before and after.  Also the single-source full-speed run (sync, detection
on every frame: FPS) and, with ``--eri``, an audio-visual model's fresh predictions per second per face.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def one(model, clip: str, n: int, seconds: float, **kw) -> dict:
    """One run of ``n`` sources for ``seconds``; the summary's per-source and per-stage figures."""
    from edgeaffect.demo.session import build_session

    s = build_session([clip] * n if n > 1 else clip, model=model, loop=True, verify=False, **kw)
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    load0 = os.getloadavg()[0]
    timer.start()
    try:
        summ = s.run(stop).summary()
    finally:
        timer.cancel()
    per = summ.get("sources") or [summ]
    seen = [x for x in per if x["face_frames"]]     # a source never detected has no frame to be fresh on
    inf = summ["inferences"] / summ["wall_s"] if summ["wall_s"] else 0.0
    return {
        "sources": n, "describe": s.describe(), "runtime": s.runtime_name,
        "fresh_pct_mean": statistics.mean(x["fresh_pct"] for x in seen) if seen else 0.0,
        "fresh_pct_min": min((x["fresh_pct"] for x in seen), default=0.0),
        "sources_without_faces": len(per) - len(seen),
        "fresh_frames_pct": 100.0 * sum(x["fresh_pct"] * x["face_frames"] for x in seen) / 100.0 /
                            max(1, sum(x["frames"] for x in per)),
        "age_p95_ms": summ["prediction_age_ms"]["p95"],
        "fps_per_source": statistics.mean(x["fps"] for x in per), "budget_ms": summ["frame_budget_ms"],
        "frames": summ["frames"], "frames_skipped": summ["dropped_frames"],
        "detect_pct": summ["detection"]["every_frame_pct"], "model_calls_per_s": inf,
        "fresh_predictions_per_s_per_face": _fresh_rate(per),
        "stages_ms": {k: round(v["mean"], 2) for k, v in summ["stages_ms"].items()},
        "load_before": load0, "load_after": os.getloadavg()[0],
    }


def median_row(runs: list[dict]) -> dict:
    """Several runs of one row: medians of the rates and ages, the lowest source's fresh %, every run kept."""
    if len(runs) == 1:
        return runs[0]
    med = lambda k: statistics.median(r[k] for r in runs)   # noqa: E731
    row = dict(runs[0])
    for k in ("fresh_pct_mean", "age_p95_ms", "fps_per_source", "frames_skipped", "detect_pct", "model_calls_per_s",
              "fresh_frames_pct", "fresh_predictions_per_s_per_face"):
        row[k] = med(k)
    row["fresh_pct_min"] = min(r["fresh_pct_min"] for r in runs)
    row["stages_ms"] = {k: round(statistics.median(r["stages_ms"][k] for r in runs), 2) for k in runs[0]["stages_ms"]}
    row["load_before"], row["load_after"] = min(r["load_before"] for r in runs), max(r["load_after"] for r in runs)
    row["runs"] = [{k: r[k] for k in ("fresh_pct_mean", "fresh_pct_min", "age_p95_ms", "detect_pct", "fps_per_source",
                                      "fresh_predictions_per_s_per_face", "runtime", "describe")} for r in runs]
    return row


def _fresh_rate(per: list) -> float:
    """Predictions per second per face (each source's inferences over its wall time, averaged)."""
    return statistics.mean(x["inferences"] / x["wall_s"] for x in per if x["wall_s"])


def table(rows: list[dict]) -> str:
    head = ("| sources | FPS/source | fresh % mean (min) | sources without a face | age p95 ms | frames skipped | "
            "detected % | decode | detect | preprocess | infer | overlay ms | load |\n"
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        st = r["stages_ms"]
        lines.append(f"| {r['sources']} | {r['fps_per_source']:.1f} | {r['fresh_pct_mean']:.1f} ({r['fresh_pct_min']:.1f}) | "
                     f"{r['sources_without_faces']} | {r['age_p95_ms']:.1f} | {r['frames_skipped']} | {r['detect_pct']:.0f} | {st['decode']} | "
                     f"{st['detect']} | {st['preprocess']} | {st['infer']} | {st['overlay']} | "
                     f"{r['load_before']:.1f}-{r['load_after']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    from face_detector import cpu

    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", required=True)
    ap.add_argument("--model", default=None, help="run folder (default: the zoo's fer2013)")
    ap.add_argument("--sources", default="1,2,4,8,16,24")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--detector", default="auto")
    ap.add_argument("--eri", default=None, help="an audio-visual run folder: its fresh predictions/s per face")
    ap.add_argument("--out", required=True)
    ap.add_argument("--repeats", type=int, default=1, help="passes over the curve (interleaved); rows give medians")
    ap.add_argument("--busy-job", action="store_true", help="another job on the box: a busy-looping process")
    a = ap.parse_args()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if a.busy_job else None
    try:
        passes = [[one(a.model, a.clip, int(n), a.seconds, detector=a.detector, realtime=True)
                   for n in a.sources.split(",")] for _ in range(a.repeats)]
    finally:
        if busy is not None:
            busy.kill()
    rows = [median_row(list(runs)) for runs in zip(*passes)]
    print(table(rows), flush=True)
    full = median_row([one(a.model, a.clip, 1, a.seconds, detector=a.detector, realtime=False, sync=True)
                       for _ in range(a.repeats)])
    print(f"single source, full speed, sync: {full['fps_per_source']:.1f} FPS, detected {full['detect_pct']:.0f} %")
    eri = median_row([one(a.eri, a.clip, 1, a.seconds, detector=a.detector, realtime=True, max_faces=1)
                      for _ in range(a.repeats)]) if a.eri else None
    if eri:
        print(f"audio-visual {eri['describe']}: {eri['fresh_predictions_per_s_per_face']:.1f} predictions/s per face")
    out = {"cpu": cpu(), "clip": a.clip, "seconds": a.seconds, "repeats": a.repeats, "busy_job": a.busy_job, "curve": rows, "full_speed": full, "eri": eri,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    Path(a.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
