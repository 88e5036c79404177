"""Run directories: the checkpoint and manifest every later stage reads.

Layout of ``runs/<task>/<run>/``::

    checkpoint.pt      final model: {"model": name, "overrides": {...}, "state_dict": ..., "spec": {...},
                       "pruning": {... "structure"} for a pruned model}
    manifest.json      spec, config, data hashes, metrics per stage, artifacts with sha256 (:class:`Manifest`)
    stages/<stage>/    per-stage last.pt / best.pt (training state, for --resume)
    .lock              the one writer at work (:func:`writer_lock`)
    .verified.json     size/mtime of files whose hash matched the manifest (:meth:`Run.verify`)

Export, quantize, bench and demo only ever go through :func:`load_run` /
:func:`open_run` / :func:`load_model`, so none of them needs per-model code.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import EdgeAffectError, missing_torch
from .fileio import atomic_path, read_json, sha256_file, write_json, load_checkpoint
from .spec import ModelSpec

CHECKPOINT = "checkpoint.pt"
MANIFEST = "manifest.json"


@dataclass
class Run:
    path: Path
    manifest: dict[str, Any]

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec.from_dict(self.manifest["spec"])

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def data_dir(self) -> Path | None:
        d = self.manifest.get("data", {}).get("root")
        return Path(d) if d else None

    @property
    def dataset_kwargs(self) -> dict[str, Any]:
        """Reader options the run was trained with (e.g. RAVDESS actor split), for every later read."""
        return dict(self.manifest.get("data", {}).get("dataset_kwargs", {}))

    def update(self, **sections: Any) -> None:
        """Merge top-level sections into the manifest and write it atomically."""
        m = read_json(self.path / MANIFEST) if (self.path / MANIFEST).exists() else {}
        for k, v in sections.items():
            if isinstance(v, dict) and isinstance(m.get(k), dict):
                m[k].update(v)
            else:
                m[k] = v
        write_json(self.path / MANIFEST, m)
        self.manifest = m

    def record_artifact(self, path: Path, *companions: Path, **info: Any) -> None:
        """List an artifact (relative path, sha256, size, extra info) in the manifest, and the files that
        travel with it (an IR's ``.bin``, a spec sidecar) with their own hashes."""
        entries = {os.path.relpath(path, self.path): {"sha256": sha256_file(path), "bytes": Path(path).stat().st_size,
                                                      **info}}
        for c in companions:
            entries[os.path.relpath(c, self.path)] = {"sha256": sha256_file(c), "bytes": Path(c).stat().st_size}
        self.update(artifacts=entries)

    def forget(self, *paths: str | os.PathLike) -> None:
        """Remove files of this run and their manifest entries (a refused or replaced artifact)."""
        m = read_json(self.path / MANIFEST) if (self.path / MANIFEST).exists() else {}
        listed = m.get("artifacts", {})
        for path in map(Path, paths):
            listed.pop(Path(os.path.relpath(path, self.path)).as_posix(), None)
            path.unlink(missing_ok=True)
        write_json(self.path / MANIFEST, m)
        self.manifest = m

    def verify(self, *paths: str | os.PathLike) -> None:
        """Refuse a file of this run that is not the one the manifest lists (changed, stale or foreign).

        Cheap on repeat: a file whose size and mtime match the last verified state is not hashed again.
        An unlisted ``checkpoint.pt`` (runs trained before checkpoints were listed) is accepted.
        """
        listed = self.manifest.get("artifacts", {})
        cache = _VerifyCache(self.path)
        for path in map(Path, paths):
            rel = Path(os.path.relpath(path, self.path)).as_posix()
            entry = listed.get(rel)
            if entry is None:
                if rel == CHECKPOINT:
                    continue
                raise EdgeAffectError(f"{path} is not listed in {self.path / MANIFEST}: it was not written here by "
                                      f"edgeaffect; re-export it (edgeaffect export {self.path}) or pass --no-verify")
            if not cache.matches(rel, path, entry["sha256"]):
                digest = sha256_file(path)
                if digest != entry["sha256"]:
                    raise EdgeAffectError(
                        f"{path} is not the file {self.path / MANIFEST} lists (sha256 {digest[:12]}... vs "
                        f"{entry['sha256'][:12]}..., {path.stat().st_size} vs {entry.get('bytes')} bytes): it was "
                        f"changed or copied from elsewhere; re-export (edgeaffect export {self.path}) or pass --no-verify")
                cache.remember(rel, path, digest)
        cache.save()


class _VerifyCache:
    """``.verified.json`` in a run: (size, mtime) of files whose hash matched, so a re-check costs a stat."""

    NAME = ".verified.json"

    def __init__(self, run_dir: Path):
        self.path = run_dir / self.NAME
        try:
            self.entries = read_json(self.path) if self.path.exists() else {}
        except (OSError, EdgeAffectError, ValueError):
            self.entries = {}
        self.dirty = False

    @staticmethod
    def _state(path: Path) -> list[int]:
        st = path.stat()
        return [st.st_size, st.st_mtime_ns]

    def matches(self, rel: str, path: Path, sha256: str) -> bool:
        e = self.entries.get(rel)
        return bool(e) and e.get("sha256") == sha256 and e.get("state") == self._state(path)

    def remember(self, rel: str, path: Path, sha256: str) -> None:
        self.entries[rel] = {"sha256": sha256, "state": self._state(path)}
        self.dirty = True

    def save(self) -> None:
        if self.dirty:
            try:
                write_json(self.path, self.entries)
            except OSError:   # a read-only run is still verified, only not cached
                pass


def timestamp() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def provenance() -> dict[str, Any]:
    """When, where and with what a run was made; the torch version only where torch is installed."""
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    return {
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch_version,
        "machine": platform.machine(),
        "host": platform.node(),
    }


@dataclass
class Manifest:
    """The sections every trainer writes to ``manifest.json``, filled the same way for every task.

    ``config`` holds ``options`` (the task's train options, enough to ``--resume``), ``train`` (the
    optimiser recipe) and ``model`` (the model overrides); ``data`` holds ``root``, ``dataset_kwargs``
    (the reader options every later stage reads the splits with) and content hashes; ``metrics`` is
    keyed by stage.  Sections other stages add (export, artifacts, bench ...) are kept in ``extra``.
    Later stages read the written file as a dict (``Run.manifest``).
    """

    task: str
    model: str = ""
    spec: dict[str, Any] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    stages_done: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=provenance)
    extra: dict[str, Any] = field(default_factory=dict)

    _SECTIONS = ("task", "model", "spec", "config", "data", "metrics", "stages_done", "provenance")

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self._SECTIONS if getattr(self, k) is not None}
        return {**d, **self.extra}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Manifest":
        known = {k: d[k] for k in cls._SECTIONS if k in d}
        return cls(**{"task": "", **known}, extra={k: v for k, v in d.items() if k not in cls._SECTIONS})

    @classmethod
    def read(cls, run_dir: str | os.PathLike) -> "Manifest":
        return cls.from_dict(read_json(Path(run_dir) / MANIFEST))

    def write(self, run_dir: str | os.PathLike) -> Path:
        """Write ``<run_dir>/manifest.json`` atomically (a temporary name, then a rename)."""
        return write_json(Path(run_dir) / MANIFEST, self.to_dict())

    def finish_stage(self, run_dir: str | os.PathLike, stage: str, metrics: Mapping[str, Any]) -> None:
        """Record a finished stage's metrics (what ``--resume`` skips) and write the manifest."""
        self.metrics[stage] = dict(metrics)
        self.stages_done = sorted({*self.stages_done, stage})
        self.write(run_dir)


def save_checkpoint(path: Path, model, model_name: str, overrides: dict[str, Any],
                    pruning: Mapping[str, Any] | None = None, **extra: Any) -> Path:
    """Write a self-describing model checkpoint atomically (the one writer of the format).

    ``pruning`` (ratio, importance, ... and ``structure``, see :func:`structure_diff`) marks a channel-pruned
    model: :func:`load_model` reshapes the registered architecture to it before loading the weights.
    """
    import torch

    core = _unwrap(model)
    state = {k: v.detach().cpu() for k, v in core.state_dict().items()}
    payload = {"model": model_name, "overrides": dict(overrides), "state_dict": state, "spec": core.spec.to_dict(),
               **({"pruning": dict(pruning)} if pruning else {}), **extra}
    with atomic_path(path) as tmp:
        try:
            torch.save(payload, tmp)
        except RuntimeError as exc:   # torch reports a full disk as "unexpected pos" from its zip writer
            raise _write_failure(Path(path), exc) from None
    return Path(path)


def _write_failure(path: Path, exc: Exception) -> Exception:
    """The OSError a failed checkpoint write really was (disk full), or the original error."""
    import errno
    import shutil

    free = shutil.disk_usage(path.parent).free
    if free < (64 << 20):
        return OSError(errno.ENOSPC, f"no space left on the device ({free >> 20} MB free)", str(path))
    return exc


def read_checkpoint(checkpoint: str | os.PathLike, map_location: str = "cpu") -> dict[str, Any]:
    """The checkpoint's payload (weights-only unpickling), checked to be an edgeaffect checkpoint."""
    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise EdgeAffectError(f"no checkpoint at {checkpoint}")
    try:
        payload = load_checkpoint(checkpoint, map_location=map_location)
    except EdgeAffectError:
        raise
    except Exception as exc:
        raise (missing_torch(exc, f"reading {checkpoint}")
               or EdgeAffectError(f"cannot read checkpoint {checkpoint}: {exc}")) from None
    if not isinstance(payload, dict) or "model" not in payload or "state_dict" not in payload:
        raise EdgeAffectError(f"{checkpoint} is not an edgeaffect checkpoint")
    return payload


def load_model(checkpoint: str | os.PathLike, map_location: str = "cpu", payload: Mapping[str, Any] | None = None):
    """Rebuild the registered model (pruned structure included) from a checkpoint; eval mode."""
    from .models import create_model

    payload = payload if payload is not None else read_checkpoint(checkpoint, map_location)
    model = create_model(payload["model"], **payload.get("overrides", {}))
    restore_structure(model, payload)
    model.load_state_dict(payload["state_dict"])
    return model.eval()


def open_run(run_dir: str | os.PathLike) -> tuple[Run, Any]:
    """A run and its model, refusing a checkpoint that holds another model than the manifest describes."""
    run = load_run(run_dir)
    payload = read_checkpoint(run.checkpoint)
    if payload["model"] != run.spec.name:
        raise EdgeAffectError(f"{run.path / MANIFEST} describes model {run.spec.name!r} but "
                              f"{run.checkpoint.name} holds {payload['model']!r}: the run directory is mixed up")
    return run, load_model(run.checkpoint, payload=payload)


# -- pruned structure ----------------------------------------------------------------------------------
_STRUCT_ATTRS = ("in_channels", "out_channels", "groups", "in_features", "out_features", "num_features",
                 "normalized_shape", "embed_dim", "num_heads", "head_dim")


def structure_diff(pruned, reference) -> dict[str, dict[str, Any]]:
    """Per-module attributes (channel counts, groups, ...) where ``pruned`` differs from ``reference``:
    what a pruned checkpoint stores so the registered architecture can be rebuilt to its shape."""
    ref = dict(reference.named_modules())
    out: dict[str, dict[str, Any]] = {}
    for name, m in pruned.named_modules():
        r = ref.get(name)
        if r is None:
            continue
        diff = {a: getattr(m, a) for a in _STRUCT_ATTRS if hasattr(m, a) and getattr(m, a) != getattr(r, a, None)}
        if diff:
            out[name] = diff
    return out


def restore_structure(model, payload: Mapping[str, Any]):
    """Reshape a freshly built registered model to a pruned checkpoint's structure (no-op if unpruned)."""
    import torch
    from torch import nn

    info = payload.get("pruning") if isinstance(payload, Mapping) else None
    if not info:
        return model
    modules = dict(model.named_modules())
    for name, attrs in info.get("structure", {}).items():
        for a, v in attrs.items():
            setattr(modules[name], a, tuple(v) if isinstance(v, list) else v)
    own = model.state_dict()
    for key, value in payload["state_dict"].items():
        if key in own and own[key].shape != value.shape:
            mod_name, _, attr = key.rpartition(".")
            mod = modules[mod_name]
            if isinstance(getattr(mod, attr), nn.Parameter):
                setattr(mod, attr, nn.Parameter(torch.empty_like(value)))
            else:
                mod._buffers[attr] = torch.empty_like(value)
    return model


LOCK = ".lock"
_HELD: dict[Path, int] = {}


@contextlib.contextmanager
def writer_lock(run_dir: str | os.PathLike, command: str = "", on_stale=None):
    """One writer per run: ``<run>/.lock`` holds the writer's pid and command while it works.

    A second writer is refused in one line naming the holder; a lock whose process is gone (or whose
    file is unreadable) is taken over, with ``on_stale(message)``.  Re-entrant within one process
    (``export --int8`` runs export, then quantize).
    """
    path = Path(run_dir).resolve() / LOCK
    if _HELD.get(path):
        _HELD[path] += 1
        try:
            yield path
        finally:
            _HELD[path] -= 1
        return
    created = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    _acquire(path, command or " ".join(sys.argv[:3]), on_stale)
    _HELD[path] = 1
    try:
        yield path
    finally:
        _HELD.pop(path, None)
        with contextlib.suppress(OSError):
            if _holder(path).get("pid") == os.getpid():
                path.unlink()
            if created:   # a run that wrote nothing leaves no folder behind
                path.parent.rmdir()


def _acquire(path: Path, command: str, on_stale) -> None:
    record = json.dumps({"pid": os.getpid(), "host": platform.node(), "command": command,
                         "since": _dt.datetime.now().isoformat(timespec="seconds")})
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if _alive(holder):
                raise EdgeAffectError(f"{path.parent} is being written by pid {holder['pid']} "
                                      f"({holder.get('command') or 'another edgeaffect command'}, since "
                                      f"{holder.get('since', '?')}); wait for it to finish, or remove {path} if that "
                                      f"process is gone") from None
            note = f"taking over a stale lock on {path.parent} (pid {holder.get('pid', '?')} is gone)"
            (on_stale or logging.getLogger("edgeaffect").warning)(note)
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(record)
        return
    raise EdgeAffectError(f"cannot take the lock {path}: another writer keeps taking it")


def _holder(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _alive(holder: Mapping[str, Any]) -> bool:
    """True when the lock's process still runs (on another host: assumed to, as it cannot be checked)."""
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False
    if holder.get("host") not in (None, platform.node()):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_RUN_FILES = (MANIFEST, CHECKPOINT, ".verified.json", "model.onnx", "model.fp16.onnx", "model.int8.onnx",
              "bench.json", "bench.csv", "bench.png")
_RUN_DIRS = ("stages", "openvino", "tensorrt", "quantize")


def clear_run(out: str | os.PathLike, overwrite: bool) -> None:
    """Make ``out`` ready for a new run: refuse one that holds a run (or anything else) unless ``overwrite``,
    which removes the old run's files (checkpoint, exports, INT8, bench, pruned runs, manifest) and only those."""
    import shutil

    out = Path(out)
    if not out.exists() or not any(p.name != LOCK for p in out.iterdir()):
        return
    is_run = (out / MANIFEST).is_file()
    if not overwrite or not is_run:
        what = "a run" if is_run else "files that are not an edgeaffect run"
        hint = (f"continue it with --resume {out}, replace it with --overwrite, or pick another --out" if is_run
                else "pick an empty or new --out")
        raise EdgeAffectError(f"{out} already holds {what}; {hint}")
    listed = read_json(out / MANIFEST).get("artifacts", {})
    for rel in listed:
        (out / rel).unlink(missing_ok=True)
    for name in _RUN_DIRS:
        shutil.rmtree(out / name, ignore_errors=True)
    for p in out.glob("pruned-*"):
        shutil.rmtree(p, ignore_errors=True)
    for name in _RUN_FILES:
        (out / name).unlink(missing_ok=True)


def run_of(artifact: str | os.PathLike) -> Run | None:
    """The run (or pruned-<ratio>/ run) folder an artifact lies in, by the nearest manifest; None outside runs."""
    folder = Path(artifact).resolve().parent
    for candidate in (folder, *folder.parents)[:3]:   # model.onnx, openvino/model.xml, tensorrt/x.engine
        if (candidate / MANIFEST).is_file():
            try:
                return Run(candidate, read_json(candidate / MANIFEST))
            except (OSError, ValueError, EdgeAffectError):
                return None
    return None


def load_run(path: str | os.PathLike) -> Run:
    """Open a run directory, checking it holds a manifest and a checkpoint."""
    path = Path(path)
    if not path.is_dir():
        what = "is a file, not a run directory" if path.exists() else "does not exist"
        raise EdgeAffectError(f"run directory {path} {what}")
    if not (path / MANIFEST).exists():
        raise EdgeAffectError(f"{path} has no {MANIFEST}: not an edgeaffect run directory")
    if not (path / CHECKPOINT).exists():
        raise EdgeAffectError(f"{path} has no {CHECKPOINT}: training did not finish (resume it with --resume)")
    manifest = read_json(path / MANIFEST)
    if "spec" not in manifest:
        raise EdgeAffectError(f"{path / MANIFEST} has no model spec")
    return Run(path, manifest)


def _unwrap(model):
    return getattr(model, "module", model)
