"""``edgeaffect eval RUN --corrupt``: condition parsing, corruption, and a run scored end to end."""
from __future__ import annotations

import pytest
import torch

from edgeaffect.cli.eval import corruption, describe, parse_conditions
from edgeaffect.errors import EdgeAffectError

INPUTS = ["video", "audio"]


def test_conditions_parse_alternatives_and_combinations():
    conds = parse_conditions("audio=zeros|noise,video=zeros", INPUTS)
    assert [describe(c) for c in conds] == ["clean", "audio=zeros", "audio=noise", "video=zeros"]
    both = parse_conditions("audio=zeros+video=noise|zeros", INPUTS)
    assert [describe(c) for c in both] == ["clean", "audio=zeros+video=noise", "audio=zeros+video=zeros"]
    assert parse_conditions(None, INPUTS) == [{}]
    assert len(parse_conditions("audio=zeros,audio=zeros", INPUTS)) == 2     # duplicates collapse


@pytest.mark.parametrize("text, message", [("mic=zeros", "no input 'mic'"), ("audio=blur", "unknown mode 'blur'"),
                                           ("audio", "not INPUT=MODE"), ("audio=", "not INPUT=MODE")])
def test_bad_conditions_name_the_problem(text, message):
    with pytest.raises(EdgeAffectError, match=message):
        parse_conditions(text, INPUTS)


def test_corruption_replaces_only_the_named_input_deterministically():
    import numpy as np

    rng = np.random.default_rng(0)
    batch = {"video": rng.random((2, 3, 4), dtype=np.float32), "audio": rng.random((2, 5), dtype=np.float32)}
    original = {k: v.copy() for k, v in batch.items()}
    zero = corruption({"audio": "zeros"}, 0)(batch)
    assert np.array_equal(zero["audio"], np.zeros((2, 5))) and np.array_equal(zero["video"], batch["video"])
    n1 = corruption({"video": "noise"}, 3)(batch)
    n2 = corruption({"video": "noise"}, 3)(batch)
    assert np.array_equal(n1["video"], n2["video"]) and not np.array_equal(n1["video"], batch["video"])
    assert abs(float(n1["video"].std()) - 1.0) < 0.5 and np.array_equal(n1["audio"], batch["audio"])
    assert n1["video"].dtype == np.float32                                 # feeds keep the model's dtype
    added = corruption({"video": "addnoise"}, 3)(batch)
    assert np.allclose(added["video"] - batch["video"], n1["video"])      # the same noise, added to the input
    assert all(np.array_equal(batch[k], original[k]) for k in batch)      # the caller's batch is untouched


@pytest.fixture(scope="module")
def ravdess_run(tmp_path_factory):
    """A tiny RAVDESS run: 2 synthetic actors (train 1, val 2), 32 px faces, 4 frames, 2 epochs."""
    from edgeaffect.data.synth.ravdess import generate_ravdess
    from edgeaffect.train.ravdess import RavdessTrainOptions, train

    root = tmp_path_factory.mktemp("ravdess_eval")
    generate_ravdess(root / "data", actors=2, statements=1, seed=11)
    train(RavdessTrainOptions(data=root / "data", epochs=2, batch_size=4, fusion="ia", dropout_mode="softhard",
                              frames=4, face_size=32, test_actors=(), val_actors=(2,)), root / "run")
    return root / "run"


def test_eval_reports_each_condition(ravdess_run, capsys):
    import numpy as np

    from edgeaffect.cli import main
    from edgeaffect.runs import load_model, load_run
    from edgeaffect.tasks.ravdess import RAVDESS_TASK
    from edgeaffect.train.trainer import predict

    assert main(["eval", str(ravdess_run), "--split", "val", "--corrupt", "audio=zeros|noise,video=zeros"]) == 0
    lines = [l.split("\t") for l in capsys.readouterr().out.strip().splitlines() if "\t" in l]
    scores = {name: float(v) for name, v in lines}
    assert list(scores) == ["clean", "audio=zeros", "audio=noise", "video=zeros"]
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    # the numbers are the task metric of the model on those inputs (checked independently here)
    run = load_run(ravdess_run)
    model = load_model(run.checkpoint)
    ds = RAVDESS_TASK.dataset(run.data_dir, "val", run.spec, **run.manifest["data"]["dataset_kwargs"])
    out, y = predict(model, ds, transform=lambda b: {**b, "video": torch.zeros_like(b["video"])})
    assert scores["video=zeros"] == pytest.approx(float((out["logits"].argmax(1) == y).mean()), abs=1e-6)
    out, y = predict(model, ds)
    assert scores["clean"] == pytest.approx(float(np.mean(out["logits"].argmax(1) == y)), abs=1e-6)
    assert run.manifest["eval"]["val"]["audio=zeros"] == pytest.approx(scores["audio=zeros"], abs=1e-6)
    # a later call adds its conditions next to the earlier ones
    assert main(["eval", str(ravdess_run), "--split", "val", "--corrupt", "audio=addnoise"]) == 0
    kept = load_run(ravdess_run).manifest["eval"]["val"]
    assert set(kept) == {"clean", "audio=zeros", "audio=noise", "video=zeros", "audio=addnoise"}


def test_eval_precision_is_explicit(ravdess_run, capsys):
    """fp32 runs without autocast; bf16 runs under autocast where the CPU has native bf16, else one line."""
    from edgeaffect import precision
    from edgeaffect.cli import main

    assert main(["eval", str(ravdess_run), "--split", "val", "--precision", "int4"]) == 1
    assert "unknown precision 'int4'" in capsys.readouterr().err
    assert main(["eval", str(ravdess_run), "--split", "val", "--precision", "int8"]) == 1
    assert "bench RUN --precision int8" in " ".join(capsys.readouterr().err.split())
    code = main(["eval", str(ravdess_run), "--split", "val", "--precision", "bf16"])
    captured = capsys.readouterr()
    if precision.cpu_flags() & set(precision.NATIVE_BF16_FLAGS):
        assert code == 0
        lines = dict(l.split("\t") for l in captured.out.strip().splitlines() if "\t" in l)
        assert list(lines) == ["clean@bf16"] and 0.0 <= float(lines["clean@bf16"]) <= 1.0
    else:
        assert code == 1 and "no native bf16" in captured.err


def test_eval_errors_are_one_line(ravdess_run, tmp_path, capsys):
    from edgeaffect.cli import main

    assert main(["eval", str(ravdess_run), "--split", "val", "--corrupt", "mic=zeros"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "its inputs are video, audio" in err[0]
    assert main(["eval", str(tmp_path / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_the_run_exports_and_benches_through_the_shared_path(ravdess_run):
    """The two-input RAVDESS model needs no per-model code in export, runtimes or bench."""
    import onnx

    from edgeaffect.bench import BenchConfig, bench_run
    from edgeaffect.export import export_run

    report = export_run(ravdess_run, ["onnx", "openvino"], exporter="legacy", samples_limit=8)
    assert {p.runtime for p in report.parity} == {"onnxruntime", "openvino"}
    assert all(p.max_abs_diff < 1e-3 and p.agreement == 1.0 for p in report.parity)
    graph = onnx.load(str(report.artifacts["onnxruntime-fp32"])).graph
    assert [i.name for i in graph.input] == ["video", "audio"] and [o.name for o in graph.output] == ["logits"]
    cfg = BenchConfig(batches=(1,), budget_s=0.2, rounds=2, warmup=1, threads=1, isolate=False, limit=8)
    rows = bench_run(ravdess_run, ["onnxruntime", "openvino", "torch"], cfg=cfg, show_progress=False)
    assert {r["runtime"] for r in rows} == {"onnxruntime", "openvino", "torch"}
    assert all(r["agreement"] == 1.0 and r["p50_ms"] > 0 for r in rows)


def test_eval_scores_an_exported_model_file_like_the_run(capsys, tmp_path):
    """`eval model.onnx --data D`: the exported graph through its runtime gives the run's own numbers."""
    from edgeaffect.cli import main
    from edgeaffect.export import export_onnx
    from edgeaffect.runs import load_model, load_run
    from tests.fakes.tiny_model import make_dataset, make_run

    run = load_run(make_run(tmp_path / "run", data=make_dataset(tmp_path / "data", n=20)))
    model_file = export_onnx(load_model(run.checkpoint), tmp_path / "model.onnx")
    args = ["--split", "val", "--corrupt", "audio=zeros|noise", "--batch-size", "8"]
    assert main(["eval", str(run.path), *args]) == 0
    from_run = dict(l.split("\t") for l in capsys.readouterr().out.strip().splitlines() if "\t" in l)
    assert main(["eval", str(model_file), *args]) == 1                      # a bare file records no dataset
    assert "pass --data" in capsys.readouterr().err
    assert main(["eval", str(model_file), "--data", str(tmp_path / "data"), *args]) == 0
    from_file = dict(l.split("\t") for l in capsys.readouterr().out.strip().splitlines() if "\t" in l)
    assert list(from_file) == ["clean", "audio=zeros", "audio=noise"]
    assert all(abs(float(from_file[k]) - float(from_run[k])) < 1e-5 for k in from_run)
    assert float(from_file["clean"]) != float(from_file["audio=noise"])    # the corruption reached the model


def test_one_run_reports_one_number_in_train_eval_and_bench(ravdess_run, capsys):
    """The same split at fp32: train's validation, eval and bench's torch row print the same metric,
    each over every sample of the (small) split, and each says how many."""
    from edgeaffect.bench import BenchConfig, bench_run
    from edgeaffect.cli import main
    from edgeaffect.runs import load_run

    run = load_run(ravdess_run)
    stage = next(m for m in run.manifest["metrics"].values() if "val_accuracy" in m)
    trained, n_val = stage["val_accuracy"], stage["val_clips"]
    assert main(["eval", str(ravdess_run), "--split", "val"]) == 0
    out = capsys.readouterr().out
    evaluated = float(dict(l.split("\t") for l in out.strip().splitlines() if "\t" in l)["clean"])
    cfg = BenchConfig(batches=(1,), budget_s=0.2, rounds=1, warmup=1, threads=1, isolate=False)
    rows = bench_run(ravdess_run, ["torch"], cfg=cfg, show_progress=False)
    benched = [r for r in rows if r["runtime"] == "torch" and r["precision"] == "fp32"][0]
    assert benched["metric_samples"] == n_val
    assert evaluated == pytest.approx(trained, abs=1e-6)
    assert benched["metric"] == pytest.approx(trained, abs=1e-6)


def test_eval_defaults_to_a_split_that_exists_and_scores_per_class(ravdess_run, capsys, tmp_path):
    """No --split: the run has no test actors, so val is scored (said once); per-class scores and the confusion
    matrix go to the console, the manifest and --json, and they add up to the split's accuracy."""
    import json

    import numpy as np

    from edgeaffect.cli import main
    from edgeaffect.labels import RAVDESS_LABELS
    from edgeaffect.runs import load_run

    out = tmp_path / "eval.json"
    assert main(["eval", str(ravdess_run), "--json", str(out)]) == 0
    captured = capsys.readouterr()
    err = " ".join(captured.err.split())
    assert err.count("scoring the val split") == 1 and "per class" in err and "confusion matrix" in err
    saved = json.loads(out.read_text())
    assert saved["split"] == "val" and saved["precision"] == "fp32"
    rows = np.array(saved["confusion_matrix"]["rows"])
    assert saved["confusion_matrix"]["labels"] == list(RAVDESS_LABELS) and rows.sum() == saved["n"]
    assert np.trace(rows) / rows.sum() == pytest.approx(saved["conditions"]["clean"], abs=1e-6)
    supports = [saved["per_class"][name]["support"] for name in RAVDESS_LABELS]
    assert supports == rows.sum(1).tolist()
    assert load_run(ravdess_run).manifest["eval_details"]["val"]["confusion_matrix"]["rows"] == rows.tolist()


def test_every_epoch_is_in_the_manifests_history(ravdess_run):
    """Not only EXPR: each epoch's train loss and val metric, per stage, in one place."""
    from edgeaffect.runs import load_run

    history = load_run(ravdess_run).manifest["history"]
    assert [h["epoch"] for h in history] == [1, 2] and all(h["stage"] for h in history)
    assert all(h["train_loss"] > 0 and 0.0 <= h["val_accuracy"] <= 1.0 for h in history)
    stage = next(m for m in load_run(ravdess_run).manifest["metrics"].values() if "val_accuracy" in m)
    assert stage["val_accuracy"] == max(h["val_accuracy"] for h in history)


def test_per_class_scores_are_titled_with_the_condition_they_score(capsys):
    """An int8 file's clean run is ``clean@int8``: its per-class table says so, as the headline row does."""
    from edgeaffect.cli.eval import _print_details

    _print_details({"per_class": {"a": {"pearson": 0.5}, "b": {"pearson": -0.25}}}, "clean@int8")
    err = " ".join(capsys.readouterr().err.split())
    assert "per dimension (clean@int8)" in err and "0.5000" in err and "-0.2500" in err
