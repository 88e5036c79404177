"""TensorRT engine build and runtime through the fake tensorrt/pycuda modules (tests/fakes)."""
from __future__ import annotations

import numpy as np
import pytest

from edgeaffect.errors import EdgeAffectError
from edgeaffect.export import build_tensorrt_engine, export_onnx
from edgeaffect.runtimes import load
from edgeaffect.runtimes import tensorrt as trt_rt
from tests.fakes import install
from tests.fakes.tiny_model import tiny_av_test


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("trt") / "model.onnx"
    return export_onnx(tiny_av_test(), path, exporter="legacy")


@pytest.fixture
def trt(monkeypatch):
    return install(monkeypatch, version="10.3.0", gpu="NVIDIA Jetson AGX Orin")


def _ort(onnx_path, feeds):
    import onnxruntime as ort

    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def test_engine_is_named_for_gpu_and_version_with_a_batch_profile(trt, onnx_path, tmp_path):
    path = build_tensorrt_engine(onnx_path, tmp_path / "tensorrt", min_batch=1, opt_batch=4, max_batch=16)
    assert path.name == "NVIDIA-Jetson-AGX-Orin-trt10.3.0.engine"
    assert (tmp_path / "tensorrt" / "NVIDIA-Jetson-AGX-Orin-trt10.3.0.spec.json").exists()
    profiles = [c[1:] for c in trt.calls if c[0] == "IOptimizationProfile.set_shape"]
    assert ("video", (1, 2, 3, 8, 8), (4, 2, 3, 8, 8), (16, 2, 3, 8, 8)) in profiles
    assert ("audio", (1, 4, 6), (4, 4, 6), (16, 4, 6)) in profiles
    assert ("Builder.create_network", 0) in trt.calls  # TensorRT 10: explicit batch is implicit, weakly typed
    assert not any(c[0] == "IBuilderConfig.set_flag" for c in trt.calls)
    assert not list((tmp_path / "tensorrt").glob(".*tmp*"))  # no temp files left


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
    names = [c[0] for c in trt.calls]
    last = len(names) - 1 - names[::-1].index("IExecutionContext.execute_async_v3")
    before = names[:last]
    first_exec = names.index("IExecutionContext.execute_async_v3")
    assert names.index("IExecutionContext.set_input_shape") < names.index("IExecutionContext.set_tensor_address") < first_exec
    assert {c[1] for c in trt.calls[:last] if c[0] == "IExecutionContext.set_tensor_address"} == {"video", "audio", "intensities"}
    assert "IExecutionContext.set_input_shape" in before
    # copies were queued and ran in order htod, htod, execute, dtoh for every call
    runs = [w[1][0] for w in cuda._state.log if w[0] == "run"]
    assert runs[-4:] == ["htod", "htod", "execute", "dtoh"]
    assert cuda._state.contexts == 0 and not cuda._state.context_stack  # context released on close


def test_batch_outside_the_profile_is_refused(trt, onnx_path, tmp_path):
    with load(build_tensorrt_engine(onnx_path, tmp_path, max_batch=4)) as rt:
        with pytest.raises(EdgeAffectError, match=r"outside every optimisation profile.*allows \[1, 2, 3, 8, 8\] to \[4, 2, 3, 8, 8\]"):
            rt.infer(rt.spec.dummy_inputs(batch=5))


def test_engine_for_another_gpu_or_version_is_refused(monkeypatch, onnx_path, tmp_path):
    install(monkeypatch, version="10.3.0", gpu="NVIDIA Jetson AGX Orin")
    path = build_tensorrt_engine(onnx_path, tmp_path)
    install(monkeypatch, version="10.3.0", gpu="NVIDIA GeForce RTX 4090")
    with pytest.raises(EdgeAffectError, match="built for NVIDIA-Jetson-AGX-Orin with TensorRT 10.3.0, but this machine "
                                              "has NVIDIA-GeForce-RTX-4090 with TensorRT 10.3.0"):
        load(path)
    install(monkeypatch, version="10.8.0", gpu="NVIDIA Jetson AGX Orin")
    with pytest.raises(EdgeAffectError, match="TensorRT 10.3.0, but this machine has NVIDIA-Jetson-AGX-Orin with TensorRT 10.8.0"):
        load(path)
    # renamed by hand: TensorRT's own deserialisation check still refuses it
    renamed = path.rename(tmp_path / "NVIDIA-Jetson-AGX-Orin-trt10.8.0.engine")
    with pytest.raises(EdgeAffectError, match="could not deserialise"):
        load(renamed)


def test_fp16_engine(trt, onnx_path, tmp_path):
    path = build_tensorrt_engine(onnx_path, tmp_path, fp16=True)
    assert path.name.endswith("-trt10.3.0.fp16.engine") and trt_rt.engine_precision(path) == "fp16"
    assert ("IBuilderConfig.set_flag", "FP16") in trt.calls
    with load(path) as rt:
        feeds = rt.spec.dummy_inputs(batch=2)
        np.testing.assert_allclose(rt.infer(feeds)["intensities"], _ort(onnx_path, feeds), atol=2e-3)


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
        with pytest.raises(cuda.Error, match="not page-locked"):
            cuda.memcpy_dtoh_async(np.empty(3, np.float32), bufs["intensities"], stream)
    finally:
        ctx.pop()


class _Calibrator:
    """What the quantize stage writes: an IInt8EntropyCalibrator2 fed from pycuda buffers."""

    def __new__(cls, trt, batches, cache):
        import pycuda.driver as cuda

        class Calibrator(trt.IInt8EntropyCalibrator2):
            def __init__(self):
                trt.IInt8EntropyCalibrator2.__init__(self)
                self.batches = list(batches)
                self.device = {}
                self.cache = cache

            def get_batch_size(self):
                return len(next(iter(self.batches[0].values())))

            def get_batch(self, names):
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


def test_int8_calibration_api_on_tensorrt10(trt, onnx_path, tmp_path):
    spec = tiny_av_test().spec
    cache = tmp_path / "calibration.cache"
    batches = [spec.dummy_inputs(batch=4, seed=s) for s in range(3)]
    path = build_tensorrt_engine(onnx_path, tmp_path, int8_calibrator=_Calibrator(trt, batches, cache))
    assert path.name.endswith(".int8.engine")
    assert ("IBuilderConfig.set_flag", "INT8") in trt.calls
    assert [c for c in trt.calls if c[0] == "calibrator.get_batch"] == [("calibrator.get_batch", 2)] * 3 + [("calibrator.get_batch", None)]
    assert cache.read_text().startswith("TRT-1030-EntropyCalibration2\nvideo: ")
    trt.calls.clear()
    build_tensorrt_engine(onnx_path, tmp_path, int8_calibrator=_Calibrator(trt, batches, cache))
    assert ("calibrator.read_calibration_cache", True) in trt.calls
    assert not any(c[0] == "calibrator.get_batch" for c in trt.calls)  # the cache replaced calibration


def test_tensorrt11_has_no_implicit_int8_and_builds_strongly_typed(monkeypatch, onnx_path, tmp_path):
    trt = install(monkeypatch, version="11.0.0")
    assert not hasattr(trt.BuilderFlag, "INT8") and not hasattr(trt, "IInt8EntropyCalibrator2")
    with pytest.raises(EdgeAffectError, match="no implicit INT8 calibration"):
        build_tensorrt_engine(onnx_path, tmp_path, int8_calibrator=object())
    with pytest.raises(EdgeAffectError, match="strongly typed"):
        build_tensorrt_engine(onnx_path, tmp_path, fp16=True)
    path = build_tensorrt_engine(onnx_path, tmp_path)
    assert ("Builder.create_network", 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)) in trt.calls
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
