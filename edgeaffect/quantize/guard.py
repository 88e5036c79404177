"""Accuracy guard: score INT8 against FP32 on the val split, keep the most sensitive layers in float.

Sensitivity is measured per quantized activation tensor: the model's output
error against FP32 (noise-to-signal power) on a few real calibration samples
with only that tensor quantized (each runtime's ``int8.rank_*``, through
:func:`edgeaffect.runtimes.sensitivity.rank`).
The guard then keeps the worst 1, 2, 3, 4, 6, 9, ... tensors in float (their producer
and consumer nodes)
and re-quantizes (with the saved ranges, no re-calibration) until the drop is
within ``max_drop`` points of the task metric or ``max_float_layers`` layers are
in float, and then says what it could not reach.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..evaluate import SCORED_BATCH, Samples, compare, drop_points, score  # noqa: F401 - SCORED_BATCH: the batch it scores in


# -- the guard loop ------------------------------------------------------------------------------------
@dataclass
class GuardResult:
    passed: bool
    fp32_metric: float
    int8_metric: float
    drop_points: float
    max_drop: float
    kept_float: list[str]
    attempts: list[dict[str, Any]] = field(default_factory=list)
    sensitivity: list[dict[str, Any]] = field(default_factory=list)
    artifact: Any = None
    agreement: dict[str, float] = field(default_factory=dict)
    message: str = ""
    caveat: str = ""              # why the metric cannot carry the decision (see :func:`weak_evidence`)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "fp32_metric": self.fp32_metric, "int8_metric": self.int8_metric,
                "drop_points": self.drop_points, "max_drop": self.max_drop, "kept_float": self.kept_float,
                "agreement": self.agreement, "attempts": self.attempts, "message": self.message,
                "caveat": self.caveat, "sensitivity": self.sensitivity}


WEAK_SAMPLES = 32
"""Below this many scored samples a metric's drop says little (one sample moves accuracy by 3+ points)."""


def weak_evidence(n: int, fp32: float | None, attempt: Mapping[str, Any]) -> str:
    """A caveat for a decision the metric cannot carry: few samples, or an fp32 metric of 0 (an untrained or
    one-class model, where INT8 can only tie); the outputs' agreement with fp32 is then the evidence."""
    why = [f"only {n} samples"] if n < WEAK_SAMPLES else []
    if fp32 is not None and abs(fp32) < 1e-9:
        why.append("an fp32 metric of 0")
    if not why:
        return ""
    agree = attempt.get("agreement")
    seen = f"; outputs agree with fp32 at {agree:.3f} ({attempt.get('kind', 'agreement')})" if agree is not None else ""
    return f"weak evidence: {' and '.join(why)}{seen}"


GIVE_BACK = 3
"""After the first accepted float set, how many of its kept tensors (heaviest first) the guard tries to return
to int8: each try is one quantize + score, and each success moves MACs back onto the int8 kernels."""


def run_guard(*, quantize_fn: Callable[[list[str]], Any], predict_fn: Callable[[Any], dict], rank_fn: Callable[[Any], list],
              samples: Samples, spec, fp32_outputs: Mapping[str, np.ndarray], max_drop: float, max_float_layers: int,
              keep_float: Sequence[str] = (), enabled: bool = True, on_attempt: Callable[[dict], None] | None = None,
              layer_macs: Mapping[str, int] | None = None, give_back: int = GIVE_BACK) -> GuardResult:
    """Quantize, score on ``samples``, and keep more layers in float until the drop is within ``max_drop`` points;
    then return the heaviest kept layers to int8 where the drop stays within bounds, and keep the accepted
    attempt with the fewest MACs in float (float islands cost time: ``layer_macs`` by layer name)."""
    fp32 = score(spec, fp32_outputs, samples.target)
    macs = _float_macs(layer_macs)
    tried: list[tuple[Any, dict[str, Any]]] = []

    def attempt(kept: list[str]) -> dict[str, Any]:
        done = next((a for _, a in tried if set(a["kept_float"]) == set(kept)), None)
        if done is not None:   # the give-back can reach a set the ladder already scored (plain INT8 included)
            return done
        artifact = quantize_fn(kept)
        outs = predict_fn(artifact)
        metric = score(spec, outs, samples.target)
        att = {"kept_float": list(kept), "metric": metric, "drop_points": drop_points(spec, fp32, metric),
               "float_macs": macs(kept), **compare(spec, fp32_outputs, outs)}
        tried.append((artifact, att))
        if on_attempt:
            on_attempt(att)
        return att

    ranking = _ladder(attempt, rank_fn, lambda: tried[-1][0], keep_float, max_drop, max_float_layers, enabled)
    first = next((a for _, a in tried if a["drop_points"] <= max_drop), None)
    if enabled and first and len(first["kept_float"]) > len(keep_float):
        _give_back(attempt, ranking, first["kept_float"], keep_float, macs, max_drop, give_back)
    artifact, att = _choose(tried, max_drop)
    if (n := sum(a["drop_points"] <= max_drop for _, a in tried)) > 1:
        att = {**att, "why": f"the fewest MACs in float ({att['float_macs'] / 1e6:.2f} M) of {n} accepted attempts"}
    return _result(artifact, att, fp32, [a for _, a in tried], ranking, samples, max_drop, max_float_layers, enabled)


def _float_macs(layer_macs: Mapping[str, int] | None) -> Callable[[Sequence[str]], int]:
    """MACs of a set of layers kept in float (an OpenVINO op ``<node>/WithoutBiases`` counts as its ONNX node)."""
    table = dict(layer_macs or {})
    return lambda names: sum(table.get(n.removesuffix("/WithoutBiases"), 0) for n in set(names))


def _ladder(attempt, rank_fn, last_artifact, keep_float, max_drop, max_float_layers, enabled) -> list[dict[str, Any]]:
    """Plain INT8, then the worst 1, 2, 3, 4, 6, 9, ... ranked tensors' layers in float, until one is within bounds."""
    kept, ranking, k = list(keep_float), [], 0
    while True:
        if attempt(kept)["drop_points"] <= max_drop or not enabled:
            return ranking
        if not ranking:
            ranking = rank_fn(last_artifact())
        k = k + 1 if k < 4 else k + k // 2
        if k > 2 * max(len(ranking), 1) or len(kept) - len(keep_float) >= max_float_layers:
            return ranking
        new = list(keep_float)
        for row in ranking[:k]:
            new += [l for l in row["layers"] if l not in new]
        if len(new) == len(kept) and k >= len(ranking):
            return ranking
        kept = new[:len(keep_float) + max_float_layers]


def _give_back(attempt, ranking, kept, keep_float, macs, max_drop, tries) -> None:
    """Try returning each kept tensor's layers to int8, heaviest first; keep every return that stays within bounds."""
    rows = [(i, r) for i, r in enumerate(ranking) if set(r["layers"]) & set(kept) - set(keep_float)]
    rows.sort(key=lambda ir: (-macs([l for l in ir[1]["layers"] if l in kept]), -ir[0]))  # then least harmful first
    for _, row in rows[:tries]:
        fewer = [l for l in kept if l in keep_float or l not in row["layers"]]
        if len(fewer) < len(kept) and attempt(fewer)["drop_points"] <= max_drop:
            kept = fewer


def _choose(tried, max_drop):
    """The accepted attempt with the fewest float MACs (then fewest float layers, then smallest drop); the
    smallest drop when none was accepted."""
    accepted = [t for t in tried if t[1]["drop_points"] <= max_drop]
    if accepted:
        return min(accepted, key=lambda t: (t[1]["float_macs"], len(t[1]["kept_float"]), t[1]["drop_points"]))
    return min(tried, key=lambda t: t[1]["drop_points"])


def _result(artifact, att, fp32, attempts, ranking, samples, max_drop, max_float_layers, enabled) -> GuardResult:
    passed = att["drop_points"] <= max_drop
    if passed:
        msg = (f"INT8 within {max_drop:g} point(s): drop {att['drop_points']:.2f} with "
               f"{len(att['kept_float'])} layer(s) kept in float" + (f", chosen for {att['why']}" if "why" in att else ""))
    elif not enabled:
        msg = f"INT8 drop {att['drop_points']:.2f} points exceeds {max_drop:g} (guard disabled)"
    else:
        msg = (f"cannot reach a drop of {max_drop:g} point(s): best was {att['drop_points']:.2f} with "
               f"{len(att['kept_float'])} layer(s) in float (limit {max_float_layers}); raise --max-drop, add "
               f"calibration samples or try another --calib-method")
    caveat = weak_evidence(len(samples), fp32, att)
    msg += f"; {caveat}" if caveat else ""
    return GuardResult(passed, fp32, att["metric"], att["drop_points"], max_drop, att["kept_float"], attempts,
                       ranking, artifact, {k: att[k] for k in ("kind", "agreement", "max_abs_diff", "spearman") if k in att}, msg,
                       caveat)
