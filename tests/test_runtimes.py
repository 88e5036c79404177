"""One contract over every runtime on a tiny two-input model (TensorRT through the fakes)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import edgeaffect
from edgeaffect.errors import EdgeAffectError, MissingDependencyError
from edgeaffect.export import export_onnx
from edgeaffect.runtimes.openvino.export import export_openvino
from edgeaffect.runtimes import available, get_runtime, load, registry, runtime_for
from tests.fakes import install
from tests.fakes.tiny_model import make_run, tiny_av_test

RUNTIMES = ["torch", "onnxruntime", "openvino", "tensorrt"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("run"))
    model = tiny_av_test()
    export_onnx(model, run / "model.onnx", exporter="legacy")
    export_openvino(run / "model.onnx", run / "openvino" / "model.xml")
    return run


@pytest.fixture(scope="module")
def reference():
    model = tiny_av_test()

    def ref(feeds):
        with torch.no_grad():
            return model(*(torch.from_numpy(feeds[n]) for n in model.spec.input_names)).numpy()

    return ref


@pytest.fixture(params=RUNTIMES)
def rt(request, run_dir, monkeypatch):
    name = request.param
    if name == "tensorrt":
        from edgeaffect.runtimes.tensorrt.engine import build_engine as build_tensorrt_engine

        install(monkeypatch)
        path = build_tensorrt_engine(run_dir / "model.onnx", run_dir / "tensorrt", max_batch=8)
    else:
        if name not in available():
            pytest.skip(f"{name} is not installed")
        path = {"torch": run_dir / "checkpoint.pt", "onnxruntime": run_dir / "model.onnx",
                "openvino": run_dir / "openvino" / "model.xml"}[name]
    runtime = load(path, runtime=name)
    yield runtime
    runtime.close()


@pytest.mark.parametrize("batch", [1, 8])
def test_same_outputs_as_torch(rt, reference, batch):
    feeds = rt.spec.dummy_inputs(batch=batch, seed=batch)
    out = rt.infer(feeds)
    assert list(out) == ["intensities"]
    assert out["intensities"].shape == (batch, 3) and out["intensities"].dtype == np.float32
    np.testing.assert_allclose(out["intensities"], reference(feeds), atol=1e-5)


def test_repeated_calls_and_changing_batch_stay_correct(rt, reference):
    for batch in (2, 8, 1, 8):
        feeds = rt.spec.dummy_inputs(batch=batch, seed=10 + batch)
        np.testing.assert_allclose(rt.infer(feeds)["intensities"], reference(feeds), atol=1e-5)


def test_metadata_and_spec_travel_with_the_artifact(rt):
    assert [t.name for t in rt.inputs] == ["video", "audio"]
    assert rt.inputs[0].shape == ("B", 2, 3, 8, 8) and rt.inputs[1].shape == ("B", 4, 6)
    assert [t.name for t in rt.outputs] == ["intensities"]
    assert rt.spec is not None and rt.spec.name == "tiny_av_test" and rt.spec.labels == ("a", "b", "c")


@pytest.mark.parametrize("mutate, message", [
    (lambda f: f.pop("audio"), r"missing input 'audio' \(expected shape \[B,4,6\] float32\)"),
    (lambda f: f.update(audio=f["audio"].astype(np.float64)), r"'audio' has dtype float64, expected float32"),
    (lambda f: f.update(video=f["video"][:, :, :, :7]), r"'video' has shape \[2, 2, 3, 7, 8\], expected \[B,2,3,8,8\]"),
    (lambda f: f.update(audio=f["audio"][:1]), r"'audio' has batch 1 but 'video' has batch 2"),
    (lambda f: f.update(extra=f["audio"]), r"unknown input 'extra'"),
])
def test_bad_feeds_are_one_line_errors(rt, mutate, message):
    feeds = rt.spec.dummy_inputs(batch=2)
    mutate(feeds)
    with pytest.raises(EdgeAffectError, match=message) as info:
        rt.infer(feeds)
    assert "\n" not in str(info.value)


def test_lifecycle(rt):
    feeds = rt.spec.dummy_inputs(batch=1)
    with rt as same:
        assert same is rt and same.infer(feeds)["intensities"].shape == (1, 3)
    assert rt.closed
    with pytest.raises(EdgeAffectError, match="closed"):
        rt.infer(feeds)
    rt.close()  # idempotent


def test_static_batch_openvino_reports_its_batch(run_dir):
    if "openvino" not in available():
        pytest.skip("openvino is not installed")
    xml = export_openvino(run_dir / "model.onnx", run_dir / "static" / "model.xml", batch=4)
    with load(xml) as rt:
        assert rt.inputs[0].shape == (4, 2, 3, 8, 8)
        with pytest.raises(EdgeAffectError, match=r"expected \[4,2,3,8,8\]"):
            rt.infer(rt.spec.dummy_inputs(batch=2))
        assert rt.infer(rt.spec.dummy_inputs(batch=4))["intensities"].shape == (4, 3)
    # a dynamic IR reshaped at load time behaves the same
    with load(run_dir / "openvino" / "model.xml", batch=4) as rt:
        assert rt.inputs[1].shape == (4, 4, 6)


def test_openvino_unpins_threads_when_it_runs_on_fewer_than_the_cores(run_dir):
    """Two one-thread models side by side (the demo's detector and model, preprocessing workers) must not be
    pinned to the same first core; a model given every core keeps the plugin's pinning."""
    if "openvino" not in available():
        pytest.skip("openvino is not installed")
    from edgeaffect.precision import physical_cores

    cores = physical_cores()
    print(f"physical cores: {cores}")
    xml = run_dir / "openvino" / "model.xml"
    if cores > 1:
        with load(xml, threads=1) as rt:
            assert rt.compiled.get_property("ENABLE_CPU_PINNING") is False
    with load(xml, threads=cores) as rt, load(xml) as default:
        assert rt.compiled.get_property("ENABLE_CPU_PINNING") == default.compiled.get_property("ENABLE_CPU_PINNING")
        assert rt.compiled.get_property("INFERENCE_NUM_THREADS") == cores


def test_registry_picks_by_suffix_and_loads_run_folders(run_dir):
    assert runtime_for("m.onnx") == "onnxruntime" and runtime_for("m.xml") == "openvino"
    assert runtime_for("x/NVIDIA-Orin-trt10.3.0.engine") == "tensorrt" and runtime_for("checkpoint.pt") == "torch"
    with pytest.raises(EdgeAffectError, match="no runtime opens .tflite"):
        runtime_for("m.tflite")
    with pytest.raises(EdgeAffectError, match="opens .xml, .onnx files, not checkpoint.pt"):
        load(run_dir / "checkpoint.pt", runtime="openvino")
    with pytest.raises(EdgeAffectError, match="unknown runtime 'tflite'"):
        load(run_dir / "model.onnx", runtime="tflite")
    with edgeaffect.load(run_dir) as rt:  # a run folder opens its model.onnx
        assert rt.name == "onnxruntime" and rt.path.name == "model.onnx"
    with edgeaffect.load(run_dir, runtime="openvino") as rt:
        assert rt.path.name == "model.xml"


def test_missing_package_names_the_extra(monkeypatch, run_dir):
    real = registry._find_spec
    monkeypatch.setattr(registry, "_find_spec", lambda n: None if n == "openvino" else real(n))
    assert "openvino" not in available()
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgeaffect\[openvino\]'"):
        load(run_dir / "openvino" / "model.xml")
    assert get_runtime("tensorrt").extra == "tensorrt"


def test_available_and_top_level_import_load_no_backend():
    code = ("import sys, edgeaffect, edgeaffect.runtimes as r; r.available(); "
            "print(sorted(m for m in ('torch','onnxruntime','openvino','onnx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(EdgeAffectError, match="no model file"):
        load(tmp_path / "nope.onnx")


def test_onnxruntime_provider_choice():
    from edgeaffect.runtimes.onnxruntime import choose_providers

    installed = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers("auto", installed) == installed
    assert choose_providers(None, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers("cuda,cpu", installed) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(EdgeAffectError, match="CUDAExecutionProvider is not available here"):
        choose_providers("cuda", ["CPUExecutionProvider"])
