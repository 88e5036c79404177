"""``edgeaffect report RUN``: one self-contained HTML page to share what a run holds and measured.

Everything comes from the run folder through the project's readers (:func:`~edgeaffect.runs.load_run`,
:func:`~edgeaffect.fileio.read_json`, :func:`~edgeaffect.bench.read_rows`): the model and its spec, the dataset,
per-epoch history, eval results, every bench.json (grouped by the machine that measured it), the INT8 guard's
and reduced-precision decisions, pruned sub-runs and the machines.  Plots are inline PNGs (matplotlib, the
``plot`` extra); nothing is loaded from the network, and a Content-Security-Policy says so to the browser.
Every string from the run is escaped: a manifest is user-controlled.  A section the run has not measured yet
says which command fills it.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .errors import EdgeAffectError
from .fileio import read_json, write_text
from .lazy import lazy_import
from .runs import MANIFEST, Run, load_run

plt = lazy_import("matplotlib.pyplot", "plot")

PLOT_HINT = "plots need matplotlib: pip install 'edgeaffect[plot]'"
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1180px;
padding:0 20px 40px;color:#1d232a}
h1{font-size:22px;margin:22px 0 2px}
h2{font-size:18px;border-bottom:2px solid #dde3ea;padding-bottom:3px;margin-top:30px}
h3{font-size:15px;margin:18px 0 6px}.sub{color:#5b6672;margin:0 0 10px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #dde3ea;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f2f5f8}
td.n{text-align:right;font-variant-numeric:tabular-nums}tr.no td{background:#fff3f0}
tr.ok td:first-child{border-left:3px solid #2e9e5b}
.missing{color:#8a5a00;background:#fff8e6;border:1px solid #f0dca8;padding:6px 10px;border-radius:4px}
code{background:#f2f5f8;padding:1px 4px;border-radius:3px}
img{max-width:100%;height:auto;display:block;margin:6px 0}
nav a{margin-right:12px;color:#2a5db0;text-decoration:none}.wrap{word-break:break-all;max-width:460px}
"""


# -- small HTML helpers (every string goes through esc) ----------------------------------------------------
def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """A cell's text: 4 significant digits, '–' for missing, compact JSON for containers."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and abs(value) >= 10000:
        return f"{value:,}"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, default=str)
        return text if len(text) <= 240 else text[:237] + "..."
    return str(value)


def _cell(value: Any) -> str:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    cls = ' class="n"' if numeric else ' class="wrap"' if isinstance(value, (dict, list)) else ""
    return f"<td{cls}>{esc(fmt(value))}</td>"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], row_class: Sequence[str] | None = None) -> str:
    """An HTML table; ``row_class`` marks rows (``ok``/``no`` for accepted/refused decisions)."""
    def tr(i: int, r: Sequence[Any]) -> str:
        cls = row_class[i] if row_class else ""
        return (f'<tr class="{esc(cls)}">' if cls else "<tr>") + "".join(_cell(v) for v in r) + "</tr>"

    head = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr>" if any(headers) else ""
    return f"<table>{head}{''.join(tr(i, r) for i, r in enumerate(rows))}</table>"


def kv(mapping: Mapping[str, Any]) -> str:
    return table(("", ""), [(k, v) for k, v in mapping.items()])


def records(items: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A list of dicts as one table; columns: the given ones, or every key in first-seen order."""
    cols = list(columns or dict.fromkeys(k for r in items for k in r))
    return table(cols, [[r.get(c) for c in cols] for r in items])


def missing(what: str, command: str) -> str:
    return f'<p class="missing">{esc(what)}: run <code>{esc(command)}</code></p>'


def part(mapping: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``mapping[key]`` when it is a dict, else empty: a hand-edited manifest section of another type reads as absent."""
    value = mapping.get(key)
    return value if isinstance(value, Mapping) else {}


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


def _plt():
    """pyplot on the Agg backend, or None without the plot extra."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    return plt


def image(fig, alt: str) -> str:
    """An inline PNG of a matplotlib figure (closed afterwards)."""
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode("ascii")}">'


def no_plots() -> str:
    return f'<p class="missing">{esc(PLOT_HINT)}</p>'


def _scalars(value: Any) -> bool:
    """A short list of plain values (a mean, a few names): one table cell rather than a block of its own."""
    return isinstance(value, list) and len(value) <= 16 and not any(isinstance(x, (Mapping, list)) for x in value)


def nested(value: Any, labels: Sequence[str] = (), depth: int = 0) -> str:
    """Any JSON value as tables: scalars as key/value rows, a dict of flat dicts (per class, per split) as one
    table, a square matrix (a confusion matrix) with the model's labels, deeper dicts as sub-headings."""
    if isinstance(value, Mapping):
        flat = {k: v for k, v in value.items() if not isinstance(v, (Mapping, list)) or _scalars(v)}
        out = [kv(flat)] if flat else []
        groups = {k: v for k, v in value.items() if isinstance(v, Mapping)}
        if groups and all(v and not any(isinstance(x, (Mapping, list)) for x in v.values()) for v in groups.values()):
            cols = list(dict.fromkeys(c for v in groups.values() for c in v))
            out.append(table(["", *cols], [[k, *(v.get(c) for c in cols)] for k, v in groups.items()]))
        else:
            for k, v in groups.items():
                out.append(f"<h3>{esc(k)}</h3>" + (nested(v, labels, depth + 1) if depth < 3 else esc(fmt(v))))
        for k, v in ((k, v) for k, v in value.items() if isinstance(v, list) and k not in flat):
            out.append(f"<h3>{esc(k)}</h3>{nested(v, labels, depth + 1)}")
        return "".join(out)
    if isinstance(value, list):
        if value and all(isinstance(r, list) and len(r) == len(value) for r in value):
            names = list(labels) if len(labels) == len(value) else [str(i) for i in range(len(value))]
            return table(["true \\ predicted", *names], [[n, *r] for n, r in zip(names, value)])
        if value and all(isinstance(r, Mapping) for r in value):
            return records(value)
        if len(labels) == len(value) and value:
            return table(("label", "value"), list(zip(labels, value)))
        return f"<p>{esc(fmt(value))}</p>"
    return f"<p>{esc(fmt(value))}</p>"


# -- what the run holds ------------------------------------------------------------------------------------
def bench_sets(run: Run) -> list[dict[str, Any]]:
    """Every bench.json in the run and its sub-folders (pruned runs, a file's ``<file>.bench.json``):
    ``{"source", "machine", "meta", "rows"}``, rows of a pruned sub-run named by its folder; an unreadable
    file as ``{"source", "error"}`` with no rows."""
    from .bench import read_rows

    found = []
    for pattern in ("bench.json", "*.bench.json", "*/bench.json", "*/*.bench.json"):
        for path in sorted(run.path.glob(pattern)):
            try:
                rows = [dict(r) for r in read_rows(path)]
                data = read_json(path)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                found.append({"source": path.relative_to(run.path).as_posix(), "machine": {}, "meta": {}, "rows": [],
                              "error": f"{type(exc).__name__}: {str(exc)[:160]}"})
                continue
            meta = data if isinstance(data, Mapping) else {}
            sub = path.parent.name if path.parent != run.path and path.parent.name.startswith("pruned-") else ""
            for r in rows:
                if sub and not r.get("variant"):
                    r["variant"] = sub
            found.append({"source": path.relative_to(run.path).as_posix(), "machine": dict(part(meta, "machine")),
                          "meta": meta, "rows": rows})
    return found


def machine_key(machine: Mapping[str, Any]) -> str:
    """The name a machine's rows are grouped under: CPU model, architecture, cores."""
    parts = [machine.get("cpu") or "unknown CPU", machine.get("arch"),
             f"{machine['cores']} cores" if machine.get("cores") else None]
    return " · ".join(str(p) for p in parts if p)


def by_machine(sets: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Bench rows grouped by the machine that measured them (a row's own ``machine`` first), each row naming
    its file."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for s in sets:
        for r in s["rows"]:
            key = machine_key(part(r, "machine") or s["machine"])
            groups.setdefault(key, []).append({**r, "source": s["source"]})
    return groups


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive(value: Any) -> bool:
    return _number(value) and value > 0


def label(row: Mapping[str, Any]) -> str:
    return f"{str(row['variant']) + '/' if row.get('variant') else ''}{row.get('runtime', '?')}-{row.get('precision', '?')}"


def pruned_runs(run: Run) -> list[tuple[str, dict[str, Any]]]:
    """``(folder, pruning section)`` of each ``pruned-*/`` sub-run, from its own manifest."""
    out = []
    for folder in sorted(run.path.glob("pruned-*")):
        try:
            out.append((folder.name, dict(part(read_json(folder / MANIFEST), "pruning"))))
        except (OSError, ValueError, AttributeError):
            continue
    return out


def histories(run: Run, pruned: Sequence[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, list[dict]]]:
    """Per-epoch records wherever the manifest keeps them: a ``history`` key at any depth holding a list of
    records (or a dict of such lists, one per stage or head), and each pruned sub-run's fine-tuning history."""
    found = list(_find_histories(run.manifest, ""))
    found += [(f"{name} fine-tuning", recs) for name, info in pruned for _, recs in _find_histories(info, "")]
    return found


def _find_histories(value: Any, where: str, depth: int = 0) -> Iterable[tuple[str, list[dict]]]:
    if not isinstance(value, Mapping) or depth > 3:
        return
    for key, v in value.items():
        here = f"{where}.{key}" if where else str(key)
        if key == "history":
            if isinstance(v, list) and any(isinstance(r, Mapping) for r in v):
                yield (where or "training"), [r for r in v if isinstance(r, Mapping)]
            elif isinstance(v, Mapping):
                yield from ((f"{here}.{k}", [r for r in h if isinstance(r, Mapping)]) for k, h in v.items()
                            if isinstance(h, list) and any(isinstance(r, Mapping) for r in h))
        else:
            yield from _find_histories(v, here, depth + 1)


def parameters(run: Run) -> int | None:
    """Parameter count: the manifest's, else counted on the rebuilt model where torch is installed."""
    m = run.manifest
    known = m.get("parameters") or part(part(m, "pruning"), "after").get("params")
    if known:
        return known
    try:
        from .models import count_parameters
        from .runs import load_model

        return count_parameters(load_model(run.checkpoint))
    except Exception:  # noqa: BLE001 - informative only: no torch, or a checkpoint this install cannot rebuild
        return None


def description(name: str) -> str | None:
    try:
        from .models import get_entry

        return get_entry(name).description or None
    except Exception:  # noqa: BLE001 - no torch, or a model registered elsewhere
        return None


# -- sections ------------------------------------------------------------------------------------------------
def model_section(run: Run, sets: Sequence[Mapping[str, Any]]) -> str:
    spec, m = run.spec, run.manifest
    flops = next((s["meta"].get("flops_per_sample") for s in sets if s["meta"].get("flops_per_sample")), None)
    gflops = flops / 1e9 if flops else part(part(m, "pruning"), "after").get("gflops")
    info = {"model": spec.name, "description": description(spec.name), "task": spec.task, "metric": spec.metric,
            "activation": spec.activation, "labels": ", ".join(spec.labels), "parameters": parameters(run),
            "GFLOPs per sample": gflops if gflops else "not measured yet (edgeaffect bench counts them on model.onnx)",
            "model options": part(m, "config").get("model") or dict(spec.config) or None,
            "stages done": ", ".join(map(str, m.get("stages_done") or [])) or None}
    tensors = [(t.name, role, " × ".join(map(str, t.shape)), t.dtype)
               for role, ts in (("input", spec.inputs), ("output", spec.outputs)) for t in ts]
    arts = [{"file": k, "bytes": v.get("bytes"), "sha256": str(v.get("sha256", ""))[:12],
             **{x: v.get(x) for x in ("stage", "runtime", "precision", "kind") if v.get(x)}}
            for k, v in part(m, "artifacts").items() if isinstance(v, Mapping)]
    body = kv({k: v for k, v in info.items() if v is not None}) + table(("tensor", "role", "shape", "dtype"), tensors)
    if part(m, "source"):   # a zoo model: where its weights came from, under which license
        body += "<h3>source</h3>" + kv(part(m, "source"))
    if spec.preprocessing:
        body += "<h3>preprocessing</h3>" + nested(dict(spec.preprocessing))
    body += ("<h3>files</h3>" + records(arts)) if arts else ""
    return section("model", "Model and spec", body)


def data_section(run: Run) -> str:
    data = run.manifest.get("data")
    if not data:
        return section("data", "Dataset and splits", '<p class="missing">this run does not record its dataset</p>')
    return section("data", "Dataset and splits", nested(data))


def curves(hists: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], plt) -> str:
    """One row of plots per history: losses left, metrics right, against the epoch."""
    fig, axes = plt.subplots(len(hists), 2, figsize=(10, 3.1 * len(hists)), squeeze=False)
    for (name, recs), (ax_loss, ax_metric) in zip(hists, axes):
        x = [int(r["epoch"]) if isinstance(r.get("epoch"), (int, float)) else i + 1 for i, r in enumerate(recs)]
        keys = dict.fromkeys(k for r in recs for k, v in r.items() if k != "epoch" and not k.endswith("_samples")
                             and isinstance(v, (int, float)) and not isinstance(v, bool))
        for key in keys:
            ax = ax_loss if "loss" in key else ax_metric
            pts = [(e, r[key]) for e, r in zip(x, recs) if isinstance(r.get(key), (int, float))]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=key)
        for ax, what in ((ax_loss, "loss"), (ax_metric, "metrics")):
            ax.set_title(f"{name}: {what}", fontsize=10)
            ax.set_xlabel("epoch")
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.grid(True, alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    fig.tight_layout()
    return image(fig, "training curves")


def training_section(run: Run, hists, plt) -> str:
    m = run.manifest
    metrics = {k: ({x: y for x, y in v.items() if x != "history"} if isinstance(v, Mapping) else v)
               for k, v in part(m, "metrics").items()}   # the history is drawn below, not tabled twice
    body = ("<h3>best metrics per stage</h3>" + nested(metrics)) if metrics else ""
    train_cfg = part(m, "config").get("train")
    body += ("<h3>recipe</h3>" + kv(train_cfg)) if isinstance(train_cfg, Mapping) else ""
    if not hists:
        body += ('<p class="missing">a zoo model: it was trained elsewhere, its history is not part of the run</p>'
                 if part(m, "source") else
                 missing("no per-epoch history in this run yet", f"edgeaffect train {m.get('task') or run.spec.task} "
                                                                  f"--data DATA"))
        return section("training", "Training curves", body)
    body += curves(hists, plt) if plt else no_plots()
    for name, recs in hists:
        body += f"<h3>{esc(name)}: per epoch</h3>" + records(recs[:500])
    return section("training", "Training curves", body)


def eval_section(run: Run) -> str:
    """The manifest's ``eval`` results and any eval JSON files in the run, per class where they hold it."""
    labels = run.spec.labels
    parts = []
    if run.manifest.get("eval"):
        parts.append(nested(run.manifest["eval"], labels))
    if run.manifest.get("eval_details"):   # `edgeaffect eval` keeps its per-class scores here, per split
        parts.append(nested(run.manifest["eval_details"], labels))
    for path in sorted({*run.path.glob("eval*.json"), *run.path.glob("eval/*.json")}):
        try:
            parts.append(f"<h3>{esc(path.relative_to(run.path).as_posix())}</h3>" + nested(read_json(path), labels))
        except (OSError, ValueError):
            parts.append(f'<p class="missing">{esc(path.name)} is not readable JSON</p>')
    body = "".join(parts) or missing("not measured yet", f"edgeaffect eval {run.path}")
    return section("eval", "Evaluation per class", body)


BENCH_COLUMNS = (("variant/runtime-precision", None), ("ran as", "executed_precision"), ("batch", "batch"),
                 ("threads", "threads"), ("p50 ms", "p50_ms"), ("p90 ms", "p90_ms"), ("p99 ms", "p99_ms"),
                 ("items/s", "throughput"), ("×torch", "speedup_vs_torch"), ("metric", "metric"),
                 ("agree", "agreement"), ("size MB", "size_mb"), ("peak RSS MB", "peak_rss_mb"), ("file", "source"))


def log_axis(axis, set_scale) -> None:
    """A log scale labelled in plain numbers at 1, 2 and 5 of each decade (0.1 0.2 0.5 1 2 ...), no others."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    set_scale("log")
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def colours(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """One colour per runtime/precision, the same in every plot of a machine."""
    return {name: f"C{i % 10}" for i, name in enumerate(sorted({label(r) for r in rows}))}


def latency_plot(rows: Sequence[Mapping[str, Any]], title: str, plt) -> str:
    """p50 latency against the batch, one line per runtime/precision (every batch measured)."""
    fig, ax = plt.subplots(figsize=(9, 4))
    for name, colour in colours(rows).items():
        pts = sorted((r["batch"], r["p50_ms"]) for r in rows if label(r) == name and r.get("p50_ms"))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name, color=colour,
                linestyle="--" if "/" in name else "-")
    ax.set_xscale("log", base=2)
    log_axis(ax.yaxis, ax.set_yscale)
    ax.set_xticks(sorted({r["batch"] for r in rows}), [str(b) for b in sorted({r["batch"] for r in rows})])
    ax.set_xlabel("batch")
    ax.set_ylabel("p50 latency (ms, log)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return image(fig, f"latency per batch on {title}")


def bench_section(run: Run, sets, groups, plt) -> str:
    body = "".join(f'<p class="missing">{esc(s["source"])} is not a readable bench file ({esc(s["error"])})</p>'
                   for s in sets if s.get("error"))
    if not groups:
        return section("bench", "Bench per machine", body + missing("not measured yet", f"edgeaffect bench {run.path}"))
    for key, rows in groups.items():
        files = [s for s in sets if any(r["source"] == s["source"] for r in rows)]
        measured = "; ".join(f"{s['source']}: {s['machine'].get('date', 'undated')}, "
                             f"{s['machine'].get('threads') or '?'} thread(s), samples {s['meta'].get('samples', '?')}"
                             for s in files)
        rows = sorted(rows, key=lambda r: (label(r), r["batch"] if isinstance(r.get("batch"), int) else 0))
        body += f"<h3>{esc(key)}</h3><p class=\"sub\">{esc(measured)}</p>"
        body += table([h for h, _ in BENCH_COLUMNS], [[label(r) if k is None else r.get(k) for _, k in BENCH_COLUMNS]
                                                      for r in rows])
        usable = [r for r in rows if isinstance(r.get("batch"), int) and _positive(r.get("p50_ms"))]
        body += (latency_plot(usable, f"{run.spec.name} on {key}", plt) if plt else no_plots()) if usable else ""
    skipped = [dict(x, file=s["source"]) for s in sets for x in s["meta"].get("skipped") or [] if isinstance(x, Mapping)]
    body += ("<h3>not benchmarked on that machine</h3>" + records(skipped)) if skipped else ""
    return section("bench", "Bench per machine, every batch", body)


def tradeoff_plot(rows: Sequence[Mapping[str, Any]], title: str, plt) -> str:
    """Task metric (or agreement with torch) against p50 latency, one panel per batch."""
    batches = sorted({r["batch"] for r in rows})
    key = "metric" if all(_number(r.get("metric")) for r in rows) else "agreement"
    cmap = colours(rows)
    fig, axes = plt.subplots(1, len(batches), figsize=(min(3.6 * len(batches), 11) + 2.4, 4), squeeze=False,
                             sharey=True)
    for b, ax in zip(batches, axes[0]):
        for r in (r for r in rows if r["batch"] == b and _number(r.get(key))):
            ax.scatter(r["p50_ms"], r[key], s=42, color=cmap[label(r)], marker="s" if r.get("variant") else "o",
                       label=label(r), alpha=0.85)
        log_axis(ax.xaxis, ax.set_xscale)
        ax.set_xlabel(f"p50 latency, batch {b} (ms, log)")
        ax.grid(True, alpha=0.3)
    name = rows[0].get("metric_name") or "metric"
    axes[0][0].set_ylabel(f"{name} (eval split)" if key == "metric" else "agreement with torch")
    ys = [r[key] for r in rows if _number(r.get(key))]
    if ys and max(ys) - min(ys) < 0.05:   # near-identical scores: show them as equal rather than magnify float noise
        mid = (max(ys) + min(ys)) / 2
        axes[0][0].set_ylim(mid - 0.05, mid + 0.05)
    axes[0][0].ticklabel_format(axis="y", useOffset=False, style="plain")
    handles = {h.get_label(): h for ax in axes[0] for h in ax.collections}
    axes[0][-1].legend([handles[n] for n in sorted(handles)], sorted(handles), fontsize=8, loc="upper left",
                       bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return image(fig, f"accuracy against latency on {title}")


def tradeoff_section(run: Run, groups, pruned, plt) -> str:
    """Accuracy against latency across runtimes, precisions and pruned sub-runs, per machine; the pruning table."""
    body = ""
    for key, rows in groups.items():
        usable = [r for r in rows if isinstance(r.get("batch"), int) and _positive(r.get("p50_ms"))
                  and (_number(r.get("metric")) or _number(r.get("agreement")))]
        if usable:
            body += f"<h3>{esc(key)}</h3>" + (tradeoff_plot(usable, f"{run.spec.name} on {key}", plt) if plt else no_plots())
    if not body:
        body = missing("not measured yet", f"edgeaffect bench {run.path}")
    if pruned:
        body += "<h3>pruned sub-runs</h3>" + table(
            ("folder", "ratio", "importance", "fine-tune epochs", "params before", "params after", "GFLOPs before",
             "GFLOPs after", "FLOPs speed-up", "metric before", "pruned, no fine-tune", "metric after"),
            [(name, p.get("ratio"), p.get("importance"), p.get("finetune_epochs"), *_pruned_numbers(p)) for name, p in pruned])
    else:
        body += missing("no pruned sub-run yet", f"edgeaffect quantize prune {run.path} --ratio 0.3")
    return section("tradeoff", "Accuracy against latency: runtimes, precisions, pruning", body)


def _pruned_numbers(p: Mapping[str, Any]) -> list[Any]:
    b, a, n = (part(p, k) for k in ("before", "after", "pruned_no_finetune"))
    return [b.get("params"), a.get("params"), b.get("gflops"), a.get("gflops"), p.get("speedup_flops"),
            b.get("metric"), n.get("metric"), a.get("metric")]


def guard_section(run: Run) -> str:
    """The INT8 guard's decision per runtime (manifest ``quantize``), its attempts (quantize/report.json), and
    the reduced-float decisions export made (manifest ``precisions``)."""
    m = run.manifest
    quant = {k: v for k, v in part(m, "quantize").items() if isinstance(v, Mapping)}
    body = "<h3>INT8</h3>"
    if quant:
        body += table(("runtime", "accepted", "fp32 metric", "int8 metric", "drop (points)", "max drop",
                       "layers kept in float", "attempts", "artifact", "decision"),
                      [(rt, q.get("passed"), q.get("fp32_metric"), q.get("int8_metric"), q.get("drop_points"),
                        q.get("max_drop"), len(q.get("kept_float") or []), q.get("attempts"),
                        q.get("artifact") or q.get("best_attempt") or "none published", q.get("message"))
                       for rt, q in quant.items()],
                      row_class=["ok" if q.get("passed") else "no" for q in quant.values()])
        body += _attempts(run)
    else:
        body += missing("no INT8 decision yet", f"edgeaffect quantize int8 {run.path}")
    prec = {k: v for k, v in part(m, "precisions").items() if isinstance(v, Mapping)}
    body += "<h3>reduced float precisions</h3>"
    if prec:
        body += table(("variant", "accepted", "ran as", "fp32 metric", "metric", "drop (points)", "max drop",
                       "max |diff|", "samples", "reason"),
                      [(k, d.get("accepted"), d.get("executed_precision"), d.get("metric_fp32"), d.get("metric"),
                        d.get("drop_points"), d.get("max_drop"), d.get("max_abs_diff"), d.get("n"), d.get("reason"))
                       for k, d in prec.items()], row_class=["ok" if d.get("accepted") else "no" for d in prec.values()])
    else:
        body += missing("no bf16/fp16 decision yet", f"edgeaffect export {run.path} --precision bf16,fp16")
    parity = part(m, "export").get("parity")
    if isinstance(parity, list) and parity:
        body += "<h3>export parity with torch</h3>" + records([p for p in parity if isinstance(p, Mapping)])
    return section("guard", "Precisions and the guard's decisions", body)


def _attempts(run: Run) -> str:
    """Each runtime's guard attempts (float layers kept, metric, drop) from quantize/report.json, if there."""
    from .quantize.pipeline import REPORT

    try:
        report = read_json(run.path / REPORT)
    except (OSError, ValueError):
        return ""
    out = ""
    for rt, res in (report.get("runtimes") or {}).items():
        atts = [a for a in (res.get("attempts") or []) if isinstance(a, Mapping)] if isinstance(res, Mapping) else []
        if atts:
            out += f"<h3>{esc(rt)}: attempts</h3>" + table(
                ("float layers", "metric", "drop (points)", "agreement", "kind", "max |diff|"),
                [(len(a.get("kept_float") or []), a.get("metric"), a.get("drop_points"), a.get("agreement"),
                  a.get("kind"), a.get("max_abs_diff")) for a in atts])
    return out


MACHINE_COLUMNS = ("cpu", "arch", "cores", "logical_cpus", "threads", "isa", "versions", "host", "date")


def _readable(value: Any) -> Any:
    """ISA flags and library versions as plain text rather than JSON."""
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return value


def machine_section(run: Run, sets) -> str:
    """Every machine the run records (bench, INT8, export, reduced precisions), and where the run was made."""
    m = run.manifest
    seen = [(s["source"], s["machine"]) for s in sets if s["machine"]]
    seen += [(f"quantize: {rt}", q.get("machine")) for rt, q in part(m, "quantize").items() if isinstance(q, Mapping)]
    seen += [("export", part(m, "export").get("machine"))]
    seen += [(f"precision: {k}", d.get("machine")) for k, d in part(m, "precisions").items() if isinstance(d, Mapping)]
    rows = [[where, *(_readable(v.get(c)) for c in MACHINE_COLUMNS)] for where, v in seen if isinstance(v, Mapping)]
    body = table(("recorded by", *MACHINE_COLUMNS), rows) if rows else missing("no machine recorded yet",
                                                                              f"edgeaffect bench {run.path}")
    if isinstance(m.get("provenance"), Mapping):
        body += "<h3>where the run was trained</h3>" + kv(m["provenance"])
    return section("machine", "Machines", body)


SECTIONS = (("model", "model"), ("data", "data"), ("training", "training"), ("eval", "eval"), ("bench", "bench"),
            ("tradeoff", "accuracy vs latency"), ("guard", "precisions"), ("machine", "machines"))


def build_report(run_dir: str | os.PathLike) -> str:
    """The whole report of a run as one HTML string: no scripts, no external files, plots inline."""
    try:
        run = load_run(run_dir)
        run.spec
    except (KeyError, TypeError, ValueError, AttributeError) as exc:   # a hand-edited or truncated manifest
        raise EdgeAffectError(f"{Path(run_dir) / MANIFEST} is not a readable run manifest "
                              f"({type(exc).__name__}: {str(exc)[:160]})") from None
    plt = _plt()
    sets, pruned = bench_sets(run), pruned_runs(run)
    groups = by_machine(sets)
    body = [model_section(run, sets), data_section(run), training_section(run, histories(run, pruned), plt),
            eval_section(run), bench_section(run, sets, groups, plt), tradeoff_section(run, groups, pruned, plt),
            guard_section(run), machine_section(run, sets)]
    title = f"edgeaffect report: {run.spec.name}"
    when = _dt.datetime.now().isoformat(timespec="seconds")
    nav = "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in SECTIONS)
    head = (f'<meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="{esc(_CSP)}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
            f"<style>{_CSS}</style>")
    top = (f"<h1>{esc(title)}</h1><p class=\"sub\">{esc(run.spec.task)} · run {esc(run.path.resolve())} · "
           f"report written {esc(when)}" + (f" · {esc(PLOT_HINT)}" if plt is None else "") + f"</p><nav>{nav}</nav>")
    return f"<!doctype html>\n<html lang=\"en\"><head>{head}</head><body>{top}{''.join(body)}</body></html>\n"


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write the report (default ``RUN/report.html``) atomically; returns its path."""
    out = Path(out) if out is not None else Path(run_dir) / "report.html"
    return write_text(out, build_report(run_dir))
