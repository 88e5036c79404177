import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeaffect.data.audio import fit_length, mfcc
from edgeaffect.data.hume import read_data_info
from edgeaffect.data.media import write_video, write_wav
from edgeaffect.data.preprocess import AVConfig, ClipJob, ClipSkipped, prepare_clips, process_clip
from edgeaffect.data.synth.eri import ERISynthConfig, render_clip

CFG = AVConfig(frames=4, face_size=48, audio_seconds=2.0)


def _face_clip(seed=1, seconds=1.0):
    return render_clip(np.full(7, 0.5, np.float32), ERISynthConfig(seconds=seconds, width=192, height=144),
                       np.random.default_rng(seed))


def test_synthetic_clips_preprocess_and_second_pass_hits_the_cache(tiny_eri, tmp_path):
    clips = read_data_info(tiny_eri)
    jobs = [ClipJob(c.file_id, c.video) for c in clips]
    ready, rep = prepare_clips(jobs, CFG, tmp_path / "cache")
    assert rep.total == 10 and rep.ok == len(ready) >= 7 and rep.from_cache == 0
    z = np.load(next(iter(ready.values())))
    assert z["video"].shape == (4, 48, 48, 3) and z["video"].dtype == np.uint8
    assert z["audio"].shape == (40, 201)
    ready2, rep2 = prepare_clips(jobs, CFG, tmp_path / "cache")
    assert ready2 == ready and rep2.from_cache == rep.ok
    assert sum(rep2.skipped.values()) == sum(rep.skipped.values())  # failures are remembered too
    # a changed setting never reads a stale entry
    ready3, rep3 = prepare_clips(jobs[:2], AVConfig(frames=3, face_size=48, audio_seconds=2.0), tmp_path / "cache")
    assert rep3.from_cache == 0


def test_bad_clips_are_counted_not_fatal(tmp_path):
    frames, audio = _face_clip()
    write_video(tmp_path / "noaudio.mp4", frames, 25)
    write_video(tmp_path / "short.mp4", frames, 25)
    write_wav(tmp_path / "short.wav", np.zeros(4000, np.float32), 16000)
    (tmp_path / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    frames2, audio2 = _face_clip(seed=1, seconds=2.0)
    write_video(tmp_path / "noface.mp4", np.full_like(frames2, 120), 25, audio=audio2, sr=16000)
    write_video(tmp_path / "good.mp4", frames2, 25, audio=audio2, sr=16000)
    jobs = [ClipJob(n, tmp_path / f"{n}.mp4") for n in ("noaudio", "short", "garbage", "noface", "good")]
    jobs.append(ClipJob("absent", tmp_path / "absent.mp4"))
    ready, rep = prepare_clips(jobs, CFG, tmp_path / "cache")
    assert set(ready) == {"short", "good"}
    assert rep.skipped == {"no audio track and no sibling .wav": 1, "unreadable or truncated video": 1,
                           "no face found in any sampled frame": 1, "video file missing": 1}
    assert rep.padded_audio == 1  # the 0.25 s silent wav was padded to 2 s and reported
    assert rep.silent_audio == 1 and "1 with a silent audio track" in rep.summary()
    assert "2/6 clips ready" in rep.summary()


def test_short_audio_is_told_apart_from_silence_with_the_window_to_change():
    from edgeaffect.data.preprocess import PrepReport

    rep = PrepReport(total=3, audio_seconds=4.0)
    for info in ({"padded_samples": 32000}, {"padded_samples": 100, "silent": True}, {}):
        rep.count_audio(info)
    assert (rep.short_audio, rep.silent_audio, rep.padded_audio) == (1, 1, 2)
    text = rep.summary()
    assert "1 with audio shorter than the 4 s window (zero-padded at the end; --audio-seconds sets" in text
    assert rep.to_dict()["short_audio"] == 1 and rep.to_dict()["padded_audio"] == 2


def test_truncated_mp4_keeps_what_decodes(tmp_path):
    frames, audio = _face_clip(seconds=2.0)
    write_video(tmp_path / "full.mp4", frames, 25, audio=audio, sr=16000)
    data = (tmp_path / "full.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    try:
        arrays, _ = process_clip(ClipJob("cut", tmp_path / "cut.mp4"), CFG)
    except ClipSkipped as why:  # the moov atom may sit at the end: then the file is unreadable, and says so
        assert "unreadable" in str(why) or "audio" in str(why)
    else:
        assert arrays["video"].shape == (4, 48, 48, 3)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 40000), target=st.integers(400, 32000))
def test_fit_length_and_mfcc_shapes_for_any_length(n, target):
    y = np.random.default_rng(n).normal(size=n).astype(np.float32)
    out, padded = fit_length(y, target)
    assert len(out) == target and padded == max(0, target - n)
    if n:
        assert np.array_equal(out[: min(n, target)], y[: target] if n <= target else y[(n - target) // 2:(n - target) // 2 + target])
    m = mfcc(out, 16000, 40, 400, 160)
    assert m.shape == (40, 1 + target // 160) and np.isfinite(m).all()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(min_size=0, max_size=3000))
def test_random_bytes_as_media_only_ever_skip(tmp_path, blob):
    p = tmp_path / "fuzz.mp4"
    p.write_bytes(blob)
    with pytest.raises(ClipSkipped):
        process_clip(ClipJob("fuzz", p), CFG)
