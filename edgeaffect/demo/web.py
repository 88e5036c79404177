"""A small web page: MJPEG video with overlays and live per-emotion charts.

Standard library only (``http.server``).  Endpoints:

    /             the page (video + bars + a rolling chart per emotion, plain JS and canvas)
    /stream.mjpg  multipart MJPEG of the annotated frames (``?source=N``: of source N, default 0)
    /frame.jpg    the newest annotated frame (``?source=N`` as above)
    /events       Server-Sent Events: one JSON record per processed frame (the JSONL schema), of every source
    /state.json   the newest record (and with several sources, ``records``: one per source), labels, counters

With several sources the page shows one tile (video, bars, chart) per source.

The page shows a camera, so every request passes its gates before it is served:
exactly one Host header (400), naming this server (403 otherwise: a DNS-rebinding
page cannot read it), the token when there is one (401), and a free worker (503
with ``Retry-After``).  Workers are a fixed number of threads; the two long-lived
streams move to a separate small cap, so a few open tabs never starve quick
requests.  Slow clients cannot hold the pool either: the whole request head must
arrive within a deadline (a header line dripped every few seconds does not reset
it, as an idle timeout would), and one address holds at most a few connections
before they are admitted (beyond them 503, or a plain close when even the
refusal lane is full).

The demo loop only swaps in the newest JPEG/record under a lock; slow browsers
skip frames rather than slow the demo down.
"""
from __future__ import annotations

import hmac
import io
import ipaddress
import json
import logging
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Callable, Sequence
from urllib.parse import parse_qs

import numpy as np

from ..errors import EdgeAffectError
from ..lazy import lazy_import
from .page import PAGE

cv2 = lazy_import("cv2", "")

log = logging.getLogger("edgeaffect.demo")

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("0.0.0.0", "::", "")
REFUSAL_LANE = 8    # threads that answer 503 while every worker is busy
REFUSAL_WAIT = 5.0  # seconds the accept loop waits for one of them before it closes a connection unanswered
REFUSAL_HEAD = 2.0  # seconds the refusal lane waits for the head of the request it refuses


class _Slot:
    """The newest frame and record of one source, and how many times it changed."""

    def __init__(self):
        self.jpeg: bytes | None = None
        self.record: dict | None = None
        self.seq = 0


class _Channel:
    """One source's view of a shared :class:`WebSink` (a sink of that source's demo; the web sink closes itself)."""

    live = True

    def __init__(self, web: "WebSink", index: int):
        self.web, self.index = web, index

    def write(self, frame: np.ndarray, record: dict | None = None) -> None:
        self.web.write(frame, record, self.index)

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class WebConfig:
    """Who may read the page and how much of the machine it may take.

    ``token`` None on a loopback address means no token; on any other address one is generated.
    """

    allow_hosts: tuple[str, ...] = ()
    token: str | None = None
    max_clients: int = 32      # worker threads for quick requests (page, frame, state)
    max_streams: int = 8       # open /stream.mjpg + /events (a browser tab holds two)
    idle_timeout: float = 10.0  # seconds a socket may sit without reading or accepting data
    head_timeout: float = 5.0   # seconds for the whole request head (request line and every header)
    max_per_client: int = 8     # connections one address may hold before they are admitted (streams not counted)
    backlog: int = 128


def parse_address(value: str) -> tuple[str, int]:
    """'127.0.0.1:8080', '[::1]:8080', ':8080' or '8080' -> (host, port); the host defaults to localhost."""
    host, _, port = value.rpartition(":") if ":" in value else ("", "", value)
    try:
        p = int(port)
    except ValueError:
        raise EdgeAffectError(f"--serve expects HOST:PORT such as 127.0.0.1:8080, got {value!r}") from None
    if not 0 <= p <= 65535:
        raise EdgeAffectError(f"port {p} out of range")
    return host.strip("[]") or "127.0.0.1", p


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (what may go without a token)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: str | None) -> str | None:
    """The name part of a Host header, lower-case: 'LocalHost:8080' -> 'localhost', '[::1]:80' -> '::1'."""
    if not header:
        return None
    header = header.strip().lower()
    if header.startswith("["):
        name, sep, _ = header[1:].partition("]")
        return name if sep else None
    return header.rsplit(":", 1)[0].rstrip(".") if header.count(":") <= 1 else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class HostCheck:
    """The Host names this server answers to: loopback names, the bound address, ``--allow-host`` names.

    Bound to every interface (0.0.0.0 or ::), any IP literal and this machine's hostname are accepted
    too: a DNS-rebinding page always arrives under a domain name, never under an address.
    """

    def __init__(self, bound: str, allow: Sequence[str] = ()):
        self.wildcard = bound in WILDCARDS
        names = [*LOOPBACK_NAMES, bound, *allow] + ([socket.gethostname()] if self.wildcard else [])
        self.names = {n.lower().strip("[]").rstrip(".") for n in names if n}

    def __call__(self, header: str | None) -> bool:
        name = host_name(header)
        return name is not None and (name in self.names or (self.wildcard and _is_ip(name)))


class _Lease:
    """One slot of a bounded pool, released exactly once (a stream hands its worker slot back early).

    ``busy`` says why a connection holds a refusal-lane slot instead of a worker: "workers" (all busy) or
    "client" (its address holds its share already); empty for a worker.
    """

    def __init__(self, release: Callable[[], None] | None = None, busy: str = ""):
        self._release, self.busy = release, busy

    def release(self) -> None:
        fn, self._release = self._release, None
        if fn is not None:
            fn()


class _PerClient:
    """How many not-yet-admitted connections each address holds; at most ``cap`` each."""

    def __init__(self, cap: int):
        self.cap, self.count, self._lock = cap, {}, threading.Lock()

    def enter(self, who: str) -> _Lease | None:
        """A slot for ``who`` (released once), or None when it holds ``cap`` already."""
        with self._lock:
            held = self.count.get(who, 0)
            if held >= self.cap:
                return None
            self.count[who] = held + 1
        return _Lease(lambda: self._leave(who))

    def _leave(self, who: str) -> None:
        with self._lock:
            held = self.count.pop(who, 1) - 1
            if held > 0:
                self.count[who] = held


class DeadlineReader(io.RawIOBase):
    """The socket read so that everything must arrive by ``deadline`` (monotonic seconds), not line by line.

    Each read waits at most until the deadline (and at most ``idle`` seconds); writes keep the idle timeout.
    """

    def __init__(self, sock: socket.socket, deadline: float, idle: float | None):
        super().__init__()
        self.sock, self.deadline, self.idle = sock, deadline, idle

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request head did not arrive in time")
        self.sock.settimeout(left if self.idle is None else min(self.idle, left))
        try:
            return self.sock.recv_into(buf)
        finally:
            self.sock.settimeout(self.idle)


class _Server(HTTPServer):
    """An HTTP server with a fixed worker pool: never more than ``max_clients`` request threads."""

    daemon_threads = True

    def __init__(self, address, handler, cfg: WebConfig):
        self.request_queue_size = cfg.backlog
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.workers = threading.BoundedSemaphore(cfg.max_clients)
        self.refusers = threading.BoundedSemaphore(REFUSAL_LANE)
        self.streams = threading.BoundedSemaphore(cfg.max_streams)
        self.per_client = _PerClient(cfg.max_per_client)
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        """A worker, else a refusal-lane thread (503), else a plain close; never a wait for a greedy address."""
        client = self.per_client.enter(client_address[0])
        if client is None:  # this address holds its share: refuse it only if the lane is free right now
            lease = _Lease(self.refusers.release, busy="client") if self.refusers.acquire(blocking=False) else None
        elif self.workers.acquire(blocking=False):
            lease = _Lease(self.workers.release)
        elif self.refusers.acquire(timeout=REFUSAL_WAIT):  # meanwhile new clients wait in the backlog
            lease = _Lease(self.refusers.release, busy="workers")
        else:  # the refusal lane itself is stuck (slow clients): close rather than stall the server
            lease = None
        if lease is None:
            if client is not None:
                client.release()
            self.shutdown_request(request)
            return
        client = client or _Lease()
        threading.Thread(target=self._work, args=(request, client_address, lease, client), daemon=True).start()

    def _work(self, request, client_address, lease: _Lease, client: _Lease) -> None:
        try:
            self.RequestHandlerClass(request, client_address, self, lease, client)
        except Exception as exc:  # one line, never a traceback on the console
            log.debug("web: %s: %s", client_address[0], exc)
        finally:
            self.shutdown_request(request)
            lease.release()
            client.release()


class WebSink:
    """Serves the page and streams what the demo publishes through :meth:`write`."""

    live = True  # also shown while a stream is down (status frames)

    def __init__(self, address: str, labels: Sequence[str], jpeg_quality: int = 80,
                 config: WebConfig | None = None, sources: Sequence[str] = ("",)):
        host, port = parse_address(address)
        cfg = config or WebConfig()
        if cfg.token is not None and not cfg.token.strip():
            raise EdgeAffectError("--token must not be empty")
        if not (cfg.head_timeout > 0 and cfg.max_per_client >= 1):
            raise EdgeAffectError("--head-timeout must be above 0 and --max-per-client at least 1")
        self.generated_token = cfg.token is None and not is_loopback(host)
        self.token = secrets.token_urlsafe(24) if self.generated_token else cfg.token
        self.config = cfg
        self.hosts = HostCheck(host, cfg.allow_hosts)
        self.labels = list(labels)
        self.quality = jpeg_quality
        self._cond = threading.Condition()
        self.sources = [str(x) for x in sources] or [""]
        self._slots = [_Slot() for _ in self.sources]
        self._seq = 0
        self._closed = False
        self._warned: set = set()
        self.clients = 0
        sink = self

        class Handler(_Handler):
            web = sink
            timeout = cfg.idle_timeout
            head_timeout = cfg.head_timeout

        try:
            self.server = _Server((host, port), Handler, cfg)
        except OSError as exc:
            raise EdgeAffectError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
        self.host, self.port = self.server.server_address[:2]
        self.cookie = f"edgeaffect_token_{self.port}"  # per port: two demos on one machine keep their own
        if not is_loopback(host):
            log.warning("web: serving on %s:%d, reachable from other machines over plain HTTP (no TLS); "
                        "only requests with the token are answered", host or "*", self.port)
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="edgeaffect-web", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The address to open, with the token when there is one."""
        host = socket.gethostname() if self.host in WILDCARDS else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def authorised(self, given: Sequence[str | None]) -> bool:
        """Constant-time comparison of each offered token with ours (True when there is none)."""
        if self.token is None:
            return True
        want = self.token.encode()
        return any(g and hmac.compare_digest(g.encode("utf-8", "replace"), want) for g in given)

    def warn_once(self, key, msg: str, *args) -> None:
        """One log line per kind of refusal and client: a hostile page cannot flood the console."""
        if key in self._warned or len(self._warned) > 256:
            log.debug(msg, *args)
        else:
            self._warned.add(key)
            log.warning(msg + " (further ones are logged at debug level)", *args)

    def channel(self, index: int) -> _Channel:
        return _Channel(self, index)

    def write(self, frame: np.ndarray, record: dict | None = None, source: int = 0) -> None:
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        with self._cond:
            slot = self._slots[source]
            if ok:
                slot.jpeg = buf.tobytes()
            if record is not None:
                slot.record = record
            self._seq += 1
            slot.seq += 1
            self._cond.notify_all()

    def wait_next(self, seq: int, timeout: float = 1.0, source: int = 0) -> tuple[int, bytes | None, dict | None]:
        """Source ``source``'s frame and record once its count differs from ``seq`` (or after ``timeout``)."""
        with self._cond:
            slot = self._slots[source]
            if slot.seq == seq and not self._closed:
                self._cond.wait_for(lambda: slot.seq != seq or self._closed, timeout)
            return slot.seq, slot.jpeg, slot.record

    def wait_records(self, seen: list[int], timeout: float = 1.0) -> list[dict]:
        """The records of every source that changed since ``seen`` (its counts, updated in place)."""
        with self._cond:
            def moved():
                return self._closed or any(s.seq != k for s, k in zip(self._slots, seen))

            self._cond.wait_for(moved, timeout)
            out = [s.record for s, k in zip(self._slots, seen) if s.seq != k and s.record is not None]
            seen[:] = [s.seq for s in self._slots]
            return out

    def state(self) -> dict:
        with self._cond:
            state = {"labels": self.labels, "record": self._slots[0].record, "seq": self._seq}
            if len(self._slots) > 1:
                state.update(sources=self.sources, records=[s.record for s in self._slots])
            return state

    def source_index(self, query: str) -> int | None:
        """``?source=N`` of a request (0 without it); None when there is no such source."""
        value = parse_qs(query).get("source", ["0"])[0]
        return int(value) if value.isdigit() and int(value) < len(self._slots) else None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    web: WebSink
    protocol_version = "HTTP/1.1"
    timeout = 10.0
    head_timeout = 5.0

    def __init__(self, request, client_address, server, lease: _Lease | None = None, client: _Lease | None = None):
        self.lease, self.client = lease or _Lease(), client or _Lease()
        self.set_cookie = False
        super().__init__(request, client_address, server)

    def setup(self):
        """The socket as usual, but read through a deadline for the whole head (see :class:`DeadlineReader`)."""
        head = self.head_timeout
        if self.lease.busy:  # the refusal lane waits only briefly for the request it refuses
            self.timeout, head = min(self.timeout, REFUSAL_HEAD), min(head, REFUSAL_HEAD)
        super().setup()
        self.rfile.close()
        self.rfile = io.BufferedReader(DeadlineReader(self.connection, time.monotonic() + head, self.timeout))

    def log_message(self, fmt, *args):  # keep the console clean; requests go to the debug log
        log.debug("web: " + fmt, *args)

    def do_GET(self):  # noqa: N802 (http.server API)
        path, _, query = self.path.partition("?")
        try:
            if self._admitted(query):
                self._route(path, query)
        except OSError:  # the client left, or sat idle past the timeout
            self.close_connection = True

    def _admitted(self, query: str) -> bool:
        """The gates (one Host, naming us; the token; a free worker within the address's share); answers refusals."""
        web, who, host, path = self.web, self.client_address[0], self.headers.get("Host"), self.path.partition("?")[0]
        if len(self.headers.get_all("Host") or ()) > 1:  # which one would a proxy or a browser have checked?
            web.warn_once(("hosts", who), "web: refused %s from %s: more than one Host header", path, who)
            self._refuse(400, "Bad Request: more than one Host header\n")
            return False
        if not web.hosts(host):
            web.warn_once(("host", host), "web: refused %s from %s: Host %r is not this server "
                          "(add --allow-host NAME to accept it)", path, who, host)
            self._refuse(403, "Forbidden: unknown Host header\n")
            return False
        from_query = parse_qs(query).get("token", [None])[0]
        if not web.authorised([from_query, self._bearer(), self._cookie()]):
            web.warn_once(("token", who), "web: refused %s from %s: missing or wrong token", path, who)
            self._refuse(401, "Unauthorized: open the URL that edgeaffect demo printed (it ends in ?token=...)\n")
            return False
        self.set_cookie = from_query is not None
        if self.lease.busy == "client":
            web.warn_once(("client", who), "web: %s holds %d connections already: answering 503 "
                          "(--max-per-client raises it)", who, web.config.max_per_client)
            self._refuse(503, "Service Unavailable: too many connections from your address\n", {"Retry-After": "1"})
            return False
        if self.lease.busy:
            web.warn_once("busy", "web: all %d workers busy: answering 503", web.config.max_clients)
            self._refuse(503, "Service Unavailable: busy, retry in a second\n", {"Retry-After": "1"})
            return False
        return True

    def _bearer(self) -> str | None:
        kind, _, value = (self.headers.get("Authorization") or "").partition(" ")
        return value.strip() if kind.lower() == "bearer" else None

    def _cookie(self) -> str | None:
        try:
            morsel = SimpleCookie(self.headers.get("Cookie") or "").get(self.web.cookie)
        except CookieError:
            return None
        return morsel.value if morsel else None

    def _route(self, path: str, query: str = "") -> None:
        web = self.web
        source = web.source_index(query)
        if path in ("/", "/index.html"):
            self._send(PAGE.encode("utf-8"), "text/html; charset=utf-8")
        elif path == "/state.json":
            self._send(json.dumps(web.state()).encode(), "application/json")
        elif path in ("/frame.jpg", "/stream.mjpg") and source is None:
            self._refuse(404, f"Not Found: sources are 0 to {len(web.sources) - 1}\n")
        elif path == "/frame.jpg":
            _, jpeg, _ = web.wait_next(-1, 0, source)
            if jpeg is None:
                self._refuse(503, "no frame yet\n", {"Retry-After": "1"})
            else:
                self._send(jpeg, "image/jpeg")
        elif path == "/stream.mjpg":
            self._stream(lambda: self._mjpeg(source))
        elif path == "/events":
            self._stream(self._events)
        else:
            self._refuse(404, "Not Found\n")

    def _refuse(self, code: int, text: str, headers: dict | None = None) -> None:
        body = text.encode()
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self._common_headers()
        self.wfile.write(body)

    def _send(self, body: bytes, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self._common_headers()
        self.wfile.write(body)

    def _common_headers(self) -> None:
        """No caching, no keep-alive (a worker serves one request, then is free), the token cookie once."""
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        if self.set_cookie:
            self.send_header("Set-Cookie", f"{self.web.cookie}={self.web.token}; Path=/; HttpOnly; SameSite=Strict")
        self.end_headers()
        self.close_connection = True

    def _stream(self, body) -> None:
        """Move from the worker pool to the stream cap for as long as the client watches."""
        if not self.server.streams.acquire(blocking=False):
            self.web.warn_once("streams", "web: %d streams open: answering 503", self.web.config.max_streams)
            self._refuse(503, "Service Unavailable: too many open streams\n", {"Retry-After": "5"})
            return
        self.lease.release()
        self.client.release()  # an admitted stream no longer counts against its address's share
        slot = _Lease(self.server.streams.release)
        try:
            body()
        finally:
            slot.release()

    def _stream_headers(self, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self._common_headers()

    def _mjpeg(self, source: int = 0) -> None:
        self._stream_headers("multipart/x-mixed-replace; boundary=frame")
        seq = -1
        self.web.clients += 1
        try:
            while not self.web._closed:
                seq, jpeg, _ = self.web.wait_next(seq, source=source)
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
        if len(self.web.sources) > 1:  # one source: the page's single tile, and the stream as before
            self.wfile.write(f"event: sources\ndata: {json.dumps(self.web.sources)}\n\n".encode())
        seen, last = [-1] * len(self.web.sources), time.monotonic()
        while not self.web._closed:
            recs = self.web.wait_records(seen)
            for rec in recs:
                self.wfile.write(f"data: {json.dumps(rec)}\n\n".encode())
            if recs:
                self.wfile.flush()
                last = time.monotonic()
            elif time.monotonic() - last > 5:
                self.wfile.write(b": keep-alive\n\n")
                self.wfile.flush()
                last = time.monotonic()
