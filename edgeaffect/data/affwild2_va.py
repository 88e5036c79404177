"""Aff-Wild2 valence-arousal (ABAW VA track) as distributed, cut into the reference's sub-clip sequences.

Layout read (anywhere under the root; the annotation folder may sit in ``annotations/``)::

    cropped_aligned/<video>/00001.jpg ...
    VA_Estimation_Challenge/{Train_Set,Validation_Set}/<video>.txt   header "valence,arousal", rows "v,a"
    <any folder>/<base>.{mp4,avi,mkv,...} or <base>.wav              raw video (its audio track) or audio

``<video>_left`` / ``<video>_right`` (two people in one video) share the base video's audio.
Rows with -5 (either value) are not annotated; they, and rows outside [-1, 1], are dropped.

A sequence is ``subclips`` sub-clips ending ``window = frames x dilation`` frames
apart.  Each sub-clip takes ``frames`` of the annotated frames in its window,
sub-sampled from the end (every 1st/2nd/.../``dilation``-th) or padded with the
last one, and the label of the last one; a window without annotated frames
drops the sequence.  Sequence ends tile the video as the reference's training
windows do (every frame is a sub-clip end once for ``stride=1``).  Absent face
images are zero-filled, as in the reference.

Audio: per video one power mel spectrogram of the whole track (librosa, the
reference's torchaudio settings: n_fft 1024, win 882, hop 441, 64 HTK mels,
Hann, centred reflect padding), cached on disk keyed by the media file's hash
and the settings.  A sub-clip's input is the ``audio_samples`` (45,599) window
ending at its last frame: the 104 mel columns nearest that window (within half
a hop, 5 ms, of computing the window alone; zeros before the track starts),
then power->dB with top_db 80 over the window and (x + 14.8) / 19.895.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import DataError
from ..fileio import atomic_path, sha256_file
from .affwild2 import list_frames, read_face, read_label_rows
from .audio import mel_power
from .media import read_audio, video_info

VA_DIR = "VA_Estimation_Challenge"
SPLIT_DIRS = {"train": "Train_Set", "val": "Validation_Set", "test": "Test_Set"}
MEDIA_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".wav", ".flac", ".m4a")
INVALID = -5.0
DEFAULT_CACHE = ".cache/edgeaffect/va"


@dataclass
class ScanReport:
    """What the scan kept and skipped; ``messages`` hold one line per problem."""

    videos: int = 0
    sequences: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    rows_unannotated: int = 0
    rows_out_of_range: int = 0
    messages: list[str] = field(default_factory=list)

    def skip(self, reason: str, message: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.messages.append(message)

    def to_dict(self) -> dict[str, Any]:
        return {"videos": self.videos, "sequences": self.sequences, "skipped": dict(self.skipped),
                "rows_unannotated": self.rows_unannotated, "rows_out_of_range": self.rows_out_of_range}


@dataclass
class VAVideo:
    name: str
    frames_dir: Path
    media: Path
    labels: np.ndarray        # [n + 1, 2] float32, row i = frame i (row 0 unused)
    valid: np.ndarray         # [n + 1] bool


def read_va_labels(path: str | os.PathLike) -> np.ndarray:
    """Rows of a VA label file as float32 [n, 2] (-5 kept); DataError on a malformed file."""
    rows = []
    for i, line in read_label_rows(path, ("valence", "arousal")):
        parts = line.split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            rows.append((float(parts[0]), float(parts[1])))
        except ValueError:
            raise DataError(f"{path}:{i}: expected 'valence,arousal' numbers, got {line!r}") from None
    if not rows:
        raise DataError(f"{path}: no label rows")
    return np.asarray(rows, np.float32)


def find_label_dir(root: Path, split: str) -> Path:
    if split not in SPLIT_DIRS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLIT_DIRS)}")
    for cand in (root / VA_DIR, root / "annotations" / VA_DIR):
        if cand.is_dir():
            break
    else:
        found = sorted(root.rglob(VA_DIR)) if root.is_dir() else []
        if not found:
            raise DataError(f"no {VA_DIR}/ folder under {root}: not an Aff-Wild2 VA dataset root")
        cand = found[0]
    d = cand / SPLIT_DIRS[split]
    if not d.is_dir():
        raise DataError(f"{cand} has no {SPLIT_DIRS[split]}/ folder for split {split!r}")
    return d


def base_name(video: str) -> str:
    """Name of the raw video whose audio ``video`` uses (``_left``/``_right`` stripped)."""
    for suffix in ("_left", "_right"):
        if video.endswith(suffix):
            return video[: -len(suffix)]
    return video


def index_media(root: Path) -> dict[str, Path]:
    """Base name -> raw video (preferred) or audio file, found anywhere under root except the frame folders."""
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "cropped_aligned" and not d.startswith(".")]
        for fn in filenames:
            stem, suf = os.path.splitext(fn)
            if suf.lower() in MEDIA_SUFFIXES:
                p = Path(dirpath) / fn
                prev = found.get(stem)
                if prev is None or (prev.suffix.lower() in (".wav", ".flac", ".m4a") and suf.lower() not in (".wav", ".flac", ".m4a")):
                    found[stem] = p
    return found


def subclip_choice(valid: np.ndarray, end: int, frames: int, dilation: int) -> np.ndarray | None:
    """The ``frames`` frame numbers a sub-clip ending at ``end`` uses (None: no annotated frame in its window)."""
    window = frames * dilation
    lo = max(1, end - window + 1)
    avail = np.nonzero(valid[lo:end + 1])[0] + lo
    n = len(avail)
    if n == 0:
        return None
    if n < frames:
        return np.concatenate([avail, np.full(frames - n, avail[-1])])
    step = min(n // frames, dilation)
    return avail[::-1][::step][::-1][-frames:]


def sequence_ends(n: int, subclips: int, window: int, stride: int = 1) -> list[int]:
    """Last-sub-clip ends that tile ``n`` frames like the reference's training windows."""
    span = subclips * window
    ends = []
    for block in range(0, n, span):
        for r in range(0, window, stride):
            e = (subclips - 1) * window + 1 + block + r
            if e <= n:
                ends.append(e)
    return ends


class MelCache:
    """Whole-track power mel spectrograms, cached per media file hash and settings (atomic .npy files)."""

    def __init__(self, cache_dir: Path, pre: Mapping[str, Any]):
        self.dir = Path(cache_dir)
        self.cfg = {k: pre[k] for k in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "mel_scale")}
        self.cfg_key = hashlib.sha256(json.dumps(self.cfg, sort_keys=True).encode()).hexdigest()[:12]
        self._mem: dict[Path, tuple[np.ndarray, float]] = {}

    def get(self, media: Path) -> tuple[np.ndarray, float]:
        """(mel power [n_mels, columns] float32, video fps) for one media file."""
        if media in self._mem:
            return self._mem[media]
        key = f"{media.stem}-{sha256_file(media)[:16]}-{self.cfg_key}"
        path = self.dir / f"{key}.npy"
        meta_path = self.dir / f"{key}.json"
        if path.exists() and meta_path.exists():
            mel = np.load(path)
            fps = float(json.loads(meta_path.read_text())["fps"])
        else:
            mel, fps = self._compute(media)
            with atomic_path(path) as tmp:
                np.save(tmp, mel)
            with atomic_path(meta_path) as tmp:
                tmp.write_text(json.dumps({"fps": fps, "media": str(media), **self.cfg}))
        if len(self._mem) > 8:
            self._mem.pop(next(iter(self._mem)))
        self._mem[media] = (mel, fps)
        return mel, fps

    def _compute(self, media: Path) -> tuple[np.ndarray, float]:
        y = read_audio(media, self.cfg["sample_rate"])
        if len(y) == 0:
            raise DataError(f"{media}: the audio track is empty")
        fps = 30.0
        if media.suffix.lower() not in (".wav", ".flac", ".m4a"):
            fps = video_info(media)[1]
        return mel_power(y, self.cfg), float(fps)


def log_mel_window(mel: np.ndarray, end_sample: int, pre: Mapping[str, Any]) -> np.ndarray:
    """Normalised log-mel [n_mels, T] of the ``audio_samples`` window ending at ``end_sample``."""
    hop = pre["hop_length"]
    steps = 1 + pre["audio_samples"] // hop
    col0 = int(round((end_sample - pre["audio_samples"]) / hop))
    out = np.zeros((mel.shape[0], steps), np.float32)
    lo, hi = max(col0, 0), min(col0 + steps, mel.shape[1])
    if hi > lo:
        out[:, lo - col0:hi - col0] = mel[:, lo:hi]
    db = 10.0 * np.log10(np.maximum(out, 1e-10))
    db = np.maximum(db, db.max() - pre["top_db"])
    return ((db - pre["db_mean"]) / pre["db_std"]).astype(np.float32)


def scan_split(root: str | os.PathLike, split: str, pre: Mapping[str, Any], stride: int = 1) -> tuple[list[VAVideo], list[tuple[int, np.ndarray, np.ndarray]], ScanReport]:
    """Videos, sequences ``(video index, frame ids [S, F], label frames [S])`` and a report for one split."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset root {root} does not exist")
    label_dir = find_label_dir(root, split)
    media = index_media(root)
    s, f, dil = pre["subclips"], pre["frames"], pre["dilation"]
    report = ScanReport()
    videos: list[VAVideo] = []
    sequences: list[tuple[int, np.ndarray, np.ndarray]] = []
    for label_file in sorted(label_dir.glob("*.txt")):
        found = _video_files(root, label_file, media, report)
        if found is None:
            continue
        name, rows, frames_dir, src = found
        valid = _annotated_rows(name, rows, report)
        if not valid.any():
            report.skip("no labels", f"skipped {name}: no annotated frames")
            continue
        labels = np.concatenate([np.zeros((1, 2), np.float32), rows])
        valid = np.concatenate([[False], valid])
        vid_seqs = _video_sequences(valid, len(rows), s, f, dil, stride)
        if not vid_seqs:
            report.skip("too short", f"skipped {name}: {len(rows)} frames give no complete sequence of "
                                     f"{s} x {f * dil} frames (a video needs at least {s * f * dil}; fewer "
                                     f"--subclips make shorter sequences)")
            continue
        vi = len(videos)
        videos.append(VAVideo(name, frames_dir, src, labels, valid))
        sequences += [(vi, ids, ends) for ids, ends in vid_seqs]
    report.videos, report.sequences = len(videos), len(sequences)
    if not sequences:
        why = "; ".join(report.messages[:3]) or f"no label files in {label_dir}"
        raise DataError(f"no usable VA sequences in split {split!r} of {root}: {why}")
    return videos, sequences, report


def _video_files(root: Path, label_file: Path, media: Mapping[str, Path],
                 report: ScanReport) -> tuple[str, np.ndarray, Path, Path] | None:
    """A labelled video's (name, label rows, face-frame folder, audio source); None (said in ``report``) when its
    label file is unreadable or its frames or audio are missing."""
    name = label_file.stem
    try:
        rows = read_va_labels(label_file)
    except DataError as exc:
        report.skip("bad label file", f"skipped {name}: {exc}")
        return None
    frames_dir = root / "cropped_aligned" / name
    if not frames_dir.is_dir():
        report.skip("no frames", f"skipped {name}: no folder {frames_dir}")
        return None
    if not list_frames(frames_dir):
        report.skip("no frames", f"skipped {name}: {frames_dir} holds no frame images")
        return None
    src = media.get(base_name(name))
    if src is None:
        report.skip("no audio", f"skipped {name}: no raw video or audio file named {base_name(name)}.* under {root}")
        return None
    return name, rows, frames_dir, src


def _annotated_rows(name: str, rows: np.ndarray, report: ScanReport) -> np.ndarray:
    """Which label rows hold a usable annotation: not the unannotated marker, both values in [-1, 1]
    (rows outside are counted and said)."""
    unannotated = (rows == INVALID).any(1)
    out_of_range = ~unannotated & (np.abs(rows) > 1.0).any(1)
    report.rows_unannotated += int(unannotated.sum())
    if out_of_range.any():
        report.rows_out_of_range += int(out_of_range.sum())
        report.messages.append(f"{name}: {int(out_of_range.sum())} rows outside [-1, 1] dropped "
                               f"(first at line {int(np.argmax(out_of_range)) + 2})")
    return ~(unannotated | out_of_range)


def _video_sequences(valid: np.ndarray, n_rows: int, s: int, f: int, dil: int,
                     stride: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """A video's complete sequences: (frame ids [S, F], label frames [S]) for every end that ``stride`` steps to,
    kept only where each of the ``s`` sub-clips finds ``f`` annotated frames ``dil`` apart."""
    choice: dict[int, np.ndarray | None] = {}
    vid_seqs = []
    for end in sequence_ends(n_rows, s, f * dil, stride):
        ends = end - (s - 1 - np.arange(s)) * f * dil
        picks = []
        for e in ends:
            if e not in choice:
                choice[int(e)] = subclip_choice(valid, int(e), f, dil)
            picks.append(choice[int(e)])
        if any(p is None for p in picks):
            continue
        vid_seqs.append((np.stack(picks).astype(np.int32), ends.astype(np.int32)))
    return vid_seqs


class AffWild2VADataset:
    """Map-style dataset of NumPy arrays: {"video" [S,3,F,H,W], "audio" [S,1,M,T], "target" [S,2] (valence, arousal)}.

    ``augment`` (training) mirrors a sequence's faces at random and jitters their colours;
    the trainer reseeds NumPy every epoch, so this stays reproducible.
    """

    def __init__(self, root: str | os.PathLike, split: str, pre: Mapping[str, Any], stride: int = 1,
                 cache_dir: str | os.PathLike | None = None, limit: int | None = None, augment: bool = False,
                 progress: Callable[[int, int], None] | None = None):
        self.root, self.split, self.pre = Path(root), split, dict(pre)
        self.augment = augment
        self.videos, self.sequences, self.report = scan_split(self.root, split, self.pre, stride)
        self.mels = MelCache(Path(cache_dir) if cache_dir else self.root / DEFAULT_CACHE, self.pre)
        self._check_audio(progress)
        if limit is not None and limit < len(self.sequences):
            # evenly spaced, so every video stays represented
            keep = np.linspace(0, len(self.sequences) - 1, limit).round().astype(int)
            self.sequences = [self.sequences[i] for i in keep]
        self.unreadable_images = 0
        self._frames: dict[int, dict[int, Path]] = {}
        mean = np.asarray(self.pre["mean"], np.float32)
        std = np.asarray(self.pre["std"], np.float32)
        self._scale = (1.0 / (255.0 * std)).reshape(1, 1, 3)
        self._shift = (mean / std).reshape(1, 1, 3)

    def _check_audio(self, progress) -> None:
        """Compute (or load from the cache) every video's mel spectrogram; skip videos whose audio fails."""
        bad = set()
        for vi, v in enumerate(self.videos):
            try:
                self.mels.get(v.media)
            except DataError as exc:
                bad.add(vi)
                self.report.skip("unreadable audio", f"skipped {v.name}: {exc}")
            if progress:
                progress(vi + 1, len(self.videos))
        if bad:
            self.sequences = [s for s in self.sequences if s[0] not in bad]
            self.report.videos -= len(bad)
            self.report.sequences = len(self.sequences)
            if not self.sequences:
                raise DataError(f"no usable VA sequences in split {self.split!r} of {self.root}: "
                                + "; ".join(self.report.messages[-3:]))

    def __len__(self) -> int:
        return len(self.sequences)

    def _face(self, frames: dict[int, Path], i: int) -> np.ndarray:
        size = self.pre["frame_size"]
        path = frames.get(int(i))
        blank = np.broadcast_to(-self._shift, (size, size, 3))  # a zero image, normalised, as the reference
        if path is None:
            return blank
        try:
            img = read_face(path, size)[:, :, ::-1]
        except DataError:
            self.unreadable_images += 1
            return blank
        return img.astype(np.float32) * self._scale - self._shift

    def __getitem__(self, idx: int) -> dict[str, Any]:
        vi, ids, ends = self.sequences[idx]
        video = self.videos[vi]
        if vi not in self._frames:
            self._frames[vi] = list_frames(video.frames_dir)
        frames = self._frames[vi]
        clip = np.stack([np.stack([self._face(frames, i) for i in row]) for row in ids])  # [S, F, H, W, 3]
        if self.augment:  # per-sequence mirror and colour jitter (the reference jitters colours too)
            if np.random.random() < 0.5:
                clip = clip[:, :, :, ::-1]
            clip = clip * np.random.uniform(0.8, 1.2, 3).astype(np.float32) + np.float32(np.random.uniform(-0.3, 0.3))
        clip = np.ascontiguousarray(clip.transpose(0, 4, 1, 2, 3), dtype=np.float32)       # [S, 3, F, H, W]
        mel, fps = self.mels.get(video.media)
        sr = self.pre["sample_rate"]
        audio = np.stack([log_mel_window(mel, int(round(e / fps * sr)), self.pre) for e in ends])[:, None]
        target = video.labels[ids[:, -1]]
        return {"video": clip, "audio": audio, "target": np.ascontiguousarray(target, dtype=np.float32)}
