"""``edgeaffect demo``: live emotion recognition from a camera, file, stream or image folder."""
from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Optional

import typer

from ..errors import EdgeAffectError
from ..fileio import write_json
from ..precision import check_precisions
from . import app
from .common import Console, TrustOpt, console

_Source = Annotated[Optional[list[str]], typer.Option("--source", "-s", help="Camera index, video file, rtsp:// or http:// URL, or image folder (default 0). Repeat for several sources: one model, faces batched; --output/--jsonl become NAME.0.EXT, NAME.1.EXT, ...")]
_Model = Annotated[Optional[Path], typer.Option("--model", "-m", help="Run directory or exported model (default: the zoo's fer2013, imported on first use).")]
_Server = Annotated[Optional[str], typer.Option("--server", help="Send faces to `edgeaffect serve` at http://HOST:PORT instead of a local model (instead of --model).")]
_ServerTimeout = Annotated[float, typer.Option("--server-timeout", min=0.01, help="With --server: drop a prediction the server has not answered in this many seconds.")]
_Runtime = Annotated[str, typer.Option("--runtime", "-r", help="auto (the run's compiled runtimes timed here for 0.3 s, the fastest kept), torch, onnxruntime, openvino or tensorrt.")]
_Precision = Annotated[str, typer.Option("--precision", help="auto (default: int8 where the accuracy guard accepted it and it timed faster than fp32 here at start (bench on this CPU finding it slower rules it out), else fp32; a model file as it is stored), fp32, bf16, fp16 or int8 (int8 and fp16 need their exported artifact; bf16 runs the fp32 one where the CPU has bf16).")]
_Headless = Annotated[bool, typer.Option("--headless", help="No window (use with --output/--jsonl/--serve/--bench).")]
_Output = Annotated[Optional[Path], typer.Option("--output", "-o", help="Write every annotated frame to this mp4.")]
_Jsonl = Annotated[Optional[Path], typer.Option("--jsonl", help="Write one JSON line of predictions per processed frame.")]
_Serve = Annotated[Optional[str], typer.Option("--serve", help="Serve a live web page on HOST:PORT (e.g. 127.0.0.1:8080). Any address but loopback needs a token (one is generated and printed when --token is not given).")]
_AllowHost = Annotated[Optional[list[str]], typer.Option("--allow-host", help="With --serve: also answer requests whose Host header is this name (repeatable; e.g. demo.lan). Others get 403.")]
_Token = Annotated[Optional[str], typer.Option("--token", envvar="EDGEAFFECT_DEMO_TOKEN", help="With --serve: the page, video and events need this token (?token= once, then a cookie; or Authorization: Bearer).")]
_MaxClients = Annotated[int, typer.Option("--max-clients", min=1, help="With --serve: worker threads for page/frame/state requests; beyond them 503 + Retry-After.")]
_MaxStreams = Annotated[int, typer.Option("--max-streams", min=1, help="With --serve: open video/event streams at once (a browser tab holds two); beyond them 503.")]
_IdleTimeout = Annotated[float, typer.Option("--idle-timeout", min=0.5, help="With --serve: drop a client that sends or reads nothing for this many seconds.")]
_HeadTimeout = Annotated[float, typer.Option("--head-timeout", min=0.5, max=300.0, help="With --serve: a request's whole head (request line and headers) must arrive within this many seconds, however it trickles in.")]
_MaxPerClient = Annotated[int, typer.Option("--max-per-client", min=1, help="With --serve: connections one address may hold before they are admitted (open streams not counted); beyond them 503.")]
_Bench = Annotated[bool, typer.Option("--bench", help="Print FPS, latency and per-stage timings at the end.")]
_BenchJson = Annotated[Optional[Path], typer.Option("--bench-json", help="Also write the --bench summary as JSON here.")]
_Detector = Annotated[str, typer.Option("--detector", help="Face detector: auto (BlazeFace full range through ONNX Runtime/OpenVINO, "
                                                              "Haar where neither is installed), blazeface, "
                                                              "blazeface-short (webcams: faces within 2 m), mtcnn, haar, or "
                                                              "package.module:Class: a class whose detect(frame_bgr) returns "
                                                              "boxes (its module is imported, so name only your own code; "
                                                              "the standard library is refused).")]
_DetectEvery = Annotated[int, typer.Option("--detect-every", min=0, help="0 (default): detect on every frame that fits the frame budget (1/fps), tracking the others; N: every N frames, tracking in between.")]
_MaxFaces = Annotated[int, typer.Option("--max-faces", min=1, help="At most this many faces (largest first), batched per inference.")]
_Smoothing = Annotated[float, typer.Option("--smoothing", min=0.0, max=0.99, help="EMA weight of previous scores (0 = off).")]
_Realtime = Annotated[bool, typer.Option("--realtime/--no-realtime", help="Play files at their own fps (default: as fast as possible when headless).")]
_Loop = Annotated[bool, typer.Option("--loop", help="Loop a file or image folder.")]
_MaxFrames = Annotated[Optional[int], typer.Option("--max-frames", min=1, help="Stop after this many frames.")]
_FolderFps = Annotated[float, typer.Option("--folder-fps", min=0.01, max=1000.0, help="Frame rate of an image-folder source.")]
_Mode = Annotated[str, typer.Option("--mode", help="sync: every frame waits for detection and its prediction (offline, all stages in sequence); async: capture never waits, the model runs on the newest frames; auto: sync for files played at full speed, async for cameras, streams and --realtime.")]
_Audio = Annotated[str, typer.Option("--audio", help="Audio for audio-visual models: auto (the file's track), mic or mic:DEVICE (needs the mic extra).")]
_ReconnectRetries = Annotated[int, typer.Option("--reconnect-retries", min=0, help="Give up on a lost stream after this many failed reconnects (0 = never).")]


@app.command("demo")
def demo_cmd(
    source: _Source = None,
    model: _Model = None,
    server: _Server = None,
    server_timeout: _ServerTimeout = 1.0,
    runtime: _Runtime = "auto",
    precision: _Precision = "auto",
    headless: _Headless = False,
    output: _Output = None,
    jsonl: _Jsonl = None,
    serve: _Serve = None,
    allow_host: _AllowHost = None,
    token: _Token = None,
    max_clients: _MaxClients = 32,
    max_streams: _MaxStreams = 8,
    idle_timeout: _IdleTimeout = 10.0,
    head_timeout: _HeadTimeout = 5.0,
    max_per_client: _MaxPerClient = 8,
    bench: _Bench = False,
    bench_json: _BenchJson = None,
    detector: _Detector = "auto",
    detect_every: _DetectEvery = 0,
    max_faces: _MaxFaces = 4,
    smoothing: _Smoothing = 0.6,
    realtime: _Realtime = False,
    loop: _Loop = False,
    max_frames: _MaxFrames = None,
    folder_fps: _FolderFps = 10.0,
    mode: _Mode = "auto",
    audio: _Audio = "auto",
    reconnect_retries: _ReconnectRetries = 10,
    trust: TrustOpt = None,
) -> None:
    """Run a model live: faces are detected and tracked, predictions smoothed and drawn; window, file or web out.

    Example:  edgeaffect demo --source clip.mp4 --headless --output annotated.mp4 --jsonl predictions.jsonl
    Example:  edgeaffect demo --source 0 --serve 127.0.0.1:8080     # this machine only, no token
    Example:  edgeaffect demo --model model.onnx --source 0 --serve 0.0.0.0:8080   # LAN: prints the URL with a fresh token
    Example:  EDGEAFFECT_DEMO_TOKEN=s3cret edgeaffect demo --serve 0.0.0.0:8080 --allow-host jetson.lan
    Example:  edgeaffect demo --server http://127.0.0.1:8000 --source cam.mp4 --headless --bench   # model in `edgeaffect serve`
    Example:  edgeaffect demo -s rtsp://cam1/s -s rtsp://cam2/s --serve 127.0.0.1:8080   # one page, a tile per camera
    """
    _demo(SimpleNamespace(**locals()))


def _demo(a) -> None:
    """The demo command once its options are parsed: check them, build the session, run it, report."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    _check_options(a)
    runner = _server_runner(a.server, a.server_timeout, a.model, a.runtime, a.precision)
    sources = a.source or ["0"]
    session = _session(a, sources, runner)
    console.print(f"demo: {session.describe()}", highlight=False, soft_wrap=True)
    if session.web is not None:
        from rich.markup import escape

        how = " (token generated for this run; --token fixes one)" if session.web.generated_token else ""
        console.print(f"[green]serving[/] {escape(session.web.url)}{how}", soft_wrap=True)
    if len(sources) == 1 and a.headless and not session.source.live and not a.realtime and console.is_terminal:
        from ..demo.sinks import ProgressSink

        sink = ProgressSink(None if a.loop else (lambda: getattr(session.source, "frame_count", None)), console, "demo")
        session.sinks.append(sink)
        session.demo.sinks.append(sink)
    stats, signalled = _run_until_signal(session)
    _report(a, sources, session, runner, stats.summary(), signalled)


def _check_options(a) -> None:
    """Refuse bad choices in one line before any model or source is opened."""
    if a.mode not in ("auto", "sync", "async"):
        raise EdgeAffectError(f"--mode must be auto, sync or async, got {a.mode!r}")
    check_precisions([a.precision] if a.precision != "auto" else [])
    if a.server is None:   # a model run here; `edgeaffect serve` checks its own
        from ..signing import check_trust

        check_trust(a.model, a.trust)
    from ..data.detectors import check_detector_name

    check_detector_name(a.detector)  # before the model and sources are opened (a custom one is imported later)


def _session(a, sources: list[str], runner):
    """The demo session the options describe."""
    from ..demo.session import build_session

    web_config = _web_config(a.serve, a.allow_host or [], a.token, a.max_clients, a.max_streams, a.idle_timeout,
                             head_timeout=a.head_timeout, max_per_client=a.max_per_client)
    return build_session(
        source=sources[0] if len(sources) == 1 else sources, model=a.model, runtime=a.runtime,
        precision=a.precision, window=not a.headless, output=a.output, jsonl=a.jsonl, serve=a.serve,
        detector=a.detector, detect_every=a.detect_every, max_faces=a.max_faces, smoothing=a.smoothing,
        realtime=a.realtime or (not a.headless and not a.bench), loop=a.loop, max_frames=a.max_frames,
        folder_fps=a.folder_fps, reconnect_retries=a.reconnect_retries or None, mode=a.mode, audio=a.audio,
        web_config=web_config, runner=runner,
    )


def _report(a, sources: list[str], session, runner, summary: dict, signalled: list[int]) -> None:
    """What was written, and the --bench table / JSON (or a one-line count)."""
    from ..demo.session import per_source
    for path in (a.output, a.jsonl):
        if path is not None:
            for p in [path] if len(sources) == 1 else [per_source(path, i, len(sources)) for i in range(len(sources))]:
                console.print(f"wrote {p}")
    if not (a.bench or a.bench_json):
        how = "stopped by signal; " if signalled else ""
        console.print(f"{how}{summary['frames']} frames, {summary['fps']:.1f} FPS, {summary['inferences']} inferences")
        return
    summary.update(model=session.spec.name, runtime=session.runtime_name,
                   runtime_choice=getattr(session.runner, "chosen_because", "") or None,
                   precision=getattr(session.runner, "precision", None) or a.precision,
                   source=sources[0] if len(sources) == 1 else sources,
                   mode="sync" if session.demo.cfg.sync else "async")
    if runner is not None:
        summary.update(server=a.server, server_requests=dict(runner.counts))
    if a.bench_json:
        write_json(a.bench_json, summary)
    _print_bench(summary)


def _server_runner(server, timeout, model, runtime, precision):
    """The triton client runtime for ``--server`` (None without it); the model options belong to the server."""
    if server is None:
        return None
    from ..demo.runner import open_model
    if model is not None or runtime != "auto" or precision != "auto":
        raise EdgeAffectError("--server: the server holds the model; give --model/--runtime/--precision to `edgeaffect serve`")
    return open_model(server, server={"timeout": timeout})[0]


def _web_config(serve, allow_host, token, max_clients, max_streams, idle_timeout, **limits):
    """The web page's options; the ones that only mean something with --serve are refused without it."""
    from ..demo.web import WebConfig
    if serve is None:
        if allow_host or (token is not None and token != os.environ.get("EDGEAFFECT_DEMO_TOKEN")):
            raise EdgeAffectError("--allow-host and --token apply to the web page: add --serve HOST:PORT")
        return None
    return WebConfig(allow_hosts=tuple(allow_host), token=token, max_clients=max_clients,
                     max_streams=max_streams, idle_timeout=idle_timeout, **limits)


def _run_until_signal(session):
    """Run the session; SIGINT/SIGTERM stop it cleanly (files finalised). Returns (stats, signals received)."""
    stop = threading.Event()
    signalled: list[int] = []

    def _on_signal(signum, _frame):
        signalled.append(signum)
        stop.set()

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return session.run(stop), signalled
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _print_bench(summary: dict) -> None:
    """The ``--bench`` table: per-stage timings against the frame budget, frame latency, FPS, the prediction
    and detection counters, and a line per source."""
    from rich.table import Table

    budget = summary.get("frame_budget_ms") or 0.0
    table = Table(title=f"demo bench: {summary['model']} ({summary['runtime']} {summary['precision']}), "
                        f"frame budget {budget:.1f} ms")
    for col in ("stage", "mean ms", "p50 ms", "p95 ms", "calls", "% of budget"):
        table.add_column(col, justify="right")
    for name, v in summary["stages_ms"].items():
        share = f"{100 * v['mean'] / budget:.0f}" if budget else "-"
        table.add_row(name, f"{v['mean']:.2f}", f"{v['p50']:.2f}", f"{v['p95']:.2f}", str(v["n"]), share)
    lat = summary["latency_ms"]
    table.add_row("frame latency", f"{lat['mean']:.2f}", f"{lat['p50']:.2f}", f"{lat['p95']:.2f}", str(lat["n"]), "")
    Console().print(table)
    typer.echo(f"FPS: {summary['fps']:.1f}")
    typer.echo(f"p95 frame latency: {lat['p95']:.1f} ms")
    age, det = summary["prediction_age_ms"], summary["detection"]
    typer.echo(f"predictions: {summary['inferences']} ({summary['inference_rate']:.1f}/s, age p95 {age['p95']:.1f} ms), "
               f"fresh on {summary['fresh_pct']:.1f} % of frames with faces, mode {summary['mode']}, skipped while "
               f"busy: {summary['skipped_busy']}, dropped frames: {summary['dropped_frames']}, "
               f"corrupt: {summary['corrupt_frames']}")
    typer.echo(f"detection: ran on {det['ran']} frames ({det['every_frame_pct']:.1f} %), skipped on {det['skipped']}")
    for s in summary.get("sources", []):
        d = s["detection"]
        typer.echo(f"  source {s['source']}: {s['frames']} frames, {s['fps']:.1f} FPS, fresh {s['fresh_pct']:.1f} %, "
                   f"age p95 {s['prediction_age_ms']['p95']:.1f} ms, frames skipped {s['dropped_frames']}, "
                   f"detected {d['every_frame_pct']:.0f} %, p95 latency {s['latency_ms']['p95']:.1f} ms")
    if "server_requests" in summary:
        c = summary["server_requests"]
        typer.echo(f"server {summary['server']}: {c['ok']}/{c['requests']} answered, late (dropped) {c['late']}, "
                   f"unreachable {c['unreachable']}, skipped in backoff {c['skipped_backoff']}, reconnects {c['reconnects']}")
