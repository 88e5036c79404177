"""A tiny two-input model (video-like + audio-like) registered for tests only, and a run folder maker."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from edgeaffect.models.registry import register_model
from edgeaffect.spec import BATCH, ModelSpec, TensorSpec

TINY = "tiny_av_test"


class TinyAV(nn.Module):
    """video [B,2,3,8,8] + audio [B,4,6] -> 3 sigmoid intensities; conv, pooling, linear, concat."""

    def __init__(self, hidden: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(3, hidden, 3, padding=1)
        self.audio = nn.Conv1d(4, hidden, 3, padding=1)
        self.head = nn.Linear(2 * hidden, 3)
        self.spec = ModelSpec(
            name=TINY, task="eri",
            inputs=(TensorSpec("video", (BATCH, 2, 3, 8, 8)), TensorSpec("audio", (BATCH, 4, 6))),
            outputs=(TensorSpec("intensities", (BATCH, 3)),),
            labels=("a", "b", "c"), activation="none", metric="pearson", config={"hidden": hidden})

    def forward(self, video, audio):
        b, t = video.shape[0], video.shape[1]
        v = torch.relu(self.conv(video.reshape(b * t, 3, 8, 8))).mean((2, 3)).reshape(b, t, -1).mean(1)
        a = torch.relu(self.audio(audio)).mean(2)
        return torch.sigmoid(self.head(torch.cat([v, a], 1)))


@register_model(TINY, task="eri")
def tiny_av_test(**kw) -> TinyAV:
    """Tiny two-input test model."""
    torch.manual_seed(kw.pop("seed", 0))
    return TinyAV(**kw).eval()


def make_run(root: Path, **overrides) -> Path:
    """A run folder (checkpoint.pt + manifest.json) holding the tiny model, without a dataset."""
    from edgeaffect.runs import MANIFEST, save_checkpoint

    model = tiny_av_test(**overrides)
    root.mkdir(parents=True, exist_ok=True)
    save_checkpoint(root / "checkpoint.pt", model, TINY, overrides)
    (root / MANIFEST).write_text(json.dumps({"spec": model.spec.to_dict()}))
    return root
