"""Execution precision: what ``fp32``, ``bf16``, ``fp16`` and ``int8`` mean on each runtime, and whether
this machine runs them.

Every stage that runs a model (export parity, the INT8 guard, bench, eval, the demo) asks this module,
so a precision name means one thing everywhere:

- ``fp32`` is f32 end to end: OpenVINO ``INFERENCE_PRECISION_HINT=f32`` (its CPU plugin otherwise
  picks bf16 on AMX/AVX512-BF16 CPUs), ONNX Runtime without its bf16 fast-math GEMM, torch without
  autocast.  Never a runtime's CPU-dependent default.
- ``bf16`` / ``fp16`` are asked for by name: OpenVINO's hint (where the device lists the capability),
  torch CPU autocast bf16 (where the CPU has native bf16), TensorRT fp16 engines.
- ``int8`` is a quantized artifact.  On OpenVINO its float remainder (depthwise convs, norms, softmax)
  runs bf16 where the device lists BF16, else f32: measured on an AMX Xeon, the remainder in bf16 made
  the ERI INT8 model 1.09x (64 px) and 1.46x (112 px) faster at the same metric
  (benchmarks/results/2026-12-01-int8-eri-*-amx.md).  The accuracy guard
  scores exactly this setting, and ``precision_mix`` records it per row.

What each runtime executes, and why this machine cannot run one of them, is its own entry's business
(``RuntimeEntry.precisions`` and ``check`` in ``edgeaffect/runtimes/<name>/``; asked through
``runtimes.registry.unsupported``): callers skip that row with the reason instead of silently running
something else.
"""
from __future__ import annotations

import datetime as _dt
import functools
import os
import platform
import sys
from pathlib import Path
from typing import Any, Iterable

from .errors import EdgeAffectError

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
REDUCED_FLOAT = ("bf16", "fp16")     # float precisions that pass the accuracy guard at export

# libraries whose version a measurement records, where this process has loaded them: each runtime's entry adds
# its packages (runtimes.registry.register_runtime)
VERSIONED: set[str] = set()
# /proc/cpuinfo flags that decide what runs fast (x86 and ARM).
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
             "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16",
             "neon", "asimd", "asimdhp", "asimddp", "bf16", "i8mm", "sve", "sve2")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def check_precisions(names: Iterable[str], option: str = "--precision") -> list[str]:
    """The names, validated against :data:`PRECISIONS` (one line naming the valid values otherwise)."""
    names = list(names)
    bad = [n for n in names if n not in PRECISIONS]
    if bad:
        raise EdgeAffectError(f"{option}: unknown precision {bad[0]!r}; choose from {', '.join(PRECISIONS)}")
    return names


# ------------------------------------------------------------------------------------------ the machine
@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``flags`` on x86, ``Features`` on ARM), empty where unreadable."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware"):
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def isa() -> list[str]:
    """The flags of :data:`ISA_FLAGS` this CPU has, in that order."""
    flags = cpu_flags()
    return [f for f in ISA_FLAGS if f in flags]


def physical_cores() -> int:
    """Physical cores available to this process (SMT siblings counted once)."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:
        allowed = list(range(os.cpu_count() or 1))
    cores = set()
    for cpu in allowed:
        try:
            base = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
            cores.add(((base / "physical_package_id").read_text().strip(), (base / "core_id").read_text().strip()))
        except OSError:
            cores.add(("?", str(cpu)))
    return max(1, len(cores))


def machine(threads: int | None = None) -> dict[str, Any]:
    """What a number was measured on: CPU model, cores, threads used, ISA flags, runtime versions."""
    info: dict[str, Any] = {"cpu": cpu_name(), "arch": platform.machine(), "cores": physical_cores(),
                            "logical_cpus": os.cpu_count(), "threads": threads, "isa": isa(),
                            "python": platform.python_version(), "host": platform.node(),
                            "date": _dt.datetime.now().isoformat(timespec="seconds")}
    info["versions"] = {name: str(getattr(sys.modules[name], "__version__", "?"))
                        for name in sorted(VERSIONED) if name in sys.modules}
    return info


# ----------------------------------------------------------------------------------------- names
def from_backend(name: str) -> str:
    """A backend's element type name (``f32``, ``bf16``, ``f16``, ``i8``, ``u8``, ``float16`` ...) as ours."""
    name = str(name).lower()
    if name in ("f32", "float32", "float", "fp32"):
        return "fp32"
    if name in ("bf16", "bfloat16"):
        return "bf16"
    if name in ("f16", "float16", "half", "fp16"):
        return "fp16"
    if name in ("i8", "u8", "int8", "uint8"):
        return "int8"
    return name


def dominant(counts: dict[str, int]) -> str | None:
    """The precision most compute ops ran in (ties go to the lower precision: the one that was asked for)."""
    if not counts:
        return None
    order = {p: i for i, p in enumerate(PRECISIONS)}
    return max(counts, key=lambda p: (counts[p], order.get(p, -1)))
