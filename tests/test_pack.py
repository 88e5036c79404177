"""edgeaffect pack: bundle contents and hashes, torch-free requirements, commands, refusals, TensorRT on the device."""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgeaffect.cli import main
from edgeaffect.errors import EdgeAffectError
from edgeaffect.export import export_run
from edgeaffect.fileio import sha256_file
from edgeaffect.pack import (COMMANDS, MANIFEST, REQUIREMENTS, SUMS, build_bundle_engine, check_bundle, deploy_requirements,
                             pack_run, verify)
from edgeaffect.runs import Run
from tests.fakes import install
from tests.fakes.tiny_model import make_dataset, make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("pack")
    data = make_dataset(base / "data")
    shutil.copy(data / "val.npz", data / "train.npz")   # calibration samples come from the train split
    run = make_run(base / "run", data=data)
    export_run(run, ["onnx", "openvino"], exporter="legacy")
    return run


def publish(run: Path, rel: str, runtime: str, precision: str = "int8") -> Path:
    """A copy of model.onnx at ``rel``, listed in the run's manifest as `quantize` would publish it."""
    (run / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(run / "model.onnx", run / rel)
    Run(run, json.loads((run / MANIFEST).read_text())).record_artifact(run / rel, runtime=runtime, precision=precision)
    return run / rel


@pytest.fixture
def trt_run(run, tmp_path):
    """The run plus the TensorRT-ready INT8 file `quantize --runtime tensorrt` writes (a copy stands in)."""
    r = tmp_path / "run"
    shutil.copytree(run, r)
    publish(r, "tensorrt/model.int8.qdq.onnx", "tensorrt")
    return r


@pytest.fixture
def int8_run(run, tmp_path):
    """The run with an ONNX Runtime INT8 file listed as quantize lists it (a copy of the fp32 stands in)."""
    r = tmp_path / "int8run"
    shutil.copytree(run, r)
    publish(r, "model.int8.onnx", "onnxruntime")
    return r


def _wheel(bundle: Path) -> Path:
    return next(bundle.glob("edgeaffect-*.whl"))


def test_bundle_holds_the_artifacts_with_spec_and_hashes_that_verify(run, tmp_path):
    bundle = pack_run(run, "openvino", tmp_path / "b", precisions=["fp32", "bf16"])
    m = json.loads((bundle / MANIFEST).read_text())
    wheel = _wheel(bundle).name
    held = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert set(m["artifacts"]) == held - {MANIFEST, SUMS} == {
        "openvino/model.xml", "openvino/model.bin", wheel, REQUIREMENTS, COMMANDS}   # every file the bundle holds
    for rel in ("openvino/model.xml", "openvino/model.bin"):
        assert m["artifacts"][rel]["sha256"] == sha256_file(run / rel)
    for rel, info in m["artifacts"].items():
        assert info["sha256"] == sha256_file(bundle / rel) and info["bytes"] == (bundle / rel).stat().st_size
    assert {m["artifacts"][r]["role"] for r in (wheel, REQUIREMENTS, COMMANDS)} == {"package", "install", "script"}
    assert m["spec"]["name"] == "tiny_av_test" and m["bundle"]["runtime"] == "openvino"
    assert m["bundle"]["precisions"] == ["fp32", "bf16"]
    sums = dict(reversed(line.split("  ")) for line in (bundle / SUMS).read_text().splitlines())
    assert sums == {**{rel: info["sha256"] for rel, info in m["artifacts"].items()},
                    MANIFEST: sha256_file(bundle / MANIFEST)}
    assert not (bundle / "checkpoint.pt").exists() and not (bundle / "model.onnx").exists()
    assert verify(bundle) == [] and check_bundle(bundle)["bundle"]["runtime"] == "openvino"
    (bundle / "openvino/model.bin").write_bytes(b"tampered")
    assert verify(bundle) == ["openvino/model.bin"]


def test_requirements_install_the_wheel_with_the_runtime_extra_and_no_torch(run, tmp_path):
    bundle = pack_run(run, "onnxruntime", tmp_path / "b")
    wheel = _wheel(bundle)
    lines = [x for x in (bundle / REQUIREMENTS).read_text().splitlines() if x and not x.startswith("#")]
    assert lines == [f"./{wheel.name}[onnxruntime,media]"]          # the model hears: PyAV for its demo's audio
    reqs = deploy_requirements(wheel, ["onnxruntime", "media"])
    names = {r.split(";")[0].split(">")[0].split("<")[0].split("=")[0].strip() for r in reqs}
    assert {"onnxruntime", "av", "numpy", "opencv-python-headless"} <= names
    assert "onnx" not in names                                        # ONNX Runtime alone on the device
    assert not any(n.startswith("torch") for n in names), reqs
    with zipfile.ZipFile(wheel) as z:
        files = set(z.namelist())
        assert {"edgeaffect/__init__.py", "edgeaffect/cli/pack.py", "edgeaffect/demo/pipeline.py"} <= files
        assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)
        assert "edgeaffect = edgeaffect.cli:main" in z.read("edgeaffect-0.1.0.dist-info/entry_points.txt").decode()
        meta = z.read("edgeaffect-0.1.0.dist-info/METADATA").decode()
    assert 'Requires-Dist: torch>=2.4,<=2.13.0; extra == "train"' in meta   # torch only in the train extra
    assert "Provides-Extra: onnx\n" in meta                               # the old name still resolves ...
    assert 'Requires-Dist: edgeaffect[onnxruntime]; extra == "onnx"' in meta   # ... to the new one


def test_commands_check_the_bundle_bench_every_precision_and_demo_the_fastest(int8_run, tmp_path):
    bundle = pack_run(int8_run, "onnxruntime", tmp_path / "b")
    models = {r for r, e in json.loads((bundle / MANIFEST).read_text())["artifacts"].items() if e["role"] == "model"}
    assert models == {"model.onnx", "model.int8.onnx"}
    script = (bundle / COMMANDS).read_text()
    body = [line for line in script.splitlines() if line.startswith("$EA ")]
    assert body[0] == "$EA check-bundle ."                                  # before anything else runs
    assert "$EA bench model.onnx --runtime onnxruntime --precision fp32 $BENCH_ARGS" in body
    assert "$EA bench model.int8.onnx --runtime onnxruntime --precision int8 $BENCH_ARGS" in body
    assert body[-1] == ('$EA demo --model . --runtime onnxruntime --precision "${DEMO_PRECISION:-int8}" '
                        '--source "$SOURCE" $DEMO_ARGS')                   # the accepted INT8, not fp32
    assert 'DEMO_ARGS="--serve 127.0.0.1:8080"' in script and "0.0.0.0:8080' sh commands.sh" in script
    assert "-m edgeaffect" not in script.replace("-I -m edgeaffect", "")   # never `python -m` from this folder
    assert (bundle / COMMANDS).stat().st_mode & 0o111


@pytest.mark.parametrize("args, message", [
    (["--runtime", "onnx"], "unknown deploy runtime 'onnx'"),
    (["--runtime", "torch"], "unknown deploy runtime 'torch'"),
    (["--runtime", "onnxruntime", "--precision", "int4"], "unknown precision 'int4'"),
    (["--runtime", "onnxruntime", "--precision", "bf16"], "onnxruntime does not run bf16"),
    (["--runtime", "onnxruntime", "--precision", "int8"], "no onnxruntime int8 artifact (model.int8.onnx)"),
    (["--runtime", "tensorrt", "--precision", "int8"], "no tensorrt int8 artifact (tensorrt/model.int8.qdq.onnx)"),
])
def test_bad_input_is_one_line(run, tmp_path, capsys, args, message):
    out = tmp_path / "b"
    assert main(["pack", str(run), "--out", str(out), *args]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2
    assert not out.exists()


def test_a_run_without_the_runtimes_artifact_is_refused(tmp_path, capsys):
    bare = make_run(tmp_path / "bare")     # trained, never exported
    assert main(["pack", str(bare), "--runtime", "openvino", "--out", str(tmp_path / "b")]) == 1
    assert "no openvino fp32 artifact (openvino/model.xml); run `edgeaffect export" in capsys.readouterr().err


def test_a_precision_the_guard_refused_is_not_packed(run, tmp_path):
    r = tmp_path / "run"
    shutil.copytree(run, r)
    m = json.loads((r / MANIFEST).read_text())
    m["precisions"] = {"openvino-bf16": {"accepted": False, "reason": "pearson drop 3.1 points"}}
    (r / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(EdgeAffectError, match="refused by the accuracy guard at export: pearson drop 3.1"):
        pack_run(r, "openvino", tmp_path / "b", precisions=["bf16"])


def test_an_existing_folder_is_kept_unless_overwrite(run, tmp_path, capsys):
    out = tmp_path / "b"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert main(["pack", str(run), "--runtime", "onnxruntime", "--out", str(out)]) == 1
    assert "exists and is not empty" in capsys.readouterr().err and (out / "mine.txt").read_text() == "keep me"
    assert main(["pack", str(run), "--runtime", "onnxruntime", "--out", str(out), "--overwrite"]) == 0
    assert not (out / "mine.txt").exists() and (out / "model.onnx").is_file()


def test_tensorrt_bundle_carries_what_builds_the_engine_on_the_device(trt_run, tmp_path):
    bundle = pack_run(trt_run, "tensorrt", tmp_path / "b", calib_samples=8)
    files = json.loads((bundle / MANIFEST).read_text())["artifacts"]
    assert {"model.onnx", "tensorrt/model.int8.qdq.onnx", "tensorrt/calibration.npz"} <= set(files)
    assert not list(bundle.rglob("*.engine"))                   # engines are built where they run
    with np.load(bundle / "tensorrt/calibration.npz") as z:
        assert set(z.files) == {"video", "audio"} and len(z["video"]) == 8
        assert z["video"].shape[1:] == (2, 3, 8, 8)
    script = (bundle / COMMANDS).read_text()
    assert "ENGINE=$($EA build-engine . --precision fp32)" in script
    assert "ENGINE=$($EA build-engine . --precision int8)" in script and '$EA bench "$ENGINE"' in script


def test_tensorrt_bundle_reuses_the_runs_calibration_cache(trt_run, tmp_path):
    (trt_run / "tensorrt" / "calibration.cache").write_bytes(b"cache")
    (trt_run / "tensorrt" / "calibration.cache.json").write_text("{}")
    bundle = pack_run(trt_run, "tensorrt", tmp_path / "b", precisions=["int8"], calib_samples=0)
    files = json.loads((bundle / MANIFEST).read_text())["artifacts"]
    assert {r for r, e in files.items() if e["role"] not in ("package", "install", "script")} == {"model.onnx", "tensorrt/model.int8.qdq.onnx", "tensorrt/calibration.cache",
                          "tensorrt/calibration.cache.json"}


@pytest.mark.parametrize("version", ["10.3.0", "11.0.0"])
def test_build_engine_on_the_device_through_the_fakes(trt_run, tmp_path, monkeypatch, capsys, version):
    from edgeaffect.runtimes.tensorrt import engine_precision

    bundle = pack_run(trt_run, "tensorrt", tmp_path / "b", calib_samples=8)
    install(monkeypatch, version=version, gpu="NVIDIA Jetson AGX Orin")
    assert main(["build-engine", str(bundle)]) == 0
    fp32 = Path(capsys.readouterr().out.strip())
    assert fp32.parent == bundle / "tensorrt" and fp32.is_file() and engine_precision(fp32) == "fp32"
    int8 = build_bundle_engine(bundle, "int8")                          # explicit: the QDQ ONNX, every version
    assert engine_precision(int8) == "int8"
    check_bundle(bundle)                                         # engines built here are listed, SHA256SUMS too
    if version.startswith("10"):                                  # implicit: TensorRT calibrates the samples
        build_bundle_engine(bundle, "int8", implicit=True)
        assert (bundle / "tensorrt" / "calibration.cache").is_file()
        check_bundle(bundle)                                     # the cache TensorRT wrote is listed too
    else:
        with pytest.raises(EdgeAffectError, match="no implicit INT8 calibration"):
            build_bundle_engine(bundle, "int8", implicit=True)


def test_build_engine_refuses_a_damaged_copy(trt_run, tmp_path):
    bundle = pack_run(trt_run, "tensorrt", tmp_path / "b", calib_samples=0)
    (bundle / "model.onnx").write_bytes(b"truncated")
    with pytest.raises(EdgeAffectError, match="model.onnx differ"):
        build_bundle_engine(bundle, "fp32")


def test_build_engine_wants_a_tensorrt_bundle(run, tmp_path, capsys):
    bundle = pack_run(run, "onnxruntime", tmp_path / "b")
    assert main(["build-engine", str(bundle)]) == 1
    assert "is an onnxruntime bundle; engines are built from a TensorRT bundle" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ the whole bundle
@pytest.fixture
def bundle(run, tmp_path):
    return pack_run(run, "onnxruntime", tmp_path / "b")


def _check_line(bundle: Path, capsys) -> str:
    assert main(["check-bundle", str(bundle)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_sha256sum_checks_every_file_of_a_bundle(bundle):
    import subprocess

    ok = subprocess.run(["sha256sum", "-c", "--strict", SUMS], cwd=bundle, capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.count(": OK") == 5, ok.stdout   # model, wheel, requirements, script, manifest
    (bundle / REQUIREMENTS).write_text("./evil.whl\n")
    bad = subprocess.run(["sha256sum", "-c", SUMS], cwd=bundle, capture_output=True, text=True)
    assert bad.returncode == 1 and f"{REQUIREMENTS}: FAILED" in bad.stdout


@pytest.mark.parametrize("swap", ["wheel", REQUIREMENTS, COMMANDS, "model.onnx"])
def test_a_swapped_file_is_refused_before_anything_runs(bundle, capsys, swap):
    target = _wheel(bundle) if swap == "wheel" else bundle / swap
    target.write_bytes(target.read_bytes()[:-1] + b"#")                 # same size, other content
    assert f"{target.name} differ(s) from the bundle's sha256" in _check_line(bundle, capsys)


@pytest.mark.parametrize("plant", ["edgeaffect/__init__.py", "edgeaffect/", "sitecustomize.py", "evil.pth",
                                   "run.sh", "notes.json:x", "link.json:symlink", "extra.whl"])
def test_an_unlisted_file_that_could_run_is_refused(bundle, capsys, plant):
    name, _, how = plant.partition(":")
    path = bundle / name.rstrip("/")
    if name.endswith("/"):
        path.mkdir()
    elif how == "symlink":
        path.symlink_to(bundle / MANIFEST)
    else:
        path.parent.mkdir(exist_ok=True)
        path.write_text("import os\n")
        if how == "x":
            path.chmod(0o755)
    err = _check_line(bundle, capsys)
    assert "its manifest does not list" in err and name.split("/")[0] in err
    with pytest.raises(EdgeAffectError, match="does not list"):
        check_bundle(bundle)


def test_outputs_of_the_bundles_own_commands_are_accepted(bundle, capsys):
    for name in ("model.onnx.bench.json", "model.onnx.bench.csv", "model.onnx.bench.png", ".verified.json",
                 ".lock", "out.jsonl"):
        (bundle / name).write_text("{}")
    assert main(["check-bundle", str(bundle)]) == 0
    assert "4 files match" in capsys.readouterr().err       # model, wheel, requirements, script


def test_an_edited_manifest_or_sums_and_a_name_outside_are_refused(bundle, capsys):
    sums = (bundle / SUMS).read_text()
    (bundle / SUMS).write_text(sums.replace(f"  {COMMANDS}\n", "  other.sh\n"))
    assert "SHA256SUMS does not match manifest.json" in _check_line(bundle, capsys)
    (bundle / SUMS).write_text(sums)
    m = json.loads((bundle / MANIFEST).read_text())
    m["artifacts"]["../outside.onnx"] = m["artifacts"]["model.onnx"]
    (bundle / MANIFEST).write_text(json.dumps(m))
    assert "lists '../outside.onnx', which is not a file inside the bundle" in _check_line(bundle, capsys)
    (bundle / MANIFEST).write_text("{not json")
    assert "manifest.json is not valid JSON" in _check_line(bundle, capsys)


def test_build_engine_refuses_a_planted_file(trt_run, tmp_path):
    bundle = pack_run(trt_run, "tensorrt", tmp_path / "b", calib_samples=0)
    (bundle / "tensorrt" / "plugin.so").write_bytes(b"\x7fELF")
    with pytest.raises(EdgeAffectError, match=r"does not list \(tensorrt/plugin.so\)"):
        build_bundle_engine(bundle, "fp32")


def test_pack_refuses_an_artifact_changed_after_export(run, tmp_path, capsys):
    r = tmp_path / "run"
    shutil.copytree(run, r)
    xml = r / "openvino" / "model.xml"
    xml.write_text(xml.read_text().replace("</net>", "<!-- changed --></net>"))
    out = tmp_path / "b"
    assert main(["pack", str(r), "--runtime", "openvino", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "is not the file" in err and "model.xml" in err and "Traceback" not in err
    assert not out.exists()                                    # nothing re-hashed into a bundle


def test_pack_refuses_an_artifact_the_run_does_not_list(run, tmp_path):
    r = tmp_path / "run"
    shutil.copytree(run, r)
    shutil.copy(r / "model.onnx", r / "model.int8.onnx")      # dropped in by hand, never published
    with pytest.raises(EdgeAffectError, match="is not listed in"):
        pack_run(r, "onnxruntime", tmp_path / "b")


def test_pack_refuses_an_in_place_change_that_keeps_size_and_mtime(run, tmp_path, capsys):
    """The run's verification cache may vouch for a file by its size and mtime; pack hashes each copy."""
    import os

    r = tmp_path / "run"
    shutil.copytree(run, r)
    pack_run(r, "onnxruntime", tmp_path / "first")              # verified once: the cache now knows model.onnx
    onnx = r / "model.onnx"
    st = onnx.stat()
    data = bytearray(onnx.read_bytes())
    data[-1] ^= 0xFF                                            # same size, other content
    onnx.write_bytes(bytes(data))
    os.utime(onnx, ns=(st.st_atime_ns, st.st_mtime_ns))         # `touch -r`
    out = tmp_path / "b"
    assert main(["pack", str(r), "--runtime", "onnxruntime", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "model.onnx is not the file" in err and "Traceback" not in err and not out.exists()
