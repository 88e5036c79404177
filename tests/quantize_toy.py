"""A tiny two-input classification task and model for the quantize tests (registered on import).

Class k of 4 is carried by a spatial pattern in ``image`` and a tone in ``audio``,
so a few epochs learn it and INT8 effects on accuracy are measurable.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgeaffect.models.layers import DepthwiseSeparable, conv_bn_act
from edgeaffect.models.registry import register_model
from edgeaffect.runs import save_checkpoint
from edgeaffect.fileio import write_json
from edgeaffect.spec import BATCH, ModelSpec, TensorSpec
from edgeaffect.tasks.metrics import accuracy
from edgeaffect.tasks import Task, register_task

N_CLASSES = 4

try:  # the ERI task module lands separately; until then task lookup must not fail on its import
    import edgeaffect.train.eri  # noqa: F401
except ImportError:
    import sys
    import types

    sys.modules["edgeaffect.train.eri"] = types.ModuleType("edgeaffect.train.eri")


def make_data(root: Path, n_train: int = 160, n_val: int = 64, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("val", n_val)):
        y = rng.integers(0, N_CLASSES, n)
        img = rng.normal(0.5, 0.25, (n, 3, 16, 16)).astype(np.float32)
        xs = np.arange(16)
        for i, k in enumerate(y):
            img[i, k % 3, :, :] += 0.25 * np.sin(xs * (k + 1) / 3.0)[None, :]
        t = np.arange(20)
        aud = rng.normal(0, 0.5, (n, 8, 20)).astype(np.float32)
        for i, k in enumerate(y):
            aud[i, 2 * k:2 * k + 2] += 0.6 * np.cos(t * 0.5 * (k + 1))[None, :]
        np.savez(root / f"{split}.npz", image=img, audio=aud.astype(np.float32), target=y)
    return root


class ToyDataset(torch.utils.data.Dataset):
    def __init__(self, path: Path):
        d = np.load(path)
        self.image, self.audio, self.targets = d["image"], d["audio"], d["target"].astype(np.int64)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return {"image": self.image[i], "audio": self.audio[i], "target": self.targets[i]}


class ToyTask(Task):
    name = "qtoy"
    metric = "accuracy"
    metric_scale = 0.01

    def dataset(self, root, split, spec, **kw):
        return ToyDataset(Path(root) / f"{split}.npz")

    def loss(self, outputs, target):
        return nn.functional.cross_entropy(outputs, target)

    def metrics(self, outputs, target):
        return {"accuracy": accuracy(outputs["logits"], target)}

    def stratify_key(self, target):
        return np.asarray(target).astype(int)


register_task(ToyTask())


class ToyNet(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        self.video = nn.Sequential(conv_bn_act(3, width, 3, 1), DepthwiseSeparable(width, 2 * width, 2),
                                   DepthwiseSeparable(2 * width, 2 * width, 1))
        self.audio = nn.Sequential(nn.Conv1d(8, 32, 3, padding=1), nn.BatchNorm1d(32), nn.ReLU(),
                                   nn.Conv1d(32, 32, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(2 * width + 32, 32), nn.ReLU(), nn.Linear(32, N_CLASSES))
        self.spec = ModelSpec("qtoy_net", "qtoy", (TensorSpec("image", (BATCH, 3, 16, 16)), TensorSpec("audio", (BATCH, 8, 20))),
                              (TensorSpec("logits", (BATCH, N_CLASSES)),), tuple("abcd"), activation="softmax",
                              metric="accuracy", config={"width": width})

    def forward(self, image, audio):
        v = self.video(image).mean((2, 3))
        a = self.audio(audio).mean(2)
        return self.head(torch.cat([v, a], 1))


@register_model(task="qtoy")
def qtoy_net(**kw):
    """Toy two-input classifier for the quantize tests."""
    return ToyNet(**kw)


def make_run(tmp: Path, epochs: int = 6) -> Path:
    """Train the toy model briefly and write a run directory (checkpoint + manifest)."""
    from edgeaffect.train.trainer import TrainConfig, Trainer

    torch.set_num_threads(1)
    data = make_data(tmp / "data")
    run = tmp / "run"
    task = ToyTask()
    model = ToyNet()
    spec = model.spec
    tr = Trainer(model, task, task.dataset(data, "train", spec), task.dataset(data, "val", spec),
                 TrainConfig(epochs=epochs, batch_size=16, lr=3e-3), run / "stages" / "train")
    res = tr.fit()
    save_checkpoint(run / "checkpoint.pt", model, "qtoy_net", {})
    write_json(run / "manifest.json", {"spec": spec.to_dict(), "data": {"root": str(data)}, "metrics": res["best"]})
    return run
