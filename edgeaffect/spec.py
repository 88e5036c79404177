"""Model and tensor specifications that travel with every artifact.

A :class:`ModelSpec` says what a model eats and returns (named tensors with a
symbolic batch), what its outputs mean (label names, activation) and how raw
media must be preprocessed.  It is stored in ``manifest.json`` and in the ONNX
``metadata_props`` so that an exported file is self-describing.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np

BATCH = "B"

_DTYPES = {"float32", "float16", "int64", "int32", "uint8", "bool"}


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor; ``shape`` entries are ints or symbolic names (``"B"`` = batch)."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(self.shape))
        if self.dtype not in _DTYPES:
            raise ValueError(f"unsupported dtype {self.dtype!r} for tensor {self.name!r}")

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def concrete(self, batch: int) -> tuple[int, ...]:
        """The shape with the batch filled in (other symbols are not allowed here)."""
        out = []
        for d in self.shape:
            if d == BATCH:
                out.append(batch)
            elif isinstance(d, str):
                raise ValueError(f"tensor {self.name!r} has symbolic dim {d!r} besides the batch")
            else:
                out.append(int(d))
        return tuple(out)

    def matches(self, shape: Sequence[int]) -> bool:
        if len(shape) != len(self.shape):
            return False
        return all(isinstance(d, str) or int(d) == int(s) for d, s in zip(self.shape, shape))

    def describe(self) -> str:
        dims = ",".join(str(d) for d in self.shape)
        return f"{self.name}[{dims}] {self.dtype}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TensorSpec":
        return cls(d["name"], tuple(d["shape"]), d.get("dtype", "float32"))


@dataclass(frozen=True)
class ModelSpec:
    """Everything a consumer needs to feed a model and read its outputs.

    ``activation`` is what must still be applied to the raw outputs to get scores:
    ``"none"`` when the graph already ends in one (e.g. the ERI sigmoid),
    ``"softmax"``/``"sigmoid"`` for logits.  ``metric`` names the task metric
    (``pearson``, ``accuracy``, ``ccc``, ``macro_f1``, ``roc_auc_micro``).
    """

    name: str
    task: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    labels: tuple[str, ...]
    activation: str = "none"
    metric: str = ""
    preprocessing: Mapping[str, Any] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "labels", tuple(self.labels))
        if self.activation not in {"none", "softmax", "sigmoid"}:
            raise ValueError(f"unknown activation {self.activation!r}")

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def with_updates(self, **kw) -> "ModelSpec":
        return replace(self, **kw)

    def dummy_inputs(self, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
        """Random feeds of the right shapes; for shape checks only, never for calibration."""
        rng = np.random.default_rng(seed)
        feeds = {}
        for t in self.inputs:
            shape = t.concrete(batch)
            if np.issubdtype(t.np_dtype, np.floating):
                feeds[t.name] = rng.random(shape, dtype=np.float32).astype(t.np_dtype)
            else:
                feeds[t.name] = rng.integers(0, 2, size=shape).astype(t.np_dtype)
        return feeds

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"] = [t.to_dict() for t in self.inputs]
        d["outputs"] = [t.to_dict() for t in self.outputs]
        d["labels"] = list(self.labels)
        d["preprocessing"] = dict(self.preprocessing)
        d["config"] = dict(self.config)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelSpec":
        return cls(
            name=d["name"],
            task=d["task"],
            inputs=tuple(TensorSpec.from_dict(t) for t in d["inputs"]),
            outputs=tuple(TensorSpec.from_dict(t) for t in d["outputs"]),
            labels=tuple(d.get("labels", ())),
            activation=d.get("activation", "none"),
            metric=d.get("metric", ""),
            preprocessing=dict(d.get("preprocessing", {})),
            config=dict(d.get("config", {})),
        )

    @classmethod
    def from_json(cls, s: str) -> "ModelSpec":
        return cls.from_dict(json.loads(s))
