"""OpenVINO INT8 with NNCF post-training quantization of the OV model.

The float IR is converted from the same FP32 ONNX every runtime starts from;
NNCF calibrates on an ``nncf.Dataset`` built from the shared calibration set.
Layers the accuracy guard keeps in float become an ``nncf.IgnoredScope``; they
are named by their ONNX node names and mapped to OpenVINO op names here
(a Conv/Gemm with bias becomes ``<name>/WithoutBiases`` + Add in OpenVINO).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ...lazy import lazy_import
from ...logs import quiet
from ...macs import onnx_node_macs
from ..onnxfile import read_onnx_spec
from ..sensitivity import rank
from . import RT_INFO_PATH, OpenVinoRuntime
from .export import save

nncf = lazy_import("nncf", "openvino", "OpenVINO INT8 (NNCF)")
ov = lazy_import("openvino", "openvino", "OpenVINO INT8")
onnx = lazy_import("onnx", "train", "reading the FP32 ONNX")


def narrow_convs(onnx_path: str | Path, min_channels: int = 16) -> list[str]:
    """ONNX names of dense convolutions with fewer than ``min_channels`` input channels (a network's RGB stem).

    AMX/VNNI INT8 kernels reduce over input channels in blocks of 64 (AMX) or 4 (VNNI): a 3-channel stem
    pads to a full block and measured 5.3 ms of a 14 ms INT8 ERI model on an AMX Xeon, against
    well under 1 ms in bf16, so it stays float.
    """
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    weights = {i.name: list(i.dims) for i in graph.initializer}
    out = []
    for node in graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in weights:
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if group == 1 and weights[node.input[1]][1] < min_channels:
            out.append(node.name)
    return out


def read_float(onnx_path: str | Path):
    """The float OpenVINO model of an ONNX file (in memory), converted as ``export`` converts it to IR.

    ``convert_model`` folds the Reshape that the ONNX graph puts on a depthwise conv's weights; on the
    graph ``Core.read_model`` gives, NNCF finds no constant weights there and leaves every depthwise conv
    in float (17 of 17 in ``expr_mobilenetv2``; with ``convert_model`` all 52 convs run u8)."""
    with quiet():
        return ov.convert_model(str(onnx_path))


def ov_names(model, onnx_nodes: Sequence[str]) -> list[str]:
    """OpenVINO op names of the ONNX nodes ``onnx_nodes`` (a biased Conv/Gemm's weighted op is
    ``<name>/WithoutBiases``; other ops keep the ONNX node name)."""
    seen = {op.get_friendly_name() for op in model.get_ordered_ops()}
    out = []
    for n in onnx_nodes:
        if n.endswith("/WithoutBiases") and n in seen:
            out.append(n)
        elif f"{n}/WithoutBiases" in seen:
            out.append(f"{n}/WithoutBiases")
        elif n in seen:
            out.append(n)
    return out


def quantize(onnx_path: str | Path, calib, cfg, out_xml: str | Path,
             exclude: Sequence[str] = (), spec=None) -> Path:
    """NNCF-quantize the float model and save ``out_xml`` (+ .bin) atomically.

    ``exclude``: layers to keep in float, by OpenVINO op name or by ONNX node name.
    ``spec`` (default: the one embedded in the ONNX) goes into the IR's rt_info, as the FP32
    export does, so ``edgeaffect.load`` on the INT8 IR knows its inputs, outputs and labels.
    """
    logging.getLogger("nncf").setLevel(logging.WARNING)   # its INFO lines (one per step) drown our progress
    spec = spec or read_onnx_spec(onnx_path)
    model = read_float(onnx_path)
    ignored = ov_names(model, exclude)
    kw = {}
    if ignored:
        kw["ignored_scope"] = nncf.IgnoredScope(names=ignored, validate=False)
    if cfg.ov_model_type == "transformer":
        kw["model_type"] = nncf.ModelType.TRANSFORMER
    preset = nncf.QuantizationPreset.PERFORMANCE if cfg.ov_preset == "performance" else nncf.QuantizationPreset.MIXED
    qmodel = nncf.quantize(model, nncf.Dataset(list(calib.batches(cfg.calib_batch))), preset=preset, subset_size=len(calib),
                           fast_bias_correction=cfg.fast_bias_correction, **kw)
    if spec is not None:
        qmodel.set_rt_info(spec.to_json(), RT_INFO_PATH)
    return save(qmodel, out_xml)


# The guard scores in ``evaluate.SCORED_BATCH`` (the batch eval, bench and export parity score in); an OpenVINO
# INT8 IR is compiled for it as a static batch, as bench compiles its batch-8 rows: a dynamic-batch score once
# hid an IR that lost most of its accuracy once static (benchmarks/results/2026-12-01-int8-eri-quickstart-amx.md).
def ov_runtime(model_or_path, threads: int = 1, precision: str = "fp32", batch: int | None = None):
    """The OpenVINO CPU runtime of an IR path or an in-memory model, executing ``precision`` as bench does
    (``batch``: compiled for that static batch, as bench compiles each of its batch sizes)."""
    opts = {"threads": threads, "precision": precision, **({"batch": batch} if batch else {})}
    if hasattr(model_or_path, "get_ordered_ops"):
        return OpenVinoRuntime.from_model(model_or_path.clone() if batch else model_or_path, **opts)
    return OpenVinoRuntime(model_or_path, **opts)


def rank_openvino(float_model, int8_xml, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, Any]]:
    """The same ranking for an NNCF-quantized OpenVINO model: one activation FakeQuantize active at a time."""
    core = ov.Core()
    base = core.read_model(str(int8_xml))

    def act_fqs(model):
        return [op for op in model.get_ordered_ops() if op.get_type_name() == "FakeQuantize"
                and op.input_value(0).get_node().get_type_name() != "Constant"]

    cands = []
    for fq in act_fqs(base):
        layers = sorted({t.get_node().get_friendly_name() for t in fq.output(0).get_target_inputs()})
        cands.append({"tensor": fq.get_friendly_name(), "layers": layers})

    def measure(cand):
        model = base.clone()
        for fq in act_fqs(model):
            if fq.get_friendly_name() != cand["tensor"]:
                src = fq.input_value(0)
                for target in list(fq.output(0).get_target_inputs()):
                    target.replace_source_output(src)
        return ov_runtime(model, precision="int8").infer

    return rank(cands, measure, ov_runtime(float_model).infer, feeds)


def rank_published(work: Path, artifact: Path, onnx_path: Path, feeds) -> list[dict[str, Any]]:
    """The ranking of a published INT8 IR against the float model converted from the FP32 ONNX."""
    return rank_openvino(read_float(onnx_path), artifact, feeds)


def quantize_guarded(job) -> dict[str, Any]:
    """NNCF post-training INT8 for OpenVINO, guarded on ``job.samples`` as bench runs it
    (``job``: :class:`edgeaffect.quantize.pipeline.Int8Job`)."""
    cfg, onnx_path, batch = job.cfg, job.onnx_path, job.scored_batch
    counter = iter(range(1000))

    def quantize_fn(kept):
        return quantize(onnx_path, job.calib, cfg, job.work / f"attempt-{next(counter)}" / "model.int8.xml", kept,
                        spec=job.run.spec)

    def rank_fn(artifact):
        return rank_openvino(read_float(onnx_path), artifact, job.calib.feeds[:cfg.sensitivity_samples])

    return job.guarded(quantize_fn=quantize_fn, open_fn=lambda p: ov_runtime(p, precision="int8", batch=batch),
                       rank_fn=rank_fn, layer_macs=onnx_node_macs(onnx_path),
                       # the fp32 reference compiled as the int8 candidate, eval and bench compile it (static
                       # batch): a dynamic compile picks other kernels and, on a small split, another metric
                       fp32_outputs=job.scored(ov_runtime(read_float(onnx_path), batch=batch)))
