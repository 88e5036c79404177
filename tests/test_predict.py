"""ea.Predictor: a video, an image folder or arrays -> per-frame, per-face records through the demo's pipeline,
each score equal to the runtime's infer on the crop the record's box gives."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgeaffect as ea
from edgeaffect.errors import EdgeAffectError

ROOT = Path(__file__).resolve().parents[1]
FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@pytest.fixture(scope="module")
def fer_onnx(tmp_path_factory) -> Path:
    """A FER2013 mini-Xception (random weights: no weights package needed) exported to ONNX: one grey 64x64 face."""
    import torch

    from edgeaffect.export import export_run
    from edgeaffect.fileio import write_json
    from edgeaffect.models import create_model
    from edgeaffect.runs import save_checkpoint

    run = tmp_path_factory.mktemp("predict") / "run"
    run.mkdir()
    torch.manual_seed(0)
    model = create_model("fer2013_mini_xception")
    save_checkpoint(run / "checkpoint.pt", model, "fer2013_mini_xception", {})
    write_json(run / "manifest.json", {"task": "fer2013", "spec": model.spec.to_dict()})
    export_run(run, ["onnx"], exporter="legacy")
    return run / "model.onnx"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    from edgeaffect.demo.clips import render_clip

    return render_clip(tmp_path_factory.mktemp("clip") / "face.mp4", seconds=1.0, fps=10, size=(320, 240))


@pytest.fixture(scope="module")
def frames(clip) -> np.ndarray:
    from edgeaffect.data.media import read_frames

    return read_frames(clip)[0]


@pytest.fixture(scope="module")
def predictor(fer_onnx):
    with ea.Predictor(fer_onnx) as p:
        yield p


def _infer_record(p, frame: np.ndarray, rec: dict) -> np.ndarray:
    """The runtime's scores for the crop a record's box cuts (the model takes one frame: T = 1)."""
    from edgeaffect.data.feeds import crop_regions, feeds_from_crops, region_order, scores_from_outputs

    pre = p.spec.preprocessing
    crops = crop_regions(frame, rec["box"], region_order(p.spec), pre, float(pre.get("face_margin", 0.2)))
    feeds = feeds_from_crops(p.spec, crops[None, None], None)
    return scores_from_outputs(p.spec, p.runner.infer(feeds))[0]


def _check(preds, p, images: np.ndarray, fps: float) -> None:
    assert preds.frames == len(images) and preds.labels == FER_LABELS
    assert len(preds) >= 0.7 * len(images), "the astronaut's face was missed in most frames"
    for rec in preds:
        assert set(rec) == {"frame", "time", "face", "box", "label", "scores"}
        assert rec["time"] == pytest.approx(rec["frame"] / fps, abs=1e-3)
        assert len(rec["box"]) == 4 and all(isinstance(v, int) for v in rec["box"])
        assert set(rec["scores"]) == set(FER_LABELS) and sum(rec["scores"].values()) == pytest.approx(1, abs=1e-4)
        assert rec["label"] == max(rec["scores"], key=rec["scores"].get)
        want = _infer_record(p, images[rec["frame"]], rec)
        np.testing.assert_allclose([rec["scores"][n] for n in FER_LABELS], want, rtol=1e-5, atol=1e-6)
    assert len({r["face"] for r in preds}) == 1                  # one face, one track id
    assert [r["frame"] for r in preds] == sorted(r["frame"] for r in preds)


def test_a_video_file(predictor, clip, frames):
    preds = predictor.predict(str(clip))
    _check(preds, predictor, frames, fps=10.0)
    assert preds.source == str(clip) and preds.stats["frames"] == len(frames)


def test_an_image_folder_and_an_image_file(predictor, frames, tmp_path):
    import cv2

    for i, f in enumerate(frames[:4]):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), f)
    _check(predictor.predict(tmp_path, fps=5.0), predictor, frames[:4], fps=5.0)
    one = predictor.predict(tmp_path / "002.png")
    assert one.frames == 1 and [r["frame"] for r in one] == [0]
    _check(one, predictor, frames[2:3], fps=30.0)


def test_arrays_are_frames_and_stay_untouched(predictor, frames):
    given = frames[:5].copy()
    preds = predictor.predict(given, fps=25.0)
    _check(preds, predictor, frames[:5], fps=25.0)
    np.testing.assert_array_equal(given, frames[:5])              # the demo's overlay drew on copies
    single = predictor.predict(frames[3])
    assert single.frames == 1 and len(single) == 1
    listed = predictor.predict(list(frames[:2]))
    assert [r["scores"] for r in listed] == [r["scores"] for r in preds][:2]


def test_to_pandas_or_one_line_without_it(predictor, frames, monkeypatch):
    preds = predictor.predict(frames[:3])
    if importlib.util.find_spec("pandas") is not None:
        df = preds.to_pandas()
        assert list(df.columns) == ["frame", "time", "face", "x", "y", "w", "h", "label", *FER_LABELS]
        assert len(df) == len(preds) and df["happy"].tolist() == [r["scores"]["happy"] for r in preds]
        assert df[["x", "y", "w", "h"]].values.tolist() == [r["box"] for r in preds]
    monkeypatch.setitem(sys.modules, "pandas", None)               # as where pandas is not installed
    with pytest.raises(EdgeAffectError, match=r"^to_pandas\(\) needs pandas, which is not installed: pip install pandas"):
        preds.to_pandas()


def test_bad_inputs_are_one_clear_line(predictor, tmp_path):
    with pytest.raises(EdgeAffectError, match=r"frames must be BGR uint8 \[H, W, 3\]"):
        predictor.predict(np.zeros((2, 64, 64, 3), np.float32))
    with pytest.raises(EdgeAffectError, match=r"one BGR image \[H, W, 3\] or frames \[N, H, W, 3\]"):
        predictor.predict(np.zeros((64, 64), np.uint8))
    with pytest.raises(EdgeAffectError, match="does not exist"):
        predictor.predict(tmp_path / "missing.mp4")
    with pytest.raises(EdgeAffectError, match="holds no images"):
        predictor.predict(tmp_path)
    with pytest.raises(EdgeAffectError, match="no model at"):
        ea.Predictor(tmp_path / "nothing.onnx")
    with pytest.raises(EdgeAffectError, match=r"smoothing must be in \[0, 1\)"):
        ea.Predictor(predictor.runner, smoothing=1.5)


def test_an_opened_model_and_a_face_free_frame(fer_onnx, frames):
    model = ea.load(fer_onnx)
    p = ea.Predictor(model, detector="haar")
    blank = np.full((240, 320, 3), 90, np.uint8)
    preds = p.predict([blank, frames[0]])
    assert preds.frames == 2 and {r["frame"] for r in preds} == {1}   # no record for the frame without a face
    p.close()                                                          # the caller's model stays open
    assert model.infer(model.spec.dummy_inputs(batch=1))["logits"].shape == (1, 7)


def test_import_edgeaffect_stays_light():
    """``ea.Predictor`` loads on first use, and loading it opens no runtime, OpenCV, PyAV or torch."""
    code = ("import json, sys, edgeaffect as ea\n"
            "assert [m for m in sys.modules if m.startswith('edgeaffect')] == ['edgeaffect']\n"
            "assert ea.Predictor.__module__ == 'edgeaffect.predict' and 'Predictor' in dir(ea)\n"
            "print(json.dumps(sorted({'cv2', 'onnxruntime', 'av', 'torch'} & set(sys.modules))))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


@pytest.fixture(scope="module")
def eri_onnx(tmp_path_factory) -> Path:
    """A tiny audio-visual ERI model (4 frames + 2 s of MFCC, random weights) exported to ONNX."""
    import torch

    from edgeaffect.export import export_run
    from edgeaffect.fileio import write_json
    from edgeaffect.models import create_model
    from edgeaffect.runs import save_checkpoint

    from .conftest import TINY_MODEL

    run = tmp_path_factory.mktemp("predict-eri") / "run"
    run.mkdir()
    torch.manual_seed(0)
    model = create_model("eri_dual_branch", **TINY_MODEL)
    save_checkpoint(run / "checkpoint.pt", model, "eri_dual_branch", dict(TINY_MODEL))
    write_json(run / "manifest.json", {"task": "eri", "spec": model.spec.to_dict()})
    export_run(run, ["onnx"], exporter="legacy")
    return run / "model.onnx"


def test_an_audio_visual_model_hears_the_file_or_the_samples_given(eri_onnx, clip, frames):
    """The clip's own track, or the same samples passed with its frames, give the same records; silence differs."""
    from edgeaffect.data.media import read_audio

    with ea.Predictor(eri_onnx, max_faces=1) as p:
        sr = int(p.spec.preprocessing["sample_rate"])
        from_file = p.predict(clip)
        voice = read_audio(clip, sr, str(p.spec.preprocessing.get("resample", "pyav")))
        from_arrays = p.predict(frames, fps=10.0, audio=voice)
        silent = p.predict(frames, fps=10.0)
    assert len(from_file) >= 0.7 * len(frames) and set(from_file[-1]["scores"]) == set(p.labels)
    assert [(r["frame"], r["box"], r["scores"]) for r in from_file] == \
           [(r["frame"], r["box"], r["scores"]) for r in from_arrays]
    assert [r["scores"] for r in silent] != [r["scores"] for r in from_arrays]
