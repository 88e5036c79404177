"""``export_run`` is the one library call behind ``edgeaffect export``: export, then INT8 (and pruning) in one."""
from __future__ import annotations

import shutil

import pytest

from edgeaffect.errors import EdgeAffectError
from edgeaffect.export import export_run
from edgeaffect.fileio import read_json
from edgeaffect.quantize.config import QuantConfig
from edgeaffect.quantize.prune import PruneConfig
from tests.fakes.tiny_model import make_dataset, make_run


@pytest.fixture
def run(tmp_path):
    data = make_dataset(tmp_path / "data", n=16)
    shutil.copyfile(data / "val.npz", data / "train.npz")     # INT8 calibrates on the train split
    return make_run(tmp_path / "run", data=data)


def test_one_call_exports_and_quantizes_the_asked_runtimes(run):
    report = export_run(run, ["onnx"], int8=QuantConfig(calib_samples=8, max_drop=100.0), exporter="legacy")
    assert report.run == run and set(report.artifacts) == {"onnxruntime-fp32"}   # "onnx" names onnxruntime
    assert set(report.int8["runtimes"]) == {"onnxruntime"} and (run / "model.int8.onnx").is_file()
    manifest = read_json(run / "manifest.json")
    assert manifest["export"]["runtimes"] == ["onnxruntime"] and manifest["quantize"]["onnxruntime"]["artifact"]


def test_bad_options_are_refused_before_anything_is_written(run):
    before = sorted(p.name for p in run.rglob("*"))
    with pytest.raises(EdgeAffectError, match="unknown runtime 'tflite'"):
        export_run(run, ["tflite"])
    with pytest.raises(EdgeAffectError, match=r"outside \(0, 0.9\]"):
        export_run(run, int8=QuantConfig(calib_samples=8), prune=PruneConfig(0.95))
    with pytest.raises(EdgeAffectError, match="--finetune-epochs must be >= 0"):
        export_run(run, prune=PruneConfig(0.5, finetune_epochs=-1))
    assert sorted(p.name for p in run.rglob("*")) == before
