"""Our runtime (``edgeaffect.load``) bound into Triton Inference Server through PyTriton.

Triton owns the network side (HTTP and gRPC, health and readiness, metrics) and the dynamic batcher,
which merges requests from many streams into one ``infer`` call; the model runs in this process through
the same runtime interface as everywhere else.  Beside the model it binds ``edgeaffect-spec``, which
answers with the model's spec, so a client (``edgeaffect demo --server``) needs no model file.
Imports pytriton only inside :func:`serve`: run it where :func:`..env.serve_problem` is None.

What a client may send is bounded twice.  Inputs holding NaN or infinity are refused (a model answers them
with NaN scores that look like predictions) unless ``--allow-nonfinite``.  And Triton's own HTTP server
(2.51, inside PyTriton 0.7) waits as long as a client likes for a body of any declared length, with no
option to bound either, so it listens on an internal loopback port behind :mod:`.front`, a small
HTTP/1.1 front that refuses a body over ``--max-request-mb`` at once (413) and closes a request not
complete within ``--request-timeout`` seconds.
"""
from __future__ import annotations

import json
import re
import signal
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..demo.runner import open_model
from ..errors import EdgeAffectError
from ..precision import physical_cores
from ..runtimes.registry import serving
from ..runtimes.triton import SPEC_MODEL
from ..spec import BATCH, TensorSpec


def check_serving(runtime: str | None) -> str:
    """``runtime`` (None: the first the server runs models with), or one line naming those (their table entries
    say ``serves``)."""
    runtime = runtime or serving()[0]
    if runtime not in serving():
        raise EdgeAffectError(f"--runtime {runtime!r}: the server runs {' or '.join(serving())}")
    return runtime

@dataclass(frozen=True)
class ServeOptions:
    """Where and how to serve; the batching defaults are the ones measured in benchmarks/serve_load.md."""

    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int | None = None      # default port + 1
    metrics_port: int | None = None   # default port + 2
    max_batch: int = 8
    queue_delay_us: int = 5000
    dynamic_batching: bool = True
    threads: int | None = None        # per instance; default: the cores shared among the instances
    instances: int = 2                # model instances, each its own runtime: batches run side by side
    name: str | None = None           # default: the spec's model name
    allow_nonfinite: bool = False     # pass NaN/inf inputs to the model instead of refusing them
    max_request_mb: float = 64.0      # the largest request body the HTTP front accepts (Triton's later default)
    request_timeout: float = 30.0     # seconds a request (head and body) may take to arrive

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def instance_threads(self) -> int:
        """Intra-op threads of each instance: ``threads``, else the cores shared out (0: the runtime's own)."""
        if self.threads:
            return self.threads
        return max(1, physical_cores() // self.instances) if self.instances > 1 else 0

    def ports(self) -> dict[str, int]:
        return {"--port": self.port, "--grpc-port": self.grpc_port or self.port + 1,
                "--metrics-port": self.metrics_port or self.port + 2}


def model_name(spec_name: str, name: str | None) -> str:
    """A Triton model name (letters, digits, ``._-``) from ``--name`` or the spec's name."""
    chosen = name or re.sub(r"[^A-Za-z0-9._-]+", "-", spec_name).strip("-") or "model"
    if not re.fullmatch(r"[A-Za-z0-9._-]+", chosen) or chosen == SPEC_MODEL:
        raise EdgeAffectError(f"--name {chosen!r}: use letters, digits, '.', '_' or '-' (and not {SPEC_MODEL})")
    return chosen


def triton_signature(tensors: list[TensorSpec], batched: bool) -> list[tuple[str, type, tuple[int, ...]]]:
    """(name, numpy type, dims) as Triton declares them: without the batch dim when Triton batches."""
    out = []
    for t in tensors:
        dims = t.shape[1:] if batched else t.shape
        out.append((t.name, t.np_dtype.type, tuple(d if isinstance(d, int) else -1 for d in dims)))
    return out


def batches(tensors: list[TensorSpec]) -> bool:
    """True when every tensor has the dynamic batch first (a static-batch export is served unbatched)."""
    return all(t.shape and t.shape[0] == BATCH for t in tensors)


def check_ports(host: str, ports: dict[str, int]) -> None:
    """One clear line when a port is taken, before Triton starts and fails in its own log."""
    for flag, port in ports.items():
        if not 0 < port < 65536:
            raise EdgeAffectError(f"{flag} {port}: a port is 1..65535")
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as exc:
                raise EdgeAffectError(f"cannot serve on {host}:{port} ({exc.strerror or exc}): another server "
                                      f"holds it? choose another with {flag}") from None


def spec_payload(name: str, runner, runtime: str) -> bytes:
    return json.dumps({"model": name, "spec": runner.spec.to_dict(), "runtime": runtime,
                       "precision": runner.precision}).encode()


def serve(model: Path, runtime: str, precision: str, opts: ServeOptions,
          say: Callable[[str], None] = print, stop: threading.Event | None = None) -> None:
    """Load the model, bind it into Triton, serve until SIGTERM/SIGINT (or ``stop``), then stop Triton."""
    check_serving(runtime)
    check_ports(opts.host, opts.ports())
    runners = open_runners(model, runtime, precision, opts)
    name = model_name(runners[0].spec.name, opts.name)
    stop = stop or threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)} \
        if threading.current_thread() is threading.main_thread() else {}
    triton = front = None
    try:
        from .front import Front, free_port

        internal = free_port()
        triton = _start_retrying(runners, name, runtime, opts, say, internal)
        front = Front(opts.host, opts.port, internal, max_bytes=int(opts.max_request_mb * 2**20),
                      timeout=opts.request_timeout)
        say(f"serving {name} ({runtime} {runners[0].precision}, {describe_batching(opts)}) at {opts.url}; "
            f"ready: {opts.url}/v2/health/ready; gRPC :{opts.ports()['--grpc-port']}; HTTP requests up to "
            f"{opts.max_request_mb:g} MB within {opts.request_timeout:g} s, NaN/inf inputs "
            f"{'passed' if opts.allow_nonfinite else 'refused'}; SIGTERM or Ctrl-C stops")
        while not stop.wait(0.5):
            if not triton.is_alive():
                raise EdgeAffectError("the Triton server exited unexpectedly (see its log above)")
    finally:
        if front is not None:
            front.close()
        if triton is not None:
            triton.stop()
        for r in runners:
            r.close()
        for s, h in old.items():
            signal.signal(s, h)
    say("stopped")


def describe_batching(opts: ServeOptions) -> str:
    """How requests are batched and run, for the start line."""
    how = (f"dynamic batching up to {opts.max_batch}, queue delay {opts.queue_delay_us} us" if opts.dynamic_batching
           else "no dynamic batching")
    return how + (f", {opts.instances} instances of {opts.instance_threads()} thread(s)" if opts.instances > 1 else "")


def open_runners(model: Path, runtime: str, precision: str, opts: ServeOptions) -> list:
    """One runtime per model instance (an OpenVINO infer request serves one call at a time)."""
    if opts.instances < 1:
        raise EdgeAffectError(f"--instances {opts.instances}: serve at least one model instance")
    runners = []
    try:
        for _ in range(opts.instances):   # the first picks (auto: timed once), the rest open what it picked
            first = runners[0] if runners else None
            runners.append(open_model(model, first.name if first else runtime, first.precision if first else precision,
                                      threads=opts.instance_threads(),
                                      batch=opts.max_batch if opts.dynamic_batching else 1)[0])
    except BaseException:
        for r in runners:
            r.close()
        raise
    return runners


def _start_retrying(runners: list, name: str, runtime: str, opts: ServeOptions, say: Callable[[str], None],
                    http_port: int | None = None):
    """:func:`_start`, once more when PyTriton's instance handshake races (the second instance may connect
    between the first one's bind and listen: ``Connection refused``); any other failure is one line."""
    for attempt in (1, 2):
        try:
            return _start(runners, name, runtime, opts, http_port)
        except Exception as exc:   # pytriton/tritonclient raise their own types; the text says what failed
            text = str(exc)
            if attempt == 1 and opts.instances > 1 and "handshake" in text and "Connection refused" in text:
                say("Triton: a model instance missed PyTriton's handshake (a start-up race); starting again")
                continue
            first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
            raise EdgeAffectError(f"Triton could not load {name}: {first[:300]} (its log is above)") from None


def _start(runners: list, name: str, runtime: str, opts: ServeOptions, http_port: int | None = None):
    """A running Triton with the model (one instance per runner) and its spec companion bound; its HTTP
    server listens on loopback ``http_port``, behind the front (without one: on ``opts``'s address)."""
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    ports = opts.ports()
    config = TritonConfig(http_address="127.0.0.1" if http_port else opts.host, http_port=http_port or ports["--port"],
                          grpc_address=opts.host, grpc_port=ports["--grpc-port"], metrics_address=opts.host,
                          metrics_port=ports["--metrics-port"])
    runner = runners[0]
    batched = batches(runner.inputs + runner.outputs)
    infers = [_infer_of(r, batched, opts.allow_nonfinite) for r in runners]
    payload = np.array([spec_payload(name, runner, runtime)], dtype=np.bytes_)

    def describe(requests):
        return [{"spec": payload} for _ in requests]

    model_config = ModelConfig(batching=batched, max_batch_size=opts.max_batch if batched else 0,
                               batcher=DynamicBatcher(max_queue_delay_microseconds=opts.queue_delay_us)
                               if opts.dynamic_batching else None)
    triton = Triton(config=config)
    try:
        triton.bind(model_name=name, infer_func=infers if len(infers) > 1 else infers[0],
                    inputs=[Tensor(name=n, dtype=d, shape=s) for n, d, s in triton_signature(runner.inputs, batched)],
                    outputs=[Tensor(name=n, dtype=d, shape=s) for n, d, s in triton_signature(runner.outputs, batched)],
                    config=model_config, strict=True)
        triton.bind(model_name=SPEC_MODEL, infer_func=describe, inputs=[],
                    outputs=[Tensor(name="spec", dtype=np.bytes_, shape=(1,))], config=ModelConfig(batching=False))
        triton.run()
    except BaseException:
        triton.stop()
        raise
    return triton


def _infer_of(runner, batched: bool, allow_nonfinite: bool = False):
    """PyTriton's callable for one model instance."""
    from pytriton.decorators import batch

    def infer(**feeds):
        return runner.infer(feeds)
    run = batch(infer) if batched else _unbatched(infer)
    return run if allow_nonfinite else finite_only(run)


def _unbatched(infer):
    """A static-batch model: each request runs as it came."""
    def run(requests):
        return [infer(**{k: np.asarray(v) for k, v in r.items()}) for r in requests]
    return run


class NonFiniteInput(EdgeAffectError):
    """A request holds NaN or infinity."""


def nonfinite_input(feeds) -> str | None:
    """The name of the first floating-point input holding NaN or infinity, or None."""
    for name, value in feeds.items():
        a = np.asarray(value)
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            return name
    return None


def finite_only(run):
    """``run`` behind a check that refuses a batch holding NaN or infinity in one line.

    PyTriton answers a call as a whole, so requests the dynamic batcher merged with a refused one are refused
    with it; clients of ours never send such values (their inputs come from images and audio).
    """
    def checked(requests):
        for r in requests:
            bad = nonfinite_input(r)
            if bad is not None:
                raise NonFiniteInput(f"input {bad!r} holds NaN or infinity: refused "
                                     f"(`edgeaffect serve --allow-nonfinite` passes such values to the model)")
        return run(requests)
    return checked
