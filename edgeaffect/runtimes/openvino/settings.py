"""What each precision means on OpenVINO, and whether this machine's device runs it.

``fp32`` pins ``INFERENCE_PRECISION_HINT=f32`` (the CPU plugin otherwise picks bf16 on AMX/AVX512-BF16
CPUs); ``bf16``/``fp16`` are the hint where the device lists the capability; an ``int8`` IR runs its float
remainder in bf16 where the device lists BF16 (see :mod:`edgeaffect.precision`).
"""
from __future__ import annotations

import functools

from ...lazy import lazy_import
from ...precision import check_precisions, cpu_name

ov = lazy_import("openvino", "openvino", "the OpenVINO runtime")

# INFERENCE_PRECISION_HINT per precision, and the OPTIMIZATION_CAPABILITIES entry a device needs.
OPENVINO_HINT = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}
CAPABILITY = {"bf16": "BF16", "fp16": "FP16"}
PRECISIONS = ("fp32", "bf16", "fp16", "int8")


def unsupported_here(precision: str, device: str | None = None) -> str | None:
    """Why ``device`` (default CPU) cannot run ``precision`` in OpenVINO, in one line; None when it can."""
    if precision not in CAPABILITY:
        return None
    device = device or "CPU"
    try:
        caps = openvino_capabilities(device)
    except Exception as exc:  # noqa: BLE001 - no OpenVINO, or no such device: say so
        return f"openvino cannot query {device}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    if CAPABILITY[precision] not in caps:
        where = f"this CPU ({cpu_name()})" if device == "CPU" else f"OpenVINO device {device}"
        return f"{where} does not run {precision} in OpenVINO (capabilities: {', '.join(caps)})"
    return None


@functools.lru_cache(maxsize=8)
def openvino_capabilities(device: str = "CPU") -> tuple[str, ...]:
    return tuple(ov.Core().get_property(device, "OPTIMIZATION_CAPABILITIES"))


def openvino_config(precision: str, device: str = "CPU") -> dict[str, str]:
    """The compile properties that make OpenVINO execute ``precision`` (never the device default)."""
    check_precisions([precision])
    hint = OPENVINO_HINT[precision]
    if precision == "int8" and unsupported_here("bf16", device) is None:
        hint = OPENVINO_HINT["bf16"]   # the float remainder of an INT8 model, where the device runs bf16
    config = {"INFERENCE_PRECISION_HINT": hint}
    if precision == "fp32" and str(device).upper() == "CPU":
        # The CPU plugin's fused "snippets" kernels, used once shapes are static, moved a tiny ERI model's f32
        # outputs by 1.2e-3 against torch (6e-8 without them); on the quickstart model, batch 8, they were
        # no faster (49.5 vs 47.7 ms p50, AMD EPYC AVX2). fp32 means f32 arithmetic, so they are off.
        config["SNIPPETS_MODE"] = "DISABLE"
    return config
