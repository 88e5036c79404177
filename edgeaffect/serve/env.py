"""Where ``edgeaffect serve`` can run: an interpreter with PyTriton whose libpython is the stub's.

PyTriton pins numpy<2 and its Triton Python backend stub links the distribution's ``libpython3.X.so``;
an interpreter built elsewhere (pyenv, conda) has another stdlib, and the stub then fails at model load
(``'_thread.RLock' object has no attribute '_recursion_count'``).  So serving lives in its own venv
(``make serve-env``: ``.venv-serve`` in the source checkout, made with the distribution's python3; or one
named by ``--serve-python`` / $EDGEAFFECT_SERVE_PYTHON) and the main env re-executes the command there.
Nothing here imports pytriton.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from ..errors import EdgeAffectError

SERVE_PYTHON_ENV = "EDGEAFFECT_SERVE_PYTHON"
"""Names the serve env's python (as ``--serve-python`` does) when it is not ``.venv-serve`` in the checkout."""
REEXEC_ENV = "EDGEAFFECT_SERVE_REEXEC"

HOW = ("make serve-env (or: /usr/bin/python3 -m venv .venv-serve && .venv-serve/bin/pip install '.[serve]'; "
       "on an install: pip install 'edgeaffect[serve]' into a venv of the system python3, then name its python "
       "with --serve-python or $EDGEAFFECT_SERVE_PYTHON)")


def stub_path() -> Path | None:
    """PyTriton's Python backend stub for this interpreter's version (None without pytriton)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0])
    return root / "tritonserver" / "python_backend_stubs" / f"{sys.version_info[0]}.{sys.version_info[1]}" / \
        "triton_python_backend_stub"


def stub_libpython(stub: Path) -> Path | None:
    """The libpython the dynamic linker gives the stub (``ldd``), or None when it cannot tell."""
    try:
        out = subprocess.run(["ldd", str(stub)], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        name, _, rest = line.strip().partition(" => ")
        if name.startswith("libpython") and rest:
            return Path(rest.split(" (")[0].strip())
    return None


def own_libpython() -> Path | None:
    """This interpreter's shared libpython (None for a statically linked build)."""
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if not (sysconfig.get_config_var("Py_ENABLE_SHARED") and libdir and soname):
        return None
    return Path(libdir) / soname


def serve_problem() -> str | None:
    """Why this interpreter cannot serve (one line), or None when it can."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = stub_path()
    if stub is None:
        return f"serving needs PyTriton (the serve extra), which {sys.executable} does not have"
    if not stub.is_file():
        return f"PyTriton ships no Python backend stub for Python {version}"
    theirs, ours = stub_libpython(stub), own_libpython()
    if theirs is None:
        return f"the Triton Python backend stub finds no libpython{version} on this machine (apt install libpython{version})"
    if ours is None or os.path.realpath(ours) != os.path.realpath(theirs):
        return (f"{sys.executable} (Python {sys.version.split()[0]}) is not the interpreter whose libpython the Triton "
                f"Python backend stub links ({theirs}): make the serve env with that distribution's python3")
    return None


def serve_python(named: str | os.PathLike | None = None) -> Path | None:
    """The serve env's python: ``named`` (``--serve-python``), else $EDGEAFFECT_SERVE_PYTHON, else
    ``.venv-serve`` in the source checkout this package runs from; never one found in the cwd, which
    whoever can write there could have planted."""
    named = named or os.environ.get(SERVE_PYTHON_ENV)
    if named:
        py = Path(named).expanduser()
        if not (py.is_file() and os.access(py, os.X_OK)):
            raise EdgeAffectError(f"--serve-python / ${SERVE_PYTHON_ENV}: {py} is not an executable python; "
                                  f"name the serve env's interpreter (e.g. /opt/serve-venv/bin/python)")
        return py.absolute()
    root = source_root()
    py = root / ".venv-serve" / "bin" / "python" if root is not None else None
    return py if py is not None and py.is_file() else None


def source_root() -> Path | None:
    """The checkout this package runs from (so the serve env runs the same code), None for an install."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def reexec_command(args: list[str], python: str | os.PathLike | None = None
                   ) -> tuple[list[str], dict[str, str]] | None:
    """(argv, env) that run ``edgeaffect serve ARGS`` in the serve env; None when there is none to go to.

    The serve env's python runs isolated (``-I``: neither the cwd nor $PYTHONPATH on its path), with this
    checkout put first when the package runs from one, so a folder named ``edgeaffect`` in the cwd is
    never what runs.
    """
    py = serve_python(python)
    if py is None or os.environ.get(REEXEC_ENV) or Path(sys.executable).absolute() == py.absolute():
        return None
    env = dict(os.environ, **{REEXEC_ENV: "1"})
    root = source_root()
    path = f"sys.path.insert(0, {str(root)!r}); " if root is not None else ""
    code = f"import sys; {path}from edgeaffect.cli import main; sys.exit(main())"
    return [str(py), "-I", "-c", code, "serve", *args], env
