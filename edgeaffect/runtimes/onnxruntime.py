"""ONNX Runtime: CPU everywhere, CUDA / TensorRT execution providers where installed."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import EdgeAffectError
from ..spec import TensorSpec
from .base import Runtime, spec_from_metadata, symbolic_shape

_ORT_DTYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64",
    "tensor(int32)": "int32", "tensor(uint8)": "uint8", "tensor(bool)": "bool",
}
_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
              "tensorrt": "TensorrtExecutionProvider"}


def choose_providers(requested: str | list[str] | None, installed: list[str]) -> list[str]:
    """``"auto"`` (default): TensorRT EP > CUDA > CPU, as installed; else names like ``"cuda,cpu"``."""
    if requested in (None, "auto"):
        order = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
        return [p for p in order if p in installed] or ["CPUExecutionProvider"]
    names = requested.split(",") if isinstance(requested, str) else list(requested)
    out = []
    for n in names:
        p = _PROVIDERS.get(n.strip().lower(), n.strip())
        if p not in installed:
            raise EdgeAffectError(f"onnxruntime: execution provider {p} is not available here "
                                  f"(installed: {', '.join(installed)})")
        out.append(p)
    return out


class OnnxRuntime(Runtime):
    """Options: ``providers`` ("auto", "cpu", "cuda,cpu", ...), ``threads`` (intra-op), ``inter_threads``,
    ``optimization`` ("all", "extended", "basic", "disable")."""

    name = "onnxruntime"

    def _load(self) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        threads = self.options.get("threads")
        if threads:
            so.intra_op_num_threads = int(threads)
        if self.options.get("inter_threads"):
            so.inter_op_num_threads = int(self.options["inter_threads"])
        level = self.options.get("optimization", "all")
        so.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }[level]
        so.log_severity_level = 3
        providers = choose_providers(self.options.get("providers"), ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=so, providers=providers)
        except Exception as exc:  # ORT raises its own exception types for bad files
            raise EdgeAffectError(f"onnxruntime cannot load {self.path}: {str(exc).splitlines()[0]}") from None
        self.providers = self.session.get_providers()
        self._inputs = [self._tensor(a) for a in self.session.get_inputs()]
        self._outputs = [self._tensor(a) for a in self.session.get_outputs()]
        self._output_names = [t.name for t in self._outputs]

    @staticmethod
    def _tensor(arg: Any) -> TensorSpec:
        dtype = _ORT_DTYPES.get(arg.type)
        if dtype is None:
            raise EdgeAffectError(f"onnxruntime: tensor {arg.name!r} has unsupported type {arg.type}")
        return TensorSpec(arg.name, symbolic_shape(arg.shape), dtype)

    def _read_spec(self):
        meta = self.session.get_modelmeta().custom_metadata_map
        return spec_from_metadata(meta) or super()._read_spec()

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self._output_names, feeds)
        return dict(zip(self._output_names, values))

    def _close(self) -> None:
        self.session = None
