"""Quantize stage: calibration data, ONNX Runtime/OpenVINO INT8, the accuracy guard, pruning, bad input."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import quantize_toy as toy  # noqa: E402  (registers the toy task + model)

from edgeaffect.errors import EdgeAffectError  # noqa: E402
from edgeaffect.fileio import read_json, write_json  # noqa: E402
from edgeaffect.quantize.calibration import select_calibration, stratified_indices  # noqa: E402
from edgeaffect.quantize.config import QuantConfig  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    torch.set_num_threads(1)
    return toy.make_run(tmp_path_factory.mktemp("qtoy"))


@pytest.fixture
def run(base_run, tmp_path):
    dest = tmp_path / "run"
    shutil.copytree(base_run, dest)
    return dest


def _cli(*args) -> int:
    from edgeaffect.cli import main

    return main(list(args))


# -- config + calibration --------------------------------------------------------------------------------
def test_presets_differ_where_the_backends_need_it():
    trt, ort = QuantConfig.preset("tensorrt"), QuantConfig.preset("onnxruntime")
    assert trt.activation_symmetric and not ort.activation_symmetric
    assert set(trt.op_types) == {"Conv", "MatMul", "Gemm"} and not trt.quantize_bias
    assert QuantConfig.preset("openvino").runtime == "openvino"
    assert QuantConfig.preset("tensorrt", calib_samples=64).calib_samples == 64
    with pytest.raises(EdgeAffectError, match="too few"):
        QuantConfig(calib_samples=2)
    with pytest.raises(EdgeAffectError, match="unknown calibration method"):
        QuantConfig(calib_method="kl")


def test_stratified_indices_follow_group_sizes_and_cover_every_group():
    groups = np.array([0] * 80 + [1] * 15 + [2] * 5)
    idx, strata = stratified_indices(groups, 20, seed=1)
    assert len(idx) == len(set(idx)) == 20
    assert strata == {"0": 16, "1": 3, "2": 1}
    assert all(groups[i] == 2 for i in idx if i >= 95)
    small, s2 = stratified_indices(groups, 3, seed=0)
    assert s2 == {"0": 1, "1": 1, "2": 1}


def test_calibration_set_holds_real_samples(base_run):
    task = toy.ToyTask()
    manifest = read_json(base_run / "manifest.json")
    ds = task.dataset(Path(manifest["data"]["root"]), "train", toy.ToyNet().spec)
    calib = select_calibration(task, ds, toy.ToyNet().spec, 40, seed=0)
    assert len(calib) == 40 and sorted(calib.strata) == ["0", "1", "2", "3"]
    i = calib.indices[7]
    np.testing.assert_array_equal(calib.feeds[7]["image"][0], ds[i]["image"])
    batches = list(calib.batches(16))
    assert [len(b["audio"]) for b in batches] == [16, 16, 8]
    other = select_calibration(task, ds, toy.ToyNet().spec, 40, seed=1)
    assert other.fingerprint() != calib.fingerprint()


# -- INT8 end to end ---------------------------------------------------------------------------------------
def test_int8_onnxruntime_and_openvino_write_bench_names_and_record_numbers(run):
    import onnx

    from edgeaffect.quantize.pipeline import quantize_run

    rep = quantize_run(run, ["onnxruntime", "openvino"], QuantConfig(calib_samples=32, max_drop=5.0))
    m = onnx.load(str(run / "model.int8.onnx"))
    ops = {n.op_type for n in m.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # per-channel weights: a weight DequantizeLinear carries one scale per output channel
    inits = {i.name: i for i in m.graph.initializer}
    scales = [onnx.numpy_helper.to_array(inits[n.input[1]]) for n in m.graph.node
              if n.op_type == "DequantizeLinear" and n.input[0] in inits and n.input[1] in inits]
    assert any(s.ndim == 1 and s.size > 1 for s in scales)
    assert (run / "openvino" / "model.int8.xml").exists() and (run / "openvino" / "model.int8.bin").exists()
    for rt in ("onnxruntime", "openvino"):
        r = rep["runtimes"][rt]
        assert r["passed"] and r["drop_points"] <= 5.0
        assert r["artifact"] in ("model.int8.onnx", "openvino/model.int8.xml")
    manifest = read_json(run / "manifest.json")
    assert manifest["quantize"]["onnxruntime"]["int8_metric"] == rep["runtimes"]["onnxruntime"]["int8_metric"]
    assert "model.int8.onnx" in manifest["artifacts"]
    assert rep["calibration"]["samples"] == 32
    assert (run / rep["runtimes"]["onnxruntime"]["ranges"]).exists()   # the inspectable calibration stage
    # every conv of the OpenVINO INT8 IR, the toy's depthwise ones included, runs int8 in the compiled graph
    from edgeaffect.runtimes.openvino.int8 import ov_runtime

    with ov_runtime(run / "openvino" / "model.int8.xml", precision="int8") as ov:
        layers = ov.compute_layers()
    kinds = {p for p, _ in layers}
    assert len(layers) >= 8 and kinds == {"int8"}, layers
    for rt in ("onnxruntime", "openvino"):
        cov = rep["runtimes"][rt]["int8_coverage"]
        assert cov["macs"] >= 0.95 and manifest["quantize"][rt]["int8_coverage"] == cov


def test_report_ranks_layers_even_when_plain_int8_passed(run, capsys):
    from edgeaffect.quantize.pipeline import quantize_run

    rep = quantize_run(run, ["onnxruntime"], QuantConfig(calib_samples=16, max_drop=100.0))
    assert rep["runtimes"]["onnxruntime"]["sensitivity"] == []          # the guard did not need a ranking
    capsys.readouterr()
    assert _cli("quantize", "report", str(run)) == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err                      # tables on stdout, notes on stderr
    assert "most sensitive tensors" in text and "kept in float: nothing" in text and "attempt 0" in text
    rows = read_json(run / "quantize/report.json")["runtimes"]["onnxruntime"]["sensitivity"]
    assert rows and {r["kind"] for r in rows} == {"activation", "weight"}
    assert rows[0]["output_nsr"] >= rows[-1]["output_nsr"] and rows[0]["tensor"] in text


def test_int8_artifacts_carry_the_model_spec(run):
    """edgeaffect.load on an INT8 artifact knows the model's spec (names, labels, activation), as for FP32."""
    import openvino as ov

    import edgeaffect
    from edgeaffect.quantize.pipeline import quantize_run
    from edgeaffect.runtimes.openvino import read_ov_spec

    quantize_run(run, ["onnxruntime", "openvino"], QuantConfig(calib_samples=16, max_drop=100.0))
    want = toy.ToyNet().spec
    xml = run / "openvino" / "model.int8.xml"
    assert read_ov_spec(ov.Core().read_model(str(xml))) == want
    for path, rt in ((xml, "openvino"), (run / "model.int8.onnx", "onnxruntime")):
        m = edgeaffect.load(path, runtime=rt)
        try:
            assert m.spec == want and m.spec.labels == ("a", "b", "c", "d") and m.spec.activation == "softmax"
        finally:
            m.close()


def _inject_outlier(run: Path, scale: float = 2000.0) -> None:
    """Function-preserving rescale: one channel of the video features x scale, its consumer weights / scale.

    FP32 outputs are unchanged, but the per-tensor activation scale of every tensor on the path from that
    channel to the head now spans 2000x the other channels, which INT8 then rounds to a few levels.
    """
    from edgeaffect.runs import load_model, save_checkpoint

    m = load_model(run / "checkpoint.pt")
    x = {k: torch.from_numpy(v) for k, v in m.spec.dummy_inputs(4).items()}
    before = m(*x.values())
    with torch.no_grad():
        bn = m.video[2].pw[1]
        bn.weight[0] *= scale
        bn.bias[0] *= scale
        m.head[0].weight[:, 0] /= scale
    torch.testing.assert_close(m(*x.values()), before, rtol=1e-3, atol=1e-3)
    save_checkpoint(run / "checkpoint.pt", m, "qtoy_net", {})


def test_guard_keeps_the_outlier_path_in_float_until_the_drop_is_within_bounds(run):
    from edgeaffect.quantize.pipeline import quantize_run

    _inject_outlier(run)
    rep = quantize_run(run, ["onnxruntime"], QuantConfig(calib_samples=32, max_drop=2.0))
    r = rep["runtimes"]["onnxruntime"]
    first = r["attempts"][0]
    assert first["kept_float"] == [] and first["drop_points"] > 10       # plain INT8 is broken
    assert r["passed"] and r["drop_points"] <= 2.0                          # the guard brought it back
    chosen = next(a for a in r["attempts"] if a["kept_float"] == r["kept_float"])
    accepted = [a for a in r["attempts"] if a["drop_points"] <= 2.0]
    assert chosen["float_macs"] == min(a["float_macs"] for a in accepted)   # the cheapest accepted float set
    import onnx

    ops = {n.name: n.op_type for n in onnx.load(str(run / "quantize/onnxruntime/prepared.onnx")).graph.node}
    kept_ops = {ops[name] for name in r["kept_float"]}
    assert "Concat" in kept_ops and kept_ops & {"Gemm", "MatMul"}          # the head fed by the outlier tensor
    assert r["sensitivity"][0]["layers"][0] in r["kept_float"]
    assert len(r["kept_float"]) < 12                                         # not simply everything in float
    manifest = read_json(run / "manifest.json")["quantize"]["onnxruntime"]
    assert manifest["kept_float"] == r["kept_float"] and manifest["attempts"] == len(r["attempts"])


def test_guard_that_cannot_pass_writes_no_artifact_and_says_why(run):
    from edgeaffect.quantize.pipeline import quantize_run

    _inject_outlier(run)
    rep = quantize_run(run, ["onnxruntime"], QuantConfig(calib_samples=32, max_drop=2.0, max_float_layers=1))
    r = rep["runtimes"]["onnxruntime"]
    assert not r["passed"] and r["artifact"] is None
    assert "cannot reach a drop of 2" in r["message"]
    assert not (run / "model.int8.onnx").exists()
    assert (run / r["best_attempt"]).exists()


# -- bad input ---------------------------------------------------------------------------------------------
def _written(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*") if "stages" not in p.parts}


@pytest.mark.parametrize("args, needle", [
    (["--runtime", "tflite"], "unknown runtime 'tflite'"),
    (["--runtime", "tensorrt"], "pip install 'edgeaffect[tensorrt]'"),
    (["--calib-samples", "3"], "too few"),
    (["--calib-method", "kl"], "unknown calibration method"),
])
def test_int8_bad_input_is_one_line_and_writes_nothing(run, capsys, args, needle):
    before = _written(run)
    assert _cli("quantize", "int8", str(run), *args) == 1
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert _written(run) == before


def test_run_without_checkpoint_or_with_another_models_manifest(run, capsys):
    m = read_json(run / "manifest.json")
    m["spec"]["name"] = "eri_dual_branch"
    write_json(run / "manifest.json", m)
    assert _cli("quantize", "int8", str(run)) == 1
    assert "holds 'qtoy_net'" in capsys.readouterr().err
    (run / "checkpoint.pt").unlink()
    assert _cli("quantize", "int8", str(run)) == 1
    assert "no checkpoint.pt" in capsys.readouterr().err
    assert not (run / "quantize").exists()


@pytest.mark.parametrize("ratio", ["0", "0.95", "-0.1"])
def test_prune_ratio_outside_range(run, capsys, ratio):
    assert _cli("quantize", "prune", str(run), "--ratio", ratio) == 1
    assert "outside (0, 0.9]" in capsys.readouterr().err
    assert not list(run.glob("pruned-*"))


# -- pruning -----------------------------------------------------------------------------------------------
def test_prune_finetune_reload_and_quantize_the_pruned_run(run):
    from edgeaffect.quantize.pipeline import quantize_run
    from edgeaffect.runs import open_run
    from edgeaffect.quantize.prune import prune_run

    out = prune_run(run, 0.5, finetune_epochs=2, branch_ratios={"audio": 0.25}, distill=0.3, lr=2e-3)
    assert out == run / "pruned-0.5"
    info = read_json(out / "manifest.json")["pruning"]
    assert info["after"]["params"] < 0.8 * info["before"]["params"]
    assert info["after"]["gflops"] < 0.6 * info["before"]["gflops"]
    assert info["after"]["metric"] > 0.5 and len(info["history"]) == 2      # fine-tuned, well above chance (0.25)
    _, model = open_run(out)
    assert model.video[0][0].out_channels == 8                    # 16 -> 8 channels, a multiple of 8
    assert model.audio[0].out_channels == 24                      # the audio branch used its own ratio
    assert model.head[2].out_features == toy.N_CLASSES            # the output layer is protected
    feeds = {k: torch.from_numpy(v) for k, v in model.spec.dummy_inputs(3).items()}
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["pruning"]["structure"]["video.0.0"]["out_channels"] == 8
    with torch.no_grad():
        assert model(*feeds.values()).shape == (3, toy.N_CLASSES)
    rep = quantize_run(out, ["onnxruntime"], QuantConfig(calib_samples=16, max_drop=5.0))
    assert (out / "model.int8.onnx").exists() and rep["runtimes"]["onnxruntime"]["passed"]


def test_taylor_importance_prunes_by_gradient(run):
    from edgeaffect.runs import open_run
    from edgeaffect.quantize.prune import prune_run

    out = prune_run(run, 0.25, importance="taylor", finetune_epochs=0)
    _, model = open_run(out)
    assert model.video[1].pw[0].out_channels == 24


# -- TensorRT (through the fake tensorrt/pycuda modules) -----------------------------------------------
@pytest.fixture
def fake_trt10(monkeypatch):
    from fakes import install

    return install(monkeypatch, version="10.3.0")


def _calib(run: Path, n: int = 16, seed: int = 0):
    task = toy.ToyTask()
    root = Path(read_json(run / "manifest.json")["data"]["root"])
    return select_calibration(task, task.dataset(root, "train", toy.ToyNet().spec), toy.ToyNet().spec, n, seed=seed)


def test_implicit_int8_calibrator_feeds_device_buffers_and_reuses_its_cache(run, fake_trt10, tmp_path):
    from edgeaffect.export import export_onnx
    from edgeaffect.runtimes.tensorrt.int8 import CACHE, build_implicit
    from edgeaffect.runs import load_model

    onnx_path = export_onnx(load_model(run / "checkpoint.pt"), tmp_path / "model.onnx")
    calib = _calib(run, 16)
    engine, hit = build_implicit(onnx_path, tmp_path / "tensorrt", calib, batch_size=4)
    calls = [c for c in fake_trt10.calls if c[0].startswith("calibrator.")]
    assert calls[0] == ("calibrator.read_calibration_cache", False) and not hit
    batches = [c for c in calls[1:] if c[0] != "calibrator.batch_shape"]   # TensorRT 10 never asks get_batch_size
    assert batches == ([("calibrator.get_batch", 2)] * 4 + [("calibrator.get_batch", None)]   # 2 inputs, 16/4 batches
                       + [("calibrator.write_calibration_cache", calls[-1][1])])
    assert engine.name.endswith(".int8.b1-4-8.engine")   # opt batch = calibration batch
    cache = tmp_path / "tensorrt" / CACHE
    assert cache.exists() and read_json(cache.with_name(CACHE + ".json"))["batches"] == 4

    fake_trt10.calls.clear()
    _, hit = build_implicit(onnx_path, tmp_path / "tensorrt", calib, batch_size=4)
    assert hit and not any(c[0] == "calibrator.get_batch" for c in fake_trt10.calls)

    fake_trt10.calls.clear()                       # other calibration data: the cache must not be used
    _, hit = build_implicit(onnx_path, tmp_path / "tensorrt", _calib(run, 16, seed=5), batch_size=4)
    assert not hit and ("calibrator.get_batch", 2) in fake_trt10.calls


def test_implicit_tensorrt_calibration_is_reachable_from_the_cli_and_scored(run, fake_trt10):
    """`quantize int8 --runtime tensorrt --trt-calibration implicit`: TensorRT's calibrator builds the engine,
    which is then scored against FP32 on the val samples; the report says so."""
    assert _cli("quantize", "int8", str(run), "--runtime", "tensorrt", "--trt-calibration", "implicit",
                "--calib-samples", "16", "--max-drop", "50") == 0
    r = read_json(run / "quantize" / "report.json")["runtimes"]["tensorrt"]
    assert r["config"]["trt_calibration"] == "implicit" and r["engine"].endswith(".int8.b1-8-8.engine")
    assert (run / r["engine"]).is_file() and r["passed"] and "within 50" in r["message"]
    assert r["int8_metric"] is not None and r["agreement"]["kind"] and r["attempts"][0]["kept_float"] == []
    assert any(c[0] == "calibrator.get_batch" for c in fake_trt10.calls)          # TensorRT itself calibrated
    assert not (run / "tensorrt" / "model.int8.qdq.onnx").exists()                 # no explicit Q/DQ path taken
    assert _cli("quantize", "int8", str(run), "--trt-calibration", "sideways") == 1


def test_tensorrt_runtime_writes_trt_friendly_qdq_and_an_engine(run, fake_trt10):
    import onnx

    from edgeaffect.quantize.pipeline import quantize_run

    rep = quantize_run(run, ["tensorrt"], QuantConfig(calib_samples=16, max_drop=5.0))
    r = rep["runtimes"]["tensorrt"]
    assert r["artifact"] == "tensorrt/model.int8.qdq.onnx" and r["engine"].endswith(".int8.b1-1-8.engine")
    m = onnx.load(str(run / r["artifact"]))
    inits = {i.name for i in m.graph.initializer}
    quantized_consumers = {n.op_type for n in m.graph.node for d in m.graph.node
                           if d.op_type == "DequantizeLinear" and d.output[0] in n.input}
    assert quantized_consumers <= {"Conv", "MatMul", "Gemm"}            # Q/DQ only in front of weighted ops
    zero_points = [i for i in m.graph.initializer if "zero_point" in i.name]
    assert zero_points and all(onnx.numpy_helper.to_array(z).max() == 0 for z in zero_points)  # symmetric
    assert ("Builder.build_serialized_network",) in fake_trt10.calls or any(
        c[0] == "Builder.build_serialized_network" for c in fake_trt10.calls)


def test_tensorrt11_refuses_implicit_calibration(run, monkeypatch, tmp_path):
    from fakes import install

    from edgeaffect.runtimes.tensorrt.int8 import build_implicit

    install(monkeypatch, version="11.0.0")
    with pytest.raises(EdgeAffectError, match="no implicit INT8 calibration"):
        build_implicit(tmp_path / "model.onnx", tmp_path, _calib(run, 8))


def test_export_with_a_fixed_batch_still_quantizes(run):
    """`export --batch 2 --int8`: the FP32 files keep batch 2; INT8 starts from a dynamic-batch export,
    since calibration feeds single samples and the guard scores the whole val split."""
    import onnx

    assert _cli("export", str(run), "--batch", "2", "--format", "onnx", "--int8", "--runtime", "onnxruntime",
                "--calib-samples", "16", "--max-drop", "100") == 0

    def batch_dim(path):
        return onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0]

    assert batch_dim(run / "model.onnx").dim_value == 2
    assert batch_dim(run / "model.int8.onnx").dim_param
    rep = read_json(run / "quantize/report.json")
    assert rep["fp32_onnx"] == "quantize/model.dynamic.onnx" and rep["eval_samples"] == 64


def _randomize_norms(model, seed: int = 0):
    """Distinct per-channel BatchNorm statistics, so a pruned channel can be found again by its values."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.weight.data = 0.5 + torch.rand(n, generator=gen)
            m.bias.data = 0.2 * torch.randn(n, generator=gen)
            m.running_mean.data = 0.1 * torch.randn(n, generator=gen)
            m.running_var.data = 0.5 + torch.rand(n, generator=gen)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            m.bias.data = 0.1 * torch.randn(m.out_features, generator=gen)


def _silence_removed_channels(original, pruned):
    """In ``original``, zero every channel that pruning removed (its BatchNorm's scale and shift, or a
    BN-less Linear's row and bias): what is left computes exactly what the pruned model should."""
    import torch
    from torch import nn

    pruned_modules = dict(pruned.named_modules())
    for name, m in original.named_modules():
        p = pruned_modules[name]
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and p.num_features < m.num_features:
            keep = torch.isin(m.running_mean, p.running_mean)
            assert int(keep.sum()) == p.num_features
            m.weight.data[~keep] = 0
            m.bias.data[~keep] = 0
        elif isinstance(m, nn.Linear) and p.out_features < m.out_features:
            keep = torch.isin(m.bias, p.bias)
            assert int(keep.sum()) == p.out_features
            m.weight.data[~keep] = 0
            m.bias.data[~keep] = 0


@pytest.mark.parametrize("name, overrides", [
    ("ravdess_ia", dict(face_size=48, frames=4)), ("ravdess_it", dict(face_size=48, frames=4)),
    ("ravdess_lt", dict(face_size=48, frames=4)), ("va_jca_edge", dict(subclips=4)),
])
def test_attention_fusion_models_prune_and_compute_what_they_kept(name, overrides):
    """torch-pruning reads the fusion's attention (weights multiplied over time steps or positions) as
    channel couplings, and cannot map indices through EfficientFace's channel split and shuffle; the
    models declare those widths unprunable. The pruned model must compute exactly the original with the
    removed channels silenced: a wrong coupling would break this."""
    import copy

    import torch

    from edgeaffect.models import create_model
    from edgeaffect.quantize.prune import count, prune_model

    original = create_model(name, **overrides).eval()
    _randomize_norms(original)
    pruned = copy.deepcopy(original)
    prune_model(pruned, 0.4)
    assert count(pruned, pruned.spec)["gflops"] < 0.75 * count(original, original.spec)["gflops"]
    _silence_removed_channels(original, pruned)
    feeds = [torch.from_numpy(v) for v in original.spec.dummy_inputs(2, seed=3).values()]
    with torch.no_grad():
        expected, got = original(*feeds), pruned(*feeds)
    expected, got = (expected,) if torch.is_tensor(expected) else expected, (got,) if torch.is_tensor(got) else got
    for e, g in zip(expected, got):
        assert g.shape == e.shape
        assert torch.allclose(g, e, atol=1e-4, rtol=1e-4), float((g - e).abs().max())


@pytest.mark.slow
def test_a_graph_torch_pruning_cannot_build_is_one_clear_error():
    """The reference VA fusion's BiLSTM (with its learnt initial state) breaks torch-pruning's graph
    building with a TypeError; the user gets one line, not a traceback."""
    from edgeaffect.models import create_model
    from edgeaffect.quantize.prune import prune_model

    model = create_model("va_jca", subclips=2)
    with pytest.raises(EdgeAffectError, match="torch-pruning cannot prune va_jca"):
        prune_model(model, 0.4)


def test_ravdess_pruning_keeps_the_widths_that_cross_a_channel_split_or_shuffle():
    from edgeaffect.models import create_model
    from edgeaffect.models.ravdess import InvertedResidual
    from edgeaffect.quantize.prune import prune_model

    original = create_model("ravdess_ia", face_size=48, frames=4)
    after = dict(prune_model(create_model("ravdess_ia", face_size=48, frames=4), 0.4).named_modules())
    units = [(name, m) for name, m in original.named_modules() if isinstance(m, InvertedResidual)]
    assert len(units) == 16
    for name, unit in units:
        assert after[name].branch2[5].out_channels == unit.branch2[5].out_channels
        assert after[name].branch2[0].out_channels < unit.branch2[0].out_channels


@pytest.mark.parametrize("streams", ["shared", "separate"])
def test_temporal_shift_models_prune_and_keep_shifting(streams):
    """torch-pruning cannot trace the shift's slices (it never returned); bypassed while tracing, it must
    still shift the pruned channels afterwards. With a network per fusion stream, both are pruned."""
    import torch

    from edgeaffect.models import count_parameters, create_model
    from edgeaffect.models.body import TemporalShift
    from edgeaffect.quantize.prune import prune_model

    model = create_model("body_tsm_mobilenetv2", input="fusion", fusion_streams=streams, segments=3, size=32,
                         width=0.35).eval()
    before = count_parameters(model)
    nets = [model.base_model] + ([model.face_base_model] if streams == "separate" else [])
    widths = [count_parameters(n) for n in nets]
    prune_model(model, 0.4)
    assert count_parameters(model) < 0.7 * before
    assert all(count_parameters(n) < 0.7 * w for n, w in zip(nets, widths))
    shifts = [m for m in model.modules() if isinstance(m, TemporalShift)]
    assert shifts and not any(m.bypass for m in shifts)
    feeds = [torch.from_numpy(v) for v in model.spec.dummy_inputs(2, seed=1).values()]
    with torch.no_grad():
        shifted = model(*feeds)
        for m in shifts:
            m.bypass = True
        unshifted = model(*feeds)
    assert tuple(shifted.shape) == (2, 8)
    assert not torch.allclose(shifted, unshifted, rtol=1e-3, atol=0)  # outputs are tiny: the head starts near 0


def test_the_quantizers_per_tensor_fallback_for_norm_weights_is_not_printed(tmp_path):
    """A LayerNorm scale (rank 1) cannot be split per channel; ONNX Runtime logs one root warning per weight and
    probe (52 lines for the ERI model) and quantizes it per tensor. Ours passes the weight and keeps quiet."""
    import logging

    import onnx

    from edgeaffect.runtimes.onnxruntime import int8 as ort_int8
    from edgeaffect.quantize.calibration import CalibrationSet

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.norm = torch.nn.Linear(8, 8), torch.nn.LayerNorm(8)

        def forward(self, x):
            return self.norm(self.fc(x))

    torch.onnx.export(M().eval(), (torch.randn(2, 8),), str(tmp_path / "m.onnx"), input_names=["x"],
                      output_names=["y"], dynamo=False)
    ort_int8.prepare(tmp_path / "m.onnx", tmp_path / "p.onnx")
    rng = np.random.default_rng(0)
    calib = CalibrationSet([{"x": rng.random((2, 8), dtype=np.float32)} for _ in range(8)], list(range(8)), "train")
    cfg = QuantConfig(calib_samples=8)
    ort_int8.calibrate(tmp_path / "p.onnx", calib, cfg, tmp_path / "r.json")
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    keep = Keep()
    logging.getLogger().addHandler(keep)
    try:
        ort_int8.quantize(tmp_path / "p.onnx", tmp_path / "r.json", tmp_path / "q.onnx", cfg)
        logging.warning("a warning of anyone else")     # the filter is gone afterwards
    finally:
        logging.getLogger().removeHandler(keep)
    assert not [m for m in seen if "out-of-range" in m] and "a warning of anyone else" in seen
    assert "QuantizeLinear" in {n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node}


def test_a_decision_on_few_samples_or_a_zero_metric_says_its_evidence_is_weak():
    from edgeaffect.quantize.guard import weak_evidence

    strong = weak_evidence(256, 0.41, {"agreement": 0.99, "kind": "pearson"})
    few = weak_evidence(4, 0.41, {"agreement": 0.99, "kind": "pearson"})
    zero = weak_evidence(64, 0.0, {"agreement": 1.0, "kind": "top-1"})
    assert strong == ""
    assert few.startswith("weak evidence: only 4 samples") and "0.990 (pearson)" in few
    assert "an fp32 metric of 0" in zero and "only" not in zero and "1.000 (top-1)" in zero


def test_export_int8_prints_the_guards_caveat(run, capsys, monkeypatch):
    """A decision on fewer samples than the guard trusts: the INT8 table is followed by the caveat."""
    from edgeaffect.quantize import guard

    monkeypatch.setattr(guard, "WEAK_SAMPLES", 1000)      # the toy val split has 64
    assert _cli("export", str(run), "--format", "onnx", "--int8", "--runtime", "onnxruntime", "--calib-samples", "16",
                "--max-drop", "50") == 0
    err = capsys.readouterr().err.replace("\n", " ")
    assert "onnxruntime: weak evidence: only" in err


def test_the_openvino_int8_guard_scores_the_static_batch_bench_runs(run, monkeypatch):
    """bench compiles its batch-8 rows for a static batch; the guard scores the INT8 IR compiled the same way."""
    from edgeaffect.quantize import guard
    from edgeaffect.quantize.pipeline import quantize_run
    from edgeaffect.runtimes.openvino import int8 as ov_int8
    from edgeaffect.runtimes import load

    seen, real = [], ov_int8.ov_runtime

    def spy(model_or_path, *args, **kwargs):
        rt = real(model_or_path, *args, **kwargs)
        seen.append((rt.precision, [t.shape[0] for t in rt.inputs]))
        return rt

    monkeypatch.setattr(ov_int8, "ov_runtime", spy)
    quantize_run(run, ["openvino"], QuantConfig(calib_samples=16, max_drop=50.0))
    scored = [batches for precision, batches in seen if precision == "int8"]
    assert scored and all(b == [guard.SCORED_BATCH] * len(b) for b in scored)
    with load(run / "openvino" / "model.int8.xml") as rt:          # the published IR keeps its dynamic batch
        assert rt.inputs[0].shape[0] == "B"
