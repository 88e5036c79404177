"""TensorRT INT8: explicit (QDQ ONNX) and, for TensorRT 8.6/10, implicit calibration.

- Explicit quantization: the QDQ ONNX written with ``QuantConfig.preset("tensorrt")`` is
  built as is; the scales come from our calibration, TensorRT only fuses.  This
  is the only INT8 path TensorRT 11 has.
- Implicit quantization (TensorRT 8.6/10, e.g. JetPack): TensorRT calibrates the
  FP32 ONNX itself through an ``IInt8EntropyCalibrator2`` that pulls batches of
  the shared calibration set into pycuda device buffers.  The calibration cache
  is written beside the engine with a fingerprint of the ONNX bytes, the exact
  calibration tensors and the batch size; a later build reuses it only when all
  three match.  TensorRT calibrates at the profile's opt batch, so that is the
  calibrator's batch size; an error inside the calibrator (which TensorRT only
  prints) fails the build with that error, and the device buffers are freed.

TensorRT and pycuda are imported only inside these functions, and the
calibrator class is defined only once TensorRT imports (as Polygraphy does).
Not run on real hardware here: tested against the fake modules in tests/fakes
(call order, batch feeding through device buffers, cache reuse and invalidation,
swallowed calibrator exceptions as in TensorRT's python/src/infer/pyInt8.cpp).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import EdgeAffectError, MissingDependencyError, os_error_line
from ...fileio import write_bytes, write_json
from ..onnxruntime.int8 import ort_runtime
from ..onnxruntime.int8 import quantize_guarded as qdq_guarded
from ..registry import load
from . import ENTRY
from .engine import build_engine

CACHE = "calibration.cache"


def _import():
    try:
        import tensorrt as trt
    except ImportError:
        raise MissingDependencyError("tensorrt", "tensorrt", "TensorRT INT8 calibration") from None
    try:
        import pycuda.driver as cuda
    except ImportError:
        raise MissingDependencyError("pycuda", "tensorrt", "TensorRT calibration buffers") from None
    return trt, cuda


def cache_fingerprint(onnx_path: str | Path, calib, batch_size: int) -> str:
    h = hashlib.sha256()
    h.update(Path(onnx_path).read_bytes())
    h.update(calib.fingerprint().encode())
    h.update(str(batch_size).encode())
    return h.hexdigest()


def entropy_calibrator(calib, cache_path: str | Path, fingerprint: str, batch_size: int = 8):
    """An ``IInt8EntropyCalibrator2`` over ``calib`` (full batches only) with a fingerprinted cache file.

    TensorRT catches every exception from the four calibrator methods, prints it and carries on as if
    the data had ended, so each method records the first failure in ``error`` instead; the build
    raises it once TensorRT returns.  ``batch_size`` must be the profile's opt batch: TensorRT 10
    calibrates at that shape and ignores ``get_batch_size``.
    """
    trt, cuda = _import()
    batches = [b for b in calib.batches(batch_size) if len(next(iter(b.values()))) == batch_size]
    if not batches:
        raise EdgeAffectError(f"TensorRT calibration needs at least one full batch of {batch_size} samples; "
                              f"got {len(calib)} samples")
    cache_path = Path(cache_path)
    meta_path = cache_path.with_name(cache_path.name + ".json")

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        """Feeds calibration batches to TensorRT from device buffers allocated once (freed by ``free``)."""

        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches, self.index, self.batch_size = batches, 0, batch_size
            self.device = {}   # allocated on the first get_batch, inside the builder's CUDA context
            self.cache_hit = False
            self.error: str | None = None

        def _guarded(self, what: str, fn, fallback):
            if self.error is not None:
                return fallback      # after a failure feed nothing more: the build is going to be refused
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - TensorRT would swallow it; keep it for the build
                self.error = f"{what}: {os_error_line(exc) if isinstance(exc, OSError) else exc}"
                return fallback

        def get_batch_size(self):
            return batch_size

        def get_batch(self, names, *args):
            return self._guarded("get_batch", lambda: self._next(names), None)

        def read_calibration_cache(self):
            return self._guarded("reading the calibration cache", self._read, None)

        def write_calibration_cache(self, cache):
            self._guarded(f"writing the calibration cache {cache_path}", lambda: self._write(bytes(cache)), None)

        def _next(self, names):
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

        def _read(self):
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

        def _write(self, cache: bytes):
            write_bytes(cache_path, cache)
            write_json(meta_path, {"fingerprint": fingerprint, "batches": len(self.batches), "batch_size": batch_size})

        def free(self):
            """Release the device buffers (the build calls this once TensorRT is done)."""
            for mem in self.device.values():
                mem.free()
            self.device = {}

    return EntropyCalibrator()


def build_explicit(qdq_onnx: str | Path, out_dir: str | Path, *, max_batch: int = 8, spec: Any = None) -> Path:
    """INT8 engine from a QDQ ONNX (TensorRT 10: INT8 flag; TensorRT 11: strongly typed, no flag)."""
    return build_engine(qdq_onnx, out_dir, int8=True, precision="int8", max_batch=max_batch, spec=spec)


def build_implicit(fp32_onnx: str | Path, out_dir: str | Path, calib, *, batch_size: int = 8,
                   max_batch: int = 8, spec: Any = None) -> tuple[Path, bool]:
    """INT8 engine calibrated by TensorRT itself (8.6/10 only); returns (engine, whether the cache was reused)."""
    trt, _ = _import()
    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        raise EdgeAffectError(f"TensorRT {trt.__version__} has no implicit INT8 calibration; "
                              f"use the explicit QDQ path (the default)")
    out_dir = Path(out_dir)
    fp = cache_fingerprint(fp32_onnx, calib, batch_size)
    calibrator = entropy_calibrator(calib, out_dir / CACHE, fp, batch_size)
    engine = build_engine(fp32_onnx, out_dir, int8_calibrator=calibrator, opt_batch=batch_size,
                                   max_batch=max(max_batch, batch_size), spec=spec)
    return engine, calibrator.cache_hit


def quantize_guarded(job) -> dict[str, Any]:
    """TensorRT-ready QDQ ONNX (guarded with ONNX Runtime's QDQ simulation), then the INT8 engine; or, with
    ``trt_calibration="implicit"``, an engine TensorRT calibrates itself (``job``: ``quantize.pipeline.Int8Job``)."""
    if job.cfg.trt_calibration == "implicit":
        return _implicit(job)
    out = qdq_guarded(job)
    if out.get("artifact"):
        engine = build_explicit(job.run.path / out["artifact"], job.run.path / "tensorrt", spec=job.run.spec)
        out["engine"] = str(engine.relative_to(job.run.path))
    return out


def _implicit(job) -> dict[str, Any]:
    """TensorRT's entropy calibrator on ``job.calib`` (cache reused for the same data), the engine scored against
    FP32 on ``job.samples``.  No layer can be kept in float here: a drop beyond ``max_drop`` removes the engine."""
    cfg, run = job.cfg, job.run
    engine, cache_hit = build_implicit(job.onnx_path, run.path / "tensorrt", job.calib, spec=run.spec)
    attempt = job.judge(job.scored(ort_runtime(job.onnx_path)),
                        job.scored(load(engine, runtime="tensorrt", precision="int8")))
    fp32, int8, drop = attempt.pop("metric_fp32"), attempt["metric"], attempt["drop_points"]
    passed = drop <= cfg.max_drop or not cfg.guard
    if not passed:
        engine.unlink(missing_ok=True)
    message = (f"implicit INT8 drop {drop:.2f} point(s) " + ("within" if drop <= cfg.max_drop else "exceeds")
               + f" {cfg.max_drop:g}" + ("" if passed else "; use the explicit calibration (the default)"))
    published = str(engine.relative_to(run.path)) if passed else None
    return {"passed": passed, "fp32_metric": fp32, "int8_metric": int8, "drop_points": drop, "max_drop": cfg.max_drop,
            "kept_float": [], "agreement": {k: attempt[k] for k in ("kind", "agreement", "max_abs_diff") if k in attempt},
            "attempts": [attempt], "message": message, "sensitivity": [], "calibration_cache_hit": cache_hit,
            "artifact": published, "engine": published}


def build_for_bundle(bundle: Path, precision: str, *, implicit: bool, max_batch: int, spec: Any,
                     calibration: Any) -> Path:
    """The engine of a deploy bundle for this device (``edgeaffect build-engine``): fp32/fp16 from its ONNX, INT8
    from the QDQ ONNX or, ``implicit``, calibrated by TensorRT 8.6/10 on ``calibration()`` (the bundled samples)."""
    out = bundle / "tensorrt"
    qdq = bundle / ENTRY.quantized
    if precision in ("fp32", "fp16"):
        return build_engine(bundle / ENTRY.device_sources[precision], out, fp16=precision == "fp16",
                            precision=precision, max_batch=max_batch, spec=spec)
    if precision != "int8":
        raise EdgeAffectError(f"--precision: TensorRT engines are built as fp32, fp16 or int8, not {precision!r}")
    if not implicit:
        if not qdq.is_file():
            raise EdgeAffectError(f"{bundle} has no {qdq.relative_to(bundle)}; pack the run's INT8 (or use --implicit)")
        return build_explicit(qdq, out, max_batch=max_batch, spec=spec)
    engine, _ = build_implicit(bundle / ENTRY.device_sources["fp32"], out, calibration(), max_batch=max_batch, spec=spec)
    return engine
