"""A model served by Triton Inference Server (``edgeaffect serve``), behind the same ``infer(dict) -> dict``.

It speaks Triton's KServe v2 HTTP protocol with the binary-tensor extension over the standard library's
``http.client``: no tritonclient, no gevent, any numpy, and one keep-alive connection per calling thread
(the demo calls from its inference worker, the load benchmark from many threads).

The served model's :class:`ModelSpec` (labels, preprocessing) comes from the companion model
``edgeaffect-spec`` that ``edgeaffect serve`` binds beside it, so a client needs no model file.

Failures: a request that takes longer than ``timeout`` seconds, or a server that cannot be reached,
either raises (``on_late="raise"``, the default) or is dropped (``on_late="drop"``, what the demo uses):
``infer`` then returns outputs with batch 0, which the demo treats as no prediction for those faces,
so a slow or restarting server never stalls the video.  After a failure the next attempts wait with
exponential backoff (``backoff`` doubling up to ``max_backoff`` seconds); calls in between drop at once.
"""
from __future__ import annotations

import http.client
import json
import re
import threading
import time
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

import numpy as np

from ...errors import EdgeAffectError
from ...precision import check_precisions
from ...spec import ModelSpec, TensorSpec
from ..base import Runtime, symbolic_shape
from ..registry import RuntimeEntry, register_runtime

SPEC_MODEL = "edgeaffect-spec"
"""The companion model ``edgeaffect serve`` binds: no inputs, one BYTES output holding the spec JSON."""

_DTYPES = {"FP32": "float32", "FP16": "float16", "FP64": "float64", "INT64": "int64", "INT32": "int32",
           "INT16": "int16", "INT8": "int8", "UINT8": "uint8", "BOOL": "bool"}
_TRITON = {v: k for k, v in _DTYPES.items()}


def is_server_url(path: Any) -> bool:
    return isinstance(path, str) and path.split("://", 1)[0] in ("http", "https") and "://" in path


def parse_server_url(url: str) -> tuple[str, str, int, str | None]:
    """``http://HOST:PORT[/MODEL]`` -> (scheme, host, port, model name or None)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EdgeAffectError(f"--server must look like http://HOST:PORT[/MODEL], got {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 8000)
    except ValueError:
        raise EdgeAffectError(f"--server {url!r}: the port is not a number in 1..65535") from None
    model = parts.path.strip("/") or None
    return parts.scheme, parts.hostname, port, model


class ServerUnavailable(EdgeAffectError):
    """The server did not answer in time (late, down, restarting)."""


class TritonRuntime(Runtime):
    """Client of a model served by ``edgeaffect serve``; ``path`` is the server URL."""

    name = "triton"

    def __init__(self, path: str, spec: ModelSpec | None = None, **options: Any):
        self.url = str(path)
        self.scheme, self.host, self.port, self.model = parse_server_url(self.url)
        self.path = Path(self.model or "server")  # what messages and repr call it
        self.options = dict(options)
        self.timeout = float(options.get("timeout", 2.0))
        self.on_late = options.get("on_late", "raise")
        if self.on_late not in ("raise", "drop"):
            raise EdgeAffectError(f"on_late must be 'raise' or 'drop', got {self.on_late!r}")
        self.backoff, self.max_backoff = float(options.get("backoff", 0.25)), float(options.get("max_backoff", 8.0))
        self._closed = False
        self._inputs: list[TensorSpec] = []
        self._outputs: list[TensorSpec] = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self._delay, self._retry_at = 0.0, 0.0
        self.counts = {"requests": 0, "ok": 0, "late": 0, "unreachable": 0, "skipped_backoff": 0, "reconnects": 0}
        self.spec = spec
        self.precision = "fp32"
        self._load()
        self._check_spec_names()

    # --- Runtime hooks ------------------------------------------------------------------------
    def _load(self) -> None:
        """Wait (``connect_timeout`` s) for the server, then read the served model's name, spec and tensors."""
        self._wait_ready(float(self.options.get("connect_timeout", 10.0)))
        served = self._served()
        self.model = self.model or served["model"]
        if self.spec is None:
            self.spec = ModelSpec.from_dict(served["spec"])
        self.precision = check_precisions([served.get("precision") or "fp32"])[0]
        meta = self._get_json(f"/v2/models/{self.model}")
        self._inputs = [_tensor(t) for t in meta["inputs"]]
        self._outputs = [_tensor(t) for t in meta["outputs"]]
        self.path = Path(self.model)

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            self.counts["requests"] += 1
            waiting = time.monotonic() < self._retry_at
            if waiting:
                self.counts["skipped_backoff"] += 1
        if waiting:
            return self._late(feeds, "skipped_backoff", None)
        body, headers = _encode(feeds, [t.name for t in self._outputs])
        try:
            status, resp_headers, data = self._post(f"/v2/models/{self.model}/infer", body, headers)
        except TimeoutError as exc:
            return self._late(feeds, "late", exc)
        except (OSError, http.client.HTTPException) as exc:
            return self._late(feeds, "unreachable", exc)
        if status != 200:
            raise EdgeAffectError(f"triton server {self.host}:{self.port} refused the request ({status}): "
                                  f"{_error_text(data)}")
        with self._lock:
            self.counts["ok"] += 1
            self._delay = 0.0
        return _decode(resp_headers, data)

    def _close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "server": f"{self.scheme}://{self.host}:{self.port}", "counts": dict(self.counts)}

    def __repr__(self) -> str:
        return f"<TritonRuntime {self.model} at {self.host}:{self.port}{' closed' if self._closed else ''}>"

    # --- failure policy -----------------------------------------------------------------------
    def _late(self, feeds: Mapping[str, np.ndarray], why: str, exc: BaseException | None) -> dict[str, np.ndarray]:
        """Count the failure, back off, then raise or answer with empty (batch 0) outputs."""
        self._drop_connection()
        with self._lock:
            if why != "skipped_backoff":
                self.counts[why] += 1
                self._delay = min(self.max_backoff, max(self.backoff, self._delay * 2))
                self._retry_at = time.monotonic() + self._delay
        if self.on_late == "raise":
            what = "did not answer within" if why == "late" else "could not be reached within"
            raise ServerUnavailable(f"triton server {self.host}:{self.port} {what} {self.timeout:g} s"
                                    + (f" ({exc})" if exc else " (backing off after a failure)"))
        return {t.name: np.zeros((0, *[d if isinstance(d, int) else 0 for d in t.shape[1:]]), t.np_dtype)
                for t in self._outputs}

    # --- HTTP ---------------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            conn = self._local.conn = cls(self.host, self.port, timeout=self.timeout)
            with self._lock:
                self.counts["reconnects"] += getattr(self._local, "opened", 0) > 0
            self._local.opened = getattr(self._local, "opened", 0) + 1
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def _post(self, route: str, body: bytes | None, headers: dict[str, str], method: str = "POST"):
        """One request; once more on a fresh connection when a kept-alive one turns out closed by the server
        (the serve front closes connections idle past its request timeout)."""
        for attempt in (1, 2):
            reused = getattr(self._local, "conn", None) is not None
            conn = self._connection()
            try:
                conn.request(method, route, body=body, headers=headers)
                resp = conn.getresponse()
                return resp.status, dict(resp.getheaders()), resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._drop_connection()
                if not reused or attempt == 2:
                    raise
            except BaseException:
                self._drop_connection()
                raise
        raise AssertionError("unreachable")

    def _get_json(self, route: str) -> dict:
        status, _, data = self._post(route, None, {}, method="GET")
        if status != 200:
            raise EdgeAffectError(f"triton server {self.host}:{self.port}{route}: {status} {_error_text(data)}")
        return json.loads(data)

    def _wait_ready(self, limit: float) -> None:
        """Poll ``/v2/health/ready`` until it answers 200, for at most ``limit`` seconds."""
        end, last = time.monotonic() + limit, "no answer"
        while True:
            try:
                status, _, _ = self._post("/v2/health/ready", None, {}, method="GET")
                if status == 200:
                    return
                last = f"not ready ({status})"
            except (OSError, http.client.HTTPException) as exc:
                last = str(exc) or type(exc).__name__
            if time.monotonic() >= end:
                raise EdgeAffectError(f"no triton server ready at {self.host}:{self.port} after {limit:g} s ({last}); "
                                      f"start one with `edgeaffect serve RUN --port {self.port}`")
            time.sleep(0.2)

    def _served(self) -> dict:
        """What ``edgeaffect serve`` says it serves: {"model", "spec", "precision"}."""
        body, headers = _encode({}, ["spec"])
        status, resp_headers, data = self._post(f"/v2/models/{SPEC_MODEL}/infer", body, headers)
        if status != 200:
            raise EdgeAffectError(f"{self.host}:{self.port} serves no {SPEC_MODEL} model ({status}): is it a server "
                                  f"started with `edgeaffect serve`? {_error_text(data)}")
        raw = _decode(resp_headers, data)["spec"]
        return json.loads(raw.reshape(-1)[0])


def _tensor(meta: Mapping[str, Any]) -> TensorSpec:
    dtype = _DTYPES.get(meta["datatype"])
    if dtype is None:
        raise EdgeAffectError(f"tensor {meta['name']!r} has Triton type {meta['datatype']}, which no model of ours uses")
    return TensorSpec(meta["name"], symbolic_shape([int(d) for d in meta["shape"]]), dtype)


def _encode(feeds: Mapping[str, np.ndarray], outputs: list[str]) -> tuple[bytes, dict[str, str]]:
    """The v2 request: a JSON header then each input's raw bytes (binary-tensor extension)."""
    arrays = {n: np.ascontiguousarray(a) for n, a in feeds.items()}
    header = {"inputs": [{"name": n, "shape": list(a.shape), "datatype": _TRITON[str(a.dtype)],
                          "parameters": {"binary_data_size": a.nbytes}} for n, a in arrays.items()],
              "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in outputs]}
    head = json.dumps(header).encode()
    body = b"".join([head, *(a.tobytes() for a in arrays.values())])
    return body, {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))}


def _decode(headers: Mapping[str, str], data: bytes) -> dict[str, np.ndarray]:
    """The v2 response: JSON header (its length in a header) then each binary output in order."""
    length = next((v for k, v in headers.items() if k.lower() == "inference-header-content-length"), None)
    head_len = int(length) if length is not None else len(data)
    header, offset, out = json.loads(data[:head_len]), head_len, {}
    for o in header["outputs"]:
        shape = [int(d) for d in o["shape"]]
        if "data" in o:  # sent as JSON (a server that ignored the binary request)
            raw = np.asarray(o["data"], object if o["datatype"] == "BYTES" else _DTYPES[o["datatype"]])
            out[o["name"]] = raw.reshape(shape)
            continue
        size = int(o["parameters"]["binary_data_size"])
        chunk, offset = data[offset:offset + size], offset + size
        out[o["name"]] = _bytes_tensor(chunk, shape) if o["datatype"] == "BYTES" else \
            np.frombuffer(chunk, _DTYPES[o["datatype"]]).reshape(shape)
    return out


def _bytes_tensor(chunk: bytes, shape: list[int]) -> np.ndarray:
    """Triton's BYTES layout: each element is a 4-byte little-endian length, then that many bytes."""
    items, i = [], 0
    while i < len(chunk):
        n = int.from_bytes(chunk[i:i + 4], "little")
        items.append(chunk[i + 4:i + 4 + n])
        i += 4 + n
    return np.array(items, dtype=object).reshape(shape)


def _error_text(data: bytes) -> str:
    """The server's error in one line: PyTriton sends the model's whole traceback, whose last line says it."""
    try:
        text = str(json.loads(data).get("error", data[:200]))
    except (ValueError, AttributeError):
        text = data[:200].decode("utf-8", "replace")
    text = text.split("\nAt:\n")[0]      # the Python backend stub's own stack follows the model's traceback
    last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), text)
    return re.sub(r"^(?:[A-Za-z_]\w*\.)+[A-Za-z_]\w*: ", "", last)[:300]   # the exception's dotted type


ENTRY = register_runtime(RuntimeEntry(
    "triton", TritonRuntime, "serve", (), (),
    "a model served by Triton Inference Server (`edgeaffect serve`), over HTTP", remote=True, order=90))
