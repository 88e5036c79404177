"""Inference runtimes behind one interface: ONNX Runtime, OpenVINO, TensorRT, torch.

    from edgeaffect.runtimes import load, available
    with load("runs/eri/x/model.onnx", runtime="openvino") as rt:
        out = rt.infer(rt.spec.dummy_inputs(batch=1))

Nothing heavy is imported here: each backend is imported when it is loaded.
"""
from .base import Runtime
from .registry import RuntimeEntry, available, get_runtime, list_runtimes, load, register_runtime, runtime_for

__all__ = ["Runtime", "RuntimeEntry", "available", "get_runtime", "list_runtimes", "load", "register_runtime",
           "runtime_for"]
