"""A small web page on localhost: MJPEG video with overlays and live per-emotion charts.

Standard library only (``http.server`` on a thread).  Endpoints:

    /             the page (video + bars + a rolling chart per emotion, plain JS and canvas)
    /stream.mjpg  multipart MJPEG of the annotated frames
    /frame.jpg    the newest annotated frame
    /events       Server-Sent Events: one JSON record per processed frame (the JSONL schema)
    /state.json   the newest record, labels and counters

The demo loop only swaps in the newest JPEG/record under a lock; slow browsers
skip frames rather than slow the demo down.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Sequence

import numpy as np

from ..errors import EdgeAffectError

log = logging.getLogger("edgeaffect.demo")


def parse_address(value: str) -> tuple[str, int]:
    """'127.0.0.1:8080', ':8080' or '8080' -> (host, port); the host defaults to localhost."""
    host, _, port = value.rpartition(":") if ":" in value else ("", "", value)
    try:
        p = int(port)
    except ValueError:
        raise EdgeAffectError(f"--serve expects HOST:PORT such as 127.0.0.1:8080, got {value!r}") from None
    if not 0 <= p <= 65535:
        raise EdgeAffectError(f"port {p} out of range")
    return host or "127.0.0.1", p


class WebSink:
    """Serves the page and streams what the demo publishes through :meth:`write`."""

    live = True  # also shown while a stream is down (status frames)

    def __init__(self, address: str, labels: Sequence[str], jpeg_quality: int = 80):
        host, port = parse_address(address)
        self.labels = list(labels)
        self.quality = jpeg_quality
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._record: dict | None = None
        self._seq = 0
        self._closed = False
        self.clients = 0
        sink = self

        class Handler(_Handler):
            web = sink

        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise EdgeAffectError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
        self.server.daemon_threads = True
        self.host, self.port = self.server.server_address[:2]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="edgeaffect-web", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def write(self, frame: np.ndarray, record: dict | None = None) -> None:
        import cv2

        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        with self._cond:
            if ok:
                self._jpeg = buf.tobytes()
            if record is not None:
                self._record = record
            self._seq += 1
            self._cond.notify_all()

    def wait_next(self, seq: int, timeout: float = 1.0) -> tuple[int, bytes | None, dict | None]:
        with self._cond:
            if self._seq == seq and not self._closed:
                self._cond.wait(timeout)
            return self._seq, self._jpeg, self._record

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    web: WebSink
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep the console clean; requests go to the debug log
        log.debug("web: " + fmt, *args)

    def do_GET(self):  # noqa: N802 (http.server API)
        path = self.path.split("?", 1)[0]
        try:
            if path in ("/", "/index.html"):
                from .page import PAGE

                self._send(PAGE.encode("utf-8"), "text/html; charset=utf-8")
            elif path == "/state.json":
                _, _, rec = self.web.wait_next(-1, 0)
                body = {"labels": self.web.labels, "record": rec, "seq": self.web._seq}
                self._send(json.dumps(body).encode(), "application/json")
            elif path == "/frame.jpg":
                _, jpeg, _ = self.web.wait_next(-1, 0)
                if jpeg is None:
                    self.send_error(503, "no frame yet")
                else:
                    self._send(jpeg, "image/jpeg")
            elif path == "/stream.mjpg":
                self._mjpeg()
            elif path == "/events":
                self._events()
            else:
                self.send_error(404)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send(self, body: bytes, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _stream_headers(self, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _mjpeg(self) -> None:
        self._stream_headers("multipart/x-mixed-replace; boundary=frame")
        seq = -1
        self.web.clients += 1
        try:
            while not self.web._closed:
                seq, jpeg, _ = self.web.wait_next(seq)
                if jpeg is None:
                    continue
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                 + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                self.wfile.flush()
        finally:
            self.web.clients -= 1

    def _events(self) -> None:
        self._stream_headers("text/event-stream")
        self.wfile.write(f"event: labels\ndata: {json.dumps(self.web.labels)}\n\n".encode())
        seq, last = -1, time.monotonic()
        while not self.web._closed:
            seq, _, rec = self.web.wait_next(seq)
            if rec is not None:
                self.wfile.write(f"data: {json.dumps(rec)}\n\n".encode())
                self.wfile.flush()
                last = time.monotonic()
            elif time.monotonic() - last > 5:
                self.wfile.write(b": keep-alive\n\n")
                self.wfile.flush()
                last = time.monotonic()
