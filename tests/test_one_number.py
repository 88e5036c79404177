"""One artifact, one number: eval, bench, export parity and the INT8 guard score a file the same way
(the same samples, batch and precision), eval labels the precision the file holds, and JSON is strict."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from edgeaffect.cli import main
from edgeaffect.fileio import read_json
from tests.fakes.tiny_model import make_dataset, make_run

pytestmark = pytest.mark.filterwarnings("ignore")
FAST = dict(budget_s=0.1, rounds=1, warmup=1, threads=1, isolate=False)


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """A tiny run (Pearson-scored: a metric that moves with every output) exported to ONNX and OpenVINO, and
    INT8 for both through the guard; its train split is a copy of val (calibration reads train)."""
    from edgeaffect.export import export_run
    from edgeaffect.quantize.config import QuantConfig
    from edgeaffect.quantize.pipeline import quantize_run

    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("one")
    data = make_dataset(base / "data", n=21)          # 21: the last batch of 8 is padded
    shutil.copy(data / "val.npz", data / "train.npz")
    run = make_run(base / "run", data=data)
    export_run(run, ["onnx", "openvino"], exporter="legacy")
    quantize_run(run, ["onnxruntime", "openvino"], QuantConfig(calib_samples=8, max_drop=100.0))
    return run


def _eval_json(path, tmp_path, *args) -> dict:
    out = tmp_path / "eval.json"
    assert main(["eval", str(path), "--json", str(out), *args]) == 0
    return json.loads(out.read_text(), parse_constant=_refuse)


def _refuse(name):
    raise ValueError(f"non-strict JSON constant {name}")


def _bench_metrics(run, runtime, precision) -> set:
    from edgeaffect.bench import BenchConfig, bench_run

    rows = bench_run(run, [runtime], [precision], cfg=BenchConfig(batches=(1, 3, 8), **FAST), show_progress=False)
    return {r["metric"] for r in rows if r["runtime"] == runtime and r["precision"] == precision}


@pytest.mark.parametrize("runtime, rel", [("openvino", "openvino/model.int8.xml"), ("onnxruntime", "model.int8.onnx")])
def test_an_int8_artifact_prints_one_number_in_eval_bench_and_the_guard(quantized, tmp_path, runtime, rel):
    guard = read_json(quantized / "manifest.json")["quantize"][runtime]
    assert guard["artifact"] == rel
    evaluated = _eval_json(quantized / rel, tmp_path)
    assert evaluated["precision"] == "int8"                     # the precision the file holds, not a default
    assert evaluated["split"] == "val" and evaluated["n"] == 21
    benched = _bench_metrics(quantized, runtime, "int8")
    assert len(benched) == 1                                    # every timed batch: one metric
    assert benched.pop() == pytest.approx(evaluated["conditions"]["clean@int8"], abs=1e-6)
    assert guard["int8_metric"] == pytest.approx(evaluated["conditions"]["clean@int8"], abs=1e-6)


def test_an_fp32_artifact_prints_its_export_parity_number_everywhere(quantized, tmp_path):
    record = read_json(quantized / "manifest.json")["artifacts"]["openvino/model.xml"]
    evaluated = _eval_json(quantized / "openvino" / "model.xml", tmp_path)
    assert evaluated["precision"] == "fp32"
    benched = _bench_metrics(quantized, "openvino", "fp32")
    assert len(benched) == 1
    assert benched.pop() == pytest.approx(evaluated["conditions"]["clean"], abs=1e-6)
    assert record["parity"]["metric"] == pytest.approx(evaluated["conditions"]["clean"], abs=1e-6)
    guard = read_json(quantized / "manifest.json")["quantize"]["openvino"]   # the guard's FP32 column: the same
    assert guard["fp32_metric"] == pytest.approx(evaluated["conditions"]["clean"], abs=1e-6)


def test_every_stage_scores_an_int8_ir_in_one_batch_and_one_precision(quantized, tmp_path, monkeypatch):
    """The mechanism behind one number: eval, bench (a batch-1 row too) and the guard all run the INT8 IR
    compiled static for SCORED_BATCH, in int8, and feed it batches of that size."""
    from edgeaffect import evaluate
    from edgeaffect.quantize.config import QuantConfig
    from edgeaffect.quantize.pipeline import quantize_run

    run = tmp_path / "run"
    shutil.copytree(quantized, run)
    seen, seen_fp32, real = [], [], evaluate.predict

    def spy(runtime, samples, batch=evaluate.SCORED_BATCH, transform=None):
        if runtime.name == "openvino":
            (seen if runtime.precision == "int8" else seen_fp32).append((runtime.inputs[0].shape[0], batch))
        return real(runtime, samples, batch, transform)

    monkeypatch.setattr(evaluate, "predict", spy)
    monkeypatch.setattr("edgeaffect.quantize.pipeline.predict", spy)   # the guard's scoring imports it by name
    _eval_json(run / "openvino" / "model.int8.xml", tmp_path)
    _bench_metrics(run, "openvino", "int8")
    seen_fp32.clear()
    quantize_run(run, ["openvino"], QuantConfig(calib_samples=8, max_drop=100.0))
    assert len(seen) >= 3 and set(seen) == {(evaluate.SCORED_BATCH, evaluate.SCORED_BATCH)}
    assert seen_fp32 and set(seen_fp32) == {(evaluate.SCORED_BATCH, evaluate.SCORED_BATCH)}   # its fp32 reference too


def test_eval_of_a_file_inside_a_run_reads_the_runs_data_and_falls_back_to_val(quantized, capsys):
    """No --data (the run records it) and no --split: the tiny dataset has no test split, so val, said once."""
    assert main(["eval", str(quantized / "model.onnx")]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("scoring the val split") == 1 and "no usable test split" in err
    assert main(["eval", str(quantized / "model.onnx"), "--split", "test"]) == 1     # named: no fallback
    assert "no test split" in capsys.readouterr().err


def test_a_manifest_with_a_nan_metric_is_strict_json(tmp_path):
    """NaN (a per-class ROC-AUC of a class absent from the split) is written as null with the reason beside it."""
    from edgeaffect.runs import Run
    from edgeaffect.tasks.body import multilabel_metrics

    target = np.zeros((6, 8))
    target[::2, 1:] = 1                                   # label 0 never occurs
    metrics = multilabel_metrics(np.random.default_rng(0).normal(size=(6, 8)), target)
    assert math.isnan(metrics["roc_auc_Curiosity"])
    (tmp_path / "manifest.json").write_text("{}")
    run = Run(tmp_path, {})
    run.update(metrics={"val": {**metrics, "inf": float("inf"), "arr": np.array([1.0, np.nan])}})
    text = (tmp_path / "manifest.json").read_text()
    parsed = json.loads(text, parse_constant=_refuse)      # no NaN / Infinity anywhere
    val = parsed["metrics"]["val"]
    assert val["roc_auc_Curiosity"] is None and val["roc_auc_Curiosity_note"] == "class absent from split"
    assert val["inf"] is None and "inf" in val["inf_note"] and val["arr"] == [1.0, None]
    assert val["roc_auc_Excitement"] == pytest.approx(metrics["roc_auc_Excitement"])
