"""TensorRT engines on a CUDA device (TensorRT 10.x as on JetPack 6, and 11.x; pycuda memory).

An engine is valid only where TensorRT's own check passes (same TensorRT version and compute
capability) and is tuned for the device that built it (its SM count and memory; on a Jetson the
module named in the device tree, since pycuda calls every Orin module just 'Orin').  So its file is
named ``tensorrt/<device>-<N>sm-<M>GB-cc<X.Y>-trt<version>.<precision>.b<min>-<opt>-<max>.engine``
and loading one elsewhere is refused in one line naming what differs.  Inference uses the named
I/O tensor API (``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``); page-locked
host buffers and device buffers are kept and reused across calls (grown only when a larger batch
arrives), the optimisation profile covering the batch is selected per call, and everything runs on
one pycuda stream inside the device's primary context.

Precisions: TensorRT 10 builds fp16 with ``BuilderFlag.FP16`` on a weakly typed network; TensorRT 11
has no precision flags (every network is strongly typed), so fp16 there is built from an fp16 ONNX
converted just before the build.  INT8 is a QDQ ONNX (both) or TensorRT 10's calibrator.

Checked against the real bindings by reading (NVIDIA/TensorRT release/10.3, 11.0, 11.1); not run on
real hardware here.  The tests drive this module through the fakes in tests/fakes/, whose API
table says which name exists in which version and where that comes from.
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ...errors import EdgeAffectError, MissingDependencyError
from ...spec import TensorSpec
from ..base import Runtime, symbolic_shape
from ..registry import RuntimeEntry, register_runtime

# Jetsons name their module here ("NVIDIA Jetson AGX Orin Developer Kit"); desktop GPUs have no such file.
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
REBUILD = "`edgeaffect export RUN --runtime tensorrt` (or `edgeaffect build-engine BUNDLE`) on this device"
_PRECISION = r"(?P<precision>fp32|bf16|fp16|int8)"
_ENGINE_NAME = re.compile(rf"^(?P<device>.+)-cc(?P<cc>\d+\.\d+)-trt(?P<version>\d+(?:\.\d+)*)\.{_PRECISION}"
                          rf"\.b(?P<min>\d+)-(?P<opt>\d+)-(?P<max>\d+)$")
# names written before engines carried the compute capability: their precision is still read
_OLD_ENGINE_NAME = re.compile(rf"^(?P<gpu>.+)-trt(?P<version>\d+(?:\.\d+)*)(?:\.{_PRECISION})?$")


JETSON_INSTALL = ("on a Jetson TensorRT comes with JetPack: `sudo apt install python3-libnvinfer`, a venv made with "
                  "`python3 -m venv --system-site-packages`, then `pip install 'edgeaffect[tensorrt]'` (builds pycuda "
                  "from source; needs nvcc on PATH)")


def _missing(package: str, purpose: str) -> MissingDependencyError:
    """The one-line install hint; on a Jetson, JetPack's route instead of pip's tensorrt."""
    err = MissingDependencyError(package, "tensorrt", purpose)
    if jetson_model() is not None:
        err.args = (f"'{package}' is needed for {purpose} but is not importable; {JETSON_INSTALL}",)
    return err


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise _missing("tensorrt", "TensorRT engines") from None
    return trt


def import_cuda():
    try:
        import pycuda.driver as cuda
    except ImportError:
        raise _missing("pycuda", "TensorRT device buffers") from None
    return cuda


def trt_major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


def gpu_slug(name: str) -> str:
    """'NVIDIA GeForce RTX 4090' -> 'NVIDIA-GeForce-RTX-4090' (safe in a file name)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")


# ------------------------------------------------------------------------------------ what an engine is for
@dataclass(frozen=True)
class EngineTarget:
    """What an engine is valid and tuned for: the device, its compute capability, the TensorRT version."""

    device: str          # file-name safe: module or GPU name, SM count and memory
    cc: str              # compute capability, "8.7"
    trt_version: str

    def differences(self, other: "EngineTarget") -> list[str]:
        pairs = (("TensorRT", self.trt_version, other.trt_version),
                 ("compute capability", self.cc, other.cc), ("device", self.device, other.device))
        return [f"{what} {a} vs {b}" for what, a, b in pairs if a != b]


def jetson_model() -> str | None:
    """The Jetson module's name from the device tree, None on other machines."""
    try:
        text = DEVICE_TREE_MODEL.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return None
    return text.strip("\x00 \n") or None


def device_info(index: int = 0) -> dict[str, Any]:
    """Name, compute capability, SM count and memory of CUDA device ``index`` (and the Jetson module)."""
    cuda = import_cuda()
    cuda.init()
    dev = cuda.Device(index)
    major, minor = dev.compute_capability()
    return {"name": dev.name(), "cc": f"{major}.{minor}",
            "sms": int(dev.get_attribute(cuda.device_attribute.MULTIPROCESSOR_COUNT)),
            "memory": int(dev.total_memory()), "module": jetson_model()}


def current_target(index: int = 0) -> EngineTarget:
    """The :class:`EngineTarget` of this machine's device ``index`` and installed TensorRT."""
    trt = import_tensorrt()
    info = device_info(index)
    device = f"{gpu_slug(info['module'] or info['name'])}-{info['sms']}sm-{round(info['memory'] / 2**30)}GB"
    return EngineTarget(device, info["cc"], str(trt.__version__))


def engine_filename(target: EngineTarget, precision: str = "fp32", batches: tuple[int, int, int] = (1, 1, 8)) -> str:
    lo, opt, hi = batches
    return f"{target.device}-cc{target.cc}-trt{target.trt_version}.{precision}.b{lo}-{opt}-{hi}.engine"


def parse_engine_filename(path: str | Path) -> tuple[EngineTarget, str, tuple[int, int, int]] | None:
    """(target, precision, batch profile) from an engine file name, or None if it is not named by us."""
    m = _ENGINE_NAME.match(Path(path).stem)
    if m is None:
        return None
    return EngineTarget(m["device"], m["cc"], m["version"]), m["precision"], (int(m["min"]), int(m["opt"]), int(m["max"]))


def engine_precision(path: str | Path) -> str:
    stem = Path(path).stem
    m = _ENGINE_NAME.match(stem) or _OLD_ENGINE_NAME.match(stem)
    return (m["precision"] or "fp32") if m else "fp32"


def check_engine_target(path: str | Path, here: EngineTarget) -> None:
    """Refuse an engine whose name says it was built for another device, compute capability or TensorRT."""
    parsed = parse_engine_filename(path)
    if parsed is None:
        return  # not named by us: TensorRT's own deserialisation check still applies
    built = parsed[0]
    diffs = built.differences(here)
    if diffs:
        raise EdgeAffectError(f"{Path(path).name} was built elsewhere ({'; '.join(diffs)} here); rebuild it with "
                              f"{REBUILD}")


@contextlib.contextmanager
def device_context(index: int = 0) -> Iterator[Any]:
    """The device's primary context, current for the block (TensorRT and pycuda calls need one)."""
    cuda = import_cuda()
    cuda.init()
    ctx = cuda.Device(index).retain_primary_context()
    ctx.push()
    try:
        yield ctx
    finally:
        ctx.pop()
        ctx.detach()


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
        trt, cuda = import_tensorrt(), import_cuda()
        self._trt, self._cuda = trt, cuda
        index = int(self.options.get("device", 0))
        self.target = current_target(index)
        self.trt_version = self.target.trt_version
        if self.precision != engine_precision(self.path):
            raise EdgeAffectError(f"tensorrt: {self.path.name} is a {engine_precision(self.path)} engine, not "
                                  f"{self.precision}; build one with {REBUILD}")
        if self.options.get("check_target", True):
            check_engine_target(self.path, self.target)
        self._ctx = cuda.Device(index).retain_primary_context()
        self._buffers: dict[str, _Buffer] = {}
        self._ctx.push()
        try:
            self._open_engine(trt, cuda)
        except BaseException:
            self._ctx.pop()
            self._ctx.detach()
            self._ctx = None
            raise
        self._ctx.pop()

    def _open_engine(self, trt, cuda) -> None:
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise EdgeAffectError(f"TensorRT {self.trt_version} could not deserialise {self.path.name} on "
                                  f"{self.target.device}: it was built for another compute capability or TensorRT "
                                  f"version (see the TensorRT log above); rebuild it with {REBUILD}")
        context = engine.create_execution_context()
        if context is None:
            raise EdgeAffectError(f"TensorRT could not create an execution context for {self.path.name} "
                                  f"(out of device memory?); close other GPU programs or rebuild with a smaller --batch")
        self.engine, self.context, self.stream = engine, context, cuda.Stream()
        self._profiles: list[dict[str, tuple]] = []
        self._active_profile = 0
        self._describe_io()

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
            if buf is not None:
                buf.device.free()
                del self._buffers[name]
            host = cuda.pagelocked_empty(count, dtype)
            buf = self._buffers[name] = _Buffer(host, cuda.mem_alloc(host.nbytes), count, np.dtype(dtype))
        return buf

    def _bind_inputs(self, feeds: dict[str, np.ndarray]) -> None:
        cuda, ctx = self._cuda, self.context
        if self._profiles:
            profile = self._select_profile(feeds)
            if profile != self._active_profile:
                ctx.set_optimization_profile_async(profile, self.stream.handle)   # raises RuntimeError itself
                self._active_profile = profile
        for t in self._inputs:
            arr = feeds[t.name]
            if not ctx.set_input_shape(t.name, arr.shape):
                raise EdgeAffectError(f"tensorrt: engine rejected shape {list(arr.shape)} for input {t.name!r}")
            buf = self._buffer(t.name, arr.dtype, arr.size)
            host = buf.host[: arr.size]
            host[:] = arr.ravel()
            cuda.memcpy_htod_async(buf.device, host, self.stream)
            if not ctx.set_tensor_address(t.name, int(buf.device)):
                raise EdgeAffectError(f"tensorrt: engine refused the device address of input {t.name!r}")

    def _bind_outputs(self) -> dict[str, tuple[_Buffer, int, tuple]]:
        ctx, views = self.context, {}
        for t in self._outputs:
            shape = tuple(ctx.get_tensor_shape(t.name))
            if any(d < 0 for d in shape):
                raise EdgeAffectError(f"tensorrt: output {t.name!r} has unresolved shape {list(shape)}")
            count = int(np.prod(shape))
            buf = self._buffer(t.name, t.np_dtype, count)
            if not ctx.set_tensor_address(t.name, int(buf.device)):
                raise EdgeAffectError(f"tensorrt: engine refused the device address of output {t.name!r}")
            views[t.name] = (buf, count, shape)
        return views

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cuda, stream = self._cuda, self.stream
        self._ctx.push()
        try:
            self._bind_inputs(feeds)
            views = self._bind_outputs()
            if not self.context.execute_async_v3(stream.handle):
                raise EdgeAffectError(f"tensorrt: execution of {self.path.name} failed (see the TensorRT log above)")
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
            for buf in self._buffers.values():
                buf.device.free()
            self._buffers = {}
            self.context = self.engine = self.stream = None
        finally:
            ctx.pop()
            ctx.detach()
            self._ctx = None


ENTRY = register_runtime(RuntimeEntry(
    "tensorrt", TensorRTRuntime, "tensorrt", ("tensorrt", "pycuda"), (".engine", ".plan"),
    "TensorRT engine on a CUDA device (pycuda buffers)",
    pattern="tensorrt/*.engine", precision_of=engine_precision, file_format="tensorrt",
    exporter="edgeaffect.runtimes.tensorrt.engine:export_engine",
    quantizer="edgeaffect.runtimes.tensorrt.int8:quantize_guarded",
    quantizer_packages=(("onnxruntime", "onnxruntime"), ("onnx", "train")), quantized="tensorrt/model.int8.qdq.onnx",
    # explicit quantization: symmetric int8 Q/DQ only on the inputs of Conv/MatMul/Gemm, float bias and
    # outputs, the placement TensorRT 10/11 fuse into INT8 kernels
    int8_preset={"activation_symmetric": True, "weight_symmetric": True, "per_channel": True,
                 "op_types": ("Conv", "MatMul", "Gemm"), "exclude_output_quant": ("Conv", "MatMul", "Gemm"),
                 "quantize_bias": False, "calib_method": "entropy"},
    rank=0, order=40, title="TensorRT", precisions=("fp32", "fp16", "int8"), deployable=True,
    # engines are built on the device they run on: a bundle carries what builds each precision there
    device_sources={"fp32": "model.onnx", "fp16": "model.onnx"},
    device_builder="edgeaffect.runtimes.tensorrt.int8:build_for_bundle",
    device_report="edgeaffect.runtimes.tensorrt.device"))
