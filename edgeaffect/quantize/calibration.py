"""Calibration data: real preprocessed samples from a task's split, stratified across labels.

One :class:`CalibrationSet` feeds every back end (ONNX Runtime's
``CalibrationDataReader``, NNCF's ``nncf.Dataset``, TensorRT's calibrator), so
the three INT8 models see exactly the same inputs.  Random tensors are never
used: activation ranges from noise do not match real faces and voices.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..errors import EdgeAffectError
from ..spec import ModelSpec
from ..tasks import get_task
from .config import MIN_CALIB_SAMPLES


@dataclass
class CalibrationSet:
    """Selected samples as feeds of batch 1 (``{input_name: array[1, ...]}``) plus provenance."""

    feeds: list[dict[str, np.ndarray]]
    indices: list[int]
    split: str
    strata: dict[str, int] = field(default_factory=dict)
    available: int = 0

    def __len__(self) -> int:
        return len(self.feeds)

    @property
    def input_names(self) -> list[str]:
        return list(self.feeds[0])

    def batches(self, batch_size: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """Stacked feeds of ``batch_size`` (the last one may be smaller)."""
        for i in range(0, len(self.feeds), batch_size):
            chunk = self.feeds[i:i + batch_size]
            yield {k: np.concatenate([f[k] for f in chunk]) for k in chunk[0]}

    def fingerprint(self) -> str:
        """sha256 over the exact calibration tensors: a cache built from other data must not be reused."""
        h = hashlib.sha256()
        for f in self.feeds:
            for k in sorted(f):
                h.update(k.encode())
                h.update(np.ascontiguousarray(f[k]).tobytes())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        return {"samples": len(self), "split": self.split, "available": self.available,
                "strata": self.strata, "fingerprint": self.fingerprint()[:16]}


def as_feed(item: Mapping[str, Any], names: Sequence[str]) -> dict[str, np.ndarray]:
    """A dataset item -> a batch-1 feed of float32/int arrays keyed by input name."""
    feed = {}
    for n in names:
        if n not in item:
            raise EdgeAffectError(f"dataset items have no input {n!r} (keys: {', '.join(item)})")
        a = np.asarray(item[n].numpy() if hasattr(item[n], "numpy") else item[n])
        feed[n] = a[None].astype(np.float32 if a.dtype.kind == "f" else a.dtype, copy=False)
    return feed


def dataset_targets(dataset) -> np.ndarray:
    """Targets of every item (uses ``dataset.targets`` when the dataset exposes it)."""
    t = getattr(dataset, "targets", None)
    if t is not None:
        return np.asarray(t)
    return np.stack([np.asarray(dataset[i]["target"]) for i in range(len(dataset))])


def stratified_indices(groups: np.ndarray, n: int, seed: int = 0) -> tuple[list[int], dict[str, int]]:
    """``n`` indices spread over ``groups`` in proportion to their sizes (every group gets >= 1 if n allows)."""
    rng = np.random.default_rng(seed)
    groups = np.asarray(groups)
    keys, counts = np.unique(groups, return_counts=True)
    n = min(n, len(groups))
    share = counts / counts.sum() * n
    take = np.floor(share).astype(int)
    if n >= len(keys):
        take = np.maximum(take, 1)
    # hand out what rounding left, largest remainders first, never beyond a group's size
    while take.sum() < n:
        order = np.argsort(-(share - take))
        for j in order:
            if take[j] < counts[j]:
                take[j] += 1
                break
    while take.sum() > n:
        take[np.argmax(take)] -= 1
    chosen: list[int] = []
    strata = {}
    for key, k in zip(keys, take):
        members = np.flatnonzero(groups == key)
        pick = rng.choice(members, size=min(k, len(members)), replace=False)
        chosen.extend(int(i) for i in pick)
        strata[str(key)] = int(len(pick))
    return sorted(chosen), strata


def check_split_size(dataset, split: str, min_samples: int = MIN_CALIB_SAMPLES) -> int:
    """The number of samples of ``dataset``; one clear error if it is below the calibration floor."""
    available = len(dataset)
    if available < min_samples:
        raise EdgeAffectError(f"the {split} split has only {available} samples; calibration needs at least {min_samples}")
    return available


def select_calibration(task, dataset, spec: ModelSpec, n: int, *, seed: int = 0, split: str = "train",
                       min_samples: int = MIN_CALIB_SAMPLES) -> CalibrationSet:
    """Pick ``n`` real samples of ``dataset`` stratified by ``task.stratify_key``."""
    available = check_split_size(dataset, split, min_samples)
    targets = dataset_targets(dataset)
    idx, strata = stratified_indices(task.stratify_key(targets), n, seed)
    feeds = [as_feed(dataset[i], spec.input_names) for i in idx]
    return CalibrationSet(feeds, idx, split, strata, available)


def load_split(run, split: str, data_root: str | Path | None = None):
    """The task and the dataset of ``split`` for a run (data root from the manifest unless given)."""
    spec = run.spec
    root = Path(data_root) if data_root else run.data_dir
    if root is None:
        raise EdgeAffectError(f"{run.path} records no dataset root; pass --data")
    if not Path(root).exists():
        raise EdgeAffectError(f"dataset root {root} (from the run manifest) does not exist; pass --data")
    task = get_task(spec.task)
    return task, task.dataset(Path(root), split, spec, **run.dataset_kwargs)
