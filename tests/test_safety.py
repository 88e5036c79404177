"""Nothing runs that should not: one writer per run, no silent overwrite, bad values and OS errors in one line."""
from __future__ import annotations

import errno
import json
import os
import platform
import shutil
import subprocess
import sys

import pytest

from edgeaffect.cli import main
from edgeaffect.errors import EdgeAffectError
from edgeaffect.runs import LOCK, clear_run, load_run, writer_lock
from tests.fakes.tiny_model import make_exported_run


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return make_exported_run(tmp_path_factory.mktemp("safety"))


@pytest.fixture
def run(exported, tmp_path):
    dest = tmp_path / "run"
    shutil.copytree(exported, dest)
    return dest


_HOLD = ("import sys, time; from edgeaffect.runs import writer_lock\n"
         "with writer_lock(sys.argv[1], 'edgeaffect train eri'):\n"
         "    print('held', flush=True); time.sleep(60)")


def test_a_second_writer_is_refused_and_a_stale_lock_taken_over(run, capsys, caplog):
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["export", str(run), "--format", "onnx", "--exporter", "legacy"]) == 1
        err = " ".join(capsys.readouterr().err.split())
        assert f"is being written by pid {holder.pid} on {platform.node()} (start id" in err
        assert "edgeaffect train eri" in err and "released the moment it exits" in err and "Traceback" not in err
        assert main(["bench", str(run), "--runtime", "onnxruntime", "--batch", "1", "--budget", "0.1",
                     "--rounds", "1", "--no-isolate"]) == 1
    finally:
        holder.kill()      # SIGKILL: its lock file stays behind, the kernel drops its flock
        holder.wait()
    assert json.loads((run / LOCK).read_text())["pid"] == holder.pid
    before = (run / "model.onnx").read_bytes()
    with caplog.at_level("WARNING", logger="edgeaffect"):
        assert main(["export", str(run), "--format", "onnx", "--exporter", "legacy"]) == 0
    assert f"stale lock on {run.resolve()} (left by pid {holder.pid} on {platform.node()}" in caplog.text
    assert not (run / LOCK).exists() and (run / "model.onnx").read_bytes() == before   # same graph re-exported


def test_a_lock_naming_a_live_unrelated_process_or_another_host_is_taken_over(run):
    """Only the flock counts: a file naming a live pid (a recycled one) or another container holds nothing."""
    for holder in ({"pid": os.getppid(), "host": platform.node()}, {"pid": 1, "host": "another-container"}):
        (run / LOCK).write_text(json.dumps({**holder, "command": "edgeaffect export", "since": "then"}))
        notes = []
        with writer_lock(run, "edgeaffect bench", on_stale=notes.append):
            assert json.loads((run / LOCK).read_text())["pid"] == os.getpid()
        assert len(notes) == 1 and f"left by pid {holder['pid']} on {holder['host']}" in notes[0]


def test_the_lock_is_reentrant_in_one_process_and_released_on_error(run):
    with writer_lock(run, "outer"):
        with writer_lock(run, "inner"):
            assert json.loads((run / LOCK).read_text())["command"] == "outer"
        assert (run / LOCK).exists()
    assert not (run / LOCK).exists()
    with pytest.raises(ZeroDivisionError):
        with writer_lock(run, "boom"):
            1 / 0
    assert not (run / LOCK).exists()


def test_train_into_an_existing_run_is_refused_without_overwrite(run, tmp_path, capsys):
    data = tmp_path / "eri-data"
    data.mkdir()
    assert main(["train", "eri", "--data", str(data), "--out", str(run)]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "already holds a run; continue it with --resume" in err and "--overwrite" in err
    assert (run / "model.onnx").exists() and (run / "openvino" / "model.bin").exists()   # nothing lost


def test_overwrite_removes_the_old_run_and_only_it(run):
    (run / "notes.txt").write_text("mine")
    (run / "pruned-0.4").mkdir()
    with pytest.raises(EdgeAffectError, match="already holds a run"):
        clear_run(run, overwrite=False)
    clear_run(run, overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]     # the user's own file stays
    other = run.parent / "photos"
    other.mkdir()
    (other / "a.jpg").write_bytes(b"x")
    with pytest.raises(EdgeAffectError, match="not an edgeaffect run; pick an empty or new --out"):
        clear_run(other, overwrite=True)
    assert (other / "a.jpg").exists()


@pytest.mark.parametrize("argv, message", [
    (["bench", "{run}", "--precision", "int4"], "unknown precision 'int4'"),
    (["bench", "{run}", "--runtime", "tflite"], "unknown runtime 'tflite'"),
    (["export", "{run}", "--format", "tflite"], "unknown export format 'tflite'"),
    (["export", "{run}", "--precision", "int8"], "--precision takes bf16, fp16"),
    (["quantize", "int8", "{run}", "--runtime", "torch"], "unknown runtime 'torch' for INT8"),
    (["quantize", "int8", "{run}", "--calib-method", "median"], "unknown calibration method 'median'"),
    (["eval", "{run}", "--corrupt", "audio=blur"], "unknown mode 'blur'"),
    (["bench", "{run}", "--data", "{run}/nowhere"], "not found; pass --data"),
])
def test_a_typo_is_one_line_before_any_work(run, capsys, argv, message):
    before = json.loads((run / "manifest.json").read_text())
    assert main([a.format(run=run) for a in argv]) != 0
    err = " ".join(capsys.readouterr().err.split())
    assert message in err and "Traceback" not in err
    assert json.loads((run / "manifest.json").read_text()) == before      # nothing was measured or written


def test_bench_checks_it_can_write_before_it_measures(run, capsys, monkeypatch):
    import tempfile

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(run))

    from edgeaffect import bench

    def measured(*a, **k):
        raise AssertionError("bench measured although it could not write its results")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only)
    monkeypatch.setattr(bench, "measure", measured)
    assert main(["bench", str(run), "--runtime", "onnxruntime", "--budget", "30"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"bench cannot write its results into {run}" in err and "Read-only" in err
    assert not (run / "bench.json").exists()


def test_a_full_disk_is_one_line_naming_the_path(run, capsys, monkeypatch):
    from edgeaffect import fileio

    def full(dest, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(dest))

    monkeypatch.setattr(fileio, "write_text", full)
    assert main(["eval", str(run), "--split", "val"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "manifest.json: no space left on the device" in err and "Traceback" not in err


def test_a_checkpoint_write_on_a_full_disk_says_so(tmp_path, monkeypatch):
    import torch

    from edgeaffect import runs
    from tests.fakes.tiny_model import tiny_av_test

    def torch_full(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4416 vs 4310")

    monkeypatch.setattr(torch, "save", torch_full)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10 << 30, 10 << 30, 1 << 20))
    with pytest.raises(OSError, match="no space left on the device"):
        runs.save_checkpoint(tmp_path / "checkpoint.pt", tiny_av_test(), "tiny_av_test", {})
    assert list(tmp_path.iterdir()) == []                                   # no half-written file


def test_eval_refuses_a_changed_checkpoint(run, capsys):
    r = load_run(run)
    r.record_artifact(r.checkpoint, kind="checkpoint")
    with open(r.checkpoint, "ab") as f:
        f.write(b"\0")
    assert main(["eval", str(run), "--split", "val"]) == 1
    assert "checkpoint.pt is not the file" in " ".join(capsys.readouterr().err.split())


def test_the_demo_refuses_a_foreign_model_in_a_run(run):
    from edgeaffect.demo.runner import open_model
    from edgeaffect.export import export_onnx
    from tests.fakes.tiny_model import tiny_av_test

    export_onnx(tiny_av_test(seed=5), run / "model.onnx")                 # another model under the listed name
    with pytest.raises(EdgeAffectError, match="model.onnx is not the file .*manifest.json lists"):
        open_model(run, "onnxruntime")
    rt, spec = open_model(run, "onnxruntime", verify=False)               # --no-verify: deliberate
    rt.close()
    rt, _ = open_model(run, "openvino")                                    # the untouched IR still opens
    rt.close()


def test_a_batch_norm_failure_in_training_is_one_line(tmp_path, capsys):
    """Batch 1 with feature maps shrunk to 1x1: BatchNorm cannot train; one line, not a traceback."""
    data = tmp_path / "va"
    assert main(["data", "synth", "affwild2-va", "--out", str(data), "--train-videos", "1", "--val-videos", "1",
                 "--frames", "16", "--size", "32", "--allow-small"]) == 0
    capsys.readouterr()
    assert main(["train", "va", "--data", str(data), "--frame-size", "16", "--width", "1", "--subclips", "1",
                 "--batch-size", "1", "--epochs", "1", "--out", str(tmp_path / "run")]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "got one value per channel in training (batch 1" in err and "Traceback" not in err
    assert main(["data", "synth", "affwild2-va", "--out", str(tmp_path / "x"), "--frames", "8"]) != 0
    assert "16" in " ".join(capsys.readouterr().err.split())               # the range is in the option itself


def test_data_synth_never_writes_into_a_real_dataset(tmp_path, capsys):
    """Our synthetic sets use the real file names: a real RAVDESS or Aff-Wild2 folder must stay untouched."""
    real = tmp_path / "RAVDESS" / "Actor_01"
    real.mkdir(parents=True)
    clip = real / "01-01-01-01-01-01-01.mp4"
    clip.write_bytes(b"a real recording")
    assert main(["data", "synth", "ravdess", "--out", str(real.parent), "--actors", "1", "--allow-small"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "did not write (a real dataset?)" in err and "Traceback" not in err
    assert clip.read_bytes() == b"a real recording" and sorted(p.name for p in real.parent.iterdir()) == ["Actor_01"]

    # The two Aff-Wild2 sets share one root; a set of the same kind is not replaced in a shared root.
    root = tmp_path / "affwild2"
    expr = ["data", "synth", "affwild2-expr", "--out", str(root), "--videos", "1", "--val-videos", "1",
            "--frames", "2", "--unlabeled", "0", "--size", "16", "--allow-small"]
    assert main(expr) == 0
    assert main(["data", "synth", "affwild2-va", "--out", str(root), "--train-videos", "1", "--val-videos", "1",
                 "--frames", "16", "--size", "32", "--allow-small"]) == 0
    capsys.readouterr()
    assert main(expr) == 1 and "already holds a synthetic affwild2-expr set" in capsys.readouterr().err
    assert main([*expr, "--overwrite"]) == 1
    assert "cannot replace the affwild2-expr set alone" in " ".join(capsys.readouterr().err.split())
    assert (root / ".edgeaffect-synth").read_text().split() == ["affwild2-expr", "affwild2-va"]
    (tmp_path / "afile").write_text("x")
    assert main(["data", "synth", "fer2013", "--out", str(tmp_path / "afile")]) == 1
    assert "is a file; --out takes a folder" in capsys.readouterr().err
