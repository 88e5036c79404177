"""Fake ``tensorrt`` and ``pycuda`` modules for testing TensorRT code on machines without a GPU.

Use through :func:`install` in a fixture::

    @pytest.fixture
    def trt(monkeypatch):
        return install(monkeypatch, version="10.3.0")

It puts the fakes into ``sys.modules`` (undone by monkeypatch at the end of
the test) and returns the fake ``tensorrt`` module, whose ``calls`` list
records every API call in order.
"""
from __future__ import annotations

import sys

from .pycuda import make_pycuda
from .tensorrt import make_tensorrt


def install(monkeypatch, version: str = "10.3.0", gpu: str = "NVIDIA Fake GPU"):
    trt = make_tensorrt(version)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    for name, mod in make_pycuda(gpu).items():
        monkeypatch.setitem(sys.modules, name, mod)
    return trt


__all__ = ["install", "make_pycuda", "make_tensorrt"]
