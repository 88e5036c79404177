"""edgeaffect bench on a tiny exported run: rows, files, interleaving, artifact discovery."""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from edgeaffect.bench import ROW_KEYS, BenchConfig, bench_run, onnx_flops, percentiles, time_interleaved
from edgeaffect.errors import EdgeAffectError
from edgeaffect.runs import load_run
from edgeaffect.runtimes.registry import artifact_files, discover_artifacts
from edgeaffect.cli import main
from tests.fakes.tiny_model import make_exported_run, tiny_av_test

FAST = BenchConfig(batches=(1, 4), budget_s=0.3, rounds=3, warmup=1, threads=1, isolate=False)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return make_exported_run(tmp_path_factory.mktemp("bench"))


def test_bench_rows_files_and_reference(exported):
    rows = bench_run(exported, ["onnxruntime", "openvino", "torch"], cfg=FAST, show_progress=False)
    assert {(r["runtime"], r["batch"]) for r in rows} == {(rt, b) for rt in ("torch", "onnxruntime", "openvino") for b in (1, 4)}
    for r in rows:
        assert set(ROW_KEYS) <= set(r)
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["throughput"] == pytest.approx(r["batch"] * 1000 / r["mean_ms"])
        assert r["metric_name"] == "pearson" and r["metric"] == pytest.approx(r["metric_torch"], abs=1e-4)
        assert r["metric_torch"] > 0.9  # the val targets follow the model, so the metric is real
        assert r["metric_samples"] > 0
        assert r["agreement"] == pytest.approx(1.0, abs=1e-9) and r["max_abs_diff"] < 1e-4   # Pearson r vs torch
        assert r["agreement_kind"] == "pearson"                  # regression outputs: agreement is Pearson r
        assert r["size_mb"] > 0 and r["cold_start_ms"] > 0 and r["peak_rss_mb"] > 10
        assert r["iterations"] >= FAST.rounds
        assert r["gflops_per_s"] > 0
    torch_rows = [r for r in rows if r["runtime"] == "torch"]
    assert all(r["speedup_vs_torch"] == pytest.approx(1.0) for r in torch_rows)
    saved = json.loads((exported / "bench.json").read_text())
    assert [r["runtime"] for r in saved["rows"]] == [r["runtime"] for r in rows]
    assert all(r["precision"] == r["executed_precision"] == "fp32" for r in rows)
    machine = saved["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["threads"] == FAST.threads
    assert "onnxruntime" in machine["versions"] and isinstance(machine["isa"], list)
    with open(exported / "bench.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    assert (exported / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["bench"]["rows"] == len(rows) and manifest["bench"]["machine"]["cpu"] == machine["cpu"]


def test_isolated_probe_measures_in_a_fresh_process(exported):
    from edgeaffect.bench import peak_rss_mb

    ballast = np.ones(200 << 17)  # 200 MB held by this process must not show in the probe's peak
    cfg = BenchConfig(batches=(2,), budget_s=0.2, rounds=2, warmup=1, threads=1, isolate=True)
    rows = bench_run(exported, ["onnxruntime"], ["fp32"], cfg=cfg, show_progress=False)
    assert [r["runtime"] for r in rows] == ["onnxruntime"]
    assert rows[0]["cold_start_ms"] > 0 and 10 < rows[0]["peak_rss_mb"] < peak_rss_mb() - 150
    del ballast


def test_interleaving_alternates_variants_every_round():
    order = []

    class Fake:
        def __init__(self, name):
            self.name = name

        def infer(self, feeds):
            order.append(self.name)

    from edgeaffect.bench import _Variant
    from edgeaffect.runtimes.registry import Artifact

    vs = [_Variant(Artifact(n, "fp32", None), 1, runtime=Fake(n)) for n in ("a", "b")]
    time_interleaved(vs, BenchConfig(budget_s=0.004, rounds=4, warmup=0, isolate=False))
    runs = [k for i, k in enumerate(order) if i == 0 or order[i - 1] != k]
    assert runs == ["a", "b", "a", "b", "a"]  # a,b | b,a | a,b | b,a: neither always goes first
    assert all(len(v.times) >= 4 for v in vs)


def test_discovery_finds_later_int8_and_pruned_files(exported, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(exported, run)
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(str(run / "model.onnx"), str(run / "model.int8.onnx"))
    (run / "pruned-0.3" / "openvino").mkdir(parents=True)
    shutil.copy(run / "model.onnx", run / "pruned-0.3" / "model.onnx")
    (run / "tensorrt").mkdir()
    (run / "tensorrt" / "NVIDIA-Orin-trt10.3.0.fp16.engine").write_bytes(b"x")
    rows = {(a.variant, a.runtime, a.precision, a.path.name) for a in discover_artifacts(run)}
    assert ("", "onnxruntime", "int8", "model.int8.onnx") in rows
    assert ("pruned-0.3", "onnxruntime", "fp32", "model.onnx") in rows
    assert ("", "tensorrt", "fp16", "NVIDIA-Orin-trt10.3.0.fp16.engine") in rows
    assert ("", "openvino", "fp32", "model.xml") in rows and ("", "torch", "fp32", "checkpoint.pt") in rows
    from edgeaffect.bench import select

    picked = select(discover_artifacts(run), ["onnxruntime", "torch"], ["int8"])
    assert sorted(a.label for a in picked) == ["onnxruntime-int8", "torch-fp32"]  # torch stays as the reference
    bench = bench_run(run, ["onnxruntime"], ["int8"], cfg=BenchConfig(batches=(1,), budget_s=0.1, rounds=1,
                                                                       warmup=0, isolate=False), show_progress=False,
                      verify=False)   # model.int8.onnx was made by hand here, outside the manifest
    assert [(r["runtime"], r["precision"], r["path"]) for r in bench] == [("onnxruntime", "int8", "model.int8.onnx")]
    assert bench[0]["executed_precision"] == "int8" and bench[0]["precision_mix"].get("int8", 0) >= 1


def test_a_file_that_is_not_the_precision_it_is_named_is_refused(exported, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(exported, run)
    shutil.copy(run / "model.onnx", run / "model.int8.onnx")   # an fp32 graph under the INT8 name
    cfg = BenchConfig(batches=(1,), budget_s=0.1, rounds=1, warmup=0, isolate=False)
    with pytest.raises(EdgeAffectError, match="model.int8.onnx is not listed in"):   # not written by edgeaffect
        bench_run(run, ["onnxruntime"], ["int8"], cfg=cfg, show_progress=False)
    with pytest.raises(EdgeAffectError, match="model.int8.onnx holds fp32, not int8"):   # and, benched anyway, not int8
        bench_run(run, ["onnxruntime"], ["int8"], cfg=cfg, show_progress=False, verify=False)


def test_flop_count_matches_the_architecture(exported):
    # conv 3->8 3x3 on 8x8 (x2 frames) + conv1d 4->8 k3 over 6 + linear 16->3, per sample, 2 FLOPs per MAC
    expected = 2 * (2 * 8 * 8 * 8 * 3 * 9 + 8 * 6 * 4 * 3 + 3 * 16)
    assert onnx_flops(exported / "model.onnx", batch=1) == expected
    assert onnx_flops(exported / "model.onnx", batch=4) == 4 * expected


def test_percentiles():
    p = percentiles([0.001] * 98 + [0.010, 0.020])
    assert p["p50_ms"] == pytest.approx(1.0) and p["p99_ms"] > 9 and p["mean_ms"] == pytest.approx(1.28)


def test_bench_errors_are_one_line(exported, capsys):
    with pytest.raises(EdgeAffectError, match="has no tensorrt artifact"):
        bench_run(exported, ["tensorrt"], cfg=FAST, show_progress=False)
    assert main(["bench", str(exported), "--batch", "1,x"]) == 1
    assert "--batch takes comma-separated integers" in capsys.readouterr().err
    assert main(["bench", str(exported / "nope")]) == 1


def test_cli_bench_prints_the_table(exported, capsys):
    code = main(["bench", str(exported), "--runtime", "onnxruntime", "--batch", "2", "--budget", "0.2",
                 "--rounds", "2", "--threads", "1", "--no-isolate"])
    assert code == 0
    said = capsys.readouterr()
    assert "onnxruntime" in said.out and "torch" in said.out and "p50 ms" in said.out
    assert f"next: edgeaffect demo --model {exported} --source 0" in said.err.replace("\n", "")


def test_bench_tensorrt_rows_through_the_fakes(exported, tmp_path, monkeypatch):
    from edgeaffect.runtimes.tensorrt.engine import build_engine as build_tensorrt_engine
    from tests.fakes import install

    install(monkeypatch, gpu="NVIDIA Jetson Orin Nano")
    run = tmp_path / "run"
    shutil.copytree(exported, run)
    engine = build_tensorrt_engine(run / "model.onnx", run / "tensorrt", max_batch=8)
    load_run(run).record_artifact(engine, *artifact_files(engine)[1:], runtime="tensorrt", precision="fp32")   # as export does
    rows = bench_run(run, ["tensorrt", "torch"], cfg=FAST, show_progress=False)
    trt = [r for r in rows if r["runtime"] == "tensorrt"]
    assert [r["batch"] for r in trt] == [1, 4] and all(r["agreement"] == pytest.approx(1.0, abs=1e-9) for r in trt)
    assert trt[0]["path"] == "tensorrt/NVIDIA-Jetson-Orin-Nano-16sm-8GB-cc8.7-trt10.3.0.fp32.b1-1-8.engine"


def test_bench_a_bare_model_file_without_a_torch_reference(exported, tmp_path, capsys):
    """`bench model.onnx --data D`: the file's own runtime, the metric on D, no torch row (said once)."""
    folder = tmp_path / "edge"
    folder.mkdir()
    shutil.copy(exported / "model.onnx", folder / "model.onnx")
    data = json.loads((exported / "manifest.json").read_text())["data"]["root"]
    code = main(["bench", str(folder / "model.onnx"), "--data", data, "--batch", "2", "--budget", "0.2",
                 "--rounds", "2", "--threads", "1", "--no-isolate"])
    assert code == 0
    err = capsys.readouterr().err
    assert " ".join(err.split()).count("without a torch reference") == 1
    saved = json.loads((folder / "model.onnx.bench.json").read_text())
    assert [r["runtime"] for r in saved["rows"]] == ["onnxruntime"] and saved["metric_torch"] is None
    row = saved["rows"][0]
    assert row["agreement"] is None and row["speedup_vs_torch"] is None and row["precision"] == "fp32"
    reference = bench_run(exported, ["onnxruntime", "torch"], cfg=FAST, show_progress=False)
    assert row["metric"] == pytest.approx(next(r["metric"] for r in reference if r["runtime"] == "onnxruntime"), abs=1e-6)
    assert not (folder / "bench.json").exists()                  # a run's bench.json is never overwritten


def test_bench_refuses_an_artifact_the_manifest_does_not_list(exported, tmp_path, capsys):
    """A model.onnx copied in from another run is refused in one line; --no-verify benches it deliberately."""
    from edgeaffect.export import export_onnx
    from tests.fakes.tiny_model import tiny_av_test

    run = tmp_path / "run"
    shutil.copytree(exported, run)
    export_onnx(tiny_av_test(seed=7), run / "model.onnx")          # another model's graph under the same name
    args = ["bench", str(run), "--runtime", "onnxruntime", "--batch", "1", "--budget", "0.1", "--rounds", "1",
            "--no-isolate"]
    assert main(args) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "model.onnx is not the file" in err and "re-export" in err and "Traceback" not in err
    assert main([*args, "--no-verify"]) == 0
    capsys.readouterr()
    shutil.copy(exported / "model.onnx", run / "model.onnx")        # the listed file back: verified again
    assert main(args) == 0
    (run / "openvino" / "model.bin").write_bytes(b"\0" * 16)       # half of the IR pair changed
    with pytest.raises(EdgeAffectError, match="model.bin is not the file"):
        bench_run(run, ["openvino"], cfg=FAST, show_progress=False)


def test_every_runtime_gets_one_thread_by_default_said_in_the_title(exported, capsys):
    """Without --threads each runtime would pick its own default (torch eager all logical CPUs, with inter-op
    threads on top); bench gives all of them one thread, stores it per row and prints it in the title."""
    from edgeaffect.bench import DEFAULT_THREADS

    cfg = BenchConfig(batches=(1,), budget_s=0.1, rounds=1, warmup=0, isolate=False)
    assert cfg.threads == DEFAULT_THREADS == 1 and BenchConfig(threads=None).threads == 1
    rows = bench_run(exported, ["onnxruntime", "torch"], cfg=cfg, show_progress=False)
    assert {r["threads"] for r in rows} == {1} and {r["runtime"] for r in rows} == {"onnxruntime", "torch"}
    with pytest.raises(EdgeAffectError, match="--threads must be >= 1"):
        BenchConfig(threads=0)
    assert main(["bench", str(exported), "--runtime", "onnxruntime", "--batch", "1", "--budget", "0.1", "--rounds", "1",
                 "--no-isolate"]) == 0
    out = capsys.readouterr().out
    assert "1 thread per runtime" in out and "tiny_av_test" in out     # the title names the threads and the model
    assert json.loads((exported / "bench.json").read_text())["machine"]["threads"] == 1


def _row(runtime, batch, p50, p99, speedup, precision="fp32"):
    return {"runtime": runtime, "precision": precision, "executed_precision": precision, "batch": batch,
            "p50_ms": p50, "p90_ms": p50, "p99_ms": p99, "mean_ms": p50, "throughput": batch * 1000 / p50,
            "speedup_vs_torch": speedup, "metric_name": "pearson", "metric": 0.5, "agreement": 1.0,
            "spread": p99 / p50, "spread_wide": p99 > 2 * p50, "model": "m", "variant": ""}


def test_a_row_with_a_wide_spread_is_flagged_with_a_footnote():
    """p99 at 15x p50 marks that row's p99 and its ×torch; a wide torch row makes every ×torch of its batch shaky."""
    from rich.console import Console

    from edgeaffect.bench import table, unreliable_ratios

    rows = [_row("torch", 1, 10.0, 12.0, 1.0), _row("onnxruntime", 1, 1.0, 15.0, 10.0),
            _row("openvino", 1, 1.0, 1.3, 10.0),
            _row("torch", 8, 80.0, 400.0, 1.0), _row("onnxruntime", 8, 8.0, 9.0, 10.0)]
    assert unreliable_ratios(rows) == {1, 3, 4}
    console = Console(width=250, record=True)
    console.print(table(rows))
    text = console.export_text()
    lines = {ln.split("│")[1].strip() + ln.split("│")[4].strip(): ln for ln in text.splitlines() if ln.count("│") > 10}
    assert "15.00 !" in lines["onnxruntime1"] and "10.00 !" in lines["onnxruntime1"]
    assert "!" not in lines["openvino1"] and "!" not in lines["torch1"]
    assert "400.00 !" in lines["torch8"] and "10.00 !" in lines["onnxruntime8"] and "9.00 !" not in lines["onnxruntime8"]
    assert "! p99 above 2× p50" in text
    calm = Console(width=250, record=True)
    calm.print(table([rows[0], rows[2]]))
    assert "!" not in calm.export_text()


def test_rows_carry_their_spread(exported):
    rows = bench_run(exported, ["onnxruntime"], cfg=FAST, show_progress=False)
    for r in rows:
        assert r["spread"] == pytest.approx(r["p99_ms"] / r["p50_ms"]) and r["spread_wide"] == (r["spread"] > 2.0)
        assert r["model"] == "tiny_av_test"


def test_the_plot_shows_every_batch_and_names_the_model(tmp_path, monkeypatch):
    import matplotlib.figure

    from edgeaffect.bench import write_outputs

    seen = {}
    real = matplotlib.figure.Figure.savefig

    def spy(fig, *a, **kw):
        seen["panels"] = [ax.get_title() for ax in fig.axes]
        seen["title"] = fig._suptitle.get_text()
        return real(fig, *a, **kw)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    rows = [_row("torch", b, 10.0 * b, 12.0 * b, 1.0) for b in (1, 4, 8)] + [_row("onnxruntime", 4, 2.0, 40.0, 20.0)]
    write_outputs(tmp_path, rows, {"model": "tiny_av_test", "machine": {"threads": 1, "cpu": "EPYC", "date": "d"}})
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert seen["panels"] == ["batch 1", "batch 4", "batch 8"]
    assert seen["title"] == "tiny_av_test · 1 thread per runtime · EPYC · d"
