"""A small TFLite -> ONNX converter for the float ops of MediaPipe's detection nets (BlazeFace).

Why our own: the general converters (tf2onnx, onnx2tf) pull TensorFlow, and re-declaring the nets in torch
means guessing two architectures from their graphs; here the graph itself is read from the ``.tflite``
flatbuffer (the ``tflite`` package parses it) and each operator is written as its ONNX twin, so the ONNX
file computes what the ``.tflite`` computes, op for op.  Activations are NCHW inside (the input is NCHW
``image``); weights are transposed once; fp16 and sparse (``DENSIFY``) weights are folded to dense fp32.
Only the ops these nets use are known; any other refuses in one line.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import EdgeAffectError
from ..lazy import lazy_import

onnx = lazy_import("onnx", "train")

_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}
_NHWC_TO_NCHW = (0, 3, 1, 2)
_ACT = {0: None, 1: "Relu", 3: "Relu6"}


def _op_name(model, op) -> str:
    """The builtin operator's name (newer files keep the code in ``BuiltinCode``, older in the deprecated field)."""
    from tflite.BuiltinOperator import BuiltinOperator

    code = model.OperatorCodes(op.OpcodeIndex())
    value = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    return next(k for k, v in vars(BuiltinOperator).items() if v == value and not k.startswith("_"))


def _options(op, cls):
    table = op.BuiltinOptions()
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    return opts


def _vector(dim, which: str) -> np.ndarray:
    """A sparse dimension's segments or indices (stored as one of three integer vector types)."""
    import tflite

    kind = getattr(dim, f"{which}Type")()
    cls = {1: tflite.Int32Vector, 2: tflite.Uint16Vector, 3: tflite.Uint8Vector}[kind]
    vec = cls()
    table = getattr(dim, which)()
    vec.Init(table.Bytes, table.Pos)
    return vec.ValuesAsNumpy().astype(np.int64)


def densify(values: np.ndarray, shape, sparsity) -> np.ndarray:
    """A TFLite sparse tensor made dense: level by level in traversal order (dense levels repeat each
    parent, CSR levels take their segment), so the values come in order and land by their coordinates."""
    order = sparsity.TraversalOrderAsNumpy()
    block_map = sparsity.BlockMapAsNumpy() if sparsity.BlockMapLength() else np.zeros(0, int)
    parent, coords = np.zeros(1, np.int64), np.zeros((1, len(order)), np.int64)
    for level in range(len(order)):
        dim = sparsity.DimMetadata(level)
        if dim.Format() == 0:
            n = dim.DenseSize()
            parent = (parent[:, None] * n + np.arange(n)).reshape(-1)
            coords = np.repeat(coords, n, 0)
            coords[:, order[level]] = np.tile(np.arange(n), len(coords) // n)
        else:
            seg, idx = _vector(dim, "ArraySegments"), _vector(dim, "ArrayIndices")
            counts = seg[parent + 1] - seg[parent]
            parent = np.concatenate([np.arange(seg[p], seg[p + 1]) for p in parent]) if len(parent) else parent
            coords = np.repeat(coords, counts, 0)
            coords[:, order[level]] = idx[parent]
    n_dims = len(shape)
    dense_coords = coords[:, :n_dims].copy()
    for j, d in enumerate(block_map):   # a blocked dimension: block index * block size + offset in the block
        size = sparsity.DimMetadata(int(np.flatnonzero(order == n_dims + j)[0])).DenseSize()
        dense_coords[:, d] = coords[:, d] * size + coords[:, n_dims + j]
    out = np.zeros(shape, values.dtype)
    out[tuple(dense_coords.T)] = values[: len(dense_coords)]
    return out


def _constants(model, graph) -> dict[int, np.ndarray]:
    """Every tensor with data in the file, as it is stored (sparse tensors still compact)."""
    consts = {}
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        raw = model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(raw, np.ndarray) and raw.size:
            dtype = _DTYPES.get(t.Type())
            if dtype is None:
                raise EdgeAffectError(f"tflite tensor {t.Name().decode()}: type {t.Type()} is not supported")
            arr = raw.view(dtype)
            consts[i] = arr if t.Sparsity() is not None else arr.reshape(t.ShapeAsNumpy())
    return consts


def _dequantize(graph, src: int, arr: np.ndarray) -> np.ndarray:
    """fp16 weights to fp32, int8 weights by their (per-channel) scale and zero point."""
    t = graph.Tensors(src)
    if arr.dtype == np.float16 or arr.dtype == np.float32:
        return arr.astype(np.float32)
    q = t.Quantization()
    scale, zero = q.ScaleAsNumpy(), q.ZeroPointAsNumpy()
    shape = [1] * arr.ndim
    if scale.size > 1:
        shape[q.QuantizedDimension()] = -1
    return ((arr.astype(np.float32) - zero.reshape(shape)) * scale.reshape(shape)).astype(np.float32)


def _same_pads(in_hw, kernel, stride, dilation=(1, 1)) -> list[int]:
    """TensorFlow's SAME padding as explicit ONNX pads (the odd pixel goes after, as TF puts it)."""
    begin, end = [], []
    for n, k, s, d in zip(in_hw, kernel, stride, dilation):
        out = -(-n // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return begin + end


class _Graph:
    """The ONNX graph being written: nodes, folded initializers, and TFLite tensor index -> ONNX name."""

    def __init__(self, model, graph, output_names: dict[int, str]):
        self.model, self.graph, self.nodes, self.inits = model, graph, [], []
        self.raw = _constants(model, graph)
        self.const: dict[int, np.ndarray] = {}
        self.names = {int(graph.InputsAsNumpy()[0]): "image", **output_names}

    def name(self, idx: int) -> str:
        return self.names.get(idx, f"t{idx}")

    def shape(self, idx: int) -> list[int]:
        return [int(v) for v in self.graph.Tensors(idx).ShapeAsNumpy()]

    def init(self, name: str, arr: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(self, op: str, inputs: list[str], out_idx: int, act: int = 0, **attrs) -> None:
        """One ONNX node writing TFLite tensor ``out_idx``, with TFLite's fused activation after it."""
        from onnx import helper

        if act not in _ACT:
            raise EdgeAffectError(f"tflite fused activation {act} is not supported")
        out = self.name(out_idx)
        mid = f"{out}_pre" if _ACT[act] else out
        self.nodes.append(helper.make_node(op, inputs, [mid], name=f"{op}_{out}", **attrs))
        if _ACT[act]:
            self.nodes.append(helper.make_node(_ACT[act], [mid], [out], name=f"{_ACT[act]}_{out}"))

    def value(self, idx: int) -> np.ndarray:
        """A constant input (weights, paddings, sizes), folded through DENSIFY and DEQUANTIZE."""
        if idx not in self.const and idx in self.raw and self.graph.Tensors(idx).Sparsity() is None:
            return self.raw[idx]
        if idx not in self.const:
            raise EdgeAffectError(f"tflite tensor {idx} is used as a constant but is computed")
        return self.const[idx]


def _conv(g: _Graph, op, ins, out, depthwise: bool) -> None:
    import tflite

    o = _options(op, tflite.DepthwiseConv2DOptions if depthwise else tflite.Conv2DOptions)
    w = g.value(ins[1])
    w = w.transpose(3, 0, 1, 2) if depthwise else w.transpose(0, 3, 1, 2)   # -> O, I/group, KH, KW
    x_shape, stride, dil = g.shape(ins[0]), (o.StrideH(), o.StrideW()), (o.DilationHFactor(), o.DilationWFactor())
    pads = _same_pads(x_shape[1:3], w.shape[2:], stride, dil) if o.Padding() == 0 else [0, 0, 0, 0]
    names = [g.name(ins[0]), g.init(f"w{out}", w)]
    if len(ins) > 2 and ins[2] >= 0:
        names.append(g.init(f"b{out}", g.value(ins[2]).astype(np.float32)))
    g.node("Conv", names, out, o.FusedActivationFunction(), strides=list(stride), dilations=list(dil), pads=pads,
           kernel_shape=list(w.shape[2:]), group=x_shape[3] if depthwise else 1)


def _pad(g: _Graph, op, ins, out) -> None:
    p = g.value(ins[1]).astype(np.int64)[list(_NHWC_TO_NCHW)]
    g.node("Pad", [g.name(ins[0]), g.init(f"p{out}", np.concatenate([p[:, 0], p[:, 1]]))], out)


def _max_pool(g: _Graph, op, ins, out) -> None:
    import tflite

    o = _options(op, tflite.Pool2DOptions)
    k, s = (o.FilterHeight(), o.FilterWidth()), (o.StrideH(), o.StrideW())
    pads = _same_pads(g.shape(ins[0])[1:3], k, s) if o.Padding() == 0 else [0, 0, 0, 0]
    g.node("MaxPool", [g.name(ins[0])], out, o.FusedActivationFunction(), kernel_shape=list(k), strides=list(s),
           pads=pads)


def _add(g: _Graph, op, ins, out) -> None:
    import tflite

    g.node("Add", [g.name(i) for i in ins], out, _options(op, tflite.AddOptions).FusedActivationFunction())


def _reshape(g: _Graph, op, ins, out) -> None:
    """NCHW back to TFLite's NHWC element order first, so the flattened anchors come in TFLite's order."""
    from onnx import helper

    src = g.name(ins[0])
    if len(g.shape(ins[0])) == 4:
        g.nodes.append(helper.make_node("Transpose", [src], [f"{src}_nhwc"], perm=[0, 2, 3, 1]))
        src = f"{src}_nhwc"
    shape = g.shape(out)
    shape = np.array([0, -1, shape[-1]] if len(shape) == 3 else [-1] + shape[1:], np.int64)   # any batch, any size
    g.node("Reshape", [src, g.init(f"s{out}", shape)], out)


def _concat(g: _Graph, op, ins, out) -> None:
    import tflite

    o = _options(op, tflite.ConcatenationOptions)
    rank = len(g.shape(out))
    axis = o.Axis() % rank
    g.node("Concat", [g.name(i) for i in ins], out, o.FusedActivationFunction(),
           axis=_NHWC_TO_NCHW.index(axis) if rank == 4 else axis)


def _resize(g: _Graph, op, ins, out) -> None:
    import tflite

    o = _options(op, tflite.ResizeBilinearOptions)
    (_, h, w, _), (_, oh, ow, _) = g.shape(ins[0]), g.shape(out)
    mode = "align_corners" if o.AlignCorners() else "half_pixel" if o.HalfPixelCenters() else "asymmetric"
    scales = g.init(f"r{out}", np.array([1, 1, oh / h, ow / w], np.float32))
    g.node("Resize", [g.name(ins[0]), "", scales], out, mode="linear", coordinate_transformation_mode=mode)


def _depth_to_space(g: _Graph, op, ins, out) -> None:
    import tflite

    g.node("DepthToSpace", [g.name(ins[0])], out, blocksize=_options(op, tflite.DepthToSpaceOptions).BlockSize(),
           mode="DCR")   # TF's depth_to_space channel order


def _fold(g: _Graph, op_name: str, ins, out) -> None:
    """DENSIFY and DEQUANTIZE of stored weights: computed here, once, into a dense fp32 constant."""
    t = g.graph.Tensors(ins[0])
    if op_name == "DENSIFY":
        g.const[out] = densify(g.raw[ins[0]], g.shape(out), t.Sparsity())
    else:
        src = g.const[ins[0]] if ins[0] in g.const else g.value(ins[0])
        g.const[out] = _dequantize(g.graph, ins[0], src)


_OPS = {"CONV_2D": lambda g, op, i, o: _conv(g, op, i, o, False),
        "DEPTHWISE_CONV_2D": lambda g, op, i, o: _conv(g, op, i, o, True),
        "PAD": _pad, "MAX_POOL_2D": _max_pool, "ADD": _add, "RESHAPE": _reshape, "CONCATENATION": _concat,
        "RESIZE_BILINEAR": _resize, "DEPTH_TO_SPACE": _depth_to_space,
        "RELU": lambda g, op, i, o: g.node("Relu", [g.name(i[0])], o)}


def convert(tflite_path: Path, output_names: list[str]):
    """The ``.tflite`` file's first subgraph as an ONNX model (opset 17): input ``image`` NCHW float32 with any
    batch, outputs named ``output_names`` in the file's output order."""
    import tflite
    from onnx import TensorProto, helper

    model = tflite.Model.GetRootAsModel(Path(tflite_path).read_bytes(), 0)
    graph = model.Subgraphs(0)
    outs = [int(i) for i in graph.OutputsAsNumpy()]
    g = _Graph(model, graph, dict(zip(outs, output_names)))
    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        name, ins, out = _op_name(model, op), [int(i) for i in op.InputsAsNumpy()], int(op.OutputsAsNumpy()[0])
        if name in ("DENSIFY", "DEQUANTIZE") and (ins[0] in g.raw or ins[0] in g.const):
            _fold(g, name, ins, out)
        elif name in _OPS:
            _OPS[name](g, op, ins, out)
        else:
            raise EdgeAffectError(f"{Path(tflite_path).name}: tflite op {name} is not supported by this converter")
    _, h, w, c = g.shape(int(graph.InputsAsNumpy()[0]))
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", c, "height", "width"])]
    outputs = [helper.make_tensor_value_info(g.name(i), TensorProto.FLOAT, ["batch", "anchors"] + g.shape(i)[2:])
               for i in outs]
    onnx_model = helper.make_model(helper.make_graph(g.nodes, Path(tflite_path).stem, inputs, outputs, g.inits),
                                   opset_imports=[helper.make_opsetid("", 17)], producer_name="edgeaffect")
    onnx_model.ir_version = 8
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model
