"""``edgeaffect eval RUN``: the task metric of a trained run, clean and with inputs corrupted.

Generic over every task: conditions name the model's inputs (from its spec), the task supplies
the dataset and the metric, so a missing-modality study needs no per-model code.
"""
from __future__ import annotations

import contextlib
import inspect
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import EdgeAffectError
from ..fileio import write_json
from ..precision import check_precisions
from . import app
from .common import DeviceOpt, NoVerifyOpt, RunArg, SeedOpt, TrustOpt, console

MODES = ("zeros", "noise", "addnoise")


def parse_conditions(text: str | None, input_names: list[str]) -> list[dict[str, str]]:
    """``"audio=zeros|noise,video=zeros"`` -> [{audio: zeros}, {audio: noise}, {video: zeros}].

    ``,`` separates conditions, ``|`` lists alternative modes for one input, ``+`` corrupts several
    inputs in one condition (``audio=zeros+video=noise``).  The clean condition is always first.
    """
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
    split: Annotated[Optional[str], typer.Option("--split", help="Dataset split to score (default: test where the dataset has one, "
                                                                 "else val, said once).")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="Dataset root (default: the one the run was trained on, also for "
                                                                      "a model file inside a run; required for a bare model file).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="The batch the model runs in (default 8: the batch bench, export "
                                                                        "parity and the INT8 guard score in, so they print the same number).")] = 8,
    seed: SeedOpt = 0,
    device: DeviceOpt = "cpu",
    precision: Annotated[Optional[str], typer.Option("--precision", help="Default: fp32 for a run (f32, no autocast; bf16: torch autocast "
                                                                         "where the CPU has native bf16); for a model file, the precision "
                                                                         "it holds (an INT8 file runs int8, as bench and the guard run it).")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the scores, per class, to this JSON file.")] = None,
    no_verify: NoVerifyOpt = False,
    trust: TrustOpt = None,
) -> None:
    """Score a run's model (or an exported model file) on a split, per class, clean and with named inputs zeroed or noised.

    Example:  edgeaffect eval runs/ravdess/exp1 --corrupt audio=zeros|noise,video=zeros
    Example:  edgeaffect eval runs/eri/exp1 --split val --precision bf16
    Example:  edgeaffect eval runs/eri/exp1/openvino/model.int8.xml   (the run's data, scored int8)
    Example:  edgeaffect eval model.int8.onnx --data data/eri --split val   (no torch needed)
    """
    from ..signing import check_trust

    check_precisions([precision] if precision else [])
    check_trust(run, trust)
    with _open_for_eval(Path(run), precision, device, not no_verify, batch_size) as (rt, spec, recorded, kw, r,
                                                                                      trained):
        conditions = parse_conditions(corrupt, spec.input_names)
        root = data or recorded
        if root is None:
            raise EdgeAffectError(f"{run} does not record its dataset; pass --data")
        _warn_data_drift(trained, root)
        held = rt.precision
        result = _score_conditions(rt, spec, Path(root), split, kw, conditions, batch_size, seed, held)
    _print_eval(spec, result, held)
    rows, split = result["rows"], result["split"]
    typer.echo("\n".join(f"{name}\t{value:.6f}" for name, value in rows))   # printed before the manifest write
    summary = {"split": split, "precision": held, "samples": result["samples"], "n": result["n"],
               "metric_name": spec.metric, "conditions": dict(rows), **result["details"]}
    if json_out is not None:
        write_json(json_out, summary)
    if r is not None:
        from ..runs import load_run, writer_lock

        with writer_lock(r.path, "edgeaffect eval"):   # the manifest as it is now, not as it was at the start
            r = load_run(r.path)
            earlier = r.manifest.get("eval", {}).get(split, {})   # conditions from earlier calls are kept
            r.update(eval={split: {**earlier, **{name: value for name, value in rows}}},
                     eval_details={split: {k: v for k, v in summary.items() if k != "conditions"}})


def _warn_data_drift(run, root) -> None:
    """One line when the data scored are not the dataset the run was trained on (``runs.data_drift``)."""
    from rich.markup import escape

    from ..runs import data_drift

    note = data_drift(run, root) if run is not None else None
    if note:
        console.print(f"[yellow]warning: {escape(note)}[/]", highlight=False)


@contextlib.contextmanager
def _open_for_eval(target: Path, precision: str | None, device: str, verify: bool, batch: int):
    """(runtime, spec, data root, reader options, run or None, the run the model was trained in or None): torch
    for a run; for a file, the file's runtime opened as every stage scores it (``evaluate.open_scored``) with
    the data its run (if any) records."""
    from ..evaluate import open_scored
    from ..runs import run_of
    from ..runtimes.registry import artifact_files, load, reference, unsupported

    owner = run_of(target if target.is_file() else target / "manifest.json") if verify else None
    if owner is not None:
        owner.verify(*artifact_files(target if target.is_file() else owner.checkpoint))
    if target.is_file():
        with open_scored(target, precision=precision, batch=batch) as rt:
            yield rt, rt.spec, owner.data_dir if owner else None, owner.dataset_kwargs if owner else {}, None, owner
        return
    from ..runs import load_run

    precision = precision or "fp32"
    reason = unsupported(reference(), precision, device=device)
    if reason:
        raise EdgeAffectError(f"eval --precision {precision}: {reason} (eval runs the torch model; "
                              f"`edgeaffect bench RUN --precision {precision}` scores exported artifacts)")
    r = load_run(target)
    with load(r.checkpoint, runtime=reference(), precision=precision, device=device) as rt:
        yield rt, r.spec, r.data_dir, r.dataset_kwargs, r, r


def _score_conditions(rt, spec, root, split, kw, conditions, batch_size, seed, precision) -> dict:
    """The task metric per condition over the whole split, and the clean condition's per-class scores."""
    from ..evaluate import open_split, predict_split, score, score_details
    from ..tasks import get_task

    task = get_task(spec.task)
    reader = {"console": console} if "console" in inspect.signature(task.dataset).parameters else {}
    dataset, split, note = open_split(spec, root, split, kw, **reader)
    if note:
        console.print(f"[yellow]{note}[/]", highlight=False)
    outputs, target = predict_split(rt, dataset, spec, split, str(root), batch_size,
                                    [corruption(c, seed) for c in conditions])
    tag = "" if precision == "fp32" else f"@{precision}"
    rows = [(describe(c) + tag, score(spec, out, target)) for c, out in zip(conditions, outputs)]
    return {"rows": rows, "n": len(target), "split": split, "samples": f"{split} split of {root} (all {len(target)} samples)",
            "details": score_details(spec, outputs[0], target)}


def _print_eval(spec, result: dict, precision: str) -> None:
    from rich.table import Table

    from ..tasks import get_task

    task = get_task(spec.task)
    rows = result["rows"]
    clean = rows[0][1]
    table = Table(title=f"{spec.name} on {result['split']} ({result['n']} samples, {precision})")
    table.add_column("condition")
    table.add_column(task.metric, justify="right")
    table.add_column("change", justify="right")
    for name, value in rows:
        delta = (value - clean) / task.metric_scale if task.metric_scale else value - clean
        unit = " pts" if task.metric_scale == 0.01 else ""
        table.add_row(name, f"{value:.4f}", "-" if name == rows[0][0] else f"{delta:+.1f}{unit}")
    console.print(table)
    _print_details(result["details"], rows[0][0])


def _print_details(details: dict, condition: str = "clean") -> None:
    """The per-class (label, dimension) scores of the first condition (``clean``, or ``clean@int8`` for an
    int8 file) as one compact table, and the confusion matrix beside it."""
    from rich.table import Table

    per = details.get("per_class") or {}
    if not per:
        return
    cols = [k for k in next(iter(per.values())) if not k.endswith("_note")]
    kind = "class" if "confusion_matrix" in details else ("label" if "roc_auc" in cols else "dimension")
    table = Table(title=f"per {kind} ({condition})", box=None, padding=(0, 1))
    table.add_column(kind)
    for c in cols:
        table.add_column(c, justify="right")
    fmt = lambda v: "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))  # noqa: E731
    for name, row in per.items():
        table.add_row(name, *(fmt(row.get(c)) for c in cols))
    console.print(table)
    cm = details.get("confusion_matrix")
    if cm and len(cm["labels"]) <= 12:
        matrix = Table(title="confusion matrix (rows: true, columns: predicted)", box=None, padding=(0, 1))
        matrix.add_column("")
        for label in cm["labels"]:
            matrix.add_column(label[:5], justify="right")
        for label, counts in zip(cm["labels"], cm["rows"]):
            matrix.add_row(label, *(str(c) for c in counts))
        console.print(matrix)
