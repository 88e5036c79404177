"""How much one quantized tensor costs: the model-output error (noise-to-signal power against the float
model) with only that tensor quantized.  Each runtime's INT8 path lists its candidates and how to run a
model with one of them active; this ranks them, most harmful first (the accuracy guard keeps the worst
in float)."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np


def _nsr(reference: Mapping[str, np.ndarray], other: Mapping[str, np.ndarray]) -> tuple[float, float]:
    """(noise power, signal power) of ``other`` against ``reference`` over the shared outputs."""
    noise = signal = 0.0
    for k, r in reference.items():
        if k in other:
            r = np.asarray(r, np.float64)
            signal += float((r ** 2).sum())
            noise += float(((np.asarray(other[k], np.float64) - r) ** 2).sum())
    return noise, signal


def rank(candidates: list[dict[str, Any]], measure: Callable[[dict[str, Any]], Callable], reference_fn: Callable,
         feeds: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, Any]]:
    """Rows ``{tensor, kind, layers, output_nsr, output_sqnr_db}``, worst first; ``measure(candidate)`` gives
    the infer function of the model with only that candidate quantized."""
    refs = [reference_fn(f) for f in feeds]
    rows = []
    for cand in candidates:
        infer = measure(cand)
        noise = signal = 0.0
        for f, r in zip(feeds, refs):
            n, s = _nsr(r, infer(f))
            noise, signal = noise + n, signal + s
        nsr = noise / max(signal, 1e-20)
        rows.append({"tensor": cand["tensor"], "kind": "weight" if cand.get("weight") else "activation",
                     "layers": cand["layers"], "output_nsr": nsr,
                     "output_sqnr_db": float(10 * np.log10(1 / max(nsr, 1e-12)))})
    rows.sort(key=lambda r: -r["output_nsr"])
    return rows
