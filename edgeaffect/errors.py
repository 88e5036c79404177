"""User-facing errors.

Anything the user can fix (bad path, malformed CSV, missing package) raises an
:class:`EdgeAffectError`; the CLI prints its message as one line and exits 1.
Everything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import errno


class EdgeAffectError(Exception):
    """An error whose message is a complete, actionable one-line explanation."""


class DataError(EdgeAffectError):
    """A dataset file is missing, unreadable or malformed."""


class MissingDependencyError(EdgeAffectError, ImportError):
    """An optional package is not installed; the message names the pip extra.  It is an ImportError too, so
    code that falls back when an optional package is missing (``except ImportError``) does so whether the
    package was imported directly or through :func:`edgeaffect.lazy.lazy_import`."""

    def __init__(self, package: str, extra: str, purpose: str = ""):
        what = f" for {purpose}" if purpose else ""
        super().__init__(
            f"'{package}' is needed{what} but is not installed: pip install 'edgeaffect[{extra}]'"
        )
        self.package = package
        self.extra = extra

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""   # ImportError's own __str__ ignores a message set later


TRAIN_EXTRA = "train"


def missing_torch(exc: BaseException, purpose: str = "") -> MissingDependencyError | None:
    """The one-line error for a deploy install (no torch) that reached a torch-only path; None for other errors.

    Training, export, quantize calibration and the torch reference runtime need PyTorch; the
    ``onnxruntime``/``openvino``/``tensorrt`` installs leave it out on purpose.
    """
    name = getattr(exc, "name", None) or ""
    if isinstance(exc, ImportError) and name.split(".")[0] == "torch":
        return MissingDependencyError("torch", TRAIN_EXTRA, purpose)
    return None


def os_error_line(exc: OSError) -> str:
    """One line for a file-system failure: which path, and the cause in words (disk full, read-only, ...)."""
    causes = {errno.ENOSPC: "no space left on the device", errno.EROFS: "the file system is read-only",
              errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
              errno.EDQUOT: "disk quota exceeded", errno.ENOENT: "no such file or folder"}
    cause = causes.get(exc.errno, exc.strerror or str(exc))
    where = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p)
    return f"cannot write or read {where}: {cause}" if where else f"file system error: {cause}"
