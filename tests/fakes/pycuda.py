"""A fake ``pycuda`` (``pycuda.driver``) with simulated device memory.

Device memory is a dict of bytearrays keyed by fake addresses.  The fake
enforces what real CUDA code gets wrong silently or crashes on:
- every driver call needs ``cuda.init()`` first and a current context;
- async copies need page-locked host memory and a copy no larger than the allocation;
- async copies and kernels are queued on their stream and only happen at
  ``stream.synchronize()`` (reading a host buffer before that sees stale data);
- freed memory cannot be used again.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import itertools
import sys
import types
from importlib.machinery import ModuleSpec

import numpy as np


class FakeCudaError(RuntimeError):
    pass


def make_pycuda(gpu_name: str = "NVIDIA Fake GPU", total_mem: int = 8 << 30) -> dict[str, types.ModuleType]:
    """Return ``{"pycuda": pkg, "pycuda.driver": driver}`` ready for ``sys.modules``."""
    drv = types.ModuleType("pycuda.driver")
    state = drv._state = types.SimpleNamespace(initialised=False, context_stack=[], memory={}, freed=set(),
                                               next_addr=itertools.count(0x10000, 0x1000), log=[],
                                               streams=itertools.count(1), contexts=0)
    drv.Error = FakeCudaError
    drv.LogicError = FakeCudaError

    def _need_context():
        if not state.initialised:
            raise FakeCudaError("cuInit has not been called")
        if not state.context_stack:
            raise FakeCudaError("no current CUDA context (push the context before using the device)")

    def init(flags: int = 0):
        state.initialised = True

    class Context:
        def __init__(self, device):
            self.device = device
            self.retained = True

        def push(self):
            if not self.retained:
                raise FakeCudaError("context was detached")
            state.context_stack.append(self)

        def pop(self):
            if not state.context_stack or state.context_stack[-1] is not self:
                raise FakeCudaError("popping a context that is not current")
            state.context_stack.pop()

        def detach(self):
            self.retained = False
            state.contexts -= 1

    class Device:
        def __init__(self, ordinal: int):
            if not state.initialised:
                raise FakeCudaError("cuInit has not been called")
            if ordinal != 0:
                raise FakeCudaError(f"invalid device ordinal {ordinal}")
            self.ordinal = ordinal

        def name(self) -> str:
            return gpu_name

        def total_memory(self) -> int:
            return total_mem

        def retain_primary_context(self):
            state.contexts += 1
            return Context(self)

        def make_context(self, flags: int = 0):
            """Create a context and make it current (as pycuda does)."""
            ctx = self.retain_primary_context()
            ctx.push()
            return ctx

        @staticmethod
        def count() -> int:
            if not state.initialised:
                raise FakeCudaError("cuInit has not been called")
            return 1

    class DeviceAllocation:
        def __init__(self, nbytes: int):
            self.address = next(state.next_addr)
            while any(a < self.address + nbytes and self.address < a + len(m) for a, m in state.memory.items()):
                self.address = next(state.next_addr)
            state.memory[self.address] = bytearray(nbytes)
            self.nbytes = nbytes

        def __int__(self):
            return self.address

        def __index__(self):
            return self.address

        def free(self):
            _need_context()
            if self.address in state.freed:
                raise FakeCudaError("double free")
            state.memory.pop(self.address)
            state.freed.add(self.address)

    def mem_alloc(nbytes: int):
        _need_context()
        nbytes = int(nbytes)
        if nbytes <= 0:
            raise FakeCudaError("mem_alloc of 0 bytes")
        return DeviceAllocation(nbytes)

    class PageLocked(np.ndarray):
        """Marks arrays from pagelocked_empty (views keep the mark through ``base``)."""

    def _is_pagelocked(arr) -> bool:
        a = arr
        while a is not None:
            if isinstance(a, PageLocked):
                return True
            a = getattr(a, "base", None)
        return False

    def pagelocked_empty(shape, dtype, order="C", mem_flags=0):
        _need_context()
        return np.empty(shape, dtype).view(PageLocked)

    def device_bytes(ptr) -> bytearray:
        """The fake memory at address ``ptr`` (also for the fake TensorRT)."""
        addr = int(ptr)
        if addr in state.freed:
            raise FakeCudaError(f"use of freed device memory 0x{addr:x}")
        if addr not in state.memory:
            raise FakeCudaError(f"0x{addr:x} is not a device allocation")
        return state.memory[addr]

    class Stream:
        def __init__(self, flags: int = 0):
            _need_context()
            self.handle = next(state.streams) * 0x100
            self.pending = []
            _streams[self.handle] = self

        def enqueue(self, what, fn):
            state.log.append(("enqueue", what))
            self.pending.append((what, fn))

        def synchronize(self):
            _need_context()
            while self.pending:
                what, fn = self.pending.pop(0)
                state.log.append(("run", what))
                fn()

        def is_done(self):
            return not self.pending

    _streams: dict[int, Stream] = {}
    drv._streams = _streams

    def _check_host(host, what):
        if not _is_pagelocked(host):
            raise FakeCudaError(f"{what}: host buffer is not page-locked (use pagelocked_empty)")
        if not host.flags.c_contiguous:
            raise FakeCudaError(f"{what}: host buffer is not contiguous")

    def memcpy_htod_async(dest, src, stream=None):
        _need_context()
        _check_host(src, "memcpy_htod_async")
        mem = device_bytes(dest)
        if src.nbytes > len(mem):
            raise FakeCudaError(f"memcpy_htod_async: {src.nbytes} bytes into a {len(mem)}-byte allocation")
        def run():  # like the DMA engine, the copy reads the host buffer when the stream reaches it
            mem[: src.nbytes] = src.tobytes()

        if stream is None:
            run()
        else:
            stream.enqueue(("htod", int(dest), src.nbytes), run)

    def memcpy_dtoh_async(dest, src, stream=None):
        _need_context()
        _check_host(dest, "memcpy_dtoh_async")
        mem = device_bytes(src)
        if dest.nbytes > len(mem):
            raise FakeCudaError(f"memcpy_dtoh_async: {dest.nbytes} bytes out of a {len(mem)}-byte allocation")

        def run():
            np.copyto(dest, np.frombuffer(bytes(mem[: dest.nbytes]), dtype=dest.dtype).reshape(dest.shape))

        if stream is None:
            run()
        else:
            stream.enqueue(("dtoh", int(src), dest.nbytes), run)

    def memcpy_htod(dest, src):
        memcpy_htod_async(dest, np.ascontiguousarray(src).view(PageLocked), None)

    for name, obj in dict(init=init, Device=Device, Context=Context, mem_alloc=mem_alloc,
                          pagelocked_empty=pagelocked_empty, Stream=Stream, memcpy_htod_async=memcpy_htod_async,
                          memcpy_dtoh_async=memcpy_dtoh_async, memcpy_htod=memcpy_htod,
                          DeviceAllocation=DeviceAllocation, device_bytes=device_bytes).items():
        setattr(drv, name, obj)
    drv.__spec__ = ModuleSpec("pycuda.driver", None)

    pkg = types.ModuleType("pycuda")
    pkg.__path__ = []
    pkg.__spec__ = ModuleSpec("pycuda", None, is_package=True)
    pkg.driver = drv
    return {"pycuda": pkg, "pycuda.driver": drv}


class AutoinitFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes ``import pycuda.autoinit`` do what it does for real: cuInit, then a current context on device 0."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "pycuda.autoinit":
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        drv = sys.modules["pycuda.driver"]
        drv.init()
        module.device = drv.Device(0)
        module.context = module.device.make_context()


def installed_driver():
    return sys.modules["pycuda.driver"]
