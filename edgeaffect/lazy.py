"""The one way this package loads a heavy third-party module: ``ov = lazy_import("openvino", "openvino")``
at the top of the file, beside the other imports.

The name is bound where a reader looks for a module's dependencies, but the module itself (torch, onnx,
openvino, onnxruntime, nncf, tensorrt, cv2: seconds and hundreds of MB between them) is imported on the
first attribute read, so ``--help`` stays fast and the deploy path stays torch-free.  A module that is not
installed is one line naming the pip extra (:class:`~edgeaffect.errors.MissingDependencyError`), raised
where it is first used.  Modelled on Polygraphy's ``mod.lazy_import``.
"""
from __future__ import annotations

import importlib
import sys
from typing import Any

from .errors import MissingDependencyError


class LazyModule:
    """Stands for a module until an attribute is read; then that attribute of the real module."""

    def __init__(self, name: str, extra: str, purpose: str = "") -> None:
        self._name, self._extra, self._purpose = name, extra, purpose or name

    def _lazy_module(self) -> Any:
        """The real module (imported now if it was not: ``sys.modules`` is asked each time, so a test that
        swaps a module in or out is seen; a loaded one is read from it directly, since the demo's loop reads
        ``cv2.resize`` hundreds of times a second)."""
        loaded = sys.modules.get(self._name)
        if loaded is not None and not getattr(getattr(loaded, "__spec__", None), "_initializing", False):
            return loaded
        try:
            return importlib.import_module(self._name)
        except ImportError as exc:
            if exc.name and self._name.split(".")[0] != exc.name.split(".")[0]:
                raise   # the module is there and one of its own imports failed: that error says more
            raise MissingDependencyError(self._name.split(".")[0], self._extra, self._purpose) from None

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)   # copy/pickle/inspect probing: never an import
        return getattr(self._lazy_module(), attr)   # (only underscore names live on the proxy: no clash)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy_import(name: str, extra: str, purpose: str = "") -> LazyModule:
    """``name`` imported on first use; ``extra`` is the pip extra that installs it (said when it is missing)."""
    return LazyModule(name, extra, purpose)
