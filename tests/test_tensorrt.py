"""TensorRT engine build and runtime through the fake tensorrt/pycuda modules (tests/fakes)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from edgeaffect.errors import EdgeAffectError
from edgeaffect.export import export_onnx
from edgeaffect.runtimes.tensorrt.engine import build_engine as build_tensorrt_engine
from edgeaffect.runtimes import load
from edgeaffect.runtimes import tensorrt as trt_rt
from tests.fakes import install
from tests.fakes.tensorrt import api_table, make_tensorrt
from tests.fakes.tiny_model import tiny_av_test

AGX = dict(gpu="Orin", jetson="NVIDIA Jetson AGX Orin Developer Kit", cc=(8, 7), sms=16, memory=61 << 30)
NANO = dict(gpu="Orin", jetson="NVIDIA Jetson Orin Nano Developer Kit", cc=(8, 7), sms=8, memory=7 << 30)
AGX_NAME = "NVIDIA-Jetson-AGX-Orin-Developer-Kit-16sm-61GB-cc8.7-trt10.3.0"
VERSIONS = ("10.3.0", "11.0.0", "11.1.0")


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("trt") / "model.onnx"
    return export_onnx(tiny_av_test(), path, exporter="legacy")


@pytest.fixture
def trt(monkeypatch):
    return install(monkeypatch, version="10.3.0", **AGX)


def _ort(onnx_path, feeds):
    import onnxruntime as ort

    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


# ------------------------------------------------------------------------------------- the fakes' API surface
def _has(module, dotted: str) -> bool:
    obj = module
    for part in dotted.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


@pytest.mark.parametrize("column,version", list(enumerate(VERSIONS)))
def test_fake_api_surface_equals_the_table_of_the_real_bindings(column, version):
    trt = make_tensorrt(version)
    wrong = [name for name, present in api_table().items() if _has(trt, name) != present[column]]
    assert not wrong, f"fake TensorRT {version} differs from the real bindings for {wrong}"


_OUR_SOURCES = sorted(Path(trt_rt.__file__).parent.glob("*.py"))   # the TensorRT package: runtime, engine builder, INT8
_ENUMS = ("BuilderFlag", "NetworkDefinitionCreationFlag", "MemoryPoolType")


def test_every_tensorrt_name_our_code_uses_is_in_the_table():
    table = api_table()
    text = "\n".join(p.read_text() for p in _OUR_SOURCES)
    module_names = set(re.findall(r"\btrt\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?)", text)) - {"__version__"}
    missing = [n for n in module_names
               if n not in table and (n.split(".")[0] not in table or n.split(".")[0] in _ENUMS)]
    assert not missing, f"TensorRT names used but not checked against the real API: {missing}"
    # members of TensorRT objects: anything the fakes' classes offer that our code calls must be in the table
    used = set(re.findall(r"\.([a-z_][a-z0-9_]*)\b", text))
    offered = {}
    for version in VERSIONS:
        trt = make_tensorrt(version)
        for cls in ("Runtime", "ICudaEngine", "IExecutionContext", "Builder", "IBuilderConfig", "OnnxParser",
                    "INetworkDefinition", "IOptimizationProfile", "ITensor"):
            for member in dir(getattr(trt, cls)):
                if not member.startswith("_"):
                    offered.setdefault(member, set()).add(f"{cls}.{member}")
    unchecked = [m for m in used & set(offered) if not offered[m] & set(table)]
    assert not unchecked, f"members used but not in the API table: {unchecked}"


def test_fake_raises_and_returns_what_the_real_bindings_do(monkeypatch):
    trt = install(monkeypatch, version="10.3.0")
    profile = trt.Builder(trt.Logger()).create_optimization_profile()
    with pytest.raises(RuntimeError, match="inconsistent"):
        profile.set_shape("x", (4, 3), (2, 3), (8, 3))
    assert "STRICT_TYPES" not in trt.BuilderFlag.__members__
    assert int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 1
    trt11 = make_tensorrt("11.0.0")
    assert int(trt11.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 0
    assert trt11.Builder(trt11.Logger()).create_network(0).strongly_typed   # 11.x: always strongly typed
    assert not hasattr(trt11.IBuilderConfig, "set_calibration_profile")
    with pytest.raises(TypeError, match="numpy"):
        trt.nptype(trt.DataType.BF16)


# ------------------------------------------------------------------------------------------- engine names
def test_engine_is_named_for_module_cc_version_precision_and_profile(trt, onnx_path, tmp_path):
    path = build_tensorrt_engine(onnx_path, tmp_path / "tensorrt", min_batch=1, opt_batch=4, max_batch=16)
    assert path.name == f"{AGX_NAME}.fp32.b1-4-16.engine"
    assert (tmp_path / "tensorrt" / f"{AGX_NAME}.fp32.b1-4-16.spec.json").exists()
    target, precision, batches = trt_rt.parse_engine_filename(path)
    assert (target.cc, target.trt_version, precision, batches) == ("8.7", "10.3.0", "fp32", (1, 4, 16))
    profiles = [c[1:] for c in trt.calls if c[0] == "IOptimizationProfile.set_shape"]
    assert ("video", (1, 2, 3, 8, 8), (4, 2, 3, 8, 8), (16, 2, 3, 8, 8)) in profiles
    assert ("audio", (1, 4, 6), (4, 4, 6), (16, 4, 6)) in profiles
    assert ("Builder.create_network", 0) in trt.calls  # TensorRT 10: explicit batch is implicit, weakly typed
    assert not any(c[0] == "IBuilderConfig.set_flag" for c in trt.calls)
    assert not list((tmp_path / "tensorrt").glob(".*tmp*"))  # no temp files left
    # precision is read from new names and from names written before the compute capability was in them
    assert trt_rt.engine_precision(f"{AGX_NAME}.int8.b1-8-8.engine") == "int8"
    assert trt_rt.engine_precision("NVIDIA-Orin-trt10.3.0.fp16.engine") == "fp16"


def test_without_a_device_tree_the_gpu_name_sm_count_and_memory_name_the_device(monkeypatch, onnx_path, tmp_path):
    install(monkeypatch, version="10.8.0", gpu="NVIDIA GeForce RTX 4090", cc=(8, 9), sms=128, memory=24 << 30)
    path = build_tensorrt_engine(onnx_path, tmp_path, fp16=True)
    assert path.name == "NVIDIA-GeForce-RTX-4090-128sm-24GB-cc8.9-trt10.8.0.fp16.b1-1-8.engine"


def test_engine_for_another_module_cc_or_version_is_refused_in_one_line(monkeypatch, onnx_path, tmp_path):
    install(monkeypatch, version="10.3.0", **AGX)
    path = build_tensorrt_engine(onnx_path, tmp_path)
    install(monkeypatch, version="10.3.0", **NANO)   # pycuda calls both 'Orin', same compute capability
    with pytest.raises(EdgeAffectError, match=r"built elsewhere \(device NVIDIA-Jetson-AGX-Orin-Developer-Kit-16sm-61GB "
                                              r"vs NVIDIA-Jetson-Orin-Nano-Developer-Kit-8sm-7GB here\); rebuild it with "
                                              r"`edgeaffect export RUN --runtime tensorrt`"):
        load(path)
    with load(path, check_target=False) as rt:      # TensorRT itself accepts it (same compute capability)
        assert rt.infer(rt.spec.dummy_inputs(batch=1))["intensities"].shape == (1, 3)
    install(monkeypatch, version="10.3.0", **dict(AGX, cc=(8, 9)))
    with pytest.raises(EdgeAffectError, match=r"compute capability 8\.7 vs 8\.9"):
        load(path)
    with pytest.raises(EdgeAffectError, match="could not deserialise"):   # TensorRT's own check, name aside
        load(path, check_target=False)
    install(monkeypatch, version="10.8.0", **AGX)
    with pytest.raises(EdgeAffectError, match=r"TensorRT 10\.3\.0 vs 10\.8\.0"):
        load(path)


# ------------------------------------------------------------------------------------------------ running
def test_inference_matches_onnx_and_follows_the_api_order(trt, onnx_path, tmp_path):
    path = build_tensorrt_engine(onnx_path, tmp_path, max_batch=8)
    import pycuda.driver as cuda

    with load(path) as rt:
        assert rt.name == "tensorrt" and rt.spec.name == "tiny_av_test"
        allocs = len(cuda._state.memory)
        for seed in range(3):
            feeds = rt.spec.dummy_inputs(batch=8, seed=seed)
            np.testing.assert_allclose(rt.infer(feeds)["intensities"], _ort(onnx_path, feeds), atol=1e-6)
        after_three = len(cuda._state.memory)
        rt.infer(rt.spec.dummy_inputs(batch=2))  # smaller batch reuses the buffers
        assert len(cuda._state.memory) == after_three == allocs + 3  # video, audio, intensities; reused
    assert not cuda._state.memory  # every device buffer freed on close
    names = [c[0] for c in trt.calls]
    last = len(names) - 1 - names[::-1].index("IExecutionContext.execute_async_v3")
    first_exec = names.index("IExecutionContext.execute_async_v3")
    assert names.index("IExecutionContext.set_input_shape") < names.index("IExecutionContext.set_tensor_address") < first_exec
    assert {c[1] for c in trt.calls[:last] if c[0] == "IExecutionContext.set_tensor_address"} == {"video", "audio", "intensities"}
    runs = [w[1][0] for w in cuda._state.log if w[0] == "run"]
    assert runs[-4:] == ["htod", "htod", "execute", "dtoh"]
    assert cuda._state.contexts == 0 and not cuda._state.context_stack  # context released on close


def test_batch_outside_the_profile_is_refused(trt, onnx_path, tmp_path):
    with load(build_tensorrt_engine(onnx_path, tmp_path, max_batch=4)) as rt:
        with pytest.raises(EdgeAffectError, match=r"outside every optimisation profile.*allows \[1, 2, 3, 8, 8\] to \[4, 2, 3, 8, 8\]"):
            rt.infer(rt.spec.dummy_inputs(batch=5))


def test_a_missing_execution_context_is_one_clear_error(trt, onnx_path, tmp_path):
    import pycuda.driver as cuda

    path = build_tensorrt_engine(onnx_path, tmp_path)
    trt.fail_execution_contexts = True
    with pytest.raises(EdgeAffectError, match="could not create an execution context"):
        load(path)
    assert cuda._state.contexts == 0 and not cuda._state.context_stack


def test_fp16_engine_on_tensorrt10_uses_the_builder_flag(trt, onnx_path, tmp_path):
    path = build_tensorrt_engine(onnx_path, tmp_path, fp16=True)
    assert path.name == f"{AGX_NAME}.fp16.b1-1-8.engine" and trt_rt.engine_precision(path) == "fp16"
    assert ("IBuilderConfig.set_flag", "FP16") in trt.calls
    with load(path) as rt:
        feeds = rt.spec.dummy_inputs(batch=2)
        np.testing.assert_allclose(rt.infer(feeds)["intensities"], _ort(onnx_path, feeds), atol=2e-3)


@pytest.mark.parametrize("version", ["11.0.0", "11.1.0"])
def test_fp16_engine_on_tensorrt11_is_built_from_an_fp16_onnx(monkeypatch, onnx_path, tmp_path, version):
    trt = install(monkeypatch, version=version, **AGX)
    path = build_tensorrt_engine(onnx_path, tmp_path, fp16=True)
    assert path.name.endswith(f"-trt{version}.fp16.b1-1-8.engine")
    assert not any(c[0] == "IBuilderConfig.set_flag" for c in trt.calls)   # 11.x has no precision flags
    parsed = [Path(c[1]) for c in trt.calls if c[0] == "OnnxParser.parse_from_file"]
    assert parsed[0].name == "model.fp16.onnx" and not parsed[0].parent.exists()   # made for the build, removed
    with load(path) as rt:
        assert rt.inputs[0].dtype == "float32"                 # the interface stays float32
        feeds = rt.spec.dummy_inputs(batch=2)
        out = rt.infer(feeds)["intensities"]
        np.testing.assert_allclose(out, _ort(onnx_path, feeds), atol=5e-3)


def test_fake_catches_a_missing_synchronize_and_a_missing_address(trt, onnx_path, tmp_path):
    """The fakes are strict: the ways a hand-written binding goes wrong fail here too."""
    import pycuda.driver as cuda

    path = build_tensorrt_engine(onnx_path, tmp_path)
    cuda.init()
    ctx = cuda.Device(0).retain_primary_context()
    ctx.push()
    try:
        engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(path.read_bytes())
        context = engine.create_execution_context()
        stream = cuda.Stream()
        with pytest.raises(RuntimeError, match="set optimization profile"):
            context.set_optimization_profile_async(3, stream.handle)
        context.set_input_shape("video", (1, 2, 3, 8, 8))
        context.set_input_shape("audio", (1, 4, 6))
        bufs = {n: cuda.mem_alloc(s) for n, s in (("video", 1536), ("audio", 96), ("intensities", 12))}
        context.set_tensor_address("video", int(bufs["video"]))
        context.set_tensor_address("audio", int(bufs["audio"]))
        with pytest.raises(RuntimeError, match="intensities has no address"):
            context.execute_async_v3(stream.handle)
        small = cuda.mem_alloc(8)
        context.set_tensor_address("intensities", int(small))
        with pytest.raises(RuntimeError, match="holds 8 bytes"):
            context.execute_async_v3(stream.handle)
        context.set_tensor_address("intensities", int(bufs["intensities"]))
        host = cuda.pagelocked_empty(3, np.float32)
        host[:] = -1
        assert context.execute_async_v3(stream.handle)
        cuda.memcpy_dtoh_async(host, bufs["intensities"], stream)
        assert (host == -1).all()  # nothing happened yet: the stream was not synchronised
        stream.synchronize()
        assert (host > 0).all() and (host < 1).all()
        assert context.execute_async_v3(stream.handle)
        pageable = np.full(3, -1, np.float32)   # ordinary memory: CUDA finishes the stream and the copy first
        cuda.memcpy_dtoh_async(pageable, bufs["intensities"], stream)
        np.testing.assert_array_equal(pageable, host)
    finally:
        ctx.pop()
    small.free()   # pycuda makes the allocation's own context current: no pushed context needed
    with pytest.raises(cuda.Error, match="invalid resource handle"):
        small.free()


def test_fake_pycuda_has_every_device_below_count(monkeypatch):
    install(monkeypatch, count=2, cc=(7, 2), sms=8)
    import pycuda.driver as cuda

    cuda.init()
    assert cuda.Device.count() == 2 and cuda.Device(1).compute_capability() == (7, 2)
    assert cuda.Device(1).get_attribute(cuda.device_attribute.MULTIPROCESSOR_COUNT) == 8
    with pytest.raises(cuda.Error, match="invalid device ordinal 2"):
        cuda.Device(2)


# ------------------------------------------------------------------------------------------- INT8 calibration
class _Calibrator:
    """A bare IInt8EntropyCalibrator2 fed from pycuda buffers (``fail`` raises inside get_batch)."""

    def __new__(cls, trt, batches, cache, fail=False):
        import pycuda.driver as cuda

        class Calibrator(trt.IInt8EntropyCalibrator2):
            def __init__(self):
                trt.IInt8EntropyCalibrator2.__init__(self)
                self.batches = list(batches)
                self.device = {}
                self.cache = cache
                self.asked_batch_size = 0

            def get_batch_size(self):
                self.asked_batch_size += 1
                return 999   # TensorRT 10 ignores it: the calibration profile's opt batch decides

            def get_batch(self, names):
                if fail:
                    raise ValueError("boom")
                if not self.batches:
                    return None
                feeds = self.batches.pop(0)
                out = []
                for n in names:
                    arr = np.ascontiguousarray(feeds[n])
                    if n not in self.device:
                        self.device[n] = cuda.mem_alloc(arr.nbytes)
                    cuda.memcpy_htod(self.device[n], arr)
                    out.append(int(self.device[n]))
                return out

            def read_calibration_cache(self):
                return self.cache.read_bytes() if self.cache.exists() else None

            def write_calibration_cache(self, data):
                self.cache.write_bytes(bytes(data))

        return Calibrator()


def test_int8_calibration_runs_at_the_profiles_opt_batch(trt, onnx_path, tmp_path):
    spec = tiny_av_test().spec
    cache = tmp_path / "calibration.cache"
    batches = [spec.dummy_inputs(batch=4, seed=s) for s in range(3)]
    calibrator = _Calibrator(trt, batches, cache)
    path = build_tensorrt_engine(onnx_path, tmp_path, opt_batch=4, int8_calibrator=calibrator)
    assert path.name.endswith(".int8.b1-4-8.engine")
    assert ("IBuilderConfig.set_flag", "INT8") in trt.calls and ("IBuilderConfig.set_calibration_profile",) in trt.calls
    assert [c for c in trt.calls if c[0] == "calibrator.get_batch"] == [("calibrator.get_batch", 2)] * 3 + [("calibrator.get_batch", None)]
    assert set(c for c in trt.calls if c[0] == "calibrator.batch_shape") == {("calibrator.batch_shape", (4, 2, 3, 8, 8))}
    assert calibrator.asked_batch_size == 0
    assert cache.read_text().startswith("TRT-1030-EntropyCalibration2\nvideo: ")
    trt.calls.clear()
    build_tensorrt_engine(onnx_path, tmp_path, opt_batch=4, int8_calibrator=_Calibrator(trt, batches, cache))
    assert ("calibrator.read_calibration_cache", True) in trt.calls
    assert not any(c[0] == "calibrator.get_batch" for c in trt.calls)  # the cache replaced calibration


def test_fake_swallows_calibrator_exceptions_as_tensorrt_does(trt, onnx_path, tmp_path, capsys):
    calibrator = _Calibrator(trt, [], tmp_path / "c.cache", fail=True)
    with pytest.raises(EdgeAffectError, match="TensorRT failed to build"):   # all a bare calibrator gets
        build_tensorrt_engine(onnx_path, tmp_path, int8_calibrator=calibrator)
    assert "[ERROR] Exception caught in get_batch(): boom" in capsys.readouterr().err


def _our_calibrator(tmp_path, batches, cache=None, batch_size=4):
    from edgeaffect.quantize.calibration import CalibrationSet
    from edgeaffect.runtimes.tensorrt.int8 import entropy_calibrator

    calib = CalibrationSet(batches, list(range(len(batches))), "train")
    return entropy_calibrator(calib, cache or tmp_path / "calibration.cache", "fp", batch_size)


def test_calibrator_errors_fail_the_build_in_one_line_and_buffers_are_freed(trt, onnx_path, tmp_path):
    import pycuda.driver as cuda

    spec = tiny_av_test().spec
    video_only = [{"video": spec.dummy_inputs(batch=1, seed=s)["video"]} for s in range(4)]
    with pytest.raises(EdgeAffectError, match=r"calibration of model.onnx failed: get_batch: TensorRT asked for input "
                                              r"'audio'; calibration data has video"):
        build_tensorrt_engine(onnx_path, tmp_path, opt_batch=4, int8_calibrator=_our_calibrator(tmp_path, video_only))
    samples = [spec.dummy_inputs(batch=1, seed=s) for s in range(8)]
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    calibrator = _our_calibrator(tmp_path, samples, cache=blocked / "calibration.cache")
    with pytest.raises(EdgeAffectError, match=r"failed: writing the calibration cache .*blocked/calibration.cache"):
        build_tensorrt_engine(onnx_path, tmp_path, opt_batch=4, int8_calibrator=calibrator)
    assert calibrator.device == {} and not cuda._state.memory   # the calibrator's device buffers were freed
    with pytest.raises(EdgeAffectError, match=r"opt batch \(1\) but the calibrator feeds batches of 4"):
        build_tensorrt_engine(onnx_path, tmp_path, int8_calibrator=_our_calibrator(tmp_path, samples))


@pytest.mark.parametrize("version", ["11.0.0", "11.1.0"])
def test_tensorrt11_has_no_implicit_int8_and_builds_strongly_typed(monkeypatch, onnx_path, tmp_path, version):
    trt = install(monkeypatch, version=version)
    assert not hasattr(trt.BuilderFlag, "INT8") and not hasattr(trt, "IInt8EntropyCalibrator2")
    with pytest.raises(EdgeAffectError, match="no implicit INT8 calibration"):
        build_tensorrt_engine(onnx_path, tmp_path, int8_calibrator=object())
    path = build_tensorrt_engine(onnx_path, tmp_path)
    assert ("Builder.create_network", 0) in trt.calls   # every 11.x network is strongly typed
    with load(path) as rt:
        feeds = rt.spec.dummy_inputs(batch=3)
        np.testing.assert_allclose(rt.infer(feeds)["intensities"], _ort(onnx_path, feeds), atol=1e-6)


def test_without_tensorrt_the_error_names_the_extra(monkeypatch, onnx_path, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(EdgeAffectError, match=r"pip install 'edgeaffect\[tensorrt\]'"):
        build_tensorrt_engine(onnx_path, tmp_path)


def test_fake_pycuda_autoinit_makes_a_current_context(trt):
    import pycuda.autoinit  # noqa: F401
    import pycuda.driver as cuda

    assert cuda._state.context_stack and cuda.mem_alloc(16).nbytes == 16
    pycuda.autoinit.context.pop()


def test_env_reports_what_a_jetson_can_run(monkeypatch, capsys, tmp_path):
    import json

    from edgeaffect.cli import main
    from edgeaffect.runtimes.tensorrt import device as env_cli

    install(monkeypatch, version="10.3.0", **AGX)
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R36 (release), REVISION: 4.0, GCID: 1, BOARD: generic, EABI: aarch64\n")
    monkeypatch.setattr(env_cli, "L4T_RELEASE", release)
    assert main(["env", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["jetson"] == {"module": "NVIDIA Jetson AGX Orin Developer Kit",
                                "l4t": "R36 (release), REVISION: 4.0, GCID: 1, BOARD: generic, EABI: aarch64"}
    assert report["gpus"] == [{"name": "Orin", "cc": "8.7", "sms": 16, "memory": 61 << 30,
                               "module": "NVIDIA Jetson AGX Orin Developer Kit"}]
    assert report["tensorrt"] == {"version": "10.3.0", "implicit_int8": True, "fp16": "BuilderFlag.FP16",
                                  "engine_name": f"{AGX_NAME}.fp32.b1-1-8.engine"}
    assert report["runtimes"]["tensorrt"]["usable"] and report["runtimes"]["tensorrt"]["precisions"]["fp16"] == "yes"
    assert report["machine"]["isa"] == __import__("edgeaffect.precision", fromlist=["isa"]).isa()
    assert main(["env"]) == 0
    text = capsys.readouterr().out
    assert "compute capability 8.7, 16 SMs, 61.0 GiB" in text and "tensorrt    10.3.0" in text


def test_env_says_in_one_line_why_tensorrt_is_not_usable(monkeypatch, capsys):
    import sys

    from edgeaffect.cli import main

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert "tensorrt    not usable (ModuleNotFoundError" in out or "tensorrt    not usable (ImportError" in out
    assert "gpu         none usable" in out and "pip install 'edgeaffect[tensorrt]'" in out


def test_missing_tensorrt_on_a_jetson_points_at_jetpack(monkeypatch, tmp_path):
    import sys

    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    monkeypatch.setattr(trt_rt, "DEVICE_TREE_MODEL", model)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(EdgeAffectError, match=r"comes with JetPack: `sudo apt install python3-libnvinfer`.*"
                                              r"--system-site-packages"):
        trt_rt.import_tensorrt()
