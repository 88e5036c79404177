"""Build the BlazeFace ONNX files that :mod:`edgeaffect.data.blazeface` runs, from the ``mediapipe==0.10.21`` wheel.

That wheel ships BlazeFace short range (128x128, 896 anchors) and full range (192x192, 2304 anchors, stored
sparse) as ``.tflite`` (Apache-2.0); later wheels ship none.  The graphs are converted op for op by
:mod:`.tflite_onnx` rather than re-declared in torch (as :mod:`.mtcnn_export` does for MTCNN): the two nets
differ (full range has an FPN with resizes and depth-to-space), and reading the graph from the file leaves
nothing to guess, needs no torch and no TensorFlow.  Run once at build time::

    pip install --no-deps tflite==2.18.0 mediapipe==0.10.21 && python -m edgeaffect.data.blazeface_export

The ONNX files are committed under ``edgeaffect/data/weights/blazeface/`` and ship in the package;
``tests/test_blazeface.py`` checks them against the ``.tflite`` run by LiteRT and against MediaPipe's solution.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from ..errors import EdgeAffectError
from ..fileio import write_bytes

OUT_DIR = Path(__file__).with_name("weights") / "blazeface"
# ONNX name -> the mediapipe wheel's file (full range ships only in its sparse form, same weights, made dense)
MODELS = {"short_range": "face_detection_short_range.tflite",
          "full_range": "face_detection_full_range_sparse.tflite"}
OUTPUTS = ["regressors", "classificators"]


def wheel_models() -> Path:
    """The ``mediapipe/modules/face_detection`` folder of the installed wheel (found without importing it)."""
    spec = importlib.util.find_spec("mediapipe")
    folder = Path(list(spec.submodule_search_locations)[0]) / "modules" / "face_detection" if spec else None
    if folder is None or not all((folder / f).is_file() for f in MODELS.values()):
        raise EdgeAffectError("the BlazeFace .tflite files come from mediapipe 0.10.21: "
                              "pip install --no-deps mediapipe==0.10.21")
    return folder


def export(out_dir: Path = OUT_DIR, models: Path | None = None) -> list[Path]:
    """Convert both nets and write them (atomically) as ``<name>.onnx``."""
    from .tflite_onnx import convert

    models = models or wheel_models()
    return [write_bytes(out_dir / f"{name}.onnx", convert(models / f, OUTPUTS).SerializeToString())
            for name, f in MODELS.items()]


if __name__ == "__main__":
    for p in export(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR):
        print(p, p.stat().st_size)
