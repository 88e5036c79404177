"""Export: self-describing ONNX, OpenVINO IR, parity on real samples, manifest, atomic writes."""
from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import pytest

from edgeaffect.cli import main
from edgeaffect.errors import EdgeAffectError
from edgeaffect.evaluate import Samples, load_samples
from edgeaffect.export import check_parity, export_onnx, export_run, read_onnx_spec
from edgeaffect.runtimes.openvino.export import export_openvino
from edgeaffect.fileio import sha256_file
from edgeaffect.runtimes import load
from tests.fakes import install
from tests.fakes.tiny_model import make_dataset, make_run, tiny_av_test


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data"))


def test_onnx_is_self_describing_with_a_dynamic_batch(tmp_path):
    model = tiny_av_test()
    path = export_onnx(model, tmp_path / "m.onnx", exporter="legacy")
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["video", "audio"]
    assert [o.name for o in proto.graph.output] == ["intensities"]
    assert all(v.type.tensor_type.shape.dim[0].dim_param == "B" for v in (*proto.graph.input, *proto.graph.output))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["edgeaffect.labels"]) == ["a", "b", "c"]
    assert read_onnx_spec(path) == model.spec
    static = export_onnx(model, tmp_path / "s.onnx", batch=3, exporter="legacy")
    assert onnx.load(str(static)).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 3


@pytest.mark.slow
def test_dynamo_exporter_matches_torch(tmp_path):
    model = tiny_av_test()
    path = export_onnx(model, tmp_path / "d.onnx", exporter="dynamo")
    with load(path) as rt:
        assert rt.inputs[0].shape[0] == "B"
        samples = Samples(model.spec.dummy_inputs(batch=5), None, "random")
        assert check_parity(model, rt, samples, tolerance=1e-5).max_abs_diff < 1e-5


def test_openvino_static_fp16_and_spec(tmp_path):
    model = tiny_av_test()
    onnx_path = export_onnx(model, tmp_path / "m.onnx", exporter="legacy")
    fp32 = export_openvino(onnx_path, tmp_path / "ov" / "model.xml")
    fp16 = export_openvino(onnx_path, tmp_path / "ov" / "model.fp16.xml", fp16=True, batch=2)
    assert fp16.with_suffix(".bin").stat().st_size < 0.7 * fp32.with_suffix(".bin").stat().st_size
    assert sorted(p.name for p in (tmp_path / "ov").iterdir()) == ["model.bin", "model.fp16.bin", "model.fp16.xml", "model.xml"]
    with load(fp16) as rt:
        assert rt.spec == model.spec and rt.inputs[0].shape == (2, 2, 3, 8, 8)


def test_export_run_checks_parity_on_real_samples_and_records_hashes(tmp_path, data):
    run = make_run(tmp_path / "run", data=data)
    report = export_run(run, ["onnx", "openvino"], exporter="legacy")
    assert {p.runtime for p in report.parity} == {"onnxruntime", "openvino"}
    for p in report.parity:
        assert p.samples.startswith("val split of") and p.n == 12 and p.precision == "fp32"
        assert p.metric_name == "pearson" and p.metric == pytest.approx(p.metric_torch, abs=1e-3) and p.metric > 0.9
        assert p.max_abs_diff < 1e-4   # f32 pinned: on an AMX CPU OpenVINO's default (bf16) is ~1e-2 off
    manifest = json.loads((run / "manifest.json").read_text())
    arts = manifest["artifacts"]
    assert set(arts) >= {"model.onnx", "openvino/model.xml", "openvino/model.bin"}
    assert manifest["export"]["machine"]["cpu"] and "isa" in manifest["export"]["machine"]
    assert arts["model.onnx"]["sha256"] == sha256_file(run / "model.onnx")
    assert arts["model.onnx"]["parity"]["max_abs_diff"] < 1e-4
    assert manifest["export"]["samples"].startswith("val split of")
    assert not [p for p in run.rglob(".*") if "tmp" in p.name]  # nothing half-written left behind


def test_parity_failure_is_loud(tmp_path, data):
    other = export_onnx(tiny_av_test(seed=1), tmp_path / "other.onnx", exporter="legacy")
    model = tiny_av_test()
    samples = load_samples(model.spec, data)
    with load(other) as rt, pytest.raises(EdgeAffectError, match=r"differs from torch by .* \(> tolerance 0.001\) on val split"):
        check_parity(model, rt, samples)


def test_without_a_dataset_parity_says_it_used_random_inputs(tmp_path):
    run = make_run(tmp_path / "run")
    report = export_run(run, ["onnx"], exporter="legacy")
    assert report.parity[0].samples.startswith("random inputs (no dataset recorded")
    assert report.parity[0].metric is None


def test_a_named_dataset_that_cannot_be_read_is_an_error_not_random_inputs(tmp_path, data):
    run = make_run(tmp_path / "run", data=data)
    with pytest.raises(EdgeAffectError, match="dataset .*nowhere not found; pass --data"):
        export_run(run, ["onnx"], exporter="legacy", data=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgeAffectError, match="cannot read the val split of .*empty for tiny_av_test"):
        export_run(run, ["onnx"], exporter="legacy", data=tmp_path / "empty")
    assert not (run / "model.onnx").exists()                      # nothing written before the data was read


def test_an_export_that_fails_parity_publishes_nothing(tmp_path, data, monkeypatch):
    """Artifacts are built in a staging folder and get their names only after parity passed."""
    from edgeaffect.runtimes.openvino import export as export_mod

    run = make_run(tmp_path / "run", data=data)
    export_run(run, ["onnx", "openvino"], exporter="legacy")
    before = {p: p.read_bytes() for p in (run / "model.onnx", run / "openvino" / "model.xml")}
    real = export_mod.export_openvino

    def drifted(onnx_path, xml_path, **kw):      # an IR whose outputs no longer match torch
        import onnx
        from onnx import helper

        m = onnx.load(str(onnx_path))
        out = m.graph.output[0].name
        m.graph.node[-1].output[0] = out + "_raw"
        m.graph.node.append(helper.make_node("Add", [out + "_raw", out + "_raw"], [out]))
        broken = tmp_path / "broken.onnx"
        onnx.save(m, str(broken))
        return real(broken, xml_path, **kw)

    monkeypatch.setattr(export_mod, "export_openvino", drifted)
    with pytest.raises(EdgeAffectError, match="openvino output differs from torch"):
        export_run(run, ["onnx", "openvino"], exporter="legacy")
    assert {p: p.read_bytes() for p in before} == before         # the earlier IR stays, untouched
    assert not list(run.glob(".export-*"))                       # the staging folder is gone


def test_failed_export_leaves_nothing(tmp_path, monkeypatch):
    import torch

    def boom(*a, **k):
        open(a[2], "wb").write(b"half")
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(torch.onnx, "export", boom)
    with pytest.raises(EdgeAffectError, match="ONNX export \\(legacy\\) of tiny_av_test failed: exporter crashed"):
        export_onnx(tiny_av_test(), tmp_path / "m.onnx", exporter="legacy")
    assert list(tmp_path.iterdir()) == []


def test_export_tensorrt_through_the_fakes(tmp_path, data, monkeypatch):
    install(monkeypatch, gpu="NVIDIA Jetson Orin Nano")
    run = make_run(tmp_path / "run", data=data)
    report = export_run(run, ["onnx", "tensorrt"], exporter="legacy", fp16=True)
    engines = sorted(p.name for p in (run / "tensorrt").glob("*.engine"))
    name = "NVIDIA-Jetson-Orin-Nano-16sm-8GB-cc8.7-trt10.3.0"
    assert engines == [f"{name}.fp16.b1-1-32.engine", f"{name}.fp32.b1-1-32.engine"]
    assert [(p.runtime, p.precision) for p in report.parity] == [("onnxruntime", "fp32"), ("tensorrt", "fp32")]
    fp16 = report.precisions["tensorrt-fp16"]   # fp16 is guarded on the metric, not held to the fp32 tolerance
    assert fp16["accepted"] and fp16["precision"] == "fp16" and fp16["drop_points"] is not None
    assert "skipped" not in fp16 and "onnxruntime-fp16" in report.skipped   # ORT's CPU provider has no fp16
    arts = json.loads((run / "manifest.json").read_text())["artifacts"]
    assert arts[f"tensorrt/{name}.fp32.b1-1-32.engine"]["precision"] == "fp32"


def test_cli_export(tmp_path, data, capsys):
    run = make_run(tmp_path / "run", data=data)
    assert main(["export", str(run), "--format", "onnx,openvino", "--batch", "2", "--exporter", "legacy"]) == 0
    err = capsys.readouterr().err
    assert "ok" in err and "pearson" in err and f"next: edgeaffect bench {run}" in err.replace("\n", "")
    assert "--split" not in err   # the next steps need no flag eval's defaults choose
    with load(run / "openvino" / "model.xml") as rt:
        assert rt.inputs[0].shape[0] == 2  # --batch without --dynamic fixes the batch
    assert main(["export", str(run), "--format", "tensorrt"]) == 1
    assert "pip install 'edgeaffect[tensorrt]'" in capsys.readouterr().err
    assert main(["export", str(run), "--format", "tflite"]) == 1
    assert "unknown export format 'tflite'" in capsys.readouterr().err


def test_samples_are_read_with_the_reader_options_the_run_recorded(tmp_path, monkeypatch):
    """A run trained on a custom split (e.g. RAVDESS actors) is checked on that split, not the default."""
    from edgeaffect.evaluate import load_samples
    from edgeaffect.runs import Run
    from edgeaffect.spec import ModelSpec, TensorSpec
    from edgeaffect import tasks

    seen = {}

    class Probe(tasks.Task):
        name, metric = "kwprobe", "acc"

        def dataset(self, root, split, spec, **kw):
            seen.update(kw)
            return [{"x": np.zeros(2, np.float32), "target": np.int64(0)}]

    monkeypatch.setitem(tasks._TASKS, "kwprobe", Probe())
    spec = ModelSpec(name="probe", task="kwprobe", inputs=(TensorSpec("x", ("B", 2)),),
                     outputs=(TensorSpec("y", ("B", 2)),), labels=("a", "b"))
    run = Run(tmp_path, {"spec": spec.to_dict(), "data": {"root": str(tmp_path), "dataset_kwargs": {"test_actors": [1, 2]}}})
    s = load_samples(spec, run.data_dir, "val", dataset_kwargs=run.dataset_kwargs)
    assert seen == {"test_actors": [1, 2]} and len(s) == 1 and s.source.startswith("val split")


def test_a_sample_limit_spreads_over_the_split_not_its_head(tmp_path, monkeypatch):
    from edgeaffect.evaluate import spread_indices
    from edgeaffect.spec import ModelSpec, TensorSpec
    from edgeaffect import tasks

    assert spread_indices(5, None).tolist() == [0, 1, 2, 3, 4] and spread_indices(5, 9).tolist() == [0, 1, 2, 3, 4]
    assert spread_indices(100, 5).tolist() == [0, 25, 50, 74, 99]

    class Probe:                                   # a split of 100 samples whose value is its index
        def dataset(self, root, split, spec, **kw):
            return [{"x": np.full(2, i, np.float32), "target": np.int64(i)} for i in range(100)]

    monkeypatch.setitem(tasks._TASKS, "spreadprobe", Probe())
    spec = ModelSpec(name="probe", task="spreadprobe", inputs=(TensorSpec("x", ("B", 2)),),
                     outputs=(TensorSpec("y", ("B", 2)),), labels=("a", "b"))
    s = load_samples(spec, tmp_path, "val", limit=4)
    assert s.target.tolist() == [0, 33, 66, 99] and "4 of 100 samples, evenly spaced" in s.source
    assert "(100 samples)" in load_samples(spec, tmp_path, "val", limit=None).source


class _Payload:
    """Unpickling this runs ``os.system``: what a crafted checkpoint does."""

    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_a_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path, monkeypatch, capsys):
    import torch

    run = make_run(tmp_path / "run")
    torch.save({"model": "tiny_av_test", "state_dict": {}, "x": _Payload()}, run / "checkpoint.pt")
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(run), "--format", "onnx"]) == 1
    err = capsys.readouterr().err
    assert "refused to load" in err and "checkpoint.pt" in err and "Traceback" not in err
    assert not (tmp_path / "PWNED").exists()


def test_fp16_on_tensorrt11_builds_from_an_fp16_onnx_or_is_a_skipped_row(tmp_path, data, monkeypatch):
    install(monkeypatch, version="11.0.0", gpu="NVIDIA Jetson Orin Nano")
    run = make_run(tmp_path / "run", data=data)
    report = export_run(run, ["onnx", "tensorrt"], exporter="legacy", precisions=["fp16"])
    name = "NVIDIA-Jetson-Orin-Nano-16sm-8GB-cc8.7-trt11.0.0"
    assert sorted(p.name for p in (run / "tensorrt").glob("*.engine")) == [f"{name}.fp16.b1-1-32.engine",
                                                                           f"{name}.fp32.b1-1-32.engine"]
    assert report.precisions["tensorrt-fp16"]["accepted"] and "tensorrt-fp16" not in report.skipped
    monkeypatch.setitem(sys.modules, "onnxruntime.transformers.float16", None)   # no fp16 ONNX converter
    report = export_run(run, ["onnx", "tensorrt"], exporter="legacy", precisions=["fp16"])
    assert "pip install 'edgeaffect[onnxruntime]'" in report.skipped["tensorrt-fp16"]   # a row, not an abort
    assert f"tensorrt/{name}.fp32.b1-1-32.engine" in json.loads((run / "manifest.json").read_text())["artifacts"]


def test_a_metric_that_moves_although_the_outputs_match_is_explained(capsys):
    from edgeaffect.cli.export import print_export_report
    from edgeaffect.export import ExportReport, Parity

    def parity(metric, diff):
        return Parity("onnxruntime", "val", 32, diff, "roc_auc_micro", 0.5338, metric, 1.0, 1e-4)

    print_export_report(ExportReport(parity=[parity(0.5054, 9.3e-10), parity(0.5338, 9.3e-10), parity(0.5054, 0.2)]))
    lines = capsys.readouterr().err.replace("\n", " ").split("ok onnxruntime")[1:]   # rich wraps at the width
    assert len(lines) == 3 and "scores are nearly tied" in lines[0] and "tied" not in lines[1] + lines[2]
