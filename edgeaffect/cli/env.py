"""``edgeaffect env``: what this machine has and can run (runtimes, precisions, GPU, TensorRT, CPU ISA).

The first thing to run on a new device, and what to paste into a bug report: each runtime is
imported for real (installed is not the same as usable: a JetPack TensorRT outside the venv, a
pycuda built against another CUDA), and every failure is one line saying why.
"""
from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from ..precision import machine
from . import app


def runtimes() -> dict[str, Any]:
    """Per runtime: whether its packages import, their versions, and which precisions run here."""
    from ..runtimes.registry import get_runtime, list_runtimes, probe_import, runtime_precisions, unsupported

    out = {}
    for name in list_runtimes():
        entry = get_runtime(name)
        versions, problems = {}, []
        for package in entry.packages:
            version, why = probe_import(package)
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


def describe() -> dict[str, Any]:
    """The machine, what each runtime package says about this device (GPUs, TensorRT), and every runtime."""
    from ..runtimes.registry import devices

    info = machine()
    info.pop("date", None)
    return {"machine": info, **{k: v for report, _ in devices() for k, v in report.items()}, "runtimes": runtimes()}


def _print(report: dict[str, Any]) -> None:
    from ..runtimes.registry import devices

    m = report["machine"]
    typer.echo(f"cpu         {m['cpu']} ({m['arch']}, {m['cores']} cores)")
    typer.echo(f"isa         {' '.join(m['isa']) or 'unknown'}")
    typer.echo(f"python      {m['python']}")
    for _, lines in devices():
        for line in lines(report):
            typer.echo(line)
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
