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

from .pycuda import AutoinitFinder, make_pycuda
from .tensorrt import make_tensorrt


def install(monkeypatch, version: str = "10.3.0", gpu: str = "NVIDIA Fake GPU"):
    trt = make_tensorrt(version)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    for name, mod in make_pycuda(gpu).items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.delitem(sys.modules, "pycuda.autoinit", raising=False)
    monkeypatch.setattr(sys, "meta_path", [AutoinitFinder(), *sys.meta_path])
    return trt


__all__ = ["install", "make_pycuda", "make_tensorrt"]
