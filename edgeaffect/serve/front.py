"""A bounded HTTP/1.1 front for Triton's HTTP server, which waits as long as a client likes for a body of any
declared length (``Content-Length: 2e9`` held a socket for over 70 s) and offers no option to bound it.

The front listens where ``edgeaffect serve`` was asked to and relays each request to Triton on a loopback port.
Before relaying it refuses a declared body over ``max_bytes`` at once (413, nothing read), a chunked body
(411: KServe clients send a length), and closes a request whose head and body have not arrived within
``timeout`` seconds of the connection or of the previous answer (keep-alive), however they trickle in.
Connections beyond ``max_connections`` get 503.  Standard library only; one upstream connection per client
connection, kept alive, so a stream of requests costs one relay hop and no new handshakes.
"""
from __future__ import annotations

import http.client
import io
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..demo.web import DeadlineReader
from ..errors import EdgeAffectError

log = logging.getLogger("edgeaffect.serve")

HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
       "transfer-encoding", "upgrade", "expect", "content-length", "host"}
"""Headers that describe one hop, not the request: never relayed (the length is set from what was read)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (for Triton's internal HTTP server)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, handler, max_connections: int):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            body = b"too many connections\n"
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
                                b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class _Relay(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "edgeaffect-serve"
    disable_nagle_algorithm = True   # a write never waits for the client's delayed ACK (it cost 40 ms an answer)
    wbufsize = 1 << 16               # an answer's headers and body leave in one send (flushed after each request)
    upstream: tuple[str, int] = ("127.0.0.1", 0)
    max_bytes = 64 << 20
    limit = 30.0

    def setup(self):
        """The socket read through a deadline that each request renews (see :class:`DeadlineReader`)."""
        self.timeout = self.limit
        super().setup()
        self.rfile.close()
        self._reader = DeadlineReader(self.connection, time.monotonic() + self.limit, self.limit)
        self.rfile = io.BufferedReader(self._reader)
        self._up: http.client.HTTPConnection | None = None

    def handle_one_request(self):
        self._reader.deadline = time.monotonic() + self.limit
        super().handle_one_request()

    def finish(self):
        if self._up is not None:
            self._up.close()
        super().finish()

    def log_message(self, fmt, *args):  # requests and timeouts go to the debug log, not the server's console
        log.debug("front: " + fmt, *args)

    def do_GET(self):  # noqa: N802 (http.server API)
        self._relay()

    def do_POST(self):  # noqa: N802
        self._relay()

    def _relay(self) -> None:
        """Check the declared body, read it under the deadline, relay it and the answer."""
        if self.headers.get("Transfer-Encoding"):
            return self._answer(411, b"send the body with a Content-Length (chunked bodies are not accepted)\n",
                                close=True)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            return self._answer(400, b"Content-Length is not a number of bytes\n", close=True)
        if length > self.max_bytes:
            return self._answer(413, f"a request body of {length} bytes is over this server's limit of "
                                     f"{self.max_bytes} (edgeaffect serve --max-request-mb)\n".encode(), close=True)
        body = self.rfile.read(length) if length else None
        if length and len(body) < length:  # the client left mid-body
            self.close_connection = True
            return None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        try:
            status, reply_headers, data = self._forward(body, headers)
        except (OSError, http.client.HTTPException) as exc:
            log.debug("front: Triton did not answer: %s", exc)
            return self._answer(502, b"the model server behind this front did not answer\n")
        return self._answer(status, data, reply_headers)

    def _forward(self, body: bytes | None, headers: dict) -> tuple[int, list, bytes]:
        """The request through the kept-alive upstream connection; once more on a fresh one if it went stale."""
        for attempt in (1, 2):
            if self._up is None:
                self._up = http.client.HTTPConnection(*self.upstream, timeout=self.limit)
                self._up.connect()
                self._up.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # headers, then body
            try:
                self._up.request(self.command, self.path, body=body, headers=headers)
                resp = self._up.getresponse()
                return resp.status, resp.getheaders(), resp.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.CannotSendRequest):
                self._up.close()
                self._up = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _answer(self, status: int, body: bytes, headers: list | None = None, close: bool = False) -> None:
        """Send one answer; ``close`` when the rest of the request was never read (the connection ends)."""
        self.close_connection = self.close_connection or close
        self.send_response(status)
        for k, v in headers or [("Content-Type", "text/plain; charset=utf-8")]:
            if k.lower() not in HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class Front:
    """The bounded front on ``host:port``, relaying to Triton's HTTP server on loopback ``upstream_port``."""

    def __init__(self, host: str, port: int, upstream_port: int, max_bytes: int = 64 << 20, timeout: float = 30.0,
                 max_connections: int = 64):
        if max_bytes < 1 or not timeout > 0:
            raise EdgeAffectError("--max-request-mb and --request-timeout must be above 0")
        handler = type("Relay", (_Relay,), {"upstream": ("127.0.0.1", upstream_port), "max_bytes": max_bytes,
                                            "limit": float(timeout)})
        try:
            self.server = _Server((host, port), handler, max_connections)
        except OSError as exc:
            raise EdgeAffectError(f"cannot serve on {host}:{port} ({exc.strerror or exc}): another server "
                                  f"holds it? choose another with --port") from None
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="edgeaffect-serve-front", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
