"""The ONNX file every runtime's artifact starts from: the model spec in its ``metadata_props``.

Shared by the exporters in the runtime packages (OpenVINO reads the spec to put it in ``rt_info``, a
TensorRT engine gets it as a sidecar) and by ``export``, which writes it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..fileio import atomic_path
from ..lazy import lazy_import
from ..spec import ModelSpec
from .base import SPEC_KEY, spec_from_metadata

onnx = lazy_import("onnx", "train", "reading and writing ONNX files")


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
