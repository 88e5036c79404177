"""RAVDESS reader, preprocessing cache, bad-input handling and the synthetic generator."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from edgeaffect.data.ravdess import (Preprocessing, distributed_indices, fix_length, prepare_split, scan_ravdess,
                                     split_clips)
from edgeaffect.errors import DataError

PRE = Preprocessing(frames=4, face_size=32)


@pytest.fixture(scope="module")
def tiny_ravdess(tmp_path_factory):
    """2 actors x 8 emotions x 1 statement, in the real layout (mp4 + wav per clip)."""
    from edgeaffect.data.synth.ravdess import generate_ravdess

    root = tmp_path_factory.mktemp("ravdess")
    generate_ravdess(root, actors=2, statements=1, seed=5)
    return root


def test_synthetic_set_is_in_the_real_layout(tiny_ravdess):
    names = sorted(p.name for p in (tiny_ravdess / "Actor_02").iterdir())
    assert len(names) == 16 and "01-01-03-01-01-01-02.mp4" in names and "03-01-03-01-01-01-02.wav" in names
    scan = scan_ravdess(tiny_ravdess)
    assert not scan.problems and len(scan.clips) == 16
    assert sorted(c.label for c in scan.clips if c.actor == 1) == list(range(8))
    assert all(c.audio is not None and c.audio.suffix == ".wav" for c in scan.clips)
    from edgeaffect.data.media import has_audio, video_info

    n, fps, w, h = video_info(scan.clips[0].video)
    assert fps == 30 and 90 <= n <= 125 and has_audio(scan.clips[0].video)


def test_render_is_deterministic_and_modalities_are_designed():
    from edgeaffect.data.synth.face import Identity
    from edgeaffect.data.synth.ravdess import FACES, VOICES, render_clip

    def clip(seed):
        rng = np.random.default_rng(seed)
        return render_clip(2, 2, Identity.random(np.random.default_rng(1)), 200.0, rng, 1.0, size=(96, 80))

    (f1, a1), (f2, a2), (f3, _) = clip(3), clip(3), clip(4)
    assert np.array_equal(f1, f2) and np.array_equal(a1, a2) and not np.array_equal(f1, f3)
    assert f1.shape == (30, 80, 96, 3) and a1.shape == (22050,)
    # face-only, voice-only and both-modality classes (module docstring)
    assert FACES[0] == FACES[1] and VOICES[0] != VOICES[1]
    assert VOICES[4] == VOICES[6] and FACES[4] != FACES[6]
    assert VOICES[5] == VOICES[7] and FACES[5] != FACES[7]


def test_reader_handles_the_distributed_variants_and_bad_names(tiny_ravdess, tmp_path):
    root = tmp_path / "RAVDESS"
    shutil.copytree(tiny_ravdess, root, ignore=shutil.ignore_patterns(".cache"))
    (root / "Actor_02").rename(root / "ACTOR02")                       # the other spelling of the folders
    (root / "Actor_01" / "03-01-01-01-01-01-01.wav").unlink()          # full-AV mp4 alone: its own audio track
    shutil.copy(root / "Actor_01" / "01-01-02-01-01-01-01.mp4", root / "Actor_01" / "02-01-02-02-01-01-01.mp4")
    shutil.copy(root / "Actor_01" / "03-01-02-01-01-01-01.wav", root / "Actor_01" / "03-01-02-02-02-01-01.wav")
    shutil.copy(root / "Actor_01" / "03-01-02-01-01-01-01.wav", root / "Actor_01" / "03-01-09-01-01-01-01.wav")
    shutil.copy(root / "Actor_01" / "03-01-02-01-01-01-01.wav", root / "Actor_01" / "03-01-02-01-01-01-07.wav")
    shutil.copy(root / "Actor_01" / "03-01-02-01-01-01-01.wav", root / "Actor_01" / "take2.wav")
    (root / "Actor_01" / "notes.txt").write_text("not media")
    scan = scan_ravdess(root)
    assert dict(scan.counts) == {"no_audio": 1, "no_video": 1, "label_out_of_range": 1, "actor_mismatch": 1,
                                 "bad_name": 1}
    assert len(scan.problems) == 5 and all("skipped" in line for line in scan.problems)
    assert len(scan.clips) == 16                                        # nothing good was lost
    neutral = next(c for c in scan.clips if c.key == "01-01-01-01-01-01")
    assert neutral.audio is None and neutral.video.name.startswith("01-")
    assert {c.actor for c in scan.clips} == {1, 2}
    with pytest.raises(DataError, match="no Actor_XX"):
        scan_ravdess(root / "Actor_01")


def test_reader_merges_the_separately_distributed_archives(tiny_ravdess, tmp_path):
    """Video_Speech_Actor_XX.zip and Audio_Speech_Actors_01-24.zip each unpacked into a folder of their own."""
    root = tmp_path / "RAVDESS"
    for actor in (1, 2):
        src = tiny_ravdess / f"Actor_{actor:02d}"
        video = root / f"Video_Speech_Actor_{actor:02d}" / f"Actor_{actor:02d}"
        audio = root / "Audio_Speech_Actors_01-24" / f"Actor_{actor:02d}"
        video.mkdir(parents=True)
        audio.mkdir(parents=True, exist_ok=True)
        for f in src.glob("01-*.mp4"):                    # video-only copies, as RAVDESS ships modality 02 too
            shutil.copy(f, video / f.name)
            shutil.copy(f, video / ("02" + f.name[2:]))
        for f in src.glob("*.wav"):
            shutil.copy(f, audio / f.name)
    # song clips (vocal channel 02) are read only on request
    song = root / "Audio_Song_Actors_01-24" / "Actor_01"
    song.mkdir(parents=True)
    shutil.copy(tiny_ravdess / "Actor_01" / "03-01-03-01-01-01-01.wav", song / "03-02-03-01-01-01-01.wav")
    shutil.copy(tiny_ravdess / "Actor_01" / "01-01-03-01-01-01-01.mp4", song / "01-02-03-01-01-01-01.mp4")
    # an archive unpacked twice: the same names again, read once
    twice = root / "extra" / "Audio_Speech_Actors_01-24" / "Actor_02"
    twice.mkdir(parents=True)
    shutil.copy(tiny_ravdess / "Actor_02" / "03-01-05-01-01-01-02.wav", twice)
    # deeper than three levels is not searched
    deep = root / "a" / "b" / "c" / "Actor_03"
    deep.mkdir(parents=True)
    shutil.copy(tiny_ravdess / "Actor_01" / "03-01-03-01-01-01-01.wav", deep / "03-01-03-01-01-01-03.wav")

    scan = scan_ravdess(root)
    assert len(scan.clips) == 16 and {c.actor for c in scan.clips} == {1, 2}
    assert all(c.audio is not None and c.audio.parent.parent.name == "Audio_Speech_Actors_01-24" for c in scan.clips)
    assert all(c.video.name.startswith("01-") for c in scan.clips)       # full-AV preferred over video-only
    assert scan.counts["duplicate"] == 1 and scan.counts["not_speech"] == 2
    assert sum(1 for p in scan.problems if "read once" in p) == 1
    both = scan_ravdess(root, vocal="all")
    assert len(both.clips) == 17 and sum(c.key.startswith("02-") for c in both.clips) == 1
    assert [c.key for c in scan_ravdess(root, vocal="song").clips] == ["02-03-01-01-01-01"]
    with pytest.raises(DataError, match="vocal"):
        scan_ravdess(root, vocal="opera")


def test_actor_split_is_configurable():
    from edgeaffect.data.ravdess import Clip
    from pathlib import Path

    clips = [Clip(f"k{a}", a, 0, Path("v"), None) for a in range(1, 25)]
    assert [c.actor for c in split_clips(clips, "test")] == [5, 10, 16, 19]
    assert [c.actor for c in split_clips(clips, "val")] == [11, 13, 18, 22]
    assert len(split_clips(clips, "train")) == 16
    assert [c.actor for c in split_clips(clips, "val", test_actors=[1], val_actors=[2, 3])] == [2, 3]
    with pytest.raises(DataError, match="both"):
        split_clips(clips, "train", test_actors=[1], val_actors=[1])


def test_reference_frame_choice_and_audio_length():
    assert distributed_indices(15, 108) == [3, 10, 17, 24, 31, 39, 46, 53, 60, 67, 75, 82, 89, 96, 103]
    y = np.arange(10, dtype=np.float32)
    assert fix_length(y, 4).tolist() == [3, 4, 5, 6]                   # centre crop
    assert fix_length(y, 12).tolist() == list(range(10)) + [0, 0]      # zero-pad at the end


def test_prepare_split_shapes_and_cache(tiny_ravdess, tmp_path, monkeypatch):
    import edgeaffect.data.ravdess as rv

    cache = tmp_path / "cache"
    prep = prepare_split(tiny_ravdess, "train", PRE, test_actors=[1], val_actors=[], cache_dir=cache)
    ds = prep.dataset
    assert len(ds) == 8 and sorted(ds.labels) == list(range(8)) and not prep.counts
    item = ds[3]
    assert item["video"].shape == (4, 3, 32, 32) and item["audio"].shape == (10, 156)
    assert 0.0 <= float(item["video"].min()) and float(item["video"].max()) <= 1.0 and item["video"].std() > 0.02
    assert int(item["target"]) == ds.labels[3]
    # the second time nothing is decoded: every clip comes from the cache
    monkeypatch.setattr(rv, "load_clip", lambda *a, **k: (_ for _ in ()).throw(AssertionError("decoded again")))
    again = prepare_split(tiny_ravdess, "train", PRE, test_actors=[1], val_actors=[], cache_dir=cache)
    assert again.dataset.files == ds.files and again.content_sha256 == prep.content_sha256
    # a different setting is a different cache entry
    other = rv.ClipCache(cache, Preprocessing(frames=5, face_size=32))
    assert other.key(ds.clips[0]) != rv.ClipCache(cache, PRE).key(ds.clips[0])
    assert not list(cache.glob(".*tmp*"))                               # no half-written files left
    with pytest.raises(DataError, match="empty"):
        prepare_split(tiny_ravdess, "val", PRE, test_actors=[1], val_actors=[9], cache_dir=cache)


def test_unusable_clips_are_counted_and_the_rest_kept(tiny_ravdess, tmp_path):
    from edgeaffect.data.media import write_video

    root = tmp_path / "bad"
    (root / "Actor_01").mkdir(parents=True)
    src = tiny_ravdess / "Actor_01"
    for e in ("01", "02", "03"):
        shutil.copy(src / f"01-01-{e}-01-01-01-01.mp4", root / "Actor_01")
        shutil.copy(src / f"03-01-{e}-01-01-01-01.wav", root / "Actor_01")
    (root / "Actor_01" / "01-01-02-01-01-01-01.mp4").write_bytes(b"\x00garbage, not a video")
    write_video(root / "Actor_01" / "01-01-03-01-01-01-01.mp4", np.full((20, 64, 64, 3), 128, np.uint8), 30.0)
    for _ in range(2):  # the second pass reads the remembered failures from the cache
        prep = prepare_split(root, "all", PRE, cache_dir=tmp_path / "c")
        assert len(prep.dataset) == 1 and prep.dataset.labels == [0]
        assert dict(prep.counts) == {"unreadable": 1, "no_face": 1}
        assert any("no face" in p for p in prep.problems) and any("02-01-01-01" in p for p in prep.problems)


def test_audio_comes_from_the_mp4_track_without_a_wav(tiny_ravdess, tmp_path):
    import edgeaffect.data.ravdess as rv
    from edgeaffect.data.faces import HaarFaceDetector

    clip = next(c for c in scan_ravdess(tiny_ravdess).clips if c.label == 2)
    _, from_wav = rv.load_clip(clip, PRE, HaarFaceDetector())
    _, from_mp4 = rv.load_clip(rv.Clip(clip.key, clip.actor, clip.label, clip.video, None), PRE, HaarFaceDetector())
    assert from_mp4.shape == from_wav.shape == (10, 156)
    assert np.corrcoef(from_mp4.ravel(), from_wav.ravel())[0, 1] > 0.9   # AAC is lossy but the same voice


def test_48k_audio_loads_the_references_way(tmp_path):
    """librosa.load(sr=22050) for a 48 kHz wav (the reference's extract_audios); a video's track goes
    through the same resampler; specs recorded before ``resample`` keep PyAV's, as they were trained."""
    import av
    import librosa
    import soundfile as sf

    from edgeaffect.data.media import read_audio
    from edgeaffect.data.ravdess import load_audio
    from edgeaffect.data.synth.voice import Prosody, synth_voice
    from edgeaffect.models.ravdess import ravdess_preprocessing

    y = synth_voice(1.0, 48000, Prosody(), np.random.default_rng(0)).astype(np.float32)
    wav = tmp_path / "03-01-03-01-01-01-01.wav"
    sf.write(wav, y, 48000, subtype="PCM_16")
    ref = librosa.load(str(wav), sr=22050)[0]
    np.testing.assert_array_equal(load_audio(wav, 22050), ref)
    assert np.abs(load_audio(wav, 22050, "pyav")[:len(ref)] - ref).max() > 1e-4   # what it replaced differs
    mp4 = tmp_path / "track.mp4"
    with av.open(str(mp4), "w") as c:   # the same samples as a 48 kHz AAC track
        s = c.add_stream("aac", rate=48000)
        s.layout = "mono"
        frame = av.AudioFrame.from_ndarray(y[None], format="flt", layout="mono")
        frame.sample_rate = 48000
        for pkt in list(s.encode(frame)) + list(s.encode(None)):
            c.mux(pkt)
    native = read_audio(mp4, 48000)
    np.testing.assert_allclose(load_audio(mp4, 22050), librosa.resample(native, orig_sr=48000, target_sr=22050),
                               atol=1e-5)
    assert ravdess_preprocessing()["resample"] == "librosa"
    assert Preprocessing.from_spec(ravdess_preprocessing()).resample == "librosa"
    assert Preprocessing.from_spec({"sample_rate": 22050}).resample == "pyav"
