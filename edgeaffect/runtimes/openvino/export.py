"""ONNX -> OpenVINO IR: the OpenVINO runtime's exporter (``export --runtime openvino``) and the IR writer its
INT8 path saves through."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ...lazy import lazy_import
from ...logs import quiet
from ...spec import ModelSpec
from ..onnxfile import read_onnx_spec
from ..registry import ExportTarget, get_runtime
from . import RT_INFO_PATH, ov_dims, save_ir

ov = lazy_import("openvino", "openvino", "OpenVINO IR export")


def export_openvino(onnx_path: str | os.PathLike, xml_path: str | os.PathLike, *, batch: int | None = None,
                    fp16: bool = False, spec: ModelSpec | None = None) -> Path:
    """ONNX -> OpenVINO IR (``.xml`` + ``.bin``), written atomically as a pair.

    ``batch`` fixes the batch dimension (static shapes are faster on CPU);
    ``fp16`` stores FP16-compressed weights (the CPU plugin computes in FP32 on
    machines without native FP16, so this mainly halves the size).
    """
    spec = spec or read_onnx_spec(onnx_path)
    with quiet():
        model = ov.convert_model(str(onnx_path))
    if batch:
        model.reshape({p.get_any_name(): [batch if i == 0 and d == -1 else d
                                          for i, d in enumerate(ov_dims(p.get_partial_shape()))]
                       for p in model.inputs})
    if spec is not None:
        model.set_rt_info(spec.to_json(), RT_INFO_PATH)
    return save(model, xml_path, fp16)


def save(model, out_xml: str | os.PathLike, fp16: bool = False) -> Path:
    """Save an OV model as ``out_xml`` + ``.bin`` via a temporary folder (the .bin lands before the .xml)."""
    out_xml = Path(out_xml)
    out_xml.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_xml.stem}.", suffix=".tmp", dir=out_xml.parent))
    try:
        save_ir(model, tmp / out_xml.name, out_xml, fp16)
        for suffix in (".bin", ".xml"):
            (tmp / out_xml.name).with_suffix(suffix).replace(out_xml.with_suffix(suffix))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_xml


def export_ir(onnx_path: Path, target: ExportTarget) -> Path:
    """The runtime table's exporter: the IR of ``target.precision`` (fp16: its own IR with fp16-compressed weights)."""
    xml = target.root / get_runtime("openvino").artifacts[target.precision]
    return export_openvino(onnx_path, xml, batch=target.static_batch, fp16=target.precision == "fp16",
                           spec=target.spec)
