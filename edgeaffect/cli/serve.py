"""``edgeaffect serve``: a run or exported model in Triton Inference Server, batching across streams."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import EdgeAffectError
from ..precision import check_precisions
from ..serve import env
from . import app
from .common import TrustOpt


@app.command("serve")
def serve_cmd(
    model: Annotated[Path, typer.Argument(help="Run directory, deploy bundle or exported model (.onnx / .xml).")],
    runtime: Annotated[str, typer.Option("--runtime", "-r", help="onnxruntime or openvino: what runs the model inside the server (default: the first of them).")] = None,
    precision: Annotated[str, typer.Option("--precision", help="fp32, bf16, fp16 or int8 (as `edgeaffect demo`).")] = "fp32",
    host: Annotated[str, typer.Option("--host", help="Address to listen on; loopback by default (Triton has no auth on inference).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="HTTP port (clients: edgeaffect demo --server http://HOST:PORT).")] = 8000,
    grpc_port: Annotated[Optional[int], typer.Option("--grpc-port", help="gRPC port (default: --port + 1).")] = None,
    metrics_port: Annotated[Optional[int], typer.Option("--metrics-port", help="Prometheus metrics port (default: --port + 2).")] = None,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Largest batch the dynamic batcher forms (faces from all streams).")] = 8,
    queue_delay_us: Annotated[int, typer.Option("--queue-delay-us", min=0, help="How long a request may wait for others to join its batch.")] = 5000,
    dynamic_batching: Annotated[bool, typer.Option("--dynamic-batching/--no-dynamic-batching", help="Merge concurrent requests into one inference.")] = True,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="Intra-op threads of each instance (default: the runtime's own; with --instances, the cores shared among them).")] = None,
    instances: Annotated[int, typer.Option("--instances", min=1, help="Model instances, each its own runtime, running batches side by side (2 measured best on 2 cores).")] = 2,
    name: Annotated[Optional[str], typer.Option("--name", help="Triton model name (default: the model spec's name).")] = None,
    trust: TrustOpt = None,
    allow_nonfinite: Annotated[bool, typer.Option("--allow-nonfinite", help="Pass inputs holding NaN or infinity to the model (refused by default: the model would answer with NaN scores).")] = False,
    max_request_mb: Annotated[float, typer.Option("--max-request-mb", min=0.01, max=4096.0, help="Largest HTTP request body accepted; a larger declared Content-Length gets 413 at once.")] = 64.0,
    request_timeout: Annotated[float, typer.Option("--request-timeout", min=0.5, max=3600.0, help="Seconds an HTTP request (head and body) may take to arrive before its connection is closed.")] = 30.0,
    serve_python: Annotated[Optional[Path], typer.Option(
        "--serve-python", envvar="EDGEAFFECT_SERVE_PYTHON",
        help="The serve env's python (default: .venv-serve beside this package's source checkout; never the cwd's).")] = None,
) -> None:
    """Serve a model with Triton Inference Server (PyTriton): health, readiness, dynamic batching, HTTP + gRPC.

    PyTriton needs numpy<2 and the distribution's python3, so it runs from its own venv (make serve-env);
    run from the main env, this command re-executes itself there.

    Example:  make serve-env && edgeaffect serve runs/eri/quickstart --runtime openvino
    Example:  edgeaffect serve runs/eri/quickstart --serve-python /opt/edgeaffect-serve/bin/python   # an install
    Example:  edgeaffect serve model.onnx --port 9000 --max-batch 32 --queue-delay-us 4000
    Example:  edgeaffect serve runs/eri/quickstart --instances 1 --queue-delay-us 0   # a few cameras: no waiting
    Example:  edgeaffect demo --server http://127.0.0.1:8000 --source cam1.mp4 --headless --bench   # one client per camera
    """
    from ..signing import TRUST_ENV, check_trust

    check_precisions([precision])
    from ..serve.server import ServeOptions, check_ports, check_serving, serve

    runtime = check_serving(runtime)
    if not model.exists():
        raise EdgeAffectError(f"no model at {model}: give a run directory, bundle or exported .onnx/.xml")
    check_trust(model, trust)
    opts = ServeOptions(host=host, port=port, grpc_port=grpc_port, metrics_port=metrics_port, max_batch=max_batch,
                        queue_delay_us=queue_delay_us, dynamic_batching=dynamic_batching, threads=threads, instances=instances, name=name,
                        allow_nonfinite=allow_nonfinite, max_request_mb=max_request_mb, request_timeout=request_timeout)
    problem = env.serve_problem()
    if problem is not None:
        check_ports(host, opts.ports())  # a taken port is said before the hop to the serve env
        hop = env.reexec_command(_args(model, runtime, precision, opts), serve_python)
        if hop is None:
            raise EdgeAffectError(f"{problem}; make the serve env: {env.HOW}")
        hop[1].pop(TRUST_ENV, None)   # checked above; the serve env need not carry model-signing
        os.execve(hop[0][0], hop[0], hop[1])
    serve(model, runtime, precision, opts, say=lambda line: typer.echo(line, err=False))


def _args(model: Path, runtime: str, precision: str, opts) -> list[str]:
    """The same command line, for the serve env (paths made absolute: its cwd is the same, but be sure)."""
    args = [str(model.resolve()), "--runtime", runtime, "--precision", precision, "--host", opts.host,
            "--port", str(opts.port), "--max-batch", str(opts.max_batch), "--queue-delay-us", str(opts.queue_delay_us),
            "--dynamic-batching" if opts.dynamic_batching else "--no-dynamic-batching", "--instances", str(opts.instances),
            "--max-request-mb", repr(opts.max_request_mb), "--request-timeout", repr(opts.request_timeout)]
    if opts.allow_nonfinite:
        args.append("--allow-nonfinite")
    for flag, value in (("--grpc-port", opts.grpc_port), ("--metrics-port", opts.metrics_port),
                        ("--threads", opts.threads), ("--name", opts.name)):
        if value is not None:
            args += [flag, str(value)]
    return args
