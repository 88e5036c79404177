"""TensorRT INT8: explicit (QDQ ONNX) and, for TensorRT 8.6/10, implicit calibration.

- Explicit quantization: the QDQ ONNX written with ``QuantConfig.tensorrt()`` is
  built as is; the scales come from our calibration, TensorRT only fuses.  This
  is the only INT8 path TensorRT 11 has.
- Implicit quantization (TensorRT 8.6/10, e.g. JetPack): TensorRT calibrates the
  FP32 ONNX itself through an ``IInt8EntropyCalibrator2`` that pulls batches of
  the shared calibration set into pycuda device buffers.  The calibration cache
  is written beside the engine with a fingerprint of the ONNX bytes, the exact
  calibration tensors and the batch size; a later build reuses it only when all
  three match.

TensorRT and pycuda are imported only inside these functions, and the
calibrator class is defined only once TensorRT imports (as Polygraphy does).
Not run on real hardware here: tested against the fake modules in tests/fakes
(call order, batch feeding through device buffers, cache reuse and invalidation).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EdgeAffectError
from ..fileio import write_bytes, write_json
from .calibration import CalibrationSet

CACHE = "calibration.cache"


def _import():
    from ..errors import MissingDependencyError

    try:
        import tensorrt as trt
    except ImportError:
        raise MissingDependencyError("tensorrt", "tensorrt", "TensorRT INT8 calibration") from None
    try:
        import pycuda.driver as cuda
    except ImportError:
        raise MissingDependencyError("pycuda", "tensorrt", "TensorRT calibration buffers") from None
    return trt, cuda


def cache_fingerprint(onnx_path: str | Path, calib: CalibrationSet, batch_size: int) -> str:
    h = hashlib.sha256()
    h.update(Path(onnx_path).read_bytes())
    h.update(calib.fingerprint().encode())
    h.update(str(batch_size).encode())
    return h.hexdigest()


def entropy_calibrator(calib: CalibrationSet, cache_path: str | Path, fingerprint: str, batch_size: int = 8):
    """An ``IInt8EntropyCalibrator2`` over ``calib`` (full batches only) with a fingerprinted cache file."""
    trt, cuda = _import()
    batches = [b for b in calib.batches(batch_size) if len(next(iter(b.values()))) == batch_size]
    if not batches:
        raise EdgeAffectError(f"TensorRT calibration needs at least one full batch of {batch_size} samples; "
                              f"got {len(calib)} samples")
    cache_path = Path(cache_path)
    meta_path = cache_path.with_name(cache_path.name + ".json")

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        """Feeds calibration batches to TensorRT from device buffers allocated once."""

        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = batches
            self.index = 0
            self.device = {}   # allocated on the first get_batch, inside the builder's CUDA context
            self.cache_hit = False

        def get_batch_size(self):
            return batch_size

        def get_batch(self, names, *args):
            if self.index >= len(self.batches):
                return None
            batch = self.batches[self.index]
            self.index += 1
            ptrs = []
            for name in names:
                if name not in batch:
                    raise EdgeAffectError(f"TensorRT asked for input {name!r}; calibration data has {', '.join(batch)}")
                host = np.ascontiguousarray(batch[name])
                if name not in self.device:
                    self.device[name] = cuda.mem_alloc(host.nbytes)
                cuda.memcpy_htod(self.device[name], host)
                ptrs.append(int(self.device[name]))
            return ptrs

        def read_calibration_cache(self):
            if not (cache_path.exists() and meta_path.exists()):
                return None
            try:
                meta = json.loads(meta_path.read_text())
            except ValueError:
                return None
            if meta.get("fingerprint") != fingerprint:
                return None
            self.cache_hit = True
            return cache_path.read_bytes()

        def write_calibration_cache(self, cache):
            write_bytes(cache_path, bytes(cache))
            write_json(meta_path, {"fingerprint": fingerprint, "batches": len(self.batches), "batch_size": batch_size})

    return EntropyCalibrator()


def build_explicit(qdq_onnx: str | Path, out_dir: str | Path, *, max_batch: int = 8, spec: Any = None) -> Path:
    """INT8 engine from a QDQ ONNX (TensorRT 10: INT8 flag; TensorRT 11: strongly typed, no flag)."""
    from ..export import build_tensorrt_engine

    return build_tensorrt_engine(qdq_onnx, out_dir, int8=True, precision="int8", max_batch=max_batch, spec=spec)


def build_implicit(fp32_onnx: str | Path, out_dir: str | Path, calib: CalibrationSet, *, batch_size: int = 8,
                   max_batch: int = 8, spec: Any = None) -> tuple[Path, bool]:
    """INT8 engine calibrated by TensorRT itself (8.6/10 only); returns (engine, whether the cache was reused)."""
    from ..export import build_tensorrt_engine

    trt, _ = _import()
    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        raise EdgeAffectError(f"TensorRT {trt.__version__} has no implicit INT8 calibration; "
                              f"use the explicit QDQ path (the default)")
    out_dir = Path(out_dir)
    fp = cache_fingerprint(fp32_onnx, calib, batch_size)
    calibrator = entropy_calibrator(calib, out_dir / CACHE, fp, batch_size)
    engine = build_tensorrt_engine(fp32_onnx, out_dir, int8_calibrator=calibrator, opt_batch=batch_size,
                                   max_batch=max(max_batch, batch_size), spec=spec)
    return engine, calibrator.cache_hit
