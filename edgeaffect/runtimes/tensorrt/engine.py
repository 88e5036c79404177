"""The one TensorRT engine builder: ``export --runtime tensorrt``, INT8 (explicit and implicit) and
``edgeaffect build-engine`` on the device all call :func:`build_engine`.

:func:`build_plan` parses the ONNX and builds the serialized plan with one optimisation profile over the
batch; :func:`build_engine` writes it under the name that says where it runs
(:func:`~edgeaffect.runtimes.tensorrt.engine_filename`), atomically, with the spec as a sidecar.
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from ...errors import EdgeAffectError, MissingDependencyError
from ...fileio import atomic_path, write_text
from ...spec import ModelSpec
from ..base import sidecar_path
from ..onnxfile import read_onnx_spec
from ..registry import ExportTarget
from . import current_target, device_context, engine_filename, import_tensorrt, trt_major


def build_engine(onnx_path: str | Path, out_dir: str | Path, *, fp16: bool = False,
                 precision: str | None = None, min_batch: int = 1, opt_batch: int = 1, max_batch: int = 8,
                 workspace_mb: int = 1024, int8: bool = False, int8_calibrator: Any = None,
                 spec: ModelSpec | None = None, device: int = 0) -> Path:
    """Build ``out_dir/<device>-cc<X.Y>-trt<version>.<precision>.b<min>-<opt>-<max>.engine`` (atomic write).

    ``precision`` names the file (default from ``fp16``/``int8``); a spec json sidecar
    is written beside it so the engine is self-describing too.
    """
    target = current_target(device)
    precision = precision or ("int8" if (int8 or int8_calibrator is not None) else "fp16" if fp16 else "fp32")
    with device_context(device):
        plan, batches = build_plan(onnx_path, fp16=fp16, min_batch=min_batch, opt_batch=opt_batch,
                                   max_batch=max_batch, workspace_mb=workspace_mb, int8=int8,
                                   int8_calibrator=int8_calibrator)
    path = Path(out_dir) / engine_filename(target, precision, batches)
    with atomic_path(path) as tmp:
        tmp.write_bytes(plan)
    spec = spec or (read_onnx_spec(onnx_path) if str(onnx_path).endswith(".onnx") else None)
    if spec is not None:
        write_text(sidecar_path(path), spec.to_json())
    return path


def export_engine(onnx_path: Path, target: ExportTarget) -> Path:
    """The runtime table's exporter: an engine of ``target.precision`` for this device and TensorRT version
    (fp16 on TensorRT 11: from an fp16 ONNX made for the build)."""
    return build_engine(onnx_path, target.root / "tensorrt", fp16=target.precision == "fp16",
                        precision=target.precision, min_batch=1, opt_batch=target.opt_batch,
                        max_batch=target.static_batch or max(target.max_batch, target.opt_batch), spec=target.spec)


# ----------------------------------------------------------------------------------------------- building
def network_flags(trt) -> int:
    """``create_network`` flags: none from TensorRT 10 on (explicit batch is the only mode; 11 is always
    strongly typed and ignores STRONGLY_TYPED); EXPLICIT_BATCH before 10."""
    return 0 if trt_major(trt) >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def fp16_onnx(src: str | Path, dest: str | Path) -> Path:
    """An fp16 copy of an ONNX with float32 inputs and outputs kept (what strongly typed TensorRT builds as fp16)."""
    try:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError:
        raise MissingDependencyError("onnxruntime", "onnxruntime",
                                     "the fp16 ONNX that TensorRT 11 builds fp16 engines from") from None
    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dest))
    return Path(dest)


@contextlib.contextmanager
def _build_source(onnx_path: str | Path, fp16: bool, trt) -> Iterator[tuple[Path, bool]]:
    """(ONNX to parse, whether to set the FP16 flag): on TensorRT 11 an fp16 ONNX made for the build."""
    if not fp16 or trt_major(trt) < 11:
        yield Path(onnx_path), fp16
        return
    folder = Path(tempfile.mkdtemp(prefix="edgeaffect-fp16-"))
    try:
        yield fp16_onnx(onnx_path, folder / "model.fp16.onnx"), False
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _profile(builder, network, batches: tuple[int, int, int]) -> tuple[Any, tuple[int, int, int]]:
    """One optimisation profile over the batch; returns it and the batch range it really has."""
    profile = builder.create_optimization_profile()
    actual = None
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = tuple(tensor.shape)
        if any(d < 0 for d in shape[1:]):
            raise EdgeAffectError(f"TensorRT build: input {tensor.name!r} {list(shape)} has dynamic dims besides the batch")
        rng = batches if shape[0] < 0 else (shape[0],) * 3
        profile.set_shape(tensor.name, *[(b, *shape[1:]) for b in rng])
        actual = actual or rng
    return profile, tuple(actual or batches)


def _calibration(trt, config, calibrator, profile, opt_batch: int) -> None:
    """TensorRT 10's implicit INT8: it calibrates at the calibration profile's opt batch, whatever
    ``get_batch_size`` says, so the calibrator's batches must have exactly that size."""
    if not hasattr(trt, "IInt8EntropyCalibrator2") or not hasattr(trt.BuilderFlag, "INT8"):
        raise EdgeAffectError(f"TensorRT {trt.__version__} has no implicit INT8 calibration; "
                              f"build a QDQ INT8 ONNX (model.int8.onnx) instead")
    size = getattr(calibrator, "batch_size", opt_batch)
    if size != opt_batch:
        raise EdgeAffectError(f"TensorRT calibrates at the profile's opt batch ({opt_batch}) but the calibrator "
                              f"feeds batches of {size}; build with opt batch {size}")
    config.set_flag(trt.BuilderFlag.INT8)
    config.int8_calibrator = calibrator
    config.set_calibration_profile(profile)


def build_plan(onnx_path: str | Path, *, fp16: bool = False, min_batch: int = 1, opt_batch: int = 1,
                 max_batch: int = 8, workspace_mb: int = 1024, int8: bool = False,
                 int8_calibrator: Any = None) -> tuple[bytes, tuple[int, int, int]]:
    """A serialized engine from an ONNX file with one optimisation profile over the batch, and that
    profile's (min, opt, max) batch.  Needs a current CUDA context (:func:`device_context`).

    ``fp16``: TensorRT 10 sets ``BuilderFlag.FP16``; TensorRT 11 (no precision flags) builds an fp16
    copy of the ONNX.  ``int8``: a QDQ ONNX (TensorRT 10 sets ``BuilderFlag.INT8``; 11 needs nothing).
    ``int8_calibrator``: TensorRT 10's implicit INT8; its first error is raised after the build.
    """
    trt = import_tensorrt()
    try:
        with _build_source(onnx_path, fp16, trt) as (source, fp16_flag):
            return _build(trt, source, fp16_flag, (min_batch, opt_batch, max_batch), workspace_mb, int8,
                          int8_calibrator)
    finally:
        release = getattr(int8_calibrator, "free", None)
        if release is not None:
            release()


def _build(trt, onnx_path: Path, fp16: bool, batches, workspace_mb: int, int8: bool, calibrator) -> tuple[bytes, tuple]:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgeAffectError(f"TensorRT cannot parse {onnx_path}: {errors or 'unknown error'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile, actual = _profile(builder, network, batches)
    config.add_optimization_profile(profile)
    if calibrator is not None:
        _calibration(trt, config, calibrator, profile, actual[1])
    elif int8 and hasattr(trt.BuilderFlag, "INT8"):   # QDQ on TensorRT 10; 11 reads the QDQ types alone
        config.set_flag(trt.BuilderFlag.INT8)
    plan = builder.build_serialized_network(network, config)
    failure = getattr(calibrator, "error", None)
    if failure:   # TensorRT swallowed it (printed, then "no more batches"): say what really went wrong
        raise EdgeAffectError(f"TensorRT INT8 calibration of {Path(onnx_path).name} failed: {failure}")
    if plan is None:
        raise EdgeAffectError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    return bytes(plan), actual
