"""The deploy install: every command an edge box runs works where torch cannot be imported.

Each command runs in a subprocess whose ``sitecustomize`` puts a ``sys.meta_path`` finder in front that
refuses ``torch`` (as a box with ``pip install 'edgeaffect[onnxruntime]'`` has none), on a model exported
here from a small ERI run. What each test needs beyond this package's CLI, pack and demo:
``load``/``infer`` the runtimes; ``bench model.onnx`` edgeaffect/bench.py; ``eval model.onnx``
edgeaffect/evaluate.py + cli/eval.py and the torch-free dataset readers (edgeaffect/tasks, data).
The real thing, a fresh venv with a registry install, is ``make deploy-check`` and the slow test below.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import TINY_ERI, TINY_MODEL

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore")

BLOCKER = '''
import os
import sys


class _NoTorch:
    """A deploy install: torch is not there, nor librosa and what it pulls (numba, llvmlite, scipy, scikit-learn),
    nor the onnx package ([onnxruntime] is ONNX Runtime alone); EDGEAFFECT_TEST_HIDE names more (e.g. av)."""

    hidden = ("torch", "librosa", "numba", "llvmlite", "scipy", "sklearn", "onnx",
              *[n for n in os.environ.get("EDGEAFFECT_TEST_HIDE", "").split(",") if n])

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.hidden:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoTorch())
'''


@pytest.fixture(scope="module")
def no_torch(tmp_path_factory) -> dict[str, str]:
    """Environment for subprocesses in which ``import torch`` fails."""
    site = tmp_path_factory.mktemp("notorch")
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "COLUMNS": "200"}
    return env


def run_cli(env, *args, cwd=None, timeout=300, check=False) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "edgeaffect", *map(str, args)], env=env, cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An ERI run (untrained weights, tiny input sizes) exported to ONNX and OpenVINO with the full install,
    and quantized to INT8 for both on its own 16-clip set (enough train clips to calibrate; the guard is told
    to accept, as what is tested here is that a bundle runs its INT8)."""
    import torch

    from edgeaffect.data.synth.eri import ERISynthConfig, generate_eri
    from edgeaffect.export import export_run
    from edgeaffect.fileio import write_json
    from edgeaffect.models import create_model
    from edgeaffect.quantize.config import QuantConfig
    from edgeaffect.quantize.pipeline import quantize_run
    from edgeaffect.runs import save_checkpoint

    data = tmp_path_factory.mktemp("eri16")
    generate_eri(data, ERISynthConfig(seed=3, **{**TINY_ERI, "clips": 16}), workers=1)
    run = tmp_path_factory.mktemp("deploy") / "run"
    run.mkdir()
    torch.manual_seed(0)
    model = create_model("eri_dual_branch", **TINY_MODEL)
    save_checkpoint(run / "checkpoint.pt", model, "eri_dual_branch", dict(TINY_MODEL))
    write_json(run / "manifest.json", {"task": "eri", "spec": model.spec.to_dict(), "data": {"root": str(data)}})
    export_run(run, ["onnx", "openvino"], exporter="legacy")
    quantize_run(run, ["onnxruntime", "openvino"], QuantConfig(calib_samples=8, max_drop=100.0))
    return run


@pytest.fixture(scope="module")
def console_script(tmp_path_factory) -> Path:
    """A folder with an ``edgeaffect`` console script as pip writes one (this checkout's package), for PATH."""
    bin_dir = tmp_path_factory.mktemp("bin")
    script = bin_dir / "edgeaffect"
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
                      "from edgeaffect.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)
    return bin_dir


def run_bundle(bundle: Path, env: dict[str, str], console_script: Path, **extra: str) -> subprocess.CompletedProcess:
    """The bundle's own commands.sh with the console script on PATH, run from another folder."""
    from edgeaffect.pack import COMMANDS

    env = {**env, "PATH": f"{console_script}{os.pathsep}{env.get('PATH', '')}", **extra}
    env.pop("PYTHON", None)
    return subprocess.run(["sh", str(bundle / COMMANDS)], env=env, cwd=bundle.parent, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from edgeaffect.demo.clips import render_clip

    return render_clip(tmp_path_factory.mktemp("clip") / "face.mp4", seconds=1.2, fps=15, size=(320, 240))


def test_the_blocker_really_hides_torch(no_torch):
    for name in ("torch", "librosa", "scipy.signal", "sklearn", "numba", "onnx"):
        proc = subprocess.run([sys.executable, "-c", f"import {name}"], env=no_torch, capture_output=True, text=True)
        assert proc.returncode == 1 and f"No module named '{name.split('.')[0]}'" in proc.stderr


def test_audio_features_on_the_deploy_install(no_torch, clip):
    """MFCC and log-mel (and librosa.load's resampling) with none of librosa, scipy, scikit-learn or numba."""
    code = ("import sys, numpy as np\n"
            "from edgeaffect.data.audio import mfcc, mel_power\n"
            "from edgeaffect.data.media import read_audio\n"
            "y = read_audio(sys.argv[1], 22050, 'librosa')\n"
            "m = mfcc(y, 22050, 10)\n"
            "mel = mel_power(y, dict(sample_rate=22050, n_fft=1024, win_length=882, hop_length=441, n_mels=64,"
            " mel_scale='htk'))\n"
            "assert m.shape[0] == 10 and m.shape[1] > 10 and np.isfinite(m).all() and mel.shape[0] == 64\n"
            "heavy = {'torch', 'librosa', 'scipy', 'sklearn', 'numba', 'llvmlite'} & {k.split('.')[0] for k in sys.modules}\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code, str(clip)], env=no_torch, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_help_and_pack_help_start_without_torch(no_torch):
    for args in (["--help"], ["pack", "--help"], ["demo", "--help"], ["bench", "--help"]):
        proc = run_cli(no_torch, *args, check=True)
        assert "Example" in proc.stdout or "Commands" in proc.stdout


def test_load_and_infer_match_torch(no_torch, exported, tmp_path):
    import torch

    from edgeaffect.runs import load_model

    model = load_model(exported / "checkpoint.pt")
    feeds = model.spec.dummy_inputs(batch=3, seed=1)
    np.savez(tmp_path / "feeds.npz", **feeds)
    code = ("import sys, numpy as np, edgeaffect\n"
            "m = edgeaffect.load(sys.argv[1])\n"
            "feeds = dict(np.load(sys.argv[2]))\n"
            "np.savez(sys.argv[3], **m.infer(feeds))\n"
            "assert 'torch' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code, str(exported / "model.onnx"), str(tmp_path / "feeds.npz"),
                           str(tmp_path / "out.npz")], env=no_torch, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with torch.no_grad():
        ref = model(*(torch.from_numpy(feeds[n]) for n in model.spec.input_names)).numpy()
    got = np.load(tmp_path / "out.npz")["intensities"]
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_bench_an_exported_model_without_the_torch_row(no_torch, exported, tmp_path):
    """Needs edgeaffect/bench.py to bench a bare model.onnx without importing torch."""
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes((exported / "model.onnx").read_bytes())
    proc = run_cli(no_torch, "bench", onnx, "--batch", "1", "--budget", "0.3", "--rounds", "2", "--no-isolate",
                   check=True)
    assert "onnxruntime" in proc.stdout and "Traceback" not in proc.stderr
    said = [line for line in proc.stderr.splitlines() if "torch" in line]
    assert len(said) == 1, proc.stderr                      # the missing reference row is said once
    rows = json.loads(next(tmp_path.glob("*bench.json")).read_text())["rows"]
    assert rows and {r["runtime"] for r in rows} == {"onnxruntime"} and rows[0]["p50_ms"] > 0


def test_eval_an_exported_model(no_torch, exported, tiny_eri):
    """Needs edgeaffect/evaluate.py + cli/eval.py and the torch-free ERI reader (edgeaffect/tasks)."""
    proc = run_cli(no_torch, "eval", exported / "model.onnx", "--data", tiny_eri, "--split", "val", check=True)
    out = proc.stdout + proc.stderr
    assert "pearson" in out.lower() and "clean" in out and "Traceback" not in out


def test_demo_on_an_exported_model_headless(no_torch, exported, clip, tmp_path):
    jl = tmp_path / "p.jsonl"
    proc = run_cli(no_torch, "demo", "--model", exported / "model.onnx", "--source", clip, "--headless",
                   "--jsonl", jl, "--max-faces", "1", "--bench", "--bench-json", tmp_path / "b.json", check=True)
    summary = json.loads((tmp_path / "b.json").read_text())
    assert summary["frames"] == 18 and summary["runtime"] == "onnxruntime" and summary["mode"] == "sync"
    assert summary["inferences"] >= 1 and "FPS:" in proc.stdout
    lines = [json.loads(x) for x in jl.read_text().splitlines()]
    assert len(lines) == 18                                  # 1.2 s at 15 fps: every frame annotated
    scored = [f for r in lines for f in r["faces"] if f["scores"]]
    assert scored, "the demo found the face but produced no prediction"
    assert set(scored[-1]["scores"]) == {"Adoration", "Amusement", "Anxiety", "Disgust", "Empathic-Pain",
                                         "Fear", "Surprise"}


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_a_packed_bundle_runs_its_commands_to_the_end_without_torch(no_torch, exported, clip, console_script,
                                                                    tmp_path, runtime):
    """The bundle's own commands.sh (check, bench of fp32 and INT8, the demo on the bundle folder, which has no
    checkpoint, at INT8); the OpenVINO bundle has no model.onnx (its bench once ended in an AttributeError)."""
    from edgeaffect.pack import pack_run

    bundle = pack_run(exported, runtime, tmp_path / "bundle")
    assert not (bundle / "model.onnx").exists() or runtime == "onnxruntime"
    proc = run_bundle(bundle, no_torch, console_script, SOURCE=str(clip),
                      BENCH_ARGS="--batch 1 --budget 0.3 --rounds 2 --no-isolate",
                      DEMO_ARGS=f"--headless --jsonl {tmp_path / 'demo.jsonl'}")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    out = proc.stdout + proc.stderr
    assert "files match the bundle's manifest" in out and f"on {runtime} int8" in out    # the demo runs the INT8
    assert out.count(".bench.json") == 2                                                # fp32 and INT8 benched
    assert len((tmp_path / "demo.jsonl").read_text().splitlines()) == 18


def test_a_bundle_with_a_planted_package_runs_nothing(no_torch, exported, console_script, tmp_path):
    """An ``edgeaffect/`` folder dropped into a bundle is neither imported nor run: commands.sh stops first."""
    from edgeaffect.pack import pack_run

    bundle = pack_run(exported, "onnxruntime", tmp_path / "bundle")
    marker = tmp_path / "PLANTED-RAN"
    (bundle / "edgeaffect").mkdir()
    for name in ("__init__.py", "__main__.py"):
        (bundle / "edgeaffect" / name).write_text(f"open({str(marker)!r}, 'w').close()\n")
    proc = run_bundle(bundle, no_torch, console_script, SOURCE="0", DEMO_ARGS="--headless")
    assert proc.returncode == 1 and not marker.exists()
    assert "does not list (edgeaffect/)" in proc.stderr and "Traceback" not in proc.stderr


def test_synthetic_voices_say_the_train_install_line(no_torch, tmp_path):
    """scipy came with librosa; without both, `data synth` of a voiced set stops with one line."""
    proc = run_cli(no_torch, "data", "synth", "eri", "--out", tmp_path / "eri", "--clips", "3", "--seconds", "1",
                   "--workers", "1", "--allow-small")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == ("error: 'scipy' is needed for synthetic voices but is not "
                                                    "installed: pip install 'edgeaffect[train]'")


def test_without_pyav_an_audio_visual_model_says_the_media_line(no_torch, exported, clip, tmp_path):
    """The edge install leaves PyAV out; an audio-visual model on a video file names the extra that brings it."""
    env = {**no_torch, "EDGEAFFECT_TEST_HIDE": "av"}
    assert run_cli(env, "--help").returncode == 0
    proc = run_cli(env, "demo", "--model", exported / "model.onnx", "--source", clip, "--headless",
                   "--max-faces", "1")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == ("error: 'av' is needed for reading a video's audio track but is "
                                                    "not installed: pip install 'edgeaffect[media]'")


@pytest.mark.parametrize("args", [["train", "eri", "--data", "x", "--out", "y"], ["export", "RUN"]])
def test_a_torch_only_command_says_the_one_install_line(no_torch, exported, args):
    args = [str(exported) if a == "RUN" else a for a in args]
    proc = run_cli(no_torch, *args)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'edgeaffect[train]'" in lines[0], proc.stderr
    assert lines[0].startswith("error: 'torch' is needed for ")


@pytest.mark.slow
def test_fresh_venv_install_has_no_torch_and_runs_a_bundle(exported, tmp_path):
    """`pip install '.[onnxruntime,openvino]'` into a new venv (needs the package registry), then each
    runtime's bundle through its commands.sh."""
    env = {**os.environ, "PYTHON": sys.executable, "DEV_PYTHON": sys.executable}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(["sh", str(ROOT / "tests" / "deploy_check.sh"), str(exported), "onnxruntime,openvino",
                           str(tmp_path / "venv")], env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "installed without torch" in proc.stdout and "all bundles ran" in proc.stdout
    assert "onnxruntime bundle ran to the end" in proc.stdout and "openvino bundle ran to the end" in proc.stdout


def test_bench_probe_never_imports_a_package_in_the_cwd(exported, tmp_path, monkeypatch):
    """bench's fresh-interpreter probe runs in the cwd (a bundle's folder): a planted package there is ignored,
    even with an empty $PYTHONPATH entry (which Python reads as the cwd)."""
    from edgeaffect.bench import probe_isolated
    from edgeaffect.runtimes.registry import Artifact

    marker = tmp_path / "PLANTED-RAN"
    (tmp_path / "edgeaffect").mkdir()
    (tmp_path / "edgeaffect" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", "")
    out = probe_isolated(Artifact("onnxruntime", "fp32", exported / "model.onnx"), 1, 1)
    assert out["cold_start_ms"] > 0 and not marker.exists()
