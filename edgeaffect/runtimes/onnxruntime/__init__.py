"""ONNX Runtime: CPU everywhere, CUDA / TensorRT execution providers where installed.

ONNX Runtime runs the precision stored in the graph (float, float16 or QDQ INT8): ``precision``
defaults to what the file holds, a different request is refused, and fp32 sessions pin off the
bf16 fast-math GEMM (:data:`FP32_CONFIG`).
"""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ... import precision as _precision
from ...errors import EdgeAffectError
from ...lazy import lazy_import
from ...macs import onnx_node_macs
from ...spec import TensorSpec
from ..base import Runtime, spec_from_metadata, symbolic_shape
from ..registry import RuntimeEntry, get_runtime, register_runtime

onnx = lazy_import("onnx", "train")
ort = lazy_import("onnxruntime", "onnxruntime")

# session config entries that pin f32 (the ARM64 bf16 fast-math GEMM is opt-in; pinned anyway)
FP32_CONFIG = {"mlas.enable_gemm_fastmath_arm64_bfloat16": "0"}

_ORT_DTYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64",
    "tensor(int32)": "int32", "tensor(uint8)": "uint8", "tensor(bool)": "bool",
}
_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
              "tensorrt": "TensorrtExecutionProvider"}
_COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
# Kernels of ONNX Runtime's optimized graph: integer ones (QDQ fused) and float ones (fused or not).
_INT8_KERNELS = ("QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QGemm", "QAttention",
                 "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QLinearConvTranspose")
_FLOAT_KERNELS = ("Conv", "ConvTranspose", "MatMul", "Gemm", "FusedConv", "FusedMatMul", "FusedGemm", "NhwcConv",
                  "Attention")


def onnx_precision_mix(path) -> dict[str, int]:
    """Compute nodes of an ONNX graph per precision: int8 (QDQ-fed or integer ops), fp16 (float16
    weights) or fp32."""
    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name: i.data_type for i in graph.initializer}
    dq_outputs = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    counts: dict[str, int] = {}
    for node in graph.node:
        if node.op_type in _INT8_KERNELS or (node.op_type in _COMPUTE_OPS and node.input and node.input[0] in dq_outputs):
            p = "int8"
        elif node.op_type in _COMPUTE_OPS:
            p = "fp16" if any(inits.get(i) == onnx.TensorProto.FLOAT16 for i in node.input) else "fp32"
        else:
            continue
        counts[p] = counts.get(p, 0) + 1
    return counts


def optimized_compute_layers(path) -> list[tuple[str, int]]:
    """(precision, MACs per sample) of each compute kernel in the graph ONNX Runtime's CPU provider runs.

    The file's QDQ pairs say what was asked; only the optimized graph says what runs: a Conv whose
    Q/DQ pattern its fusions do not match stays a float Conv between a DequantizeLinear and a
    QuantizeLinear. Read at the extended level, where the QDQ fusions happen (the next level only adds
    this CPU's memory layouts); fused kernels keep the name of the node they replace."""
    macs = onnx_node_macs(path)
    with tempfile.TemporaryDirectory(prefix="edgeaffect-ort-") as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
        graph = onnx.load(so.optimized_model_filepath, load_external_data=False).graph
    halves = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    out = []
    for node in graph.node:
        if node.op_type in _INT8_KERNELS:
            out.append(("int8", macs.get(node.name, 0)))
        elif node.op_type in _FLOAT_KERNELS:
            out.append(("fp16" if halves.intersection(node.input) else "fp32", macs.get(node.name, 0)))
    return out


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
        if self._mix and self.precision not in self._mix:
            stored = "/".join(sorted(self._mix))
            raise EdgeAffectError(f"onnxruntime runs the precision stored in the graph: {self.path.name} holds {stored}, "
                                  f"not {self.precision} (export a {self.precision} model for it)")
        if self.precision == "fp32":
            for key, value in FP32_CONFIG.items():
                so.add_session_config_entry(key, value)
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

    @functools.cached_property
    def _mix(self) -> dict[str, int]:
        """The graph's compute nodes per precision (read once: the default precision and the check use it);
        empty where the ``onnx`` package is not installed (the edge install leaves it out: ONNX Runtime
        itself does not need it), so the precision is then the one asked for, or the one the file's name says."""
        try:
            return onnx_precision_mix(self.path)
        except ImportError:
            return {}

    def _default_precision(self) -> str:
        return _precision.dominant(self._mix) or get_runtime(self.name).parse(self.path) or "fp32"

    def precision_mix(self) -> dict[str, int]:
        return dict(self._mix)

    @functools.cached_property
    def _optimized_layers(self) -> list[tuple[str, int]]:
        try:
            return optimized_compute_layers(self.path)
        except ImportError:   # no onnx package to read the optimized graph with: coverage unknown, not guessed
            return []

    def compute_layers(self) -> list[tuple[str, int]]:
        return list(self._optimized_layers)

    def _read_spec(self):
        meta = self.session.get_modelmeta().custom_metadata_map
        return spec_from_metadata(meta) or super()._read_spec()

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self._output_names, feeds)
        return dict(zip(self._output_names, values))

    def _close(self) -> None:
        self.session = None


def unsupported_here(precision: str, device: str | None = None) -> str | None:
    """fp16 on the CPU provider is casts to float32 around every op: refused."""
    if precision == "fp16" and (device or "cpu") == "cpu":
        return "ONNX Runtime's CPU provider runs float16 graphs through casts to float32; fp16 needs its CUDA provider"
    return None


ENTRY = register_runtime(RuntimeEntry(
    "onnxruntime", OnnxRuntime, "onnxruntime", ("onnxruntime",), (".onnx",),
    "ONNX Runtime (CPU, CUDA, TensorRT execution providers)",
    {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"},
    file_format="onnx", quantizer="edgeaffect.runtimes.onnxruntime.int8:quantize_guarded",
    quantizer_packages=(("onnx", "train"),), ranker="edgeaffect.runtimes.onnxruntime.int8:rank_published",
    rank=2, takes_threads=True, order=20, precisions=("fp32", "fp16", "int8"), check=unsupported_here,
    deployable=True, serves=True))
