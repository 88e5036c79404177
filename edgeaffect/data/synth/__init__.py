"""Synthetic datasets written in the real layouts (rendered faces and bodies, voice-like audio)."""


def write_clips(write_one, jobs: list, workers: int, console, title: str) -> None:
    """Run ``write_one(job)`` for every job under a progress bar, in ``workers`` processes when > 1."""
    from concurrent.futures import ProcessPoolExecutor

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(f"[bold]{title}[/]"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console) as progress:
        bar = progress.add_task("clips", total=len(jobs))
        if workers > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for _ in pool.map(write_one, jobs, chunksize=2):
                    progress.advance(bar)
        else:
            for job in jobs:
                write_one(job)
                progress.advance(bar)
