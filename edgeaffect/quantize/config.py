"""Quantization settings: one frozen dataclass with a named preset per back end.

Defaults come from measurements on the ERI model (benchmarks/results/2026-11-23-quantize-eri.md,
docs/quantize.md): per-channel symmetric INT8 weights, 64 stratified calibration
samples (plain INT8 agreed with FP32 on every val clip's dominant emotion from 32
samples on, 8 and 16 did not; 64 is twice that, while calibration time grows
linearly: 12 s at 64 vs 23 s at 128), MinMax ranges, and an accuracy guard of one
task-metric point.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from ..errors import EdgeAffectError

CALIB_METHODS = ("minmax", "entropy", "percentile")
MIN_CALIB_SAMPLES = 8
DEFAULT_CALIB_SAMPLES = 64


@dataclass(frozen=True)
class QuantConfig:
    """What INT8 conversion does for one runtime; presets below, overrides via :meth:`replace`."""

    runtime: str = ""                     # "": settings shared by every runtime (each preset names its own)
    calib_samples: int = DEFAULT_CALIB_SAMPLES
    calib_method: str = "minmax"          # minmax | entropy | percentile
    calib_split: str = "train"
    calib_batch: int = 1
    percentile: float = 99.999
    seed: int = 0
    per_channel: bool = True
    weight_symmetric: bool = True
    activation_symmetric: bool = False
    reduce_range: bool = False
    op_types: tuple[str, ...] = ()        # empty: every op the quantizer supports
    exclude_output_quant: tuple[str, ...] = ()
    quantize_bias: bool = True
    # OpenVINO / NNCF
    ov_preset: str = "performance"        # performance (symmetric) | mixed (asymmetric activations)
    ov_model_type: str = "default"        # default | transformer (see docs/quantize.md: transformer-type INT8
                                          # changed its outputs under a static-batch reshape on OpenVINO 2026.4)
    fast_bias_correction: bool = True
    # TensorRT: explicit Q/DQ (guarded layer by layer, TensorRT 10 and 11) or implicit calibration by
    # TensorRT's own entropy calibrator (TensorRT 8.6/10, e.g. JetPack 6; removed in 11): scored, no float fallback
    trt_calibration: str = "explicit"
    # accuracy guard
    max_drop: float = 1.0                 # allowed drop, in points of the task metric (Task.metric_scale)
    guard: bool = True
    max_float_layers: int = 16            # give up (with a report) beyond this many layers kept in float
    sensitivity_samples: int = 8
    eval_samples: int = 256               # val samples the guard scores, evenly spaced (evaluate.DEFAULT_LIMIT); 0: all
    keep_float: tuple[str, ...] = ()      # layers the user asks to keep in float from the start

    def __post_init__(self):
        if self.runtime:
            _check_runtime(self.runtime)
        if self.calib_method not in CALIB_METHODS:
            raise EdgeAffectError(f"unknown calibration method {self.calib_method!r}; choose from {', '.join(CALIB_METHODS)}")
        if self.calib_samples < MIN_CALIB_SAMPLES:
            raise EdgeAffectError(f"--calib-samples {self.calib_samples} is too few: use at least {MIN_CALIB_SAMPLES} "
                                  f"(ranges from a handful of samples clip real inputs)")
        if not self.max_drop >= 0:
            raise EdgeAffectError(f"--max-drop must be >= 0, got {self.max_drop}")
        if self.ov_preset not in ("performance", "mixed"):
            raise EdgeAffectError(f"unknown OpenVINO preset {self.ov_preset!r}; choose performance or mixed")
        if self.ov_model_type not in ("transformer", "default"):
            raise EdgeAffectError(f"unknown OpenVINO model type {self.ov_model_type!r}; choose transformer or default")
        if self.trt_calibration not in ("explicit", "implicit"):
            raise EdgeAffectError(f"unknown TensorRT calibration {self.trt_calibration!r}; choose explicit or implicit")
        object.__setattr__(self, "op_types", tuple(self.op_types))
        object.__setattr__(self, "exclude_output_quant", tuple(self.exclude_output_quant))
        object.__setattr__(self, "keep_float", tuple(self.keep_float))

    # -- presets -----------------------------------------------------------------------------------
    @classmethod
    def preset(cls, runtime: str, **kw: Any) -> "QuantConfig":
        """The settings ``runtime``'s INT8 path starts from (its table entry's ``int8_preset``), then ``kw``."""
        from ..runtimes.registry import get_runtime

        _check_runtime(runtime)
        return cls(**{**get_runtime(runtime).int8_preset, **kw, "runtime": runtime})

    def replace(self, **kw: Any) -> "QuantConfig":
        return replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("op_types", "exclude_output_quant", "keep_float"):
            d[k] = list(d[k])
        return d


def _check_runtime(runtime: str) -> None:
    """A runtime with an INT8 quantizer in the runtime table, or one line naming those that have one."""
    from ..runtimes.registry import quantizable

    if runtime not in quantizable():
        raise EdgeAffectError(f"unknown runtime {runtime!r} for INT8; choose from {', '.join(quantizable())}")
