"""``edgeaffect eval RUN``: the task metric of a trained run, clean and with inputs corrupted.

Generic over every task: conditions name the model's inputs (from its spec), the task supplies
the dataset and the metric, so a missing-modality study needs no per-model code.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import app
from .common import DeviceOpt, NoVerifyOpt, RunArg, SeedOpt, console

MODES = ("zeros", "noise", "addnoise")


def parse_conditions(text: str | None, input_names: list[str]) -> list[dict[str, str]]:
    """``"audio=zeros|noise,video=zeros"`` -> [{audio: zeros}, {audio: noise}, {video: zeros}].

    ``,`` separates conditions, ``|`` lists alternative modes for one input, ``+`` corrupts several
    inputs in one condition (``audio=zeros+video=noise``).  The clean condition is always first.
    """
    from ..errors import EdgeAffectError

    conditions: list[dict[str, str]] = [{}]
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        combos: list[dict[str, str]] = [{}]
        for item in part.split("+"):
            name, sep, modes = item.partition("=")
            name = name.strip()
            if not sep or not name or not modes.strip():
                raise EdgeAffectError(f"--corrupt: {item!r} is not INPUT=MODE (e.g. audio=zeros)")
            if name not in input_names:
                raise EdgeAffectError(f"--corrupt: the model has no input {name!r}; its inputs are {', '.join(input_names)}")
            alts = [m.strip() for m in modes.split("|")]
            bad = [m for m in alts if m not in MODES]
            if bad:
                raise EdgeAffectError(f"--corrupt: unknown mode {bad[0]!r} for {name}; modes are {', '.join(MODES)}")
            combos = [{**c, name: m} for c in combos for m in alts]
        conditions.extend(c for c in combos if c not in conditions)
    return conditions


def describe(condition: dict[str, str]) -> str:
    return "+".join(f"{k}={v}" for k, v in condition.items()) or "clean"


def corruption(condition: dict[str, str], seed: int):
    """A feeds transform: the named inputs become zeros, N(0, 1) noise, or get N(0, 1) added (deterministic).

    The three corruptions the RAVDESS fusion reference evaluates with; NumPy only, so an exported model
    is corrupted the same way on a torch-free install.
    """
    import numpy as np

    rng = np.random.default_rng(seed)

    def transform(feeds: dict) -> dict:
        out = dict(feeds)
        for name, mode in condition.items():
            x = np.asarray(out[name])
            if mode == "zeros":
                out[name] = np.zeros_like(x)
            else:
                noise = rng.standard_normal(x.shape).astype(x.dtype)
                out[name] = noise if mode == "noise" else x + noise
        return out

    return transform


@app.command("eval")
def eval_cmd(
    run: RunArg,
    corrupt: Annotated[Optional[str], typer.Option("--corrupt", help="Conditions INPUT=MODE (zeros, noise, addnoise), e.g. audio=zeros|noise,video=zeros "
                                                                 "('|' alternatives, '+' together).")] = None,
    split: Annotated[str, typer.Option("--split", help="Dataset split to score (test, val, ...).")] = "test",
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="Dataset root (default: the one the run was trained on; "
                                                                      "required for an exported model file).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 16,
    seed: SeedOpt = 0,
    device: DeviceOpt = "cpu",
    precision: Annotated[str, typer.Option("--precision", help="fp32 (f32, no autocast) or bf16 (torch autocast, where the "
                                                               "CPU has native bf16) for a run; an exported file runs as it "
                                                               "is stored unless named. INT8/fp16 artifacts: `edgeaffect bench --precision`.")] = "fp32",
    no_verify: NoVerifyOpt = False,
) -> None:
    """Score a run's model (or an exported model file) on a split, clean and with named inputs zeroed or noised.

    Example:  edgeaffect eval runs/ravdess/exp1 --corrupt audio=zeros|noise,video=zeros
    Example:  edgeaffect eval runs/eri/exp1 --split val --precision bf16
    Example:  edgeaffect eval model.int8.onnx --data data/eri --split val   (no torch needed)
    """
    from ..precision import check_precisions

    check_precisions([precision])
    from ..errors import EdgeAffectError

    with _open_for_eval(Path(run), precision, device, not no_verify) as (rt, spec, recorded, kw, r, trained):
        conditions = parse_conditions(corrupt, spec.input_names)
        root = data or recorded
        if root is None:
            raise EdgeAffectError(f"{run} does not record its dataset; pass --data")
        _warn_data_drift(trained, root)
        rows, n = _score_conditions(rt, spec, Path(root), split, kw, conditions, batch_size, seed, precision)
    _print_eval(spec, split, n, precision, rows)
    typer.echo("\n".join(f"{name}\t{value:.6f}" for name, value in rows))   # printed before the manifest write
    if r is not None:
        from ..runs import load_run, writer_lock

        with writer_lock(r.path, "edgeaffect eval"):   # the manifest as it is now, not as it was at the start
            r = load_run(r.path)
            earlier = r.manifest.get("eval", {}).get(split, {})   # conditions from earlier calls are kept
            r.update(eval={split: {**earlier, **{name: value for name, value in rows}}})


def _warn_data_drift(run, root) -> None:
    """One line when the data scored are not the dataset the run was trained on (``runs.data_drift``)."""
    from rich.markup import escape

    from ..runs import data_drift

    note = data_drift(run, root) if run is not None else None
    if note:
        console.print(f"[yellow]warning: {escape(note)}[/]", highlight=False)


@contextlib.contextmanager
def _open_for_eval(target: Path, precision: str, device: str, verify: bool):
    """(runtime, spec, data root, reader options, run or None, the run the model was trained in or None):
    torch for a run, the file's runtime for a file."""
    from ..errors import EdgeAffectError
    from ..precision import unsupported
    from ..runs import run_of
    from ..runtimes.registry import artifact_files, load

    owner = run_of(target if target.is_file() else target / "manifest.json") if verify else None
    if owner is not None:
        owner.verify(*artifact_files(target if target.is_file() else owner.checkpoint))
    if target.is_file():
        with load(target, **({"precision": precision} if precision != "fp32" else {})) as rt:
            yield rt, rt.spec, None, {}, None, owner
        return
    from ..runs import load_run

    reason = unsupported("torch", precision, device=device)
    if reason:
        raise EdgeAffectError(f"eval --precision {precision}: {reason} (eval runs the torch model; "
                              f"`edgeaffect bench RUN --precision {precision}` scores exported artifacts)")
    r = load_run(target)
    with load(r.checkpoint, runtime="torch", precision=precision, device=device) as rt:
        yield rt, r.spec, r.data_dir, r.dataset_kwargs, r, r


def _score_conditions(rt, spec, root, split, kw, conditions, batch_size, seed, precision):
    """The task metric per condition over the whole split."""
    import inspect

    from ..evaluate import predict_split, score
    from ..tasks import get_task

    task = get_task(spec.task)
    if "console" in inspect.signature(task.dataset).parameters:
        kw = {**kw, "console": console}
    dataset = task.dataset(root, split, spec, **kw)
    outputs, target = predict_split(rt, dataset, spec, split, str(root), batch_size,
                                    [corruption(c, seed) for c in conditions])
    tag = "" if precision == "fp32" else f"@{precision}"
    return [(describe(c) + tag, score(spec, out, target)) for c, out in zip(conditions, outputs)], len(target)


def _print_eval(spec, split: str, n: int, precision: str, rows) -> None:
    from rich.table import Table

    from ..tasks import get_task

    task = get_task(spec.task)
    clean = rows[0][1]
    table = Table(title=f"{spec.name} on {split} ({n} samples, {precision})")
    table.add_column("condition")
    table.add_column(task.metric, justify="right")
    table.add_column("change", justify="right")
    for name, value in rows:
        delta = (value - clean) / task.metric_scale if task.metric_scale else value - clean
        unit = " pts" if task.metric_scale == 0.01 else ""
        table.add_row(name, f"{value:.4f}", "-" if name == rows[0][0] else f"{delta:+.1f}{unit}")
    console.print(table)
