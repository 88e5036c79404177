"""The bundled MTCNN detector (BlazeFace: test_blazeface.py), detector choice and fallback, per-detector caches, and the shared reporting."""
from __future__ import annotations

import importlib.util
import io

import cv2
import numpy as np
import pytest
from rich.console import Console

from edgeaffect.data import detectors
from edgeaffect.data.detectors import MtcnnFaceDetector, align_face, alignment, make_detector, resolve_detector
from edgeaffect.data.faces import HaarFaceDetector
from edgeaffect.data.report import progress, record, summary
from edgeaffect.errors import EdgeAffectError


@pytest.fixture(scope="module")
def photo():
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def mtcnn():
    return MtcnnFaceDetector()


def _iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def test_mtcnn_finds_the_real_face_with_landmarks_where_a_face_has_them(photo, mtcnn):
    faces = mtcnn.detect_faces(photo)
    assert len(faces) == 1 and faces[0].score > 0.95
    assert _iou(faces[0].box, HaarFaceDetector().detect(photo)[0]) > 0.5
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = faces[0].landmarks
    x, y, w, h = faces[0].box
    assert lx < nx < rx and mlx < mrx                       # left eye, nose, right eye from left to right
    assert max(ly, ry) < ny < min(mly, mry)                 # eyes above the nose above the mouth
    assert all(x <= px <= x + w and y <= py <= y + h for px, py in faces[0].landmarks)
    assert mtcnn.detect(photo) == [faces[0].box]            # the FaceDetector interface


def test_every_face_of_a_group_is_found_largest_first(photo, mtcnn):
    head = photo[20:200, 140:320]
    canvas = np.full((480, 1000, 3), 110, np.uint8)
    for i, scale in enumerate((1.0, 0.8, 0.6, 1.0)):
        img = cv2.resize(head if i % 2 == 0 else head[:, ::-1], None, fx=scale, fy=scale)
        canvas[100:100 + img.shape[0], 20 + 245 * i:20 + 245 * i + img.shape[1]] = img
    boxes = mtcnn.detect(canvas)
    assert len(boxes) == 4
    assert [b[2] * b[3] for b in boxes] == sorted((b[2] * b[3] for b in boxes), reverse=True)
    assert sorted(b[0] // 245 for b in boxes) == [0, 1, 2, 3]   # one per placed head
    assert mtcnn.detect(np.full((480, 640, 3), 128, np.uint8)) == []


def test_alignment_puts_the_landmarks_on_the_template(photo, mtcnn):
    marks = mtcnn.detect_faces(photo)[0].landmarks
    m = alignment(marks, 112)
    moved = np.c_[marks, np.ones(5)] @ m.T
    assert np.abs(moved - detectors._TEMPLATE_112).max() < 6      # a similarity fits five real points closely
    crop = align_face(photo, marks, 112)
    assert crop.shape == (112, 112, 3) and crop.std() > 20
    again = mtcnn.detect_faces(cv2.resize(crop, (224, 224)))       # the aligned crop is still a face
    assert len(again) == 1


@pytest.mark.skipif(importlib.util.find_spec("facenet_pytorch") is None,
                    reason="facenet-pytorch (the weights' source) not installed; make install adds it")
def test_bundled_onnx_nets_match_the_wheels_weights():
    import torch

    from edgeaffect.data.mtcnn_export import load_net

    rng = np.random.default_rng(0)
    for name, shape in (("pnet", (1, 3, 37, 53)), ("rnet", (5, 3, 24, 24)), ("onet", (3, 3, 48, 48))):
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        with torch.no_grad():
            want = [t.numpy() for t in load_net(name)(torch.from_numpy(x))]
        for runtime in ("onnxruntime", "openvino"):
            got = MtcnnFaceDetector(runtime=runtime).nets[name](x)
            for g, w in zip(got, want):
                np.testing.assert_allclose(g, w, atol=1e-4)


def test_auto_falls_back_to_haar_with_one_line_and_names_are_checked(monkeypatch):
    said = []
    monkeypatch.setattr(detectors, "blazeface_runtime", lambda: None)
    monkeypatch.setattr(detectors, "mtcnn_runtime", lambda: None)
    assert resolve_detector("auto", said.append) == "haar" and len(said) == 1 and "onnxruntime" in said[0]
    assert isinstance(make_detector("auto"), HaarFaceDetector)
    with pytest.raises(EdgeAffectError, match="needs onnxruntime or openvino"):
        MtcnnFaceDetector()
    monkeypatch.undo()
    assert resolve_detector("auto") == "blazeface" and resolve_detector("haar") == "haar"
    with pytest.raises(EdgeAffectError, match="unknown face detector 'yunet'"):
        resolve_detector("yunet")


def test_preprocessing_cache_is_kept_per_detector(tmp_path):
    from edgeaffect.data.preprocess import AVConfig, ClipJob, prepare_clips
    from edgeaffect.data.synth.eri import ERISynthConfig, generate_eri

    generate_eri(tmp_path / "eri", ERISynthConfig(clips=3, seed=1, seconds=1.0), workers=1)
    jobs = [ClipJob(p.stem, p) for p in sorted((tmp_path / "eri").rglob("*.mp4"))]
    cfg = AVConfig(frames=4, face_size=32)
    auto, rep = prepare_clips(jobs, cfg, tmp_path / "cache", workers=2)
    assert rep.ok == len(jobs) and rep.from_cache == 0
    again, rep = prepare_clips(jobs, AVConfig(frames=4, face_size=32, detector="blazeface"), tmp_path / "cache",
                               workers=1)
    assert again == auto and rep.from_cache == len(jobs)           # auto resolved to blazeface: the same entries
    haar, rep = prepare_clips(jobs, AVConfig(frames=4, face_size=32, detector="haar"), tmp_path / "cache", workers=1)
    assert rep.from_cache == 0 and set(haar.values()).isdisjoint(auto.values())


def test_progress_prints_plain_lines_when_not_a_terminal():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=120)
    with progress(console, "preprocess train", 20) as advance:
        for _ in range(20):
            advance()
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("preprocess train: 2/20") and lines[-1].startswith("preprocess train: 20/20")
    assert len(lines) == 10


def test_problem_summary_counts_and_names_the_first_files_and_the_record_keeps_all():
    lines = [f"/data/EXPR/Train_Set/v{i}.txt:{i + 2}: label 8 outside -1..7; line ignored" for i in range(5)]
    text = summary("train", lines, {"bad_lines": 5, "bad_videos": 0})
    assert text.startswith("train: 5 problem(s) (bad_lines 5), e.g. v0.txt:2, v1.txt:3, v2.txt:4 and 2 more")
    assert record(lines, {"bad_lines": 5})["lines"] == lines and summary("val", []) == "val: no problems"


def test_nms_keeps_the_best_of_each_overlapping_group_in_both_forms():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 5], [50, 50, 60, 60]], np.float64)
    scores = np.array([0.8, 0.9, 0.7, 0.6])
    # IoU (areas w*h): box 1 overlaps box 0 by 81/119 = 0.68, box 2 overlaps box 1 by 36/114 = 0.32
    assert detectors._nms(boxes, scores, 0.5).tolist() == [1, 2, 3]
    assert detectors._nms(boxes, scores, 0.3).tolist() == [1, 3]
    # "min" form (+1 pixel areas, over the smaller box): box 2 lies inside box 0
    assert detectors._nms(boxes, scores, 0.7, "min").tolist() == [1, 3]
    assert detectors._nms(boxes[:0], scores[:0], 0.5).tolist() == []


def test_the_nets_run_through_the_runtimes_layer():
    from edgeaffect.runtimes import Runtime

    det = MtcnnFaceDetector(threads=1)
    for net in det.nets.values():
        assert isinstance(net.runtime, Runtime) and net.runtime.name == det.runtime
        assert net.runtime.precision == "fp32" and net.runtime.executed_precision == "fp32"


def test_mtcnn_finds_other_real_people():
    """Grace Hopper (matplotlib's sample photo) and the cameraman (skimage; grey, small, looking down)."""
    from skimage import data

    photos = {"cameraman": cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2BGR)}
    if importlib.util.find_spec("matplotlib") is not None:
        import matplotlib.cbook

        photos["grace_hopper"] = cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    print("photos:", sorted(photos))
    det = MtcnnFaceDetector()
    for name, img in photos.items():
        faces = det.detect_faces(img)
        assert len(faces) == 1 and faces[0].score > 0.9, name
        (lx, _), (rx, _), (nx, _) = faces[0].landmarks[:3]
        assert lx < nx < rx, name
