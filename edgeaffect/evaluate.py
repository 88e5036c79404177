"""How a model is evaluated: one samples object, one ``predict``, one ``score``, one ``compare``.

Export parity, the bf16/fp16 and INT8 accuracy guards, bench and eval all go
through here, so one model on one split prints one metric, on a number of
samples every report names.  Torch-free: a runtime is anything with
``infer({name: array}) -> {name: array}`` (every :class:`~edgeaffect.runtimes.base.Runtime`,
the torch one included).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .errors import EdgeAffectError
from .runs import run_of
from .spec import ModelSpec
from .tasks import get_task

DEFAULT_LIMIT = 256
"""Samples export parity, the accuracy guards and bench score by default (evenly spaced over the split; the
whole split when it is smaller): one number per model, at a memory cost a small board can carry."""

SCORED_BATCH = 8
"""The batch every score is computed in (eval, bench, export parity, the guards), whatever batch is timed: an
artifact's numerics can depend on the batch it is compiled for (an OpenVINO IR reshaped static, its bf16
remainder on another kernel), so one artifact gives one metric only when it is always scored in one batch.
A static-batch artifact is scored in its own batch."""


@dataclass
class Samples:
    """Stacked samples of a split: ``feeds`` by input name, ``target`` (None for random inputs).

    ``source`` says which split, which items and how many ("val split of data/eri (24 of 48 samples,
    evenly spaced)"); every report that prints a number computed on these samples prints it too.
    """

    feeds: dict[str, np.ndarray]
    target: np.ndarray | None
    source: str
    split: str = ""
    total: int = 0          # samples in the split (0: random inputs)

    def __len__(self) -> int:
        return len(next(iter(self.feeds.values())))

    def describe(self) -> dict[str, Any]:
        return {"samples": self.source, "n": len(self), "split": self.split, "of": self.total}

    def batches(self, batch: int, pad: bool = False) -> Iterable[tuple[dict[str, np.ndarray], int]]:
        """(feeds, kept) per batch of ``batch``; ``pad`` fills the last batch by cycling (static shapes)."""
        n = len(self)
        for start in range(0, n, batch):
            idx = np.arange(start, start + batch) % n if pad else np.arange(start, min(start + batch, n))
            yield {k: np.ascontiguousarray(v[idx]) for k, v in self.feeds.items()}, min(batch, n - start)

    def head(self, batch: int) -> dict[str, np.ndarray]:
        """``batch`` samples (cycled when the split is smaller): a timing feed of real data."""
        idx = np.arange(batch) % len(self)
        return {k: np.ascontiguousarray(v[idx]) for k, v in self.feeds.items()}


def spread_indices(total: int, limit: int | None) -> np.ndarray:
    """``limit`` indices spread evenly over ``range(total)`` (all of them without a limit).

    Evenly spaced, not the first ``limit``: splits are stored video by video, so
    their head is a handful of clips, and a metric on it says little about the split.
    """
    if limit is None or limit >= total:
        return np.arange(total)
    return np.unique(np.linspace(0, total - 1, max(int(limit), 1)).round().astype(np.int64))


def from_dataset(dataset, spec: ModelSpec, split: str, where: str, limit: int | None = DEFAULT_LIMIT) -> Samples:
    """Stack ``limit`` evenly spaced items (all without a limit) of a task dataset into :class:`Samples`."""
    total = len(dataset)
    if total == 0:
        raise EdgeAffectError(f"the {split} split of {where} is empty; there is nothing to score")
    index = spread_indices(total, limit)
    return _stack(dataset, index, spec, split, where, total)


def chunks(dataset, spec: ModelSpec, split: str, where: str, size: int = DEFAULT_LIMIT) -> Iterable[Samples]:
    """The whole split as consecutive :class:`Samples` of ``size`` items: a full evaluation in bounded memory."""
    total = len(dataset)
    if total == 0:
        raise EdgeAffectError(f"the {split} split of {where} is empty; there is nothing to score")
    for start in range(0, total, size):
        yield _stack(dataset, np.arange(start, min(start + size, total)), spec, split, where, total)


def _stack(dataset, index: np.ndarray, spec: ModelSpec, split: str, where: str, total: int) -> Samples:
    items = [dataset[int(i)] for i in index]
    feeds = {t.name: np.stack([np.asarray(it[t.name]) for it in items]).astype(t.np_dtype) for t in spec.inputs}
    target = np.stack([np.asarray(it["target"]) for it in items])
    count = f"{len(index)} samples" if len(index) == total else f"{len(index)} of {total} samples, evenly spaced"
    return Samples(feeds, target, f"{split} split of {where} ({count})", split, total)


def load_samples(spec: ModelSpec, data_root: str | os.PathLike | None, split: str = "val",
                 limit: int | None = DEFAULT_LIMIT, seed: int = 0, dataset_kwargs: Mapping[str, Any] | None = None) -> Samples:
    """Real samples of the task's dataset split; random inputs (said so in ``source``) only when no dataset
    is named at all.  A dataset that is named (``--data`` or the run's record) but cannot be read is an
    error: a metric on random inputs would pass for one on the split.

    ``dataset_kwargs`` are the reader options the run recorded (``Run.dataset_kwargs``), so a run
    trained on a custom split is checked on that split.
    """
    if data_root is None:
        return Samples(spec.dummy_inputs(batch=limit or 16, seed=seed), None,
                       "random inputs (no dataset recorded for this run; pass --data for a metric)")
    if not Path(data_root).exists():
        raise EdgeAffectError(f"dataset {data_root} not found; pass --data with the {spec.task} dataset")
    try:
        ds = get_task(spec.task).dataset(Path(data_root), split, spec, **(dataset_kwargs or {}))
    except EdgeAffectError as exc:
        raise EdgeAffectError(f"cannot read the {split} split of {data_root} for {spec.name} ({spec.task}): {exc}") from None
    return from_dataset(ds, spec, split, str(data_root), limit)


def predict(runtime, samples: Samples, batch: int = SCORED_BATCH, transform=None) -> dict[str, np.ndarray]:
    """Outputs of ``runtime`` for every sample, in batches of ``batch``.

    The last batch is padded by cycling, so static-shape artifacts (a fixed-batch IR or engine) score
    the same samples as dynamic ones.  ``transform(feeds) -> feeds`` corrupts inputs (``eval --corrupt``).
    """
    parts: dict[str, list[np.ndarray]] = {}
    for feeds, keep in samples.batches(batch, pad=True):
        for k, v in runtime.infer(transform(feeds) if transform else feeds).items():
            parts.setdefault(k, []).append(np.asarray(v, np.float32)[:keep])
    return {k: np.concatenate(v) for k, v in parts.items()}


def predict_split(runtime, dataset, spec: ModelSpec, split: str, where: str, batch: int = SCORED_BATCH,
                  transforms=(None,)) -> tuple[list[dict[str, np.ndarray]], np.ndarray]:
    """Outputs over a whole split (one set per feeds transform) and its targets, read in bounded chunks."""
    outputs: list[dict[str, list[np.ndarray]]] = [{} for _ in transforms]
    targets = []
    for part in chunks(dataset, spec, split, where):
        targets.append(part.target)
        for i, transform in enumerate(transforms):
            for k, v in predict(runtime, part, batch, transform=transform).items():
                outputs[i].setdefault(k, []).append(v)
    return [{k: np.concatenate(v) for k, v in o.items()} for o in outputs], np.concatenate(targets)


def score(spec: ModelSpec, outputs: Mapping[str, np.ndarray], target: np.ndarray | None) -> float | None:
    """The task's main metric (``spec.metric``) on ``outputs``; None without targets."""
    if target is None:
        return None
    task = get_task(spec.task)
    return float(task.metrics(dict(outputs), target)[task.metric])


def drop_points(spec: ModelSpec, reference: float, value: float) -> float:
    """Metric points ``value`` lost against ``reference`` (positive = worse), in the task's own points."""
    task = get_task(spec.task)
    return (1.0 if task.higher_is_better else -1.0) * (reference - value) / task.metric_scale


def compare(spec: ModelSpec, reference: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """How far ``outputs`` agree with ``reference`` (torch fp32), in the terms of the task's outputs.

    ``agreement`` is the share of same top-1 classes (softmax), the share of same per-label decisions
    (sigmoid, multi-label), or the Pearson r of the values (regression, with Spearman's rank r beside it).
    ``max_abs_diff`` is over every output value.
    """
    ref = {k: np.asarray(v, np.float64).reshape(len(v), -1) for k, v in reference.items()}
    out = {k: np.asarray(outputs[k], np.float64).reshape(len(ref[k]), -1) for k in ref}
    diff = max((float(np.abs(out[k] - ref[k]).max()) if ref[k].size else 0.0) for k in ref)
    result: dict[str, Any] = {"max_abs_diff": diff if np.isfinite(diff) else float("inf")}
    if spec.activation == "softmax":
        hits = np.all([out[k].argmax(1) == ref[k].argmax(1) for k in ref], axis=0)
        result.update(kind="top-1", agreement=float(hits.mean()))
    elif spec.activation == "sigmoid":
        same = np.concatenate([((out[k] > 0) == (ref[k] > 0)).ravel() for k in ref])
        result.update(kind="label decisions", agreement=float(same.mean()))
    else:
        pearson = min(_pearson(ref[k].ravel(), out[k].ravel()) for k in ref)
        spearman = min(_pearson(_ranks(ref[k].ravel()), _ranks(out[k].ravel())) for k in ref)
        result.update(kind="pearson", agreement=pearson, spearman=spearman)
    return result


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a ** 2).sum() * (b ** 2).sum()))
    if den == 0.0:  # constant values: they agree only when they are the same
        return 1.0 if np.array_equal(a, b) else 0.0
    return float((a * b).sum() / den)


def _ranks(x: np.ndarray) -> np.ndarray:
    ranks = np.empty(len(x))
    ranks[np.argsort(x, kind="stable")] = np.arange(len(x))
    return ranks


@dataclass
class Evaluation:
    """One runtime on one set of samples: its outputs, the metric, and its agreement with the reference."""

    outputs: dict[str, np.ndarray]
    metric_name: str
    metric: float | None
    samples: str
    n: int
    comparison: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"metric_name": self.metric_name, "metric": self.metric, "samples": self.samples, "n": self.n,
                **self.comparison}


def evaluate(runtime, samples: Samples, spec: ModelSpec, reference: Mapping[str, np.ndarray] | None = None,
             batch: int = SCORED_BATCH) -> Evaluation:
    """Predict, score and (given ``reference`` outputs on the same samples) compare, in one call."""
    outputs = predict(runtime, samples, batch)
    comparison = compare(spec, reference, outputs) if reference is not None else {}
    return Evaluation(outputs, spec.metric, score(spec, outputs, samples.target), samples.source, len(samples),
                      comparison)


# -- one artifact, one number: how every stage opens and scores a model file --------------------------------
def stored_precision(path: str | os.PathLike, runtime: str | None = None) -> str | None:
    """The precision a model file holds: its run manifest's artifact record, else its name in the runtime
    table (``model.int8.xml``), else the file itself (an IR with FakeQuantize is INT8); None when unknown
    (the runtime's own default then decides, e.g. ONNX Runtime reads a QDQ graph as int8)."""
    from .runtimes.registry import get_runtime, runtime_for

    path = Path(path)
    try:
        run = run_of(path)
    except EdgeAffectError:   # an unreadable manifest: refused where files are verified, not by a label lookup
        run = None
    if run is not None:
        record = run.manifest.get("artifacts", {}).get(os.path.relpath(path.resolve(), run.path.resolve()), {})
        if record.get("precision"):
            return str(record["precision"])
    return get_runtime(runtime or runtime_for(path)).read_precision(path)


def scoring_options(runtime: str, precision: str | None, threads: int | None = None,
                    batch: int = SCORED_BATCH) -> dict[str, Any]:
    """Load options of a scored artifact: its precision, compiled for :data:`SCORED_BATCH` where the runtime
    compiles a batch, exactly as bench opens its batch-8 rows."""
    from .runtimes.registry import get_runtime

    opts = get_runtime(runtime).bench_options(precision or "fp32", batch, threads)
    if precision is None:
        opts.pop("precision")
    return opts


def open_scored(path: str | os.PathLike, runtime: str | None = None, precision: str | None = None,
                threads: int | None = None, batch: int = SCORED_BATCH):
    """Open a model file as every stage scores it: the precision it holds (unless one is asked for),
    compiled for :data:`SCORED_BATCH` (see :func:`scoring_options`)."""
    from .runtimes.registry import load, runtime_for

    name = runtime or runtime_for(path)
    precision = precision or stored_precision(path, name)
    return load(path, runtime=name, **scoring_options(name, precision, threads, batch))


def scoring_batch(runtime) -> int:
    """:data:`SCORED_BATCH`, or the artifact's own batch where its first input's batch is static."""
    inputs = getattr(runtime, "inputs", None)
    first = inputs[0].shape[0] if inputs and inputs[0].shape else None
    return first if isinstance(first, int) and first > 0 else SCORED_BATCH


def score_runtime(runtime, samples: Samples, spec: ModelSpec,
                  reference: Mapping[str, np.ndarray] | None = None) -> Evaluation:
    """The one scoring call: ``runtime`` on ``samples`` in :func:`scoring_batch`, scored and compared."""
    return evaluate(runtime, samples, spec, reference, batch=scoring_batch(runtime))


def score_details(spec: ModelSpec, outputs: Mapping[str, np.ndarray], target: np.ndarray | None) -> dict[str, Any]:
    """Per class, label or dimension scores of the task (``Task.details``); {} without targets."""
    if target is None:
        return {}
    return get_task(spec.task).details(dict(outputs), target, tuple(spec.labels))


DEFAULT_SPLITS = ("test", "val")
"""The split eval scores when none is named: the first the dataset has (Aff-Wild2 VA/EXPR have no test split)."""


def open_split(spec: ModelSpec, root: Path, split: str | None, dataset_kwargs: Mapping[str, Any] | None = None,
               **reader: Any) -> tuple[Any, str, str]:
    """(dataset, split, note): ``split``'s dataset, or with ``split`` None the first of :data:`DEFAULT_SPLITS`
    the dataset has; ``note`` says in one line which split was chosen instead of test, and why ("" otherwise)."""
    task = get_task(spec.task)
    if not Path(root).exists():
        raise EdgeAffectError(f"dataset {root} not found; pass --data with the {spec.task} dataset")
    kw = {**(dataset_kwargs or {}), **reader}
    if split is not None:
        return task.dataset(Path(root), split, spec, **kw), split, ""
    why = ""
    for i, name in enumerate(DEFAULT_SPLITS):
        try:
            dataset = task.dataset(Path(root), name, spec, **kw)
        except EdgeAffectError as exc:
            if i == len(DEFAULT_SPLITS) - 1:
                raise EdgeAffectError(f"{root} has neither a test nor a val split to score ({exc}); "
                                      f"name one with --split") from None
            why = str(exc).rstrip(".")
            continue
        if len(dataset) == 0 and i < len(DEFAULT_SPLITS) - 1:
            why = f"its {name} split is empty"
            continue
        return dataset, name, (f"scoring the {name} split: {root} has no usable test split ({why})" if why else "")
    raise AssertionError("unreachable")
