"""`data synth`: task names shared with `train`, sizes the next steps cannot use refused up front, and
output that a log file can read (unwrapped lines, progress lines while data is generated)."""
from __future__ import annotations

import re

import pytest

from edgeaffect.cli import main

TINY_EXPR = ["--videos", "2", "--val-videos", "1", "--frames", "8", "--unlabeled", "1", "--size", "16"]


@pytest.mark.parametrize("args, minimum", [
    (["eri", "--clips", "12"], "--clips 13 or more"),                 # round(0.6 * 13) = 8 train clips
    (["body", "--clips", "14"], "--clips 15 or more"),                # round(0.5 * 15) = 8
    (["emoreact", "--clips", "14"], "--clips 15 or more"),            # the old name is the same command
    (["expr", "--videos", "1", "--frames", "15"], "--videos x --frames of 16 or more"),
    (["va", "--frames", "127"], "--frames 128 or more"),               # 16 sub-clips x 4 frames x dilation 2
    (["affwild2-va", "--frames", "127"], "--frames 128 or more"),
    (["ravdess", "--actors", "10"], "--actors 11 or more"),            # val actors start at 11
    (["expr", "--unlabeled", "0"], "--unlabeled 1 or more"),           # train expr is semi-supervised by default
])
def test_sizes_the_next_steps_cannot_use_are_refused_before_writing(args, minimum, tmp_path, capsys):
    out = tmp_path / "set"
    assert main(["data", "synth", *args, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert minimum in err and "too small" in err and "--allow-small" in err
    assert not out.exists()                                            # refused up front: nothing written


def test_the_minimums_come_from_the_steps_that_need_them():
    from edgeaffect.data.ravdess import DEFAULT_VAL_ACTORS
    from edgeaffect.data.synth import smallest_total
    from edgeaffect.models.va import EDGE_DEFAULTS
    from edgeaffect.quantize.config import MIN_CALIB_SAMPLES

    assert MIN_CALIB_SAMPLES == 8 and smallest_total(0.6, 8) == 13 and smallest_total(0.5, 8) == 15
    assert round(0.6 * 12) < 8 <= round(0.6 * 13)
    assert EDGE_DEFAULTS["subclips"] * EDGE_DEFAULTS["frames"] * EDGE_DEFAULTS["dilation"] == 128
    assert min(DEFAULT_VAL_ACTORS) == 11


def test_task_names_match_train_and_the_dataset_names_stay(capsys):
    assert main(["data", "synth", "--help"]) == 0
    listed = capsys.readouterr().out
    for name in ("eri", "ravdess", "va", "expr", "body", "affwild2-va", "affwild2-expr", "emoreact"):
        assert re.search(rf"│ {re.escape(name)}\s", listed), name
    assert "Same as `data synth va`" in listed and "Same as `data synth body`" in listed
    assert main(["train", "--help"]) == 0
    trained = capsys.readouterr().out
    assert all(re.search(rf"│ {t}\s", trained) for t in ("va", "expr", "body"))


def test_an_alias_writes_the_same_set(tmp_path, capsys):
    new, old = tmp_path / "new", tmp_path / "old"
    assert main(["data", "synth", "expr", "--out", str(new), *TINY_EXPR]) == 0
    assert main(["data", "synth", "affwild2-expr", "--out", str(old), *TINY_EXPR]) == 0
    files = sorted(p.relative_to(new) for p in new.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(old) for p in old.rglob("*") if p.is_file())
    assert all((new / f).read_bytes() == (old / f).read_bytes() for f in files)


def test_allow_small_writes_it_anyway(tmp_path, capsys):
    out = tmp_path / "small"
    assert main(["data", "synth", "expr", "--out", str(out), *TINY_EXPR[:4], "--frames", "2", "--unlabeled", "0",
                 "--size", "16", "--allow-small"]) == 0
    assert len(list(out.glob("cropped_aligned/*"))) == 3


def test_a_log_gets_progress_lines_while_data_is_generated(tmp_path, capsys):
    """Output captured (not a terminal): plain progress lines during synthesis, then the summary."""
    assert main(["data", "synth", "expr", "--out", str(tmp_path / "aw"), *TINY_EXPR]) == 0
    err = capsys.readouterr().err
    lines = err.splitlines()
    progress = [i for i, ln in enumerate(lines) if re.fullmatch(r"synth expr faces: \d+/25 .*\(\d+ s\)", ln)]
    summary = next(i for i, ln in enumerate(lines) if ln.startswith("wrote "))
    assert len(progress) >= 2 and max(progress) < summary
    assert "━" not in err and "…" not in err                          # no bar drawn, nothing cut


def test_plain_progress_lines_at_each_tenth_and_not_for_hidden_tasks():
    import io

    from rich.console import Console

    from edgeaffect.logs import make_progress

    buf = io.StringIO()
    with make_progress(Console(file=buf, width=40), "synth eri") as bar:
        clips = bar.add_task("clips", total=20)
        quiet = bar.add_task("epochs", total=2, log=False)
        for _ in range(20):
            bar.advance(clips)
        bar.update(quiet, advance=2, info="loss 0.1")
    lines = buf.getvalue().splitlines()
    assert [ln.split("  ")[0] for ln in lines] == [f"synth eri clips: {2 * k}/20" for k in range(1, 11)]


def test_epoch_lines_are_not_wrapped_in_a_log(tmp_path, capsys):
    """A log file is not 80 columns wide: an epoch line longer than that stays one line."""
    root = tmp_path / "aw"
    assert main(["data", "synth", "expr", "--out", str(root), *TINY_EXPR]) == 0
    capsys.readouterr()
    assert main(["train", "expr", "--data", str(root), "--ssl", "none", "--arch", "expr_minixception",
                 "--face-size", "16", "--epochs", "1", "--batch-size", "8", "--steps-per-epoch", "1",
                 "--out", str(tmp_path / "run")]) == 0
    lines = capsys.readouterr().err.splitlines()
    epochs = [ln for ln in lines if re.search(r"epoch 1/1: train loss", ln)]
    assert len(epochs) == 1 and all(re.search(r"val \w+ [\d.]+ on all \d+ val samples", ln) for ln in epochs)
    assert max(len(ln) for ln in epochs) > 80                         # long enough that a wrap would have split it
    assert not any(ln.startswith(("samples", "(best)")) for ln in lines)
