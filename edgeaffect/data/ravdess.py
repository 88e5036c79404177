"""RAVDESS as distributed, preprocessed as the self-attention fusion reference does.

Layout::

    <root>/Actor_01/01-01-03-02-01-01-01.mp4   (also ACTOR01/; modality 01 full AV, 02 video-only)
    <root>/Actor_01/03-01-03-02-01-01-01.wav   (modality 03 audio-only)

File names are ``MM-VC-EE-II-SS-RR-AA`` (modality, vocal channel, emotion 01..08, intensity,
statement, repetition, actor).  A face video and an audio file form one sample when all fields
after the modality agree; without a wav, a full-AV mp4 gives its own audio track.

The actor folders may sit up to three levels below the root, as the separately distributed
archives unpack: ``Video_Speech_Actor_01/Actor_01/`` (one zip per actor) next to
``Audio_Speech_Actors_01-24/Actor_01/`` (one zip for all); folders of the same actor are merged.
A file name seen twice (an archive unpacked twice) is counted as a duplicate and read once.
Speech (vocal channel 01) is read by default, as the reference trains; song (02) on request.

Per sample (reference/models.md §2): the first ``3.6 s`` of video, ``frames`` (15) frames at
``i*n//m + n//(2m)``, each cropped to the detected face (a frame without a detection reuses the
nearest box; frames past the end of a short clip are zeros) and resized to ``face_size`` (224),
BGR kept; audio loaded as the reference's ``librosa.load(sr=22050)`` (decoded at its own rate,
channels averaged, librosa's resampler: soxr_hq; runs recorded before ``resample`` was in their spec
keep PyAV's resampler, as they were trained), zero-padded at the end or centre-cropped to 3.6 s,
``librosa.feature.mfcc(n_mfcc=10)`` with librosa's defaults -> [10, 156] (data/audio.py computes both
without librosa, equal to it).

Preprocessed clips are cached on disk, one ``.npz`` per clip, keyed by the content hashes of the
clip's files and the preprocessing settings; a clip that cannot be used is cached as a one-line
reason, so it is reported (and counted) without being decoded again.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping, Sequence

import numpy as np

from ..errors import DataError
from ..fileio import atomic_path, sha256_file, sha256_text, write_text
from ..lazy import lazy_import
from .audio import mfcc as audio_mfcc
from .detectors import resolve_detector
from .faces import face_crops
from .media import read_audio, read_frames, video_info
from .preprocess import ClipPreprocessing, _say, default_workers, make_detector, parallel_map
from .report import progress

cv2 = lazy_import("cv2", "")

DEFAULT_TEST_ACTORS = (5, 10, 16, 19)
DEFAULT_VAL_ACTORS = (11, 13, 18, 22)
_ACTOR_DIR = re.compile(r"^actor_?(\d+)$", re.IGNORECASE)
_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv"}
_AUDIO_SUFFIXES = {".wav", ".flac"}
CACHE_VERSION = 1
VOCAL_CHANNELS = {"speech": (1,), "song": (2,), "all": (1, 2)}
_MAX_DEPTH = 3


@dataclass(frozen=True)
class Clip:
    """One audio-visual sample; ``label`` is 0..7 (the file's emotion field minus one)."""

    key: str                 # the fields after the modality: VC-EE-II-SS-RR-AA
    actor: int
    label: int
    video: Path
    audio: Path | None       # None: take the audio track of ``video``


@dataclass
class Scan:
    clips: list[Clip]
    problems: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def problem(self, kind: str, line: str) -> None:
        self.counts[kind] += 1
        self.problems.append(line)


def parse_name(stem: str) -> tuple[int, ...] | None:
    m = _NAME.match(stem)
    return tuple(int(g) for g in m.groups()) if m else None


def find_actor_dirs(root: Path, max_depth: int = _MAX_DEPTH) -> list[Path]:
    """``Actor_XX``/``ACTORXX`` folders at most ``max_depth`` levels below ``root`` (hidden folders skipped)."""
    found: list[Path] = []
    for dirpath, dirnames, _ in os.walk(root):
        depth = len(Path(dirpath).relative_to(root).parts)
        keep = []
        for name in sorted(dirnames):
            if name.startswith("."):
                continue
            if _ACTOR_DIR.match(name):
                found.append(Path(dirpath) / name)
            elif depth + 1 < max_depth:
                keep.append(name)
        dirnames[:] = keep
    return sorted(found, key=lambda d: (int(_ACTOR_DIR.match(d.name).group(1)), str(d)))


def scan_ravdess(root: str | os.PathLike, vocal: str = "speech") -> Scan:
    """Find and pair every clip under ``root``; problems become lines and counts, never exceptions.

    ``vocal`` picks speech (the reference's 1440 clips), song, or all.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"RAVDESS root {root} does not exist")
    if vocal not in VOCAL_CHANNELS:
        raise DataError(f"unknown vocal channel {vocal!r}; use {', '.join(VOCAL_CHANNELS)}")
    actor_dirs = find_actor_dirs(root)
    if not actor_dirs:
        raise DataError(f"{root} has no Actor_XX/ (or ACTORXX/) folders up to {_MAX_DEPTH} levels down: "
                        "not a RAVDESS root")
    scan = Scan([])
    found = _Found(vocal)
    for d in actor_dirs:
        for f in sorted(d.iterdir()):
            suffix = f.suffix.lower()
            if f.name.startswith(".") or suffix not in _VIDEO_SUFFIXES | _AUDIO_SUFFIXES or not f.is_file():
                continue
            found.add(f, d, scan)
    found.pair(scan)
    return scan


@dataclass
class _Found:
    """The media files of one vocal channel, by their fields after the modality (``Clip.key``), while scanning."""

    vocal: str
    videos: dict[str, tuple[int, Path]] = field(default_factory=dict)   # key -> (modality, file)
    audios: dict[str, Path] = field(default_factory=dict)
    meta: dict[str, tuple[int, int]] = field(default_factory=dict)      # key -> (actor, label)
    seen: dict[str, Path] = field(default_factory=dict)                 # lower-cased file name -> first file

    def add(self, f: Path, actor_dir: Path, scan: Scan) -> None:
        """Keep a media file of an actor folder, or say in ``scan`` why it is not used."""
        fields = parse_name(f.stem)
        if fields is None:
            scan.problem("bad_name", f"{f}: not a RAVDESS name MM-VC-EE-II-SS-RR-AA; skipped")
            return
        modality, channel, emotion, *_rest, actor = fields
        if channel not in VOCAL_CHANNELS[self.vocal]:
            scan.counts[f"not_{self.vocal}"] += 1          # the other vocal channel: a choice, not a problem
            return
        if f.name.lower() in self.seen:
            scan.problem("duplicate", f"{f}: same file name as {self.seen[f.name.lower()]}; read once")
            return
        self.seen[f.name.lower()] = f
        key, suffix = f.stem[3:], f.suffix.lower()
        if not 1 <= emotion <= 8:
            scan.problem("label_out_of_range", f"{f}: emotion {emotion:02d} is outside 01..08; skipped")
            return
        if actor != int(_ACTOR_DIR.match(actor_dir.name).group(1)):
            scan.problem("actor_mismatch", f"{f}: actor field {actor:02d} but folder {actor_dir.name}; skipped")
            return
        if suffix in _AUDIO_SUFFIXES and modality == 3:
            self.audios[key] = f
        elif suffix in _VIDEO_SUFFIXES and modality in (1, 2):
            # prefer the full-AV file (it can supply audio too), then video-only
            if key not in self.videos or modality < self.videos[key][0]:
                self.videos[key] = (modality, f)
        else:
            scan.problem("bad_name", f"{f}: modality {modality:02d} does not fit a {suffix} file; skipped")
            return
        self.meta[key] = (actor, emotion - 1)

    def pair(self, scan: Scan) -> None:
        """Join each face video with its audio (a wav, or a full-AV file's own track) into ``scan.clips``."""
        for key in sorted(set(self.videos) | set(self.audios)):
            actor, label = self.meta[key]
            if key not in self.videos:
                scan.problem("no_video", f"{self.audios[key]}: no face video with the same fields; skipped")
                continue
            modality, video = self.videos[key]
            audio = self.audios.get(key)
            if audio is None and modality != 1:
                scan.problem("no_audio", f"{video}: video-only clip without a matching 03-{key} audio file; skipped")
                continue
            scan.clips.append(Clip(key, actor, label, video, audio))


def split_clips(clips: Iterable[Clip], split: str, test_actors: Sequence[int] = DEFAULT_TEST_ACTORS,
                val_actors: Sequence[int] = DEFAULT_VAL_ACTORS) -> list[Clip]:
    """Actor-wise split: ``test``/``val`` take the listed actors, ``train`` the rest, ``all`` everything."""
    test, val = set(test_actors), set(val_actors)
    if test & val:
        raise DataError(f"actors {sorted(test & val)} are in both the test and the validation split")
    pick = {
        "train": lambda a: a not in test and a not in val,
        "val": lambda a: a in val,
        "test": lambda a: a in test,
        "all": lambda a: True,
    }
    if split not in pick:
        raise DataError(f"unknown split {split!r}; use train, val, test or all")
    return [c for c in clips if pick[split](c.actor)]


def distributed_indices(count: int, n_frames: int) -> list[int]:
    """The reference's frame choice: ``i*n//m + n//(2m)`` for ``m = count`` over ``n`` frames."""
    return [i * n_frames // count + n_frames // (2 * count) for i in range(count)]


def fix_length(y: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad at the end, or keep the centre ``n`` samples (as the reference's extract_audios)."""
    if len(y) >= n:
        start = (len(y) - n) // 2
        return y[start:start + n]
    return np.pad(y, (0, n - len(y)))


@dataclass(frozen=True)
class Preprocessing(ClipPreprocessing):
    """The reference's preprocessing (the module docstring): its defaults; ``audio_seconds`` is the clip window,
    the span the frames are spread over too, and ``resample`` the audio resampler."""

    frames: int = 15
    face_size: int = 224
    face_margin: float = 0.0
    sample_rate: int = 22050
    n_mfcc: int = 10
    n_fft: int = 2048
    hop_length: int = 512
    audio_seconds: float = 3.6
    resample: str = "librosa"  # "pyav": FFmpeg's resampler (runs recorded before the key existed)

    SPEC_KEYS: ClassVar[Mapping[str, tuple[str, ...]]] = {"audio_seconds": ("clip_seconds",)}
    RECORDED_BEFORE: ClassVar[Mapping[str, Any]] = {"resample": "pyav"}

    def fingerprint(self) -> str:
        """The key the clip cache has always used: the window is named ``seconds`` in it."""
        fields = asdict(self)
        fields["seconds"] = fields.pop("audio_seconds")
        return sha256_text(json.dumps({"v": CACHE_VERSION, **fields}, sort_keys=True))[:16]


def load_audio(path: Path, sr: int, resample: str = "librosa") -> np.ndarray:
    """Mono float32 audio at ``sr``, resampled as the reference does (``librosa``) or as older runs were (``pyav``)."""
    return read_audio(path, sr, resample)


def load_clip(clip: Clip, pre: Preprocessing, detector) -> tuple[np.ndarray, np.ndarray]:
    """(faces [T, S, S, 3] BGR uint8, MFCC [n_mfcc, F] float32) of one clip; DataError when unusable."""
    n_reported, fps, _, _ = video_info(clip.video)
    span = int(round(pre.audio_seconds * fps))
    wanted = distributed_indices(pre.frames, span)
    present = [i for i in wanted if i < n_reported] if n_reported > 0 else wanted
    if not present:
        raise DataError(f"{clip.video}: no decodable frame")
    try:
        frames, _ = read_frames(clip.video, indices=present)
    except DataError:
        # the container over-reports its length (truncated file): take what decodes, spread evenly
        frames, _ = read_frames(clip.video, count=len(present))
    crops, found = face_crops(frames, detector, pre.face_size, pre.face_margin)
    if found == 0:
        raise DataError(f"{clip.video}: no face found in any of the {len(frames)} sampled frames")
    faces = np.zeros((pre.frames, pre.face_size, pre.face_size, 3), np.uint8)
    faces[:len(crops)] = crops
    y = load_audio(clip.audio or clip.video, pre.sample_rate, pre.resample)
    if len(y) == 0:
        raise DataError(f"{clip.audio or clip.video}: the audio track is empty")
    y = fix_length(y, int(round(pre.audio_seconds * pre.sample_rate)))
    return faces, audio_mfcc(y, pre.sample_rate, pre.n_mfcc, pre.n_fft, pre.hop_length)   # librosa's MFCC


class ClipCache:
    """One file per clip under ``folder``, named by content hashes + the preprocessing fingerprint."""

    def __init__(self, folder: str | os.PathLike, pre: Preprocessing):
        self.folder = Path(folder)
        self.pre = pre
        self._fp = pre.fingerprint()

    def key(self, clip: Clip) -> str:
        parts = [sha256_file(clip.video)] + ([sha256_file(clip.audio)] if clip.audio else [])
        return f"{clip.key}-{sha256_text('|'.join(parts + [self._fp]))[:20]}"

    def get_or_make(self, clip: Clip, detector) -> Path:
        """The cache file of ``clip`` (made if missing); raises DataError (also cached) if unusable."""
        key = self.key(clip)
        data, bad = self.folder / f"{key}.npz", self.folder / f"{key}.bad"
        if data.exists():
            return data
        if bad.exists():
            raise DataError(bad.read_text(encoding="utf-8").strip())
        try:
            faces, mfcc = load_clip(clip, self.pre, detector)
        except DataError as exc:
            write_text(bad, str(exc) + "\n")
            raise
        with atomic_path(data) as tmp:
            np.savez(tmp, faces=faces, mfcc=mfcc)
        return data


def _rotate(frames: np.ndarray, degrees: float) -> np.ndarray:
    s = frames.shape[1]
    m = cv2.getRotationMatrix2D((s / 2, s / 2), degrees, 1.0)
    return np.stack([cv2.warpAffine(f, m, (s, s)) for f in frames])


class RavdessDataset:
    """A map-style dataset over cached clips: ``{"video": [T,3,S,S] in [0,1], "audio": [n_mfcc,F], "target"}``.

    ``augment`` applies the reference's training augmentation: a horizontal flip (p 0.5) and a
    rotation by a whole number of degrees in [-10, 10], the same for every frame of a clip.
    ``report`` (set by :func:`prepare_split`) holds the split's problems, counts and content hash.
    """

    def __init__(self, files: list[Path], labels: list[int], clips: list[Clip], augment: bool = False):
        self.files, self.labels, self.clips, self.augment = files, labels, clips, augment
        self.report: Prepared | None = None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        with np.load(self.files[i]) as z:
            faces, mfcc = z["faces"], z["mfcc"]
        if self.augment:
            if np.random.random() < 0.5:
                faces = faces[:, :, ::-1]
            angle = int(np.random.randint(-10, 11))
            if angle:
                faces = _rotate(np.ascontiguousarray(faces), angle)
        video = np.ascontiguousarray(faces.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)
        return {"video": video, "audio": mfcc, "target": np.asarray(self.labels[i], np.int64)}


@dataclass
class Prepared:
    dataset: RavdessDataset
    problems: list[str]
    counts: Counter
    content_sha256: str = ""     # over the used clips' cache keys (file contents + settings)


def prepare_split(root: str | os.PathLike, split: str, pre: Preprocessing,
                  test_actors: Sequence[int] = DEFAULT_TEST_ACTORS, val_actors: Sequence[int] = DEFAULT_VAL_ACTORS,
                  cache_dir: str | os.PathLike | None = None, augment: bool = False, detector=None,
                  console=None, vocal: str = "speech", workers: int | None = None) -> Prepared:
    """Scan, split, preprocess (cached, on ``workers`` processes: default every core) and wrap one split.

    Unusable clips are listed in ``problems`` and counted by kind; a split with no usable clip is
    an error that names the actors it looked for (and the archive that is missing, if one is).
    ``detector`` (an object) runs in this process instead; its ``name`` goes into the cache key.
    """
    root = Path(root)
    scan = scan_ravdess(root, vocal)
    clips = split_clips(scan.clips, split, test_actors, val_actors)
    # training reads val next: an empty val split is said now, not after the train split's preprocessing
    for name in [split] + (["val"] if split == "train" and val_actors else []):
        if not (clips if name == split else split_clips(scan.clips, name, test_actors, val_actors)):
            raise DataError(f"RAVDESS split {name!r} is empty: {_what_is_there(scan)}, test actors "
                            f"{list(test_actors)}, val actors {list(val_actors)} (set them with --test-actors/--val-actors)")
    name = getattr(detector, "name", type(detector).__name__) if detector is not None else \
        resolve_detector(pre.detector, _say(console))
    pre = replace(pre, detector=name)
    cache = ClipCache(Path(cache_dir) if cache_dir else root / ".cache" / "edgeaffect" / "ravdess", pre)
    files, labels, kept = [], [], []
    problems, counts = list(scan.problems), Counter(scan.counts)
    n_workers = 1 if detector is not None else (default_workers() if workers is None else workers)
    args = [(cache, clip, detector) for clip in clips]
    with progress(console, f"ravdess preprocess {split}", len(clips)) as advance:
        for clip, path, error in parallel_map(_make, args, n_workers):
            if path is not None:
                files.append(path)
                labels.append(clip.label)
                kept.append(clip)
            else:
                counts["no_face" if "no face" in error else "unreadable"] += 1
                problems.append(f"{error}; skipped")
            advance()
    if not files:
        raise DataError(f"RAVDESS split {split!r}: none of its {len(clips)} clips is usable "
                        f"({dict(counts)}); first problem: {problems[0] if problems else '-'}")
    digest = sha256_text("\n".join(sorted(f.stem for f in files)))
    dataset = RavdessDataset(files, labels, kept, augment)
    dataset.report = Prepared(dataset, problems, counts, digest)
    return dataset.report


def _make(args) -> tuple[Clip, Path | None, str | None]:
    """Worker: (clip, cache file or None, the reason it is unusable)."""
    cache, clip, detector = args
    try:
        return clip, cache.get_or_make(clip, detector or make_detector(cache.pre.detector)), None
    except DataError as exc:
        return clip, None, str(exc)


def _what_is_there(scan: Scan) -> str:
    """Which actors have usable clips, or why none pair up (only one of the video and audio archives)."""
    actors = sorted({c.actor for c in scan.clips})
    if actors:
        return f"actors present {actors}"
    if scan.counts.get("no_audio") and not scan.counts.get("no_video"):
        return ("no usable clip: only video-only files (02-*.mp4) were found; the audio archive "
                "(Audio_Speech_Actors_01-24, 03-*.wav) is missing, or add the full-AV 01-*.mp4 files")
    if scan.counts.get("no_video") and not scan.counts.get("no_audio"):
        return ("no usable clip: only audio files (03-*.wav) were found; the video archives "
                "(Video_Speech_Actor_XX, 01-*.mp4 or 02-*.mp4) are missing")
    return f"no usable clip ({dict(scan.counts)})"
