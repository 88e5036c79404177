"""Tasks are torch-free: readers, metrics and task lookup work in an environment without torch."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from .conftest import TINY_MODEL

_NO_TORCH = """
import sys

class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is blocked in this test ({name})")
        return None

sys.meta_path.insert(0, _NoTorch())
"""


def _run_without_torch(code: str, **values) -> dict:
    """Run ``code`` in a fresh interpreter that cannot import torch; it prints one JSON line."""
    script = _NO_TORCH + "".join(f"{k} = __import__('json').loads({json.dumps(v)!r})\n" for k, v in values.items()) + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_blocker_really_blocks_torch():
    out = _run_without_torch("""
        import json
        try:
            import torch
            print(json.dumps({"blocked": False}))
        except ImportError:
            print(json.dumps({"blocked": True}))
    """)
    assert out == {"blocked": True}


def test_tasks_read_and_score_real_layouts_without_torch(tiny_eri, tmp_path):
    from edgeaffect.data.synth.affwild2_expr import generate
    from edgeaffect.models import create_model

    aw = tmp_path / "aw2"
    generate(aw, train_videos=2, val_videos=2, frames=8, unlabeled=0, size=32, seed=0)
    specs = {"eri": create_model("eri_dual_branch", **TINY_MODEL).spec.to_dict(),
             "expr": create_model("expr_mobilenetv2", face_size=32, width_mult=0.35).spec.to_dict()}
    out = _run_without_torch("""
        import json, sys
        import numpy as np
        import edgeaffect.tasks as tasks
        from edgeaffect.spec import ModelSpec

        result = {"tasks": tasks.list_tasks()}
        eri = tasks.get_task("eri")
        ds = eri.dataset(eri_root, "val", ModelSpec.from_dict(specs["eri"]), cache_dir=cache, augment=True)
        items = [ds[i] for i in range(len(ds))]
        target = np.stack([it["target"] for it in items])
        result["eri_types"] = sorted({type(v).__name__ for it in items for v in it.values()})
        result["eri_shapes"] = {k: list(v.shape) for k, v in items[0].items()}
        result["eri_perfect"] = eri.metrics({"intensities": target}, target)["pearson"]
        expr = tasks.get_task("expr")
        ds = expr.dataset(aw_root, "val", ModelSpec.from_dict(specs["expr"]))
        item = ds[0]
        y = np.array([ds[i]["target"] for i in range(len(ds))])
        result["expr_face"] = [list(item["face"].shape), str(item["face"].dtype)]
        result["expr_perfect"] = expr.metrics({"logits": np.eye(8)[np.maximum(y, 0)]}, y)["macro_f1"] > 0
        result["stateless"] = not vars(eri) and not vars(expr)
        result["torch_loaded"] = any(m == "torch" or m.startswith("torch.") for m in sys.modules)
        print(json.dumps(result))
    """, specs=specs, eri_root=str(tiny_eri), aw_root=str(aw), cache=str(tmp_path / "cache"))
    assert out["tasks"] == ["body", "eri", "expr", "fer2013", "ravdess", "va"]
    assert out["eri_types"] == ["ndarray"]                    # NumPy out, no torch tensors
    assert out["eri_shapes"] == {"video": [4, 3, 48, 48], "audio": out["eri_shapes"]["audio"], "target": [7]}
    assert out["eri_perfect"] == pytest.approx(1.0)
    assert out["expr_face"] == [[3, 32, 32], "float32"] and out["expr_perfect"]
    assert out["stateless"] and not out["torch_loaded"]


def test_a_task_dataset_trains_through_a_dataloader_as_is(tiny_eri, tmp_path):
    """Map-style NumPy items collate into tensors: the trainer needs no torch Dataset subclass."""
    import torch

    from edgeaffect.models import create_model
    from edgeaffect.tasks import get_task

    spec = create_model("eri_audio", **TINY_MODEL).spec
    ds = get_task("eri").dataset(tiny_eri, "train", spec, cache_dir=tmp_path / "cache")
    assert not isinstance(ds, torch.utils.data.Dataset) and ds.report.to_dict()
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert set(batch) == {"audio", "target"} and batch["target"].shape == (3, 7)
    assert batch["audio"].dtype == torch.float32 and torch.is_tensor(batch["audio"])


def test_augmentation_draws_from_numpy_so_a_reseed_repeats_it(tiny_eri, tmp_path):
    from edgeaffect.models import create_model
    from edgeaffect.tasks import get_task

    spec = create_model("eri_video", **TINY_MODEL).spec
    ds = get_task("eri").dataset(tiny_eri, "train", spec, cache_dir=tmp_path / "cache", augment=True)

    def draw(seed):
        np.random.seed(seed)
        return np.stack([ds[0]["video"] for _ in range(8)])

    a, b = draw(1), draw(1)
    np.testing.assert_array_equal(a, b)
    flipped = [np.array_equal(v, a[0][:, :, :, ::-1]) or np.array_equal(v, a[0]) for v in a]
    assert all(flipped) and not all(np.array_equal(v, a[0]) for v in a)    # both orientations occur


def test_the_eri_loss_kind_is_an_argument_not_task_state():
    import torch

    from edgeaffect.tasks import get_task

    task = get_task("eri")
    pred, target = torch.rand(6, 7), torch.rand(6, 7)
    assert float(task.loss(pred, target)) == pytest.approx(float(torch.nn.functional.mse_loss(pred, target)))
    assert float(task.loss(target * 2 + 1, target, kind="pcc")) == pytest.approx(0.0, abs=1e-5)
    assert not vars(task)
