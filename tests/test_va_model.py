"""Aff-Wild2 VA models: fidelity of parameter counts, the compact JCA formula, CCC loss/metric, ONNX export."""
import math

import numpy as np
import pytest
import torch

from edgeaffect.models import create_model
from edgeaffect.models.registry import count_parameters
from edgeaffect.models.va import LiteJCAFusion, R2Plus1D18, r2plus1d_out_shape
from edgeaffect.tasks.metrics import ccc
from edgeaffect.tasks.va import VATask, ccc_loss


def test_reference_parameter_counts():
    model = create_model("va_jca")
    f = model.fusion
    # reference/models.md §4, counted from orig_cam.py / audguide_att.py / av_crossatten.py / layer.py
    assert count_parameters(f.video_attn, trainable_only=True) == 838_193
    assert count_parameters(f.coattn, trainable_only=True) == 2_625_056
    assert count_parameters(f.joint, trainable_only=True) == 4_991_488
    assert count_parameters(f.vregressor) + count_parameters(f.aregressor) == 131_586
    assert count_parameters(f, trainable_only=True) == 8_586_323
    # torchvision r2plus1d_18 without fc (31,505,325 - 205,200) and resnet18 with a 1-channel stem, without fc
    assert count_parameters(model.video_net) == 31_300_125
    assert count_parameters(model.audio_net) == 11_170_240
    assert model.positions == 49
    assert count_parameters(create_model("va_jca_lite").fusion) == 314_626   # models/cam.py


def test_specs_name_inputs_and_outputs():
    spec = create_model("va_jca_lite").spec
    assert [t.describe() for t in spec.inputs] == ["video[B,16,3,8,112,112] float32", "audio[B,16,1,64,104] float32"]
    assert spec.output_names == ["valence", "arousal"] and spec.metric == "ccc"
    edge = create_model("va_jca_edge", subclips=8).spec
    assert edge.inputs[0].shape == ("B", 8, 3, 4, 48, 48) and edge.preprocessing["window"] == 8
    assert r2plus1d_out_shape(8, 112) == (1, 7, 7)


def test_r2plus1d_output_map():
    net = R2Plus1D18(width=8).eval()
    assert net(torch.zeros(2, 3, 8, 64, 64)).shape == (2, 64, 1, 4, 4)


def _cam_per_sample(m: LiteJCAFusion, audio: torch.Tensor, video: torch.Tensor):
    """models/cam.py's loop, written out per sample, with the module's weights."""
    vouts, aouts = [], []
    for i in range(audio.shape[0]):
        a = m.encoder1(audio[i])
        v = m.encoder2(video[i])
        av = torch.cat((a, v), 1)
        vt = m.affine_v(av.transpose(0, 1))
        vis_att = torch.tanh(torch.mm(v.transpose(0, 1), vt.transpose(0, 1)) / math.sqrt(av.shape[1]))
        h_v = torch.relu(m.W_cv(vis_att) + m.W_v(v.transpose(0, 1)))
        att_v = m.W_hv(h_v).transpose(0, 1) + v
        feats = torch.cat((video[i], att_v), 1)
        vouts.append(m.vregressor(feats))
        aouts.append(m.aregressor(feats))
    return torch.stack(vouts).squeeze(-1), torch.stack(aouts).squeeze(-1)


def test_lite_fusion_equals_the_per_sample_reference_formula():
    torch.manual_seed(0)
    m = LiteJCAFusion(video_dim=512, audio_dim=512, length=16).eval()
    audio, video = torch.randn(3, 16, 512), torch.randn(3, 16, 512)
    got_v, got_a = m(video[:, :, None, :], audio)          # one "position": pooling is the identity
    ref_v, ref_a = _cam_per_sample(m, audio, video)
    torch.testing.assert_close(got_v, ref_v, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got_a, ref_a, rtol=1e-4, atol=1e-5)


def _ccc_numpy(x, y):
    x, y = np.ravel(x).astype(np.float64), np.ravel(y).astype(np.float64)
    rho = np.corrcoef(x, y)[0, 1]
    return 2 * rho * x.std() * y.std() / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def test_ccc_metric_and_loss_against_numpy():
    rng = np.random.default_rng(0)
    y = rng.uniform(-1, 1, (20, 16))
    p = 0.6 * y + rng.normal(0, 0.3, y.shape) + 0.1
    assert ccc(p, y) == pytest.approx(_ccc_numpy(p, y), abs=1e-9)
    yc = y - y.mean()
    assert ccc(y, y) == pytest.approx(1.0) and ccc(-yc, yc) == pytest.approx(-1.0, abs=1e-9)
    assert ccc(y + 0.5, y) < 0.9  # a biased prediction is penalised although perfectly correlated
    # the loss uses unbiased std (torch.std) as the reference: compare with ddof=1
    xs, ys = p.ravel(), y.ravel()
    rho = np.corrcoef(xs, ys)[0, 1]
    sx, sy = xs.std(ddof=1), ys.std(ddof=1)
    ref = 1 - 2 * rho * sx * sy / (sx ** 2 + sy ** 2 + (xs.mean() - ys.mean()) ** 2)
    assert float(ccc_loss(torch.tensor(p), torch.tensor(y))) == pytest.approx(ref, abs=1e-5)


def test_task_loss_and_metrics_take_the_output_tuple():
    task = VATask()
    target = torch.rand(4, 16, 2) * 2 - 1
    perfect = (target[..., 0].clone(), target[..., 1].clone())
    assert float(task.loss(perfect, target)) == pytest.approx(0.0, abs=1e-5)
    noisy = (torch.zeros(4, 16) + torch.randn(4, 16) * 0.01, target[..., 1])
    assert float(task.loss(noisy, target)) > 0.9
    m = task.metrics({"valence": target[..., 0].numpy(), "arousal": -target[..., 1].numpy()}, target.numpy())
    assert m["ccc_valence"] == pytest.approx(1.0) and m["ccc_arousal"] < -0.9
    assert m["ccc"] == pytest.approx((m["ccc_valence"] + m["ccc_arousal"]) / 2)


@pytest.mark.parametrize("name,overrides", [
    ("va_jca_edge", dict(subclips=4, frame_size=32, width=4)),
    ("va_jca_edge_int8", dict(subclips=4, frame_size=32, width=4)),   # space-to-depth stems
    ("va_jca", dict(subclips=4, frame_size=32, width=4, fusion_dim=64)),   # BiLSTM with learned initial states
])
def test_onnx_export_matches_torch(tmp_path, name, overrides):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = create_model(name, **overrides).eval()
    feeds = {k: torch.from_numpy(v) for k, v in model.spec.dummy_inputs(batch=1).items()}
    path = tmp_path / "m.onnx"
    # The legacy (TorchScript) exporter: it lowers nn.LSTM with initial states to one ONNX LSTM op.
    torch.onnx.export(model, tuple(feeds.values()), str(path), dynamo=False, opset_version=17,
                      input_names=model.spec.input_names, output_names=model.spec.output_names,
                      dynamic_axes={n: {0: "B"} for n in model.spec.input_names + model.spec.output_names})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = model.spec.dummy_inputs(batch=2, seed=1)
    got = sess.run(model.spec.output_names, batch)
    with torch.no_grad():
        ref = model(*[torch.from_numpy(v) for v in batch.values()])
    for g, r in zip(got, ref):
        assert g.shape == tuple(r.shape) == (2, 4)
        np.testing.assert_allclose(g, r.numpy(), rtol=1e-3, atol=1e-4)


def _audguide_reference(m, video, audio):
    """audguide_att.PositionAttn.forward written out with the module's weights (video rows [B, L, 49, 512])."""
    v_t = video.reshape(video.shape[0] * video.shape[1], -1, 512)
    V = v_t
    v_t = torch.relu(m.affine_video(v_t))
    a_t = torch.relu(m.affine_audio(audio.reshape(-1, audio.shape[-1])))
    content_v = m.affine_v(v_t) + m.affine_g(a_t).unsqueeze(2)
    z_t = m.affine_h(torch.tanh(content_v)).squeeze(2)
    alpha_t = torch.softmax(z_t, dim=-1).view(z_t.size(0), -1, z_t.size(1))
    c_t = torch.bmm(alpha_t, V).view(-1, 512)
    return m.affine_feat(c_t.view(video.shape[0], -1, 512))


@pytest.mark.parametrize("weight_scale", [1.0, 20.0])
def test_position_attention_is_the_references_per_position_form(weight_scale):
    from edgeaffect.models.va import PositionAttn

    torch.manual_seed(0)
    m = PositionAttn().eval()
    with torch.no_grad():
        m.affine_g.weight.mul_(weight_scale)
    video, audio = torch.randn(2, 3, 49, 512), torch.randn(2, 3, 512)
    torch.testing.assert_close(m(video, audio), _audguide_reference(m, video, audio), rtol=1e-5, atol=1e-5)


def test_small_inputs_keep_the_per_position_form():
    model = create_model("va_jca", subclips=2, frame_size=32, width=4, fusion_dim=64)
    assert model.positions == 4 and model.fusion.video_attn.affine_g.out_features == 4
    out = model.eval()(*[torch.from_numpy(v) for v in model.spec.dummy_inputs(batch=1).values()])
    assert out[0].shape == (1, 2)
