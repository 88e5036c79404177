"""FP32 vs INT8 agreement of the FER2013 zoo model on real face crops.

    python benchmarks/demo_fer_int8.py RUN_DIR [--make-int8]

Real faces: the 100 face images of ``skimage.data.lfw_subset()`` (25x25 LFW crops, upscaled to 64x64)
and the astronaut's face found by the Haar detector in ``skimage.data.astronaut()``.  Every INT8 artifact
in the run (``model.int8.onnx``, ``openvino/model.int8.xml``, written by the quantize stage) is compared
with the FP32 ONNX model on the same crops: top-1 agreement and the largest probability difference.

With ``--make-int8`` and no INT8 artifact present, it first writes plain library-default INT8 models
for a baseline (ORT ``quantize_static`` QDQ per-channel, NNCF ``quantize`` defaults), calibrated on
LFW faces 0-49 and evaluated on 50-99 + the astronaut; results say which INT8 was measured.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def real_face_batch() -> tuple[np.ndarray, list[str]]:
    """[N, 1, 64, 64] float32 fed exactly like the demo, plus a name per crop."""
    import cv2
    from skimage import data

    from edgeaffect.data.faces import HaarFaceDetector, crop_face
    from edgeaffect.data.feeds import prepare_face_batch
    from edgeaffect.models.zoo import fer2013_preprocessing

    pre = fer2013_preprocessing()
    lfw = (data.lfw_subset()[:100] * 255).astype(np.uint8)
    crops = [cv2.cvtColor(cv2.resize(f, (64, 64), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR) for f in lfw]
    names = [f"lfw{i:02d}" for i in range(100)]
    astro = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    box = HaarFaceDetector().detect(astro)[0]
    crops.append(crop_face(astro, box, 64, pre["face_margin"]))
    names.append("astronaut")
    return prepare_face_batch(np.stack(crops)[:, None], pre)[:, 0], names


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def make_int8(run: Path, calib: np.ndarray) -> list[str]:
    """Library-default INT8 baselines (only where the run has none)."""
    from edgeaffect.export import embed_spec, read_onnx_spec

    made = []
    spec = read_onnx_spec(run / "model.onnx")
    if not (run / "model.int8.onnx").exists():
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.it = iter([{"face": calib[i:i + 1]} for i in range(len(calib))])

            def get_next(self):
                return next(self.it, None)

        quantize_static(str(run / "model.onnx"), str(run / "model.int8.onnx"), Reader(),
                        quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QInt8)
        embed_spec(run / "model.int8.onnx", spec)
        made.append("onnxruntime: quantize_static QDQ per-channel, MinMax, 50 LFW faces")
    xml = run / "openvino" / "model.int8.xml"
    if not xml.exists() and (run / "openvino" / "model.xml").exists():
        import nncf
        import openvino as ov

        from edgeaffect.runtimes.openvino import RT_INFO_PATH

        core = ov.Core()
        model = core.read_model(str(run / "openvino" / "model.xml"))
        q = nncf.quantize(model, nncf.Dataset([calib[i:i + 1] for i in range(len(calib))]), subset_size=len(calib))
        q.set_rt_info(spec.to_json(), RT_INFO_PATH)
        ov.save_model(q, str(xml))
        made.append("openvino: nncf.quantize defaults, 50 LFW faces")
    return made


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--make-int8", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "demo_fer_int8.json")
    a = ap.parse_args()
    import edgeaffect
    from edgeaffect.runtimes.registry import discover_artifacts

    x, names = real_face_batch()
    made = make_int8(a.run, x[:50]) if a.make_int8 else []
    ev, ev_names = (x[50:], names[50:]) if made else (x, names)
    with edgeaffect.load(a.run / "model.onnx", runtime="onnxruntime") as rt:
        ref = softmax(rt.infer({"face": ev})["logits"])
    rows = []
    for art in discover_artifacts(a.run):
        if art.precision != "int8" or art.variant:
            continue
        with edgeaffect.load(art.path, runtime=art.runtime) as rt:
            p = np.concatenate([softmax(rt.infer({"face": ev[i:i + 1]})["logits"]) for i in range(len(ev))])
        rows.append({"artifact": str(art.path.relative_to(a.run)), "runtime": art.runtime, "n": len(ev),
                     "top1_agreement": float((p.argmax(1) == ref.argmax(1)).mean()),
                     "max_abs_prob_diff": float(np.abs(p - ref).max()),
                     "mean_abs_prob_diff": float(np.abs(p - ref).mean()),
                     "astronaut": {"fp32": ref[ev_names.index("astronaut")].round(4).tolist(),
                                   "int8": p[ev_names.index("astronaut")].round(4).tolist()}})
    result = {"faces": f"{len(ev)} real face crops (LFW subset + astronaut)", "int8_made_here": made, "rows": rows}
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not rows:
        print("no INT8 artifact in the run (the quantize stage writes model.int8.onnx / openvino/model.int8.xml); "
              "use --make-int8 for a library-default baseline", file=sys.stderr)


if __name__ == "__main__":
    main()
