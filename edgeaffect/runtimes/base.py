"""The one inference interface every backend implements (Polygraphy-style runners).

A :class:`Runtime` is loaded when constructed, used as a context manager, and
speaks NumPy only: ``infer({name: array}) -> {name: array}``.  ``infer`` checks
every feed against the artifact's own input metadata (names, dtypes, shapes, a
consistent batch) before the backend sees it, so a wrong feed is one clear line
instead of a backend stack trace.  Subclasses implement ``_load``, ``_infer``
and ``_close`` only.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from ..errors import EdgeAffectError
from ..precision import check_precisions, dominant
from ..spec import BATCH, ModelSpec, TensorSpec

SPEC_KEY = "edgeaffect.spec"
"""Key of the ModelSpec JSON in ONNX ``metadata_props`` and OpenVINO ``rt_info``."""


def int8_coverage(layers: Sequence[tuple[str, int]]) -> dict[str, float] | None:
    """``{"layers": share, "macs": share, "float_layers": n}`` of int8 among ``(precision, macs)`` compute layers."""
    if not layers:
        return None
    int8 = [m for p, m in layers if p == "int8"]
    total_macs = sum(m for _, m in layers)
    return {"layers": len(int8) / len(layers),
            "macs": (sum(int8) / total_macs) if total_macs else len(int8) / len(layers),
            "float_layers": len(layers) - len(int8)}


def sidecar_path(path: str | os.PathLike) -> Path:
    """``model.xml`` -> ``model.spec.json``: where the spec sits beside a format that cannot embed it."""
    path = Path(path)
    return path.with_name(f"{path.stem}.spec.json")


def read_sidecar_spec(path: str | os.PathLike) -> ModelSpec | None:
    if not Path(path).name:  # an in-memory model has no file beside which a spec could sit
        return None
    side = sidecar_path(path)
    if side.exists():
        return ModelSpec.from_json(side.read_text(encoding="utf-8"))
    return None


def symbolic_shape(dims: Sequence[Any]) -> tuple[int | str, ...]:
    """Backend dims (ints, -1/None/strings for dynamic) -> TensorSpec dims; a dynamic dim 0 is the batch."""
    out: list[int | str] = []
    for i, d in enumerate(dims):
        if isinstance(d, (int, np.integer)) and int(d) >= 0:
            out.append(int(d))
        else:
            out.append(BATCH if i == 0 else f"d{i}")
    return tuple(out)


def describe_shape(t: TensorSpec) -> str:
    return "[" + ",".join(str(d) for d in t.shape) + "]"


class Runtime:
    """Base class: lifecycle, validation, and the ``inputs``/``outputs`` metadata.

    ``spec`` (the model's :class:`ModelSpec`, read from the artifact when not
    given) carries labels and preprocessing; ``inputs``/``outputs`` describe
    what the loaded artifact itself accepts (a static-batch IR shows its batch).
    """

    name: ClassVar[str] = ""

    def __init__(self, path: str | os.PathLike, spec: ModelSpec | None = None, **options: Any):
        self.path = Path(path)
        if not self.path.exists():
            raise EdgeAffectError(f"{self.name}: no model file at {self.path}")
        self.options = dict(options)
        # the precision asked for (fp32 unless named): subclasses pin their backend to it in _load
        self.precision: str = check_precisions([self.options.get("precision") or self._default_precision()])[0]
        self._closed = False
        self._inputs: list[TensorSpec] = []
        self._outputs: list[TensorSpec] = []
        self.spec: ModelSpec | None = spec
        self.chosen_because = ""   # why ``--runtime auto`` took this runtime, when it timed several (one line)
        self._load()
        if self.spec is None:
            self.spec = self._read_spec()
        self._check_spec_names()

    # --- hooks for subclasses -------------------------------------------------------------
    def _load(self) -> None:
        """Open the artifact; fill ``self._inputs``/``self._outputs``."""
        raise NotImplementedError

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _close(self) -> None:
        """Release backend resources (sessions, device buffers)."""

    def _read_spec(self) -> ModelSpec | None:
        """The ModelSpec embedded in the artifact or in its sidecar json (None if absent)."""
        return read_sidecar_spec(self.path)

    def _default_precision(self) -> str:
        """The precision when none is asked for: fp32, or what the artifact itself stores (INT8 files)."""
        return "fp32"

    def precision_mix(self) -> dict[str, int]:
        """Compute layers per executed precision, where the backend can say (empty where it cannot)."""
        return {}

    def compute_layers(self) -> list[tuple[str, int]]:
        """(executed precision, multiply-accumulates per sample) of each compute layer as the backend runs it,
        read back from the compiled graph; empty where the backend cannot say."""
        return []

    def int8_coverage(self) -> dict[str, float] | None:
        """Share of compute layers and of their MACs that execute in int8 (None where the backend cannot say).

        Counting layers alone flatters a graph whose float islands are its heaviest convs; MACs say where the
        time goes."""
        return int8_coverage(self.compute_layers())

    @property
    def executed_precision(self) -> str:
        """What the compute layers run in: read back from the backend where it can say, else the one asked for."""
        return dominant(self.precision_mix()) or self.precision

    # --- public API -------------------------------------------------------------------------
    @property
    def inputs(self) -> list[TensorSpec]:
        return list(self._inputs)

    @property
    def outputs(self) -> list[TensorSpec]:
        return list(self._outputs)

    @property
    def closed(self) -> bool:
        return self._closed

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one inference; ``feeds`` maps every input name to an array of the right dtype and shape."""
        if self._closed:
            raise EdgeAffectError(f"{self.name} runtime for {self.path.name} is closed")
        checked = self.validate(feeds)
        return self._infer(checked)

    def validate(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check names, dtypes, shapes and a single batch size; returns C-contiguous arrays."""
        if not isinstance(feeds, Mapping):
            raise EdgeAffectError(f"{self.name}: feeds must be a dict of input name -> array, got {type(feeds).__name__}")
        expected = {t.name: t for t in self._inputs}
        extra = sorted(set(feeds) - set(expected))
        if extra:
            raise EdgeAffectError(f"{self.name}: unknown input {extra[0]!r}; the model takes "
                                  + ", ".join(t.describe() for t in self._inputs))
        out: dict[str, np.ndarray] = {}
        batch: tuple[str, int] | None = None
        for t in self._inputs:
            if t.name not in feeds:
                raise EdgeAffectError(f"{self.name}: missing input {t.name!r} (expected shape {describe_shape(t)} {t.dtype})")
            arr = np.asarray(feeds[t.name])
            if arr.dtype != t.np_dtype:
                raise EdgeAffectError(f"{self.name}: input {t.name!r} has dtype {arr.dtype}, expected {t.dtype} "
                                      f"(shape {describe_shape(t)})")
            if not t.matches(arr.shape):
                raise EdgeAffectError(f"{self.name}: input {t.name!r} has shape {list(arr.shape)}, "
                                      f"expected {describe_shape(t)}")
            for d, s in zip(t.shape, arr.shape):
                if d == BATCH:
                    if batch is not None and batch[1] != s:
                        raise EdgeAffectError(f"{self.name}: input {t.name!r} has batch {s} but {batch[0]!r} has "
                                              f"batch {batch[1]}; every input must share the batch B")
                    batch = (t.name, int(s))
            out[t.name] = np.ascontiguousarray(arr)
        return out

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # best effort; explicit close() / with is the contract
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        io = ", ".join(t.describe() for t in self._inputs)
        return f"<{type(self).__name__} {self.path.name} ({io}){' closed' if self._closed else ''}>"

    # --- helpers ----------------------------------------------------------------------------
    def _check_spec_names(self) -> None:
        if self.spec is None:
            return
        have, want = [t.name for t in self._inputs], self.spec.input_names
        if sorted(have) != sorted(want):
            raise EdgeAffectError(f"{self.path.name}: inputs {have} do not match the model spec's {want}")

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.name, "path": str(self.path), "precision": self.precision,
                "inputs": [t.to_dict() for t in self._inputs], "outputs": [t.to_dict() for t in self._outputs]}


def spec_from_metadata(meta: Mapping[str, str]) -> ModelSpec | None:
    raw = meta.get(SPEC_KEY)
    if not raw:
        return None
    try:
        return ModelSpec.from_dict(json.loads(raw))
    except (ValueError, KeyError, TypeError) as exc:
        raise EdgeAffectError(f"malformed {SPEC_KEY} metadata: {exc}") from None
