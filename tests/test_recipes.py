"""The one training interface: options round-trip through the manifest; the Manifest has one shape."""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from edgeaffect.errors import EdgeAffectError
from edgeaffect.train.recipe import get_recipe, list_recipes

from .test_tasks import _run_without_torch

NON_DEFAULT = {"eri": dict(stages=("audio",), loss="pcc", cache_dir=Path("/tmp/c"), model_overrides={"frames": 4}),
               "va": dict(variant="jca_lite", max_val=3, model_overrides={"width": 4}),
               "expr": dict(ssl="fixed", cutout=(0.1, 0.2), dtm_rates=(0.0, 0.5), unlabeled=Path("/tmp/u")),
               "body": dict(input="fusion", shift=True, cache_dir=Path("/tmp/c")),
               "ravdess": dict(fusion="lt", test_actors=(), val_actors=(2, 3), pretrained=Path("/tmp/ef.pth"))}


def test_every_task_has_the_same_train_signature():
    assert list_recipes() == ["body", "eri", "expr", "ravdess", "va"]
    sigs = {t: inspect.signature(get_recipe(t).train) for t in list_recipes()}
    assert len({str(s).split(")")[0].replace(get_recipe(t).options.__name__, "O") for t, s in sigs.items()}) == 1
    assert list(sigs["eri"].parameters) == ["opt", "out", "resume", "console"]


@pytest.mark.parametrize("task", sorted(NON_DEFAULT))
def test_options_are_frozen_and_round_trip_through_json(task):
    import json

    cls = get_recipe(task).options
    opt = cls(data=Path("/data/x"), **NON_DEFAULT[task])
    with pytest.raises(Exception):
        opt.epochs = 3                                         # frozen
    stored = json.loads(json.dumps(opt.to_dict()))             # what the manifest holds
    assert cls.from_dict(stored) == opt
    assert json.dumps(opt.dataset_kwargs())                    # reader options are plain JSON too


def test_options_of_an_earlier_version_are_one_clear_error():
    cls = get_recipe("eri").options
    d = cls(data=Path("d")).to_dict()
    with pytest.raises(EdgeAffectError, match="earlier version.*gone_option"):
        cls.from_dict({**d, "gone_option": 1})
    with pytest.raises(EdgeAffectError, match="unknown stage"):
        cls(data=Path("d"), stages=("audio", "bogus"))


def test_manifest_keeps_other_stages_sections_and_writes_atomically(tmp_path):
    from edgeaffect.fileio import read_json
    from edgeaffect.runs import Manifest

    m = Manifest(task="eri", config={"options": {"epochs": 1}}, data={"root": "/d", "dataset_kwargs": {}})
    m.finish_stage(tmp_path, "audio", {"val_pearson": 0.5})
    m.finish_stage(tmp_path, "audio", {"val_pearson": 0.6})
    d = read_json(tmp_path / "manifest.json")
    assert d["stages_done"] == ["audio"] and d["metrics"] == {"audio": {"val_pearson": 0.6}} and "spec" not in d
    d["export"] = {"onnx": True}
    again = Manifest.from_dict(d)
    assert again.extra == {"export": {"onnx": True}} and again.to_dict() == d
    assert not [p for p in tmp_path.iterdir() if p.name != "manifest.json"]       # no temporary left behind


def test_manifest_and_provenance_need_no_torch():
    out = _run_without_torch("""
        import json
        from edgeaffect.runs import Manifest, provenance
        p = provenance()
        print(json.dumps({"torch": p["torch"], "task": Manifest(task="va").to_dict()["task"]}))
    """)
    assert out == {"torch": None, "task": "va"}
