"""Precision is explicit: fp32 runs f32 on every CPU, bf16/fp16 run only where asked and where the machine
runs them, and what ran is read back.  Tests that depend on the CPU check its features and say which."""
from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import torch

from edgeaffect import precision
from edgeaffect.bench import BenchConfig, bench_run
from edgeaffect.cli import main
from edgeaffect.errors import EdgeAffectError
from edgeaffect.evaluate import Samples
from edgeaffect.export import export_onnx, export_run, guard_precision
from edgeaffect.runtimes.onnxruntime import FP32_CONFIG
from edgeaffect.runtimes.openvino.export import export_openvino
from edgeaffect.runtimes.openvino.settings import openvino_capabilities
from edgeaffect.runtimes.registry import unsupported
from edgeaffect.runtimes import load
from tests.fakes.tiny_model import make_dataset, make_run, tiny_av_test

FAST = BenchConfig(batches=(2,), budget_s=0.2, rounds=2, warmup=1, threads=1, isolate=False)
OV_BF16 = "BF16" in openvino_capabilities("CPU")
OV_FP16 = "FP16" in openvino_capabilities("CPU")
NATIVE_BF16 = bool(precision.cpu_flags() & set(precision.NATIVE_BF16_FLAGS))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    data = make_dataset(tmp_path_factory.mktemp("data"))
    run = make_run(tmp_path_factory.mktemp("prec") / "run", data=data)
    export_run(run, ["onnx", "openvino"], exporter="legacy")
    return run


def reference(feeds):
    model = tiny_av_test()
    with torch.no_grad():
        return model(*(torch.from_numpy(feeds[n]) for n in model.spec.input_names)).numpy()


def test_openvino_fp32_is_pinned_to_f32_whatever_the_cpu_default(exported):
    import openvino as ov

    default = str(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))
    with load(exported / "openvino" / "model.xml") as rt:
        assert rt.precision == "fp32"
        assert str(rt.compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
        assert rt.executed_precision == "fp32" and set(rt.precision_mix()) == {"fp32"}
        feeds = rt.spec.dummy_inputs(batch=4, seed=1)
        np.testing.assert_allclose(rt.infer(feeds)["intensities"], reference(feeds), atol=1e-5)
    # what this test guards against on this machine (bf16 on AMX/AVX512-BF16 Xeons, f32 on AVX2-only CPUs)
    print(f"OpenVINO CPU default here: {default}; CPU {precision.cpu_name()}; isa {precision.isa()}")


@pytest.mark.skipif(not OV_BF16, reason=f"OpenVINO lists no BF16 on this CPU ({precision.cpu_name()})")
def test_openvino_bf16_runs_bf16_when_asked(exported):
    with load(exported / "openvino" / "model.xml", precision="bf16") as rt:
        assert rt.executed_precision == "bf16"
        feeds = rt.spec.dummy_inputs(batch=4, seed=1)
        diff = np.abs(rt.infer(feeds)["intensities"] - reference(feeds)).max()
        assert 1e-6 < diff < 5e-2    # really bf16 (not f32), and still the same model


@pytest.mark.skipif(OV_BF16, reason=f"this CPU ({precision.cpu_name()}) runs bf16 in OpenVINO")
def test_openvino_bf16_is_refused_in_one_line_where_the_cpu_lacks_it(exported):
    reason = unsupported("openvino", "bf16")
    assert reason and "does not run bf16" in reason and precision.cpu_name() in reason
    with pytest.raises(EdgeAffectError, match="openvino bf16: .*does not run bf16"):
        load(exported / "openvino" / "model.xml", precision="bf16")


@pytest.mark.skipif(not OV_FP16, reason=f"OpenVINO lists no FP16 on this CPU ({precision.cpu_name()})")
def test_openvino_fp16_ir_runs_f16(tmp_path):
    onnx_path = export_onnx(tiny_av_test(), tmp_path / "m.onnx", exporter="legacy")
    xml = export_openvino(onnx_path, tmp_path / "model.fp16.xml", fp16=True)
    with load(xml, precision="fp16") as rt:
        assert rt.executed_precision == "fp16" and str(rt.compiled.get_property("INFERENCE_PRECISION_HINT")) == \
            "<Type: 'float16'>"
        feeds = rt.spec.dummy_inputs(batch=4, seed=1)
        assert np.abs(rt.infer(feeds)["intensities"] - reference(feeds)).max() < 5e-2


def test_torch_bf16_is_autocast_or_refused_by_the_cpu(exported):
    if not NATIVE_BF16:
        with pytest.raises(EdgeAffectError, match="no native bf16"):
            load(exported / "checkpoint.pt", precision="bf16")
        return
    with load(exported / "checkpoint.pt", precision="bf16") as rt:
        feeds = rt.spec.dummy_inputs(batch=4, seed=2)
        out = rt.infer(feeds)["intensities"]
        assert out.dtype == np.float32 and rt.executed_precision == "bf16"
        assert 1e-6 < np.abs(out - reference(feeds)).max() < 5e-2


def test_onnxruntime_reads_its_precision_from_the_graph_and_pins_fp32(exported, tmp_path):
    from onnxruntime.quantization import quantize_dynamic

    with load(exported / "model.onnx") as rt:
        assert rt.precision == rt.executed_precision == "fp32"
        entries = rt.session.get_session_options()
        for key, value in FP32_CONFIG.items():
            assert entries.get_session_config_entry(key) == value
    q = tmp_path / "model.int8.onnx"
    quantize_dynamic(str(exported / "model.onnx"), str(q))
    with load(q) as rt:
        assert rt.precision == "int8" and rt.executed_precision == "int8"
    with pytest.raises(EdgeAffectError, match="holds fp32, not bf16"):
        load(exported / "model.onnx", precision="bf16")


def test_unknown_precision_is_one_line_everywhere(exported, capsys):
    with pytest.raises(EdgeAffectError, match="unknown precision 'int4'; choose from fp32, bf16, fp16, int8"):
        precision.check_precisions(["fp32", "int4"])
    before = sorted(p.name for p in exported.iterdir())
    assert main(["bench", str(exported), "--precision", "int4"]) == 1
    err = capsys.readouterr().err
    assert "unknown precision 'int4'" in err and "Traceback" not in err
    assert sorted(p.name for p in exported.iterdir()) == before   # nothing measured, nothing overwritten


def test_bench_rows_run_the_precision_they_name(exported, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(exported, run)
    rows = bench_run(run, ["openvino", "torch"], ["fp32", "bf16"], cfg=FAST, show_progress=False)
    saved = json.loads((run / "bench.json").read_text())
    for r in rows:
        assert r["executed_precision"] == r["precision"], r
    labels = {(r["runtime"], r["precision"]) for r in rows}
    assert ("openvino", "fp32") in labels and ("torch", "fp32") in labels
    assert (("openvino", "bf16") in labels) == OV_BF16 and (("torch", "bf16") in labels) == NATIVE_BF16
    skipped = {s["artifact"]: s["reason"] for s in saved["skipped"]}
    assert ("openvino-bf16" in skipped) == (not OV_BF16) and ("torch-bf16" in skipped) == (not NATIVE_BF16)
    assert saved["machine"]["isa"] == precision.isa() and saved["machine"]["cores"] == precision.physical_cores()


def test_bench_without_matplotlib_writes_json_and_csv_and_says_so(exported, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(exported, run)
    (run / "bench.png").unlink(missing_ok=True)
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import matplotlib -> ImportError
    assert main(["bench", str(run), "--runtime", "onnxruntime", "--batch", "1", "--budget", "0.2", "--rounds", "1",
                 "--threads", "1", "--no-isolate"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "pip install 'edgeaffect[plot]'" in err and "Traceback" not in err
    assert (run / "bench.json").exists() and (run / "bench.csv").exists() and not (run / "bench.png").exists()


class _Scaled:
    """A runtime stand-in whose outputs are the reference's, squashed toward 0.5 by ``factor``."""

    name, precision, executed_precision = "fake", "bf16", "bf16"

    def __init__(self, factor):
        self.factor, self.model = factor, tiny_av_test()

    def infer(self, feeds):
        out = reference(feeds)
        return {"intensities": (0.5 + (out - 0.5) * self.factor).astype(np.float32)}


def test_the_reduced_precision_guard_accepts_small_drops_and_refuses_large_ones(tmp_path):
    data = make_dataset(tmp_path / "data", n=24)
    model = tiny_av_test()
    items = dict(np.load(data / "val.npz"))
    samples = Samples({k: items[k] for k in model.spec.input_names}, items["target"], "val split (24 samples)")
    same = guard_precision(model, _Scaled(1.0), samples, max_drop=1.0)
    assert same["accepted"] and abs(same["drop_points"]) < 1e-6 and same["machine"]["cpu"]
    noisy = _Scaled(1.0)
    rng = np.random.default_rng(0)
    noisy.infer = lambda feeds: {"intensities": (reference(feeds) + rng.normal(0, 0.05, (len(feeds["audio"]), 3)))
                                 .astype(np.float32)}
    bad = guard_precision(model, noisy, samples, max_drop=0.01)   # the tiny task's
    assert not bad["accepted"] and bad["drop_points"] > 0.01 and "exceeds --max-drop 0.01" in bad["reason"]  # point is 1.0


def test_export_precision_guards_and_records_each_decision(tmp_path):
    data = make_dataset(tmp_path / "data")
    run = make_run(tmp_path / "run", data=data)
    report = export_run(run, ["onnx", "openvino"], precisions=["bf16", "fp16"], exporter="legacy")
    manifest = json.loads((run / "manifest.json").read_text())
    for name, runs_here in (("openvino-bf16", OV_BF16), ("openvino-fp16", OV_FP16)):
        if runs_here:
            d = manifest["precisions"][name]
            assert d["accepted"] and d["executed_precision"] == name.split("-")[1] and d["machine"]["isa"]
        else:
            assert name in report.skipped and name not in manifest.get("precisions", {})
    assert "onnxruntime-bf16" in report.skipped and "onnxruntime-fp16" in report.skipped
    assert ("openvino/model.fp16.xml" in manifest["artifacts"]) == OV_FP16
    with pytest.raises(EdgeAffectError, match="export --precision takes bf16, fp16"):
        export_run(run, ["onnx"], precisions=["int8"], exporter="legacy")


def test_cli_export_precision_says_what_it_did(tmp_path, capsys):
    data = make_dataset(tmp_path / "data")
    run = make_run(tmp_path / "run", data=data)
    rc = main(["export", str(run), "--format", "onnx,openvino", "--precision", "bf16", "--exporter", "legacy"])
    err = " ".join(capsys.readouterr().err.split())
    assert ("accepted openvino-bf16 (ran as bf16)" in err) == OV_BF16
    assert ("skipped openvino-bf16" in err) == (not OV_BF16)
    # asked for by name and written nowhere: exit 1 with one line (the fp32 files are still there)
    assert rc == (0 if OV_BF16 else 1)
    assert ("no bf16 artifact was written on any runtime" in err) == (not OV_BF16) and "Traceback" not in err
    assert (run / "model.onnx").exists()
    assert main(["export", str(run), "--precision", "int8"]) == 1
    assert "--precision takes bf16, fp16" in capsys.readouterr().err
