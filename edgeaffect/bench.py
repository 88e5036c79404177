"""The measurement engine behind ``edgeaffect bench``: speed and accuracy of every artifact of a run.

For each runtime x precision x batch it reports latency percentiles after
warm-up, throughput, cold start (load + first inference), peak RSS, artifact
size, the task metric on the eval split next to the FP32 torch metric, and
output agreement with torch.  Timing is time-budgeted and *interleaved*: every
round runs each variant in turn for a slice of the budget, so drift on a busy
machine hits all variants alike.  Cold start and peak RSS are measured in a
fresh child process per variant (``isolate=True``), since both are meaningless
inside a process that has already loaded everything else.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from . import precision as _precision
from . import timing
from .errors import EdgeAffectError
from .evaluate import DEFAULT_LIMIT, SCORED_BATCH, Samples, load_samples, predict, score, score_runtime
from .fileio import atomic_path, read_json, write_json
from .lazy import lazy_import
from .logs import make_progress
from .macs import onnx_node_macs
from .runs import data_drift, load_model, load_run, run_of, writer_lock
from .runtimes.registry import (Artifact, artifact_files, blocked, discover_artifacts, get_runtime, load, reference,
                                refusals, runtime_for)

matplotlib = lazy_import("matplotlib", "plot")
plt = lazy_import("matplotlib.pyplot", "plot")

ROW_KEYS = ("runtime", "precision", "executed_precision", "batch", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput",
            "cold_start_ms", "peak_rss_mb", "size_mb", "metric_name", "metric", "agreement")
EXTRA_KEYS = ("variant", "model", "threads", "agreement_kind", "precision_mix", "int8_coverage", "metric_torch", "metric_samples", "max_abs_diff",
              "speedup_vs_torch", "gflops_per_s", "iterations", "spread", "spread_wide", "path")

DEFAULT_THREADS = 1
"""Intra-op threads per runtime unless ``--threads`` says otherwise. One thread is the count that stays honest on
any machine: every variant of one process holds its own thread pool, and on a busy machine a multi-threaded
runtime waits on preempted siblings (torch eager took 65.7 ms at 2 threads against 8.0 ms at 1 on a loaded
2-core EPYC), so its ratio to another runtime measured the load, not the runtimes."""

SPREAD_LIMIT = 2.0
"""A row whose p99 is above this many times its p50 is flagged: its latencies varied too much (a busy machine,
frequency changes, a too-short budget) for a ratio against another row to mean much."""


@dataclass(frozen=True)
class BenchConfig:
    """Timing knobs: ``budget_s`` of timed inference per variant, split over ``rounds`` interleaved rounds."""

    batches: tuple[int, ...] = (1, 8)
    budget_s: float = 6.0
    rounds: int = 6
    warmup: int = 3
    threads: int | None = DEFAULT_THREADS   # the same intra-op count for every runtime (torch with one inter-op thread)
    isolate: bool = True
    split: str = "val"
    limit: int | None = DEFAULT_LIMIT   # as export parity and the guards score; None: the whole split

    def __post_init__(self):
        if self.rounds < 1 or self.budget_s <= 0 or any(b < 1 for b in self.batches):
            raise EdgeAffectError("bench: rounds, budget and batch sizes must be positive")
        if self.threads is None:   # "not said": the default, never each runtime's own
            object.__setattr__(self, "threads", DEFAULT_THREADS)
        if self.threads < 1:
            raise EdgeAffectError(f"bench: --threads must be >= 1, got {self.threads}")


@dataclass
class _Variant:
    artifact: Artifact
    batch: int
    runtime: Any = None
    feeds: dict[str, np.ndarray] = field(default_factory=dict)
    times: list[float] = field(default_factory=list)
    row: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.artifact.label} bs{self.batch}"


def _open(artifact: Artifact, batch: int, threads: int | None):
    return load(artifact.path, runtime=artifact.runtime, **artifact.entry.bench_options(artifact.precision, batch, threads))


def percentiles(times_s: Sequence[float]) -> dict[str, float]:
    t = np.asarray(times_s) * 1000.0
    return {"p50_ms": float(np.percentile(t, 50)), "p90_ms": float(np.percentile(t, 90)),
            "p99_ms": float(np.percentile(t, 99)), "mean_ms": float(t.mean())}


def time_interleaved(variants: Sequence[_Variant], cfg: BenchConfig, tick=None) -> None:
    """Time the variants interleaved (:mod:`edgeaffect.timing`) with ``cfg``'s budget, rounds and warm-up."""
    timing.time_interleaved(variants, cfg.budget_s, cfg.rounds, cfg.warmup, tick)


def probe(path: str, runtime: str, batch: int, threads: int | None, precision: str = "fp32",
          iterations: int = 3) -> dict[str, float]:
    """Cold start (load + first inference) and peak RSS of one variant, in this process."""
    artifact = Artifact(runtime, precision, Path(path))
    get_runtime(runtime).load_class()  # import the backend before the clock starts
    t0 = time.perf_counter()
    rt = _open(artifact, batch, threads)
    feeds = {t.name: np.random.default_rng(0).random(t.concrete(batch)).astype(t.np_dtype) for t in rt.inputs}
    rt.infer(feeds)
    cold = (time.perf_counter() - t0) * 1000.0
    for _ in range(iterations):
        rt.infer(feeds)
    rt.close()
    return {"cold_start_ms": cold, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """Peak resident memory of this process image (MB).

    Linux: ``VmHWM`` from /proc, which restarts at exec; ``ru_maxrss`` would
    carry the parent's peak into a freshly spawned probe process.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024.0


def probe_isolated(artifact: Artifact, batch: int, threads: int | None) -> dict[str, float]:
    """:func:`probe` in a fresh interpreter, so RSS and cold start belong to this variant alone."""
    args = json.dumps([str(artifact.path), artifact.runtime, batch, threads, artifact.precision])
    root = str(Path(__file__).resolve().parent.parent)
    # -c puts the cwd on sys.path: dropped (this package's root first), so a folder named edgeaffect in the
    # cwd (a bundle's) never runs
    code = (f"import json,os,sys; c = os.getcwd(); sys.path[:] = [{root!r}] + [p for p in sys.path if p not in "
            f"('', '.', c)]; from edgeaffect.bench import probe; print(json.dumps(probe(*json.loads(sys.argv[1]))))")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))  # no empty entry: the cwd
    proc = subprocess.run([sys.executable, "-c", code, args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgeAffectError(f"bench: {artifact.label} failed to load in a fresh process: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def onnx_flops(onnx_path: str | os.PathLike, batch: int = 1) -> int:
    """Multiply-accumulate FLOPs (2 per MAC) of Conv/ConvTranspose/MatMul/Gemm nodes at ``batch``."""
    return 2 * sum(onnx_node_macs(onnx_path, batch).values())


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """The machine a number was measured on (:func:`edgeaffect.precision.machine`)."""
    return _precision.machine(threads)


def select(artifacts: Iterable[Artifact], runtimes: Sequence[str] | None, precisions: Sequence[str] | None) -> list[Artifact]:
    """Artifacts of the chosen runtimes and precisions; torch fp32 is the reference whatever the precisions."""
    return [a for a in artifacts if (not runtimes or a.runtime in runtimes)
            and (not precisions or a.precision in precisions or (a.runtime, a.precision) == (reference(), "fp32"))]


def runnable(chosen: Sequence[Artifact], say=None,
             refused: Mapping[str, str] | None = None) -> tuple[list[Artifact], list[dict[str, str]]]:
    """The artifacts this machine runs in their precision and the accuracy guard did not refuse (``refused``:
    the run's refusals), and the others with the reason (said once each): the demo's and pack's rule."""
    keep, skipped = [], []
    for a in chosen:
        reason = blocked(a, refused)
        if reason:
            skipped.append({"artifact": a.label, "reason": reason})
            if say:
                say(f"skipped {a.label}: {reason}")
        else:
            keep.append(a)
    return keep, skipped


def bench_run(run_dir: str | os.PathLike, runtimes: Sequence[str] | None = None,
              precisions: Sequence[str] | None = None, cfg: BenchConfig = BenchConfig(),
              data: str | os.PathLike | None = None, console=None, show_progress: bool = True,
              verify: bool = True) -> list[dict[str, Any]]:
    """Benchmark every selected artifact of a run (or one exported model file); writes bench.json/csv/png.

    A run is compared with its torch fp32 checkpoint; a bare model file has no torch reference (an
    edge install needs no torch), so its rows carry no agreement or speed-up, which is said once.
    Artifacts inside a run must be the files its manifest lists (``verify``; see ``Run.verify``).
    """
    from rich.markup import escape

    say = (lambda msg: console.print(f"[yellow]{escape(msg)}[/]", highlight=False)) if console is not None else None
    if Path(run_dir).is_file():
        return _bench(plan_file(Path(run_dir), runtimes, precisions, data, say), cfg, console, show_progress, verify, say)
    with writer_lock(run_dir, "edgeaffect bench", on_stale=say):
        return _bench(plan_run(Path(run_dir), runtimes, precisions, data, say), cfg, console, show_progress, verify, say)


def _bench(plan: "_Plan", cfg: BenchConfig, console, show_progress: bool, verify: bool, say) -> list[dict[str, Any]]:
    """Verify, load, time and write: the stages of one bench call."""
    if verify:
        verify_artifacts(plan.artifacts)
    check_writable(plan.root)
    chosen, skipped = runnable(plan.artifacts, say, refusals(plan.root))
    if say and cfg.threads > _precision.physical_cores():
        say(f"--threads {cfg.threads} is more than this machine's {_precision.physical_cores()} physical cores: "
            "the runtimes' threads compete for them and the timings measure that")
    if not chosen:
        raise EdgeAffectError(f"nothing this machine can benchmark in {plan.root}: "
                              + "; ".join(f"{s['artifact']}: {s['reason']}" for s in skipped))
    samples = load_samples(plan.spec, plan.data, cfg.split, limit=cfg.limit, dataset_kwargs=plan.dataset_kwargs)
    if plan.run is not None and (note := data_drift(plan.run, plan.data)):
        (say or logging.getLogger("edgeaffect").warning)(f"warning: {note}")
    reference = plan.reference(samples, cfg.threads)
    metric_torch = score(plan.spec, reference, samples.target) if reference is not None else None
    variants = [_Variant(a, b) for a in chosen for b in cfg.batches]
    measure(variants, samples, reference, plan.spec, cfg, console, show_progress)
    flops = _flops_or_none(plan.onnx)
    rows = make_rows(variants, plan.root, flops, plan.spec.metric, metric_torch,
                     len(samples) if samples.target is not None else None, cfg.threads, model=plan.spec.name)
    meta = {"machine": machine_info(cfg.threads), "model": plan.spec.name, "samples": samples.source,
            "config": {**cfg.__dict__, "batches": list(cfg.batches)}, "flops_per_sample": flops,
            "metric_torch": metric_torch, "skipped": skipped}
    write_outputs(plan.root, rows, meta, say=say, prefix=plan.prefix)
    if plan.run is not None:
        plan.run.update(bench={**meta, "rows": len(rows)})
    return rows


@dataclass
class _Plan:
    """What one bench call measures: the artifacts, their spec and data, and the torch reference if any."""

    artifacts: list[Artifact]
    spec: Any
    root: Path                 # where bench.json goes
    prefix: str = ""           # "" in a run; "<file>." beside a bare model file
    data: Any = None
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    run: Any = None
    onnx: Path | None = None
    with_torch: bool = False

    def reference(self, samples: Samples, threads: int | None) -> dict[str, np.ndarray] | None:
        """Torch fp32 outputs on ``samples`` (a run, where torch is installed)."""
        if not self.with_torch:
            return None
        runtime = get_runtime(reference()).load_class()
        with runtime.from_module(load_model(self.run.checkpoint), threads=threads) as ref_rt:
            return predict(ref_rt, samples, SCORED_BATCH)


def check_writable(folder: Path) -> None:
    """Fail before minutes of measuring, not at the write: can bench.json go into ``folder``?"""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".bench-probe-"):
            pass
    except OSError as exc:
        raise EdgeAffectError(f"bench cannot write its results into {folder}: {exc.strerror or exc}; "
                              f"make it writable or copy the run elsewhere") from None


def verify_artifacts(artifacts: Iterable[Artifact]) -> None:
    """Each artifact inside a run (and the files that travel with it) checked against that run's manifest."""
    for a in artifacts:
        run = run_of(a.path)
        if run is not None:
            run.verify(*artifact_files(a.path))


def plan_run(path: Path, runtimes, precisions, data, say) -> _Plan:
    """A run's artifacts; without torch installed, no torch row and no reference (said once)."""
    run = load_run(path)
    with_torch = not get_runtime(reference()).missing()
    if not with_torch:
        if runtimes and reference() in runtimes and len(runtimes) == 1:
            get_runtime(reference()).load_class()   # the one line naming the extra
        runtimes = [r for r in (runtimes or ()) if r != reference()] or None
        if say:
            say("torch is not installed (pip install 'edgeaffect[train]'): benched without the torch reference row")
    chosen = choose(run.path, runtimes, precisions, () if with_torch else (reference(),))
    return _Plan(chosen, run.spec, run.path, "", data or run.data_dir, run.dataset_kwargs, run, run.path / "model.onnx",
                 with_torch)


def plan_file(path: Path, runtimes, precisions, data, say) -> _Plan:
    """One exported file, opened by the runtime its suffix names (or the one asked for)."""
    asked = [r for r in (runtimes or ()) if r != reference()]
    if len(asked) > 1:
        raise EdgeAffectError(f"a model file runs on one runtime; got --runtime {','.join(asked)}")
    name = asked[0] if asked else runtime_for(path)
    with load(path, runtime=name, precision=(precisions or [None])[0]) as rt:
        spec, stored = rt.spec, rt.precision
    if spec is None:
        raise EdgeAffectError(f"{path} carries no model spec (export it with edgeaffect so the task travels with it)")
    _precision.check_precisions(precisions or ())
    artifacts = [Artifact(name, p, path) for p in (precisions or [stored])]
    if say:
        say(f"{path.name} is benched without a torch reference (no agreement or speed-up columns)")
    return _Plan(artifacts, spec, path.parent, f"{path.name}.", data, onnx=path if path.suffix == ".onnx" else None)


def choose(run_path: Path, runtimes: Sequence[str] | None, precisions: Sequence[str] | None,
           drop: Sequence[str] = ()) -> list[Artifact]:
    """The run's artifacts of the asked runtimes and precisions (less the ``drop`` runtimes); an asked
    runtime without one is an error."""
    if precisions:
        _precision.check_precisions(precisions)
    found = discover_artifacts(run_path, precisions or ())
    chosen = [a for a in select(found, runtimes, precisions) if a.runtime not in drop]
    for name in runtimes or ():
        get_runtime(name)  # unknown names are an error
        if not any(a.runtime == name for a in chosen):
            raise EdgeAffectError(f"{run_path} has no {name} artifact"
                                  + (f" in precision {','.join(precisions)}" if precisions else "")
                                  + f"; run `edgeaffect export {run_path}` first")
    if not chosen:
        raise EdgeAffectError(f"nothing to benchmark in {run_path} (found: {', '.join(a.label for a in found) or 'none'})")
    for a in chosen:
        if get_runtime(a.runtime).missing():
            get_runtime(a.runtime).load_class()  # raises the MissingDependencyError with the pip extra
    return chosen


def measure(variants: Sequence[_Variant], samples: Samples, reference: Mapping[str, np.ndarray], spec,
            cfg: BenchConfig, console=None, show_progress: bool = True) -> None:
    """Load every variant (cold start, RSS, metric, agreement, executed precision), then time them interleaved."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    steps = len(variants) * (3 if cfg.isolate else 2) + cfg.rounds * len(variants)
    with make_progress(console, "bench", TextColumn("[bold]bench[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeRemainingColumn(), disable=not show_progress, transient=True) as bar:
        task = bar.add_task("loading", total=steps)
        scored: dict[Artifact, dict[str, Any]] = {}

        def tick(desc: str | None = None):
            bar.update(task, advance=1, description=desc or bar.tasks[task].description)

        try:
            for v in variants:
                if cfg.isolate:
                    v.row.update(probe_isolated(v.artifact, v.batch, cfg.threads))
                    tick(f"cold start {v.label}")
                t0 = time.perf_counter()
                v.runtime = _open(v.artifact, v.batch, cfg.threads)
                v.feeds = samples.head(v.batch)
                v.runtime.infer(v.feeds)
                if not cfg.isolate:
                    v.row.update(cold_start_ms=(time.perf_counter() - t0) * 1000.0, peak_rss_mb=peak_rss_mb())
                v.row.update(executed_precision=v.runtime.executed_precision, precision_mix=v.runtime.precision_mix())
                tick(f"accuracy {v.label}")
                if v.artifact not in scored:   # once per file: its metric, and its int8 coverage (per sample)
                    scored[v.artifact] = {**score_artifact(v, samples, reference, spec, cfg.threads),
                                          "int8_coverage": v.runtime.int8_coverage() if v.artifact.precision == "int8"
                                          else None}
                v.row.update(scored[v.artifact])
                tick(f"loaded {v.label}")
            bar.update(task, description="timing (interleaved rounds)")
            time_interleaved(variants, cfg, tick)
        finally:
            for v in variants:
                if v.runtime is not None:
                    v.runtime.close()


def score_artifact(v: _Variant, samples: Samples, reference, spec, threads: int | None) -> dict[str, Any]:
    """An artifact's metric and agreement as eval, export parity and the guard score it (``evaluate.score_runtime``,
    compiled for ``SCORED_BATCH``): one number per artifact, the same on every row whatever batch the row times."""
    rt = v.runtime if v.batch == SCORED_BATCH else _open(v.artifact, SCORED_BATCH, threads)
    try:
        ev = score_runtime(rt, samples, spec, reference)
    finally:
        if rt is not v.runtime:
            rt.close()
    return {"metric": ev.metric, "agreement": ev.comparison.get("agreement"),
            "agreement_kind": ev.comparison.get("kind"), "max_abs_diff": ev.comparison.get("max_abs_diff")}


def make_rows(variants: Sequence[_Variant], run_path: Path, flops: int | None, metric_name: str,
              metric_torch: float | None, metric_samples: int | None, threads: int | None,
              model: str | None = None) -> list[dict[str, Any]]:
    """One row per variant; speed-ups against torch fp32 eager at the same batch; ``spread`` = p99 / p50."""
    for v in variants:
        v.row.update(percentiles(v.times))
    torch_ms = {v.batch: v.row["mean_ms"] for v in variants
                if (v.artifact.runtime, v.artifact.precision, v.artifact.variant) == (reference(), "fp32", "")}
    rows = []
    for v in variants:
        a, st = v.artifact, v.row
        ref_ms = torch_ms.get(v.batch)
        rows.append({
            "runtime": a.runtime, "precision": a.precision, "executed_precision": st["executed_precision"],
            "batch": v.batch,
            "p50_ms": st["p50_ms"], "p90_ms": st["p90_ms"], "p99_ms": st["p99_ms"], "mean_ms": st["mean_ms"],
            "throughput": v.batch * 1000.0 / st["mean_ms"],
            "cold_start_ms": st.get("cold_start_ms"), "peak_rss_mb": st.get("peak_rss_mb"), "size_mb": _size_mb(a.path),
            "metric_name": metric_name, "metric": st.get("metric"), "agreement": st["agreement"],
            "agreement_kind": st.get("agreement_kind"),
            "variant": a.variant, "model": model, "threads": threads, "precision_mix": st["precision_mix"],
            "int8_coverage": st.get("int8_coverage"), "metric_torch": metric_torch,
            "metric_samples": metric_samples, "max_abs_diff": st["max_abs_diff"],
            "speedup_vs_torch": (ref_ms / st["mean_ms"]) if ref_ms else None,
            "gflops_per_s": (flops * v.batch / (st["mean_ms"] / 1000.0) / 1e9) if flops else None,
            "iterations": len(v.times), "spread": st["p99_ms"] / st["p50_ms"],
            "spread_wide": st["p99_ms"] > SPREAD_LIMIT * st["p50_ms"], "path": os.path.relpath(a.path, run_path),
        })
    return rows


def int8_notes(rows: Sequence[Mapping[str, Any]], min_coverage: float = 0.9) -> list[str]:
    """One line per INT8 row that does not pay: less than ``min_coverage`` of its MACs in int8, or slower than
    the same runtime's fp32/bf16 row at the same batch on this machine (then ``demo --runtime auto`` takes
    the faster one)."""
    notes = []
    for r in rows:
        if r["precision"] != "int8":
            continue
        cov = r.get("int8_coverage")
        if cov and cov["macs"] < min_coverage:
            notes.append(f"{r['runtime']} int8 batch {r['batch']}: only {cov['macs']:.0%} of the MACs run in int8 "
                         f"({cov['float_layers']} float layer(s))")
        faster = [f for f in rows if f["runtime"] == r["runtime"] and f["batch"] == r["batch"]
                  and f["precision"] in ("fp32", "bf16") and f["p50_ms"] < r["p50_ms"]]
        for f in faster:
            notes.append(f"{r['runtime']} int8 batch {r['batch']}: {r['p50_ms']:.2f} ms p50, slower than its "
                         f"{f['precision']} ({f['p50_ms']:.2f} ms) on this CPU")
    return notes


def _flops_or_none(onnx_path: Path | None) -> int | None:
    """FLOPs from the ONNX graph; None for a file that is not ONNX (an OpenVINO IR benched alone)."""
    if onnx_path is None or not onnx_path.exists():
        return None
    try:
        return onnx_flops(onnx_path) or None
    except Exception:  # noqa: BLE001 - FLOP counting is informative only
        return None


def _size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in artifact_files(path) if p.suffix != ".json") / 1e6


def write_outputs(run_dir: Path, rows: list[dict[str, Any]], meta: Mapping[str, Any], say=None,
                  prefix: str = "") -> None:
    """bench.json (``{"machine", ..., "rows"}``), bench.csv and bench.png, each written atomically.

    The PNG needs the ``plot`` extra; without it the JSON and CSV are written and one line says so.
    """
    write_json(run_dir / f"{prefix}bench.json", {**meta, "rows": rows})
    with atomic_path(run_dir / f"{prefix}bench.csv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(ROW_KEYS + EXTRA_KEYS))
            w.writeheader()
            for r in rows:
                w.writerow({k: _csv_cell(r.get(k)) for k in w.fieldnames})
    machine = meta.get("machine", {})
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if say:
            say("bench.png not written: matplotlib is not installed (pip install 'edgeaffect[plot]')")
        return
    threads = machine.get("threads")
    plot(rows, run_dir / f"{prefix}bench.png",
         title=" · ".join(str(p) for p in (meta.get("model"), threads_text(threads) if threads else None,
                                            machine.get("cpu"), machine.get("date")) if p))


def threads_text(threads: int) -> str:
    """How the table title and the plot say the thread count."""
    return f"{threads} thread{'s' if threads != 1 else ''} per runtime"


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a bench.json (also of the older list-of-rows form)."""
    data = read_json(path)
    return data if isinstance(data, list) else list(data["rows"])


def plot(rows: Sequence[Mapping[str, Any]], path: Path, title: str = "") -> Path:
    """Latency (p50) against the task metric, one panel per batch, one point per runtime/precision."""
    matplotlib.use("Agg")
    if not rows:
        raise EdgeAffectError("bench: nothing to plot")
    batches = sorted({r["batch"] for r in rows})
    key = next(k for k in ("metric", "agreement", "throughput") if all(r.get(k) is not None for r in rows))
    ylabel = {"metric": f"{rows[0]['metric_name']} (eval split)", "agreement": "agreement with torch",
              "throughput": "items/s"}[key]
    fig, axes = plt.subplots(1, len(batches), figsize=(1.0 + 4.4 * len(batches), 4.4), dpi=120, sharey=True,
                             squeeze=False)
    colors = {name: f"C{i % 10}" for i, name in enumerate(sorted({_point_name(r) for r in rows}))}
    for ax, batch in zip(axes[0], batches):
        _plot_panel(ax, [r for r in rows if r["batch"] == batch], key, batch, colors)
    ys = [r[key] for r in rows]
    lo, hi = min(ys), max(ys)
    if hi - lo < 0.05:  # near-identical scores: show them as equal rather than magnify float noise
        mid = (hi + lo) / 2
        axes[0][0].set_ylim(mid - 0.05, mid + 0.05)
    axes[0][0].set_ylabel(ylabel)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def _point_name(r: Mapping[str, Any]) -> str:
    return f"{(r.get('variant') + '/') if r.get('variant') else ''}{r['runtime']}-{r['precision']}"


def _plot_panel(ax, pts: Sequence[Mapping[str, Any]], key: str, batch: int, colors: Mapping[str, str]) -> None:
    """One batch: a labelled point per runtime/precision, same colour in every panel (hollow: spread flagged)."""
    from matplotlib.ticker import FuncFormatter

    for i, r in enumerate(sorted(pts, key=lambda r: r["p50_ms"])):
        y, name, wide = r[key], _point_name(r), r.get("spread_wide")
        ax.scatter(r["p50_ms"], y, s=40, color=colors[name], facecolors="none" if wide else colors[name])
        ax.annotate(name + (" !" if wide else ""), (r["p50_ms"], y), textcoords="offset points",
                    xytext=(5, 4 + 12 * (i % 4)), fontsize=8, arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.6"})
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))   # 20, not 2x10^1
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))
    ax.set_xlabel(f"p50 latency, batch {batch} (ms, log)")
    ax.set_title(f"batch {batch}", fontsize=9)
    ax.grid(True, alpha=0.3)


def _agreement_kind(rows: Sequence[Mapping[str, Any]]) -> str:
    """What the agree column means for this model (``evaluate.compare``)."""
    kinds = {r.get("agreement_kind") for r in rows} - {None}
    return ", ".join(sorted(kinds)) if kinds else "top-1 for classes, label decisions, Pearson r for values"


def table(rows: Sequence[Mapping[str, Any]], title: str = "edgeaffect bench"):
    """A rich Table of the rows (what ``edgeaffect bench`` prints); rows with a wide spread are marked ``!``."""
    from rich.table import Table

    torch_metric = next((r.get("metric_torch") for r in rows if r.get("metric_torch") is not None), None)
    n = next((r.get("metric_samples") for r in rows if r.get("metric_samples")), None)
    caption = (f"torch FP32 {rows[0]['metric_name']}: {torch_metric:.4f}" + (f" on {n} samples" if n else "") + " · "
               if rows and torch_metric is not None else "") \
        + "×torch = speed-up over torch eager at the same batch; agree = agreement with torch (" + _agreement_kind(rows) + ")"
    shaky = unreliable_ratios(rows)
    if any(r.get("spread_wide") for r in rows):
        caption += (f"\n! p99 above {SPREAD_LIMIT:g}× p50 (this row's, or for ×torch its torch row's): latency varied "
                    "too much for the ratio to mean much (a busy machine?); rerun on an idle one or with a longer --budget")
    t = Table(title=title, caption=caption)
    cols = [("runtime", "runtime", "{}"), ("precision", "precision", "{}"), ("ran as", "executed_precision", "{}"),
            ("batch", "batch", "{}"),
            ("p50 ms", "p50_ms", "{:.2f}"), ("p90 ms", "p90_ms", "{:.2f}"), ("p99 ms", "p99_ms", "{:.2f}"),
            ("items/s", "throughput", "{:.1f}"), ("×torch", "speedup_vs_torch", "{:.2f}"),
            ("GFLOP/s", "gflops_per_s", "{:.1f}"), ("cold ms", "cold_start_ms", "{:.0f}"),
            ("RSS MB", "peak_rss_mb", "{:.0f}"), ("size MB", "size_mb", "{:.2f}"), ("metric", "metric", "{:.4f}"),
            ("agree", "agreement", "{:.3f}")]
    for head, _, _ in cols:
        t.add_column(head, justify="left" if head in ("runtime", "precision", "ran as") else "right")
    for i, r in enumerate(rows):
        cells = []
        for _, key, fmt in cols:
            v = r.get(key)
            if key == "runtime" and r.get("variant"):
                v = f"{r['variant']}/{v}"
            cell = "-" if v is None else fmt.format(v)
            if v is not None and ((key == "p99_ms" and r.get("spread_wide")) or (key == "speedup_vs_torch" and i in shaky)):
                cell = f"[bold yellow]{cell} ![/]"
            cells.append(cell)
        t.add_row(*cells)
    return t


def unreliable_ratios(rows: Sequence[Mapping[str, Any]]) -> set[int]:
    """Indices of rows whose ×torch rests on a flagged spread: the row's own or its torch row's at that batch."""
    wide_torch = {r["batch"] for r in rows if r.get("spread_wide")
                  and (r["runtime"], r["precision"], r.get("variant") or "") == (reference(), "fp32", "")}
    return {i for i, r in enumerate(rows) if r.get("speedup_vs_torch") is not None
            and (r.get("spread_wide") or r["batch"] in wide_torch)}
