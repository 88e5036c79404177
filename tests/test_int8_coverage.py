"""INT8 coverage: what of a model runs in int8, read back from the graph each runtime compiled."""
from __future__ import annotations

import numpy as np
import pytest

from edgeaffect.bench import int8_notes
from edgeaffect.runtimes.base import int8_coverage


def test_coverage_weighs_layers_by_their_macs():
    cov = int8_coverage([("int8", 900), ("fp32", 100), ("int8", 0)])
    assert cov == {"layers": pytest.approx(2 / 3), "macs": pytest.approx(0.9), "float_layers": 1}
    assert int8_coverage([]) is None


def _row(precision, p50, cov=None, runtime="openvino", batch=8):
    return {"runtime": runtime, "precision": precision, "batch": batch, "p50_ms": p50, "int8_coverage": cov}


def test_bench_says_when_int8_does_not_pay():
    full = {"layers": 1.0, "macs": 1.0, "float_layers": 0}
    islands = {"layers": 0.7, "macs": 0.6, "float_layers": 5}
    assert int8_notes([_row("fp32", 10.0), _row("int8", 5.0, full)]) == []
    notes = int8_notes([_row("fp32", 10.0), _row("int8", 12.0, islands), _row("fp32", 1.0, batch=1)])
    assert len(notes) == 2
    assert "60% of the MACs" in notes[0] and "5 float layer" in notes[0]
    assert "slower than its fp32 (10.00 ms)" in notes[1]


def test_onnxruntime_coverage_is_read_from_its_optimized_graph(tmp_path):
    """A QDQ Conv that ONNX Runtime fuses into QLinearConv counts as int8, with the conv's MACs; a float
    Conv beside it counts as float."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from edgeaffect.runtimes.onnxruntime import OnnxRuntime

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.integers(-8, 8, (8, 4, 3, 3)).astype(np.int8), "w_q")
    w2 = numpy_helper.from_array(rng.normal(size=(8, 8, 1, 1)).astype(np.float32), "w2")
    consts = [numpy_helper.from_array(np.array(v, dtype=t), n) for n, v, t in
              (("s", 0.05, np.float32), ("z", 128, np.uint8), ("ws", 0.02, np.float32), ("wz", 0, np.int8))]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w_q", "ws", "wz"], ["wd"]),
             helper.make_node("Conv", ["xd", "wd"], ["c"], name="int8_conv", pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"]),
             helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["cd"]),
             helper.make_node("Conv", ["cd", "w2"], ["y"], name="float_conv")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 4, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 8, 6, 6])],
                              initializer=[w, w2, *consts])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with OnnxRuntime(path, threads=1) as rt:
        layers = sorted(rt.compute_layers())
        cov = rt.int8_coverage()
    assert layers == [("fp32", 36 * 8 * 8), ("int8", 36 * 8 * 4 * 9)]   # output elements x reduction length
    assert cov["layers"] == 0.5 and cov["macs"] == pytest.approx(288 * 36 / (288 * 36 + 64 * 36))


def test_the_guard_keeps_the_accepted_configuration_with_the_fewest_float_macs():
    """Plain INT8 fails; the ranking's two worst tensors sit on a heavy conv and a light one. Keeping both in
    float passes, and so does keeping only the light one: the guard gives the heavy conv back to int8."""
    from edgeaffect.evaluate import Samples
    from edgeaffect.quantize.guard import run_guard
    from edgeaffect.spec import BATCH, ModelSpec, TensorSpec

    spec = ModelSpec("toy", "eri", (TensorSpec("x", (BATCH, 2)),), (TensorSpec("y", (BATCH, 2)),), ("a", "b"),
                     activation="sigmoid", metric="pearson")
    rng = np.random.default_rng(0)
    target = rng.random((64, 2)).astype(np.float32)
    samples = Samples({"x": target}, target, "val", "")
    noise = rng.normal(size=target.shape).astype(np.float32)
    # only the light conv matters for accuracy; the heavy one ranks first but costs nothing when int8
    harm = {"light": 0.5, "heavy": 0.0}

    def quantize_fn(kept):
        return tuple(sorted(kept))

    def predict_fn(kept):
        return {"y": target + sum(w for name, w in harm.items() if name not in kept) * noise}

    ranking = [{"tensor": "t_heavy", "layers": ["heavy"]}, {"tensor": "t_light", "layers": ["light"]}]
    res = run_guard(quantize_fn=quantize_fn, predict_fn=predict_fn, rank_fn=lambda a: ranking, samples=samples,
                    spec=spec, fp32_outputs={"y": target}, max_drop=1.0, max_float_layers=16,
                    layer_macs={"heavy": 1_000_000, "light": 10_000})
    tried = [a["kept_float"] for a in res.attempts]
    assert tried == [[], ["heavy"], ["heavy", "light"], ["light"]]
    assert res.passed and res.kept_float == ["light"] and res.artifact == ("light",)
    assert "fewest MACs in float (0.01 M) of 2 accepted" in res.message
