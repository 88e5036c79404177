"""Several live sources: one shared face detector vs one per source, interleaved.

    .venv/bin/python benchmarks/demo_detector_pool.py RUN CLIP [CLIP ...] --out RESULT.json [--rounds 3] [--detect-every 1]

Each source is played ``--realtime`` (async mode, as a camera runs); detecting every frame makes detection
the load, the demo's default detects every 5th. Reports detections/s, the detect call's p50 and the
predictions' age, medians over the rounds.
Make a clip with ``edgeaffect data clip clip.mp4 --seconds 12``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def one(run, clips, detector, every: int) -> dict:
    from edgeaffect.demo.session import build_session

    s = build_session(clips, model=run, runtime="openvino", detector=detector, detect_every=every, realtime=True)
    summ = s.run().summary()
    d = summ["stages_ms"]["detect"]
    return {"detections_per_s": d["n"] / summ["wall_s"], "detect_ms_p50": d["p50"], "fps": summ["fps"],
            "prediction_age_ms_p95": summ["prediction_age_ms"]["p95"]}


def main() -> None:
    from edgeaffect.demo.session import make_detectors
    from face_detector import cpu

    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--detect-every", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    rows: dict[str, list[dict]] = {"one shared detector": [], "one detector per source": []}
    for r in range(args.rounds):
        for label in rows:
            det = make_detectors("mtcnn", 1 if label == "one shared detector" else len(args.clips))
            rows[label].append(one(args.run, args.clips, det, args.detect_every))
            print(r, label, {k: round(v, 1) for k, v in rows[label][-1].items()}, flush=True)
    medians = {label: {k: statistics.median(x[k] for x in v) for k in v[0]} for label, v in rows.items()}
    out = {"cpu": cpu(), "sources": len(args.clips), "detect_every": args.detect_every, "rounds": rows, "medians": medians,
           "command": "python benchmarks/demo_detector_pool.py " + " ".join(sys.argv[1:])}
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(medians, indent=1))


if __name__ == "__main__":
    main()
