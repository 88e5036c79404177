"""``edgeaffect sign``: signing keys and signatures of run / bundle folders (``export``/``pack --sign`` sign
as they write; ``--trust`` / ``EDGEAFFECT_TRUST`` make the loading commands check)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import app
from .common import console

sign_app = typer.Typer(help="Sign run and bundle folders with a private key; verify them with its public key.",
                       no_args_is_help=True)
app.add_typer(sign_app, name="sign")


@sign_app.command("keygen")
def keygen_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for edgeaffect-signing.key (private) and .pub.")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a key pair already in --out.")] = False,
) -> None:
    """Make an EC P-256 key pair: the private key stays on the build machine, the public key goes to devices.

    Set EDGEAFFECT_SIGN_PASSWORD to encrypt the private key (signing then reads the same variable).

    Example:  edgeaffect sign keygen --out ~/.edgeaffect-keys && scp ~/.edgeaffect-keys/edgeaffect-signing.pub jetson:
    """
    from ..signing import keygen

    private, public = keygen(out, overwrite=overwrite)
    console.print(f"wrote {private} (private: keep it off the devices) and {public} (public: ship it)", soft_wrap=True)


@sign_app.command("folder")
def folder_cmd(
    folder: Annotated[Path, typer.Argument(help="Run or bundle folder to sign.")],
    key: Annotated[Path, typer.Option("--key", "-k", help="Private key (PEM).")],
) -> None:
    """Sign a run or bundle folder already written (export/pack --sign do it as they write).

    Example:  edgeaffect sign folder runs/eri/exp1/bundle-openvino --key ~/.edgeaffect-keys/edgeaffect-signing.key
    """
    from ..signing import sign

    typer.echo(str(sign(folder, key)))


@sign_app.command("verify")
def verify_cmd(
    target: Annotated[Path, typer.Argument(help="Run or bundle folder, or a model file in one.")],
    trust: Annotated[Path, typer.Option("--trust", envvar="EDGEAFFECT_TRUST", help="Public key (PEM).")],
) -> None:
    """Check a folder's signature: exit 0 when every signed file is unchanged and signed by TRUST's key.

    Example:  edgeaffect sign verify bundle-openvino --trust edgeaffect-signing.pub
    """
    from ..signing import verify

    root = verify(target, trust)
    console.print(f"[green]ok[/] {root}: signature verified with {trust}", soft_wrap=True)
