"""The demo runs every task's model on a real-face video with a voice track and writes its JSONL.

The clip pastes the astronaut's photographed face (``skimage.data.astronaut()``)
onto a background with small motion and muxes the project's synthetic voice;
each model is a tiny untrained run (a checkpoint and a manifest), which is all
the JSONL's shape and the feeds' shapes depend on.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgeaffect.data.feeds import audio_input, clip_frames, model_fps, output_kind, region_order, regions

TASKS = {
    "eri": ("eri_dual_branch", dict(frames=4, face_size=32)),
    "ravdess": ("ravdess_ia", dict(frames=4, face_size=32)),
    "expr": ("expr_mobilenetv2", dict(face_size=32, width_mult=0.25)),
    "va": ("va_jca_edge", dict(subclips=4, frame_size=32, width=4)),
    "body": ("body_tsn_mobilenetv2", dict(size=32, width=0.25, segments=3, input="fusion")),
}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from edgeaffect.demo.clips import render_clip

    return render_clip(tmp_path_factory.mktemp("clip") / "astro.mp4", seconds=1.5, fps=10, size=(320, 240))


def _run(tmp_path, name, overrides):
    import torch

    from edgeaffect import runs
    from edgeaffect.models import create_model

    torch.manual_seed(0)
    model = create_model(name, **overrides)
    run = tmp_path / name
    run.mkdir()
    runs.save_checkpoint(run / "checkpoint.pt", model, name, overrides)
    (run / "manifest.json").write_text(json.dumps({"spec": model.spec.to_dict()}))
    return run, model.spec


class Recorder:
    """Wraps the opened runtime and keeps the shapes of every feed it was given."""

    def __init__(self, rt):
        self.rt, self.spec, self.inputs, self.name = rt, rt.spec, rt.inputs, "recorder"
        self.fed: list[dict] = []

    def infer(self, feeds):
        self.fed.append({k: (v.shape, float(np.abs(v).max())) for k, v in feeds.items()})
        return self.rt.infer(feeds)

    def close(self):
        self.rt.close()


@pytest.mark.parametrize("task", list(TASKS))
def test_demo_runs_each_task_headless_on_a_real_face_with_voice(task, clip, tmp_path):
    from edgeaffect.demo.runner import open_model
    from edgeaffect.demo.session import build_session

    name, overrides = TASKS[task]
    run, spec = _run(tmp_path, name, overrides)
    rt, _ = open_model(run, "torch")
    rec = Recorder(rt)
    jl = tmp_path / "out.jsonl"
    s = build_session(str(clip), runner=rec, jsonl=jl, sync=True, max_faces=1, detect_every=2)
    stats = s.run()
    lines = [json.loads(x) for x in jl.read_text().splitlines()]
    assert len(lines) == stats.frames == 15
    # every feed had exactly the model's input shapes (batch 1 for the one face)
    assert len(rec.fed) >= 2
    for t in spec.inputs:
        assert all(f[t.name][0] == t.concrete(1) for f in rec.fed), (t.name, rec.fed[-1])
    a = audio_input(spec)
    told = s.describe()
    assert told.startswith(f"{spec.name} on recorder fp32; faces: ") and \
        ("audio: the file's track" if a is not None else "audio: none (a video-only model)") in told
    if a is not None:  # the clip's voice reached the model, not silence
        assert s.demo.audio is not None and rec.fed[-1][a.name][1] > 0
    scored = [f for r in lines for f in r["faces"] if f["scores"]]
    assert len(scored) >= 10
    f = scored[-1]
    assert set(f["scores"]) == set(spec.labels) and all(np.isfinite(list(f["scores"].values())))
    kind = output_kind(spec)
    if kind == "circumplex":
        assert f["label"] is None and all(-1 <= v <= 1 for v in f["scores"].values())
    elif kind != "multilabel":
        assert f["label"] in spec.labels
    if kind == "classes":
        assert abs(sum(f["scores"].values()) - 1) < 1e-3
    if kind == "multilabel":
        assert f["labels"] == [k for k, v in f["scores"].items() if v > 0.5]
        for g in (g for r in lines for g in r["faces"] if g["scores"]):   # the label is a decision, never a
            on = g["labels"]                                                 # top score below 0.5
            assert g["label"] == (max(on, key=g["scores"].get) if on else None)
    if any(r != "face" for r in regions(spec).values()):   # body models: a person box around the face box
        bx, by, bw, bh = f["body_box"]
        x, y, w, h = f["box"]
        assert bx <= x and by <= y and bx + bw >= x + w and by + bh >= y + h and bw > 2 * w
    else:
        assert "body_box" not in f


def test_each_spec_says_what_the_demo_collects():
    from edgeaffect.models import create_model

    specs = {task: create_model(n, **kw).spec for task, (n, kw) in TASKS.items()}
    assert {t: output_kind(s) for t, s in specs.items()} == {
        "eri": "intensities", "ravdess": "classes", "expr": "classes", "va": "circumplex", "body": "multilabel"}
    assert region_order(specs["body"]) == ["body", "face"]
    assert region_order(create_model("body_tsn_mobilenetv2", size=32, width=0.25, input="fullbody").spec) == ["fullbody"]
    assert clip_frames(specs["va"]) == 4 * 4 and model_fps(specs["va"].preprocessing) == 15.0   # 30 fps / dilation 2
    assert clip_frames(specs["body"]) == 3 and model_fps(specs["body"].preprocessing) == 1.0    # 3 segments over 3 s
    assert clip_frames(specs["expr"]) == 1


def test_va_audio_windows_are_the_readers_subclip_windows():
    """Each sub-clip's log-mel is the reader's window ending at that sub-clip's last frame."""
    from edgeaffect.data.affwild2_va import log_mel_window
    from edgeaffect.data.audio import mel_power
    from edgeaffect.data.feeds import audio_features, audio_samples
    from edgeaffect.models import create_model

    spec = create_model("va_jca_edge", subclips=4, frame_size=32, width=4).spec
    pre = spec.preprocessing
    n = audio_samples(spec)
    hop = round(pre["window"] / pre["video_fps"] * pre["sample_rate"])
    assert n == 3 * hop + pre["audio_samples"]
    y = np.random.default_rng(0).normal(0, 0.1, n + 12 * pre["hop_length"]).astype(np.float32)
    feats = audio_features(spec, y[-n:])
    assert feats.shape == audio_input(spec).concrete(1)[1:]
    whole = mel_power(y, pre)  # the reader's whole-track spectrogram: the same columns, but for the ring's edge
    ref = np.stack([log_mel_window(whole, len(y) - (3 - i) * hop, pre) for i in range(4)])[:, None]
    np.testing.assert_allclose(feats[1:, ..., 2:], ref[1:, ..., 2:], atol=1e-3)
    assert not np.allclose(feats[1:], feats[:-1], atol=0.1)   # and each sub-clip its own window


def test_two_voiced_sources_share_one_call_of_an_audio_model(clip, tmp_path):
    """ERI (face video + voice) on two sources: their faces go in one call, each with its own source's audio."""
    from edgeaffect.demo.runner import open_model
    from edgeaffect.demo.session import build_session

    name, overrides = TASKS["eri"]
    run, spec = _run(tmp_path, name, overrides)
    rt, _ = open_model(run, "torch")
    rec = Recorder(rt)
    s = build_session([str(clip), str(clip)], runner=rec, jsonl=tmp_path / "p.jsonl", sync=True, max_faces=1,
                      detect_every=2)
    s.run()
    a = audio_input(spec)
    calls = rec.fed[1:]                                               # after the warm-up
    assert len(calls) >= 2 and all(f[a.name][0][0] == 2 for f in calls)   # both sources' faces in every call
    assert all(f[a.name][1] > 0 for f in calls)                       # with their voices, not silence
    for i in (0, 1):
        lines = [json.loads(x) for x in (tmp_path / f"p.{i}.jsonl").read_text().splitlines()]
        assert sum(bool(f["scores"]) for r in lines for f in r["faces"]) >= 10


def test_valence_arousal_scores_stay_on_the_circumplex():
    from edgeaffect.data.feeds import scores_from_outputs
    from edgeaffect.models import create_model

    spec = create_model(*[TASKS["va"][0]], **TASKS["va"][1]).spec
    raw = {n: np.array([[0.2, -2.9], [5.1, 0.3]], np.float32) for n in spec.output_names}
    y = scores_from_outputs(spec, raw)
    assert y.min() >= -1 and y.max() <= 1 and y.shape == (2, 2)
    assert np.allclose(y[:, 0], [-1.0, 0.3])     # the newest step of each output; an overshoot is clipped


def test_an_audio_model_on_a_silent_clip_says_it_hears_silence(tmp_path):
    """A video without an audio track feeds an audio-visual model silence; the start line must say so."""
    from edgeaffect.demo.clips import render_clip
    from edgeaffect.demo.runner import open_model
    from edgeaffect.demo.session import build_session

    silent = render_clip(tmp_path / "silent.mp4", seconds=0.5, fps=10, size=(160, 120), audio=False)
    run, spec = _run(tmp_path, *TASKS["eri"])
    rt, _ = open_model(run, "torch")
    s = build_session(str(silent), runner=Recorder(rt), sync=True, max_faces=1)
    assert s.demo.audio is None and "audio: silence (the source has no audio track)" in s.describe()
    rt.close()
