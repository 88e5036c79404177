"""Atomic file writes and content hashes.

Every artifact is written under a temporary name in the destination folder and
renamed into place, so a crash or Ctrl-C never leaves a half-written file.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import EdgeAffectError
from .lazy import lazy_import

torch = lazy_import("torch", "train")


def current_umask() -> int:
    """The process umask (read by setting it and putting it back: the only portable way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` on success.

    The temporary name keeps ``dest``'s suffix (libraries such as OpenCV and
    torch pick the format from it).  On error the temporary file is removed.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    suffix = dest.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=f".tmp{suffix}", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():   # mkstemp makes 0600; an artifact gets the mode any new file gets (0644 at umask 022)
            os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``dest``; it replaces ``dest`` on success."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~current_umask())   # mkdtemp makes 0700
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bytes(dest: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def write_text(dest: str | os.PathLike, text: str) -> Path:
    return write_bytes(dest, text.encode("utf-8"))


def write_json(dest: str | os.PathLike, obj: Any) -> Path:
    """Strict JSON (no NaN/Infinity, which ``JSON.parse`` and other strict readers refuse), written atomically.

    A non-finite float becomes null; in a mapping, ``<key>_note`` beside it says why (kept when the writer
    already gave its own reason, e.g. "class absent from split")."""
    text = json.dumps(strict(obj), indent=2, sort_keys=False, default=_json_default, allow_nan=False)
    return write_text(dest, text + "\n")


def strict(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, inf; NumPy's too) as None, and a note beside it in mappings."""
    import numpy as np

    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for k, v in obj.items():
            out[k] = strict(v)
            if out[k] is None and isinstance(v, (float, np.floating)):
                out.setdefault(f"{k}_note", obj.get(f"{k}_note") or f"not finite ({float(v)!r}), written as null")
        return out
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def _json_default(o: Any):
    import numpy as np

    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class JSONFileError(EdgeAffectError, ValueError):
    """A JSON file that does not parse: one line for the CLI, still a ValueError for callers that skip such files."""


def read_json(path: str | os.PathLike) -> Any:
    """The parsed file; a damaged or hand-edited one is refused in one line naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise JSONFileError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}): "
                            f"it was damaged or edited by hand") from None
    except UnicodeDecodeError:
        raise JSONFileError(f"{path} is not valid JSON (not UTF-8 text): it was damaged or edited by hand") from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``: tensors and plain containers only, never code.

    A file that needs more (a crafted or foreign pickle) is refused in one line naming it; every
    checkpoint edgeaffect writes (models, optimizer and scheduler state, RNG state) loads this way.
    """
    try:
        with torch.serialization.safe_globals(_numpy_data_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgeAffectError(f"refused to load {path}: it holds objects beyond tensors and plain containers, "
                              f"which could run code when unpickled ({first[:160]})") from None


def _numpy_data_globals() -> list:
    """numpy's scalar, array and dtype constructors: they rebuild data (a float64 metric, a RNG state), nothing else."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    names = [core.multiarray.scalar, core.multiarray._reconstruct, np.ndarray, np.dtype]
    names += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    return names


def write_failure(path: Path, exc: Exception) -> Exception:
    """The OSError a failed write really was (disk full: libraries such as torch and OpenVINO report it in their
    own words), or the original error."""
    free = shutil.disk_usage(path.parent).free
    if free < (64 << 20):
        return OSError(errno.ENOSPC, f"no space left on the device ({free >> 20} MB free)", str(path))
    return exc
