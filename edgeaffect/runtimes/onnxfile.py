"""The ONNX file every runtime's artifact starts from: written from the eager model (:func:`export_onnx`),
with the model spec in its ``metadata_props``.

Shared by ``export`` and INT8 (which write it) and the exporters in the runtime packages (OpenVINO reads the
spec to put it in ``rt_info``, a TensorRT engine gets it as a sidecar).

Exporter: the dynamo exporter (``torch.onnx.export(dynamo=True)``) is the default.  On the ERI model it gave
half the nodes (205 vs 385) and the same ORT latency as the TorchScript exporter measured interleaved (bs1
56.0 vs 57.9 ms, bs8 509 vs 519 ms on a loaded shared machine), at a slower export (38 s vs 1.7 s);
``exporter="legacy"`` remains available.
"""
from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any

from ..errors import EdgeAffectError
from ..fileio import atomic_path
from ..lazy import lazy_import
from ..logs import quiet
from ..spec import ModelSpec
from .base import SPEC_KEY, spec_from_metadata

onnx = lazy_import("onnx", "train", "reading and writing ONNX files")
torch = lazy_import("torch", "train", "ONNX export")



def set_onnx_spec(proto, spec: ModelSpec) -> None:
    """Write the spec (and, for humans, labels/preprocessing) into ``metadata_props``."""
    entries = {SPEC_KEY: spec.to_json(), "edgeaffect.labels": json.dumps(list(spec.labels)),
               "edgeaffect.preprocessing": json.dumps(dict(spec.preprocessing), sort_keys=True),
               "edgeaffect.task": spec.task}
    keep = [p for p in proto.metadata_props if p.key not in entries]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for k, v in entries.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = k, v


def embed_spec(onnx_path: str | os.PathLike, spec: ModelSpec) -> Path:
    """Rewrite an existing ONNX file (e.g. a quantized one) with the spec in its metadata, atomically."""
    proto = onnx.load(str(onnx_path))
    set_onnx_spec(proto, spec)
    with atomic_path(onnx_path) as tmp:
        onnx.save(proto, str(tmp))
    return Path(onnx_path)


def read_onnx_spec(onnx_path: str | os.PathLike) -> ModelSpec | None:
    """The spec an ONNX file carries, or None."""
    proto = onnx.load(str(onnx_path), load_external_data=False)
    return spec_from_metadata({p.key: p.value for p in proto.metadata_props})


DEFAULT_OPSET = 18


def export_onnx(model, path: str | os.PathLike, *, batch: int | None = None, opset: int = DEFAULT_OPSET,
                exporter: str = "dynamo", spec: ModelSpec | None = None) -> Path:
    """Export ``model`` (with a ``.spec``) to ONNX at ``path``; dynamic batch unless ``batch`` is given."""
    spec = spec or model.spec
    if exporter not in ("dynamo", "legacy"):
        raise EdgeAffectError(f"unknown ONNX exporter {exporter!r} (use dynamo or legacy)")
    model = model.eval()
    example_batch = batch or 2  # 2, not 1: a size-1 example can specialise the batch away
    feeds = spec.dummy_inputs(batch=example_batch)
    args = tuple(torch.from_numpy(feeds[n]) for n in spec.input_names)
    kw: dict[str, Any] = dict(input_names=spec.input_names, output_names=spec.output_names, opset_version=opset)
    if exporter == "dynamo":
        kw["dynamo"] = True
        kw["external_data"] = False
        if batch is None:
            dim = torch.export.Dim("B", min=1, max=4096)
            kw["dynamic_shapes"] = _dynamo_shapes(model, spec, dim)
    else:
        kw["dynamo"] = False
        if batch is None:
            kw["dynamic_axes"] = {t.name: {0: "B"} for t in (*spec.inputs, *spec.outputs) if t.shape[:1] == ("B",)}
    path = Path(path)
    with atomic_path(path) as tmp, quiet():
        try:
            with torch.no_grad():
                torch.onnx.export(model, args, str(tmp), **kw)
        except Exception as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EdgeAffectError(f"ONNX export ({exporter}) of {spec.name} failed: {msg}") from exc
        _finish_onnx(tmp, spec, batch)
    return path


def _dynamo_shapes(model, spec: ModelSpec, dim) -> Any:
    shapes = tuple({0: dim} if t.shape[:1] == ("B",) else None for t in spec.inputs)
    params = list(inspect.signature(model.forward).parameters.values())
    if params and params[0].kind == inspect.Parameter.VAR_POSITIONAL:
        return {params[0].name: shapes}
    return shapes


def _finish_onnx(path: Path, spec: ModelSpec, batch: int | None) -> None:
    """Name the batch dim, embed the spec, and run the full checker (in place)."""
    proto = onnx.load(str(path))
    for value in (*proto.graph.input, *proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if batch is None and dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "B"
    set_onnx_spec(proto, spec)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise EdgeAffectError(f"exported ONNX for {spec.name} fails onnx.checker: {str(exc).splitlines()[0]}") from None
    onnx.save(proto, str(path))
