"""``edgeaffect pack`` (a deploy bundle for one runtime), ``edgeaffect check-bundle`` (the whole bundle, before
anything in it runs) and ``edgeaffect build-engine`` (TensorRT, on the device)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import app
from .common import SignOpt, TrustOpt, console, split_csv


@app.command("pack")
def pack_cmd(
    run: Annotated[Path, typer.Argument(help="Run directory with exported artifacts.")],
    runtime: Annotated[str, typer.Option("--runtime", "-r", help="onnxruntime, openvino or tensorrt.")],
    precision: Annotated[Optional[str], typer.Option(
        "--precision", "-p", help="Comma-separated precisions (default: every artifact the run has for the runtime; "
                                   "bf16 and TensorRT fp16 only when named).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Bundle folder (default: RUN/bundle-<runtime>).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing non-empty --out folder.")] = False,
    calib_samples: Annotated[int, typer.Option(
        "--calib-samples", min=0, help="TensorRT INT8: calibration samples carried for implicit calibration on the "
                                       "device (0: only the QDQ ONNX and the run's cache).")] = 64,
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="Dataset root for the calibration samples (default: the run's).")] = None,
    sign: SignOpt = None,
) -> None:
    """Write a self-contained deploy bundle: artifacts with spec and sha256, a torch-free requirements file,
    the package wheel and the exact commands to run on the device. Each artifact is first checked against
    the run's manifest; the bundle's manifest and SHA256SUMS list every file it holds.

    Example:  edgeaffect pack runs/eri/exp1 --runtime openvino --precision fp32,int8
    Example:  edgeaffect pack runs/eri/exp1 --runtime tensorrt --out jetson-bundle   # engine built on the Jetson
    Example:  edgeaffect pack runs/eri/exp1 --runtime openvino --sign keys/edgeaffect-signing.key   (docs/signing.md)
    """
    from ..pack import COMMANDS, REQUIREMENTS, SUMS, pack_run

    if sign is not None:
        from ..signing import check_key

        check_key(sign)
    with console.status(f"packing {run} for {runtime} (artifacts, hashes, wheel, calibration data)"):
        bundle = pack_run(run, runtime, out, precisions=split_csv(precision), overwrite=overwrite,
                          calib_samples=calib_samples, data_root=data)
    if sign is not None:
        from ..signing import sign as sign_folder

        sign_folder(bundle, sign)
    console.print(f"wrote {bundle}" + (" (signed)" if sign is not None else ""))
    console.print(f"on the device:  cd {bundle.name} && sha256sum -c {SUMS} && python3 -m pip install -r {REQUIREMENTS} "
                  f"&& sh {COMMANDS}", soft_wrap=True)


@app.command("check-bundle")
def check_bundle_cmd(
    bundle: Annotated[Path, typer.Argument(help="A bundle written by `edgeaffect pack`.")],
) -> None:
    """Check a whole bundle before running it: every listed file present with its sha256, SHA256SUMS agreeing
    with the manifest, and no unlisted file that could be imported or executed (an added folder, script or
    library). The bundle's commands.sh runs this first; exits 1 with one line when anything is off.

    Example:  edgeaffect check-bundle eri-openvino && sh eri-openvino/commands.sh
    """
    from ..pack import check_bundle

    manifest = check_bundle(bundle)
    typer.echo(f"{bundle}: {len(manifest['artifacts'])} files match the bundle's manifest; nothing unlisted",
               err=True)


@app.command("build-engine")
def build_engine_cmd(
    bundle: Annotated[Path, typer.Argument(help="A TensorRT bundle written by `edgeaffect pack --runtime tensorrt`.")],
    precision: Annotated[str, typer.Option("--precision", "-p", help="fp32, fp16 or int8.")] = "fp32",
    implicit: Annotated[bool, typer.Option(
        "--implicit", help="INT8 calibrated by TensorRT 8.6/10 on the bundled samples instead of the QDQ ONNX.")] = False,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Largest batch the engine accepts.")] = 8,
    trust: TrustOpt = None,
) -> None:
    """Build a bundle's TensorRT engine on this device (engines are tied to the GPU and TensorRT version).

    Prints the engine's path on stdout, so a script can bench it.

    Example:  ENGINE=$(edgeaffect build-engine jetson-bundle --precision int8) && edgeaffect bench "$ENGINE"
    """
    from ..pack import build_bundle_engine
    from ..signing import check_trust

    check_trust(bundle, trust)
    with console.status(f"building the {precision} TensorRT engine (minutes on a Jetson)"):   # on stderr
        engine = build_bundle_engine(bundle, precision, implicit=implicit, max_batch=max_batch)
    typer.echo(str(engine))
