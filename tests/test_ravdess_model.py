"""RAVDESS self-attention fusion: fidelity to the reference and exportability."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeaffect.errors import EdgeAffectError
from edgeaffect.models import count_parameters, create_model, list_models
from edgeaffect.models.ravdess import Attention, AttentionBlock, load_efficientface

SMALL = dict(frames=4, face_size=32)


@pytest.mark.parametrize("name, expected", [("ravdess_ia", 1_854_766), ("ravdess_it", 1_938_414),
                                            ("ravdess_lt", 2_045_550)])
def test_parameter_counts_match_the_reference(name, expected):
    model = create_model(name)
    assert count_parameters(model) == expected
    # the parts as counted by hand from the reference code (models.md §2)
    assert count_parameters(model.audio_model) == 225_864
    assert count_parameters(model.visual_model) == 1_268_118 + 284_808
    # face size, frame count and heads change no parameter
    assert count_parameters(create_model(name, heads=4, **SMALL)) == expected


def test_registry_lists_the_three_variants():
    assert {"ravdess_ia", "ravdess_it", "ravdess_lt"} <= set(list_models("ravdess"))
    spec = create_model("ravdess_ia").spec
    assert spec.input_names == ["video", "audio"]
    assert spec.inputs[0].shape == ("B", 15, 3, 224, 224) and spec.inputs[1].shape == ("B", 10, 156)
    assert spec.outputs[0].shape == ("B", 8) and spec.activation == "softmax" and spec.metric == "accuracy"
    assert spec.preprocessing["color"] == "BGR" and spec.preprocessing["sample_rate"] == 22050


@pytest.mark.parametrize("fusion", ["ia", "it", "lt"])
@pytest.mark.parametrize("heads", [1, 4])
def test_forward_shapes_and_modalities_matter(fusion, heads):
    torch.manual_seed(0)
    model = create_model(f"ravdess_{fusion}", heads=heads, **SMALL).eval()
    video, audio = torch.rand(3, 4, 3, 32, 32), torch.randn(3, 10, 156)
    out = model(video, audio)
    assert out.shape == (3, 8) and torch.isfinite(out).all()
    # both inputs reach the logits
    assert not torch.allclose(out, model(torch.zeros_like(video), audio))
    assert not torch.allclose(out, model(video, torch.zeros_like(audio)))
    # samples stay independent in eval mode (no mixing across the batch)
    assert torch.allclose(model(video[:1], audio[:1]), out[:1], atol=1e-5)


def test_attention_is_the_timm_formula():
    torch.manual_seed(0)
    att = Attention(in_dim_k=6, in_dim_q=5, out_dim=8, num_heads=2)
    xk, xq = torch.randn(2, 7, 6), torch.randn(2, 3, 5)
    out, w = att(xk, xq)
    q = (xq @ att.q.weight.T).reshape(2, 3, 2, 4).transpose(1, 2)
    k, v = (xk @ att.kv.weight.T).reshape(2, 7, 2, 2, 4).permute(2, 0, 3, 1, 4)
    ref_w = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1)      # scale (8 / 2) ** -0.5
    ref = att.proj((ref_w @ v).transpose(1, 2).reshape(2, 3, 8))
    assert w.shape == (2, 2, 3, 7)
    assert torch.allclose(w, ref_w, atol=1e-6) and torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(w.sum(-1), torch.ones(2, 2, 3))


def test_attention_block_has_no_query_residual():
    torch.manual_seed(0)
    blk = AttentionBlock(in_dim_k=4, in_dim_q=4, out_dim=4, num_heads=1).eval()
    xk = torch.randn(1, 5, 4)
    # with a single key the attention output does not depend on the query at all
    one = blk(xk[:, :1], torch.randn(1, 3, 4))
    other = blk(xk[:, :1], 10 * torch.randn(1, 3, 4))
    assert torch.allclose(one, other, atol=1e-5)


@pytest.mark.parametrize("fusion", ["ia", "it", "lt"])
def test_onnx_export_matches_torch(fusion, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = create_model(f"ravdess_{fusion}", **SMALL).eval()
    video, audio = torch.rand(2, 4, 3, 32, 32), torch.randn(2, 10, 156)
    path = tmp_path / f"{fusion}.onnx"
    torch.onnx.export(model, (video, audio), str(path), input_names=["video", "audio"], output_names=["logits"],
                      dynamic_axes={"video": {0: "B"}, "audio": {0: "B"}, "logits": {0: "B"}}, dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b in (2, 1):
        got = sess.run(None, {"video": video[:b].numpy(), "audio": audio[:b].numpy()})[0]
        np.testing.assert_allclose(got, model(video[:b], audio[:b]).detach().numpy(), atol=1e-4)


def test_pretrained_efficientface_loads_with_module_prefix(tmp_path):
    src = create_model("ravdess_ia", **SMALL).visual_model
    with torch.no_grad():
        for p in src.parameters():
            p.add_(1.0)
    state = {f"module.{k}": v for k, v in src.state_dict().items() if not k.startswith(("conv1d", "classifier"))}
    state["module.fc.weight"] = torch.zeros(7, 1024)          # the AffectNet head: not in our model
    state["module.conv5.0.weight"] = torch.zeros(3, 3)        # wrong shape: skipped, not an error
    path = tmp_path / "EfficientFace_Trained_on_AffectNet7.pth.tar"
    torch.save({"state_dict": state, "epoch": 1}, path)
    model = create_model("ravdess_ia", **SMALL)
    report = load_efficientface(model.visual_model, path)
    assert report["skipped"] == 2 and report["loaded"] == len(state) - 2
    assert torch.equal(model.visual_model.stage3[1].branch2[0].weight, src.stage3[1].branch2[0].weight)
    assert torch.equal(model.visual_model.modulator.channel_att.gate_c.gate_c_fc_0.weight,
                       src.modulator.channel_att.gate_c.gate_c_fc_0.weight)
    assert not torch.equal(model.visual_model.conv5[0].weight, src.conv5[0].weight)
    torch.save({"state_dict": {"module.foo": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(EdgeAffectError, match="no tensor matches"):
        load_efficientface(model.visual_model, tmp_path / "other.pth")
    with pytest.raises(EdgeAffectError, match="does not exist"):
        load_efficientface(model.visual_model, tmp_path / "missing.pth")


def test_bad_sizes_are_clear_errors():
    with pytest.raises(EdgeAffectError, match="multiple of 16"):
        create_model("ravdess_ia", face_size=40)
    with pytest.raises(EdgeAffectError, match="divisible"):
        create_model("ravdess_ia", heads=3)
