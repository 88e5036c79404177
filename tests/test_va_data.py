"""Aff-Wild2 VA: synthetic generator, reader (sub-clip windows, audio windows, bad input), training CLI."""
import shutil

import numpy as np
import pytest

from edgeaffect.data.affwild2_va import (AffWild2VADataset, MelCache, log_mel_window, read_va_labels, scan_split,
                                         sequence_ends, subclip_choice)
from edgeaffect.data.media import has_audio
from edgeaffect.data.synth import MARKER
from edgeaffect.data.synth.affwild2_va import generate
from edgeaffect.errors import DataError
from edgeaffect.models.va import va_preprocessing

# 4 sub-clips x (4 frames, dilation 2) = sequences of 32 frames at 40 px: small enough for tests
PRE = va_preprocessing(subclips=4, frames=4, dilation=2, frame_size=40)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("affwild2")
    summary = generate(root, train_videos=2, val_videos=1, frames=90, size=48, seed=3)
    return root, summary


def test_generator_layout_pairs_and_determinism(synth, tmp_path):
    root, summary = synth
    assert summary.videos["train"] == ["synth_va_train_000", "synth_va_train_001_left", "synth_va_train_001_right"]
    labels = read_va_labels(root / "VA_Estimation_Challenge" / "Train_Set" / "synth_va_train_001_left.txt")
    assert labels.shape == (90, 2)
    ok = (labels != -5).all(1)
    assert np.abs(labels[ok]).max() <= 1 and labels[ok].std(0).min() > 0.05      # varies over time
    assert np.abs(np.diff(labels[ok][:, 0])).max() < 0.2                         # ...smoothly
    assert (root / "cropped_aligned" / "synth_va_train_001_right" / "00002.jpg").exists() or \
        (root / "cropped_aligned" / "synth_va_train_001_right" / "00003.jpg").exists()
    # the pair shares one raw video (with its audio), as in Aff-Wild2
    assert not (root / "videos" / "synth_va_train_001_left.mp4").exists()
    assert has_audio(root / "videos" / "synth_va_train_001.mp4")
    # same seed, same files; the EXPR generator's videos in a shared root are left alone
    foreign = tmp_path / "cropped_aligned" / "synth_expr_train_000"
    foreign.mkdir(parents=True)
    (foreign / "00001.jpg").write_bytes(b"expr")
    (tmp_path / MARKER).write_text("affwild2-expr\n")
    generate(tmp_path, train_videos=2, val_videos=1, frames=90, size=48, seed=3)
    for rel in ("VA_Estimation_Challenge/Validation_Set/synth_va_val_000.txt", "cropped_aligned/synth_va_train_000/00010.jpg"):
        assert (tmp_path / rel).read_bytes() == (root / rel).read_bytes()
    assert (foreign / "00001.jpg").read_bytes() == b"expr"


def test_subclip_choice_follows_the_reference_rules():
    valid = np.ones(100, bool)
    valid[0] = False
    assert list(subclip_choice(valid, 40, 8, 4)) == list(range(12, 41, 4))       # 32 available: every 4th from the end
    v = valid.copy()
    v[21:33] = False                                                             # 20 available in 9..40 -> every 2nd
    assert list(subclip_choice(v, 40, 8, 4)) == [14, 16, 18, 20, 34, 36, 38, 40]
    v = np.zeros(100, bool)
    v[[3, 5, 7]] = True
    assert list(subclip_choice(v, 8, 8, 4)) == [3, 5, 7, 7, 7, 7, 7, 7]          # fewer than 8: last repeated
    assert subclip_choice(v, 40, 8, 4) is None                                   # nothing annotated in the window


def test_sequence_ends_tile_every_frame_once():
    s, w, n = 4, 8, 80
    ends = sequence_ends(n, s, w, stride=1)
    sub_ends = np.concatenate([e - (s - 1 - np.arange(s)) * w for e in ends])
    assert sorted(sub_ends) == list(range(1, 65))          # two full blocks of 32 frames, each frame once
    assert len(sequence_ends(n, s, w, stride=4)) == 4


def test_dataset_items_shapes_and_labels(synth):
    root, _ = synth
    ds = AffWild2VADataset(root, "train", PRE, stride=4, cache_dir=root / ".cache")
    assert ds.report.videos == 3 and len(ds) == ds.report.sequences > 0
    item = ds[0]
    assert tuple(item["video"].shape) == (4, 3, 4, 40, 40)
    assert tuple(item["audio"].shape) == (4, 1, 64, 104)
    vi, ids, _ = ds.sequences[0]
    np.testing.assert_allclose(item["target"], ds.videos[vi].labels[ids[:, -1]])
    assert ds.videos[vi].valid[ids].all()                   # only annotated frames are used
    assert np.isfinite(item["audio"]).all() and item["audio"].std() > 0.1


def test_mel_window_matches_computing_the_window_alone(synth):
    import librosa

    from edgeaffect.data.media import read_audio

    root, _ = synth
    media = root / "videos" / "synth_va_train_000.mp4"
    mel, fps = MelCache(root / ".cache", PRE).get(media)
    assert fps == pytest.approx(30.0)
    y = read_audio(media, 44100)
    end = 441 * 50 + PRE["audio_samples"]                          # a window starting on a hop boundary
    start = end - PRE["audio_samples"]
    alone = librosa.feature.melspectrogram(y=y[start:end], sr=44100, n_fft=1024, win_length=882, hop_length=441,
                                           n_mels=64, center=True, pad_mode="reflect", htk=True, norm=None)
    ref = librosa.power_to_db(alone, ref=1.0, amin=1e-10, top_db=80.0)
    ref = (ref + 14.8) / 19.895
    got = log_mel_window(mel, end, PRE)
    assert got.shape == ref.shape == (64, 104)
    np.testing.assert_allclose(got[:, 3:-3], ref[:, 3:-3], atol=1e-3)      # edges differ only by the padding


def test_mel_cache_is_reused(synth, monkeypatch):
    root, _ = synth
    cache = MelCache(root / ".cache", PRE)
    media = root / "videos" / "synth_va_val_000.mp4"
    first = cache.get(media)[0]
    monkeypatch.setattr(MelCache, "_compute", lambda self, m: (_ for _ in ()).throw(AssertionError("recomputed")))
    again = MelCache(root / ".cache", PRE).get(media)[0]
    np.testing.assert_array_equal(first, again)
    other = dict(PRE, n_mels=32)                                           # a new setting is a new cache entry
    with pytest.raises(AssertionError, match="recomputed"):
        MelCache(root / ".cache", other).get(media)


def test_bad_input_is_reported_and_the_rest_kept(synth, tmp_path):
    root, _ = synth
    bad = tmp_path / "bad"
    shutil.copytree(root, bad, ignore=shutil.ignore_patterns(".cache"))
    labels = bad / "VA_Estimation_Challenge" / "Train_Set"
    (labels / "no_frames_video.txt").write_text("valence,arousal\n0.1,0.2\n")
    (labels / "bad_header.txt").write_text("v;a\n0.1;0.2\n")
    (bad / "cropped_aligned" / "bad_header").mkdir()
    shutil.copy(labels / "synth_va_train_000.txt", labels / "broken.txt")
    text = (labels / "synth_va_train_000.txt").read_text().splitlines()
    text[5] = "1.7,0.2"                                                     # out of range
    (labels / "synth_va_train_000.txt").write_text("\n".join(text) + "\n")
    (bad / "cropped_aligned" / "synth_va_train_000" / "00020.jpg").write_bytes(b"not a jpeg")
    (bad / "videos" / "synth_va_train_001.mp4").unlink()                   # the pair loses its audio
    shutil.copytree(bad / "cropped_aligned" / "synth_va_train_000", bad / "cropped_aligned" / "broken")
    (bad / "videos" / "broken.mp4").write_bytes(b"\x00garbage" * 100)      # unreadable raw video
    videos, seqs, report = scan_split(bad, "train", PRE, stride=1)
    assert [v.name for v in videos] == ["broken", "synth_va_train_000"]   # the scan cannot tell yet
    assert report.skipped == {"bad label file": 1, "no frames": 1, "no audio": 2}
    assert report.rows_out_of_range == 1 and not videos[1].valid[5]
    assert any("bad_header" in m and "header" in m for m in report.messages)
    ds = AffWild2VADataset(bad, "train", PRE, stride=1, cache_dir=tmp_path / "cache")
    assert ds.report.skipped["unreadable audio"] == 1 and ds.report.videos == 1
    assert all(ds.videos[vi].name == "synth_va_train_000" for vi, _, _ in ds.sequences)
    hit = next(i for i, (_, ids, _) in enumerate(ds.sequences) if 20 in ids)
    ds[hit]
    assert ds.unreadable_images >= 1
    with pytest.raises(DataError, match="no usable VA sequences"):
        scan_split(bad, "train", va_preprocessing(subclips=16, frames=8, dilation=4))   # 90 frames < 512
    with pytest.raises(DataError, match="VA_Estimation_Challenge"):
        scan_split(tmp_path / "cache", "train", PRE)


def test_train_cli_writes_a_loadable_run(synth, tmp_path):
    from edgeaffect.cli import main
    from edgeaffect.runs import load_model, load_run

    root, _ = synth
    out = tmp_path / "run"
    rc = main(["train", "va", "--data", str(root), "--variant", "edge", "--frame-size", "32", "--width", "4",
               "--subclips", "4", "--epochs", "1", "--batch-size", "4", "--max-train", "4", "--max-val", "4",
               "--stride", "4", "--out", str(out)])
    assert rc == 0
    run = load_run(out)
    assert run.manifest["model"] == "va_jca_edge" and run.spec.inputs[0].shape == ("B", 4, 3, 4, 32, 32)
    metrics = run.manifest["metrics"]["train"]
    assert {"val_ccc", "val_ccc_valence", "val_ccc_arousal"} <= set(metrics) and metrics["train_sequences"] == 4
    assert run.manifest["data"]["root"] == str(root.resolve()) and run.manifest["config"]["model"]["width"] == 4
    model = load_model(run.checkpoint)
    feeds = run.spec.dummy_inputs(batch=1)
    import torch

    v, a = model(*[torch.from_numpy(x) for x in feeds.values()])
    assert v.shape == a.shape == (1, 4)
    # a finished run is not overwritten; --resume picks up data and settings from its manifest
    assert main(["train", "va", "--data", str(root), "--out", str(out)]) == 1
    assert main(["train", "va", "--resume", str(out)]) == 0
    assert load_run(out).manifest["metrics"]["train"]["val_ccc"] == pytest.approx(metrics["val_ccc"])


def test_train_cli_bad_data_is_one_line(tmp_path, capsys):
    from edgeaffect.cli import main

    assert main(["train", "va", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
