"""Assemble a demo from command-line choices: model runner, detector, source, audio, sinks."""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..data.detectors import DETECTORS, load_custom_detector, resolve_detector
from ..data.detectors import make_detector as make
from ..data.faces import HaarFaceDetector
from ..data.feeds import audio_input
from ..data.media import has_audio
from ..errors import EdgeAffectError
from ..lazy import lazy_import
from ..precision import physical_cores
from ..spec import ModelSpec
from .pipeline import Demo, DemoConfig, Stats
from .runner import open_model
from .sinks import JsonlSink, Mp4Sink, WindowSink, gui_available
from .sources import FileAudio, MicAudio, open_source

cv2 = lazy_import("cv2", "")

log = logging.getLogger("edgeaffect.demo")


@dataclass
class Session:
    demo: Demo
    source: object
    spec: ModelSpec
    runtime_name: str
    sinks: list = field(default_factory=list)
    web: object = None
    runner: object = None

    def describe(self) -> str:
        """What runs, in one line: the model on which runtime and precision, the face detector, the audio."""
        demos = getattr(self.demo, "demos", [self.demo])
        det = getattr(demos[0].detector, "detector", demos[0].detector)        # through _DetectorPool
        name = getattr(det, "name", type(det).__name__)
        where = f" through {det.runtime}" if getattr(det, "runtime", None) else ""
        audio = demos[0].audio
        heard = ("none (a video-only model)" if audio_input(self.spec) is None else
                 "silence (the source has no audio track)" if audio is None else
                 "the microphone" if type(audio).__name__ == "MicAudio" else "the file's track")
        precision = getattr(self.runner, "executed_precision", None) or getattr(self.runner, "precision", "fp32")
        why = getattr(self.runner, "chosen_because", "")
        return (f"{self.spec.name} on {self.runtime_name} {precision}{f' ({why})' if why else ''}; "
                f"faces: {name}{where}; audio: {heard}")

    def run(self, stop: threading.Event | None = None) -> Stats:
        """Run to the end (or ``stop``); sinks and the runner are closed on every way out."""
        try:
            return self.demo.run(self.source, stop)
        finally:
            errors = []
            for s in self.sinks:
                try:
                    s.close()
                except Exception as exc:  # keep closing the others: each file must be finalised
                    errors.append(exc)
            close = getattr(self.runner, "close", None)
            if close:
                close()
            if errors:
                raise errors[0]


def build_session(source: str | Sequence[str], model: Path | None = None, runtime: str = "auto",
                  precision: str = "auto", window: bool = False, output: Path | None = None,
                  jsonl: Path | None = None, serve: str | None = None, detector=None, detect_every: int = 0,
                  max_faces: int = 4, smoothing: float = 0.6, realtime: bool = False, loop: bool = False,
                  max_frames: int | None = None, folder_fps: float = 10.0, reconnect_retries: int | None = 10,
                  sync: bool | None = None, mode: str = "auto", reconnect_delay: float = 0.5, audio: str = "auto",
                  verify: bool = True, src=None, runner=None, web_config=None) -> Session:
    """``src``/``runner``/``detector`` (also a list several sources share) may be given directly (tests,
    embedding); otherwise they are opened.  ``source`` may be a list: several sources share the model and
    one web page, each with its own tracking and ``--output``/``--jsonl`` file (:func:`per_source`); ``src``
    then is a list too.  ``mode`` "auto" runs files played at full speed in sync mode (every frame gets its
    own prediction), cameras, streams and ``realtime`` playback asynchronously; ``sync`` overrides it.
    ``audio`` (audio-visual models): "auto" = the file's track, "mic" or "mic:DEVICE" = a microphone.
    OpenCV is set to one thread for the process: each stage already runs on its own thread beside the others,
    and OpenCV's pool only adds hand-offs to the small resizes (126-147 FPS at full speed with one thread,
    112-121 with its default; benchmarks/results/2026-12-07-sources-per-box-priorities-amd-epyc.md).
    """
    cv2.setNumThreads(1)
    names = [source] if isinstance(source, (str, Path)) else [str(x) for x in source]
    many = len(names) > 1
    srcs = (list(src) if many else [src]) if src is not None else [None] * len(names)
    if many:
        output, jsonl = (None if p is None else [per_source(p, i, len(names)) for i in range(len(names))]
                         for p in (output, jsonl))
    check_audio_choice(audio)  # before anything is opened, whether or not the model takes audio
    window = _check_window(window, output is None and jsonl is None and serve is None)
    if runner is None:
        runner, spec = open_model(model, runtime, precision, verify=verify, batch=len(names))
    else:
        spec = runner.spec
    _open_sources(names, srcs, loop, folder_fps)
    audios = [source_audio(name, spec, audio) for name in names]
    detector = _detectors(detector, len(names))
    if sync is None:
        sync = mode == "sync" or (mode == "auto" and not any(getattr(x, "live", False) for x in srcs) and not realtime)
    cfg = DemoConfig(detect_every=detect_every, max_faces=max_faces, smoothing=smoothing, realtime=realtime,
                     max_frames=max_frames, reconnect_retries=reconnect_retries, sync=sync,
                     reconnect_delay=reconnect_delay)
    sinks, web, demos = [], None, []
    try:
        if serve is not None:
            from .web import WebSink

            web = WebSink(serve, spec.labels, config=web_config, sources=names)  # a web.WebConfig: hosts, token, limits
            sinks.append(web)
        for i, name in enumerate(names):
            own = _source_sinks(srcs[i], output[i] if many and output else output,
                                jsonl[i] if many and jsonl else jsonl, window, name if many else None, name)
            sinks += own
            if web is not None:
                own.insert(len(own) - window, web.channel(i) if many else web)
            demos.append(Demo(runner, spec, detector, cfg, own, audio=audios[i], source_id=i if many else None))
    except BaseException:
        for x in sinks:
            x.close()
        raise
    if many:
        from .multi import MultiDemo
    demo, where = (MultiDemo(demos, names), srcs) if many else (demos[0], srcs[0])
    return Session(demo, where, spec, getattr(runner, "name", runtime), sinks, web, runner)


def _open_sources(names: list[str], srcs: list, loop: bool, folder_fps: float) -> None:
    """Open the sources not given as objects (in place); a failure names the source when there are several.
    A file decodes with one FFmpeg thread: decoding runs beside the detector and the model (or the other
    sources), and one thread costs 15-25 % less CPU per frame than FFmpeg's one per core."""
    many = len(names) > 1
    for i, name in enumerate(names):
        if srcs[i] is None:
            try:
                srcs[i] = open_source(name, loop=loop, folder_fps=folder_fps, decode_threads=1)
            except EdgeAffectError as exc:
                raise EdgeAffectError(f"source {i} ({name}): {exc}" if many else str(exc)) from exc


def _detectors(detector, n_sources: int):
    """The detector of one source, or the pool several share (a name is built into detectors here)."""
    if detector is None or isinstance(detector, str):
        # one detector per source up to the cores but one: the model keeps a core (on 2 cores a second
        # detector made predictions older, benchmarks/results/2026-12-02-demo_detector_pool.md)
        n = max(1, min(n_sources, physical_cores() - 1)) if n_sources > 1 else 1
        detectors = make_detectors(detector or "auto", n)
    else:
        detectors = list(detector) if isinstance(detector, (list, tuple)) else [detector]
    return _DetectorPool(detectors) if n_sources > 1 else detectors[0]


def per_source(path: Path, i: int, n: int) -> Path:
    """Source ``i``'s file for an ``--output``/``--jsonl`` given once for ``n`` sources: ``out.mp4`` -> ``out.0.mp4``."""
    path = Path(path)
    if not path.suffix or not path.stem:
        raise EdgeAffectError(f"{path}: with {n} sources each gets its own file (NAME.0.EXT, NAME.1.EXT, ...): "
                              f"give a name with an extension, such as {path.name or 'out'}.mp4")
    return path.with_name(f"{path.stem}.{i}{path.suffix}")


def _check_window(window: bool, nothing_else: bool) -> bool:
    """Whether a window can open; without one, a run that has no other output is refused."""
    if window and not gui_available():
        if nothing_else:
            raise EdgeAffectError("this OpenCV build has no GUI support (opencv-python-headless): "
                                  "use --headless with --output/--jsonl, or --serve 127.0.0.1:8080 for a web page")
        log.warning("no GUI support in this OpenCV build: running without a window")
        return False
    return window


def _source_sinks(src, output, jsonl, window: bool, title: str | None, name: str | None = None) -> list:
    """One source's files and window (its web tile is added by the caller); closed again if one fails.
    The ``--output`` of a file source carries that file's audio track."""
    sinks: list = []
    try:
        if output is not None:
            audio_from = name if name is not None and not getattr(src, "live", True) and Path(name).is_file() else None
            sinks.append(Mp4Sink(output, lambda: getattr(src, "fps", 30.0) or 30.0, audio_from=audio_from))
        if jsonl is not None:
            sinks.append(JsonlSink(jsonl))
        if window:
            sinks.append(WindowSink(f"edgeaffect demo: {title}") if title else WindowSink())
    except BaseException:
        for s in sinks:
            s.close()
        raise
    return sinks


def source_audio(source: str, spec: ModelSpec, choice: str = "auto"):
    """The audio feed of an audio-visual model for this source (``choice``: auto, mic, mic:DEVICE); None for
    video-only models. Also what :class:`edgeaffect.predict.Predictor` hears."""
    return _open_audio(source, spec, FileAudio, choice) if audio_input(spec) is not None else None


class _DetectorPool:
    """Face detectors shared by several sources' detection threads, each used by one call at a time.

    Live sources detect on their own threads; with several detectors (a named detector is built that many
    times: each MTCNN holds its own compiled nets) they detect side by side instead of queueing on one.
    Waiting threads get a detector in the order they asked (first come, first served): with more sources
    than detectors an unfair hand-over left some sources undetected, without a face, for seconds.
    """

    def __init__(self, detectors: list):
        self.detector = detectors[0]          # what describe() names
        self.size = len(detectors)
        self._free: list = list(detectors)
        self._waiting: deque = deque()        # one (event, slot) per waiting thread, oldest first
        self._lock = threading.Lock()
        self._local = threading.local()

    def detect(self, frame):
        d = self._take()
        t0 = time.perf_counter()
        try:
            return d.detect(frame)
        finally:
            self._local.seconds = time.perf_counter() - t0   # the call alone, not the wait for a free detector
            self._give(d)

    def _take(self):
        with self._lock:
            if self._free:
                return self._free.pop()
            turn = (threading.Event(), [])
            self._waiting.append(turn)
        turn[0].wait()
        return turn[1][0]

    def _give(self, d) -> None:
        with self._lock:
            if not self._waiting:
                self._free.append(d)
                return
            event, slot = self._waiting.popleft()
        slot.append(d)
        event.set()

    @property
    def last_seconds(self) -> float | None:
        """This thread's last detection time without the wait (what ``--bench`` reports as detect)."""
        return getattr(self._local, "seconds", None)


def make_detectors(name: str = "auto", n: int = 1) -> list:
    """``n`` detectors of a named kind (see :func:`make_detector`), the fallback said once; a
    ``package.module:Class`` detector is built once (nothing says it can run twice at once)."""
    if name not in DETECTORS:
        return [_custom_detector(name)]
    resolved = resolve_detector(name, log.warning)
    if resolved == "haar":
        return [HaarFaceDetector(scale_factor=1.2, max_side=320) for _ in range(n)]   # the demo's faster cascade
    return [make(resolved, threads=1) for _ in range(n)]


def make_detector(name: str = "auto"):
    """``auto`` (BlazeFace full range where ONNX Runtime or OpenVINO is installed, else OpenCV Haar, said
    once), ``blazeface``, ``blazeface-short``, ``mtcnn``, ``haar``, or ``package.module:Class`` of any object with ``detect(frame_bgr) -> [(x, y, w, h), ...]``
    (largest first)."""
    return make_detectors(name, 1)[0]


def _custom_detector(name: str):
    return load_custom_detector(name)


def check_audio_choice(choice: str) -> None:
    if choice != "auto" and choice != "mic" and not choice.startswith("mic:"):
        raise EdgeAffectError(f"--audio takes auto, mic or mic:DEVICE, not {choice!r}")


def _open_audio(source: str, spec: ModelSpec, file_audio, choice: str = "auto"):
    """The source file's audio track (or a microphone) for audio-visual models; silence, with a warning, when none."""
    sr = int(spec.preprocessing.get("sample_rate", 16000))
    if choice == "mic" or choice.startswith("mic:"):
        device = choice.partition(":")[2] or None
        return MicAudio(sr, int(device) if device and device.isdigit() else device)
    check_audio_choice(choice)
    p = Path(str(source))
    if p.is_file() and has_audio(p):
        return file_audio(p, sr, str(spec.preprocessing.get("resample", "pyav")))
    log.warning("model %s takes audio but %s has no audio track: feeding silence", spec.name, source)
    return None
