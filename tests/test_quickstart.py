"""`edgeaffect quickstart` runs the whole path: train, export, bench, on a dataset already present."""
import json

from edgeaffect.cli import main
from tests.conftest import TINY_MODEL


def test_quickstart_trains_exports_and_benchmarks(tiny_eri, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["quickstart", "--data", str(tiny_eri), "--out", str(out), "--epochs", "1",
               "--frames", str(TINY_MODEL["frames"]), "--face-size", str(TINY_MODEL["face_size"]),
               "--bench-budget", "0.2"])
    assert rc == 0
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    assert "using the dataset already in" in printed  # the existing set is reused, not regenerated
    assert (out / "checkpoint.pt").is_file() and (out / "model.onnx").is_file()
    rows = json.load(open(out / "bench.json"))["rows"]
    runtimes = {r["runtime"] for r in rows}
    assert {"torch", "onnxruntime"} <= runtimes
    assert {r["batch"] for r in rows} == {1, 8}
    onnx = [r for r in rows if r["runtime"] == "onnxruntime"]
    # The exported graph gives the torch model's answers: same metric, full agreement (Pearson r of the values).
    assert all(r["agreement"] > 1 - 1e-6 and abs(r["metric"] - r["metric_torch"]) < 1e-3 for r in onnx)
    manifest = json.load(open(out / "manifest.json"))
    assert manifest["artifacts"]["model.onnx"]["runtime"] == "onnxruntime"
    assert manifest["artifacts"]["model.onnx"]["parity"]["max_abs_diff"] < 1e-3
    assert "bench" in manifest


def test_quickstart_rebuilds_its_run_without_stale_files(tiny_eri, tmp_path, capsys):
    """A second quickstart into the same folder replaces its own run: an INT8 file of the old model would
    otherwise be refused by bench's verification as not listed in the new manifest."""
    import shutil

    out = tmp_path / "run"
    args = ["quickstart", "--data", str(tiny_eri), "--out", str(out), "--epochs", "1",
            "--frames", str(TINY_MODEL["frames"]), "--face-size", str(TINY_MODEL["face_size"]), "--bench-budget", "0.1"]
    assert main(args) == 0
    shutil.copy(out / "model.onnx", out / "model.int8.onnx")          # left over from an earlier export --int8
    (out / "notes.txt").write_text("mine")
    assert main(args) == 0
    assert not (out / "model.int8.onnx").exists() and (out / "notes.txt").read_text() == "mine"
    assert not (out / ".lock").exists()
