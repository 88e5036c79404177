"""A tiny two-input model (video-like + audio-like) registered for tests only, and a run folder maker."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgeaffect.errors import DataError
from edgeaffect.tasks.metrics import mean_pearson
from edgeaffect.tasks import Task, register_task

from edgeaffect.models.registry import register_model
from edgeaffect.spec import BATCH, ModelSpec, TensorSpec

TINY = "tiny_av_test"
TINY_TASK = "tiny_av_task"


class TinyTask(Task):
    """Reads ``<root>/<split>.npz`` (video, audio, target); scored by mean Pearson like ERI."""

    name = TINY_TASK
    metric = "pearson"

    def dataset(self, root, split, spec, **kw):
        path = Path(root) / f"{split}.npz"
        if not path.exists():
            raise DataError(f"no {split} split at {path}")
        data = dict(np.load(path))
        n = len(data["target"])
        return [{k: v[i] for k, v in data.items()} for i in range(n)]

    def metrics(self, outputs, target):
        return {"pearson": mean_pearson(outputs["intensities"], target)}


register_task(TinyTask())


class TinyAV(nn.Module):
    """video [B,2,3,8,8] + audio [B,4,6] -> 3 sigmoid intensities; conv, pooling, linear, concat."""

    def __init__(self, hidden: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(3, hidden, 3, padding=1)
        self.audio = nn.Conv1d(4, hidden, 3, padding=1)
        self.head = nn.Linear(2 * hidden, 3)
        self.spec = ModelSpec(
            name=TINY, task=TINY_TASK,
            inputs=(TensorSpec("video", (BATCH, 2, 3, 8, 8)), TensorSpec("audio", (BATCH, 4, 6))),
            outputs=(TensorSpec("intensities", (BATCH, 3)),),
            labels=("a", "b", "c"), activation="none", metric="pearson", config={"hidden": hidden})

    def forward(self, video, audio):
        b, t = video.shape[0], video.shape[1]
        v = torch.relu(self.conv(video.reshape(b * t, 3, 8, 8))).mean((2, 3)).reshape(b, t, -1).mean(1)
        a = torch.relu(self.audio(audio)).mean(2)
        return torch.sigmoid(self.head(torch.cat([v, a], 1)))


@register_model(TINY, task=TINY_TASK)
def tiny_av_test(**kw) -> TinyAV:
    """Tiny two-input test model."""
    torch.manual_seed(kw.pop("seed", 0))
    return TinyAV(**kw).eval()


def make_dataset(root: Path, n: int = 12, seed: int = 0) -> Path:
    """A val split whose targets the tiny model's own outputs (plus noise) predict, so the metric is real."""
    model = tiny_av_test()
    feeds = model.spec.dummy_inputs(batch=n, seed=seed)
    with torch.no_grad():
        out = model(*(torch.from_numpy(feeds[k]) for k in model.spec.input_names)).numpy()
    noise = np.random.default_rng(seed).normal(0, 1, out.shape) * (0.1 * out.std(0) + 1e-6)
    target = (out + noise).astype(np.float32)
    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / "val.npz", target=target, **feeds)
    return root


def make_run(root: Path, data: Path | None = None, **overrides) -> Path:
    """A run folder (checkpoint.pt + manifest.json) holding the tiny model; ``data`` is its dataset root."""
    from edgeaffect.runs import MANIFEST, save_checkpoint

    model = tiny_av_test(**overrides)
    root.mkdir(parents=True, exist_ok=True)
    save_checkpoint(root / "checkpoint.pt", model, TINY, overrides)
    manifest = {"spec": model.spec.to_dict()}
    if data is not None:
        manifest["data"] = {"root": str(data)}
    (root / MANIFEST).write_text(json.dumps(manifest))
    return root


def make_exported_run(base: Path) -> Path:
    """A tiny run with its dataset under ``base``, exported to ONNX and OpenVINO (the legacy exporter: fast)."""
    from edgeaffect.export import export_run

    run = make_run(base / "run", data=make_dataset(base / "data"))
    export_run(run, ["onnx", "openvino"], exporter="legacy")
    return run
