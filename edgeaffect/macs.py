"""Multiply-accumulates of an ONNX graph's compute nodes: the one count behind bench's GFLOPs, the INT8
coverage of ONNX Runtime's optimized graph and the guard's cost of a layer kept in float.

:func:`model_gflops` counts a torch model without exporting it (``edgeaffect models`` lists every model)."""
from __future__ import annotations

import os

import numpy as np

from .lazy import lazy_import

onnx = lazy_import("onnx", "train")
torch = lazy_import("torch", "train")


def onnx_node_macs(onnx_path: str | os.PathLike, batch: int = 1, shape: tuple[int, ...] = ()) -> dict[str, int]:
    """MACs of each Conv/ConvTranspose/MatMul/Gemm node at ``batch``, by node name.

    Shapes come from ONNX shape inference on a copy with the batch fixed (and the inputs' other free dims,
    a detector's height and width, from ``shape``: the full input shape after the batch); a node whose
    output shape stays unknown counts 0. Other ops (activations, norms, pooling) are memory-bound and left
    out, as in the usual GFLOP figures of CNNs.
    """
    from onnx import shape_inference

    model = onnx.load(str(onnx_path))
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        for i, d in enumerate(dims):
            if not d.HasField("dim_value"):
                fixed = batch if i == 0 else (shape[i - 1] if i - 1 < len(shape) else None)
                if fixed is not None:
                    d.dim_value = fixed
    model = shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, list[int]] = {}
    for vi in (*model.graph.value_info, *model.graph.input, *model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    return {node.name: _macs(node, [shapes.get(i) for i in node.input],
                             shapes.get(node.output[0]) if node.output else None)
            for node in model.graph.node if node.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm")}


def _macs(node, ins: list, out: list | None) -> int:
    if not out or -1 in out or not ins[0] or len(ins) < 2:
        return 0
    if node.op_type in ("Conv", "ConvTranspose") and ins[1]:
        w = ins[1]
        # weight [out, in/group, k...] (Conv) or [in, out/group, k...]: MACs need no group factor
        k = int(np.prod(w[2:]))
        return int(np.prod(out)) * w[1] * k if node.op_type == "Conv" else int(np.prod(ins[0])) * w[1] * k
    if node.op_type == "MatMul" and ins[1]:
        return int(np.prod(out)) * ins[0][-1]
    if node.op_type == "Gemm":
        trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
        return int(np.prod(out)) * (ins[0][0] if trans_a else ins[0][-1])
    return 0


def model_gflops(factory, batch: int = 1) -> float | None:
    """GFLOPs (2 x MACs of convs and matmuls) of one forward at ``batch``, counted on the meta device.

    ``factory()`` builds the model; on the meta device nothing is allocated or computed, so the
    reference-size models count in about a second. ``None`` when an op has no meta kernel (an LSTM).
    """
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with torch.device("meta"):
            model = factory().eval()
            inputs = [torch.empty(*t.concrete(batch)) for t in model.spec.inputs]
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(*inputs)
    except (AssertionError, NotImplementedError, RuntimeError):
        return None
    return counter.get_total_flops() / 1e9
