"""TSN / TSM bodily-expression models: sizes, temporal shift, partial BN, fusion, ONNX export."""
import numpy as np
import pytest
import torch
from torch import nn

from edgeaffect.models import count_parameters, create_model, list_models
from edgeaffect.models.backbones import Bottleneck, InvertedResidual
from edgeaffect.models.body import BodyTSN, TemporalShift, model_name, temporal_shift

torch.set_num_threads(1)   # several threads on a loaded 2-core machine are many times slower

SMALL = dict(size=32, width=0.25, segments=3)


def reference_shift(x: torch.Tensor, n_segment: int, fold_div: int) -> torch.Tensor:
    """TSM's published shift (in-place index assignment into a zero tensor)."""
    nt, c, h, w = x.size()
    x = x.view(nt // n_segment, n_segment, c, h, w)
    fold = c // fold_div
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]
    out[:, 1:, fold:2 * fold] = x[:, :-1, fold:2 * fold]
    out[:, :, 2 * fold:] = x[:, :, 2 * fold:]
    return out.view(nt, c, h, w)


@pytest.mark.parametrize("segments,channels,div", [(3, 16, 8), (5, 24, 8), (2, 10, 4), (1, 16, 8), (4, 7, 8)])
def test_temporal_shift_matches_the_reference_implementation(segments, channels, div):
    x = torch.randn(2 * segments, channels, 3, 4)
    assert torch.equal(temporal_shift(x, segments, div), reference_shift(x, segments, div))


def test_registered_parameter_counts_match_the_reference():
    # MobileNetV2 features 2,223,872 + new_fc 10,248; ResNet-50 trunk 23,508,032 + new_fc 16,392; TSM adds nothing
    for shift in (False, True):
        for kw in ({"input": "body"}, {"input": "fusion"}, {"input": "fusion", "fusion_streams": "shared"}):
            # the seed's fusion shares one network between the two streams (the model's default)
            assert count_parameters(create_model(model_name("mobilenet_v2", shift), **kw)) == 2_223_872 + 10_248
            assert count_parameters(create_model(model_name("resnet50", shift), **kw)) == 23_508_032 + 16_392
        separate = create_model(model_name("mobilenet_v2", shift), input="fusion", fusion_streams="separate")
        assert count_parameters(separate) == 2 * (2_223_872 + 10_248)      # a network per stream
    assert list_models("body") == ["body_tsm_mobilenetv2", "body_tsm_resnet50", "body_tsn_mobilenetv2", "body_tsn_resnet50"]


def test_shift_wraps_the_first_conv_of_every_residual_block():
    res = create_model("body_tsm_resnet50", **SMALL)
    bottlenecks = [m for m in res.modules() if isinstance(m, Bottleneck)]
    assert len(bottlenecks) == 16 and all(isinstance(b.conv1, TemporalShift) for b in bottlenecks)
    blocks = [m for m in create_model("body_tsm_mobilenetv2").modules() if isinstance(m, InvertedResidual)]
    shifted = [b for b in blocks if isinstance(b.conv[0], TemporalShift)]
    assert len(shifted) == 10 and shifted == [b for b in blocks if b.use_res]   # every residual block, only those
    assert not any(isinstance(m, TemporalShift) for m in create_model("body_tsn_mobilenetv2", **SMALL).modules())
    with pytest.raises(ValueError):
        create_model("body_tsn_mobilenetv2", shift=True)


@pytest.mark.parametrize("arch", ["mobilenet_v2", "resnet50"])
def test_shift_mixes_segments_and_tsn_does_not(arch):
    torch.manual_seed(0)
    x = torch.rand(1, 3, 3, 32, 32)
    y = x.clone()
    y[0, 2] = torch.rand(3, 32, 32)     # change only the last segment
    for shift in (False, True):
        m = create_model(model_name(arch, shift), **SMALL).eval()
        feats = lambda v: m.base_model(((v - m.mean[None]) / m.std[None]).reshape(3, 3, 32, 32))  # noqa: E731
        with torch.no_grad():
            fx = feats(x)[:2]
            changed = ((fx - feats(y)[:2]).abs().max() / fx.abs().max()).item()
        assert (changed > 1e-4) == shift, changed


def test_partial_bn_freezes_every_batchnorm_but_the_first():
    m = create_model("body_tsn_mobilenetv2", **SMALL)
    bns = [b for b in m.base_model.modules() if isinstance(b, nn.BatchNorm2d)]
    before = [b.running_mean.clone() for b in bns]
    weights = [b.weight.detach().clone() for b in bns]
    m.train()
    assert bns[0].training and not any(b.training for b in bns[1:])
    assert bns[0].weight.requires_grad and not any(b.weight.requires_grad for b in bns[1:])
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    loss = m(torch.rand(2, 3, 3, 32, 32)).pow(2).sum()
    loss.backward()
    opt.step()
    assert not torch.equal(bns[0].running_mean, before[0])
    assert all(torch.equal(b.running_mean, r) and torch.equal(b.weight, w) for b, r, w in zip(bns[1:], before[1:], weights[1:]))
    free = create_model("body_tsn_mobilenetv2", partial_bn=False, **SMALL).train()
    assert all(b.training for b in free.modules() if isinstance(b, nn.BatchNorm2d))
    assert m.eval() is m and not any(b.training for b in bns)


def test_fusion_averages_the_two_streams_and_returns_them_in_training():
    m = create_model("body_tsn_mobilenetv2", input="fusion", partial_bn=False, **SMALL)
    assert m.spec.input_names == ["frames", "face"] and m.spec.output_names == ["logits"]
    assert m.spec.activation == "sigmoid" and len(m.spec.labels) == 8
    body, face = torch.rand(2, 3, 3, 32, 32), torch.rand(2, 3, 3, 32, 32)
    m.eval()
    with torch.no_grad():
        out = m(body, face)
        assert torch.allclose(out, (m.stream(body) + m.stream(face)) / 2)
    m.train()
    mean, b, f = m(body, face)
    assert mean.shape == b.shape == f.shape == (2, 8)
    single = create_model("body_tsn_mobilenetv2", **SMALL)
    assert single.spec.input_names == ["frames"] and single.spec.config["input"] == "body"


def test_separate_fusion_streams_have_their_own_networks():
    """With ``fusion_streams="separate"`` the face input reaches only the face network and the body input
    only the body network; the output is still the mean of the two, and partial BN covers both."""
    torch.manual_seed(0)
    m = create_model("body_tsn_mobilenetv2", input="fusion", fusion_streams="separate", partial_bn=False, **SMALL)
    assert m.spec.config["fusion_streams"] == "separate" and m.spec.input_names == ["frames", "face"]
    body, face = torch.rand(2, 3, 3, 32, 32), torch.rand(2, 3, 3, 32, 32)
    m.train()
    mean, b, f = m(body, face)
    f.sum().backward()
    assert all(p.grad is None for p in m.base_model.parameters())
    assert all(p.grad is not None for p in m.face_base_model.parameters())
    m.zero_grad(set_to_none=True)
    m.eval()
    with torch.no_grad():
        out = m(body, face)
        assert torch.allclose(out, (m.stream(body) + m.stream(face, face=True)) / 2)
        assert not torch.allclose(m.stream(face), m.stream(face, face=True))   # two different networks
    frozen = create_model("body_tsn_mobilenetv2", input="fusion", fusion_streams="separate", **SMALL).train()
    for net in (frozen.base_model, frozen.face_base_model):
        bns = [x for x in net.modules() if isinstance(x, nn.BatchNorm2d)]
        assert bns[0].training and not any(x.training for x in bns[1:])
    with pytest.raises(ValueError):
        create_model("body_tsn_mobilenetv2", input="fusion", fusion_streams="two")


@pytest.mark.parametrize("partial_bn", [False, True])
def test_fusion_training_normalises_both_streams_together_as_evaluation_does(partial_bn):
    """Evaluation normalises both streams with one set of running statistics, so training must see the
    same mix: the first BN's running mean after one training pass is that of the two streams together
    (separate passes left it near the last stream's, and fusion scored at chance on validation)."""
    m = create_model("body_tsn_mobilenetv2", input="fusion", fusion_streams="shared", partial_bn=partial_bn, **SMALL).train()
    first_conv, first_bn = m.base_model.features[0][0], m.base_model.features[0][1]
    body, face = torch.rand(2, 3, 3, 32, 32) * 0.2, 0.8 + torch.rand(2, 3, 3, 32, 32) * 0.2   # dark vs bright
    with torch.no_grad():
        both = torch.cat((body, face)).reshape(-1, 3, 32, 32)
        expected = first_conv((both - m.mean) / m.std).mean((0, 2, 3))
    momentum = first_bn.momentum
    m(body, face)
    assert torch.allclose(first_bn.running_mean, momentum * expected, atol=1e-5)


def test_consensus_is_the_mean_of_segment_logits():
    m = create_model("body_tsn_resnet50", **SMALL).eval()
    x = torch.rand(2, 3, 3, 32, 32)
    with torch.no_grad():
        per = m.new_fc(m.base_model(((x - m.mean[None]) / m.std[None]).reshape(6, 3, 32, 32))).reshape(2, 3, 8)
        assert torch.allclose(m(x), per.mean(1), atol=1e-6)


@pytest.mark.parametrize("exporter,streams", [("legacy", "shared"), ("legacy", "separate"),
                                              pytest.param("dynamo", "shared", marks=pytest.mark.slow)])
def test_tsm_fusion_exports_to_onnx_and_matches_torch(tmp_path, exporter, streams):
    """Through the shared exporter; the batch stays dynamic (exported at 2, run at 3)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from edgeaffect.export import export_onnx, read_onnx_spec

    m = create_model("body_tsm_mobilenetv2", input="fusion", fusion_streams=streams, size=32, width=0.25, segments=3).eval()
    path = export_onnx(m, tmp_path / "tsm.onnx", exporter=exporter)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Slice", "Concat"} <= ops and "ScatterND" not in ops    # the shift, with no in-place assignment
    assert read_onnx_spec(path) == m.spec
    names = m.spec.input_names
    feeds = {n: np.random.default_rng(i).random((3, 3, 3, 32, 32), dtype=np.float32) for i, n in enumerate(names)}
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    with torch.no_grad():
        want = m(*[torch.from_numpy(feeds[n]) for n in names]).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="unknown input"):
        BodyTSN("x", input="hands", **SMALL)
    with pytest.raises(ValueError, match="unknown arch"):
        BodyTSN("x", arch="vgg", **SMALL)


def test_tsm_mobilenetv2_is_marked_as_ours():
    from edgeaffect.models.registry import get_entry

    assert "ours" in get_entry("body_tsm_mobilenetv2").description
    assert "ours" not in get_entry("body_tsm_resnet50").description
