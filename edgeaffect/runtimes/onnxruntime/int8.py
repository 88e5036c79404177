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
from typing import Any, Mapping, Sequence

import numpy as np

from ...errors import EdgeAffectError
from ...fileio import atomic_path
from ...lazy import lazy_import
from ...macs import onnx_node_macs
from ..registry import load
from ..sensitivity import rank

onnx = lazy_import("onnx", "train", "ONNX Runtime INT8")


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[name]


def _reader(batches):
    """An ``onnxruntime.quantization.CalibrationDataReader`` over feed dicts (rewindable)."""
    from onnxruntime.quantization import CalibrationDataReader

    feeds = list(batches)

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

        def rewind(self):
            self._it = iter(feeds)

        def __len__(self):
            return len(feeds)

    return _Reader()


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


def calibrate(model_path: str | Path, calib, cfg, ranges_path: str | Path) -> Path:
    """Run the float model on the calibration set and save per-tensor ranges (JSON)."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    extra = {"symmetric": cfg.activation_symmetric}
    if cfg.calib_method == "percentile":
        extra.update(percentile=cfg.percentile, num_bins=2048)
    with tempfile.TemporaryDirectory(prefix="edgeaffect-calib-") as tmp:
        calibrator = create_calibrator(Path(model_path), list(cfg.op_types) or None,
                                       augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=_method(cfg.calib_method), extra_options=extra)
        calibrator.collect_data(_reader(calib.batches(cfg.calib_batch)))
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


def quantize(model_path: str | Path, ranges_path: str | Path, out_path: str | Path, cfg,
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


def ort_runtime(path, threads: int = 1, optimize: bool = True):
    """The ONNX Runtime CPU runtime of ``path`` (precision as stored)."""
    return load(path, runtime="onnxruntime", providers="cpu", threads=threads, inter_threads=1,
                optimization="all" if optimize else "disable")


def rank_ort(float_path, qdq_path, feeds: Sequence[Mapping[str, np.ndarray]], workdir) -> list[dict[str, Any]]:
    """Rank the quantized tensors (activations, weights, biases) of a QDQ model, most harmful first.

    Each candidate is scored by the model-output error (vs the float model) with only that tensor
    quantized: what quantizing that one tensor costs, in isolation.  Keeping it in float means
    excluding its consumers from quantization.  A per-tensor error measure would miss the classic failure
    (one outlier channel forces a coarse scale that crushes the others but barely changes the tensor's norm);
    the output error does not.
    """
    m = onnx.load(str(qdq_path))
    fm = onnx.load(str(float_path))
    float_inits = {i.name: i for i in fm.graph.initializer}
    inits = {i.name for i in m.graph.initializer}

    def consumers(outs):
        return sorted({n.name for n in m.graph.node if any(i in outs for i in n.input) and n.name})

    producer = {o: n.name for n in m.graph.node for o in n.output if n.op_type not in ("QuantizeLinear", "DequantizeLinear")}

    pairs = []
    for q in m.graph.node:
        if q.op_type == "QuantizeLinear" and q.input[0] not in inits:
            dq_out = [d.output[0] for d in m.graph.node if d.op_type == "DequantizeLinear" and d.input[0] == q.output[0]]
            if dq_out and consumers(dq_out):
                # a tensor stays float only if neither its producer nor its consumers quantize it
                layers = consumers(dq_out) + ([producer[q.input[0]]] if q.input[0] in producer else [])
                pairs.append({"tensor": q.input[0], "dq": dq_out, "layers": layers})
        elif q.op_type == "DequantizeLinear" and q.input[0] in inits:
            # a quantized weight/bias: ``<name>_quantized`` in the QDQ model, ``<name>`` in the float one
            orig = q.input[0][: -len("_quantized")] if q.input[0].endswith("_quantized") else None
            if orig in float_inits and consumers(q.output):
                pairs.append({"tensor": orig, "dq": [q.output[0]], "layers": consumers(q.output), "weight": True})
    for p in pairs:  # float copies of quantized weights, under names no node produces
        if p.get("weight"):
            t = onnx.TensorProto()
            t.CopyFrom(float_inits[p["tensor"]])
            t.name = p["source"] = p["tensor"] + "::float"
            m.graph.initializer.append(t)
    probe = Path(workdir) / "sensitivity.probe.onnx"

    def measure(cand):
        bypass = {o: p.get("source", p["tensor"]) for p in pairs if p is not cand for o in p["dq"]}
        mm = onnx.ModelProto()
        mm.CopyFrom(m)
        for node in mm.graph.node:
            for i, name in enumerate(node.input):
                if name in bypass:
                    node.input[i] = bypass[name]
        onnx.save(mm, str(probe))
        return ort_runtime(probe).infer

    return rank(pairs, measure, ort_runtime(float_path).infer, feeds)


def rank_published(work: Path, artifact: Path, onnx_path: Path, feeds) -> list[dict[str, Any]]:
    """The ranking of a published QDQ artifact, against the prepared float model its quantize run left."""
    return rank_ort(work / "prepared.onnx", artifact, feeds, work)


def quantize_guarded(job) -> dict[str, Any]:
    """QDQ INT8 for ONNX Runtime's CPU provider, calibrated on ``job.calib``, through the accuracy guard
    (``job``: :class:`edgeaffect.quantize.pipeline.Int8Job`)."""
    work, cfg = job.work, job.cfg
    prepared = prepare(job.onnx_path, work / "prepared.onnx")
    ranges = calibrate(prepared, job.calib, cfg, work / f"ranges.{cfg.calib_method}.json")
    counter = iter(range(1000))

    def quantize_fn(kept):
        return quantize(prepared, ranges, work / f"attempt-{next(counter)}.onnx", cfg, kept)

    def rank_fn(artifact):
        return rank_ort(prepared, artifact, job.calib.feeds[:cfg.sensitivity_samples], work)

    out = job.guarded(quantize_fn=quantize_fn, open_fn=ort_runtime, rank_fn=rank_fn,
                      layer_macs=onnx_node_macs(job.onnx_path), fp32_outputs=job.scored(ort_runtime(job.onnx_path)))
    out["ranges"] = str(ranges.relative_to(job.run.path))
    return out
