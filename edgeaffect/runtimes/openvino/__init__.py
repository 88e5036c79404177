"""OpenVINO: IR (``.xml``) or ONNX, on CPU/GPU/AUTO, with a static reshape for a known batch.

A dynamic-batch IR compiled as-is runs the dynamic-shape code path; reshaping it
to the batch actually used (``batch=N``) lets the CPU plugin pick static kernels,
which we measured faster on our machine (DESIGN.md §4).

The execution precision is always pinned (``precision``, default fp32, through
:func:`~edgeaffect.runtimes.openvino.settings.openvino_config`): the CPU plugin's own default is bf16 on
AMX/AVX512-BF16 CPUs.  :attr:`executed_precision` reads back what the compiled model's
compute layers really run in.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ... import precision as _precision
from ...errors import EdgeAffectError
from ...fileio import write_failure
from ...lazy import lazy_import
from ...spec import ModelSpec, TensorSpec
from ..base import SPEC_KEY, Runtime, spec_from_metadata, symbolic_shape
from ..registry import RuntimeEntry, register_runtime
from .settings import PRECISIONS, openvino_config, unsupported_here

ov = lazy_import("openvino", "openvino", "the OpenVINO runtime")

RT_INFO_PATH = ["edgeaffect", "spec"]
# Runtime-graph layer types that carry the arithmetic (the ones whose precision is the model's precision).
CONV_LAYERS = ("Convolution", "GroupConvolution", "Deconvolution")
COMPUTE_LAYERS = ("Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul", "Gemm",
                  "ScaledDotProductAttention")


def read_ov_spec(model: Any) -> ModelSpec | None:
    """The ModelSpec stored in an OpenVINO model's rt_info (written by export), if any."""
    if model.has_rt_info(RT_INFO_PATH):
        return spec_from_metadata({SPEC_KEY: model.get_rt_info(RT_INFO_PATH).astype(str)})
    return None


def save_ir(model: Any, tmp_xml: Any, dest_xml: Any, fp16: bool = False) -> None:
    """``ov.save_model`` to ``tmp_xml``, its failures in one line about ``dest_xml``: OpenVINO reports a full
    disk as ``basic_ios::clear: iostream error`` in a long trace, so free space decides what it was."""
    try:
        ov.save_model(model, str(tmp_xml), compress_to_fp16=fp16)
    except (RuntimeError, OSError) as exc:
        cause = write_failure(Path(dest_xml), exc)
        if isinstance(cause, OSError):
            raise cause from None
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        raise EdgeAffectError(f"OpenVINO could not save {dest_xml}: {first[:300]}") from None


def ov_dims(partial_shape: Any) -> list[int]:
    return [d.get_length() if d.is_static else -1 for d in partial_shape]


class OpenVinoRuntime(Runtime):
    """Options: ``device`` ("CPU", "GPU", "AUTO"), ``hint`` ("LATENCY", "THROUGHPUT"), ``threads`` (fewer
    than the cores also turns CPU pinning off, so models side by side run on different cores),
    ``streams``, ``batch`` (reshape a dynamic batch to this static size before compiling),
    ``precision`` (fp32, bf16, fp16, int8; default fp32), ``config`` (extra OpenVINO properties)."""

    name = "openvino"

    def _load(self) -> None:
        core = ov.Core()
        model = self.options.pop("model", None)
        if model is None:
            try:
                model = core.read_model(str(self.path))
            except Exception as exc:
                raise EdgeAffectError(f"openvino cannot read {self.path}: {str(exc).splitlines()[0]}") from None
        self._embedded_spec = read_ov_spec(model)
        batch = self.options.get("batch")
        if batch:
            model.reshape({p.get_any_name(): _with_batch(ov_dims(p.get_partial_shape()), int(batch))
                           for p in model.inputs})
        device = self.options.get("device", "CPU")
        reason = unsupported_here(self.precision, device)
        if reason:
            raise EdgeAffectError(f"openvino {self.precision}: {reason}")
        config: dict[str, Any] = {"PERFORMANCE_HINT": self.options.get("hint", "LATENCY"),
                                  **openvino_config(self.precision, device)}
        if self.options.get("threads"):
            config["INFERENCE_NUM_THREADS"] = int(self.options["threads"])
            if device == "CPU" and int(self.options["threads"]) < _precision.physical_cores():
                # the CPU plugin pins each compiled model's threads to the first cores: two one-thread models
                # (the demo's detector and model, or preprocessing workers) would then share one core
                config["ENABLE_CPU_PINNING"] = False
        if self.options.get("streams"):
            config["NUM_STREAMS"] = str(self.options["streams"])
        config.update(self.options.get("config", {}))
        if device not in core.available_devices and device not in ("AUTO", "MULTI", "HETERO"):
            raise EdgeAffectError(f"openvino: device {device} is not available (have: {', '.join(core.available_devices)})")
        self.compiled = core.compile_model(model, device, config)
        self.request = self.compiled.create_infer_request()
        self._inputs = [self._tensor(p) for p in self.compiled.inputs]
        self._outputs = [self._tensor(p) for p in self.compiled.outputs]
        self._out_ports = list(self.compiled.outputs)

    @classmethod
    def from_model(cls, model: Any, path: str = ".", **options: Any) -> "OpenVinoRuntime":
        """Compile an in-memory ``ov.Model`` (the INT8 guard's probes) through the same settings."""
        return cls(path, model=model, **options)

    @staticmethod
    def _tensor(port: Any) -> TensorSpec:
        dtype = port.get_element_type().to_dtype().name
        return TensorSpec(port.get_any_name(), symbolic_shape(ov_dims(port.get_partial_shape())), dtype)

    def _read_spec(self):
        return self._embedded_spec or super()._read_spec()

    def precision_mix(self) -> dict[str, int]:
        """How many compute layers of the compiled graph run in each precision (ours: fp32, bf16, int8 ...)."""
        counts: dict[str, int] = {}
        for p, _ in self.compute_layers():
            counts[p] = counts.get(p, 0) + 1
        return counts

    def compute_layers(self) -> list[tuple[str, int]]:
        """Each compute layer of the compiled (runtime) graph: its runtime precision and MACs per sample."""
        out = []
        for op in self.compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if str(info["layerType"].astype(str)) in COMPUTE_LAYERS:
                out.append((_precision.from_backend(info["runtimePrecision"].astype(str)), _macs(op)))
        return out

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.request.infer(feeds, share_inputs=True)
        return {t.name: np.array(result[port]) for t, port in zip(self._outputs, self._out_ports)}

    def _close(self) -> None:
        self.request = None
        self.compiled = None


def _with_batch(dims: list[int], batch: int) -> list[int]:
    return [batch if i == 0 and d == -1 else d for i, d in enumerate(dims)]


def _static(partial_shape: Any) -> list[int]:
    """Dims of a runtime-graph port, a dynamic one (the batch, a free length) counted as 1."""
    return [max(d, 1) for d in ov_dims(partial_shape)]


def _macs(op: Any) -> int:
    """Multiply-accumulates per sample of a compute layer of the runtime graph: output elements (batch left out)
    times the reduction length, from the weights (convolutions: a grouped one's are [G, O/G, I/G, k...]) or the
    first input's last dim (FullyConnected, MatMul)."""
    if op.get_input_size() < 2:
        return 0
    out = _static(op.get_output_partial_shape(0))
    per_output = int(np.prod(out[1:])) if len(out) > 1 else 1
    weights = _static(op.get_input_partial_shape(1))
    kind = str(op.get_rt_info()["layerType"].astype(str))
    if kind == "ScaledDotProductAttention":   # Q.K^T then .V: 2 x keys per output element
        return 2 * per_output * _static(op.get_input_partial_shape(1))[-2]
    if kind in CONV_LAYERS:
        grouped = len(weights) == len(out) + 1
        return per_output * int(np.prod(weights[2:] if grouped else weights[1:]))
    return per_output * _static(op.get_input_partial_shape(0))[-1]


def ir_precision(path: Path) -> str | None:
    """An IR's precision from its ops (an INT8 IR holds FakeQuantize), for a file whose name does not say."""
    if Path(path).suffix != ".xml":
        return None
    try:
        model = ov.Core().read_model(str(path))
    except Exception:  # noqa: BLE001 - the runtime's own load reports an unreadable file
        return None
    return "int8" if any(op.get_type_name() == "FakeQuantize" for op in model.get_ops()) else "fp32"


ENTRY = register_runtime(RuntimeEntry(
    "openvino", OpenVinoRuntime, "openvino", ("openvino",), (".xml", ".onnx"), "OpenVINO (CPU/GPU/AUTO, IR or ONNX)",
    {"fp32": "openvino/model.xml", "bf16": "openvino/model.xml", "fp16": "openvino/model.fp16.xml",
     "int8": "openvino/model.int8.xml"},
    file_format="openvino", exporter="edgeaffect.runtimes.openvino.export:export_ir",
    quantizer="edgeaffect.runtimes.openvino.int8:quantize_guarded", quantizer_packages=(("nncf", "openvino"),),
    ranker="edgeaffect.runtimes.openvino.int8:rank_published", inspect=ir_precision,
    rank=1, takes_threads=True, compiles_batch=True, order=30, precisions=PRECISIONS, check=unsupported_here,
    deployable=True, serves=True))
