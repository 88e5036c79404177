"""Run directories: the checkpoint and manifest every later stage reads.

Layout of ``runs/<task>/<run>/``::

    checkpoint.pt      final model: {"model": name, "overrides": {...}, "state_dict": ..., "spec": {...}}
    manifest.json      spec, config, data hashes, metrics per stage, artifacts with hashes
    stages/<stage>/    per-stage last.pt / best.pt (training state, for --resume)

Export, quantize, bench and demo only ever go through :func:`load_run` /
:func:`load_model`, so none of them needs per-model code.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import EdgeAffectError
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

    def record_artifact(self, path: Path, **info: Any) -> None:
        """List an artifact (relative path, sha256, size, extra info) in the manifest."""
        rel = os.path.relpath(path, self.path)
        entry = {"sha256": sha256_file(path), "bytes": Path(path).stat().st_size, **info}
        self.update(artifacts={rel: entry})


def timestamp() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def provenance() -> dict[str, Any]:
    import torch

    return {
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "host": platform.node(),
    }


def save_checkpoint(path: Path, model, model_name: str, overrides: dict[str, Any], **extra: Any) -> Path:
    """Write a self-describing model checkpoint atomically."""
    import torch

    state = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
    payload = {"model": model_name, "overrides": dict(overrides), "state_dict": state,
               "spec": _unwrap(model).spec.to_dict(), **extra}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_model(checkpoint: str | os.PathLike, map_location: str = "cpu"):
    """Rebuild the registered model from a checkpoint; returns it in eval mode."""
    import torch

    from .models import create_model

    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise EdgeAffectError(f"no checkpoint at {checkpoint}")
    try:
        payload = load_checkpoint(checkpoint, map_location=map_location)
    except EdgeAffectError:
        raise
    except Exception as exc:
        raise EdgeAffectError(f"cannot read checkpoint {checkpoint}: {exc}") from None
    if not isinstance(payload, dict) or "model" not in payload or "state_dict" not in payload:
        raise EdgeAffectError(f"{checkpoint} is not an edgeaffect checkpoint")
    model = create_model(payload["model"], **payload.get("overrides", {}))
    if payload.get("pruning"):  # channel-pruned checkpoint: reshape the registered model first
        from .quantize.prune import restore_structure; restore_structure(model, payload)  # noqa: E702
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model


def load_run(path: str | os.PathLike) -> Run:
    """Open a run directory, checking it holds a manifest and a checkpoint."""
    path = Path(path)
    if not path.is_dir():
        raise EdgeAffectError(f"run directory {path} does not exist")
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
