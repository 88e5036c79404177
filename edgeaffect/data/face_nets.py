"""What every bundled face-detector net shares: the runtime it runs on (measured order, one line when none is
installed), the net itself through :mod:`edgeaffect.runtimes`, and the :class:`Face` it reports.

Kept apart from :mod:`.detectors` (which picks a detector by name) so each detector module
(:mod:`.blazeface`, MTCNN in :mod:`.detectors`) builds on it without importing the other.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EdgeAffectError
from ..runtimes.registry import available, load
from .faces import Box

# The runtimes a detector's bundled ONNX nets run on, fastest first as measured on the same frames
# (benchmarks/results/2026-12-07-detectors-amd-epyc.md): OpenVINO ran MTCNN's nets 1.3-1.7x faster,
# ONNX Runtime ran BlazeFace's faster.
RUNTIME_ORDER = {"MTCNN": ("openvino", "onnxruntime"), "BlazeFace": ("onnxruntime", "openvino")}


@dataclass(frozen=True)
class Face:
    box: Box                      # x, y, w, h in pixels
    score: float
    landmarks: np.ndarray         # [5, 2] x, y: left eye, right eye, nose, left mouth, right mouth


def installed_runtime(files: list[Path], order: tuple[str, ...] = RUNTIME_ORDER["MTCNN"]) -> str | None:
    """The first runtime of ``order`` that the runtime table finds installed (probed without importing), or
    None; also None when a bundled file is missing."""
    if not all(Path(f).is_file() for f in files):
        return None
    installed = available()
    return next((r for r in order if r in installed), None)


def net_runtime(detector: str, runtime: str | None, default: str | None) -> str:
    """The runtime ``detector``'s nets run on: ``runtime`` when asked (one of its measured order), else
    ``default`` (the first installed); one line when there is none."""
    order = RUNTIME_ORDER[detector]
    runtime = runtime or default
    if runtime is None:
        raise EdgeAffectError(f"the {detector} face detector needs {' or '.join(sorted(order))}: "
                              "pip install 'edgeaffect[onnxruntime]' (or use --detector haar)")
    if runtime not in order:
        raise EdgeAffectError(f"{detector} runs on {' or '.join(order)}, not {runtime!r}")
    return runtime


class DetectorNet:
    """One detector net through our runtimes (fp32 unless told): ``net(image) -> outputs`` in the ONNX
    file's output order."""

    def __init__(self, path: Path, runtime: str, threads: int | None, precision: str = "fp32"):
        self.runtime = load(path, runtime=runtime, precision=precision,
                            **({"threads": int(threads)} if threads else {}))
        self.outputs = [t.name for t in self.runtime.outputs]

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        out = self.runtime.infer({"image": x})
        return [out[n] for n in self.outputs]
