"""TensorRT engines on a CUDA device (TensorRT 8.6 / 10.x / 11.x Python API, pycuda memory).

An engine is only valid for the GPU model and TensorRT version that built it,
so its file is named ``tensorrt/<gpu-name>-trt<version>.engine`` and loading
one elsewhere is refused with an error naming both.  Inference uses the named
I/O tensor API (``set_input_shape`` / ``set_tensor_address`` /
``execute_async_v3``); page-locked host buffers and device buffers are kept and
reused across calls (grown only when a larger batch arrives), the optimisation
profile covering the batch is selected per call, and everything runs on one
pycuda stream inside the device's primary context.

Not run on real hardware here: no machine of ours has TensorRT or a working
pycuda.  The tests drive this module through faithful fakes (tests/fakes/).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EdgeAffectError, MissingDependencyError
from ..spec import TensorSpec
from .base import Runtime, symbolic_shape

_ENGINE_NAME = re.compile(r"^(?P<gpu>.+)-trt(?P<version>\d+(?:\.\d+)*)(?:\.(?P<precision>fp32|fp16|int8))?$")


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise MissingDependencyError("tensorrt", "tensorrt", "TensorRT engines") from None
    return trt


def import_cuda():
    try:
        import pycuda.driver as cuda
    except ImportError:
        raise MissingDependencyError("pycuda", "tensorrt", "TensorRT device buffers") from None
    return cuda


def trt_major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


def gpu_slug(name: str) -> str:
    """'NVIDIA GeForce RTX 4090' -> 'NVIDIA-GeForce-RTX-4090' (safe in a file name)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")


def engine_filename(gpu_name: str, trt_version: str, precision: str = "fp32") -> str:
    """``<gpu>-trt<version>.engine`` (FP32) or ``<gpu>-trt<version>.<precision>.engine``."""
    tag = "" if precision == "fp32" else f".{precision}"
    return f"{gpu_slug(gpu_name)}-trt{trt_version}{tag}.engine"


def engine_precision(path: str | Path) -> str:
    m = _ENGINE_NAME.match(Path(path).stem)
    return (m["precision"] or "fp32") if m else "fp32"


def parse_engine_filename(path: str | Path) -> tuple[str, str] | None:
    """(gpu slug, TensorRT version) from an engine file name, or None if it is not ours."""
    m = _ENGINE_NAME.match(Path(path).stem)
    return (m["gpu"], m["version"]) if m else None


def current_device(index: int = 0) -> tuple[str, str]:
    """(GPU name, TensorRT version) of this machine."""
    trt = import_tensorrt()
    cuda = import_cuda()
    cuda.init()
    return cuda.Device(index).name(), str(trt.__version__)


def check_engine_target(path: str | Path, gpu_name: str, trt_version: str) -> None:
    """Refuse an engine whose name says it was built for another GPU or TensorRT version."""
    parsed = parse_engine_filename(path)
    if parsed is None:
        return  # not named by us: TensorRT's own deserialisation check still applies
    gpu, version = parsed
    if gpu != gpu_slug(gpu_name) or version != trt_version:
        raise EdgeAffectError(
            f"{Path(path).name} was built for {gpu} with TensorRT {version}, but this machine has "
            f"{gpu_slug(gpu_name)} with TensorRT {trt_version}; rebuild it here with "
            f"`edgeaffect export RUN --format tensorrt`")


@dataclass
class _Buffer:
    """A page-locked host array and a device allocation of the same capacity (elements)."""

    host: Any
    device: Any
    capacity: int
    dtype: np.dtype


class TensorRTRuntime(Runtime):
    """Options: ``device`` (CUDA ordinal, default 0), ``check_target`` (default True)."""

    name = "tensorrt"

    def _load(self) -> None:
        trt = import_tensorrt()
        cuda = import_cuda()
        self._trt, self._cuda = trt, cuda
        cuda.init()
        dev = cuda.Device(int(self.options.get("device", 0)))
        self.gpu_name, self.trt_version = dev.name(), str(trt.__version__)
        if self.precision != engine_precision(self.path):
            raise EdgeAffectError(f"tensorrt: {self.path.name} is a {engine_precision(self.path)} engine, not "
                                  f"{self.precision}; build one with `edgeaffect export RUN --format tensorrt`")
        if self.options.get("check_target", True):
            check_engine_target(self.path, self.gpu_name, self.trt_version)
        self._ctx = dev.retain_primary_context()
        self._ctx.push()
        try:
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._runtime = trt.Runtime(self._logger)
            engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
            if engine is None:
                raise EdgeAffectError(
                    f"TensorRT {self.trt_version} could not deserialise {self.path.name} on {self.gpu_name}: "
                    f"it was built for another GPU or TensorRT version; rebuild it on this machine")
            self.engine = engine
            self.context = engine.create_execution_context()
            self.stream = cuda.Stream()
            self._buffers: dict[str, _Buffer] = {}
            self._profiles: list[dict[str, tuple]] = []
            self._active_profile = 0
            self._describe_io()
        finally:
            self._ctx.pop()

    def _default_precision(self) -> str:
        return engine_precision(self.path)

    def _describe_io(self) -> None:
        trt, engine = self._trt, self.engine
        inputs, outputs = [], []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name
            spec = TensorSpec(name, symbolic_shape(tuple(engine.get_tensor_shape(name))), dtype)
            (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(spec)
        self._inputs, self._outputs = inputs, outputs
        for p in range(engine.num_optimization_profiles):
            self._profiles.append({t.name: tuple(tuple(d) for d in engine.get_tensor_profile_shape(t.name, p))
                                   for t in inputs if any(isinstance(d, str) for d in t.shape)})

    def _select_profile(self, feeds: dict[str, np.ndarray]) -> int:
        """The first optimisation profile whose [min, max] covers every feed's shape."""
        for idx, ranges in enumerate(self._profiles):
            if all(all(lo <= s <= hi for lo, s, hi in zip(r[0], feeds[n].shape, r[2])) for n, r in ranges.items()):
                return idx
        n, r = next(iter(self._profiles[0].items()))
        lo, hi = list(r[0]), list(r[2])
        raise EdgeAffectError(f"tensorrt: input {n!r} shape {list(feeds[n].shape)} is outside every optimisation "
                              f"profile of {self.path.name} (profile 0 allows {lo} to {hi}); rebuild with a larger "
                              f"--batch")

    def _buffer(self, name: str, dtype: np.dtype, count: int) -> _Buffer:
        buf = self._buffers.get(name)
        if buf is None or buf.capacity < count or buf.dtype != dtype:
            cuda = self._cuda
            count = max(count, 1)
            host = cuda.pagelocked_empty(count, dtype)
            device = cuda.mem_alloc(host.nbytes)
            if buf is not None:
                buf.device.free()
            buf = self._buffers[name] = _Buffer(host, device, count, np.dtype(dtype))
        return buf

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cuda, ctx, stream = self._cuda, self.context, self.stream
        self._ctx.push()
        try:
            if self._profiles:
                profile = self._select_profile(feeds)
                if profile != self._active_profile:
                    ctx.set_optimization_profile_async(profile, stream.handle)
                    self._active_profile = profile
            for t in self._inputs:
                arr = feeds[t.name]
                if not ctx.set_input_shape(t.name, arr.shape):
                    raise EdgeAffectError(f"tensorrt: engine rejected shape {list(arr.shape)} for input {t.name!r}")
                buf = self._buffer(t.name, arr.dtype, arr.size)
                host = buf.host[: arr.size]
                host[:] = arr.ravel()
                cuda.memcpy_htod_async(buf.device, host, stream)
                ctx.set_tensor_address(t.name, int(buf.device))
            views = {}
            for t in self._outputs:
                shape = tuple(ctx.get_tensor_shape(t.name))
                if any(d < 0 for d in shape):
                    raise EdgeAffectError(f"tensorrt: output {t.name!r} has unresolved shape {list(shape)}")
                count = int(np.prod(shape))
                buf = self._buffer(t.name, t.np_dtype, count)
                ctx.set_tensor_address(t.name, int(buf.device))
                views[t.name] = (buf, count, shape)
            if not ctx.execute_async_v3(stream.handle):
                raise EdgeAffectError(f"tensorrt: execution of {self.path.name} failed")
            for buf, count, _ in views.values():
                cuda.memcpy_dtoh_async(buf.host[:count], buf.device, stream)
            stream.synchronize()
            return {n: np.array(buf.host[:count]).reshape(shape) for n, (buf, count, shape) in views.items()}
        finally:
            self._ctx.pop()

    def _close(self) -> None:
        ctx = getattr(self, "_ctx", None)
        if ctx is None:
            return
        ctx.push()
        try:
            for buf in getattr(self, "_buffers", {}).values():
                buf.device.free()
            self._buffers = {}
            self.context = None
            self.engine = None
            self.stream = None
        finally:
            ctx.pop()
            ctx.detach()
            self._ctx = None


def build_engine(onnx_path: str | Path, *, fp16: bool = False, min_batch: int = 1, opt_batch: int = 1,
                 max_batch: int = 8, workspace_mb: int = 1024, int8: bool = False,
                 int8_calibrator: Any = None, strongly_typed: bool | None = None) -> bytes:
    """Build a serialized engine from an ONNX file with one optimisation profile over the batch.

    ``int8=True`` sets the INT8 flag for a QDQ ONNX on TensorRT <= 10 (explicit quantization);
    ``int8_calibrator`` (an ``IInt8EntropyCalibrator2``) enables implicit INT8 on TensorRT <= 10;
    TensorRT 11 removed that path: INT8 there is a QDQ ONNX built strongly typed
    (``strongly_typed`` defaults to True from TensorRT 11 on).
    """
    trt = import_tensorrt()
    major = trt_major(trt)
    if strongly_typed is None:
        strongly_typed = major >= 11
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    elif major < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgeAffectError(f"TensorRT cannot parse {onnx_path}: {errors or 'unknown error'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if fp16 and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    elif fp16:
        raise EdgeAffectError(f"TensorRT {trt.__version__} builds strongly typed networks: export an FP16 ONNX "
                              f"instead of asking for the FP16 builder flag")
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = tuple(tensor.shape)
        if any(d < 0 for d in shape[1:]):
            raise EdgeAffectError(f"TensorRT build: input {tensor.name!r} {list(shape)} has dynamic dims besides the batch")
        rest = shape[1:]
        if shape[0] < 0:
            profile.set_shape(tensor.name, (min_batch, *rest), (opt_batch, *rest), (max_batch, *rest))
        else:
            profile.set_shape(tensor.name, shape, shape, shape)
    config.add_optimization_profile(profile)
    if int8_calibrator is not None:
        if not hasattr(trt.BuilderFlag, "INT8") or strongly_typed:
            raise EdgeAffectError(f"TensorRT {trt.__version__} has no implicit INT8 calibration; "
                                  f"build a QDQ INT8 ONNX (model.int8.onnx) instead")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = int8_calibrator
        config.set_calibration_profile(profile)
    elif int8 and not strongly_typed and hasattr(trt.BuilderFlag, "INT8"):
        config.set_flag(trt.BuilderFlag.INT8)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EdgeAffectError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    return bytes(plan)
