"""Readers say what is wrong, early and precisely; a run that fails before its first checkpoint leaves nothing."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeaffect.data.affwild2_expr import EXPR_LABELS, index_split, read_label_file
from edgeaffect.errors import DataError, EdgeAffectError

HEADER8 = ",".join(EXPR_LABELS) + "\n"
HEADER7 = ",".join(EXPR_LABELS[:7]) + "\n"


def _expr_root(tmp_path: Path, files: dict[str, str], frames: int = 4) -> Path:
    lab = tmp_path / "EXPR_Classification_Challenge" / "Train_Set"
    lab.mkdir(parents=True)
    for name, text in files.items():
        (lab / f"{name}.txt").write_text(text)
        for i in range(1, frames + 1):
            d = tmp_path / "cropped_aligned" / name
            d.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(d / f"{i:05d}.jpg"), np.full((16, 16, 3), 20 * i, np.uint8))
    return tmp_path


def test_expr_reads_the_abaw2_seven_class_header(tmp_path):
    f = tmp_path / "v.txt"
    f.write_text(HEADER7 + "0\n6\n-1\n")
    assert read_label_file(f).tolist() == [0, 6, -1]
    f.write_text(HEADER7 + "7\n")                    # 7 is "Other", which ABAW2 files do not have
    with pytest.raises(DataError, match=r"v\.txt:2: label 7 outside -1\.\.6 \(7-class ABAW2 header\)"):
        read_label_file(f)


def test_expr_bad_lines_drop_only_those_frames_not_the_video(tmp_path):
    root = _expr_root(tmp_path, {"a": HEADER8 + "1\n8\n3\nhappy\n", "b": HEADER7 + "2\n2\n2\n2\n",
                                 "c": "Neutral,Anger\n1\n"})
    ix = index_split(root, "train")
    assert ix.videos == ["a", "b"] and ix.counts["bad_lines"] == 2 and ix.counts["bad_videos"] == 1
    a = [(p.name, int(y)) for p, y, v in zip(ix.paths, ix.labels, ix.video_ids) if v == 0]
    assert a == [("00001.jpg", 1), ("00003.jpg", 3)]          # lines 3 and 5 gone, the rest keep their frames
    assert any(p.startswith(str(root / "EXPR_Classification_Challenge" / "Train_Set" / "a.txt") + ":3: label 8")
               for p in ix.problems)
    assert any("a.txt:5: 'happy'" in p for p in ix.problems) and any("c.txt:1: header" in p for p in ix.problems)


@pytest.fixture(scope="module")
def ravdess_av(tmp_path_factory):
    from edgeaffect.data.synth.ravdess import generate_ravdess

    root = tmp_path_factory.mktemp("ravdess")
    generate_ravdess(root, actors=2, statements=1, seed=3)
    return root


@pytest.mark.parametrize("keep, missing", [("02-", "audio archive"), ("03-", "video archives")])
def test_ravdess_names_the_missing_archive(ravdess_av, tmp_path, keep, missing):
    from edgeaffect.data.ravdess import Preprocessing, prepare_split

    for f in ravdess_av.rglob("*-*-*-*-*-*-*.*"):
        name = f.name if keep == "03-" else "02-" + f.name[3:]
        if f.suffix == (".wav" if keep == "03-" else ".mp4"):
            out = tmp_path / f.parent.name / name
            out.parent.mkdir(exist_ok=True)
            shutil.copy(f, out)
    with pytest.raises(DataError, match=missing) as err:
        prepare_split(tmp_path, "train", Preprocessing(), test_actors=(9,), val_actors=(8,))
    assert "actors present []" not in str(err.value)


@dataclass(frozen=True)
class _Opts:
    data: Path


def _recipe(fail_after_checkpoint: bool):
    from edgeaffect.runs import MANIFEST
    from edgeaffect.train.recipe import Recipe

    def train(opt, out, *, resume=False, console=None):
        out.mkdir(parents=True, exist_ok=True)
        (out / MANIFEST).write_text("{}")
        (out / "stages" / "train").mkdir(parents=True, exist_ok=True)
        if fail_after_checkpoint:
            (out / "stages" / "train" / "last.pt").write_bytes(b"x")
        raise DataError("val.csv:3: Fear = 2 is not 0 or 1")

    return Recipe("fake", _Opts, train)


def test_a_run_failing_before_its_first_checkpoint_leaves_nothing(tmp_path):
    from edgeaffect.runs import writer_lock

    out = tmp_path / "runs" / "fake"
    with pytest.raises(DataError, match="val.csv:3"):
        with writer_lock(out):
            _recipe(False).run(_Opts(tmp_path), out)
    assert not out.exists()
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("mine")                    # what was there before stays
    with pytest.raises(DataError):
        _recipe(False).run(_Opts(tmp_path), out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_a_run_with_a_checkpoint_is_kept_and_resume_refuses_one_without(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(DataError):
        _recipe(True).run(_Opts(tmp_path), out)
    assert (out / "stages" / "train" / "last.pt").exists() and (out / "manifest.json").exists()
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "manifest.json").write_text("{}")              # what a SIGKILL before any epoch leaves
    with pytest.raises(EdgeAffectError, match="never reached its first checkpoint.*--overwrite"):
        _recipe(False).run(_Opts(tmp_path), killed, resume=True)


def test_emoreact_val_csv_errors_come_before_any_preprocessing(tmp_path):
    from edgeaffect.data.emoreact import LABELS
    from edgeaffect.train.body import BodyTrainOptions
    from edgeaffect.train.recipe import get_recipe

    head = "," + ",".join(["video", *LABELS, "Valence"]) + "\n"
    (tmp_path / "train.csv").write_text(head + "0,a.mp4," + ",".join("0" * 8) + ",4\n")
    (tmp_path / "val.csv").write_text(head + "0,b.mp4," + ",".join("0" * 8) + ",4\n1,c.mp4,0,0,0,0,0,0,2,0,4\n")
    out = tmp_path / "run"
    with pytest.raises(DataError, match=r"val\.csv:3: Fear = 2 is not 0 or 1"):
        get_recipe("body").run(BodyTrainOptions(data=tmp_path), out)
    assert not out.exists()


def test_ravdess_training_says_an_empty_val_split_before_preprocessing_train(ravdess_av, monkeypatch):
    from edgeaffect.data import ravdess
    from edgeaffect.data.ravdess import Preprocessing, prepare_split

    made = []
    monkeypatch.setattr(ravdess, "ClipCache", lambda *a, **k: made.append(a))   # the first step of preprocessing
    with pytest.raises(DataError, match=r"RAVDESS split 'val' is empty: .*val actors \[7\] \(set them with"):
        prepare_split(ravdess_av, "train", Preprocessing(), test_actors=(2,), val_actors=(7,))
    assert made == []
