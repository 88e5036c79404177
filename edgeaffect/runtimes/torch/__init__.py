"""PyTorch eager: the FP32 reference every compiled runtime is compared with."""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from ...errors import EdgeAffectError
from ...lazy import lazy_import
from ...precision import NATIVE_BF16_FLAGS, check_precisions, cpu_flags, cpu_name
from ...runs import load_model
from ..base import Runtime
from ..registry import RuntimeEntry, register_runtime

torch = lazy_import("torch", "train", "the torch runtime")


class TorchRuntime(Runtime):
    """Opens ``checkpoint.pt`` (or an in-memory model via :meth:`from_module`).

    Options: ``threads`` (``torch.set_num_threads``, with one inter-op thread as the other runtimes run), ``device`` ("cpu", "cuda"), ``precision``
    (fp32, the reference; bf16 runs under autocast, where the CPU has native bf16).
    """

    name = "torch"

    def _load(self) -> None:
        if self.options.get("threads"):
            torch.set_num_threads(int(self.options["threads"]))
            with contextlib.suppress(RuntimeError):   # settable once per process, before any parallel work
                torch.set_num_interop_threads(1)
        self.device = self.options.get("device", "cpu")
        reason = unsupported_here(self.precision, self.device)
        if reason:
            raise EdgeAffectError(f"torch {self.precision}: {reason}")
        model = self.options.pop("module", None)
        if model is None:
            model = load_model(self.path, map_location=self.device)
        self.model = model.to(self.device).eval()
        self.spec = self.spec or model.spec
        self._inputs = list(self.spec.inputs)
        self._outputs = list(self.spec.outputs)

    @classmethod
    def from_module(cls, model, path: str | Path = ".", **options) -> "TorchRuntime":
        """Wrap an already-built ``nn.Module`` with a ``.spec`` (export parity, tests)."""
        return cls(path, spec=model.spec, module=model, **options)

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode(), torch_autocast(self.precision, self.device):
            args = [torch.from_numpy(feeds[n]).to(self.device) for n in self.spec.input_names]
            out = self.model(*args)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return {t.name: o.detach().float().cpu().numpy() for t, o in zip(self._outputs, outs)}

    def _close(self) -> None:
        self.model = None


def unsupported_here(precision: str, device: str | None = None) -> str | None:
    """bf16 on a CPU without native bf16 would be emulated: refused (a CUDA device runs it)."""
    if precision == "bf16" and not (device or "cpu").startswith("cuda") and not cpu_flags() & set(NATIVE_BF16_FLAGS):
        return f"this CPU ({cpu_name()}) has no native bf16 (avx512_bf16/amx_bf16); torch would emulate it"
    return None


def torch_autocast(precision: str, device: str = "cpu"):
    """The context a torch forward runs in for ``precision``: none for fp32, autocast for bf16/fp16."""
    check_precisions([precision])
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        raise EdgeAffectError(f"torch runs fp32 and bf16 only, not {precision}")
    return torch.autocast(device_type=str(device).split(":")[0], dtype=dtype)


ENTRY = register_runtime(RuntimeEntry(
    "torch", TorchRuntime, "train", ("torch",), (".pt",), "PyTorch eager, the FP32 reference",
    {"fp32": "checkpoint.pt", "bf16": "checkpoint.pt"}, rank=3, takes_threads=True, order=10,
    precisions=("fp32", "bf16"), check=unsupported_here, reference=True))
