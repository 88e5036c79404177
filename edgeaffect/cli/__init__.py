"""The ``edgeaffect`` command line: one module per command group.

Heavy libraries (torch, onnxruntime, openvino) are imported inside the command
bodies so that ``--help`` answers at once and a deploy install without torch
runs every command that does not train or export.  Known errors
(:class:`~edgeaffect.errors.EdgeAffectError`) are printed as one line and exit 1;
so is a torch-only command on such an install (``pip install 'edgeaffect[train]'``).
"""
from __future__ import annotations

import importlib
import sys

import typer

from ..errors import EdgeAffectError, missing_torch, os_error_line

app = typer.Typer(
    name="edgeaffect",
    help="Emotion-recognition models from training to a compiled, quantized edge model, measured at every step.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root() -> None:
    """edgeaffect: train, export, quantize, benchmark and demo emotion-recognition models.

    Example:  edgeaffect data synth eri --out data/eri && edgeaffect train eri --data data/eri
    """


# Each module registers its commands on ``app`` when imported.
_COMMAND_MODULES = (
    "data",
    "train",
    "models",
    "zoo",
    "demo",
    "eri",
    "quickstart",
    "export",
    "bench",
    "quantize",
    "va",
    "expr",
    "ravdess",
    "eval",
    "body",
    "pack",
    "env",
    "serve",
    "report",
    "sign",
)

for _name in _COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}")


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turning known errors into one line."""
    try:
        app(args=argv, prog_name="edgeaffect", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except EdgeAffectError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        return 1
    except ImportError as exc:
        known = missing_torch(exc, _command(argv))
        if known is None:
            raise
        typer.secho(f"error: {known}", fg=typer.colors.RED, err=True)
        return 1
    except OSError as exc:   # disk full, read-only folder, permission denied: the path and the cause
        typer.secho(f"error: {os_error_line(exc)}", fg=typer.colors.RED, err=True)
        return 1
    except KeyboardInterrupt:
        typer.secho("interrupted", fg=typer.colors.YELLOW, err=True)
        return 130
    return 0


def _command(argv: list[str] | None) -> str:
    """``edgeaffect train eri``-style name of the command being run (its first words, no options)."""
    words = list(sys.argv[1:] if argv is None else argv)
    head = []
    for w in words[:2]:
        if w.startswith("-"):
            break
        head.append(w)
    return f"`edgeaffect {' '.join(head)}`" if head else ""


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
