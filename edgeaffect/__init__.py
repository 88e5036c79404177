"""edgeaffect: emotion-recognition models from training to compiled, quantized edge inference."""
from __future__ import annotations

__version__ = "0.1.0"


def load(path, runtime: str | None = None, **options):
    """Open an exported model (``.onnx``, ``.xml``, ``.engine``, ``checkpoint.pt`` or a run folder).

    ``runtime`` is "onnxruntime", "openvino", "tensorrt" or "torch" (default: by suffix).
    Returns a :class:`~edgeaffect.runtimes.Runtime`: ``infer({name: array}) -> {name: array}``.
    Exported files need no torch (``pip install 'edgeaffect[onnxruntime]'`` is enough); ``checkpoint.pt``
    needs the ``train`` extra.
    """
    from .runtimes.registry import load as _load

    return _load(path, runtime=runtime, **options)


def __getattr__(name: str):
    """``Predictor`` and ``Predictions`` load on first use, so ``import edgeaffect`` stays light."""
    if name in ("Predictor", "Predictions"):
        from . import predict

        return getattr(predict, name)
    raise AttributeError(f"module 'edgeaffect' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "Predictor", "Predictions"])
