"""A fake ``tensorrt`` module that follows the real TensorRT 10.x / 11.x Python API and checks how it is used.

It parses a real ONNX file (with the ``onnx`` package), "builds" an engine that
carries the ONNX model and its optimisation profiles, and "executes" it with
ONNX Runtime reading and writing the fake pycuda device memory.  So a caller
that binds the wrong buffer, sets a shape outside the profile, forgets an
address, sizes a buffer too small or reads before synchronising gets wrong
numbers or an error, exactly where real TensorRT would fail.

``make_tensorrt(version)`` gives the API of that major version.  Every name our
code touches exists in the fake exactly when it exists in the real bindings;
``tests/test_tensorrt.py`` checks the fake against the table below and checks
that every ``trt.<name>`` our code uses is in it.  Sources are files of
NVIDIA/TensorRT at the branch of that version (``release/10.3``, ``release/11.0``,
``release/11.1``): pyCore.cpp, pyGraph.cpp and pyInt8.cpp under python/src/infer/,
pyOnnx.cpp under python/src/parsers/, NvInfer.h under include/, and
python/packaging/bindings_wheel/tensorrt/__init__.py (``nptype``).

API table (name, present in 10.3 / 11.0 / 11.1, source and error behaviour):

    Logger                                     yes yes yes  pyCore.cpp ILogger; Logger.WARNING via Severity.export_values
    Runtime                                    yes yes yes  pyCore.cpp
    Runtime.deserialize_cuda_engine            yes yes yes  pyCore.cpp; None when the plan is for another version or compute capability
    ICudaEngine.num_io_tensors                 yes yes yes  pyCore.cpp
    ICudaEngine.get_tensor_name                yes yes yes  pyCore.cpp
    ICudaEngine.get_tensor_mode                yes yes yes  pyCore.cpp
    ICudaEngine.get_tensor_dtype               yes yes yes  pyCore.cpp
    ICudaEngine.get_tensor_shape               yes yes yes  pyCore.cpp
    ICudaEngine.num_optimization_profiles      yes yes yes  pyCore.cpp
    ICudaEngine.get_tensor_profile_shape       yes yes yes  pyCore.cpp lambdas::get_tensor_profile_shape ([min, opt, max])
    ICudaEngine.create_execution_context       yes yes yes  pyCore.cpp; None on failure (e.g. out of device memory)
    IExecutionContext.set_input_shape          yes yes yes  pyCore.cpp lambdas::setInputShape; returns False when rejected
    IExecutionContext.get_tensor_shape         yes yes yes  pyCore.cpp
    IExecutionContext.set_tensor_address       yes yes yes  pyCore.cpp lambdas::set_tensor_address; returns bool
    IExecutionContext.execute_async_v3         yes yes yes  pyCore.cpp lambdas::execute_async_v3; returns bool
    IExecutionContext.set_optimization_profile_async yes yes yes  pyCore.cpp; raises RuntimeError on failure, else True
    TensorIOMode                               yes yes yes  pyCore.cpp
    DataType                                   yes yes yes  pyFoundationalTypes.cpp
    nptype                                     yes yes yes  tensorrt/__init__.py; TypeError for types numpy lacks
    Builder                                    yes yes yes  pyCore.cpp
    Builder.create_network                     yes yes yes  pyCore.cpp createNetworkV2(flags=0); 11.x: always strongly typed (NvInfer.h)
    Builder.create_builder_config              yes yes yes  pyCore.cpp
    Builder.create_optimization_profile        yes yes yes  pyCore.cpp
    Builder.build_serialized_network           yes yes yes  pyCore.cpp; None on failure (the reason goes to the logger)
    Builder.platform_has_fast_fp16             yes no  no   pyCore.cpp
    NetworkDefinitionCreationFlag              yes yes yes  pyCore.cpp
    NetworkDefinitionCreationFlag.EXPLICIT_BATCH yes no  no   pyCore.cpp; deprecated and ignored in 10.x (NvInfer.h)
    NetworkDefinitionCreationFlag.STRONGLY_TYPED yes yes yes  pyCore.cpp; value 1 in 10.x, 0 and ignored in 11.x (NvInfer.h)
    INetworkDefinition.num_inputs              yes yes yes  pyGraph.cpp
    INetworkDefinition.get_input               yes yes yes  pyGraph.cpp
    ITensor.name                               yes yes yes  pyGraph.cpp
    ITensor.shape                              yes yes yes  pyGraph.cpp (-1 where dynamic)
    OnnxParser                                 yes yes yes  pyOnnx.cpp
    OnnxParser.parse_from_file                 yes yes yes  pyOnnx.cpp; False on failure, errors in num_errors/get_error
    OnnxParser.num_errors                      yes yes yes  pyOnnx.cpp
    OnnxParser.get_error                       yes yes yes  pyOnnx.cpp
    IOptimizationProfile.set_shape             yes yes yes  pyCore.cpp lambdas::opt_profile_set_shape; RuntimeError when inconsistent
    IBuilderConfig.set_memory_pool_limit       yes yes yes  pyCore.cpp (void: a bad size is logged, not raised)
    IBuilderConfig.add_optimization_profile    yes yes yes  pyCore.cpp
    IBuilderConfig.set_flag                    yes yes yes  pyCore.cpp
    IBuilderConfig.int8_calibrator             yes no  no   pyCore.cpp (deprecated in 10.1)
    IBuilderConfig.set_calibration_profile     yes no  no   pyCore.cpp (deprecated in 10.1); calibration runs at its opt shape (NvInfer.h)
    MemoryPoolType.WORKSPACE                   yes yes yes  pyCore.cpp
    BuilderFlag                                yes yes yes  pyCore.cpp
    BuilderFlag.FP16                           yes no  no   pyCore.cpp
    BuilderFlag.BF16                           yes no  no   pyCore.cpp
    BuilderFlag.INT8                           yes no  no   pyCore.cpp
    BuilderFlag.STRICT_TYPES                   no  no  no   pyCore.cpp (last in release/8.6)
    IInt8Calibrator                            yes no  no   pyInt8.cpp (no such file in 11.x)
    IInt8EntropyCalibrator2                    yes no  no   pyInt8.cpp; exceptions in its four methods are printed and swallowed

Behaviour taken from the same sources: the calibrator trampoline (pyInt8.cpp
``pyCalibratorTrampoline``) catches every exception from ``get_batch_size``,
``get_batch``, ``read_calibration_cache`` and ``write_calibration_cache``,
prints ``[ERROR] Exception caught in <method>(): ...`` to stderr and goes on
(-1, no more batches, no cache, nothing written); TensorRT 10 calibrates at the
calibration profile's opt shape and ignores ``get_batch_size`` (NvInfer.h,
IInt8Calibrator::getBatchSize, IBuilderConfig::setCalibrationProfile).  A
plan is refused on another TensorRT version or compute capability; another GPU
name with the same compute capability only logs a warning.  Polygraphy's
calibrator (tools/Polygraphy/polygraphy/backend/trt/calibrator.py, release/10.3)
is the reference caller: it receives the cache as a memoryview and frees its
device buffers once the data ends.  Every API call is appended to ``trt.calls``.
"""
from __future__ import annotations

import enum
import json
import struct
import sys
import types
from importlib.machinery import ModuleSpec
from pathlib import Path

import numpy as np

MAGIC = b"FAKETRT1"

_ONNX_TO_TRT = {1: "FLOAT", 10: "HALF", 7: "INT64", 6: "INT32", 3: "INT8", 2: "UINT8", 9: "BOOL", 16: "BF16"}


def api_table() -> dict[str, tuple[bool, bool, bool]]:
    """The table of this module's docstring: name -> present in (10.3, 11.0, 11.1)."""
    rows = {}
    for line in __doc__.split("API table", 1)[1].split("\n\n")[1].splitlines():
        name, *flags = line.split()[:4]
        rows[name] = tuple(f == "yes" for f in flags)
    return rows


def _guarded(method: str, fn, fallback):
    """What pyInt8.cpp's trampoline does with an exception from a calibrator method: print it, go on."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - exactly as broad as the real catch (...)
        print(f"[ERROR] Exception caught in {method}(): {exc}", file=sys.stderr)
        return fallback


def make_tensorrt(version: str = "10.3.0") -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.__spec__ = ModuleSpec("tensorrt", None)
    major = int(version.split(".")[0])
    calls: list[tuple] = []
    trt.calls = calls
    trt.fail_execution_contexts = False   # tests: make create_execution_context return None (out of memory)
    v10 = major < 11                       # precision flags, weak typing and implicit INT8 (gone in 11.x)

    def record(*what):
        calls.append(what)

    def cuda_driver():
        drv = sys.modules.get("pycuda.driver")
        if drv is None or not hasattr(drv, "_state"):
            raise RuntimeError("fake tensorrt needs the fake pycuda installed")
        return drv

    def need_cuda_context(what: str):
        st = cuda_driver()._state
        if not st.initialised or not st.context_stack:
            raise RuntimeError(f"{what}: no current CUDA context (Cuda Runtime: invalid device context)")

    def current_device():
        return cuda_driver()._state.context_stack[-1].device

    class DataType(enum.Enum):
        FLOAT = 0
        HALF = 1
        INT8 = 2
        INT32 = 3
        BOOL = 4
        UINT8 = 5
        FP8 = 6
        BF16 = 7
        INT64 = 8

    _NP = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
           DataType.INT32: np.int32, DataType.BOOL: np.bool_, DataType.UINT8: np.uint8, DataType.INT64: np.int64}

    def nptype(dt):
        if dt not in _NP:
            raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
        return _NP[dt]

    class TensorIOMode(enum.Enum):
        NONE = 0
        INPUT = 1
        OUTPUT = 2

    flag_names = (["FP16", "BF16", "INT8"] if v10 else []) + ["REFIT", "TF32", "DIRECT_IO", "STRIP_PLAN"]
    BuilderFlag = enum.Enum("BuilderFlag", flag_names)
    net_flags = {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1} if v10 else \
        {"STRONGLY_TYPED": 0, "PREFER_JIT_PYTHON_PLUGINS": 1, "PREFER_AOT_PYTHON_PLUGINS": 2}
    NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", net_flags)

    class MemoryPoolType(enum.Enum):
        WORKSPACE = 0

    class Logger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self, min_severity=1):
            self.min_severity = min_severity
            self.messages: list[str] = []

        def log(self, severity, msg):
            self.messages.append(msg)

    class Dims(tuple):
        pass

    class ITensor:
        def __init__(self, name, shape, dtype):
            self._name, self._shape, self.dtype = name, Dims(shape), dtype

        name = property(lambda self: self._name)
        shape = property(lambda self: self._shape)

    class INetworkDefinition:
        def __init__(self, flags):
            self.flags = flags
            # 11.x: every network is strongly typed; 10.x: only with the STRONGLY_TYPED bit
            self.strongly_typed = not v10 or bool(flags & (1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)))
            self.inputs: list[ITensor] = []
            self.outputs: list[ITensor] = []
            self.onnx_bytes = b""
            self.onnx_types: set[str] = set()

        @property
        def num_inputs(self):
            return len(self.inputs)

        @property
        def num_outputs(self):
            return len(self.outputs)

        def get_input(self, i):
            return self.inputs[i]

        def get_output(self, i):
            return self.outputs[i]

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.logger, self.errors = network, logger, []

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, i):
            return self.errors[i]

        def parse_from_file(self, path):
            record("OnnxParser.parse_from_file", str(path))
            return self.parse(Path(path).read_bytes())

        def parse(self, model: bytes, path=None):
            import onnx

            record("OnnxParser.parse")
            try:
                proto = onnx.load_from_string(bytes(model))
            except Exception as exc:  # noqa: BLE001
                self.errors.append(f"ModelImporter: failed to parse ONNX: {exc}")
                return False
            if not proto.graph.node:
                self.errors.append("ModelImporter: network has no layers")
                return False
            inits = {i.name for i in proto.graph.initializer}

            def tensors(values):
                out = []
                for v in values:
                    if v.name in inits:
                        continue
                    tt = v.type.tensor_type
                    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
                    out.append(ITensor(v.name, dims, DataType[_ONNX_TO_TRT[tt.elem_type]]))
                return out

            self.network.inputs = tensors(proto.graph.input)
            self.network.outputs = tensors(proto.graph.output)
            self.network.onnx_bytes = bytes(model)
            self.network.onnx_types = {_ONNX_TO_TRT.get(i.data_type, "?") for i in proto.graph.initializer}
            return True

    class IOptimizationProfile:
        def __init__(self):
            self.shapes: dict[str, tuple] = {}

        def set_shape(self, input, min, opt, max):  # noqa: A002 (TensorRT's own argument names)
            record("IOptimizationProfile.set_shape", input, tuple(min), tuple(opt), tuple(max))
            lo, op, hi = tuple(min), tuple(opt), tuple(max)
            for what, dims in (("opt", op), ("max", hi)):
                if len(dims) != len(lo) or any(a < 0 for a in dims + lo):
                    raise RuntimeError(f"Shape provided for {what} is inconsistent with other shapes.")
            if any(not (a <= b <= c) for a, b, c in zip(lo, op, hi)):
                raise RuntimeError("Shape provided for max is inconsistent with other shapes.")
            self.shapes[input] = (lo, op, hi)

        def get_shape(self, input):  # noqa: A002
            return [Dims(s) for s in self.shapes.get(input, ())]

    class IBuilderConfig:
        def __init__(self):
            self.flags: set = set()
            self.profiles: list[IOptimizationProfile] = []
            self.pool_limits: dict = {}
            self._calibrator = None
            self.calibration_profile = None
            self.logged: list[str] = []

        def set_flag(self, flag):
            record("IBuilderConfig.set_flag", flag.name)
            self.flags.add(flag)

        def get_flag(self, flag):
            return flag in self.flags

        def clear_flag(self, flag):
            self.flags.discard(flag)

        def set_memory_pool_limit(self, pool, pool_size):
            if pool_size < 0:   # void in the C++ API: an error is logged and the limit stays
                self.logged.append(f"setMemoryPoolLimit: invalid size {pool_size}")
                return
            self.pool_limits[pool] = pool_size

        def add_optimization_profile(self, profile):
            record("IBuilderConfig.add_optimization_profile")
            self.profiles.append(profile)
            return len(self.profiles) - 1

        if v10:
            def set_calibration_profile(self, profile):
                record("IBuilderConfig.set_calibration_profile")
                self.calibration_profile = profile
                return True

            @property
            def int8_calibrator(self):
                return self._calibrator

            @int8_calibrator.setter
            def int8_calibrator(self, calibrator):
                if calibrator is not None and not isinstance(calibrator, IInt8Calibrator):
                    raise TypeError("int8_calibrator: incompatible function arguments (needs an IInt8Calibrator)")
                self._calibrator = calibrator

    class IHostMemory(bytes):
        @property
        def nbytes(self):
            return len(self)

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        if v10:
            platform_has_fast_fp16 = True

        def create_network(self, flags=0):
            record("Builder.create_network", flags)
            return INetworkDefinition(flags)

        def create_builder_config(self):
            return IBuilderConfig()

        def create_optimization_profile(self):
            return IOptimizationProfile()

        def _fail(self, msg):
            self.logger.log(Logger.ERROR, msg)
            record("Builder.error", msg)
            return None

        def _check(self, network, config):
            """The reason real TensorRT refuses this build, or None."""
            if not network.inputs:
                return "network has no inputs (was the ONNX parsed?)"
            if network.strongly_typed and any(f.name in ("FP16", "INT8", "BF16") for f in config.flags):
                return "precision flags are not allowed on a strongly typed network"
            dynamic = [t for t in network.inputs if -1 in t.shape]
            if dynamic and not config.profiles:
                return f"network has dynamic input {dynamic[0].name} but no optimization profile"
            for p in config.profiles:
                for t in network.inputs:
                    if -1 in t.shape and t.name not in p.shapes:
                        return f"profile does not define input {t.name}"
                    for s in p.shapes.get(t.name, ()):
                        if len(s) != len(t.shape) or any(d != -1 and d != x for d, x in zip(t.shape, s)):
                            return f"profile shape {s} does not fit input {t.name} {t.shape}"
            return None

        def build_serialized_network(self, network, config):
            record("Builder.build_serialized_network")
            need_cuda_context("build_serialized_network")
            why = self._check(network, config)
            if why:
                return self._fail(why)
            calibration = None
            if v10 and BuilderFlag.INT8 in config.flags and config.int8_calibrator is not None:
                calibration = self._calibrate(network, config)
                if calibration is None:
                    return None
            dev = current_device()
            fp16 = "FP16" in {f.name for f in config.flags} or (network.strongly_typed and "HALF" in network.onnx_types)
            header = {
                "version": version, "gpu": dev.name(), "cc": list(dev.compute_capability()),
                "inputs": [[t.name, list(t.shape), t.dtype.name] for t in network.inputs],
                "outputs": [[t.name, list(t.shape), t.dtype.name] for t in network.outputs],
                "profiles": [{n: [list(s) for s in v] for n, v in p.shapes.items()} for p in config.profiles],
                "flags": sorted(f.name for f in config.flags), "strongly_typed": network.strongly_typed,
                "fp16": fp16, "calibration": calibration,
            }
            blob = json.dumps(header).encode()
            return IHostMemory(MAGIC + struct.pack("<I", len(blob)) + blob + network.onnx_bytes)

        def _calibrate(self, network, config):
            """Implicit INT8 as TensorRT 10 runs it: at the calibration profile's opt shape."""
            calib = config.int8_calibrator
            if not getattr(calib, "_trt_base_initialised", False):
                raise TypeError("calibrator did not call IInt8EntropyCalibrator2.__init__(self)")
            cache = _guarded("read_calibration_cache", calib.read_calibration_cache, None)
            record("calibrator.read_calibration_cache", cache is not None and len(cache) > 0)
            if cache:
                return {"from_cache": True, "table": bytes(cache).decode()}
            prof = config.calibration_profile or config.profiles[0]
            shapes = {t.name: prof.shapes[t.name][1] if t.name in prof.shapes else tuple(t.shape)
                      for t in network.inputs}
            names = [t.name for t in network.inputs]
            amax = {n: 0.0 for n in names}
            batches = 0
            while True:
                ptrs = _guarded("get_batch", lambda: calib.get_batch(names), None)
                ptrs = list(ptrs) if ptrs is not None else []
                record("calibrator.get_batch", len(ptrs) or None)
                if not ptrs:
                    break
                if len(ptrs) != len(names):
                    return self._fail(f"get_batch returned {len(ptrs)} pointers for {len(names)} inputs")
                for t, ptr in zip(network.inputs, ptrs):
                    arr = self._read_input(t, shapes[t.name], ptr)
                    if arr is None:
                        return None
                    amax[t.name] = max(amax[t.name], float(np.abs(arr).max()) if arr.size else 0.0)
                record("calibrator.batch_shape", tuple(shapes[names[0]]))
                batches += 1
            if batches == 0:
                return self._fail("calibrator returned no batches")
            table = f"TRT-{version.replace('.', '')}-EntropyCalibration2\n" + "".join(
                f"{n}: {struct.pack('>f', (a / 127.0) or 1.0).hex()}\n" for n, a in amax.items())
            _guarded("write_calibration_cache", lambda: calib.write_calibration_cache(memoryview(table.encode())), None)
            record("calibrator.write_calibration_cache", len(table))
            return {"from_cache": False, "batches": batches, "table": table}

        def _read_input(self, t, shape, ptr):
            dtype = np.dtype(_NP[t.dtype])
            need = int(np.prod(shape)) * dtype.itemsize
            mem = cuda_driver().device_bytes(int(ptr))
            if len(mem) < need:
                return self._fail(f"calibration buffer for {t.name} holds {len(mem)} bytes, {list(shape)} needs {need}")
            return np.frombuffer(bytes(mem[:need]), dtype=dtype)

    class IInt8Calibrator:
        def __init__(self):
            self._trt_base_initialised = True

        def get_batch_size(self):
            raise NotImplementedError

        def get_batch(self, names):
            raise NotImplementedError

        def read_calibration_cache(self):
            return None

        def write_calibration_cache(self, cache):
            return None

    class IInt8EntropyCalibrator2(IInt8Calibrator):
        pass

    class ICudaEngine:
        def __init__(self, header, onnx_bytes):
            self.header = header
            self.onnx_bytes = onnx_bytes
            self._io = [(n, tuple(s), DataType[d], TensorIOMode.INPUT) for n, s, d in header["inputs"]] + \
                       [(n, tuple(s), DataType[d], TensorIOMode.OUTPUT) for n, s, d in header["outputs"]]
            self._by_name = {n: (s, d, m) for n, s, d, m in self._io}
            self._session = None

        @property
        def num_io_tensors(self):
            return len(self._io)

        @property
        def num_optimization_profiles(self):
            return max(1, len(self.header["profiles"]))

        def get_tensor_name(self, index):
            record("ICudaEngine.get_tensor_name", index)
            return self._io[index][0]

        def _get(self, name):
            if name not in self._by_name:
                raise KeyError(f"no tensor named {name!r}")
            return self._by_name[name]

        def get_tensor_mode(self, name):
            return self._by_name.get(name, (None, None, TensorIOMode.NONE))[2]

        def get_tensor_dtype(self, name):
            return self._get(name)[1]

        def get_tensor_shape(self, name):
            return Dims(self._get(name)[0])

        def get_tensor_profile_shape(self, name, profile_index):
            if self.get_tensor_mode(name) != TensorIOMode.INPUT:
                return [Dims(()), Dims(()), Dims(())]   # invalid dims, as getProfileShape gives
            return [Dims(s) for s in self.header["profiles"][profile_index][name]]

        def create_execution_context(self, strategy=None):
            record("ICudaEngine.create_execution_context")
            need_cuda_context("create_execution_context")
            if trt.fail_execution_contexts:
                return None
            return IExecutionContext(self)

        def session(self):
            if self._session is None:
                import onnxruntime as ort

                so = ort.SessionOptions()
                so.intra_op_num_threads = 1
                self._session = ort.InferenceSession(self.onnx_bytes, so, providers=["CPUExecutionProvider"])
            return self._session

    class IExecutionContext:
        def __init__(self, engine):
            self.engine = engine
            self.active_optimization_profile = 0
            self.shapes: dict[str, tuple] = {}
            self.addresses: dict[str, int] = {}

        def set_optimization_profile_async(self, profile_index, stream_handle):
            record("IExecutionContext.set_optimization_profile_async", profile_index)
            if not 0 <= profile_index < self.engine.num_optimization_profiles:
                raise RuntimeError("Error in set optimization profile async.")
            self.active_optimization_profile = profile_index
            self.shapes.clear()
            return True

        def set_input_shape(self, name, shape):
            record("IExecutionContext.set_input_shape", name, tuple(shape))
            s, _, mode = self.engine._get(name)
            shape = tuple(int(x) for x in shape)
            if mode != TensorIOMode.INPUT or len(shape) != len(s):
                return False
            if any(d != -1 and d != x for d, x in zip(s, shape)):
                return False
            prof = self.engine.header["profiles"]
            if prof and name in prof[self.active_optimization_profile]:
                lo, _, hi = prof[self.active_optimization_profile][name]
                if not all(a <= x <= c for a, x, c in zip(lo, shape, hi)):
                    return False
            self.shapes[name] = shape
            return True

        def _batch(self):
            for n, s, _, m in self.engine._io:
                if m == TensorIOMode.INPUT and s and s[0] == -1 and n in self.shapes:
                    return self.shapes[n][0]
            return None

        def get_tensor_shape(self, name):
            s, _, mode = self.engine._get(name)
            if mode == TensorIOMode.INPUT:
                return Dims(self.shapes.get(name, s))
            if self.infer_shapes():
                return Dims(s)  # unresolved: -1 where dynamic
            b = self._batch()
            return Dims(tuple(b if d == -1 else d for d in s))

        def infer_shapes(self):
            return [n for n, sh, _, m in self.engine._io if m == TensorIOMode.INPUT and -1 in sh
                    and n not in self.shapes]

        @property
        def all_binding_shapes_specified(self):
            return not self.infer_shapes()

        def set_tensor_address(self, name, memory):
            record("IExecutionContext.set_tensor_address", name)
            if name not in self.engine._by_name:
                return False
            self.addresses[name] = int(memory)
            return True

        def get_tensor_address(self, name):
            return self.addresses.get(name, 0)

        def _plan(self):
            drv = cuda_driver()
            unresolved = self.infer_shapes()
            if unresolved:
                raise RuntimeError(f"execute_async_v3: input shape of {unresolved[0]} not set (set_input_shape)")
            plan = []
            for n, s, d, m in self.engine._io:
                if n not in self.addresses:
                    raise RuntimeError(f"execute_async_v3: tensor {n} has no address (set_tensor_address)")
                shape = tuple(self.get_tensor_shape(n))
                dtype = np.dtype(_NP[d])
                need = int(np.prod(shape)) * dtype.itemsize
                mem = drv.device_bytes(self.addresses[n])
                if len(mem) < need:
                    raise RuntimeError(f"execute_async_v3: buffer for {n} holds {len(mem)} bytes, {shape} needs {need}")
                plan.append((n, shape, dtype, m, mem))
            return plan

        def execute_async_v3(self, stream_handle):
            record("IExecutionContext.execute_async_v3")
            need_cuda_context("execute_async_v3")
            stream = cuda_driver()._streams.get(int(stream_handle))
            if stream is None:
                raise RuntimeError(f"execute_async_v3: {stream_handle} is not a live CUDA stream handle")
            plan = self._plan()
            round_fp16 = "FP16" in self.engine.header["flags"]   # the fp16 ONNX of 11.x runs fp16 by itself

            def run():
                feeds = {n: np.frombuffer(bytes(mem[: int(np.prod(sh)) * dt.itemsize]), dtype=dt).reshape(sh)
                         for n, sh, dt, m, mem in plan if m == TensorIOMode.INPUT}
                outs = [p for p in plan if p[3] == TensorIOMode.OUTPUT]
                results = self.engine.session().run([p[0] for p in outs], feeds)
                for (n, sh, dt, m, mem), out in zip(outs, results):
                    if tuple(out.shape) != sh:
                        raise RuntimeError(f"fake engine produced {out.shape} for {n}, context says {sh}")
                    if round_fp16:
                        out = out.astype(np.float16).astype(dt)
                    mem[: out.nbytes] = np.ascontiguousarray(out, dtype=dt).tobytes()

            stream.enqueue(("execute", tuple(self.addresses.items())), run)
            return True

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, serialized_engine):
            record("Runtime.deserialize_cuda_engine")
            need_cuda_context("deserialize_cuda_engine")
            data = bytes(serialized_engine)
            if not data.startswith(MAGIC):
                self.logger.log(Logger.ERROR, "Serialization assertion failed: magic tag does not match")
                return None
            (n,) = struct.unpack("<I", data[len(MAGIC): len(MAGIC) + 4])
            header = json.loads(data[len(MAGIC) + 4: len(MAGIC) + 4 + n])
            if header["version"] != version:
                self.logger.log(Logger.ERROR, f"engine plan built with TensorRT {header['version']}, this is {version}")
                return None
            dev = current_device()
            if tuple(header["cc"]) != tuple(dev.compute_capability()):
                self.logger.log(Logger.ERROR, f"engine plan built for compute capability {header['cc']}, "
                                              f"this device is {list(dev.compute_capability())}")
                return None
            if header["gpu"] != dev.name():
                self.logger.log(Logger.WARNING, "Using an engine plan file across different models of devices "
                                                "is not recommended and is likely to affect performance")
            return ICudaEngine(header, data[len(MAGIC) + 4 + n:])

    names = dict(DataType=DataType, nptype=nptype, TensorIOMode=TensorIOMode, BuilderFlag=BuilderFlag,
                 NetworkDefinitionCreationFlag=NetworkDefinitionCreationFlag, MemoryPoolType=MemoryPoolType,
                 Logger=Logger, Dims=Dims, ITensor=ITensor, INetworkDefinition=INetworkDefinition,
                 OnnxParser=OnnxParser, IOptimizationProfile=IOptimizationProfile, IBuilderConfig=IBuilderConfig,
                 IHostMemory=IHostMemory, Builder=Builder, ICudaEngine=ICudaEngine,
                 IExecutionContext=IExecutionContext, Runtime=Runtime)
    if v10:
        names.update(IInt8Calibrator=IInt8Calibrator, IInt8EntropyCalibrator2=IInt8EntropyCalibrator2)
    for k, v in names.items():
        setattr(trt, k, v)
    return trt
