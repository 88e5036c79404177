"""End to end: CLI training on the tiny synthetic set, manifest shape, resume equivalence."""
import json

import pytest
import torch

from edgeaffect.cli import main
from edgeaffect.models import create_model
from edgeaffect.runs import load_model, load_run
from edgeaffect.tasks.eri import ERI_TASK
from edgeaffect.train.trainer import Trainer, TrainConfig, seed_everything

from .conftest import TINY_MODEL


def _cli(*args):
    return main([str(a) for a in args])


def test_train_eri_cli_writes_run_with_manifest_shape(tiny_eri, tmp_path):
    out = tmp_path / "run"
    rc = _cli("train", "eri", "--data", tiny_eri, "--out", out, "--epochs", 1, "--batch-size", 4, "--workers", 1,
              "--frames", 4, "--face-size", 48, "--audio-seconds", 2.0)
    assert rc == 0
    run = load_run(out)
    m = run.manifest
    assert set(m["metrics"]) == {"audio", "video", "fused"}
    for stage in ("audio", "video", "fused"):
        assert -1.0 <= m["metrics"][stage]["val_pearson"] <= 1.0
    assert set(m["metrics"]["fused"]["val_pearson_per_class"]) == set(run.spec.labels)
    assert m["spec"]["name"] == "eri_dual_branch" and m["data"]["csv_sha256"]
    model = load_model(run.checkpoint)
    assert model.spec.input_names == ["video", "audio"]
    # the fused model started from the trained branches: its audio branch differs from a fresh one
    audio_best = torch.load(out / "stages/audio/best.pt", weights_only=False)["model"]
    assert audio_best.keys() >= {"audio.norm.weight"}
    assert m["config"]["options"]["model_overrides"] == TINY_MODEL and m["data"]["dataset_kwargs"] == {}
    assert m["stages_done"] == ["audio", "fused", "video"] and m["artifacts"]["checkpoint.pt"]["sha256"]
    # --resume reads the run's own options: every stage is done, so nothing trains and the scores stay
    assert _cli("train", "eri", "--resume", out) == 0
    assert load_run(out).manifest["metrics"] == m["metrics"]
    assert _cli("train", "va", "--resume", out) == 1               # an ERI run is not a VA run


def test_bad_input_is_one_line_and_exit_1(tmp_path, capsys):
    assert _cli("train", "eri", "--data", tmp_path / "missing") == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "data_info.csv").write_text("File_ID,Split\n1,Train\n")
    assert _cli("train", "eri", "--data", tmp_path / "d") == 1
    assert "missing column(s): Adoration" in capsys.readouterr().err
    assert _cli("train", "eri", "--data", tmp_path / "d", "--stages", "audio,bogus") == 1
    assert "unknown stage(s) bogus" in capsys.readouterr().err


class _Crash(Exception):
    pass


class _CrashAfterFirstEpoch(Trainer):
    def _save(self, path, obj):
        super()._save(path, obj)
        if path.name == "last.pt" and obj["epoch"] == 0:
            raise _Crash


def _trainer(cls, tiny_eri, stage_dir):
    seed_everything(0)
    model = create_model("eri_dual_branch", **TINY_MODEL)
    train = ERI_TASK.dataset(tiny_eri, "train", model.spec, augment=True)
    val = ERI_TASK.dataset(tiny_eri, "val", model.spec)
    cfg = TrainConfig(epochs=2, batch_size=3, lr=1e-3, seed=5)
    return cls(model, ERI_TASK, train, val, cfg, stage_dir)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tiny_eri, tmp_path):
    straight = _trainer(Trainer, tiny_eri, tmp_path / "a")
    straight.fit()
    ref = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["model"]

    crashing = _trainer(_CrashAfterFirstEpoch, tiny_eri, tmp_path / "b")
    with pytest.raises(_Crash):
        crashing.fit()
    resumed = _trainer(Trainer, tiny_eri, tmp_path / "b")
    resumed.fit(resume=True)
    got = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["model"]
    assert got.keys() == ref.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    hist = json.dumps(torch.load(tmp_path / "b" / "last.pt", weights_only=False)["history"])
    assert json.loads(hist)[0]["epoch"] == 1 and len(json.loads(hist)) == 2
