"""A runtime is one package plus one entry.

The toy ``echo`` runtime below is written as a package of its own (in a temporary folder, as a plugin would
be): its module holds the runtime class, its exporter, its INT8 path and the one ``register_runtime`` call.
Importing it is the only change; then ``export_run`` exports it, ``quantize_run`` quantizes it through the
accuracy guard, ``pack`` bundles it and ``serve`` opens it, with no other edit anywhere.
"""
from __future__ import annotations

import importlib
import shutil
import sys
import textwrap

import pytest

from edgeaffect.export import export_run
from edgeaffect.pack import pack_run
from edgeaffect.quantize.config import QuantConfig
from edgeaffect.quantize.pipeline import quantize_run
from edgeaffect.runtimes import registry
from edgeaffect.runtimes.registry import deployable, discover_artifacts, get_runtime, pick_artifact, serving
from edgeaffect.serve.server import ServeOptions, check_serving, open_runners
from tests.fakes.tiny_model import make_dataset, make_run

ECHO_PACKAGE = '''
"""echo: runs an ONNX graph stored as model.echo (through ONNX Runtime); everything about it is here."""
import shutil

from edgeaffect.runtimes.base import Runtime
from edgeaffect.runtimes.onnxruntime import OnnxRuntime
from edgeaffect.runtimes.onnxruntime import int8 as qdq
from edgeaffect.runtimes.registry import RuntimeEntry, get_runtime, register_runtime


class EchoRuntime(Runtime):
    name = "echo"

    def _load(self):
        self._inner = OnnxRuntime(self.path)
        self.spec = self.spec or self._inner.spec
        self._inputs, self._outputs = list(self._inner.inputs), list(self._inner.outputs)

    def _infer(self, feeds):
        return self._inner.infer(feeds)

    def _default_precision(self):
        return get_runtime(self.name).parse(self.path) or "fp32"   # model.int8.echo: int8, by its entry

    def _close(self):
        self._inner.close()


def export_echo(onnx_path, target):
    path = target.root / "model.echo"
    shutil.copyfile(onnx_path, path)
    return path


def quantize_echo(job):
    """Its INT8 path: a QDQ graph (ONNX Runtime's quantizer) through the accuracy guard, scored as echo runs it,
    published as model.int8.echo."""
    prepared = qdq.prepare(job.onnx_path, job.work / "prepared.onnx")
    ranges = qdq.calibrate(prepared, job.calib, job.cfg, job.work / "ranges.json")
    tries = iter(range(100))
    return job.guarded(
        quantize_fn=lambda kept: qdq.quantize(prepared, ranges, job.work / f"try-{next(tries)}.onnx", job.cfg, kept),
        open_fn=EchoRuntime, rank_fn=lambda path: qdq.rank_ort(prepared, path, job.calib.feeds[:4], job.work),
        fp32_outputs=job.scored(EchoRuntime(job.onnx_path)))


ENTRY = register_runtime(RuntimeEntry(
    "echo", EchoRuntime, "onnxruntime", ("onnxruntime",), (".echo",), "test runtime",
    {"fp32": "model.echo", "int8": "model.int8.echo"}, file_format="echo", exporter=export_echo,
    quantizer=quantize_echo, quantizer_packages=(("onnx", "train"),), rank=-1, order=35,
    precisions=("fp32", "int8"), deployable=True, serves=True))
'''


@pytest.fixture
def echo(tmp_path, monkeypatch):
    """The echo package imported (its entry registered); the table is restored after."""
    (tmp_path / "plugins" / "echo_runtime").mkdir(parents=True)
    (tmp_path / "plugins" / "echo_runtime" / "__init__.py").write_text(textwrap.dedent(ECHO_PACKAGE))
    monkeypatch.setattr(registry, "_RUNTIMES", dict(registry._RUNTIMES))
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    monkeypatch.delitem(sys.modules, "echo_runtime", raising=False)
    importlib.import_module("echo_runtime")
    yield get_runtime("echo")
    sys.modules.pop("echo_runtime", None)


def test_a_runtime_that_exports_quantizes_packs_and_serves_is_one_package_plus_one_entry(echo, tmp_path):
    data = make_dataset(tmp_path / "data", n=16)
    shutil.copyfile(data / "val.npz", data / "train.npz")     # INT8 calibrates on the train split
    run = make_run(tmp_path / "run", data=data)
    report = export_run(run, ["onnxruntime", "echo"], exporter="legacy")
    assert "echo-fp32" in report.artifacts and any(p.runtime == "echo" for p in report.parity)

    quantized = quantize_run(run, ["echo"], QuantConfig(calib_samples=8, max_drop=100.0))
    assert quantized["runtimes"]["echo"]["artifact"] == "model.int8.echo"
    assert {(a.runtime, a.precision) for a in discover_artifacts(run) if a.runtime == "echo"} == {("echo", "fp32"),
                                                                                                 ("echo", "int8")}
    assert pick_artifact(run, "auto", ["int8"]).path == run / "model.int8.echo"   # ranked first by its entry

    assert "echo" in deployable() and "echo" in serving()
    bundle = pack_run(run, "echo", tmp_path / "bundle")
    assert (bundle / "model.echo").is_file() and (bundle / "model.int8.echo").is_file()
    assert "[echo]" not in (bundle / "requirements.txt").read_text()        # its extra is onnxruntime's
    assert check_serving("echo") == "echo"
    (runner,) = open_runners(bundle, "echo", "int8", ServeOptions(instances=1))
    with runner:
        out = runner.infer(runner.spec.dummy_inputs(batch=2))
    assert runner.name == "echo" and runner.precision == "int8" and out["intensities"].shape == (2, 3)


def test_without_its_package_the_runtime_is_nowhere(tmp_path):
    assert "echo" not in registry.list_runtimes() and "echo" not in deployable() and "echo" not in serving()
