"""What ``edgeaffect env`` says about this device for TensorRT: the Jetson module and its L4T release, every
CUDA device pycuda sees, the TensorRT version, what it builds, and the engine name it would write here."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..registry import first_line, probe_import
from . import current_target, device_info, engine_filename, import_cuda, import_tensorrt, jetson_model

L4T_RELEASE = Path("/etc/nv_tegra_release")   # JetPack's L4T version, on Jetsons only


def report() -> dict[str, Any]:
    """The device part of ``edgeaffect env``'s report."""
    return {"jetson": jetson(), "gpus": gpus(), "tensorrt": tensorrt()}


def lines(report: dict[str, Any]) -> list[str]:
    """``report``'s lines in ``edgeaffect env``'s text form."""
    out = []
    if report["jetson"]:
        out.append(f"jetson      {report['jetson']['module']} ({report['jetson']['l4t']})")
    gpus_ = report["gpus"]
    for i, g in enumerate(gpus_ if isinstance(gpus_, list) else []):
        out.append(f"gpu {i:<7} {g['name']}: compute capability {g['cc']}, {g['sms']} SMs, "
                   f"{g['memory'] / 2**30:.1f} GiB")
    if not isinstance(gpus_, list):
        out.append(f"gpu         none usable ({gpus_})")
    t = report["tensorrt"]
    out.append(f"tensorrt    {t['version'] or 'not usable'}" + (f" ({t['why']})" if t.get("why") else ""))
    if t.get("engine_name"):
        out.append(f"            fp16: {t['fp16']}; implicit INT8: {'yes' if t['implicit_int8'] else 'no'}; "
                   f"engines here are named {t['engine_name']}")
    return out


def gpus() -> list[dict[str, Any]] | str:
    """Every CUDA device pycuda sees (name, compute capability, SMs, memory), or why none can be listed."""
    try:
        cuda = import_cuda()
        cuda.init()
        return [device_info(i) for i in range(cuda.Device.count())]
    except Exception as exc:  # noqa: BLE001 - no pycuda, no driver, no device: one line
        return first_line(exc)


def tensorrt() -> dict[str, Any]:
    """The TensorRT version, what it builds, and the engine name it would write for device 0."""
    version, why = probe_import("tensorrt")
    if why:
        return {"version": None, "why": why}
    trt = import_tensorrt()
    info: dict[str, Any] = {"version": version, "implicit_int8": hasattr(trt, "IInt8EntropyCalibrator2"),
                            "fp16": "BuilderFlag.FP16" if hasattr(trt.BuilderFlag, "FP16") else
                            "strongly typed, from an fp16 ONNX"}
    try:
        info["engine_name"] = engine_filename(current_target(0), "fp32", (1, 1, 8))
    except Exception as exc:  # noqa: BLE001
        info["engine_name"] = None
        info["why"] = first_line(exc)
    return info


def jetson() -> dict[str, str] | None:
    model = jetson_model()
    if model is None:
        return None
    try:
        l4t = L4T_RELEASE.read_text(errors="replace").splitlines()[0].lstrip("# ").strip()
    except (OSError, IndexError):
        l4t = "unknown"
    return {"module": model, "l4t": l4t}
