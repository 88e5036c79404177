"""RAVDESS task, modality dropout and the ``train ravdess`` command end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgeaffect.train.modality_dropout import modality_dropout


def _batch(b=3):
    audio = torch.rand(b, 10, 6) + 0.5
    video = torch.rand(b, 2, 3, 4, 4) + 0.5
    return {"audio": audio, "video": video, "target": torch.arange(b)}


def _ratios(out, src, j, name):
    """Per-output scale factor of input ``name`` against original sample ``j`` (None if not a scaling)."""
    r = out[name] / src[name][j]
    return float(r.mean()) if torch.allclose(r, r.mean().expand_as(r), atol=1e-5) else None


def test_softhard_is_the_reference_batch_expansion():
    src = _batch()
    out = modality_dropout("softhard")(dict(src), torch.Generator().manual_seed(0))
    assert out["audio"].shape[0] == out["video"].shape[0] == out["target"].shape[0] == 12
    for j in range(3):
        rows = [i for i in range(12) if int(out["target"][i]) == j]
        pairs = [(round(_ratios({k: out[k][i] for k in ("audio", "video")}, src, j, "audio"), 4),
                  round(_ratios({k: out[k][i] for k in ("audio", "video")}, src, j, "video"), 4)) for i in rows]
        for fixed in ((1.0, 1.0), (0.0, 1.0), (1.0, 0.0)):   # original, audio zeroed, video zeroed
            pairs.remove(fixed)
        (c, cv), = pairs                                     # the soft mix: audio * c, video * (1 - c)
        assert abs(c + cv - 1) < 1e-4 and abs(c * 100 - round(c * 100)) < 1e-3 and 0 <= c <= 0.99
    # the expanded batch is shuffled, and the same generator state gives the same batch
    assert out["target"].tolist() != sorted(out["target"].tolist())
    again = modality_dropout("softhard")(dict(src), torch.Generator().manual_seed(0))
    assert all(torch.equal(out[k], again[k]) for k in out)


def test_noise_mode_replaces_one_modality_per_copy():
    src = _batch(2)
    out = modality_dropout("noise")(dict(src), torch.Generator().manual_seed(1))
    assert out["target"].shape[0] == 6
    kinds = []
    for i in range(6):
        j = int(out["target"][i])
        a_same = torch.equal(out["audio"][i], src["audio"][j])
        v_same = torch.equal(out["video"][i], src["video"][j])
        kinds.append((a_same, v_same))
    assert sorted(kinds) == sorted([(True, True), (False, True), (True, False)] * 2)
    assert modality_dropout("none") is None
    with pytest.raises(ValueError, match="unknown modality dropout"):
        modality_dropout("hard")


def test_reference_recipe_and_task_metric():
    from edgeaffect.tasks.ravdess import RAVDESS_TASK
    from edgeaffect.train.ravdess import reference_config

    cfg = reference_config()
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.dampening, cfg.weight_decay, cfg.nesterov) == \
        ("sgd", 0.04, 0.9, 0.9, 1e-3, False)
    assert (cfg.batch_size, cfg.epochs, cfg.schedule, cfg.milestones[:4], cfg.gamma, cfg.grad_clip) == \
        (8, 100, "step", (40, 55, 65, 70), 0.1, 0.0)
    assert RAVDESS_TASK.metric == "accuracy" and RAVDESS_TASK.metric_scale == 0.01
    logits = np.array([[2.0, 0, 0], [0, 3.0, 0], [0, 0, 1.0], [5.0, 0, 0]])
    m = RAVDESS_TASK.metrics({"logits": logits}, np.array([0, 1, 1, 2]))
    assert m["accuracy"] == 0.5 and m["per_class_accuracy"] == {0: 1.0, 1: 0.5, 2: 0.0}
    loss = RAVDESS_TASK.loss(torch.tensor(logits, dtype=torch.float32), torch.tensor([0, 1, 1, 2]))
    assert abs(float(loss) - float(torch.nn.functional.cross_entropy(torch.tensor(logits).float(),
                                                                      torch.tensor([0, 1, 1, 2])))) < 1e-6


@pytest.fixture(scope="module")
def tiny_ravdess(tmp_path_factory):
    from edgeaffect.data.synth.ravdess import generate_ravdess

    root = tmp_path_factory.mktemp("ravdess_train")
    generate_ravdess(root, actors=2, statements=1, seed=7)
    return root


def test_train_command_writes_a_run_and_resumes(tiny_ravdess, tmp_path, capsys):
    from edgeaffect.cli import main
    from edgeaffect.runs import load_model, load_run

    out = tmp_path / "run"
    argv = ["train", "ravdess", "--data", str(tiny_ravdess), "--fusion", "it", "--dropout-mode", "softhard",
            "--face-size", "32", "--frames", "4", "--epochs", "1", "--batch-size", "4", "--val-actors", "2",
            "--test-actors", "", "--out", str(out)]
    assert main(argv) == 0
    run = load_run(out)
    m = run.manifest
    assert m["task"] == "ravdess" and m["model"] == "ravdess_it" and run.spec.name == "ravdess_it"
    fused = m["metrics"]["fused"]
    assert 0.0 <= fused["val_accuracy"] <= 1.0 and fused["train_clips"] == 8 and fused["val_clips"] == 8
    assert m["config"]["options"]["dropout_mode"] == "softhard" and m["config"]["train"]["dampening"] == 0.9
    assert m["data"]["dataset_kwargs"] == {"test_actors": [], "val_actors": [2], "vocal": "speech"}
    assert len(m["data"]["content_sha256"]["train"]) == 64
    model = load_model(run.checkpoint)
    assert model.spec.inputs[0].shape == ("B", 4, 3, 32, 32)
    # resuming a finished run trains nothing more and gives the same weights
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert main(["train", "ravdess", "--resume", str(out)]) == 0
    after = load_model(run.checkpoint).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    history = json.loads((out / "manifest.json").read_text())["metrics"]["fused"]
    assert history["val_accuracy"] == fused["val_accuracy"]


def test_train_command_bad_input_is_one_line(tmp_path, capsys):
    from edgeaffect.cli import main

    assert main(["train", "ravdess", "--data", str(tmp_path), "--face-size", "32"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no Actor_XX" in err[0]
    assert main(["train", "ravdess", "--data", str(tmp_path), "--fusion", "xx"]) == 1
    assert "--fusion must be one of" in capsys.readouterr().err
    assert main(["train", "ravdess", "--data", str(tmp_path), "--face-size", "40"]) == 1
    assert "multiple of 16" in capsys.readouterr().err
