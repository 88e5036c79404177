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
