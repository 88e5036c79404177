"""One preprocessing config for the audio-visual readers, one base for the synthetic clip sets, and what was
written before them still reads: a run's recorded preprocessing, and clips prepared (cached) by the earlier code.

The strings and keys below are what the code before the shared config (commit 5e285cf) wrote: a cache on disk
is named by them, so a changed value would make every prepared dataset decode its clips again.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from edgeaffect.data import ravdess as rv
from edgeaffect.data.preprocess import AVConfig, ClipJob, ClipPreprocessing, prepare_clips
from edgeaffect.data.synth import SynthClips
from edgeaffect.data.synth.emoreact import EmoReactSynthConfig
from edgeaffect.data.synth.eri import ERISynthConfig
from edgeaffect.fileio import sha256_file, sha256_text

# AVConfig(detector="haar").fingerprint() at 5e285cf: the ERI reader's cache keys hold it.
OLD_ERI_FINGERPRINT = ('{"audio_seconds": 4.0, "detector": "haar", "face_margin": 0.2, "face_size": 112, "frames": 32, '
                       '"hop_length": 160, "n_fft": 400, "n_mfcc": 40, "sample_rate": 16000, "v": 1}')
# data.ravdess.Preprocessing(detector="haar").fingerprint() at 5e285cf: the RAVDESS clip cache's file names hold it.
OLD_RAVDESS_FINGERPRINT = "d3a2226e764c4d5d"

# A RAVDESS run's spec preprocessing as manifests recorded it before the ``resample`` key existed.
OLD_RAVDESS_SPEC = {"frames": 15, "face_size": 224, "face_margin": 0.0, "color": "BGR", "scale": "1/255",
                    "clip_seconds": 3.6, "sample_rate": 22050, "n_mfcc": 10, "n_fft": 2048, "hop_length": 512}
# An ERI run's (models/eri.py eri_preprocessing with --frames 16 --face-size 64).
OLD_ERI_SPEC = {"frames": 16, "face_size": 64, "face_margin": 0.2, "color": "RGB", "scale": "1/255",
                "sample_rate": 16000, "n_mfcc": 40, "n_fft": 400, "hop_length": 160, "audio_seconds": 4.0}


def test_the_readers_share_one_config_and_the_clip_sets_one_base():
    assert AVConfig is ClipPreprocessing
    assert issubclass(rv.Preprocessing, ClipPreprocessing)
    shared = {f.name for f in dataclasses.fields(ClipPreprocessing)}
    assert shared < {f.name for f in dataclasses.fields(rv.Preprocessing)}   # RAVDESS adds only its resampler
    assert issubclass(ERISynthConfig, SynthClips) and issubclass(EmoReactSynthConfig, SynthClips)


def test_each_reader_keeps_its_own_defaults():
    assert (ClipPreprocessing().frames, ClipPreprocessing().sample_rate, ClipPreprocessing().audio_seconds) == (32, 16000, 4.0)
    assert (rv.Preprocessing().frames, rv.Preprocessing().sample_rate, rv.Preprocessing().audio_seconds) == (15, 22050, 3.6)
    assert (ERISynthConfig().clips, ERISynthConfig().split) == (300, (0.6, 0.2, 0.2))
    assert (EmoReactSynthConfig().clips, EmoReactSynthConfig().split) == (240, (0.5, 0.25, 0.25))


def test_cache_keys_are_the_ones_the_earlier_code_wrote():
    assert ClipPreprocessing(detector="haar").fingerprint() == OLD_ERI_FINGERPRINT
    assert rv.Preprocessing(detector="haar").fingerprint() == OLD_RAVDESS_FINGERPRINT


def test_a_recorded_spec_reads_back_as_it_was_trained():
    ravdess = rv.Preprocessing.from_spec(json.loads(json.dumps(OLD_RAVDESS_SPEC)))
    assert ravdess.audio_seconds == 3.6 and ravdess.resample == "pyav"   # recorded before the key: FFmpeg's
    assert dataclasses.replace(ravdess, resample="librosa", detector="haar").fingerprint() == OLD_RAVDESS_FINGERPRINT
    newer = rv.Preprocessing.from_spec({**OLD_RAVDESS_SPEC, "clip_seconds": 2.0, "audio_seconds": 9.0,
                                        "resample": "librosa"})
    assert (newer.audio_seconds, newer.resample) == (2.0, "librosa")   # the clip window wins, as it always did
    eri = ClipPreprocessing.from_spec(json.loads(json.dumps(OLD_ERI_SPEC)))
    assert (eri.frames, eri.face_size, eri.detector) == (16, 64, "auto")
    assert dataclasses.replace(eri, frames=32, face_size=112, detector="haar").fingerprint() == OLD_ERI_FINGERPRINT


def _not_a_video(path):
    path.write_bytes(b"not decodable: reading this clip would fail, so a hit must come from the cache")
    return path


def test_a_ravdess_clip_prepared_by_the_earlier_code_is_read_from_its_cache(tmp_path):
    video = _not_a_video(tmp_path / "01-01-03-01-01-01-01.mp4")
    clip = rv.Clip("01-03-01-01-01-01", 1, 2, video, None)
    old_name = f"{clip.key}-{sha256_text('|'.join([sha256_file(video), OLD_RAVDESS_FINGERPRINT]))[:20]}.npz"
    (tmp_path / "cache").mkdir()
    np.savez(tmp_path / "cache" / old_name, faces=np.zeros((15, 8, 8, 3), np.uint8), mfcc=np.zeros((10, 4), np.float32))
    cache = rv.ClipCache(tmp_path / "cache", rv.Preprocessing(detector="haar"))
    assert cache.get_or_make(clip, detector=None).name == old_name


def test_an_eri_clip_prepared_by_the_earlier_code_is_read_from_its_cache(tmp_path):
    video = _not_a_video(tmp_path / "00001.mp4")
    key = sha256_text("|".join([sha256_file(video), "-"]) + "|" + OLD_ERI_FINGERPRINT)[:32]
    entry = tmp_path / "cache" / key[:2] / f"{key}.npz"
    entry.parent.mkdir(parents=True)
    info = np.frombuffer(json.dumps({"faces_found": 32, "padded_samples": 0, "silent": False}).encode(), np.uint8)
    np.savez(entry, video=np.zeros((32, 8, 8, 3), np.uint8), audio=np.zeros((40, 4), np.float32), info=info)
    ready, report = prepare_clips([ClipJob("00001", video)], ClipPreprocessing(detector="haar"), tmp_path / "cache",
                                  workers=1)
    assert ready == {"00001": entry} and report.from_cache == 1


@pytest.mark.parametrize("cfg", [ERISynthConfig(clips=10), EmoReactSynthConfig(clips=8)])
def test_a_clip_set_splits_in_clip_order_by_its_shares(cfg):
    names = [cfg.split_of(i) for i in range(cfg.clips)]
    n_train, n_val = round(cfg.clips * cfg.split[0]), round(cfg.clips * cfg.split[1])
    assert names == ["train"] * n_train + ["val"] * n_val + ["test"] * (cfg.clips - n_train - n_val)
    assert cfg.frame_count == round(cfg.seconds * cfg.fps)
