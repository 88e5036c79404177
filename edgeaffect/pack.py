"""``edgeaffect pack``: a self-contained deploy bundle for one runtime, installable without torch.

A bundle is a folder that an edge box needs nothing else to run::

    manifest.json       spec, EVERY file's sha256, size and role, the export's precision decisions, provenance
    SHA256SUMS          the same hashes plus manifest.json's, for ``sha256sum -c`` (no Python needed)
    requirements.txt    the torch-free install: this package's wheel with the runtime's extra
    edgeaffect-*.whl    the package itself, built from the installed files (nothing to fetch but its deps)
    commands.sh         the exact engine-build, bench and demo commands to run there
    model.onnx ...      the chosen artifacts at their conventional names, so the bundle is also a run folder

TensorRT engines are specific to the GPU and TensorRT version that built them, so a TensorRT bundle
carries what builds the engine on the device (``edgeaffect build-engine``): the ONNX for fp32/fp16, the
QDQ ONNX for explicit INT8, and for implicit INT8 (TensorRT 8.6/10, JetPack) the calibration samples
and the run's calibration cache when it has one.

Nothing in a bundle runs unchecked: ``commands.sh`` runs the installed console script (never a package
folder beside it) and first ``edgeaffect check-bundle .``, which, like ``build-engine``, refuses a bundle
with a file that differs from its hashes, a listed file missing, or an unlisted file that could be
imported or executed (:func:`check_bundle`).
"""
from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import tomllib

from . import __version__
from .errors import EdgeAffectError
from .fileio import atomic_dir, sha256_file, write_json, write_text
from .precision import PRECISIONS, check_precisions
from .quantize.calibration import CalibrationSet, load_split, select_calibration
from .runs import Run, load_run, read_manifest, reading_run
from .runtimes.registry import artifact_files, deployable, get_runtime, list_runtimes, refusals, resolve
from .signing import SIGNATURE, SIGNED
from .spec import ModelSpec

MANIFEST = "manifest.json"
REQUIREMENTS = "requirements.txt"
COMMANDS = "commands.sh"
SUMS = "SHA256SUMS"
CALIB_DATA = "tensorrt/calibration.npz"
CALIB_CACHE = "tensorrt/calibration.cache"
# what runs the demo in a bundle when several precisions are packed: the fastest the guard let through
DEMO_PREFERENCE = ("int8", "fp16", "fp32", "bf16")
# unlisted files a bundle may gain on the device (bench results, the verification cache, the demo's and the
# user's outputs): data only, nothing Python imports or a shell executes
OUTPUT_SUFFIXES = (".json", ".jsonl", ".csv", ".png", ".jpg", ".jpeg", ".mp4", ".avi", ".mkv", ".webm", ".log")
OUTPUT_NAMES = (".lock",)
SIGNING_FILES = (SIGNATURE, SIGNED)   # `pack --sign` adds them after the sums; the signature vouches for itself
DEMO_SERVE = "127.0.0.1:8080"


@dataclass(frozen=True)
class Item:
    """One file of a bundle: where it comes from in the run, where it goes, what it is for."""

    src: Path
    rel: str
    precision: str
    role: str          # "model", "weights", "engine-source", "calibration"


# ------------------------------------------------------------------------------------------ choosing
def choose_items(run_dir: Path, runtime: str, precisions: Iterable[str] = (),
                 calib_samples: int = 64) -> tuple[list[str], list[Item]]:
    """(precisions, files) of ``runtime`` at ``precisions`` (default: every one the run has), refusing what is missing."""
    entry = deploy_entry(runtime)
    asked = check_precisions(precisions)
    table = entry.sources()
    for p in asked:
        if p not in entry.precisions or p not in table:
            raise EdgeAffectError(f"--precision: {runtime} does not run {p}; it runs "
                                  f"{', '.join(q for q in entry.precisions if q in table)}")
    refused = {label.split("-", 1)[1]: why for label, why in refusals(run_dir).items() if label.startswith(f"{runtime}-")}
    # by default every file the run has; a precision sharing the fp32 file (bf16) only when asked for
    chosen = asked or [p for p, rel in table.items() if (run_dir / rel).is_file() and p not in refused
                       and (p == "fp32" or rel != table["fp32"])] or ["fp32"]  # none: say fp32 is missing
    items: list[Item] = []
    for p in chosen:
        rel = table[p]
        if p in refused:
            raise EdgeAffectError(f"{runtime} {p} was refused by the accuracy guard at export: {refused[p]}")
        if not (run_dir / rel).is_file():
            hint = "edgeaffect quantize" if p == "int8" else "edgeaffect export"
            raise EdgeAffectError(f"{run_dir} has no {runtime} {p} artifact ({rel}); run `{hint} {run_dir}` first")
        role = "engine-source" if entry.device_sources else "model"
        items.append(Item(run_dir / rel, rel, p, role))
        if rel.endswith(".xml"):
            weights = rel[:-4] + ".bin"
            items.append(Item(run_dir / weights, weights, p, "weights"))
    if entry.device_sources and "int8" in chosen:
        items += _device_calibration(run_dir, calib_samples)
    return sorted(chosen, key=_order), _unique(items)


def deploy_entry(runtime: str):
    """The runtime table's entry of a runtime `pack` makes bundles for (one line naming them otherwise)."""
    if runtime not in deployable():
        raise EdgeAffectError(f"--runtime: unknown deploy runtime {runtime!r}; choose from {', '.join(deployable())}")
    return get_runtime(runtime)


def _device_calibration(run_dir: Path, calib_samples: int) -> list[Item]:
    """Implicit INT8 on the device needs the calibration samples (and reuses the run's cache when it matches)."""
    if not (run_dir / "model.onnx").is_file():
        return []          # explicit INT8 (the QDQ ONNX) only
    items = [Item(run_dir / "model.onnx", "model.onnx", "int8", "engine-source")]
    for rel in (CALIB_CACHE, CALIB_CACHE + ".json"):
        if (run_dir / rel).is_file():
            items.append(Item(run_dir / rel, rel, "int8", "calibration"))
    if calib_samples > 0:
        items.append(Item(run_dir / CALIB_DATA, CALIB_DATA, "int8", "calibration"))  # written, not copied
    return items


def _unique(items: list[Item]) -> list[Item]:
    seen: dict[str, Item] = {}
    for it in items:
        seen.setdefault(it.rel, it)
    return list(seen.values())


# ------------------------------------------------------------------------------------------ writing
@reading_run   # a reader of the run: refused in the middle of an export, and keeps writers out while it packs
def pack_run(run_dir: str | os.PathLike, runtime: str, out: str | os.PathLike | None = None, *,
             precisions: Iterable[str] = (), overwrite: bool = False, calib_samples: int = 64,
             data_root: str | os.PathLike | None = None) -> Path:
    """Write the bundle of ``run_dir`` for ``runtime`` into ``out`` (default ``RUN/bundle-<runtime>``); atomic.

    Each artifact is first verified against the run's manifest (what bench would refuse is not packed with
    fresh hashes), and each copy is checked against the hash the run lists.
    """
    run_dir = Path(run_dir)
    if not (run_dir / MANIFEST).is_file():
        raise EdgeAffectError(f"{run_dir} is not a run directory (no {MANIFEST}); train or import a model first")
    out = Path(out) if out is not None else run_dir / f"bundle-{runtime}"
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise EdgeAffectError(f"{out} exists and is not empty; choose another --out or pass --overwrite")
    chosen, items = choose_items(run_dir, runtime, precisions, calib_samples)
    manifest = read_manifest(run_dir)
    listed = _verify_sources(run_dir, manifest, items)
    with atomic_dir(out) as tmp:
        for it in items:
            dest = tmp / it.rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if it.rel == CALIB_DATA:
                _write_calibration(run_dir, dest, calib_samples, data_root)
                continue
            shutil.copy2(it.src, dest)
            if it.rel in listed and sha256_file(dest) != listed[it.rel]:
                raise EdgeAffectError(f"{it.src} is not the file {run_dir / MANIFEST} lists (its sha256 differs): "
                                      f"it was changed after export; re-export it (edgeaffect export {run_dir})")
        wheel = build_wheel(tmp)
        write_text(tmp / REQUIREMENTS, requirements(wheel.name, bundle_extras(runtime, manifest.get("spec"))))
        write_text(tmp / COMMANDS, commands(runtime, chosen))
        roles = {wheel.name: "package", REQUIREMENTS: "install", COMMANDS: "script"}
        _write_manifest(tmp, manifest, run_dir, runtime, chosen, items, roles)
        _readable(tmp)
    return out


def _verify_sources(run_dir: Path, manifest: dict, items: list[Item]) -> dict[str, str]:
    """The run's own verification of every artifact to pack (rel -> listed sha256); calibration data is
    not a run artifact (the samples are written here, the cache is checked by TensorRT itself)."""
    sources = [it for it in items if it.role != "calibration"]
    Run(run_dir, manifest).verify(*(it.src for it in sources))
    artifacts = manifest.get("artifacts", {})
    return {it.rel: artifacts[it.rel]["sha256"] for it in sources if it.rel in artifacts}


def _readable(root: Path) -> None:
    """Atomic writes create private files; a bundle is meant to be copied and shared."""
    os.chmod(root, 0o755)
    for p in root.rglob("*"):
        os.chmod(p, 0o755 if p.is_dir() or p.name == COMMANDS else 0o644)


def _order(precision: str) -> int:
    return PRECISIONS.index(precision)


def _write_calibration(run_dir: Path, dest: Path, n: int, data_root) -> None:
    """The INT8 calibration samples as one npz (input name -> [N, ...]), chosen as ``edgeaffect quantize`` does."""
    run = load_run(run_dir)
    try:
        task, train = load_split(run, "train", data_root)
    except EdgeAffectError as exc:
        raise EdgeAffectError(f"TensorRT INT8 calibration data: {exc} (give --data, or --calib-samples 0 to carry "
                              f"only the QDQ ONNX and the cache)") from None
    calib = select_calibration(task, train, run.spec, n, split="train")
    feeds = {k: np.concatenate([f[k] for f in calib.feeds]) for k in calib.input_names}
    with open(dest, "wb") as f:
        np.savez(f, **feeds)


def _write_manifest(tmp: Path, manifest: dict, run_dir: Path, runtime: str, chosen: list[str],
                    items: list[Item], roles: dict[str, str]) -> None:
    """A run-folder manifest (so ``demo --model BUNDLE`` resolves artifacts) listing every file of the
    bundle, plus the bundle's own section; then SHA256SUMS with the same hashes and the manifest's."""
    info = {**{rel: {"role": role} for rel, role in roles.items()},
            **{it.rel: {"precision": it.precision, "role": it.role} for it in items}}
    files = {}
    for p in sorted(tmp.rglob("*")):
        rel = p.relative_to(tmp).as_posix()
        if p.is_file() and rel not in (MANIFEST, SUMS):
            files[rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size, **info[rel]}
    precisions = {k: v for k, v in manifest.get("precisions", {}).items() if k.startswith(f"{runtime}-")}
    keep = {k: manifest[k] for k in ("spec", "task", "model", "metrics") if k in manifest}
    write_json(tmp / MANIFEST, {
        **keep, "precisions": precisions, "artifacts": files,
        "bundle": {"format": 2, "runtime": runtime, "edgeaffect": __version__, "source_run": str(run_dir.resolve()),
                   "precisions": chosen, "demo_precision": demo_precision(chosen)}})
    _write_sums(tmp, files)


def _write_sums(bundle: Path, files: dict[str, dict]) -> None:
    sums = {**{rel: v["sha256"] for rel, v in files.items()}, MANIFEST: sha256_file(bundle / MANIFEST)}
    write_text(bundle / SUMS, "".join(f"{h}  {rel}\n" for rel, h in sorted(sums.items())))


def verify(bundle: str | os.PathLike) -> list[str]:
    """Files of a bundle whose sha256 or size differ from its manifest, or that are missing (empty: intact)."""
    bundle = Path(bundle)
    files = read_manifest(bundle).get("artifacts", {})
    bad = []
    for rel, info in files.items():
        p = bundle / _safe_name(bundle, rel)
        info = info if isinstance(info, dict) else {}
        if (p.is_symlink() or not p.is_file() or p.stat().st_size != info.get("bytes")
                or sha256_file(p) != info.get("sha256")):
            bad.append(rel)
    return bad


def _safe_name(bundle: Path, rel: object) -> str:
    """A manifest's file name, refused unless it is a plain relative path inside the bundle."""
    parts = Path(rel).parts if isinstance(rel, str) else ()
    if not parts or Path(rel).is_absolute() or any(x in ("..", ".", "") for x in parts) or "\\" in rel:
        raise EdgeAffectError(f"{bundle / MANIFEST} lists {rel!r}, which is not a file inside the bundle; "
                              f"the bundle was altered: copy it again")
    return Path(*parts).as_posix()


def check_bundle(bundle: str | os.PathLike) -> dict:
    """Refuse a bundle that is not what ``pack`` wrote (one line); returns its manifest.

    Every listed file present with its sha256 and size, SHA256SUMS agreeing with the manifest, no symlink,
    and nothing unlisted but data outputs (bench results, the verification cache, demo output): an added
    ``edgeaffect/`` folder, script or library is refused before anything runs.
    """
    bundle = Path(bundle)
    if not (bundle / MANIFEST).is_file():
        raise EdgeAffectError(f"{bundle} is not a bundle (no {MANIFEST}); make one with `edgeaffect pack RUN --runtime R`")
    manifest = read_manifest(bundle)
    if not isinstance(manifest.get("bundle"), dict) or not isinstance(manifest.get("artifacts"), dict):
        raise EdgeAffectError(f"{bundle} is a run, not a bundle; make one with `edgeaffect pack {bundle} --runtime R`")
    listed = {_safe_name(bundle, rel) for rel in manifest["artifacts"]}
    extra = _unlisted(bundle, listed)
    if extra:
        raise EdgeAffectError(f"{bundle} holds what its manifest does not list ({', '.join(extra[:4])}"
                              f"{f' and {len(extra) - 4} more' if len(extra) > 4 else ''}); nothing unlisted may run "
                              f"from a bundle: move it out (a venv or your own files go beside the bundle) or copy "
                              f"the bundle again")
    bad = verify(bundle)
    if bad:
        raise EdgeAffectError(f"{bundle}: {', '.join(bad)} differ(s) from the bundle's sha256; copy the bundle again")
    if _read_sums(bundle) != {**{r: e["sha256"] for r, e in manifest["artifacts"].items()},
                              MANIFEST: sha256_file(bundle / MANIFEST)}:
        raise EdgeAffectError(f"{bundle / SUMS} does not match {MANIFEST} (one of them was edited); copy the bundle again")
    return manifest


def _unlisted(bundle: Path, listed: set[str]) -> list[str]:
    """Entries of the bundle neither listed nor a data output in a folder that holds listed files."""
    folders = {"."} | {Path(rel).parent.as_posix() for rel in listed} | \
              {p.as_posix() for rel in listed for p in Path(rel).parents}
    extra = []
    for root, dirs, names in os.walk(bundle):
        here = Path(root).relative_to(bundle).as_posix()
        for d in dirs:
            rel = f"{d}" if here == "." else f"{here}/{d}"
            if os.path.islink(Path(root) / d) or rel not in folders:
                extra.append(rel + "/")
        dirs[:] = [d for d in dirs if (f"{d}" if here == "." else f"{here}/{d}") in folders
                   and not os.path.islink(Path(root) / d)]
        for n in names:
            rel = n if here == "." else f"{here}/{n}"
            if rel not in listed and rel not in (MANIFEST, SUMS, *SIGNING_FILES) and not _is_output(Path(root) / n):
                extra.append(rel)
    return sorted(extra)


def _is_output(p: Path) -> bool:
    """A plain, non-executable data file (bench.json, demo output); never a manifest or a spec sidecar."""
    name = p.name.lower()
    data = name.endswith(OUTPUT_SUFFIXES) and name != MANIFEST and not name.endswith(".spec.json")
    return (data or p.name in OUTPUT_NAMES) and not p.is_symlink() and p.is_file() and not os.access(p, os.X_OK)


def _read_sums(bundle: Path) -> dict[str, str]:
    try:
        text = (bundle / SUMS).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise EdgeAffectError(f"{bundle} has no readable {SUMS}; copy the bundle again") from None
    return {rel.lstrip("*"): h for h, _, rel in (line.partition("  ") for line in text.splitlines() if line)}


def bundle_extras(runtime: str, spec: dict | None) -> list[str]:
    """The package extras a bundle installs: its runtime's, and ``media`` (PyAV) for a model that hears, whose
    demo reads a video file's audio track (the edge install leaves PyAV out)."""
    hears = any(i.get("name") == "audio" for i in (spec or {}).get("inputs", []) if isinstance(i, dict))
    return [deploy_entry(runtime).extra, *(["media"] if hears else [])]


def requirements(wheel_name: str, extras: list[str]) -> str:
    return (f"# torch-free install of this bundle: python -m pip install -r {REQUIREMENTS} (from this folder)\n"
            f"./{wheel_name}[{','.join(extras)}]\n")


def demo_precision(precisions: list[str]) -> str:
    """The packed precision the demo runs: the fastest one packed (packing skips what the guard refused)."""
    return min(precisions, key=lambda p: DEMO_PREFERENCE.index(p) if p in DEMO_PREFERENCE else len(DEMO_PREFERENCE))


COMMANDS_HEAD = f"""#!/bin/sh
# Run on the device after checking the copy and installing it (from this folder):
#   sha256sum -c SHA256SUMS && python3 -m pip install -r requirements.txt
# SOURCE: camera index, file or rtsp:// URL; DEMO_ARGS: the demo's output (default: the web page on this
# machine only); DEMO_PRECISION: the demo's precision; BENCH_ARGS: extra bench options (e.g. --threads 4).
# Runs the installed `edgeaffect` (or $PYTHON -I -m edgeaffect), never code from this folder, and checks
# the whole bundle (hashes, nothing unlisted) before anything else.
set -e
cd "$(dirname "$0")"
EA_BIN=$(command -v edgeaffect || true)
if [ -n "${{PYTHON:-}}" ]; then EA="$PYTHON -I -m edgeaffect"
elif [ "${{EA_BIN#/}}" != "$EA_BIN" ]; then EA="$EA_BIN"   # an absolute path: never one found through '.' in PATH
else EA="python3 -I -m edgeaffect"; fi
SOURCE="${{SOURCE:-0}}"
if [ -z "${{DEMO_ARGS+set}}" ]; then
    DEMO_ARGS="--serve {DEMO_SERVE}"
    echo "commands.sh: the demo page will be at http://{DEMO_SERVE}/ (this machine only). To open it to the LAN:" \\
         "DEMO_ARGS='--serve 0.0.0.0:8080' sh commands.sh (it prints the URL with a fresh token;" \\
         "EDGEAFFECT_DEMO_TOKEN=<secret> fixes one)" >&2
fi
$EA check-bundle .
"""


def commands(runtime: str, precisions: list[str]) -> str:
    """The shell script the device runs: check the bundle, build engines (TensorRT), bench each precision,
    then the demo at the fastest packed precision."""
    lines = [COMMANDS_HEAD.rstrip("\n")]
    entry = deploy_entry(runtime)
    for p in precisions:
        if entry.device_sources:  # the engine is built here, for this GPU and runtime version
            lines.append(f"ENGINE=$($EA build-engine . --precision {p})")
            lines.append(f'$EA bench "$ENGINE" --runtime {runtime} $BENCH_ARGS')
        else:
            lines.append(f"$EA bench {entry.sources()[p]} --runtime {runtime} --precision {p} $BENCH_ARGS")
    lines.append(f'$EA demo --model . --runtime {runtime} --precision "${{DEMO_PRECISION:-{demo_precision(precisions)}}}" '
                 f'--source "$SOURCE" $DEMO_ARGS')
    return "\n".join(lines) + "\n"


def build_bundle_engine(bundle: str | os.PathLike, precision: str = "fp32", *, implicit: bool = False,
                        max_batch: int = 8) -> Path:
    """Build the engine of a bundle on this device (``edgeaffect build-engine``), checked against its hashes first,
    by the bundle runtime's own builder (TensorRT: ``runtimes/tensorrt/int8.py:build_for_bundle``), then listed.

    INT8 takes the QDQ ONNX (explicit, every TensorRT version) unless ``implicit`` asks TensorRT 8.6/10 to
    calibrate ``model.onnx`` itself on the bundled samples (reusing the bundled cache when it matches).
    """
    bundle = Path(bundle)
    manifest = check_bundle(bundle)
    kind = manifest.get("bundle", {}).get("runtime")
    builders = [n for n in list_runtimes() if get_runtime(n).device_builder]
    if kind not in builders:
        what = f"an {kind} bundle" if kind else "not a bundle"
        raise EdgeAffectError(f"{bundle} is {what}; engines are built from a "
                              f"{' or '.join(get_runtime(n).title or n for n in builders)} bundle "
                              f"(edgeaffect pack RUN --runtime {builders[0]})")
    build = resolve(get_runtime(kind).device_builder)
    engine = build(bundle, precision, implicit=implicit, max_batch=max_batch, spec=ModelSpec.from_dict(manifest["spec"]),
                   calibration=lambda: load_calibration(bundle))
    _list_engine(bundle, manifest, engine, kind, precision)
    return engine


def _list_engine(bundle: Path, manifest: dict, engine: Path, runtime: str, precision: str) -> None:
    """List an engine built on the device in the bundle's manifest and SHA256SUMS, so bench and the demo
    verify it like the rest and the next bundle check accepts it."""
    run = Run(bundle, manifest)
    run.record_artifact(engine, *artifact_files(engine)[1:], runtime=runtime, precision=precision,
                        built_on_device=True)
    for rel in (CALIB_CACHE, CALIB_CACHE + ".json"):           # implicit INT8 (re)writes them
        listed = run.manifest["artifacts"].get(rel, {}).get("sha256")
        if (bundle / rel).is_file() and sha256_file(bundle / rel) != listed:
            run.record_artifact(bundle / rel, precision="int8", role="calibration", built_on_device=True)
    _write_sums(bundle, run.manifest["artifacts"])


def load_calibration(bundle: Path):
    """The bundled calibration samples as the :class:`CalibrationSet` the INT8 calibrator reads."""
    path = bundle / CALIB_DATA
    if not path.is_file():
        raise EdgeAffectError(f"{bundle} carries no calibration samples ({CALIB_DATA}); "
                              f"pack it with --calib-samples N (N > 0) for implicit INT8")
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    n = len(next(iter(data.values())))
    return CalibrationSet([{k: v[i:i + 1] for k, v in data.items()} for i in range(n)], list(range(n)), "train")


# ------------------------------------------------------------------------------------------ the wheel
def build_wheel(dest: Path) -> Path:
    """A pure-Python wheel of the installed ``edgeaffect`` package (its files and declared dependencies)."""
    pkg = Path(__file__).resolve().parent
    name = f"edgeaffect-{__version__}"
    files: dict[str, bytes] = {}
    for p in sorted(pkg.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"):
            files[f"edgeaffect/{p.relative_to(pkg).as_posix()}"] = p.read_bytes()
    info = f"{name}.dist-info"
    files[f"{info}/METADATA"] = _metadata(pkg).encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: edgeaffect.pack\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{info}/entry_points.txt"] = b"[console_scripts]\nedgeaffect = edgeaffect.cli:main\n"
    record = "".join(f"{k},sha256={_b64(hashlib.sha256(v).digest())},{len(v)}\n" for k, v in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    path = dest / f"{name}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for k, v in files.items():
            z.writestr(k, v)
    return path


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _metadata(pkg: Path) -> str:
    """Core metadata: from the source checkout's pyproject.toml when there is one (an editable install's
    metadata can be stale), else from the installed distribution."""
    requires, extras, python = _declared(pkg)
    head = ["Metadata-Version: 2.1", "Name: edgeaffect", f"Version: {__version__}",
            "Summary: Emotion-recognition models from training to compiled, quantized edge inference.",
            f"Requires-Python: {python}"]
    return "\n".join(head + [f"Provides-Extra: {e}" for e in extras] + [f"Requires-Dist: {r}" for r in requires]) + "\n"


def _declared(pkg: Path) -> tuple[list[str], list[str], str]:
    pyproject = pkg.parent / "pyproject.toml"
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text())["project"]
        requires = list(project.get("dependencies", []))
        extras = project.get("optional-dependencies", {})
        for extra, reqs in extras.items():
            requires += [_with_extra(r, extra) for r in reqs]
        return requires, list(extras), project.get("requires-python", ">=3.10")
    dist = importlib.metadata.distribution("edgeaffect")
    return (list(dist.requires or []), dist.metadata.get_all("Provides-Extra") or [],
            dist.metadata.get("Requires-Python") or ">=3.10")


def _with_extra(req: str, extra: str) -> str:
    """``pkg>=1; marker`` -> ``pkg>=1; (marker) and extra == "x"``."""
    spec, _, marker = req.partition(";")
    marker = f"({marker.strip()}) and " if marker.strip() else ""
    return f'{spec.strip()}; {marker}extra == "{extra}"'


def deploy_requirements(wheel: Path, extras: list[str]) -> list[str]:
    """The distributions ``pip install -r requirements.txt`` asks for (the base plus the bundle's extras)."""
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    out = []
    for line in meta.splitlines():
        if line.startswith("Requires-Dist: "):
            req = line[len("Requires-Dist: "):]
            m = re.search(r'extra == "([^"]+)"', req)
            if m is None or m.group(1) in extras:
                out.append(req)
    return out
