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

:func:`unsupported` says in one line why a (runtime, precision) cannot run here; callers skip that row
with the reason instead of silently running something else.
"""
from __future__ import annotations

import contextlib
import functools
import os
import platform
import sys
from pathlib import Path
from typing import Any, Iterable

from .errors import EdgeAffectError

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
REDUCED_FLOAT = ("bf16", "fp16")     # float precisions that pass the accuracy guard at export

# OpenVINO: INFERENCE_PRECISION_HINT per precision, and the OPTIMIZATION_CAPABILITIES entry a device needs.
OPENVINO_HINT = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}
_OPENVINO_CAPABILITY = {"bf16": "BF16", "fp16": "FP16"}
# ONNX Runtime session config entries that pin f32 (the ARM64 bf16 fast-math GEMM is opt-in; pinned anyway).
ONNXRUNTIME_FP32_CONFIG = {"mlas.enable_gemm_fastmath_arm64_bfloat16": "0"}
# Precisions each runtime can run at all (then :func:`unsupported` checks this machine).
RUNTIME_PRECISIONS = {
    "torch": ("fp32", "bf16"),
    "onnxruntime": ("fp32", "fp16", "int8"),
    "openvino": ("fp32", "bf16", "fp16", "int8"),
    "tensorrt": ("fp32", "fp16", "int8"),
}
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
    import datetime as _dt

    info: dict[str, Any] = {"cpu": cpu_name(), "arch": platform.machine(), "cores": physical_cores(),
                            "logical_cpus": os.cpu_count(), "threads": threads, "isa": isa(),
                            "python": platform.python_version(), "host": platform.node(),
                            "date": _dt.datetime.now().isoformat(timespec="seconds")}
    versions = {}
    for mod in ("torch", "onnxruntime", "openvino", "nncf", "tensorrt"):
        m = sys.modules.get(mod)
        if m is not None:
            versions[mod] = str(getattr(m, "__version__", "?"))
    info["versions"] = versions
    return info


# --------------------------------------------------------------------------------------- what runs here
def unsupported(runtime: str, precision: str, *, device: str | None = None) -> str | None:
    """Why ``runtime`` cannot run ``precision`` on this machine, in one line; None when it can."""
    check_precisions([precision])
    if precision not in RUNTIME_PRECISIONS.get(runtime, PRECISIONS):
        return f"{runtime} has no {precision} execution"
    if runtime == "openvino" and precision in _OPENVINO_CAPABILITY:
        return _openvino_unsupported(precision, device or "CPU")
    if runtime == "torch" and precision == "bf16" and not (device or "cpu").startswith("cuda"):
        if not cpu_flags() & set(NATIVE_BF16_FLAGS):
            return (f"this CPU ({cpu_name()}) has no native bf16 (avx512_bf16/amx_bf16); "
                    f"torch would emulate it")
    if runtime == "onnxruntime" and precision == "fp16" and (device or "cpu") == "cpu":
        return "ONNX Runtime's CPU provider runs float16 graphs through casts to float32; fp16 needs its CUDA provider"
    return None


def _openvino_unsupported(precision: str, device: str) -> str | None:
    try:
        caps = openvino_capabilities(device)
    except Exception as exc:  # noqa: BLE001 - no OpenVINO, or no such device: say so
        return f"openvino cannot query {device}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    need = _OPENVINO_CAPABILITY[precision]
    if need not in caps:
        where = f"this CPU ({cpu_name()})" if device == "CPU" else f"OpenVINO device {device}"
        return f"{where} does not run {precision} in OpenVINO (capabilities: {', '.join(caps)})"
    return None


@functools.lru_cache(maxsize=8)
def openvino_capabilities(device: str = "CPU") -> tuple[str, ...]:
    import openvino as ov

    return tuple(ov.Core().get_property(device, "OPTIMIZATION_CAPABILITIES"))


# ---------------------------------------------------------------------------------- per-runtime settings
def openvino_config(precision: str, device: str = "CPU") -> dict[str, str]:
    """The compile properties that make OpenVINO execute ``precision`` (never the device default)."""
    check_precisions([precision])
    hint = OPENVINO_HINT[precision]
    if precision == "int8" and _openvino_unsupported("bf16", device) is None:
        hint = OPENVINO_HINT["bf16"]   # the float remainder of an INT8 model, where the device runs bf16
    config = {"INFERENCE_PRECISION_HINT": hint}
    if precision == "fp32" and str(device).upper() == "CPU":
        # The CPU plugin's fused "snippets" kernels, used once shapes are static, moved a tiny ERI model's f32
        # outputs by 1.2e-3 against torch (6e-8 without them); on the quickstart model, batch 8, they were
        # no faster (49.5 vs 47.7 ms p50, AMD EPYC AVX2). fp32 means f32 arithmetic, so they are off.
        config["SNIPPETS_MODE"] = "DISABLE"
    return config


def torch_autocast(precision: str, device: str = "cpu"):
    """The context a torch forward runs in for ``precision``: none for fp32, autocast for bf16/fp16."""
    check_precisions([precision])
    if precision == "fp32":
        return contextlib.nullcontext()
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        raise EdgeAffectError(f"torch runs fp32 and bf16 only, not {precision}")
    return torch.autocast(device_type=str(device).split(":")[0], dtype=dtype)


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
