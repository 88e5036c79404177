"""Face-video + voice clip preprocessing with an on-disk cache.

A clip becomes ``video`` (T face crops, RGB uint8 [T, S, S, 3]) and ``audio``
(MFCC float32 [n_mfcc, F]).  Results are cached per clip under a key made of
the media files' SHA-256 and the preprocessing settings, written atomically,
so the second epoch (and the next stage, and export calibration) decodes
nothing, and a changed file or setting never reads a stale entry.

Per-clip problems do not stop a run: they are counted in a
:class:`PrepReport` and the clip is skipped (no face in any frame, no audio,
unreadable video), or kept and reported (silent or short audio, padded).
Only when nothing is usable is it an error.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import multiprocessing as mp
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping, Sequence

import numpy as np

from ..errors import DataError
from ..fileio import atomic_path, sha256_file, sha256_text
from ..lazy import lazy_import
from .audio import fit_length, mfcc
from .detectors import make_detector as make
from .detectors import resolve_detector
from .faces import face_crops
from .media import find_sibling_audio, has_audio, read_audio, read_frames
from .report import progress

cv2 = lazy_import("cv2", "")

CACHE_VERSION = 1


@dataclass(frozen=True)
class ClipPreprocessing:
    """How a reader turns a face video and its voice into model inputs, for every audio-visual dataset: ``frames``
    face crops of ``face_size`` pixels (``face_margin`` around the box ``detector`` finds) and the MFCC
    (``n_mfcc``, ``n_fft``, ``hop_length``) of an ``audio_seconds`` window at ``sample_rate``.

    The fields are the keys of a model spec's ``preprocessing`` (what a run's manifest records): ``from_spec``
    reads them back. The defaults are the ERI model's; a dataset whose reference differs subclasses with its own
    defaults (``data.ravdess.Preprocessing``). ``fingerprint`` goes into the cache key of every preprocessed clip.
    """

    frames: int = 32
    face_size: int = 112
    face_margin: float = 0.2
    sample_rate: int = 16000
    n_mfcc: int = 40
    n_fft: int = 400
    hop_length: int = 160
    audio_seconds: float = 4.0
    detector: str = "auto"      # MTCNN where a runtime for it is installed, else Haar (see data/detectors.py)

    SPEC_KEYS: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    """Field -> older spec keys read first (a spec written before the field had its present name)."""
    RECORDED_BEFORE: ClassVar[Mapping[str, Any]] = {}
    """Field -> the value a run recorded before its key existed was made with (else the field's default)."""

    @classmethod
    def from_spec(cls, pre: Mapping[str, Any]):
        """The preprocessing a spec's ``preprocessing`` mapping records; keys that are not fields are ignored."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            key = next((k for k in (*cls.SPEC_KEYS.get(f.name, ()), f.name) if k in pre), None)
            if key is not None:
                values[f.name] = pre[key]
            elif f.name in cls.RECORDED_BEFORE:
                values[f.name] = cls.RECORDED_BEFORE[f.name]
        return cls(**values)

    def fingerprint(self) -> str:
        return json.dumps({"v": CACHE_VERSION, **asdict(self)}, sort_keys=True)


AVConfig = ClipPreprocessing   # the name the ERI reader's callers know it by


@dataclass(frozen=True)
class ClipJob:
    clip_id: str
    video: Path | None
    audio: Path | None = None   # explicit audio file; None = the video's own track or a sibling .wav


@dataclass
class PrepReport:
    total: int = 0
    ok: int = 0
    from_cache: int = 0
    skipped: Counter = field(default_factory=Counter)
    short_audio: int = 0          # shorter than the audio window: zero-padded at the end
    silent_audio: int = 0         # a track of zeros (or none usable): the model hears silence
    audio_seconds: float = 0.0    # the window (``ClipPreprocessing.audio_seconds``), for the summary's advice
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def padded_audio(self) -> int:
        return self.short_audio + self.silent_audio

    def count_audio(self, info: dict | None) -> None:
        """Count a kept clip's audio problem from its cache info."""
        if info and info.get("silent"):
            self.silent_audio += 1
        elif info and info.get("padded_samples"):
            self.short_audio += 1

    def note(self, reason: str, clip_id: str) -> None:
        """Count a skipped clip; every clip is kept for the manifest, the console names the first few."""
        self.skipped[reason] += 1
        self.examples.setdefault(reason, []).append(clip_id)

    def summary(self) -> str:
        parts = [f"{self.ok}/{self.total} clips ready ({self.from_cache} from cache)"]
        for reason, n in sorted(self.skipped.items()):
            names = self.examples[reason]
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            parts.append(f"{n} skipped: {reason} (e.g. {', '.join(names[:3])}{more})")
        if self.short_audio:
            window = f" {self.audio_seconds:g} s" if self.audio_seconds else ""
            parts.append(f"{self.short_audio} with audio shorter than the{window} window (zero-padded at the end; "
                         f"--audio-seconds sets the window)")
        if self.silent_audio:
            parts.append(f"{self.silent_audio} with a silent audio track")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "ok": self.ok, "from_cache": self.from_cache,
                "skipped": dict(self.skipped), "skipped_clips": {k: list(v) for k, v in self.examples.items()},
                "padded_audio": self.padded_audio, "short_audio": self.short_audio, "silent_audio": self.silent_audio}


class ClipSkipped(Exception):
    """A clip cannot be used; the message is the reason (counted, not fatal)."""


@functools.lru_cache(maxsize=4)
def make_detector(name: str):
    """The detector for a resolved name (``blazeface``, ``blazeface-short``, ``mtcnn`` or ``haar``), made once
    per process; one thread each, as the worker processes run side by side."""
    return make(name, threads=1)


def default_workers() -> int:
    """Worker processes for preprocessing: every core (the detector runs one thread in each)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def process_clip(job: ClipJob, cfg: ClipPreprocessing, detector=None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Decode, detect, crop and featurise one clip; raises ClipSkipped with the reason."""
    if job.video is None or not Path(job.video).exists():
        raise ClipSkipped("video file missing")
    try:
        frames, _fps = read_frames(job.video, count=cfg.frames)
    except DataError:
        raise ClipSkipped("unreadable or truncated video") from None
    detector = detector or make_detector(cfg.detector)
    crops, n_found = face_crops(frames, detector, cfg.face_size, cfg.face_margin)
    if n_found == 0:
        raise ClipSkipped("no face found in any sampled frame")
    crops = np.stack([cv2.cvtColor(c, cv2.COLOR_BGR2RGB) for c in crops])
    audio_src = job.audio or find_sibling_audio(Path(job.video))
    if audio_src is None and not has_audio(job.video):
        raise ClipSkipped("no audio track and no sibling .wav")
    try:
        y = read_audio(audio_src or job.video, cfg.sample_rate)
    except DataError:
        raise ClipSkipped("unreadable audio") from None
    n = int(round(cfg.audio_seconds * cfg.sample_rate))
    y, padded = fit_length(y, n)
    silent = float(np.abs(y).max()) < 1e-4 if len(y) else True
    feats = mfcc(y, cfg.sample_rate, cfg.n_mfcc, cfg.n_fft, cfg.hop_length)
    info = {"faces_found": n_found, "padded_samples": int(padded), "silent": silent}
    return {"video": crops, "audio": feats}, info


class FeatureCache:
    """One ``.npz`` per (media content, settings) key under ``root``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def key(self, files: Sequence[Path | None], cfg: ClipPreprocessing) -> str:
        hashes = [sha256_file(f) if f is not None and Path(f).exists() else "-" for f in files]
        return sha256_text("|".join(hashes) + "|" + cfg.fingerprint())[:32]

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        p = self.path(key)
        if not p.exists():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except Exception:  # a foreign or damaged file: recompute
            return None

    def save(self, key: str, arrays: Mapping[str, np.ndarray]) -> Path:
        p = self.path(key)
        with atomic_path(p) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        return p


def _job_files(job: ClipJob) -> list[Path | None]:
    audio = job.audio or (find_sibling_audio(Path(job.video)) if job.video is not None else None)
    return [job.video, audio]


def _work(args) -> tuple[str, str | None, dict | None, str | None]:
    """Worker: returns (clip_id, cache path or None, info, skip reason)."""
    job, cfg, cache_root, key = args
    cache = FeatureCache(cache_root)
    try:
        arrays, info = process_clip(job, cfg)
    except ClipSkipped as why:
        # Remember content failures too, so a faceless clip is not re-decoded every stage.
        cache.save(key, {"skipped": np.frombuffer(str(why).encode(), dtype=np.uint8)})
        return job.clip_id, None, None, str(why)
    arrays["info"] = np.frombuffer(json.dumps(info).encode(), dtype=np.uint8)
    return job.clip_id, str(cache.save(key, arrays)), info, None


def prepare_clips(jobs: Sequence[ClipJob], cfg: ClipPreprocessing, cache_root: str | os.PathLike,
                  workers: int | None = None, console=None, label: str = "preprocess") -> tuple[dict[str, Path], PrepReport]:
    """Preprocess (or find in the cache) every clip on ``workers`` processes (default: every core);
    returns ({clip_id: cache file}, report).  The cache key holds the detector actually used."""
    cfg = dataclasses.replace(cfg, detector=resolve_detector(cfg.detector, _say(console)))
    workers = default_workers() if workers is None else workers
    cache = FeatureCache(cache_root)
    report = PrepReport(total=len(jobs), audio_seconds=cfg.audio_seconds)
    ready: dict[str, Path] = {}
    todo = []
    for job in jobs:
        if job.video is None or not Path(job.video).exists():
            report.note("video file missing", job.clip_id)
            continue
        key = cache.key(_job_files(job), cfg)
        state = _cached_state(cache.path(key))
        if state is None:
            todo.append((job, key))
        elif state.get("skipped"):
            report.note(state["skipped"], job.clip_id)
        else:
            ready[job.clip_id] = cache.path(key)
            report.from_cache += 1
            report.count_audio(state)
    if todo:
        args = [(job, cfg, str(cache_root), key) for job, key in todo]
        with progress(console, label, len(todo)) as advance:
            for res in parallel_map(_work, args, workers):
                _collect(res, ready, report)
                advance()
    report.ok = len(ready)
    return ready, report


def parallel_map(fn, args: Sequence, workers: int) -> Iterator:
    """``map(fn, args)`` on ``workers`` processes (in this process when 1 or a single item), in order.

    The workers are spawned, not forked: a fork copies whatever lock another thread of this process holds at
    that moment (a progress bar's refresh thread, an import in flight, a demo's inference thread), and a worker
    then waited forever on an import lock no thread would release (seen in the test suite)."""
    if workers <= 1 or len(args) <= 1:
        yield from map(fn, args)
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(args)), mp_context=mp.get_context("spawn")) as pool:
        yield from pool.map(fn, args, chunksize=1)


def _say(console):
    return None if console is None else (lambda m: console.print(f"[yellow]{m}[/]", highlight=False))


def _collect(res, ready: dict[str, Path], report: PrepReport) -> None:
    clip_id, path, info, reason = res
    if path is None:
        report.note(reason or "unknown", clip_id)
        return
    ready[clip_id] = Path(path)
    report.count_audio(info)


def _cached_state(path: Path) -> dict | None:
    """The info of a cache entry ({"skipped": reason} for a remembered failure); None if absent or damaged."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if "skipped" in z.files:
                return {"skipped": bytes(z["skipped"]).decode()}
            return json.loads(bytes(z["info"]).decode()) if "info" in z.files else {}
    except Exception:
        return None
