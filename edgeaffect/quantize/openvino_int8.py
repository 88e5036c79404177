"""OpenVINO INT8 with NNCF post-training quantization of the OV model.

The float IR is converted from the same FP32 ONNX every runtime starts from;
NNCF calibrates on an ``nncf.Dataset`` built from the shared calibration set.
Layers the accuracy guard keeps in float become an ``nncf.IgnoredScope``; they
are named by their ONNX node names and mapped to OpenVINO op names here
(a Conv/Gemm with bias becomes ``<name>/WithoutBiases`` + Add in OpenVINO).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .calibration import CalibrationSet
from .config import QuantConfig

def narrow_convs(onnx_path: str | Path, min_channels: int = 16) -> list[str]:
    """ONNX names of dense convolutions with fewer than ``min_channels`` input channels (a network's RGB stem).

    AMX/VNNI INT8 kernels reduce over input channels in blocks of 64 (AMX) or 4 (VNNI): a 3-channel stem
    pads to a full block and measured 5.3 ms of a 14 ms INT8 ERI model on an AMX Xeon, against
    well under 1 ms in bf16, so it stays float.
    """
    import onnx

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
    import openvino as ov

    from ..export import _quiet

    with _quiet():
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


def quantize(onnx_path: str | Path, calib: CalibrationSet, cfg: QuantConfig, out_xml: str | Path,
             exclude: Sequence[str] = (), spec=None) -> Path:
    """NNCF-quantize the float model and save ``out_xml`` (+ .bin) atomically.

    ``exclude``: layers to keep in float, by OpenVINO op name or by ONNX node name.
    ``spec`` (default: the one embedded in the ONNX) goes into the IR's rt_info, as the FP32
    export does, so ``edgeaffect.load`` on the INT8 IR knows its inputs, outputs and labels.
    """
    import logging

    import nncf

    logging.getLogger("nncf").setLevel(logging.WARNING)   # its INFO lines (one per step) drown our progress
    from ..export import read_onnx_spec
    from ..runtimes.openvino import RT_INFO_PATH

    spec = spec or read_onnx_spec(onnx_path)
    model = read_float(onnx_path)
    ignored = ov_names(model, exclude)
    kw = {}
    if ignored:
        kw["ignored_scope"] = nncf.IgnoredScope(names=ignored, validate=False)
    if cfg.ov_model_type == "transformer":
        kw["model_type"] = nncf.ModelType.TRANSFORMER
    preset = nncf.QuantizationPreset.PERFORMANCE if cfg.ov_preset == "performance" else nncf.QuantizationPreset.MIXED
    qmodel = nncf.quantize(model, calib.nncf_dataset(cfg.calib_batch), preset=preset, subset_size=len(calib),
                           fast_bias_correction=cfg.fast_bias_correction, **kw)
    if spec is not None:
        qmodel.set_rt_info(spec.to_json(), RT_INFO_PATH)
    return save(qmodel, out_xml)


def save(model, out_xml: str | Path) -> Path:
    """Save an OV model as ``out_xml`` + ``.bin`` via a temporary folder (the .bin lands before the .xml)."""
    import shutil
    import tempfile

    from ..runtimes.openvino import save_ir

    out_xml = Path(out_xml)
    out_xml.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_xml.stem}.", suffix=".tmp", dir=out_xml.parent))
    try:
        save_ir(model, tmp / out_xml.name, out_xml)
        for suffix in (".bin", ".xml"):
            (tmp / out_xml.name).with_suffix(suffix).replace(out_xml.with_suffix(suffix))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_xml
