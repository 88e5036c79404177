"""FER2013 as distributed (fer2013.csv), its task, and the synthetic set in that layout."""
from __future__ import annotations

import numpy as np
import pytest

from edgeaffect.errors import DataError


def test_read_write_roundtrip_and_splits(tmp_path):
    from edgeaffect.data.fer2013 import read_fer2013, write_fer2013

    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (6, 48, 48), dtype=np.uint8)
    labels = np.array([0, 3, 6, 5, 1, 2])
    write_fer2013(tmp_path / "fer2013.csv", faces, labels, ["Training"] * 4 + ["PublicTest", "PrivateTest"])
    f, y = read_fer2013(tmp_path, "train")
    np.testing.assert_array_equal(f, faces[:4])
    np.testing.assert_array_equal(y, labels[:4])
    assert read_fer2013(tmp_path, "val")[1].tolist() == [1]
    assert len(read_fer2013(tmp_path)[0]) == 6


@pytest.mark.parametrize("row", ["7,{px},Training", "3,1 2 3,Training", "x,{px},Training", "3,{bad},Training"])
def test_malformed_rows_are_one_clear_error(tmp_path, row):
    from edgeaffect.data.fer2013 import read_fer2013

    px = " ".join(["10"] * 2304)
    bad = " ".join(["300"] * 2304)
    (tmp_path / "fer2013.csv").write_text("emotion,pixels,Usage\n" + row.format(px=px, bad=bad) + "\n")
    with pytest.raises(DataError, match="fer2013.csv:2"):
        read_fer2013(tmp_path, "train")
    with pytest.raises(DataError, match="no fer2013.csv"):
        read_fer2013(tmp_path / "nowhere")


def test_task_feeds_the_model_like_fer_and_scores_it(tmp_path):
    import torch

    from edgeaffect.data.synth.fer2013 import generate_fer2013
    from edgeaffect.models import create_model
    from edgeaffect.tasks import get_task

    generate_fer2013(tmp_path, n=28, seed=1)
    model = create_model("fer2013_mini_xception").eval()
    task = get_task(model.spec.task)
    ds = task.dataset(tmp_path, "train", model.spec)
    item = ds[0]
    assert item["face"].shape == (1, 64, 64) and item["face"].dtype == np.float32
    assert -1.0 <= item["face"].min() and item["face"].max() <= 1.0
    assert sorted(set(ds.y.tolist())) == list(range(7))          # balanced classes
    x = torch.from_numpy(np.stack([ds[i]["face"] for i in range(len(ds))]))
    with torch.no_grad():
        logits = model(x).numpy()
    m = task.metrics({"logits": logits}, ds.y)
    assert m["accuracy"] == pytest.approx(float((logits.argmax(1) == ds.y).mean()))
    perfect = np.eye(7)[ds.y] * 5
    assert task.metrics({"logits": perfect}, ds.y) == {"accuracy": 1.0, "macro_f1": 1.0}
    assert float(task.loss(torch.from_numpy(perfect).float(), torch.from_numpy(ds.y))) < 0.05


def test_synth_cli_writes_the_distributed_layout(tmp_path):
    from edgeaffect.cli import main
    from edgeaffect.data.fer2013 import read_fer2013

    assert main(["data", "synth", "fer2013", "--out", str(tmp_path), "--faces", "21"]) == 0
    faces, labels = read_fer2013(tmp_path)
    assert faces.shape == (21, 48, 48) and faces.std() > 10
