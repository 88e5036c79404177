"""A fake ``tensorrt`` module that follows the TensorRT 10/11 Python API and checks how it is used.

It parses a real ONNX file (with the ``onnx`` package), "builds" an engine that
carries the ONNX model and its optimisation profiles, and "executes" it with
ONNX Runtime reading and writing the fake pycuda device memory.  So a caller
that binds the wrong buffer, sets a shape outside the profile, forgets an
address, sizes a buffer too small or reads before synchronising gets wrong
numbers or an error, exactly where real TensorRT would fail.

``make_tensorrt("10.3.0")`` gives the TensorRT 10 API including implicit INT8
calibration (``BuilderFlag.INT8``, ``config.int8_calibrator``,
``IInt8EntropyCalibrator2``, driven through ``get_batch_size``/``get_batch``/
``read_calibration_cache``/``write_calibration_cache``); ``make_tensorrt("11.0.0")``
removes that API as TensorRT 11 did.  Every API call is appended to ``trt.calls``.
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

_ONNX_TO_TRT = {1: "FLOAT", 10: "HALF", 7: "INT64", 6: "INT32", 3: "INT8", 2: "UINT8", 9: "BOOL"}


def make_tensorrt(version: str = "10.3.0") -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.__spec__ = ModuleSpec("tensorrt", None)
    major = int(version.split(".")[0])
    calls: list[tuple] = []
    trt.calls = calls
    implicit_int8 = major < 11

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

    class DataType(enum.Enum):
        FLOAT = 0
        HALF = 1
        INT8 = 2
        INT32 = 3
        BOOL = 4
        UINT8 = 5
        INT64 = 8

    _NP = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
           DataType.INT32: np.int32, DataType.BOOL: np.bool_, DataType.UINT8: np.uint8, DataType.INT64: np.int64}

    def nptype(dt):
        return _NP[dt]

    class TensorIOMode(enum.Enum):
        NONE = 0
        INPUT = 1
        OUTPUT = 2

    flag_names = ["FP16", "BF16", "REFIT", "STRICT_TYPES", "DIRECT_IO"] + (["INT8"] if implicit_int8 else [])
    BuilderFlag = enum.Enum("BuilderFlag", flag_names)
    net_flags = ["EXPLICIT_BATCH", "STRONGLY_TYPED"] if major >= 10 else ["EXPLICIT_BATCH", "EXPLICIT_PRECISION"]
    NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag",
                                                 {n: i for i, n in enumerate(net_flags)})

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
            self.name, self.shape, self.dtype = name, Dims(shape), dtype

    class INetworkDefinition:
        def __init__(self, flags):
            self.flags = flags
            self.inputs: list[ITensor] = []
            self.outputs: list[ITensor] = []
            self.onnx_bytes = b""

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

        def has_flag(self, f):
            return bool(self.flags & (1 << int(f)))

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
            return True

    class IOptimizationProfile:
        def __init__(self):
            self.shapes: dict[str, tuple] = {}

        def set_shape(self, name, min, opt, max):  # noqa: A002 (TensorRT's own argument names)
            record("IOptimizationProfile.set_shape", name, tuple(min), tuple(opt), tuple(max))
            lo, op, hi = tuple(min), tuple(opt), tuple(max)
            if not (len(lo) == len(op) == len(hi)) or any(not (a <= b <= c) or a < 0 for a, b, c in zip(lo, op, hi)):
                raise ValueError(f"invalid profile for {name}: need 0 <= min <= opt <= max, got {lo} {op} {hi}")
            self.shapes[name] = (lo, op, hi)

        def get_shape(self, name):
            return [Dims(s) for s in self.shapes[name]]

    class IBuilderConfig:
        def __init__(self):
            self.flags: set = set()
            self.profiles: list[IOptimizationProfile] = []
            self.pool_limits: dict = {}
            self._calibrator = None
            self.calibration_profile = None

        def set_flag(self, flag):
            record("IBuilderConfig.set_flag", flag.name)
            self.flags.add(flag)

        def get_flag(self, flag):
            return flag in self.flags

        def clear_flag(self, flag):
            self.flags.discard(flag)

        def set_memory_pool_limit(self, pool, size):
            if size <= 0:
                raise ValueError("memory pool limit must be positive")
            self.pool_limits[pool] = size

        def add_optimization_profile(self, profile):
            record("IBuilderConfig.add_optimization_profile")
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def set_calibration_profile(self, profile):
            if not implicit_int8:
                raise AttributeError("set_calibration_profile was removed in TensorRT 11")
            self.calibration_profile = profile
            return True

        if implicit_int8:
            @property
            def int8_calibrator(self):
                return self._calibrator

            @int8_calibrator.setter
            def int8_calibrator(self, calibrator):
                if calibrator is not None and not isinstance(calibrator, IInt8Calibrator):
                    raise TypeError("int8_calibrator must be an IInt8Calibrator subclass instance")
                self._calibrator = calibrator

    class IHostMemory(bytes):
        @property
        def nbytes(self):
            return len(self)

    class Builder:
        def __init__(self, logger):
            self.logger = logger
            self.platform_has_fast_fp16 = True
            self.platform_has_fast_int8 = True

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

        def build_serialized_network(self, network, config):
            record("Builder.build_serialized_network")
            if not network.inputs:
                return self._fail("network has no inputs (was the ONNX parsed?)")
            strongly = network.has_flag(NetworkDefinitionCreationFlag.STRONGLY_TYPED)
            if strongly and any(f.name in ("FP16", "INT8", "BF16") for f in config.flags):
                return self._fail("precision flags are not allowed on a strongly typed network")
            dynamic = [t for t in network.inputs if -1 in t.shape]
            if dynamic and not config.profiles:
                return self._fail(f"network has dynamic input {dynamic[0].name} but no optimization profile")
            for p in config.profiles:
                for t in network.inputs:
                    if -1 in t.shape and t.name not in p.shapes:
                        return self._fail(f"profile does not define input {t.name}")
                    if t.name in p.shapes:
                        for s in p.shapes[t.name]:
                            if len(s) != len(t.shape) or any(d != -1 and d != x for d, x in zip(t.shape, s)):
                                return self._fail(f"profile shape {s} does not fit input {t.name} {t.shape}")
            calibration = None
            if implicit_int8 and BuilderFlag.INT8 in config.flags and config.int8_calibrator is not None:
                calibration = self._calibrate(network, config)
                if calibration is None:
                    return None
            header = {
                "version": version,
                "gpu": cuda_driver().Device(0).name() if cuda_driver()._state.initialised else None,
                "inputs": [[t.name, list(t.shape), t.dtype.name] for t in network.inputs],
                "outputs": [[t.name, list(t.shape), t.dtype.name] for t in network.outputs],
                "profiles": [{n: [list(s) for s in v] for n, v in p.shapes.items()} for p in config.profiles],
                "flags": sorted(f.name for f in config.flags),
                "strongly_typed": strongly,
                "calibration": calibration,
            }
            blob = json.dumps(header).encode()
            return IHostMemory(MAGIC + struct.pack("<I", len(blob)) + blob + network.onnx_bytes)

        def _calibrate(self, network, config):
            calib = config.int8_calibrator
            if not getattr(calib, "_trt_base_initialised", False):
                raise TypeError("calibrator did not call IInt8EntropyCalibrator2.__init__(self)")
            cache = calib.read_calibration_cache()
            record("calibrator.read_calibration_cache", cache is not None and len(cache) > 0)
            if cache:
                return {"from_cache": True, "table": bytes(cache).decode()}
            bs = int(calib.get_batch_size())
            record("calibrator.get_batch_size", bs)
            if bs < 1:
                return self._fail("calibrator batch size must be >= 1")
            names = [t.name for t in network.inputs]
            prof = config.calibration_profile or (config.profiles[0] if config.profiles else None)
            amax = {n: 0.0 for n in names}
            batches = 0
            drv = cuda_driver()
            while True:
                ptrs = calib.get_batch(names)
                record("calibrator.get_batch", None if not ptrs else len(ptrs))
                if not ptrs:
                    break
                if len(ptrs) != len(names):
                    return self._fail(f"get_batch returned {len(ptrs)} pointers for {len(names)} inputs")
                for t, ptr in zip(network.inputs, ptrs):
                    shape = [bs if d == -1 else d for d in t.shape]
                    if prof is not None and t.name in prof.shapes:
                        lo, _, hi = prof.shapes[t.name]
                        if not all(a <= s <= c for a, s, c in zip(lo, shape, hi)):
                            return self._fail(f"calibration batch {shape} for {t.name} is outside the profile")
                    dtype = np.dtype(_NP[t.dtype])
                    need = int(np.prod(shape)) * dtype.itemsize
                    mem = drv.device_bytes(int(ptr))
                    if len(mem) < need:
                        return self._fail(f"calibration buffer for {t.name} holds {len(mem)} bytes, needs {need}")
                    arr = np.frombuffer(bytes(mem[:need]), dtype=dtype)
                    amax[t.name] = max(amax[t.name], float(np.abs(arr).max()) if arr.size else 0.0)
                batches += 1
            if batches == 0:
                return self._fail("calibrator returned no batches")
            table = f"TRT-{version.replace('.', '')}-EntropyCalibration2\n" + "".join(
                f"{n}: {struct.pack('>f', (a / 127.0) or 1.0).hex()}\n" for n, a in amax.items())
            calib.write_calibration_cache(table.encode())
            record("calibrator.write_calibration_cache", len(table))
            return {"from_cache": False, "batches": batches, "table": table}

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

        def get_tensor_name(self, i):
            record("ICudaEngine.get_tensor_name", i)
            return self._io[i][0]

        def _get(self, name):
            if name not in self._by_name:
                raise KeyError(f"no tensor named {name!r}")
            return self._by_name[name]

        def get_tensor_mode(self, name):
            return self._get(name)[2]

        def get_tensor_dtype(self, name):
            return self._get(name)[1]

        def get_tensor_shape(self, name):
            return Dims(self._get(name)[0])

        def get_tensor_profile_shape(self, name, profile_index):
            if self._get(name)[2] != TensorIOMode.INPUT:
                raise ValueError(f"{name} is not an input")
            return [Dims(s) for s in self.header["profiles"][profile_index][name]]

        def create_execution_context(self):
            record("ICudaEngine.create_execution_context")
            need_cuda_context("create_execution_context")
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
                return False
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
            missing = [n for n, sh, _, m in self.engine._io if m == TensorIOMode.INPUT and -1 in sh
                       and n not in self.shapes]
            if missing:
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
            self.engine._get(name)
            self.addresses[name] = int(memory)
            return True

        def get_tensor_address(self, name):
            return self.addresses.get(name, 0)

        def execute_async_v3(self, stream_handle):
            record("IExecutionContext.execute_async_v3")
            need_cuda_context("execute_async_v3")
            drv = cuda_driver()
            stream = drv._streams.get(int(stream_handle))
            if stream is None:
                raise RuntimeError(f"execute_async_v3: {stream_handle} is not a live CUDA stream handle")
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
            fp16 = "FP16" in self.engine.header["flags"]

            def run():
                feeds = {n: np.frombuffer(bytes(mem[: int(np.prod(sh)) * dt.itemsize]), dtype=dt).reshape(sh)
                         for n, sh, dt, m, mem in plan if m == TensorIOMode.INPUT}
                names = [n for n, *_, m, _ in plan if m == TensorIOMode.OUTPUT]
                outs = self.engine.session().run(names, feeds)
                for (n, sh, dt, m, mem), out in zip([p for p in plan if p[3] == TensorIOMode.OUTPUT], outs):
                    if tuple(out.shape) != sh:
                        raise RuntimeError(f"fake engine produced {out.shape} for {n}, context says {sh}")
                    if fp16:
                        out = out.astype(np.float16).astype(dt)
                    mem[: out.nbytes] = np.ascontiguousarray(out, dtype=dt).tobytes()

            stream.enqueue(("execute", tuple(self.addresses.items())), run)
            return True

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data):
            record("Runtime.deserialize_cuda_engine")
            need_cuda_context("deserialize_cuda_engine")
            data = bytes(data)
            if not data.startswith(MAGIC):
                self.logger.log(Logger.ERROR, "Serialization assertion failed: magic tag does not match")
                return None
            (n,) = struct.unpack("<I", data[len(MAGIC): len(MAGIC) + 4])
            header = json.loads(data[len(MAGIC) + 4: len(MAGIC) + 4 + n])
            if header["version"] != version:
                self.logger.log(Logger.ERROR, f"engine plan built with TensorRT {header['version']}, "
                                              f"this is {version}")
                return None
            gpu = cuda_driver().Device(0).name()
            if header["gpu"] not in (None, gpu):
                self.logger.log(Logger.ERROR, f"engine built for {header['gpu']}, running on {gpu}")
                return None
            return ICudaEngine(header, data[len(MAGIC) + 4 + n:])

    names = dict(DataType=DataType, nptype=nptype, TensorIOMode=TensorIOMode, BuilderFlag=BuilderFlag,
                 NetworkDefinitionCreationFlag=NetworkDefinitionCreationFlag, MemoryPoolType=MemoryPoolType,
                 Logger=Logger, Dims=Dims, ITensor=ITensor, INetworkDefinition=INetworkDefinition,
                 OnnxParser=OnnxParser, IOptimizationProfile=IOptimizationProfile, IBuilderConfig=IBuilderConfig,
                 IHostMemory=IHostMemory, Builder=Builder, ICudaEngine=ICudaEngine,
                 IExecutionContext=IExecutionContext, Runtime=Runtime)
    if implicit_int8:
        names.update(IInt8Calibrator=IInt8Calibrator, IInt8EntropyCalibrator2=IInt8EntropyCalibrator2)
    for k, v in names.items():
        setattr(trt, k, v)
    return trt
