"""PyTorch eager: the FP32 reference every compiled runtime is compared with."""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from .. import precision as _precision
from ..errors import EdgeAffectError
from .base import Runtime


class TorchRuntime(Runtime):
    """Opens ``checkpoint.pt`` (or an in-memory model via :meth:`from_module`).

    Options: ``threads`` (``torch.set_num_threads``, with one inter-op thread as the other runtimes run), ``device`` ("cpu", "cuda"), ``precision``
    (fp32, the reference; bf16 runs under autocast, where the CPU has native bf16).
    """

    name = "torch"

    def _load(self) -> None:
        import torch

        from ..runs import load_model

        if self.options.get("threads"):
            torch.set_num_threads(int(self.options["threads"]))
            with contextlib.suppress(RuntimeError):   # settable once per process, before any parallel work
                torch.set_num_interop_threads(1)
        self.device = self.options.get("device", "cpu")
        reason = _precision.unsupported("torch", self.precision, device=self.device)
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
        import torch

        with torch.inference_mode(), _precision.torch_autocast(self.precision, self.device):
            args = [torch.from_numpy(feeds[n]).to(self.device) for n in self.spec.input_names]
            out = self.model(*args)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return {t.name: o.detach().float().cpu().numpy() for t, o in zip(self._outputs, outs)}

    def _close(self) -> None:
        self.model = None
