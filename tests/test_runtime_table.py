"""The runtime table is the one description of a runtime: every stage iterates over it.

Round trip for every registered runtime (TensorRT through the API fakes): export -> discover -> load
-> bench row; and a runtime added by one table entry (plus its class and exporter, defined here) is
exported, discovered, benched and chosen by the demo's ``auto`` with no other change.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from edgeaffect.bench import BenchConfig, bench_run
from edgeaffect.export import export_run
from edgeaffect.runtimes import registry
from edgeaffect.runtimes.base import Runtime
from edgeaffect.runtimes.registry import RuntimeEntry, discover_artifacts, get_runtime, list_runtimes, load
from tests.fakes.tiny_model import make_dataset, make_run

FAST = BenchConfig(batches=(2,), budget_s=0.2, rounds=2, warmup=1, threads=1, isolate=False)


@pytest.fixture
def trt_fakes(monkeypatch):
    from tests.fakes import install

    return install(monkeypatch, gpu="NVIDIA Jetson Orin Nano")


def test_every_runtime_round_trips_through_the_table(tmp_path, trt_fakes):
    run = make_run(tmp_path / "run", data=make_dataset(tmp_path / "data"))
    report = export_run(run, exporter="legacy")
    assert not report.skipped, report.skipped                 # every runtime in the table was exported
    found = discover_artifacts(run)
    for name in list_runtimes():
        entry = get_runtime(name)
        fp32 = [a for a in found if a.runtime == name and a.precision == "fp32"]
        assert len(fp32) == 1, (name, found)
        assert entry.parse(fp32[0].path) == "fp32"              # the file name parses back to its precision
        with load(fp32[0].path, runtime=name, **entry.bench_options("fp32", 2, 1)) as rt:
            out = rt.infer(rt.spec.dummy_inputs(batch=2))
        assert out["intensities"].shape == (2, 3), name
    rows = bench_run(run, cfg=FAST, show_progress=False)
    assert {r["runtime"] for r in rows} == set(list_runtimes())
    assert all(r["agreement"] > 0.999 and r["executed_precision"] == "fp32" for r in rows)


def test_int8_artifact_names_come_from_the_table():
    from edgeaffect.quantize.pipeline import published

    assert published("onnxruntime") == get_runtime("onnxruntime").artifacts["int8"]
    assert published("openvino") == get_runtime("openvino").artifacts["int8"]
    assert get_runtime("openvino").parse("model.int8.xml") == "int8"
    assert get_runtime("tensorrt").parse("NVIDIA-Orin-trt10.3.0.int8.engine") == "int8"
    assert get_runtime("openvino").shares("bf16") and not get_runtime("openvino").shares("fp16")


# -- a runtime added in one place -----------------------------------------------------------------------
class EchoRuntime(Runtime):
    """A toy runtime whose artifact (``model.echo``) is an ONNX graph it runs through ONNX Runtime."""

    name = "echo"

    def _load(self) -> None:
        from edgeaffect.runtimes.onnxruntime import OnnxRuntime

        self._inner = OnnxRuntime(self.path)
        self.spec = self.spec or self._inner.spec
        self._inputs, self._outputs = list(self._inner.inputs), list(self._inner.outputs)

    def _infer(self, feeds):
        return self._inner.infer(feeds)

    def _close(self) -> None:
        self._inner.close()


def export_echo(onnx_path: Path, target) -> Path:
    path = target.root / "model.echo"
    shutil.copyfile(onnx_path, path)
    return path


def test_a_new_runtime_is_one_table_entry(tmp_path, monkeypatch):
    from edgeaffect.demo.runner import resolve_artifact

    entry = RuntimeEntry("echo", f"{__name__}:EchoRuntime", "echo", ("onnxruntime",), (".echo",), "test runtime",
                         {"fp32": "model.echo"}, file_format="echo", exporter=f"{__name__}:export_echo", rank=-1)
    monkeypatch.setattr(registry, "_RUNTIMES", {**registry._RUNTIMES, "echo": entry})
    run = make_run(tmp_path / "run", data=make_dataset(tmp_path / "data"))
    report = export_run(run, ["onnx", "echo"], exporter="legacy")
    assert "echo-fp32" in report.artifacts and any(p.runtime == "echo" for p in report.parity)
    assert [a.path.name for a in discover_artifacts(run) if a.runtime == "echo"] == ["model.echo"]
    rows = bench_run(run, ["echo", "torch"], cfg=FAST, show_progress=False)
    echo = [r for r in rows if r["runtime"] == "echo"]
    assert len(echo) == 1 and echo[0]["agreement"] > 0.999 and echo[0]["metric"] == pytest.approx(echo[0]["metric_torch"], abs=1e-4)
    assert resolve_artifact(run, "auto", "fp32") == (run / "model.echo", "echo")    # ranked first by its entry


# -- `--runtime auto` times the runs' runtimes instead of trusting their rank ----------------------------
class SlowEchoRuntime(EchoRuntime):
    """The echo runtime, 20 ms slower per call (a runtime ranked first that is not the fastest here)."""

    closed_paths: list = []

    def _infer(self, feeds):
        time.sleep(0.02)
        return super()._infer(feeds)

    def _close(self) -> None:
        SlowEchoRuntime.closed_paths.append(self.path)
        super()._close()


@pytest.fixture
def slow_echo_run(tmp_path, monkeypatch):
    """A run with ONNX Runtime's file and the slow echo runtime's, echo ranked first."""
    entry = RuntimeEntry("echo", f"{__name__}:SlowEchoRuntime", "echo", ("onnxruntime",), (".echo",), "test runtime",
                         {"fp32": "model.echo"}, file_format="echo", exporter=f"{__name__}:export_echo", rank=-1)
    monkeypatch.setattr(registry, "_RUNTIMES", {**registry._RUNTIMES, "echo": entry})
    run = make_run(tmp_path / "run", data=make_dataset(tmp_path / "data"))
    export_run(run, ["onnx", "echo"], exporter="legacy")
    SlowEchoRuntime.closed_paths.clear()
    return run


def test_auto_opens_the_runtime_measured_fastest_here(slow_echo_run):
    from edgeaffect.demo.runner import open_model

    run = slow_echo_run
    rt, spec = open_model(run, batch=3)                  # echo is ranked first, but 20 ms slower per call
    try:
        assert rt.name == "onnxruntime" and spec.name == rt.spec.name
        assert SlowEchoRuntime.closed_paths == [run / "model.echo"]        # the loser was opened, timed, closed
        assert rt.chosen_because.startswith("timed fastest here, median ms per face at batch 1, 2, 3: onnxruntime ")
        assert "echo" in rt.chosen_because and rt.infer(spec.dummy_inputs(batch=3))["intensities"].shape == (3, 3)
    finally:
        rt.close()
    named, _ = open_model(run, runtime="echo")           # a named runtime is opened as asked, untimed
    assert named.name == "echo" and named.chosen_because == ""
    named.close()


def test_serve_times_the_runtimes_once_and_every_instance_follows(slow_echo_run):
    from edgeaffect.serve.server import ServeOptions, open_runners

    runners = open_runners(slow_echo_run, "auto", "auto", ServeOptions(instances=3, max_batch=4))
    try:
        assert [r.name for r in runners] == ["onnxruntime"] * 3
        assert len(SlowEchoRuntime.closed_paths) == 1                        # one comparison, not one per instance
        assert "at batch 1, 2, 3, 4:" in runners[0].chosen_because
    finally:
        for r in runners:
            r.close()


class PrecisionEchoRuntime(EchoRuntime):
    """The echo runtime with an INT8 file too (a copy of the graph); calls at ``slow`` precision take 20 ms more."""

    slow = "int8"

    def _infer(self, feeds):
        if self.precision == PrecisionEchoRuntime.slow:
            time.sleep(0.02)
        return super()._infer(feeds)


@pytest.mark.parametrize("slow, runs", [("int8", "fp32"), ("fp32", "int8")])
def test_auto_precision_runs_an_accepted_int8_only_where_it_is_faster_here(tmp_path, monkeypatch, slow, runs):
    import json

    from edgeaffect.demo.runner import open_model

    entry = RuntimeEntry("echo", f"{__name__}:PrecisionEchoRuntime", "echo", ("onnxruntime",), (".echo",), "test",
                         {"fp32": "model.echo", "int8": "model.int8.echo"}, file_format="echo",
                         exporter=f"{__name__}:export_echo", rank=-1, precisions=("fp32", "int8"))
    monkeypatch.setattr(registry, "_RUNTIMES", {**registry._RUNTIMES, "echo": entry})
    monkeypatch.setattr(PrecisionEchoRuntime, "slow", slow)
    run = make_run(tmp_path / "run", data=make_dataset(tmp_path / "data"))
    export_run(run, ["onnx", "echo"], exporter="legacy")
    (run / "model.onnx").unlink()                            # echo alone: its fp32 and INT8 race each other
    shutil.copyfile(run / "model.echo", run / "model.int8.echo")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["quantize"] = {"echo": {"passed": True, "artifact": "model.int8.echo"}}   # the guard accepted it
    (run / "manifest.json").write_text(json.dumps(manifest))
    rt, _ = open_model(run, verify=False)
    try:
        assert rt.precision == runs and rt.chosen_because.startswith(f"timed fastest here, median ms per face at "
                                                                     f"batch 1: echo {runs} ")
        assert f"echo {slow} " in rt.chosen_because
    finally:
        rt.close()
