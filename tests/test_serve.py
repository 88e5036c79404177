"""``edgeaffect serve`` (Triton via PyTriton) and its client runtime, ``demo --server``.

The client's protocol and failure policy run against a small stand-in HTTP server (fast, no Triton).
The rest starts the real Triton server from the serve env (``make serve-env``) on a free loopback port,
sends real requests (tritonclient and our runtime), runs the demo against it and stops it with SIGTERM;
it is skipped, with the reason, where that env cannot be made or cannot serve on this machine.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from edgeaffect.errors import EdgeAffectError
from edgeaffect.runtimes import triton as tr
from edgeaffect.spec import ModelSpec, TensorSpec

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
SPEC = ModelSpec("tiny-face", "expr", (TensorSpec("face", ("B", 1, 64, 64)),), (TensorSpec("logits", ("B", 7)),),
                 LABELS, activation="softmax",
                 preprocessing={"face_size": 64, "color": "GRAY", "scale": "1/255", "face_margin": 0.1})


# ----------------------------------------------------------------------------- no server needed

def test_server_urls_and_the_runtime_table(tmp_path):
    from edgeaffect.runtimes.registry import discover_artifacts, get_runtime, list_runtimes, load

    assert tr.parse_server_url("http://127.0.0.1:9000/eri") == ("http", "127.0.0.1", 9000, "eri")
    assert tr.parse_server_url("http://localhost") == ("http", "localhost", 8000, None)
    for bad in ("ftp://x:1", "http://:80", "http://h:99999"):
        with pytest.raises(EdgeAffectError, match="--server"):
            tr.parse_server_url(bad)
    assert "triton" not in list_runtimes() and "triton" in list_runtimes(remote=True)
    assert get_runtime("triton").remote and not get_runtime("triton").missing()
    (tmp_path / "model.onnx").write_bytes(b"")
    assert all(a.runtime != "triton" for a in discover_artifacts(tmp_path))     # no files, never discovered
    with pytest.raises(EdgeAffectError, match="opens files, not the server URL"):
        load("http://127.0.0.1:1", runtime="onnxruntime")


def test_binary_tensor_encoding_round_trips():
    feeds = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([[1], [2]], np.int64)}
    body, headers = tr._encode(feeds, ["y"])
    n = int(headers["Inference-Header-Content-Length"])
    head = json.loads(body[:n])
    assert [i["name"] for i in head["inputs"]] == ["a", "b"] and head["inputs"][1]["datatype"] == "INT64"
    assert body[n:] == feeds["a"].tobytes() + feeds["b"].tobytes()
    # a response in the same layout, with a BYTES output (4-byte length prefixes) between two numeric ones
    strings = b"".join(len(s).to_bytes(4, "little") + s for s in (b"ab", b"xyz"))
    outs = [("a", "FP32", [2, 3], feeds["a"].tobytes()), ("s", "BYTES", [2], strings), ("b", "INT64", [2, 1], feeds["b"].tobytes())]
    rhead = json.dumps({"outputs": [{"name": nm, "datatype": dt, "shape": sh, "parameters": {"binary_data_size": len(raw)}}
                                    for nm, dt, sh, raw in outs]}).encode()
    got = tr._decode({"Inference-Header-Content-Length": str(len(rhead))}, rhead + b"".join(o[3] for o in outs))
    np.testing.assert_array_equal(got["a"], feeds["a"])
    np.testing.assert_array_equal(got["b"], feeds["b"])
    assert list(got["s"]) == [b"ab", b"xyz"]


class _StandIn(BaseHTTPRequestHandler):
    """Answers like ``edgeaffect serve`` for SPEC; its infer doubles the input, after ``delay`` seconds."""

    delay = 0.0

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes, headers: dict | None = None):
        self.send_response(status)
        for k, v in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/v2/health/ready":
            return self._send(200, b"")
        meta = {"inputs": [{"name": "face", "datatype": "FP32", "shape": [-1, 1, 64, 64]}],
                "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 7]}]}
        self._send(200, json.dumps(meta).encode())

    def do_POST(self):
        data = self.rfile.read(int(self.headers["Content-Length"]))
        n = int(self.headers["Inference-Header-Content-Length"])
        if tr.SPEC_MODEL in self.path:
            raw = json.dumps({"model": "tiny-face", "spec": SPEC.to_dict(), "precision": "fp32"}).encode()
            return self._reply([("spec", "BYTES", [1], len(raw).to_bytes(4, "little") + raw)])
        time.sleep(type(self).delay)
        head = json.loads(data[:n])
        x = np.frombuffer(data[n:], np.float32).reshape(head["inputs"][0]["shape"])
        y = np.repeat(x.mean((1, 2, 3))[:, None] * 2, 7, 1).astype(np.float32)
        self._reply([("logits", "FP32", list(y.shape), y.tobytes())])

    def _reply(self, outs):
        head = json.dumps({"outputs": [{"name": nm, "datatype": dt, "shape": sh, "parameters": {"binary_data_size": len(raw)}}
                                       for nm, dt, sh, raw in outs]}).encode()
        self._send(200, head + b"".join(o[3] for o in outs), {"Inference-Header-Content-Length": str(len(head))})


@pytest.fixture
def stand_in():
    handler = type("Handler", (_StandIn,), {"delay": 0.0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_client_runtime_reads_the_spec_and_infers(stand_in):
    import edgeaffect

    _, url = stand_in
    with edgeaffect.load(url) as rt:
        assert rt.name == "triton" and rt.model == "tiny-face" and rt.spec.labels == LABELS
        assert [t.shape for t in rt.inputs] == [("B", 1, 64, 64)]
        x = np.full((3, 1, 64, 64), 0.25, np.float32)
        np.testing.assert_allclose(rt.infer({"face": x})["logits"], np.full((3, 7), 0.5), rtol=1e-6)
        with pytest.raises(EdgeAffectError, match="dtype"):        # validated before it leaves the client
            rt.infer({"face": x.astype(np.float64)})
        assert rt.counts["ok"] == 1 and rt.counts["requests"] == 1


def test_a_late_answer_is_dropped_then_backed_off_or_raised(stand_in):
    import edgeaffect

    handler, url = stand_in
    x = np.zeros((2, 1, 64, 64), np.float32)
    rt = edgeaffect.load(url, on_late="drop", timeout=0.2, backoff=60.0)
    handler.delay = 0.6
    out = rt.infer({"face": x})
    assert out["logits"].shape == (0, 7)                 # no prediction rather than a stalled caller
    assert rt.counts["late"] == 1
    handler.delay = 0.0
    assert rt.infer({"face": x})["logits"].shape == (0, 7)       # within the backoff: not even sent
    assert rt.counts["skipped_backoff"] == 1 and rt.counts["ok"] == 0
    rt._retry_at = 0.0                                   # the backoff elapsed: reconnects and answers again
    assert rt.infer({"face": x})["logits"].shape == (2, 7)
    assert rt.counts["reconnects"] >= 1
    rt.close()
    strict = edgeaffect.load(url, timeout=0.2)
    handler.delay = 0.6
    with pytest.raises(tr.ServerUnavailable, match="did not answer within 0.2 s"):
        strict.infer({"face": x})


def test_no_server_is_one_clear_line():
    import edgeaffect

    port = _free_port()
    with pytest.raises(EdgeAffectError, match=f"no triton server ready at 127.0.0.1:{port}.*edgeaffect serve"):
        edgeaffect.load(f"http://127.0.0.1:{port}", connect_timeout=0.3)


def test_serve_refuses_a_taken_port_and_a_missing_env(tmp_path, monkeypatch, capsys):
    from edgeaffect.cli import main
    from edgeaffect.serve import env, server

    model = _tiny_onnx(tmp_path / "m.onnx")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        with pytest.raises(EdgeAffectError, match=f"cannot serve on 127.0.0.1:{port}.*--port"):
            server.check_ports("127.0.0.1", {"--port": port})
    monkeypatch.setattr(env, "serve_problem", lambda: "serving needs PyTriton (the serve extra)")
    monkeypatch.setattr(env, "serve_python", lambda *a: None)
    assert main(["serve", str(model), "--port", str(_free_port(3))]) == 1
    err = capsys.readouterr().err
    assert "needs PyTriton" in err and "make serve-env" in err and "edgeaffect[serve]" in err
    assert len(err.strip().splitlines()) == 1


def _planted_python(folder: Path) -> Path:
    """A `.venv-serve/bin/python` that would leave a marker if anything ran it."""
    py = folder / ".venv-serve" / "bin" / "python"
    py.parent.mkdir(parents=True)
    py.write_text(f"#!/bin/sh\ntouch {folder / 'RAN'}\n")
    py.chmod(0o755)
    return py


def test_a_serve_env_planted_in_the_cwd_is_never_used(tmp_path, monkeypatch, capsys):
    from edgeaffect.cli import main
    from edgeaffect.serve import env

    model = _tiny_onnx(tmp_path / "m.onnx")
    _planted_python(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(env.SERVE_PYTHON_ENV, raising=False)
    monkeypatch.delenv(env.REEXEC_ENV, raising=False)
    monkeypatch.setattr(env, "source_root", lambda: None)                    # an installed package
    monkeypatch.setattr(env, "serve_problem", lambda: "serving needs PyTriton (the serve extra)")
    execs = []
    monkeypatch.setattr(os, "execve", lambda *a: execs.append(a))
    assert env.serve_python() is None and env.reexec_command(["m.onnx"]) is None
    assert main(["serve", str(model), "--port", str(_free_port(3))]) == 1
    assert "make serve-env" in capsys.readouterr().err and execs == [] and not (tmp_path / "RAN").exists()
    checkout = tmp_path / "checkout"                                         # a source checkout's own env is used
    checkout.mkdir()
    own = _planted_python(checkout)
    monkeypatch.setattr(env, "source_root", lambda: checkout)
    assert env.serve_python() == own


def test_serve_python_named_runs_isolated(tmp_path, monkeypatch, capsys):
    from edgeaffect.cli import main
    from edgeaffect.serve import env

    model = _tiny_onnx(tmp_path / "m.onnx")
    py = _planted_python(tmp_path / "elsewhere")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(env.REEXEC_ENV, raising=False)
    monkeypatch.setattr(env, "serve_problem", lambda: "serving needs PyTriton (the serve extra)")
    execs = []

    def execve(path, argv, environ):        # the real one never returns: the serve env takes over
        execs.append(argv)
        raise SystemExit(0)

    monkeypatch.setattr(os, "execve", execve)
    assert main(["serve", str(model), "--port", str(_free_port(3)), "--serve-python", str(py)]) == 0
    argv = execs[0]
    assert argv[:3] == [str(py), "-I", "-c"] and "serve" in argv   # -I: neither the cwd nor PYTHONPATH on its path
    assert argv[argv.index("serve") + 1] == str(model.resolve())
    assert main(["serve", str(model), "--serve-python", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert "is not an executable python" in err and len(err.strip().splitlines()) == 1


def test_a_mismatched_libpython_is_named(monkeypatch, tmp_path):
    from edgeaffect.serve import env

    stub = tmp_path / "triton_python_backend_stub"
    stub.write_bytes(b"")
    monkeypatch.setattr(env, "stub_path", lambda: stub)
    monkeypatch.setattr(env, "stub_libpython", lambda _: Path("/lib/x86_64-linux-gnu/libpython3.11.so.1.0"))
    monkeypatch.setattr(env, "own_libpython", lambda: tmp_path / "libpython3.11.so.1.0")
    line = env.serve_problem()
    assert "is not the interpreter whose libpython" in line and "/lib/x86_64-linux-gnu/libpython3.11.so.1.0" in line
    monkeypatch.setattr(env, "own_libpython", lambda: Path("/lib/x86_64-linux-gnu/libpython3.11.so.1.0"))
    assert env.serve_problem() is None


def test_a_start_up_race_is_retried_once_and_other_failures_are_one_line(monkeypatch):
    from edgeaffect.serve import server

    race = RuntimeError("load failed: Model initialize error: get_config_from_handshake_server\n"
                        "ConnectionRefusedError: [Errno 111] Connection refused")
    calls, said = [], []

    def flaky(*args):
        calls.append(args)
        if len(calls) == 1:
            raise race
        return "triton"

    monkeypatch.setattr(server, "_start", flaky)
    opts = server.ServeOptions(instances=2)
    assert server._start_retrying([], "m", "onnxruntime", opts, said.append) == "triton"
    assert len(calls) == 2 and "starting again" in said[0]

    def broken(*args):
        raise RuntimeError("[400] load failed for model 'm': version 1 is at UNAVAILABLE state\nTraceback ...")

    monkeypatch.setattr(server, "_start", broken)
    with pytest.raises(EdgeAffectError, match=r"^Triton could not load m: \[400\] load failed .*UNAVAILABLE state \(its log"):
        server._start_retrying([], "m", "onnxruntime", opts, said.append)
    def always_racing(*args):
        raise race

    monkeypatch.setattr(server, "_start", always_racing)
    with pytest.raises(EdgeAffectError, match="Triton could not load m"):   # one instance: no race to retry
        server._start_retrying([], "m", "onnxruntime", server.ServeOptions(instances=1), said.append)


def test_instances_share_the_cores_unless_threads_are_named():
    from edgeaffect.precision import physical_cores
    from edgeaffect.serve.server import ServeOptions

    assert ServeOptions(instances=2).instance_threads() == max(1, physical_cores() // 2)
    assert ServeOptions(instances=1).instance_threads() == 0          # the runtime's own
    assert ServeOptions(instances=2, threads=3).instance_threads() == 3


def test_triton_signature_drops_the_batch_dim_only_when_batched():
    from edgeaffect.serve.server import batches, model_name, triton_signature

    dyn = [TensorSpec("video", ("B", 4, 3, 8, 8)), TensorSpec("x", ("B", "d1"))]
    assert batches(dyn) and triton_signature(dyn, True) == [("video", np.float32, (4, 3, 8, 8)), ("x", np.float32, (-1,))]
    static = [TensorSpec("video", (2, 4))]
    assert not batches(static) and triton_signature(static, False) == [("video", np.float32, (2, 4))]
    assert model_name("eri dual/branch", None) == "eri-dual-branch"
    with pytest.raises(EdgeAffectError, match="--name"):
        model_name("x", tr.SPEC_MODEL)


def test_nonfinite_inputs_are_refused_in_one_line_unless_allowed():
    from edgeaffect.serve.server import NonFiniteInput, finite_only, nonfinite_input

    ran = []

    def run(requests):
        ran.append(len(requests))
        return [{"logits": np.zeros((1, 7), np.float32)} for _ in requests]

    ok = {"face": np.zeros((1, 1, 64, 64), np.float32), "ids": np.array([[7]], np.int64)}
    for bad_value in (np.nan, np.inf, -np.inf):
        bad = {"face": np.zeros((1, 1, 64, 64), np.float32)}
        bad["face"][0, 0, 3, 4] = bad_value
        assert nonfinite_input(bad) == "face"
        with pytest.raises(NonFiniteInput) as err:
            finite_only(run)([ok, bad])
        assert "input 'face' holds NaN or infinity" in str(err.value) and "--allow-nonfinite" in str(err.value)
    assert ran == []                                      # the model never saw the batch
    assert nonfinite_input(ok) is None and len(finite_only(run)([ok, ok])) == 2 and ran == [2]


def test_the_server_error_reaches_the_client_as_its_last_line():
    """What Triton 2.51 sent for a refused NaN (shortened): the model's traceback, then the stub's stack."""
    error = ("Failed to process the request(s) for model 'tiny-face_0_0', message: TritonModelException: Model "
             "execute error: Traceback (most recent call last):\n  File \"/tmp/f/1/model.py\", line 492, in execute\n"
             "    raise triton_responses_or_error\n  File \"edgeaffect/serve/server.py\", line 265, in checked\n"
             "edgeaffect.serve.server.NonFiniteInput: input 'face' holds NaN or infinity: refused\n\n\n\nAt:\n"
             "  /tmp/f/1/model.py(501): execute\n")
    assert tr._error_text(json.dumps({"error": error}).encode()) == "input 'face' holds NaN or infinity: refused"
    assert tr._error_text(b'{"error": "unexpected inference input \'x\'"}') == "unexpected inference input 'x'"


def test_serve_flags_for_the_limits_reach_the_serve_env(tmp_path):
    from edgeaffect.cli.serve import _args
    from edgeaffect.serve.server import ServeOptions

    args = _args(tmp_path / "m.onnx", "onnxruntime", "fp32",
                 ServeOptions(allow_nonfinite=True, max_request_mb=8.0, request_timeout=5.0))
    assert "--allow-nonfinite" in args and args[args.index("--max-request-mb") + 1] == "8.0"
    assert args[args.index("--request-timeout") + 1] == "5.0"
    assert "--allow-nonfinite" not in _args(tmp_path / "m.onnx", "onnxruntime", "fp32", ServeOptions())


@pytest.fixture
def fronted(stand_in):
    """The bounded front (1 KiB bodies at most, 1 s per request) relaying to the stand-in server."""
    from edgeaffect.serve.front import Front

    handler, url = stand_in
    front = Front("127.0.0.1", 0, int(url.rsplit(":", 1)[1]), max_bytes=64 << 10, timeout=1.0)
    yield handler, front.port
    front.close()


def _raw_reply(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(4096):
            out += chunk
        return out


def test_the_front_relays_requests_over_kept_alive_connections(fronted):
    import edgeaffect

    _, port = fronted
    with edgeaffect.load(f"http://127.0.0.1:{port}") as rt:
        assert rt.model == "tiny-face" and rt.spec == SPEC
        for v in (0.25, 0.5, 0.125):
            x = np.full((2, 1, 64, 64), v, np.float32)
            np.testing.assert_allclose(rt.infer({"face": x})["logits"], np.full((2, 7), 2 * v), rtol=1e-6)
        assert rt.counts["ok"] == 3 and rt.counts["reconnects"] == 0   # one connection for all of them


def test_a_connection_the_front_closed_while_idle_is_reopened_not_failed(fronted):
    import edgeaffect

    _, port = fronted
    x = np.full((1, 1, 64, 64), 0.25, np.float32)
    with edgeaffect.load(f"http://127.0.0.1:{port}", on_late="drop") as rt:
        assert rt.infer({"face": x})["logits"].shape == (1, 7)
        time.sleep(1.5)                                    # past the front's 1 s: it closed the idle connection
        assert rt.infer({"face": x})["logits"].shape == (1, 7)
        assert rt.counts["ok"] == 2 and rt.counts["unreachable"] == 0 and rt.counts["reconnects"] == 1


def test_the_front_refuses_a_huge_declared_body_at_once(fronted):
    """Content-Length: 2e9 and no body: answered 413 and closed, never relayed, with nothing read."""
    _, port = fronted
    reply = _raw_reply(port, b"POST /v2/models/tiny-face/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000000\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 413 ") and b"--max-request-mb" in reply and b"Connection: close" in reply
    reply = _raw_reply(port, b"POST /v2/models/tiny-face/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 411 ")


def test_the_front_closes_a_request_that_trickles_in(fronted):
    """A body sent a byte at a time (never the whole declared length) is cut at the request deadline."""
    import select

    _, port = fronted
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"POST /v2/models/tiny-face/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        closed = False
        for _ in range(100):                       # up to 20 s of trickling, far past the 1 s deadline
            if select.select([s], [], [], 0)[0]:   # nothing is ever answered: readable means closed (or reset)
                with contextlib.suppress(OSError):
                    assert s.recv(4096) == b""
                closed = True
                break
            try:
                s.sendall(b"x")
            except OSError:
                closed = True
                break
            time.sleep(0.2)
        assert closed


def test_the_front_says_when_triton_is_not_answering():
    from edgeaffect.serve.front import Front, free_port

    front = Front("127.0.0.1", 0, free_port(), timeout=5.0)
    try:
        reply = _raw_reply(front.port, b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 502 ")
    finally:
        front.close()


# ----------------------------------------------------------------------------- the real Triton server

def _free_port(span: int = 1) -> int:
    """A loopback port p with p..p+span-1 free (HTTP, gRPC, metrics)."""
    from edgeaffect.serve.server import check_ports

    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p + span < 65536:
            try:
                check_ports("127.0.0.1", {f"p{i}": p + i for i in range(span)})
                return p
            except EdgeAffectError:
                continue
    raise RuntimeError("no free port range")


def _tiny_onnx(path: Path) -> Path:
    """logits[:, 3] = 10 * mean(face): SPEC's model as a real ONNX, the spec in its metadata."""
    import onnx
    from onnx import TensorProto, helper

    from edgeaffect.runtimes.base import SPEC_KEY

    w = np.zeros((1, 7), np.float32)
    w[0, 3] = 10.0
    nodes = [helper.make_node("ReduceMean", ["face", "axes"], ["m"], keepdims=0),
             helper.make_node("Unsqueeze", ["m", "one"], ["m1"]),
             helper.make_node("MatMul", ["m1", "w"], ["logits"])]
    inits = [helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3]),
             helper.make_tensor("one", TensorProto.INT64, [1], [1]),
             helper.make_tensor("w", TensorProto.FLOAT, [1, 7], w.ravel().tolist())]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("face", TensorProto.FLOAT, ["B", 1, 64, 64])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", 7])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    helper.set_model_props(model, {SPEC_KEY: SPEC.to_json()})
    onnx.save(model, path)
    return path


def _serve_python() -> Path:
    """The serve env's python when it can serve here; otherwise skip with the reason."""
    from edgeaffect.serve import env

    py = env.serve_python()
    if py is None:
        pytest.skip("no serve env: `make serve-env` (needs the system python3 and the package registry)")
    code = "from edgeaffect.serve.env import serve_problem; print(serve_problem() or '')"
    res = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if res.returncode != 0 or res.stdout.strip():
        pytest.skip(f"the serve env cannot serve here: {(res.stdout + res.stderr).strip()[-300:]}")
    return py


class Served:
    """`edgeaffect serve` run from the serve env as a child process; stopped with SIGTERM."""

    def __init__(self, py: Path, model: Path, *args: str, timeout: float = 120.0):
        self.port = _free_port(3)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = model.parent / f"serve-{self.port}.log"
        self.proc = subprocess.Popen([str(py), "-m", "edgeaffect", "serve", str(model), "--port", str(self.port), *args],
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT,
                                     env=dict(os.environ, PYTHONPATH=str(ROOT)))
        end = time.monotonic() + timeout
        while "serving " not in self.text():
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise AssertionError(f"edgeaffect serve did not come up:\n{self.text()[-3000:]}")
            time.sleep(0.25)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    py = _serve_python()
    model = _tiny_onnx(tmp_path_factory.mktemp("serve") / "tiny.onnx")
    s = Served(py, model, "--max-batch", "8", "--queue-delay-us", "5000")
    yield s, model, py
    s.stop()


def _http_status(url: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_real_server_answers_tritonclient_and_our_runtime(served):
    import edgeaffect

    s, model, _ = served
    assert _http_status(f"{s.url}/v2/health/live") == 200 and _http_status(f"{s.url}/v2/health/ready") == 200
    assert _http_status(f"{s.url}/v2/models/tiny-face/ready") == 200
    import json
    import urllib.request

    with urllib.request.urlopen(f"{s.url}/v2/models/tiny-face/config", timeout=10) as r:
        config = json.loads(r.read())
    assert sum(g["count"] for g in config["instance_group"]) == 2       # the default: two instances
    assert config["max_batch_size"] == 8 and "dynamic_batching" in config
    rng = np.random.default_rng(0)
    x = rng.random((3, 1, 64, 64), dtype=np.float32)
    with edgeaffect.load(model) as local:
        want = local.infer({"face": x})["logits"]
    with edgeaffect.load(s.url) as rt:
        assert rt.model == "tiny-face" and rt.spec == SPEC and [t.shape for t in rt.inputs] == [("B", 1, 64, 64)]
        np.testing.assert_allclose(rt.infer({"face": x})["logits"], want, rtol=1e-5, atol=1e-6)
    http = pytest.importorskip("tritonclient.http", reason="tritonclient is in the dev extra")
    client = http.InferenceServerClient(f"127.0.0.1:{s.port}")
    inp = http.InferInput("face", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    got = client.infer("tiny-face", [inp]).as_numpy("logits")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    client.close()


def test_real_server_refuses_nan_and_a_huge_declared_body(served):
    import edgeaffect

    s, _, _ = served
    x = np.zeros((1, 1, 64, 64), np.float32)
    x[0, 0, 0, 0] = np.nan
    with edgeaffect.load(s.url, timeout=30.0) as rt:
        with pytest.raises(EdgeAffectError) as err:
            rt.infer({"face": x})
        assert "holds NaN or infinity" in str(err.value) and "\n" not in str(err.value)
        assert rt.infer({"face": np.zeros_like(x)})["logits"].shape == (1, 7)    # and serves the next one
    start = time.monotonic()
    reply = _raw_reply(s.port, b"POST /v2/models/tiny-face/infer HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Length: 2000000000\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:200]
    print(f"413 after {time.monotonic() - start:.3f} s")


def test_concurrent_streams_each_get_their_own_answer(served):
    """16 threads send batch-1 requests at once; the batcher merges them and every answer goes back to its sender."""
    import edgeaffect

    s, _, _ = served
    rt = edgeaffect.load(s.url, timeout=30.0)
    results, errors = {}, []

    def stream(i: int):
        try:
            x = np.full((1, 1, 64, 64), i / 16, np.float32)
            for _ in range(5):
                results.setdefault(i, []).append(rt.infer({"face": x})["logits"][0, 3])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for i, got in results.items():
        np.testing.assert_allclose(got, [10 * i / 16] * 5, rtol=1e-5, atol=1e-6)
    assert rt.counts["ok"] == 80
    rt.close()


def test_a_second_server_on_the_same_port_is_one_line(served):
    s, model, py = served
    res = subprocess.run([str(py), "-m", "edgeaffect", "serve", str(model), "--port", str(s.port)], capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert res.returncode == 1
    assert f"cannot serve on 127.0.0.1:{s.port}" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_demo_through_the_server_matches_the_local_demo(served, tmp_path):
    """Same clip, same model: `demo --server` writes the JSONL a local `demo --model` writes, and --bench counts it."""
    from edgeaffect.cli import main
    from edgeaffect.demo.clips import render_clip

    s, model, _ = served
    clip = render_clip(tmp_path / "astro.mp4", seconds=1.0, fps=10, size=(320, 240), audio=False)
    common = ["demo", "--source", str(clip), "--headless", "--mode", "sync", "--detect-every", "2"]
    assert main([*common, "--model", str(model), "--jsonl", str(tmp_path / "local.jsonl")]) == 0
    assert main([*common, "--server", s.url, "--jsonl", str(tmp_path / "remote.jsonl"),
                 "--bench-json", str(tmp_path / "bench.json"), "--server-timeout", "30"]) == 0
    local = (tmp_path / "local.jsonl").read_text().splitlines()
    remote = (tmp_path / "remote.jsonl").read_text().splitlines()
    assert remote == local and any('"scores"' in line for line in remote)
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert bench["runtime"] == "triton" and bench["server_requests"]["ok"] == bench["inferences"] + 1  # + warm-up


def test_a_multi_source_demo_through_the_server_matches_local(served, tmp_path):
    """Two clips in one demo against the server: each source's JSONL is what a local multi-source run writes."""
    from edgeaffect.cli import main
    from edgeaffect.demo.clips import render_clip

    s, model, _ = served
    a = render_clip(tmp_path / "a.mp4", seconds=0.8, fps=10, size=(320, 240), audio=False)
    b = render_clip(tmp_path / "b.mp4", seconds=1.0, fps=10, size=(320, 240), audio=False, seed=3)
    common = ["demo", "--source", str(a), "--source", str(b), "--headless", "--mode", "sync", "--detect-every", "2"]
    assert main([*common, "--model", str(model), "--jsonl", str(tmp_path / "local.jsonl")]) == 0
    assert main([*common, "--server", s.url, "--jsonl", str(tmp_path / "remote.jsonl"),
                 "--bench-json", str(tmp_path / "bench.json"), "--server-timeout", "30"]) == 0
    for i in (0, 1):
        local = (tmp_path / f"local.{i}.jsonl").read_text().splitlines()
        remote = (tmp_path / f"remote.{i}.jsonl").read_text().splitlines()
        assert remote == local and all(json.loads(x)["source"] == i for x in remote)
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert [src["frames"] for src in bench["sources"]] == [8, 10] and bench["runtime"] == "triton"


def test_sigterm_stops_the_server_cleanly(served, tmp_path):
    _, model, py = served
    s = Served(py, model, "--no-dynamic-batching")
    assert "no dynamic batching" in s.text()
    assert s.stop() == 0
    assert "stopped" in s.text().splitlines()[-1]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", s.port), timeout=2).close()
