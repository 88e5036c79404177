"""Open a model for the demo behind the runtime interface: ``infer(dict) -> dict`` keyed by tensor name.

A run directory or exported file goes through ``edgeaffect.runtimes.load``
when that runtime is asked for; ``runtime="torch"`` (and the fallback when
no runtime package is present) wraps the checkpoint's torch model in the same
dict-in/dict-out shape, so the demo never needs per-model code.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import EdgeAffectError
from ..spec import ModelSpec


class TorchRunner:
    """The checkpoint's torch model with NumPy dict I/O (single thread: the demo shares a small CPU)."""

    def __init__(self, run_dir: Path, threads: int = 1):
        import torch

        from .. import runs

        torch.set_num_threads(max(1, threads))
        self.run = runs.load_run(run_dir)
        self.spec: ModelSpec = self.run.spec
        self.model = runs.load_model(self.run.checkpoint)
        self.inputs, self.outputs = self.spec.inputs, self.spec.outputs
        self.name = "torch"

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        missing = [n for n in self.spec.input_names if n not in feeds]
        if missing:
            raise EdgeAffectError(f"missing model inputs {missing}; the model takes {self.spec.input_names}")
        with torch.inference_mode():
            out = self.model(*(torch.from_numpy(np.asarray(feeds[n], np.float32)) for n in self.spec.input_names))
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return {name: o.numpy() for name, o in zip(self.spec.output_names, outs)}

    def close(self) -> None:
        self.model = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _spec_of(path: Path, rt) -> ModelSpec:
    spec = getattr(rt, "spec", None)
    if isinstance(spec, ModelSpec):
        return spec
    if isinstance(spec, dict):
        return ModelSpec.from_dict(spec)
    for d in (path, *path.parents[:3]):
        if (d / "manifest.json").exists():
            from ..runs import load_run

            return load_run(d).spec
    raise EdgeAffectError(f"cannot find the model spec for {path} (no manifest.json beside it, no ONNX metadata)")


def open_model(path: str | Path | None, runtime: str = "torch", precision: str = "fp32", threads: int = 1):
    """(runner, spec) for a run directory / exported artifact; ``None`` means the default zoo model."""
    from .. import zoo

    path = Path(path) if path is not None else zoo.default_run()
    if not path.exists():
        raise EdgeAffectError(f"no model at {path}: give a run directory, an exported model, or import one with `edgeaffect zoo import fer2013`")
    if runtime == "torch":
        if precision != "fp32":
            raise EdgeAffectError("the torch runtime runs FP32 only; use --runtime onnxruntime or openvino for --precision int8")
        if not path.is_dir():
            raise EdgeAffectError(f"--runtime torch needs a run directory, got the file {path}")
        r = TorchRunner(path, threads)
        return r, r.spec
    try:
        from .. import runtimes
        load = runtimes.load
    except (ImportError, AttributeError):
        raise EdgeAffectError(f"runtime {runtime!r} is not available in this build; use --runtime torch") from None
    try:
        rt = load(path, runtime=runtime, precision=precision)
    except TypeError:
        rt = load(path, runtime=runtime)
    return rt, _spec_of(path, rt)
