"""EmoReact reader, TSN sampling, cached preprocessing, synthetic generator, body task and CLI."""
import json

import numpy as np
import pytest
import torch

from edgeaffect.data.emoreact import (LABELS, BodyPrepConfig, blackout, body_box, load_split, prepare_clips,
                                      read_split, tsn_indices)
from edgeaffect.data.faces import consistent_faces
from edgeaffect.data.preprocess import FeatureCache
from edgeaffect.errors import DataError

torch.set_num_threads(1)   # several threads on a loaded 2-core machine are many times slower

TINY = dict(clips=12, seconds=1.4, seed=5)          # 6 train / 3 val / 3 test
HEADER = "," + ",".join(["video", *LABELS, "Valence"]) + "\n"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from edgeaffect.data.synth.emoreact import EmoReactSynthConfig, generate_emoreact

    root = tmp_path_factory.mktemp("emoreact")
    generate_emoreact(root, EmoReactSynthConfig(**TINY), workers=1)
    return root


# -- reader ----------------------------------------------------------------------------------------

def test_reads_the_distributed_csv_layout(tmp_path):
    (tmp_path / "Train").mkdir()
    (tmp_path / "Train" / "80sTOYS105_2.mp4").write_bytes(b"x")
    (tmp_path / "train.csv").write_text(HEADER + "0,80sTOYS105_2.mp4,0,0,0,1,0,0,0,0,3.3333\n"
                                        "1,Missing_1.mp4,1,0,0,0,0,0,0,1.0,2.5\n")
    clips = read_split(tmp_path, "train")
    assert [c.video for c in clips] == ["80sTOYS105_2.mp4", "Missing_1.mp4"]
    assert clips[0].labels.tolist() == [0, 0, 0, 1, 0, 0, 0, 0] and clips[0].valence == pytest.approx(3.3333)
    assert clips[0].path == tmp_path / "Train" / "80sTOYS105_2.mp4" and clips[1].path is None
    assert clips[1].labels[[0, 7]].tolist() == [1, 1]


@pytest.mark.parametrize("body,match", [
    ("0,a.mp4,0,0,0,2,0,0,0,0,3\n", r"val.csv:2: Happiness = 2 is not 0 or 1"),
    ("0,a.mp4,0,0,0,x,0,0,0,0,3\n", r"val.csv:2: Happiness value 'x' is not a number"),
    ("0,a.mp4,0,0\n", r"val.csv:2: expected 11 fields, found 4"),
    ("0,a.mp4,0,0,0,0,0,0,0,0,3\n1,a.mp4,0,0,0,0,0,0,0,0,3\n", r"val.csv:3: video 'a.mp4' listed twice"),
])
def test_bad_csv_content_is_one_precise_error(tmp_path, body, match):
    (tmp_path / "val.csv").write_text(HEADER + body)
    with pytest.raises(DataError, match=match):
        read_split(tmp_path, "val")


def test_missing_files_and_columns_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_split(tmp_path / "nope", "train")
    with pytest.raises(DataError, match="train.csv not found"):
        read_split(tmp_path, "train")
    (tmp_path / "train.csv").write_text(",video,Curiosity\n0,a.mp4,1\n")
    with pytest.raises(DataError, match="missing column.*Uncertainty"):
        read_split(tmp_path, "train")


# -- sampling --------------------------------------------------------------------------------------

def test_tsn_sampling_random_in_each_segment_when_training_and_centres_at_eval():
    rng = np.random.default_rng(0)
    rand = lambda hi, k: rng.integers(0, hi, k)  # noqa: E731
    for _ in range(50):
        idx = tsn_indices(32, 3, True, rand)
        assert all(10 * s <= i < 10 * (s + 1) for s, i in enumerate(idx))   # segment length 32 // 3 = 10
    seen = {tuple(tsn_indices(32, 3, True, rand)) for _ in range(20)}
    assert len(seen) > 1
    assert tsn_indices(32, 3, False).tolist() == [5, 16, 26]            # int(tick / 2 + tick * x), tick = 32 / 3
    assert tsn_indices(2, 3, False).tolist() == [0, 1, 1]
    assert tsn_indices(2, 3, True, rand).tolist() == [0, 1, 1]


def test_blackout_only_touches_the_box():
    imgs = np.full((2, 10, 20, 3), 200, np.uint8)
    out = blackout(imgs, np.array([[0.25, 0.2, 0.5, 0.6], [0, 0, 0, 0]], np.float32))
    assert (out[0, 2:6, 5:10] == 0).all() and out[0].sum() == 200 * 3 * (200 - 20) and (out[1] == 200).all()
    assert (imgs == 200).all()


def test_a_larger_false_detection_does_not_replace_the_clips_face():
    face, shirt = (80, 40, 40, 40), (60, 110, 90, 90)       # the shirt pattern is larger, and lower
    detections = [[face], [shirt, (82, 41, 40, 40)], [face], [shirt], [], [(83, 42, 38, 38)]]
    assert consistent_faces(detections) == [face, (82, 41, 40, 40), face, None, None, (83, 42, 38, 38)]
    assert consistent_faces([[], []]) == [None, None]


def test_body_box_spans_outstretched_arms_and_stays_in_the_frame():
    # face 30 px wide centred at x=100: 7 face widths = 210 px, from one face height above the face
    assert body_box([(85, 40, 30, 30)] * 3, (240, 320)) == (0, 10, 205, 230)
    assert body_box([(145, 40, 30, 30)], (240, 320)) == (55, 10, 210, 230)


# -- synthetic set, preprocessing, dataset ---------------------------------------------------------

def test_generator_writes_the_real_layout_deterministically(tiny, tmp_path):
    from edgeaffect.data.synth.emoreact import EmoReactSynthConfig, generate_emoreact

    lines = (tiny / "train.csv").read_text().splitlines()
    assert lines[0] == HEADER.strip() and lines[1].startswith("0,SYNTH")
    counts = {s: len(read_split(tiny, s)) for s in ("train", "val", "test")}
    assert counts == {"train": 6, "val": 3, "test": 3}
    assert all(c.path is not None and c.path.parent.name == "Validation" for c in read_split(tiny, "val"))
    again = generate_emoreact(tmp_path / "again", EmoReactSynthConfig(**TINY), workers=2)
    assert (again / "test.csv").read_text() == (tiny / "test.csv").read_text()
    c = read_split(tiny, "test")[0]
    assert (again / "Test" / c.video).read_bytes() == c.path.read_bytes()


def test_body_only_labels_leave_the_face_alone_and_face_only_labels_leave_the_body_alone():
    from edgeaffect.data.synth.emoreact import CUR, FRU, HAP, SUR, UNC, EmoReactSynthConfig, render_clip

    cfg = EmoReactSynthConfig(seconds=1.4)

    def clip(*on):
        y = np.zeros(8, np.float32)
        y[list(on)] = 1
        return render_clip(y, cfg, np.random.default_rng(7))[-1].astype(int)

    neutral = clip()
    head = (slice(20, 80), slice(70, 122))       # rows / cols around the head at this seed
    below = (slice(100, 144), slice(0, 192))
    for body_label in (CUR, UNC, FRU):
        d = np.abs(clip(body_label) - neutral)
        assert d[below].mean() > 3 and d[head].mean() < 0.1 * d[below].mean()
    for face_label in (HAP, SUR):
        d = np.abs(clip(face_label) - neutral)
        assert d[head].max() > 20 and d[below].max() == 0


def test_preprocessing_caches_and_counts_bad_clips(tiny, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(tiny, root)
    clips = read_split(root, "train")
    clips[0].path.write_bytes(b"not a video")               # corrupt
    clips[1].path.unlink()                                  # missing
    cfg = BodyPrepConfig(cache_frames=6, scale_size=40)
    items, report = prepare_clips(read_split(root, "train"), cfg, tmp_path / "cache")
    assert report.ok == 4 and report.total == 6 and len(items) == 4
    assert report.skipped == {"unreadable or truncated video": 1, "video file missing": 1}
    assert "1 skipped: video file missing" in report.summary()
    with np.load(items[0][1]) as z:
        assert z["face"].shape == z["fullbody"].shape == (6, 40, 40, 3) and z["face_box"].shape == (6, 4)
        info = json.loads(bytes(z["info"]).decode())
    assert info["frames_sampled"] == 6
    _, again = prepare_clips(read_split(root, "train"), cfg, tmp_path / "cache")
    assert again.from_cache == 4 and again.ok == 4
    cache = FeatureCache(tmp_path / "cache")
    assert cache.key([items[0][0].path], BodyPrepConfig(cache_frames=7, scale_size=40)) != cache.key([items[0][0].path], cfg)
    assert not list((tmp_path / "cache").rglob("*.tmp*"))


@pytest.mark.parametrize("kind", ["face", "body", "fullbody", "fusion"])
def test_dataset_items_per_input_kind(tiny, tmp_path, kind):
    ds = load_split(tiny, "val", kind, segments=3, size=32, cache_dir=tmp_path / "c", cache_frames=6)
    item = ds[0]
    assert item["frames"].shape == (3, 3, 32, 32) and item["frames"].dtype == np.float32
    assert 0 <= item["frames"].min() and item["frames"].max() <= 1
    assert item["target"].tolist() == read_split(tiny, "val")[0].labels.tolist()
    assert ("face" in item) == (kind == "fusion")
    assert np.array_equal(ds[0]["frames"], item["frames"])     # eval: centres, no augmentation


def test_body_stream_is_the_fullbody_crop_with_the_face_blacked_out(tiny, tmp_path):
    kw = dict(segments=2, size=36, cache_dir=tmp_path / "c", cache_frames=4)
    body, full = load_split(tiny, "train", "body", **kw), load_split(tiny, "train", "fullbody", **kw)
    with_face = [i for i, (c, p) in enumerate(body.items) if np.load(p)["face_box"].any()]
    assert with_face, "the Haar detector should find the synthetic faces"
    b, f = (torch.from_numpy(ds[with_face[0]]["frames"]) for ds in (body, full))
    black = (b.sum(1) == 0) & (f.sum(1) > 0.3)
    assert black.float().mean() > 0.03                         # a face-sized hole
    near = torch.nn.functional.max_pool2d(black.float()[:, None], 5, 1, 2)[:, 0].bool()   # resize blurs the edge
    away = ~near.any(0)
    assert away.float().mean() > 0.5 and torch.allclose(b[:, :, away], f[:, :, away], atol=0.02)


def test_training_items_are_augmented_and_reproducible(tiny, tmp_path):
    ds = load_split(tiny, "train", "fullbody", segments=3, size=32, augment=True, cache_dir=tmp_path / "c", cache_frames=12)
    np.random.seed(1)                                          # the trainer reseeds NumPy every epoch
    a = [ds[0]["frames"] for _ in range(4)]
    np.random.seed(1)
    b = [ds[0]["frames"] for _ in range(4)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert any(not np.array_equal(a[0], x) for x in a[1:])


# -- task, metrics, CLI ----------------------------------------------------------------------------

def test_metrics_match_scikit_learn_on_random_data():
    from sklearn.metrics import average_precision_score, roc_auc_score

    from edgeaffect.tasks.body import multilabel_metrics

    rng = np.random.default_rng(0)
    for trial in range(5):
        y = (rng.random((60, 8)) < 0.3).astype(int)
        y[0], y[1] = 1, 0                                     # every class has both values
        logits = rng.normal(size=(60, 8)) + 1.5 * y
        if trial % 2:
            logits = np.round(logits, 0)                      # many ties
        m = multilabel_metrics(logits, y)
        assert m["roc_auc_micro"] == pytest.approx(roc_auc_score(y, logits, average="micro"), abs=1e-12)
        assert m["roc_auc_macro"] == pytest.approx(roc_auc_score(y, logits, average="macro"), abs=1e-12)
        for j, name in enumerate(LABELS):
            assert m[f"roc_auc_{name}"] == pytest.approx(roc_auc_score(y[:, j], logits[:, j]), abs=1e-12)
            assert m[f"ap_{name}"] == pytest.approx(average_precision_score(y[:, j], logits[:, j]), abs=1e-12)
        assert m["ap_macro"] == pytest.approx(average_precision_score(y, logits, average="macro"), abs=1e-12)


def test_a_class_without_positives_is_nan_and_left_out_of_the_macro_mean():
    from sklearn.metrics import roc_auc_score

    from edgeaffect.tasks.body import multilabel_metrics

    rng = np.random.default_rng(1)
    y = (rng.random((40, 8)) < 0.4).astype(int)
    y[:, 2] = 0
    logits = rng.normal(size=(40, 8))
    m = multilabel_metrics(logits, y)
    assert np.isnan(m["roc_auc_Excitement"]) and np.isnan(m["ap_Excitement"])
    keep = [j for j in range(8) if j != 2]
    assert m["roc_auc_macro"] == pytest.approx(roc_auc_score(y[:, keep], logits[:, keep], average="macro"))


def test_loss_is_bce_and_fusion_sums_the_two_streams():
    import torch.nn.functional as F

    from edgeaffect.tasks.body import BodyTask
    from edgeaffect.train.body import reference_config

    task = BodyTask()
    t = (torch.rand(4, 8) < 0.5).float()
    a, b, c = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8)
    assert torch.allclose(task.loss(a, t), F.binary_cross_entropy_with_logits(a, t))
    assert torch.allclose(task.loss((a, b, c), t), F.binary_cross_entropy_with_logits(b, t) + F.binary_cross_entropy_with_logits(c, t))
    cfg = reference_config()
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size, cfg.epochs, cfg.milestones) == \
        ("sgd", 0.01, 0.9, 5e-4, 8, 12, (20, 40))
    assert task.metric == "roc_auc_micro" and task.metric_scale == 0.01


def test_cli_trains_resumes_and_writes_a_loadable_run(tiny, tmp_path, capsys):
    from edgeaffect.cli import main
    from edgeaffect.fileio import read_json
    from edgeaffect.runs import load_model, load_run

    run = tmp_path / "run"
    args = ["train", "body", "--data", str(tiny), "--input", "fusion", "--segments", "2", "--size", "32", "--width", "0.25",
            "--shift", "--cache-frames", "4", "--batch-size", "4", "--cache", str(tmp_path / "c"), "--out", str(run)]
    assert main(args + ["--epochs", "1"]) == 0
    m = read_json(run / "manifest.json")
    undefined = [k for k, v in m["metrics"]["train"]["val_per_class"].items() if k.startswith("roc_auc_") and v is None]
    if undefined:   # a label with one outcome in the tiny split: "-" in the summary and why, not a crash
        assert "-: no ROC-AUC (" in " ".join(capsys.readouterr().err.split())
    assert m["task"] == "body" and m["model"] == "body_tsm_mobilenetv2" and m["stages_done"] == ["train"]
    assert m["spec"]["inputs"][1]["name"] == "face" and m["config"]["model"]["segments"] == 2
    assert m["config"]["model"]["fusion_streams"] == "separate"          # the CLI's default: a network per stream
    # later stages read the splits with the frames training cached (not the reader's default of 32)
    assert load_run(run).dataset_kwargs == {"cache_frames": 4, "cache_dir": str((tmp_path / "c").resolve())}
    assert 0 <= m["metrics"]["train"]["test_roc_auc_micro"] <= 1 and m["data"]["clips"]["train"] == 6
    # stretch the finished run to 2 epochs: resume continues after epoch 1
    (run / "checkpoint.pt").unlink()
    m["config"]["options"]["epochs"] = 2
    (run / "manifest.json").write_text(json.dumps(m))
    assert main(["train", "body", "--resume", str(run)]) == 0
    hist = torch.load(run / "stages" / "train" / "last.pt", weights_only=False)["history"]
    assert [h["epoch"] for h in hist] == [1, 2]
    model = load_model(load_run(run).checkpoint)
    assert model.spec.config["shift"] and model.spec.config["size"] == 32 and model.separate
    with torch.no_grad():
        assert model(torch.rand(1, 2, 3, 32, 32), torch.rand(1, 2, 3, 32, 32)).shape == (1, 8)
    # the shared export path: parity with torch on the run's validation clips, spec in the ONNX metadata
    assert main(["export", str(run), "--format", "onnx", "--exporter", "legacy"]) == 0
    from edgeaffect.runtimes import load

    rt = load(run / "model.onnx", runtime="onnxruntime")
    assert rt.spec.input_names == ["frames", "face"] and rt.spec.config["input"] == "fusion"
    feeds = {n: np.random.default_rng(0).random((2, 2, 3, 32, 32), dtype=np.float32) for n in rt.spec.input_names}
    with torch.no_grad():
        want = model(*[torch.from_numpy(feeds[n]) for n in rt.spec.input_names]).numpy()
    np.testing.assert_allclose(rt.infer(feeds)["logits"], want, atol=1e-4)


def test_cli_bad_input_is_one_line(tiny, tmp_path, capsys):
    from edgeaffect.cli import main

    assert main(["train", "body", "--data", str(tiny), "--input", "hands"]) == 1
    out = tmp_path / "run"
    assert main(["train", "body", "--data", str(tmp_path / "none"), "--size", "32", "--out", str(out)]) == 1
    assert main(["train", "body", "--resume", str(tmp_path / "nothing")]) == 1
    assert main(["train", "body", "--data", str(tiny), "--input", "fusion", "--fusion-streams", "two"]) == 1
    err = capsys.readouterr().err
    assert "--input must be one of face, body, fullbody, fusion" in err
    assert "--fusion-streams must be one of shared, separate" in err
    assert "does not exist" in err and "cannot resume" in err and "Traceback" not in err
    assert not out.exists()                                    # nothing written for a bad dataset
