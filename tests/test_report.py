"""edgeaffect report: one self-contained HTML page of a benched tiny run, escaped, and rendered by Chromium."""
from __future__ import annotations

import base64
import html
import re
import shutil
import subprocess
import sys

import pytest

from edgeaffect.bench import BenchConfig, bench_run
from edgeaffect.cli import main
from edgeaffect.fileio import read_json, write_json
from edgeaffect.runs import load_run
from tests.fakes.tiny_model import TINY, make_exported_run
from tests.test_demo_web import CHROMIUM, _chromium_eval
from tests.test_deploy import no_torch, run_cli  # noqa: F401  (no_torch is a fixture)

FAST = BenchConfig(batches=(1, 2), budget_s=0.2, rounds=2, warmup=1, threads=1, isolate=False)
LOADS = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//)""", re.I)


@pytest.fixture(scope="module")
def benched(tmp_path_factory):
    run = make_exported_run(tmp_path_factory.mktemp("report"))
    bench_run(run, ["onnxruntime", "torch"], ["fp32"], cfg=FAST, show_progress=False)
    return run


@pytest.fixture
def run(benched, tmp_path):
    dest = tmp_path / "run"
    shutil.copytree(benched, dest)
    return dest


def _section(page: str, anchor: str) -> str:
    start = page.index(f'<section id="{anchor}">')
    return page[start:page.index("</section>", start)]


def test_report_of_a_benched_run_is_one_self_contained_page(run):
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text(encoding="utf-8")
    assert f"<title>edgeaffect report: {TINY}</title>" in page
    bench = _section(page, "bench")
    for runtime in ("onnxruntime-fp32", "torch-fp32"):
        for batch in (1, 2):   # every batch measured, not only the first
            assert f'<tr><td>{runtime}</td><td>fp32</td><td class="n">{batch}</td>' in bench
    pngs = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(pngs) >= 2 and all(base64.b64decode(p)[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert "<img" in _section(page, "tradeoff")                       # accuracy against latency, plotted
    assert not LOADS.search(page) and "<script" not in page and "<link" not in page and "url(" not in page
    assert 'Content-Security-Policy" content="default-src &#x27;none&#x27;; img-src data:' in page   # the browser is told so
    assert "edgeaffect eval " in _section(page, "eval")                  # unmeasured: the command that fills it
    assert "edgeaffect quantize int8 " in _section(page, "guard")
    machine = _section(page, "machine")
    cpu = load_run(run).manifest["bench"]["machine"]["cpu"]
    assert "<td>bench.json</td>" in machine and cpu in machine


def test_sections_the_manifest_holds_are_rendered(run):
    load_run(run).update(
        history=[{"epoch": e, "train_loss": 1.0 / e, "val_pearson": 0.2 * (e - 1), "val_samples": 12} for e in (1, 2, 3)],
        eval={"val": {"clean": 0.91, "per_class": {"a": {"precision": 0.5, "recall": 0.25, "f1": 0.333}},
                      "confusion_matrix": [[3, 1, 0], [0, 4, 0], [1, 0, 2]]}},
        quantize={"onnxruntime": {"passed": False, "fp32_metric": 0.9, "int8_metric": 0.7, "drop_points": 20.0,
                                  "max_drop": 1.0, "kept_float": ["conv"], "attempts": 3, "artifact": None,
                                  "message": "cannot reach a drop of 1 point(s)"}})
    other = read_json(run / "bench.json")   # the same run measured on a second machine, its file copied in
    other["machine"] = {**other["machine"], "cpu": "ARM Cortex-A78AE", "arch": "aarch64", "cores": 8}
    write_json(run / "orin.bench.json", other)
    out = run / "share" / "r.html"
    assert main(["report", str(run), "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    bench = _section(page, "bench")
    assert "<h3>ARM Cortex-A78AE · aarch64 · 8 cores</h3>" in bench and bench.count("<h3>") == 2
    assert bench.count("<td>orin.bench.json</td>") == len(other["rows"])
    assert _section(page, "tradeoff").count("<img") == 2                # one chart per machine
    training = _section(page, "training")
    assert "<img" in training and '<td class="n">0.4</td>' in training   # the curves and the per-epoch table
    ev = _section(page, "eval")
    assert "<th>true \\ predicted</th><th>a</th><th>b</th><th>c</th>" in ev   # the confusion matrix, by label
    assert '<tr><td>a</td><td class="n">0.5</td><td class="n">0.25</td>' in ev
    guard = _section(page, "guard")
    assert '<tr class="no"><td>onnxruntime</td><td>no</td>' in guard and "cannot reach a drop of 1 point(s)" in guard
    assert not (run / "report.html").exists()


def test_the_per_class_scores_eval_records_are_in_the_report(run):
    labels = load_run(run).spec.labels
    details = {"split": "val", "precision": "fp32", "n": 7, "metric_name": "accuracy",
               "per_class": {labels[0]: {"precision": 0.625, "recall": 0.375, "f1": 0.469}},
               "confusion_matrix": [[2] * len(labels) for _ in labels]}
    load_run(run).update(eval={"val": {"clean": 0.5}}, eval_details={"val": details})   # as `edgeaffect eval` writes
    assert main(["report", str(run)]) == 0
    ev = _section((run / "report.html").read_text(encoding="utf-8"), "eval")
    assert f'<tr><td>{labels[0]}</td><td class="n">0.625</td><td class="n">0.375</td>' in ev
    assert "<th>true \\ predicted</th>" in ev and '<td class="n">0.5</td>' in ev


def test_every_string_from_the_manifest_is_escaped(run):
    evil = '<script>alert("x")</script>'
    load_run(run).update(data={"root": evil, evil: "value"}, eval={"val": {f'<img src=x onerror="{evil}">': 0.5}},
                         quantize={"onnxruntime": {"passed": True, "message": evil}})
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in _section(page, "data")
    assert "&lt;img src=x onerror=" in _section(page, "eval")


def test_without_matplotlib_the_tables_remain_and_the_page_says_why(run, monkeypatch):
    import edgeaffect.report as report

    monkeypatch.setitem(sys.modules, "matplotlib", None)   # an install without the plot extra: the import fails
    page = report.build_report(run)
    assert "<img" not in page and html.escape(report.PLOT_HINT) in page
    assert '<td>onnxruntime-fp32</td><td>fp32</td><td class="n">2</td>' in _section(page, "bench")


def test_bad_runs_are_one_line(tmp_path, capsys, run):
    assert main(["report", str(tmp_path / "nope")]) == 1
    assert capsys.readouterr().err.strip() == f"error: run directory {tmp_path / 'nope'} does not exist"
    (run / "manifest.json").write_text('{"spec": {"name": ')
    assert main(["report", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "is not a readable run manifest" in err and "\n" not in err
    assert not (run / "report.html").exists()


def test_damaged_parts_of_a_run_are_named_and_the_rest_still_renders(run):
    (run / "pruned-0.3").mkdir()
    (run / "pruned-0.3" / "bench.json").write_text('{"rows": [')             # cut short
    load_run(run).update(quantize="not a section", precisions=[1, 2], config=None, history={"train": "junk"})
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text(encoding="utf-8")
    bench = _section(page, "bench")
    assert "pruned-0.3/bench.json is not a readable bench file (JSONFileError: " in bench
    assert "is not valid JSON (Expecting value at line 1, column 11)" in bench                   # and why
    assert '<td>onnxruntime-fp32</td><td>fp32</td><td class="n">2</td>' in bench   # bench.json itself still read
    assert "edgeaffect quantize int8 " in _section(page, "guard")               # a junk section reads as absent


def _chromium_console(path, tmp_path) -> tuple[str, list[str]]:
    """The DOM Chromium rendered from ``path`` and every console line it logged (errors, blocked loads)."""
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                           f"--user-data-dir={tmp_path / 'dom-profile'}", "--dump-dom", path.as_uri()],
                          capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return proc.stdout, lines


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install -y chromium)")
def test_the_page_renders_in_headless_chromium_without_console_errors(run, tmp_path):
    assert main(["report", str(run)]) == 0
    page = run / "report.html"
    dom, console = _chromium_console(page, tmp_path)
    assert f"edgeaffect report: {TINY}" in dom and console == []
    title, images, decoded, width = _chromium_eval(page.as_uri(), [
        "document.title", "document.images.length",
        "Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length",
        "document.body.scrollWidth"], 1.0, tmp_path / "profile")
    assert title == f"edgeaffect report: {TINY}" and images >= 2 and decoded == images and width > 0
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'shot'}",
                    "--window-size=1280,2000", f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    # the check sees what it must: a network load the page's policy blocks is a console line
    blocked = tmp_path / "blocked.html"
    blocked.write_text(page.read_text(encoding="utf-8").replace("</body>", '<img src="http://example.invalid/x.png"></body>'))
    assert any("example.invalid" in line for line in _chromium_console(blocked, tmp_path)[1])


def test_per_epoch_history_is_found_wherever_the_manifest_keeps_it():
    from edgeaffect.report import histories
    from edgeaffect.runs import Run

    manifest = {"history": [{"epoch": 0, "train_loss": 1.0}], "metrics": {"train": {"history": [{"epoch": 0}]}},
                "heads": {"history": {"va": [{"epoch": 0}, {"epoch": 1}], "expr": "not a history"}}, "other": [1, 2]}
    found = histories(Run(None, manifest), [("pruned-0.5", {"history": [{"epoch": 0}], "before": {}})])
    assert [(name, len(recs)) for name, recs in found] == [
        ("training", 1), ("metrics.train", 1), ("heads.history.va", 2), ("pruned-0.5 fine-tuning", 1)]


def test_an_install_without_torch_writes_the_report(run, no_torch):
    proc = run_cli(no_torch, "report", run, "--out", run / "edge.html", check=True)
    assert proc.stdout.strip() == f"wrote {run / 'edge.html'}"
    page = (run / "edge.html").read_text(encoding="utf-8")
    assert f"<title>edgeaffect report: {TINY}</title>" in page and "<img" in _section(page, "bench")
