"""A fake ``pycuda`` (``pycuda.driver``) with simulated device memory.

Device memory is a dict of bytearrays keyed by fake addresses.  The fake
enforces what real CUDA code gets wrong silently or crashes on, and accepts what
pycuda accepts (inducer/pycuda: src/wrapper/wrap_cudadrv.cpp, src/cpp/cuda.hpp):
- every driver call needs ``cuda.init()`` first; allocations, copies and streams a current context;
- ``Device(i)`` for every ``i < Device.count()``; ``name()``, ``compute_capability()``,
  ``total_memory()`` and ``get_attribute(device_attribute.MULTIPROCESSOR_COUNT)`` as pycuda has them
  (a Jetson Orin of any module calls itself just 'Orin');
- copies no larger than the allocation; async copies from page-locked memory are queued on their
  stream and only happen at ``stream.synchronize()`` (reading a host buffer before that sees stale
  data); from ordinary (pageable) memory CUDA stages them: host-to-device reads the host array at
  the call, device-to-host returns only once the stream has reached it and the copy is done;
- ``DeviceAllocation.free()`` needs no current context (pycuda activates the allocation's own,
  ``device_allocation::free`` in cuda.hpp); freeing twice or using freed memory fails.
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


def make_pycuda(gpu_name: str = "NVIDIA Fake GPU", total_mem: int = 8 << 30, cc: tuple[int, int] = (8, 7),
                sms: int = 16, count: int = 1) -> dict[str, types.ModuleType]:
    """Return ``{"pycuda": pkg, "pycuda.driver": driver}`` ready for ``sys.modules`` (``count`` equal devices)."""
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
            if not 0 <= ordinal < count:
                raise FakeCudaError(f"cuDeviceGet failed: invalid device ordinal {ordinal}")
            self.ordinal = ordinal

        def name(self) -> str:
            return gpu_name

        def total_memory(self) -> int:
            return total_mem

        def compute_capability(self) -> tuple[int, int]:
            return tuple(cc)

        def get_attribute(self, attr):
            values = {device_attribute.MULTIPROCESSOR_COUNT: sms, device_attribute.COMPUTE_CAPABILITY_MAJOR: cc[0],
                      device_attribute.COMPUTE_CAPABILITY_MINOR: cc[1]}
            return values[attr]

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
            return count

    device_attribute = types.SimpleNamespace(MULTIPROCESSOR_COUNT="MULTIPROCESSOR_COUNT",
                                             COMPUTE_CAPABILITY_MAJOR="COMPUTE_CAPABILITY_MAJOR",
                                             COMPUTE_CAPABILITY_MINOR="COMPUTE_CAPABILITY_MINOR")

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

        def free(self):   # pycuda makes the allocation's own context current for the free
            if self.address in state.freed:
                raise FakeCudaError("device_allocation::free failed: invalid resource handle")
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
        if not host.flags.c_contiguous:
            raise FakeCudaError(f"{what}: host buffer is not contiguous")

    def memcpy_htod_async(dest, src, stream=None):
        _need_context()
        _check_host(src, "memcpy_htod_async")
        mem = device_bytes(dest)
        if src.nbytes > len(mem):
            raise FakeCudaError(f"memcpy_htod_async: {src.nbytes} bytes into a {len(mem)}-byte allocation")
        staged = None if _is_pagelocked(src) else src.tobytes()   # pageable: CUDA copies it out at the call

        def run():  # like the DMA engine, a page-locked copy reads the host buffer when the stream reaches it
            mem[: src.nbytes] = staged if staged is not None else src.tobytes()

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
        elif not _is_pagelocked(dest):   # pageable: returns once the stream got there and the copy is done
            stream.synchronize()
            run()
        else:
            stream.enqueue(("dtoh", int(src), dest.nbytes), run)

    def memcpy_htod(dest, src):
        memcpy_htod_async(dest, np.ascontiguousarray(src).view(PageLocked), None)

    for name, obj in dict(init=init, Device=Device, Context=Context, mem_alloc=mem_alloc,
                          pagelocked_empty=pagelocked_empty, Stream=Stream, memcpy_htod_async=memcpy_htod_async,
                          memcpy_dtoh_async=memcpy_dtoh_async, memcpy_htod=memcpy_htod,
                          device_attribute=device_attribute,
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
