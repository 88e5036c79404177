import numpy as np
import pytest

from edgeaffect.data.faces import HaarFaceDetector, crop_face, face_crops, square_box


def test_haar_finds_the_real_face_in_astronaut():
    skimage_data = pytest.importorskip("skimage.data")
    import cv2

    img = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    boxes = HaarFaceDetector().detect(img)
    assert boxes, "no face found"
    x, y, w, h = boxes[0]
    # Eileen Collins' face is around x 170-260, y 50-160 in the 512x512 image
    assert 140 < x + w / 2 < 280 and 40 < y + h / 2 < 180 and 60 < w < 180


def test_square_box_stays_inside_the_frame():
    for box in [(0, 0, 50, 80), (90, 90, 40, 40), (10, 70, 30, 30)]:
        x, y, w, h = square_box(box, 0.3, (100, 120))
        assert w == h and x >= 0 and y >= 0 and x + w <= 120 and y + h <= 100


def test_face_crops_reuses_previous_box_and_reports_count():
    class Every2nd:
        def __init__(self):
            self.i = 0

        def detect(self, f):
            self.i += 1
            return [(10, 10, 20, 20)] if self.i % 2 == 0 else []

    frames = np.random.default_rng(0).integers(0, 255, (5, 64, 64, 3), dtype=np.uint8)
    crops, n = face_crops(frames, Every2nd(), 32)
    assert n == 2 and crops.shape == (5, 32, 32, 3)
    # frame 0 has no detection and takes the first later box: same crop as frame 1 would use
    assert np.array_equal(crops[0], crop_face(frames[0], (10, 10, 20, 20), 32))
    empty, n0 = face_crops(frames, type("N", (), {"detect": lambda s, f: []})(), 32)
    assert n0 == 0 and len(empty) == 0
