"""``edgeaffect env``: what this machine has and can run (runtimes, precisions, GPU, TensorRT, CPU ISA).

The first thing to run on a new device, and what to paste into a bug report: each runtime is
imported for real (installed is not the same as usable: a JetPack TensorRT outside the venv, a
pycuda built against another CUDA), and every failure is one line saying why.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from . import app

L4T_RELEASE = Path("/etc/nv_tegra_release")   # JetPack's L4T version, on Jetsons only


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _import(package: str) -> tuple[str | None, str | None]:
    """(version, None) when ``package`` imports, else (None, why)."""
    try:
        mod = importlib.import_module(package)
    except Exception as exc:  # noqa: BLE001 - any import failure means "not usable here", said in one line
        return None, _first_line(exc)
    return str(getattr(mod, "__version__", getattr(mod, "VERSION", "?"))), None


def runtimes() -> dict[str, Any]:
    """Per runtime: whether its packages import, their versions, and which precisions run here."""
    from ..runtimes.registry import runtime_precisions, unsupported
    from ..runtimes.registry import get_runtime, list_runtimes

    out = {}
    for name in list_runtimes():
        entry = get_runtime(name)
        versions, problems = {}, []
        for package in entry.packages:
            version, why = _import(package)
            versions[package] = version
            if why:
                problems.append(f"{package}: {why}")
        row: dict[str, Any] = {"usable": not problems, "versions": versions}
        if problems:
            row["why"] = f"{'; '.join(problems)} (pip install 'edgeaffect[{entry.extra}]')"
        else:
            row["precisions"] = {p: unsupported(name, p) or "yes" for p in runtime_precisions().get(name, ())}
        out[name] = row
    return out


def gpus() -> list[dict[str, Any]] | str:
    """Every CUDA device pycuda sees (name, compute capability, SMs, memory), or why none can be listed."""
    from ..runtimes import tensorrt as trt_rt

    try:
        cuda = trt_rt.import_cuda()
        cuda.init()
        return [trt_rt.device_info(i) for i in range(cuda.Device.count())]
    except Exception as exc:  # noqa: BLE001 - no pycuda, no driver, no device: one line
        return _first_line(exc)


def tensorrt() -> dict[str, Any]:
    """The TensorRT version, what it builds, and the engine name it would write for device 0."""
    from ..runtimes import tensorrt as trt_rt

    version, why = _import("tensorrt")
    if why:
        return {"version": None, "why": why}
    trt = importlib.import_module("tensorrt")
    info: dict[str, Any] = {"version": version, "implicit_int8": hasattr(trt, "IInt8EntropyCalibrator2"),
                            "fp16": "BuilderFlag.FP16" if hasattr(trt.BuilderFlag, "FP16") else
                            "strongly typed, from an fp16 ONNX"}
    try:
        info["engine_name"] = trt_rt.engine_filename(trt_rt.current_target(0), "fp32", (1, 1, 8))
    except Exception as exc:  # noqa: BLE001
        info["engine_name"] = None
        info["why"] = _first_line(exc)
    return info


def jetson() -> dict[str, str] | None:
    from ..runtimes.tensorrt import jetson_model

    model = jetson_model()
    if model is None:
        return None
    try:
        l4t = L4T_RELEASE.read_text(errors="replace").splitlines()[0].lstrip("# ").strip()
    except (OSError, IndexError):
        l4t = "unknown"
    return {"module": model, "l4t": l4t}


def describe() -> dict[str, Any]:
    from ..precision import machine

    info = machine()
    info.pop("date", None)
    return {"machine": info, "jetson": jetson(), "gpus": gpus(), "tensorrt": tensorrt(), "runtimes": runtimes()}


def _print(report: dict[str, Any]) -> None:
    m = report["machine"]
    typer.echo(f"cpu         {m['cpu']} ({m['arch']}, {m['cores']} cores)")
    typer.echo(f"isa         {' '.join(m['isa']) or 'unknown'}")
    typer.echo(f"python      {m['python']}")
    if report["jetson"]:
        typer.echo(f"jetson      {report['jetson']['module']} ({report['jetson']['l4t']})")
    gpus_ = report["gpus"]
    for i, g in enumerate(gpus_ if isinstance(gpus_, list) else []):
        typer.echo(f"gpu {i:<7} {g['name']}: compute capability {g['cc']}, {g['sms']} SMs, "
                   f"{g['memory'] / 2**30:.1f} GiB")
    if not isinstance(gpus_, list):
        typer.echo(f"gpu         none usable ({gpus_})")
    t = report["tensorrt"]
    typer.echo(f"tensorrt    {t['version'] or 'not usable'}" + (f" ({t['why']})" if t.get("why") else ""))
    if t.get("engine_name"):
        typer.echo(f"            fp16: {t['fp16']}; implicit INT8: {'yes' if t['implicit_int8'] else 'no'}; "
                   f"engines here are named {t['engine_name']}")
    for name, r in report["runtimes"].items():
        if not r["usable"]:
            typer.echo(f"{name:<11} not usable: {r['why']}")
            continue
        versions = ", ".join(f"{k} {v}" for k, v in r["versions"].items())
        runs = [p for p, why in r["precisions"].items() if why == "yes"]
        typer.echo(f"{name:<11} {versions}; runs {', '.join(runs) or 'nothing'}")
        for p, why in r["precisions"].items():
            if why != "yes":
                typer.echo(f"            no {p}: {why}")


@app.command("env")
def env_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """What this machine has and can run: CPU and ISA, GPU and compute capability, TensorRT, each runtime.

    Example:  edgeaffect env            # on the Jetson, before `edgeaffect build-engine BUNDLE`
    """
    report = describe()
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
    else:
        _print(report)
