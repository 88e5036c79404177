"""Run directories: the checkpoint and manifest every later stage reads.

Layout of ``runs/<task>/<run>/``::

    checkpoint.pt      final model: {"model": name, "overrides": {...}, "state_dict": ..., "spec": {...},
                       "pruning": {... "structure"} for a pruned model}
    manifest.json      spec, config, data hashes, metrics per stage, artifacts with sha256 (:class:`Manifest`)
    stages/<stage>/    per-stage last.pt / best.pt (training state, for --resume)
    .lock              flock'ed by the one writer at work, shared by readers (:func:`writer_lock`, :func:`reader_lock`)

Export, quantize, bench and demo only ever go through :func:`load_run` /
:func:`open_run` / :func:`load_model`, so none of them needs per-model code.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import functools
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from .errors import EdgeAffectError, missing_torch
from .fileio import atomic_path, load_checkpoint, read_json, sha256_file, write_failure, write_json
from .lazy import lazy_import
from .models import create_model
from .spec import ModelSpec

torch = lazy_import("torch", "train")

CHECKPOINT = "checkpoint.pt"
MANIFEST = "manifest.json"


@dataclass
class Run:
    path: Path
    manifest: dict[str, Any]

    @property
    def spec(self) -> ModelSpec:
        return read_spec(self.manifest, self.path / MANIFEST)

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
        m = read_manifest(self.path) if (self.path / MANIFEST).exists() else {}
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
        m = read_manifest(self.path) if (self.path / MANIFEST).exists() else {}
        listed = m.get("artifacts", {})
        for path in map(Path, paths):
            listed.pop(Path(os.path.relpath(path, self.path)).as_posix(), None)
            path.unlink(missing_ok=True)
        write_json(self.path / MANIFEST, m)
        self.manifest = m

    def verify(self, *paths: str | os.PathLike) -> None:
        """Refuse a file of this run that is not the one the manifest lists (changed, stale, foreign, or a
        symbolic link out of the run).

        Every file is hashed on every check: no cache can vouch for a file changed in place with its size and
        times restored, and hashing costs milliseconds per MB (docs/runs.md).
        An unlisted ``checkpoint.pt`` (runs trained before checkpoints were listed) is accepted.
        """
        listed = self.manifest.get("artifacts", {})
        where = self.path / MANIFEST
        for path in map(Path, paths):
            rel = self.relative(path)
            entry = listed.get(rel)
            if entry is None:
                if rel == CHECKPOINT:
                    continue
                raise EdgeAffectError(f"{path} is not listed in {where}: it was not written here by "
                                      f"edgeaffect; re-export it (edgeaffect export {self.path}) or pass --no-verify")
            member(self.path, rel, where)
            expected = entry.get("sha256") if isinstance(entry, dict) else None
            if not isinstance(expected, str) or len(expected) != 64:
                raise EdgeAffectError(f"{where} lists {rel} without a sha256: the manifest was edited; re-export "
                                      f"(edgeaffect export {self.path}) or pass --no-verify")
            digest = sha256_file(path)
            if digest != expected:
                raise EdgeAffectError(
                    f"{path} is not the file {where} lists (sha256 {digest[:12]}... vs "
                    f"{expected[:12]}..., {path.stat().st_size} vs {entry.get('bytes')} bytes): it was "
                    f"changed or copied from elsewhere; re-export (edgeaffect export {self.path}) or pass --no-verify")

    def relative(self, path: str | os.PathLike) -> str:
        """``path``'s name inside this run, its folders resolved but not the file itself (a link stays a link)."""
        path = Path(path).absolute()
        return Path(os.path.relpath(path.parent.resolve() / path.name, self.path.resolve())).as_posix()


def member(root: str | os.PathLike, name: Any, listed_in: str | os.PathLike, to_remove: bool = False) -> Path:
    """``root/name`` for a file name read from a manifest, refused in one line unless it is a relative path that
    stays inside ``root``: not absolute, no ``..``, and no symbolic link (folder or file) leading out of it.
    ``to_remove``: the name itself may be a link (it is unlinked, never followed); its folders may not."""
    root = Path(root)
    parts = PurePosixPath(name).parts if isinstance(name, str) and "\0" not in name else ()
    if not parts or parts[0] == "/" or ".." in parts or Path(name).is_absolute():
        raise EdgeAffectError(f"{listed_in} lists {name!r}, which is not a relative path inside {root}: a manifest "
                              "naming files outside its folder was edited or crafted; nothing was used")
    path = root / name
    if not (path.parent.resolve() / path.name if to_remove else path.resolve()).is_relative_to(root.resolve()):
        raise EdgeAffectError(f"{path} (listed in {listed_in}) is a symbolic link to {path.resolve()}, outside "
                              f"{root}: refused; put the file itself in the folder")
    return path


def read_manifest(run_dir: str | os.PathLike) -> dict[str, Any]:
    """``run_dir/manifest.json`` as a dict, its ``artifacts`` a table of entries; else one line saying why."""
    path = Path(run_dir) / MANIFEST
    m = read_json(path)
    if not isinstance(m, dict):
        raise EdgeAffectError(f"{path} is not a run manifest (a JSON object): it was damaged or edited by hand")
    artifacts = m.get("artifacts", {})
    if not isinstance(artifacts, dict) or not all(isinstance(e, dict) for e in artifacts.values()):
        raise EdgeAffectError(f"{path}: 'artifacts' is not a table of name -> {{sha256, bytes}}: the manifest was "
                              "damaged or edited by hand")
    return m


def read_spec(manifest: Mapping[str, Any], where: str | os.PathLike) -> ModelSpec:
    """The manifest's model spec, or one line saying it is missing or malformed."""
    if "spec" not in manifest:
        raise EdgeAffectError(f"{where} has no model spec")
    try:
        return ModelSpec.from_dict(manifest["spec"])
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise EdgeAffectError(f"{where} holds a malformed model spec ({type(exc).__name__}: {exc}): "
                              "the manifest was damaged or edited by hand") from None


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
    core = _unwrap(model)
    state = {k: v.detach().cpu() for k, v in core.state_dict().items()}
    payload = {"model": model_name, "overrides": dict(overrides), "state_dict": state, "spec": core.spec.to_dict(),
               **({"pruning": dict(pruning)} if pruning else {}), **extra}
    with atomic_path(path) as tmp:
        try:
            torch.save(payload, tmp)
        except RuntimeError as exc:   # torch reports a full disk as "unexpected pos" from its zip writer
            raise write_failure(Path(path), exc) from None
    return Path(path)


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
_HELD: dict[Path, int] = {}   # lock path -> depth of the writer locks this process holds


@contextlib.contextmanager
def writer_lock(run_dir: str | os.PathLike, command: str = "", on_stale=None):
    """One writer per run: an exclusive ``flock`` on ``<run>/.lock``, which also names the holder (pid, host,
    start id, command, start) for messages.

    The kernel drops the lock when its process dies, so a lock left by a killed writer (or one naming a
    recycled pid or another container) is simply taken, with ``on_stale(message)``; two takers never both win.
    A second writer, or a writer while :func:`reader_lock` is held, is refused in one line naming the holder.
    Re-entrant within one process (``export --int8`` runs export, then quantize).
    """
    path = Path(run_dir).resolve() / LOCK
    if path in _HELD:
        _HELD[path] += 1
        try:
            yield path
        finally:
            _HELD[path] -= 1
        return
    created = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _lock(path, exclusive=True)
    try:
        _take(fd, path, command or " ".join(sys.argv[:3]), on_stale)
        _HELD[path] = 1
        yield path
    finally:
        _HELD.pop(path, None)
        _unlock(fd, path)
        if created:   # a run that wrote nothing leaves no folder behind
            with contextlib.suppress(OSError):
                path.parent.rmdir()


@contextlib.contextmanager
def reader_lock(run_dir: str | os.PathLike):
    """A shared ``flock`` on ``<run>/.lock`` for a command that reads a whole run (``pack``): refused while a
    writer (export, quantize, train ...) works on the run, and it keeps writers out until done."""
    path = Path(run_dir).resolve() / LOCK
    if path in _HELD or not path.parent.is_dir():   # this process writes the run, or there is no run to guard
        yield path
        return
    try:
        fd = _lock(path, exclusive=False)
    except OSError as exc:
        if not isinstance(exc, PermissionError) and exc.errno != errno.EROFS:
            raise
        yield path   # a read-only run: no writer can change it either
        return
    try:
        if os.fstat(fd).st_size:   # a killed writer's record: stale, as no writer holds the lock now
            os.ftruncate(fd, 0)
        yield path
    finally:
        _unlock(fd, path)


def reading_run(fn):
    """Decorator: ``fn(run_dir, ...)`` runs under :func:`reader_lock` of its first argument."""
    @functools.wraps(fn)
    def locked(run_dir, *args, **kwargs):
        with reader_lock(run_dir):
            return fn(run_dir, *args, **kwargs)

    return locked


def _lock(path: Path, exclusive: bool) -> int:
    """An fd on ``path`` holding the flock (retried if the file was replaced meanwhile), or the one-line refusal."""
    for _ in range(20):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise EdgeAffectError(_held_message(path, exclusive)) from None
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        os.close(fd)   # the holder released and removed the file between our open and flock: open it again
    raise EdgeAffectError(f"cannot take the lock {path}: another process keeps replacing it")


def _take(fd: int, path: Path, command: str, on_stale) -> None:
    """Write this process into the lock (an in-place write: the file is the lock, a rename would lose it)."""
    previous = _holder(path)
    if previous.get("pid") is not None:
        note = (f"taking over a stale lock on {path.parent} (left by pid {previous.get('pid')} on "
                f"{previous.get('host', '?')}, {previous.get('command') or 'an edgeaffect command'}, which has "
                "ended: the lock is no longer held)")
        (on_stale or logging.getLogger("edgeaffect").warning)(note)
    record = json.dumps({"pid": os.getpid(), "host": platform.node(), "start_id": uuid.uuid4().hex[:12],
                         "command": command, "since": _dt.datetime.now().isoformat(timespec="seconds")})
    os.ftruncate(fd, 0)
    os.pwrite(fd, record.encode("utf-8"), 0)


def _unlock(fd: int, path: Path) -> None:
    """Release; the last holder removes the file (under an exclusive lock, so no one is left holding a lost file)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()
    except BlockingIOError:   # other readers still hold it
        pass
    finally:
        os.close(fd)


def _held_message(path: Path, exclusive: bool) -> str:
    holder = _holder(path)
    if not holder:   # readers write nothing into the file
        return (f"{path.parent} is being read (edgeaffect pack); wait for it to finish" if exclusive else
                f"{path.parent} is being written; wait for it to finish")
    who = (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} (start id {holder.get('start_id', '?')}: "
           f"{holder.get('command') or 'another edgeaffect command'}, since {holder.get('since', '?')})")
    return (f"{path.parent} is being written by {who}; wait for it to finish, or stop that process: the lock "
            f"is released the moment it exits (removing {path} does not stop it)")


def _holder(path: Path) -> dict[str, Any]:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


_RUN_FILES = (MANIFEST, CHECKPOINT, ".verified.json", "model.onnx", "model.fp16.onnx", "model.int8.onnx",
              "bench.json", "bench.csv", "bench.png")
_RUN_DIRS = ("stages", "openvino", "tensorrt", "quantize")


def clear_run(out: str | os.PathLike, overwrite: bool, remove: bool = True) -> list[Path]:
    """Make ``out`` ready for a new run: refuse one that holds a run (or anything else) unless ``overwrite``,
    which removes the old run's files (checkpoint, exports, INT8, bench, pruned runs, manifest) and only those.

    Every name the manifest lists is checked to lie inside ``out`` before anything is removed, and a symbolic
    link is removed itself, never what it points to.  ``remove=False`` only checks (the refusal comes before
    any work; the removal once the new run's inputs are validated, see ``train.recipe.open_manifest``).
    Returns the paths removed (or to remove).
    """
    out = Path(out)
    if not out.exists() or not any(p.name != LOCK for p in out.iterdir()):
        return []
    is_run = (out / MANIFEST).is_file()
    if not overwrite or not is_run:
        what = "a run" if is_run else "files that are not an edgeaffect run"
        hint = (f"continue it with --resume {out}, replace it with --overwrite, or pick another --out" if is_run
                else "pick an empty or new --out")
        raise EdgeAffectError(f"{out} already holds {what}; {hint}")
    listed = [member(out, rel, out / MANIFEST, to_remove=True) for rel in read_manifest(out).get("artifacts", {})]
    doomed = [*listed, *(out / n for n in _RUN_DIRS), *out.glob("pruned-*"), *(out / n for n in _RUN_FILES)]
    for path in doomed if remove else ():
        _remove(path)
    return doomed


def _remove(path: Path) -> None:
    """Delete a file or folder of a run; a symbolic link is unlinked, never followed."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


_LABEL_SUFFIXES = (".csv", ".tsv", ".txt", ".json")


def dataset_fingerprint(root: str | os.PathLike) -> str | None:
    """One sha256 for a dataset: every file's relative name and size, plus the full content of its label files
    (csv, tsv, txt, json).  Cheap (a stat per clip, the small label files read), and it changes when clips are
    added, removed, resized or relabeled.  Hidden files (caches, the synth marker) are left out; None if absent."""
    root = Path(root)
    if not root.exists():
        return None
    files = [root] if root.is_file() else sorted(_visible_files(root))
    h = hashlib.sha256()
    for p in files:
        rel = p.name if p == root else p.relative_to(root).as_posix()
        h.update(f"{rel}\0{p.stat().st_size}\0".encode())
        if p.suffix.lower() in _LABEL_SUFFIXES:
            h.update(sha256_file(p).encode())
    return h.hexdigest()


def _visible_files(root: Path):
    """Every file under ``root`` outside hidden folders (``.cache`` can hold millions of entries: not walked)."""
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        yield from (Path(folder) / n for n in names if not n.startswith("."))


def data_drift(run: Run, root: str | os.PathLike | None) -> str | None:
    """The one-line warning when ``root`` is not the dataset ``run`` was trained on (None when it is, or when
    the run recorded no fingerprint)."""
    recorded = run.manifest.get("data", {}).get("fingerprint") if isinstance(run.manifest.get("data"), dict) else None
    if not recorded or root is None:
        return None
    now = dataset_fingerprint(root)
    if now == recorded:
        return None
    return (f"the data in {root} differ from what {run.path} was trained on (dataset fingerprint "
            f"{(now or 'missing')[:12]} vs {recorded[:12]} at training): files were added, removed or relabeled, "
            "so scores are not comparable with the run's own")


def run_of(artifact: str | os.PathLike) -> Run | None:
    """The run (or pruned-<ratio>/ run) folder an artifact lies in, by the nearest manifest; None outside runs.

    The artifact's own name is not resolved (a link out of a run is still that run's file, and refused by
    :meth:`Run.verify`); a manifest that cannot be read is refused, never taken as "no run".
    """
    artifact = Path(artifact).absolute()
    folder = artifact.parent.resolve()
    for candidate in (folder, *folder.parents)[:3]:   # model.onnx, openvino/model.xml, tensorrt/x.engine
        if (candidate / MANIFEST).is_file():
            try:
                return Run(candidate, read_manifest(candidate))
            except (OSError, EdgeAffectError) as exc:
                why = exc if isinstance(exc, EdgeAffectError) else (exc.strerror or exc)
                raise EdgeAffectError(f"{artifact.name} lies in the run {candidate}, whose manifest cannot be used "
                                      f"to check it ({why}); re-export the run or pass --no-verify") from None
    return None


def load_run(path: str | os.PathLike) -> Run:
    """Open a run directory, checking it holds a readable manifest with a model spec, and a checkpoint."""
    path = Path(path)
    if not path.is_dir():
        what = "is a file, not a run directory" if path.exists() else "does not exist"
        raise EdgeAffectError(f"run directory {path} {what}")
    if not (path / MANIFEST).exists():
        raise EdgeAffectError(f"{path} has no {MANIFEST}: not an edgeaffect run directory")
    if not (path / CHECKPOINT).exists():
        raise EdgeAffectError(f"{path} has no {CHECKPOINT}: training did not finish (resume it with --resume)")
    manifest = read_manifest(path)
    read_spec(manifest, path / MANIFEST)
    return Run(path, manifest)


def _unwrap(model):
    return getattr(model, "module", model)
