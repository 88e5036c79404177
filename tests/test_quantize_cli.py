"""`edgeaffect export --int8 / --prune` and `bench --precision int8` on a tiny ERI run (real task, real reader)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from edgeaffect.cli import main
from edgeaffect.fileio import read_json, write_json

from .conftest import TINY_ERI, TINY_MODEL

pytestmark = pytest.mark.filterwarnings("ignore")


def _cli(*args) -> int:
    return main([str(a) for a in args])


def _make_run(data: Path, out: Path) -> Path:
    """An ERI run directory as `train eri` leaves it (checkpoint + manifest), without spending time training."""
    from edgeaffect.models import create_model
    from edgeaffect.runs import save_checkpoint

    torch.manual_seed(0)
    model = create_model("eri_dual_branch", **TINY_MODEL)
    save_checkpoint(out / "checkpoint.pt", model, "eri_dual_branch", dict(TINY_MODEL))
    write_json(out / "manifest.json", {"task": "eri", "spec": model.spec.to_dict(), "data": {"root": str(data)}})
    return out


@pytest.fixture(scope="module")
def eri_data16(tmp_path_factory):
    """16 clips (about 10 train): enough train samples for the 8-sample calibration floor."""
    from edgeaffect.data.synth.eri import ERISynthConfig, generate_eri

    root = tmp_path_factory.mktemp("eri16")
    generate_eri(root, ERISynthConfig(seed=3, **{**TINY_ERI, "clips": 16}), workers=1)
    return root


@pytest.fixture
def tiny_run(tiny_eri, tmp_path):
    return _make_run(tiny_eri, tmp_path / "run")


def _written(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*")}


@pytest.mark.parametrize("args, needle", [
    (["--int8", "--runtime", "tflite"], "unknown runtime 'tflite'"),
    (["--int8", "--runtime", "tensorrt"], "pip install 'edgeaffect[tensorrt]'"),
    (["--int8", "--calib-samples", "3"], "--calib-samples 3 is too few"),
    (["--int8", "--calib-method", "kl"], "unknown calibration method 'kl'"),
    (["--prune", "0"], "outside (0, 0.9]"),
    (["--prune", "0.95", "--int8"], "outside (0, 0.9]"),
    (["--calib-method", "entropy"], "go with --int8"),
])
def test_export_bad_input_is_one_line_and_writes_nothing(tiny_run, capsys, args, needle):
    before = _written(tiny_run)
    assert _cli("export", tiny_run, *args) == 1
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert _written(tiny_run) == before


def test_export_int8_needs_a_checkpoint_and_the_manifests_model(tiny_run, capsys):
    m = read_json(tiny_run / "manifest.json")
    m["spec"]["name"] = "zoo_fer"
    write_json(tiny_run / "manifest.json", m)
    assert _cli("export", tiny_run, "--int8") == 1
    assert "holds 'eri_dual_branch'" in capsys.readouterr().err
    (tiny_run / "checkpoint.pt").unlink()
    for args in (["--int8"], ["--prune", "0.4"]):
        assert _cli("export", tiny_run, *args) == 1
        assert "no checkpoint.pt" in capsys.readouterr().err
    assert sorted(p.name for p in tiny_run.iterdir()) == ["manifest.json"]


def test_export_int8_with_a_train_split_below_the_calibration_floor(tiny_run, capsys):
    """The tiny set's train split has 6 clips: too few to calibrate on, said in one line."""
    before = _written(tiny_run)
    assert _cli("export", tiny_run, "--int8", "--runtime", "onnxruntime") == 1
    err = capsys.readouterr().err.strip()
    assert "calibration needs at least 8" in err and len(err.splitlines()) == 1
    assert _written(tiny_run) == before                           # checked before the FP32 export too


def test_export_int8_writes_int8_onnx_with_its_manifest_entry_and_bench_finds_it(eri_data16, tmp_path):
    import onnx

    run = _make_run(eri_data16, tmp_path / "run")
    assert _cli("export", run, "--int8", "--runtime", "onnxruntime", "--calib-samples", "8", "--max-drop", "200") == 0
    assert (run / "model.onnx").exists()                          # the FP32 export still happens
    ops = {n.op_type for n in onnx.load(str(run / "model.int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    m = read_json(run / "manifest.json")
    q = m["quantize"]["onnxruntime"]
    assert q["artifact"] == "model.int8.onnx" and q["passed"]
    assert q["machine"]["cpu"] and isinstance(q["machine"]["isa"], list)   # the guard's verdict names its CPU
    assert q["drop_points"] == pytest.approx((q["fp32_metric"] - q["int8_metric"]) / 0.01, abs=1e-6)
    assert "model.int8.onnx" in m["artifacts"] and "model.onnx" in m["artifacts"]
    rep = read_json(run / "quantize/report.json")
    assert rep["calibration"]["samples"] == 8 and rep["calibration"]["split"] == "train"

    rc = _cli("bench", run, "--runtime", "onnxruntime", "--precision", "fp32,int8", "--batch", "1",
              "--budget", "0.2", "--rounds", "1", "--limit", "2", "--no-isolate")
    assert rc == 0
    rows = read_json(run / "bench.json")["rows"]
    assert {(r["runtime"], r["precision"]) for r in rows} >= {("onnxruntime", "fp32"), ("onnxruntime", "int8"),
                                                               ("torch", "fp32")}
    assert all(r["executed_precision"] == r["precision"] for r in rows)


@pytest.mark.slow
def test_export_prune_int8_writes_a_pruned_run_that_bench_takes_like_a_run(eri_data16, tmp_path):
    run = _make_run(eri_data16, tmp_path / "run")
    assert _cli("export", run, "--prune", "0.5", "--finetune-epochs", "1", "--int8", "--runtime",
                "onnxruntime,openvino", "--calib-samples", "8", "--max-drop", "200", "--format", "onnx,openvino") == 0
    pruned = run / "pruned-0.5"
    for rel in ("checkpoint.pt", "model.onnx", "model.int8.onnx", "openvino/model.xml", "openvino/model.int8.xml"):
        assert (pruned / rel).exists(), rel
    p = read_json(pruned / "manifest.json")
    assert p["pruning"]["after"]["params"] < p["pruning"]["before"]["params"]
    assert set(p["quantize"]) == {"onnxruntime", "openvino"}
    assert not (run / "model.int8.onnx").exists()                 # the unpruned run is left as it was
    assert _cli("bench", pruned, "--runtime", "onnxruntime,openvino", "--precision", "fp32,int8", "--batch", "1",
                "--budget", "0.2", "--rounds", "1", "--limit", "2", "--no-isolate") == 0
    rows = read_json(pruned / "bench.json")["rows"]
    assert {(r["runtime"], r["precision"]) for r in rows} == {
        ("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "int8"), ("torch", "fp32")}
    shutil.rmtree(run)
