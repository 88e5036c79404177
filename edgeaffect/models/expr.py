"""Edge-sized face expression classifiers for Aff-Wild2 EXPR (ABAW, 8 classes).

The seed system (reference/models.md §3) trains an IR-50 on 112x112 aligned
faces; its code is not public.  For the edge we use the project's own
MobileNetV2 (width-scalable) and ResNet-18 trunks with one Linear head:

    face [B, 3, S, S] RGB in [0, 1] -> (x - 0.5) / 0.5 -> trunk -> global avg pool
        -> dropout -> Linear(out_dim, 8) -> logits [B, 8]   (softmax gives the scores)

The normalisation lives inside the graph, so every runtime feeds the same
``[0, 1]`` RGB tensor that ``spec.preprocessing`` describes.
"""
from __future__ import annotations

from torch import nn

from ..data.affwild2_expr import EXPR_LABELS
from ..spec import BATCH, ModelSpec, TensorSpec
from .backbones import MobileNetV2Features, resnet18_trunk
from .registry import register_model


def expr_preprocessing(face_size: int = 112) -> dict:
    return {"face_size": face_size, "color": "RGB", "scale": "1/255", "layout": "NCHW",
            "aligned": True, "source": "cropped_aligned"}


class ExprNet(nn.Module):
    """A trunk that maps [N, 3, S, S] to [N, out_dim], plus a linear classifier over the 8 classes."""

    def __init__(self, name: str, trunk: nn.Module, out_dim: int, face_size: int, dropout: float, config: dict):
        super().__init__()
        self.trunk = trunk
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(out_dim, len(EXPR_LABELS))
        self.spec = ModelSpec(
            name=name, task="expr",
            inputs=(TensorSpec("face", (BATCH, 3, face_size, face_size)),),
            outputs=(TensorSpec("logits", (BATCH, len(EXPR_LABELS))),),
            labels=EXPR_LABELS, activation="softmax", metric="macro_f1",
            preprocessing=expr_preprocessing(face_size), config={"face_size": face_size, "dropout": dropout, **config})

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
