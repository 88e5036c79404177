"""Run by torchrun in test_ddp.py: train a tiny model with DDP and save each rank's weights."""
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from edgeaffect.spec import ModelSpec, TensorSpec
from edgeaffect.tasks import Task
from edgeaffect.train.trainer import Trainer, TrainConfig, dist_info


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
        self.spec = ModelSpec("tiny", "toy", (TensorSpec("x", ("B", 6)),), (TensorSpec("y", ("B", 2)),), ("a", "b"))

    def forward(self, x):
        return self.net(x)


class Toy(Dataset):
    def __init__(self, n, seed):
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=(n, 6)).astype(np.float32)
        self.y = (self.x[:, :2] * 2).astype(np.float32)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "target": self.y[i]}


class ToyTask(Task):
    name, metric = "toy", "neg_mse"

    def loss(self, out, target):
        return nn.functional.mse_loss(out, target)

    def metrics(self, outputs, target):
        return {"neg_mse": -float(np.mean((outputs["y"] - target) ** 2))}


if __name__ == "__main__":
    out = Path(sys.argv[1])
    torch.manual_seed(0)
    model = Tiny()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(model, ToyTask(), Toy(64, 0), Toy(16, 1), TrainConfig(epochs=2, batch_size=8, lr=1e-2), out / "stage")
    trainer.fit()
    rank, world = dist_info()
    torch.save({"world": world, "init": init, "final": model.state_dict()}, out / f"rank{rank}.pt")
