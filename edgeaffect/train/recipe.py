"""One training interface for every task: a frozen options dataclass and ``train(options, out, ...)``.

Each task module (``train/eri.py``, ``va.py``, ``expr.py``, ``body.py``,
``ravdess.py``) defines ``<Task>TrainOptions`` (a frozen dataclass deriving
:class:`TrainOptions`) and ``train(options, out, *, resume=False, console=None)
-> Manifest``, and registers both as its ``RECIPE``.  The options are stored
under ``config.options`` in the run's manifest, so ``--resume`` rebuilds them
exactly; :func:`get_recipe` finds a task's recipe by name.
"""
from __future__ import annotations

import collections.abc
import contextlib
import contextvars
import dataclasses
import importlib
import shutil
import signal
import sys
import threading
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import EdgeAffectError
from ..fileio import read_json
from ..runs import CHECKPOINT, LOCK, MANIFEST, Manifest, Run, clear_run, dataset_fingerprint, save_checkpoint

_MODULES = {"eri": "eri", "va": "va", "expr": "expr", "body": "body", "ravdess": "ravdess"}
_REPLACE: contextvars.ContextVar[Path | None] = contextvars.ContextVar("replace_run", default=None)


class TrainOptions:
    """Base of the per-task options: JSON round trip for the manifest (and ``--resume``)."""

    data: Path

    def dataset_kwargs(self) -> dict[str, Any]:
        """Reader options of the splits, recorded so later stages read what training read."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]):
        """The options a run's manifest recorded (``config.options``)."""
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise EdgeAffectError(f"this run was trained by an earlier version, whose options {', '.join(unknown)} "
                                  "this version no longer has; start a new run")
        return cls(**{k: _convert(hints[k], v) for k, v in d.items()})


def _jsonable(v: Any) -> Any:
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


def _convert(hint: Any, v: Any) -> Any:
    """A JSON value back to the field's type (Path, tuple, dict; ``X | None`` unwrapped)."""
    if v is None:
        return None
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    origin = typing.get_origin(hint) or hint
    if origin is Path:
        return Path(v)
    if origin is tuple:
        return tuple(v)
    if origin in (dict, collections.abc.Mapping):
        return dict(v)
    return v


@dataclass(frozen=True)
class Recipe:
    """A task's training entry point: its options class and its ``train`` function."""

    task: str
    options: type
    train: Callable[..., Manifest]

    def run(self, options: TrainOptions, out: Path, *, resume: bool = False, console=None,
            overwrite: bool = False) -> Manifest:
        """``train`` with the run folder kept honest: a run that fails (or is stopped with SIGTERM or
        Ctrl-C) before its first checkpoint leaves nothing it wrote behind, and ``--resume`` of a folder
        that never reached one (a run killed outright) says so instead of starting over silently.

        With ``overwrite``, the run already in ``out`` is checked at once (its manifest's names must lie inside
        it) but removed only once the task has read and checked its data (:func:`open_manifest`), so a typo
        in ``--data`` loses nothing.  (``train --out`` without it is refused by the CLI, ``clear_run``.)
        """
        out = Path(out)
        if resume and not has_checkpoint(out):
            raise EdgeAffectError(f"{out} never reached its first checkpoint (its run failed or was killed "
                                  f"before one): there is nothing to resume; start again with --out {out} --overwrite")
        if overwrite and not resume:
            clear_run(out, overwrite, remove=False)
        before = set(out.iterdir()) if out.is_dir() else set()
        token = _REPLACE.set(out if overwrite and not resume else None)
        try:
            with _sigterm_as_exit():
                return self.train(options, out, resume=resume, console=console)
        except BaseException:
            if not resume and not has_checkpoint(out):
                _remove_new(out, before)
            raise
        finally:
            _REPLACE.reset(token)


def has_checkpoint(out: Path) -> bool:
    """True when the run folder holds any checkpoint (a stage's ``last.pt``/``best.pt`` or the final one)."""
    return Path(out).is_dir() and any(Path(out).rglob("*.pt"))


def _remove_new(out: Path, before: set[Path]) -> None:
    """Delete what this run added to ``out`` (the writer lock stays for its owner to release)."""
    if not out.is_dir():
        return
    for p in set(out.iterdir()) - before:
        if p.name == LOCK:
            continue
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


@contextlib.contextmanager
def _sigterm_as_exit():
    """SIGTERM raises SystemExit while training (main thread only), so the cleanup above runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def get_recipe(task: str) -> Recipe:
    if task not in _MODULES:
        raise EdgeAffectError(f"no training recipe for task {task!r}; trainable tasks: {', '.join(sorted(_MODULES))}")
    return importlib.import_module(f"{__package__}.{_MODULES[task]}").RECIPE


def list_recipes() -> list[str]:
    return sorted(_MODULES)


def open_manifest(out: Path, task: str, options: TrainOptions, *, resume: bool, config: Mapping[str, Any],
                  data: Mapping[str, Any], model: str = "") -> Manifest:
    """The run's manifest, the same sections for every task; a resumed run keeps its finished stages.

    Called once the task has read its data: the run an ``--overwrite`` replaces is removed here, and the
    dataset's fingerprint (:func:`~edgeaffect.runs.dataset_fingerprint`) is recorded for bench and eval.
    """
    if not resume and _REPLACE.get() == Path(out):
        clear_run(out, overwrite=True)
    prior = Manifest.read(out) if resume and (Path(out) / MANIFEST).exists() else None
    manifest = Manifest(task=task, model=model,
                        config={"options": options.to_dict(), **config},
                        data={"root": str(Path(options.data).resolve()), "dataset_kwargs": options.dataset_kwargs(),
                              "fingerprint": dataset_fingerprint(options.data), **data})
    if prior is not None:   # finished stages, and what later stages (export, bench ...) added, stay
        manifest.metrics, manifest.stages_done, manifest.extra = prior.metrics, prior.stages_done, prior.extra
    manifest.write(out)
    return manifest


def finish_run(out: Path, manifest: Manifest, model, model_name: str, overrides: Mapping[str, Any]) -> Manifest:
    """Write the final checkpoint, the model's spec, every stage's per-epoch history and the checkpoint's hash
    into the manifest."""
    save_checkpoint(Path(out) / CHECKPOINT, model, model_name, dict(overrides))
    manifest.model, manifest.spec = model_name, model.spec.to_dict()
    history = collect_history(out)
    if history:
        manifest.extra["history"] = history
    manifest.write(out)
    Run(Path(out), manifest.to_dict()).record_artifact(Path(out) / CHECKPOINT, kind="checkpoint")
    return Manifest.read(out)


def collect_history(out: Path) -> list[dict[str, Any]]:
    """Every stage's per-epoch records (train loss, val metrics), each tagged with its ``stage``, stages in
    the order they were trained (the one place every task's history is read from: ``manifest["history"]``)."""
    from .trainer import HISTORY

    files = sorted(Path(out).glob(f"stages/*/{HISTORY}"), key=lambda f: f.stat().st_mtime)
    return [{"stage": f.parent.name, **record} for f in files for record in read_json(f)]
