"""ONNX Runtime static INT8: ``quant_pre_process`` -> calibrate (ranges JSON) -> ``quantize_static`` (QDQ).

The two stages are separate and inspectable: :func:`calibrate` writes the
activation ranges to a JSON file (ONNX Runtime's own cache format), and
:func:`quantize` turns a float model plus that file into a QDQ model, as many
times as the accuracy guard needs, without running calibration again.
The ``tensorrt`` preset places symmetric Q/DQ only on the inputs of
Conv/MatMul/Gemm, the graph TensorRT builds INT8 kernels from.
"""
from __future__ import annotations

import logging

import tempfile
from pathlib import Path
from typing import Sequence

from ..errors import EdgeAffectError
from ..fileio import atomic_path
from .calibration import CalibrationSet
from .config import QuantConfig


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[name]


def prepare(fp32_onnx: str | Path, out_path: str | Path) -> Path:
    """Shape inference + graph optimisation before quantization (ONNX Runtime's ``quant_pre_process``)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with atomic_path(out_path) as tmp:
        try:
            quant_pre_process(str(fp32_onnx), str(tmp), skip_symbolic_shape=False)
        except Exception as exc:  # symbolic shape inference fails on some graphs; onnx inference suffices
            quant_pre_process(str(fp32_onnx), str(tmp), skip_symbolic_shape=True)
            if not Path(tmp).exists():
                raise EdgeAffectError(f"quant_pre_process failed on {fp32_onnx}: {exc}") from None
    return Path(out_path)


def calibrate(model_path: str | Path, calib: CalibrationSet, cfg: QuantConfig, ranges_path: str | Path) -> Path:
    """Run the float model on the calibration set and save per-tensor ranges (JSON)."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    extra = {"symmetric": cfg.activation_symmetric}
    if cfg.calib_method == "percentile":
        extra.update(percentile=cfg.percentile, num_bins=2048)
    with tempfile.TemporaryDirectory(prefix="edgeaffect-calib-") as tmp:
        calibrator = create_calibrator(Path(model_path), list(cfg.op_types) or None,
                                       augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=_method(cfg.calib_method), extra_options=extra)
        calibrator.collect_data(calib.ort_reader(cfg.calib_batch))
        ranges = calibrator.compute_data()
        del calibrator
    with atomic_path(ranges_path) as tmp:
        save_tensors_data(ranges, tmp)
    return Path(ranges_path)


class _PerTensorFallback(logging.Filter):
    """Drops the quantizer's root-logger warning for a rank-1 weight (a norm layer's scale) that per-channel
    quantization cannot split: ONNX Runtime then quantizes it per tensor, which is what we want, and says so
    once per weight and per probe (dozens of lines per export)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is out-of-range for weight" not in record.getMessage()


def quantize(model_path: str | Path, ranges_path: str | Path, out_path: str | Path, cfg: QuantConfig,
             exclude: Sequence[str] = ()) -> Path:
    """Write a QDQ INT8 model from a prepared float model and saved ranges; ``exclude`` stays float."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    act = QuantType.QInt8 if cfg.activation_symmetric else QuantType.QUInt8
    extra = {"ActivationSymmetric": cfg.activation_symmetric, "WeightSymmetric": cfg.weight_symmetric,
             "QuantizeBias": cfg.quantize_bias,
             # keep Relu/Clip nodes in the graph (ONNX Runtime still fuses them at load time): the guard's
             # sensitivity probe turns Q/DQ pairs back to float, which must not silently drop an activation
             "QDQKeepRemovableActivations": True}
    if cfg.exclude_output_quant:
        extra["OpTypesToExcludeOutputQuantization"] = list(cfg.exclude_output_quant)
    quiet = _PerTensorFallback()
    logging.getLogger().addFilter(quiet)
    try:
        with atomic_path(out_path) as tmp:
            quantize_static(str(model_path), str(tmp), calibration_data_reader=None, quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(cfg.op_types) or None, per_channel=cfg.per_channel,
                            reduce_range=cfg.reduce_range, activation_type=act, weight_type=QuantType.QInt8,
                            nodes_to_exclude=list(exclude) or None, calibrate_method=_method(cfg.calib_method),
                            extra_options=extra, calibration_cache_path=str(ranges_path))
    finally:
        logging.getLogger().removeFilter(quiet)
    return Path(out_path)
