"""``edgeaffect bench``: latency, throughput, memory and accuracy of every exported artifact, one table."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import EdgeAffectError
from ..precision import check_precisions, cpu_name
from . import app
from .common import RunArg, TrustOpt, console, say_next, split_csv, table_console


@app.command("bench")
def bench_cmd(
    run: RunArg,
    runtime: Annotated[Optional[str], typer.Option(
        "--runtime", "-r", help="Comma-separated runtimes: onnxruntime,openvino,tensorrt,torch (default: all found).")] = None,
    batch: Annotated[str, typer.Option("--batch", "-b", help="Comma-separated batch sizes.")] = "1,8",
    precision: Annotated[Optional[str], typer.Option(
        "--precision", "-p", help="Comma-separated precisions: fp32,bf16,fp16,int8 (default: every file found; bf16 "
                                   "runs the fp32 IR/checkpoint in bf16 and is benched when named). A precision this "
                                   "machine cannot run is skipped with the reason.")] = None,
    budget: Annotated[float, typer.Option("--budget", min=0.1, help="Seconds of timed inference per variant.")] = 6.0,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Interleaved rounds the budget is split into.")] = 6,
    threads: Annotated[int, typer.Option("--threads", min=1, help="Intra-op threads, the same for every runtime (1 stays "
                                                               "fair on a busy machine; use the cores of an idle device).")] = 1,
    split: Annotated[str, typer.Option("--split", help="Dataset split the metric is computed on.")] = "val",
    limit: Annotated[int, typer.Option("--limit", min=0, help="Eval samples, evenly spaced over the split (0: all of it); "
                                                               "export parity and the guards score the same default.")] = 256,
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="Dataset root (default: the run's).")] = None,
    no_isolate: Annotated[bool, typer.Option(
        "--no-isolate", help="Measure cold start and RSS in this process (faster, less exact).")] = False,
    no_verify: Annotated[bool, typer.Option(
        "--no-verify", help="Bench files that differ from what the run's manifest lists (a deliberate edit).")] = False,
    trust: TrustOpt = None,
) -> None:
    """Benchmark a run's artifacts: p50/p90/p99 latency, throughput, cold start, peak RSS, size, metric, agreement.

    Writes bench.json (with the machine: CPU, cores, threads, ISA flags, runtime versions), bench.csv and
    bench.png into the run directory. Variants are timed in interleaved rounds so machine drift hits all
    alike. Torch (eager FP32) is the reference. Each row runs the precision it names and shows what the
    runtime reports it ran as ("ran as").

    Example:  edgeaffect bench runs/eri/exp1 --runtime onnxruntime,openvino,torch --batch 1,8
    Every runtime gets the same --threads (printed in the title); a row whose p99 is above twice its p50 is
    marked "!" (its ratios mean little: rerun on an idle machine or with a longer --budget).

    Example:  edgeaffect bench runs/eri/exp1 --precision fp32,bf16,int8 --threads 4
    Example:  edgeaffect bench model.onnx --data data/eri   (an exported file: no torch needed, no torch row)
    """
    from ..bench import BenchConfig, bench_run
    from ..runtimes.registry import reference
    from ..signing import check_trust

    check_trust(run, trust)
    try:
        batches = tuple(int(b) for b in split_csv(batch))
    except ValueError:
        raise EdgeAffectError(f"--batch takes comma-separated integers, got {batch!r}") from None
    cfg = BenchConfig(batches=batches, budget_s=budget, rounds=rounds, threads=threads, isolate=not no_isolate,
                      split=split, limit=limit or None)
    precisions = check_precisions(split_csv(precision)) or None
    runtimes = split_csv(runtime) or None
    if runtimes and reference() not in runtimes:
        runtimes = [*runtimes, reference()]  # the reference row every speed-up is computed against
    print_bench(bench_run(run, runtimes, precisions, cfg, data=data, console=console, verify=not no_verify), Path(run))
    say_next(f"edgeaffect demo --model {run} --source 0   (a camera; no camera: edgeaffect data clip clip.mp4)")


def print_bench(rows, run: Path) -> None:
    """The results table on stdout, and where the files went (beside a bare model file: ``<file>.bench.*``)."""
    from ..bench import int8_notes, table, threads_text
    folder, prefix = (run.parent, f"{run.name}.") if run.is_file() else (run, "")
    model = next((r["model"] for r in rows if r.get("model")), None)
    threads = next((r["threads"] for r in rows if r.get("threads")), None)
    parts = [f"{run.name} ({model})" if model and model != run.name else run.name, cpu_name(),
             threads_text(threads) if threads else None]
    table_console().print(table(rows, title="edgeaffect bench · " + " · ".join(p for p in parts if p)))
    for note in int8_notes(rows):
        console.print(f"[yellow]int8:[/] {note}", highlight=False)
    png = f", {prefix}bench.png" if (folder / f"{prefix}bench.png").exists() else ""
    console.print(f"[dim]wrote {folder / f'{prefix}bench.json'}, {prefix}bench.csv{png}[/]")
