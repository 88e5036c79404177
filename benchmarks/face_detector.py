"""Face detectors compared: ms per frame and faces found, MTCNN (bundled ONNX, each runtime) vs OpenCV Haar.

    .venv/bin/python benchmarks/face_detector.py [--repeats 30] [--out benchmarks/results/face_detector]

Frames: skimage's astronaut photo (a real frontal face) scaled into 640x480 and 1280x720 frames; a
5-face group made from it (as is, mirrored, dim, sunglasses painted over the eyes via MTCNN's landmarks,
eyes painted shut with a lid line); and the frames of the synthetic ERI clips under data/eri (if present).
The edited faces are edits of one real photo, not new people: they test what the issue names (sunglasses,
closed eyes), within what ships offline.  Timings interleave the detectors in one process, one thread
each (as a preprocessing worker runs them), and report medians.
"""
from __future__ import annotations

import argparse
import glob
import json
import platform
import statistics
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np


def cpu() -> dict:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = info.get("Flags", "").split()
    return {"model": info.get("Model name", platform.processor()).strip(), "cores": len(__import__("os").sched_getaffinity(0)),
            "flags": [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16") if f in flags]}


def astronaut() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def frame(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """``img`` scaled to height ``h`` and centred on a grey ``w`` x ``h`` canvas."""
    s = h / img.shape[0]
    small = cv2.resize(img, (int(img.shape[1] * s), h))
    canvas = np.full((h, w, 3), 90, np.uint8)
    x0 = (w - small.shape[1]) // 2
    canvas[:, x0:x0 + small.shape[1]] = small
    return canvas


def variants(img: np.ndarray, marks: np.ndarray) -> dict[str, np.ndarray]:
    """Head crops: as is, mirrored, dim, sunglasses, eyes closed (painted from the landmarks)."""
    x0, y0, side = 140, 20, 180
    eyes = marks[:2].astype(int)
    d = int(np.linalg.norm(eyes[1] - eyes[0]))
    glasses, closed = img.copy(), img.copy()
    for ex, ey in eyes:
        cv2.ellipse(glasses, (ex, ey), (d // 2, d // 3), 0, 0, 360, (15, 15, 15), -1)
        skin = img[ey + d // 2, ex].tolist()
        cv2.ellipse(closed, (ex, ey), (d // 3, d // 6), 0, 0, 360, skin, -1)
        cv2.line(closed, (ex - d // 3, ey), (ex + d // 3, ey + 2), (40, 30, 30), 2)
    cv2.line(glasses, tuple(eyes[0]), tuple(eyes[1]), (15, 15, 15), 3)
    crop = lambda im: im[y0:y0 + side, x0:x0 + side].copy()  # noqa: E731
    return {"as_is": crop(img), "mirrored": crop(img)[:, ::-1].copy(),
            "dim": (crop(img) * 0.45).astype(np.uint8), "sunglasses": crop(glasses), "eyes_closed": crop(closed)}


def group(faces: dict[str, np.ndarray], w: int = 1280, h: int = 720) -> np.ndarray:
    canvas = np.full((h, w, 3), 120, np.uint8)
    rng = np.random.default_rng(0)
    canvas[:] = cv2.GaussianBlur(rng.integers(60, 200, (h, w, 3), dtype=np.uint8), (31, 31), 0)
    for i, img in enumerate(faces.values()):
        x = 40 + i * 245
        canvas[250:250 + img.shape[0], x:x + img.shape[1]] = img
    return canvas


def median_ms(fn, img, repeats: int) -> float:
    fn(img)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(img)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", default="benchmarks/results/face_detector")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    from edgeaffect.data.detectors import MtcnnFaceDetector
    from edgeaffect.data.faces import HaarFaceDetector
    from edgeaffect.runtimes import available

    dets = {f"mtcnn/{rt}": MtcnnFaceDetector(runtime=rt) for rt in ("openvino", "onnxruntime") if rt in available()}
    dets["haar"] = HaarFaceDetector()
    img = astronaut()
    marks = next(iter(dets.values())).detect_faces(img)[0].landmarks
    frames = {"640x480": frame(img, 640, 480), "1280x720": frame(img, 1280, 720)}
    timing = {size: {name: 0.0 for name in dets} for size in frames}
    for size, f in frames.items():          # interleaved rounds, median of the rounds' medians
        rounds = {name: [] for name in dets}
        for _ in range(3):
            for name, d in dets.items():
                rounds[name].append(median_ms(d.detect, f, args.repeats // 3 or 1))
        timing[size] = {name: round(statistics.median(v), 2) for name, v in rounds.items()}
    faces = variants(img, marks)
    photo = group(faces)
    found = {name: {"astronaut": len(d.detect(img)), "group_of_5": len(d.detect(photo)),
                    **{v: len(d.detect(frame(f, 640, 480))) for v, f in faces.items()}} for name, d in dets.items()}
    clips = sorted(glob.glob("data/eri/train/*.mp4"))[:20]
    if clips:
        from edgeaffect.data.media import read_frames

        video = [f for c in clips for f in read_frames(c, count=4)[0]]
        for name, d in dets.items():
            found[name]["synthetic_eri_frames"] = f"{sum(bool(d.detect(f)) for f in video)}/{len(video)}"
    cv2.imwrite(args.out + "_group.jpg", photo)
    result = {"cpu": cpu(), "command": "python benchmarks/face_detector.py", "ms_per_frame": timing,
              "faces_found": found, "threads": 1, "load_average": list(__import__("os").getloadavg())}
    Path(args.out + ".json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
