"""``edgeaffect quickstart``: the whole path on the embedded synthetic default, in one command."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from . import app
from .bench import print_bench
from .common import console
from .export import print_export_report


@app.command("quickstart")
def quickstart(
    data: Annotated[Path, typer.Option("--data", help="Where the synthetic Hume-Reaction set goes (reused if present).")] = Path("data/eri"),
    out: Annotated[Path, typer.Option("--out", help="Run directory.")] = Path("runs/eri/quickstart"),
    clips: Annotated[int, typer.Option("--clips", min=13, help="Clips to generate (13 or more: `export --int8` calibrates on 8 train clips).")] = 200,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Epochs per training stage.")] = 8,
    frames: Annotated[int, typer.Option("--frames", min=2)] = 16,
    face_size: Annotated[int, typer.Option("--face-size", min=32)] = 64,
    workers: Annotated[int, typer.Option("--workers", min=1)] = 2,
    bench_budget: Annotated[float, typer.Option("--bench-budget", min=0.1, help="Seconds of timed inference per benchmark variant.")] = 2.0,
) -> None:
    """Generate a synthetic ERI set, train audio/video/fused models, then export and benchmark them.

    A lighter configuration than `train eri`'s defaults (16 frames of 64 px) so the whole path
    finishes in minutes on a 2-core CPU.

    Example:  edgeaffect quickstart --data data/eri --out runs/eri/quickstart
    """
    from ..data.synth.eri import ERISynthConfig, generate_eri
    from ..runs import writer_lock
    from ..train.eri import ERITrainOptions
    from ..train.recipe import get_recipe

    t0 = time.perf_counter()
    if (data / "data_info.csv").exists():
        console.print(f"[dim]using the dataset already in {data}[/]")
    else:
        generate_eri(data, ERISynthConfig(clips=clips, seed=0), workers=workers, console=console,
                     overwrite=True)   # a set of ours without its data_info.csv was interrupted: redone
    opt = ERITrainOptions(data=data, epochs=epochs, batch_size=16, lr=2e-3, seed=0, warmup_epochs=1,
                          model_overrides={"frames": frames, "face_size": face_size}, workers=workers)
    with writer_lock(out, "edgeaffect quickstart"):
        # the quickstart run is this command's own output, rebuilt each time (only what its manifest proves is
        # the run's is removed, once the data have been read)
        for stage, m in get_recipe("eri").run(opt, out, console=console, overwrite=True).metrics.items():
            console.print(f"{stage:>6}: val mean Pearson {m['val_pearson']:.4f}")
        _export_and_bench(out, budget_s=bench_budget)
    console.print(f"[green]done in {time.perf_counter() - t0:.0f} s[/]; results in {out} "
                  "(manifest.json, checkpoint.pt, model.onnx, openvino/, bench.json/csv/png)")


def _export_and_bench(out: Path, budget_s: float) -> None:
    """Export the fused run to every installed format, then benchmark it against torch eager."""
    from rich.markup import escape

    from ..bench import BenchConfig, bench_run
    from ..export import export_run
    with console.status("exporting") as status:
        report = export_run(out, progress=lambda msg: status.update(escape(msg)))
    print_export_report(report)
    # One intra-op thread per runtime: a fair comparison that stays stable on a busy machine, where
    # multi-threaded torch eager collapses (measured: 28.9 ms at 1 thread vs 230 ms at 2 under load 7).
    print_bench(bench_run(out, cfg=BenchConfig(budget_s=budget_s, rounds=4, threads=1), console=console), out)
