"""Fake ``tensorrt`` and ``pycuda`` modules for testing TensorRT code on machines without a GPU.

Use through :func:`install` in a fixture::

    @pytest.fixture
    def trt(monkeypatch):
        return install(monkeypatch, version="10.3.0")

It puts the fakes into ``sys.modules`` (undone by monkeypatch at the end of
the test) and returns the fake ``tensorrt`` module, whose ``calls`` list
records every API call in order.  ``import pycuda.autoinit`` works as for real
(initialises CUDA and leaves a context current).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from .pycuda import AutoinitFinder, make_pycuda
from .tensorrt import make_tensorrt


def install(monkeypatch, version: str = "10.3.0", gpu: str = "NVIDIA Fake GPU", *, cc: tuple[int, int] = (8, 7),
            sms: int = 16, memory: int = 8 << 30, count: int = 1, jetson: str | None = None):
    """``jetson`` is the device-tree model a Jetson would report (None: a machine without one)."""
    trt = make_tensorrt(version)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    from edgeaffect.runtimes import tensorrt as trt_rt

    model = Path("/nonexistent/edgeaffect-fake/device-tree/model")
    if jetson is not None:
        model = Path(tempfile.mkdtemp(prefix="fake-device-tree-")) / "model"
        model.write_bytes(jetson.encode() + b"\x00")   # the device tree ends its strings with NUL
    monkeypatch.setattr(trt_rt, "DEVICE_TREE_MODEL", model)
    for name, mod in make_pycuda(gpu, memory, cc, sms, count).items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.delitem(sys.modules, "pycuda.autoinit", raising=False)
    monkeypatch.setattr(sys, "meta_path", [AutoinitFinder(), *sys.meta_path])
    return trt


__all__ = ["install", "make_pycuda", "make_tensorrt"]
