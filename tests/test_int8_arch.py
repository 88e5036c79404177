"""Edge variants built for int8 kernels: eri_int8 / eri_int8_video and va_jca_edge_int8."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeaffect.errors import EdgeAffectError
from edgeaffect.models import create_model
from edgeaffect.models.eri import DenseFrameEncoder

pytestmark = pytest.mark.filterwarnings("ignore")
SMALL = dict(frames=4, face_size=32, audio_seconds=1.0)


def _convs(model):
    return [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]


def test_eri_int8_frame_cnn_is_dense_convs_with_a_space_to_depth_stem():
    model = create_model("eri_int8", **SMALL).eval()
    enc = model.video.encoder
    assert isinstance(enc, DenseFrameEncoder)
    convs = _convs(enc)
    assert all(c.groups == 1 for c in convs)                       # no depthwise conv
    assert convs[0].in_channels == 48 and convs[0].kernel_size == (3, 3)   # 4x4 space-to-depth of RGB
    assert all(c.out_channels % 16 == 0 for c in convs[:-1])        # the gate's 1-channel map excepted
    assert not any(isinstance(m, (torch.nn.SiLU, torch.nn.GELU)) for m in enc.modules())
    inputs = [torch.rand(*t.concrete(2)) for t in model.spec.inputs]
    out = model(*inputs)
    assert out.shape == (2, 7) and bool(((out > 0) & (out < 1)).all())
    assert model.spec.config["encoder"] == "dense" and create_model("eri_dual_branch").spec.config["encoder"] == "depthwise"


def test_eri_int8_video_stage_weights_load_into_the_fused_model(tmp_path):
    """The three-stage recipe: the fused eri_int8 starts from the eri_int8_video and eri_audio stages."""
    from edgeaffect.train.eri import FAMILIES, _init_fused

    stages = FAMILIES["eri_int8"]
    video, audio = create_model(stages["video"], **SMALL), create_model(stages["audio"], **SMALL)
    fused = create_model(stages["fused"], **SMALL)
    _init_fused(fused, {"video": video, "audio": audio}, tmp_path)
    for name, p in video.video.state_dict().items():
        assert torch.equal(fused.video.state_dict()[name], p)
    assert torch.equal(fused.audio.stem[0].weight, audio.audio.stem[0].weight)


def test_bad_face_size_and_unknown_model_are_one_line_errors(tmp_path, capsys):
    from edgeaffect.cli import main

    with pytest.raises(EdgeAffectError, match="multiple of 16"):
        create_model("eri_int8", face_size=40)
    assert main(["train", "eri", "--data", str(tmp_path), "--model", "eri_tiny", "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "unknown ERI model 'eri_tiny'; choose from eri_dual_branch, eri_int8" in err and "Traceback" not in err


def test_eri_int8_exports_to_onnx_matching_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from edgeaffect.export import export_onnx

    torch.manual_seed(0)
    model = create_model("eri_int8", **SMALL).eval()
    path = export_onnx(model, tmp_path / "m.onnx")
    feeds = model.spec.dummy_inputs(batch=2, seed=1)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    with torch.no_grad():
        ref = model(*[torch.from_numpy(v) for v in feeds.values()]).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-4)


def test_openvino_int8_runs_every_conv_of_eri_int8_in_int8(tmp_path):
    """No float conv left in the compiled INT8 frame CNN: no 3-channel stem, no depthwise, no 2-channel
    attention conv (the islands of eri_dual_branch)."""
    pytest.importorskip("nncf")
    from edgeaffect.export import export_onnx
    from edgeaffect.quantize.calibration import CalibrationSet
    from edgeaffect.quantize.config import QuantConfig
    from edgeaffect.runtimes.openvino import int8 as ovq

    torch.manual_seed(0)
    model = create_model("eri_int8_video", **SMALL).eval()
    onnx_path = export_onnx(model, tmp_path / "m.onnx")
    feeds = [model.spec.dummy_inputs(batch=1, seed=i) for i in range(8)]
    calib = CalibrationSet(feeds=feeds, indices=list(range(8)), split="train")
    cfg = QuantConfig.preset("openvino", calib_samples=8)
    xml = ovq.quantize(onnx_path, calib, cfg, tmp_path / "ov" / "model.int8.xml")
    with ovq.ov_runtime(xml, precision="int8") as ov:
        cov = ov.int8_coverage()
        ops = [op.get_rt_info() for op in ov.compiled.get_runtime_model().get_ordered_ops()]
    convs = [(str(i["layerType"].astype(str)), str(i["runtimePrecision"].astype(str))) for i in ops
             if str(i["layerType"].astype(str)) in ("Convolution", "GroupConvolution")]
    # every conv of the frame CNN (4 + the gate), the audio-free TCN's 6, compiled; all in int8
    assert len(convs) >= len(_convs(model)) + 6, convs
    assert {p for _, p in convs} <= {"u8", "i8"}, convs
    assert cov["macs"] >= 0.95


def test_models_command_lists_both_eri_variants_with_gflops(capsys):
    from edgeaffect.cli import main
    from edgeaffect.macs import model_gflops

    assert main(["models", "--task", "eri"]) == 0
    out = capsys.readouterr().out
    assert "GFLOPs" in out and "eri_int8" in out and "eri_dual_branch" in out
    dense = model_gflops(lambda: create_model("eri_int8"))
    assert f"{dense:.3f}" in out
    assert dense > model_gflops(lambda: create_model("eri_audio")) > 0   # the video branch counts


def test_macs_of_a_graph_with_a_free_height_and_width(tmp_path):
    """A detector's ONNX leaves height and width free: its MACs are counted at the size it is given."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeaffect.macs import onnx_node_macs

    w = numpy_helper.from_array(np.zeros((8, 3, 3, 3), np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "height", "width"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                            strides=[2, 2])
    path = tmp_path / "det.onnx"
    onnx.save(helper.make_model(helper.make_graph([conv], "det", [x], [y], [w]),
                                opset_imports=[helper.make_opsetid("", 17)]), path)
    assert onnx_node_macs(path) == {"conv": 0}                         # unknown size: not guessed
    assert onnx_node_macs(path, batch=2, shape=(3, 64, 48)) == {"conv": 2 * 8 * 32 * 24 * 27}
