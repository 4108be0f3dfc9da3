"""Import an ONNX model into the graph IR with the ``onnx`` package.

The model is checked (``onnx.checker``), shapes are inferred (``onnx.shape_inference``, strict,
with data propagation so reshape targets computed from ``Shape`` ops resolve), initializers and
``Constant`` nodes become weights. Node names are the ONNX node names (``<OpType>_<index>``
where empty); tensor names are the ONNX tensor names, except that Identity / Dropout outputs
are replaced by their input. The batch axis is the first axis of the graph inputs (symbolic or
fixed) and is recorded as 1.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from hwsim.errors import GraphError, UnsupportedOpError
from hwsim.graph.bn_fold import fold_batchnorm
from hwsim.graph.ir import (
    AvgPoolAttrs,
    BatchNormAttrs,
    ChannelShuffleAttrs,
    ClipAttrs,
    ConcatAttrs,
    Conv2dAttrs,
    GlobalAvgPoolAttrs,
    Graph,
    HardSigmoidAttrs,
    LinearAttrs,
    MaxPoolAttrs,
    NoAttrs,
    Node,
    OpType,
    ReshapeAttrs,
    Shape,
    infer_output_shape,
)

SUPPORTED_OPS = ("Conv", "Gemm", "MatMul (constant right operand)", "BatchNormalization", "Relu",
                 "Clip", "HardSwish", "HardSigmoid", "Sigmoid", "MaxPool", "AveragePool",
                 "GlobalAveragePool", "ReduceMean (axes 2, 3)", "Add", "Mul", "Concat",
                 "Flatten (axis 1)", "Reshape", "Transpose (channel shuffle only)", "Identity",
                 "Dropout", "Constant", "shape arithmetic feeding Reshape (Shape, Gather, ...)")

# Batch size used to evaluate shape arithmetic when the batch axis is symbolic: a value no
# per-sample dimension of these small models takes, so a reshape target can tell it apart.
_BATCH_SENTINEL = 982451653


def _unsqueeze(v: list[Any], a: dict[str, Any]) -> np.ndarray:
    axes = a.get("axes", None if len(v) < 2 else v[1].tolist())
    out = v[0]
    for ax in sorted(int(x) % (out.ndim + len(axes)) for x in axes):
        out = np.expand_dims(out, ax)
    return out


def _squeeze(v: list[Any], a: dict[str, Any]) -> np.ndarray:
    axes = a.get("axes", None if len(v) < 2 else v[1].tolist())
    return np.squeeze(v[0], axis=None if axes is None else tuple(axes))


def _slice(v: list[Any], a: dict[str, Any]) -> np.ndarray:
    data, starts, ends = v[0], v[1], v[2]
    axes = v[3] if len(v) > 3 and v[3] is not None else np.arange(len(starts))
    steps = v[4] if len(v) > 4 and v[4] is not None else np.ones(len(starts), np.int64)
    index = [slice(None)] * data.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
        index[int(ax)] = slice(int(s), int(e), int(st))
    return data[tuple(index)]


def _int_div(v: list[Any], a: dict[str, Any]) -> np.ndarray:
    x, y = v
    if np.issubdtype(x.dtype, np.integer) and np.issubdtype(y.dtype, np.integer):
        return np.trunc(x / y).astype(x.dtype)  # ONNX integer Div truncates toward zero
    return x / y


_SHAPE_OPS: dict[str, Any] = {
    "Gather": lambda v, a: np.take(v[0], v[1], axis=a.get("axis", 0)),
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": lambda v, a: np.concatenate([np.atleast_1d(x) for x in v], axis=a["axis"]),
    "Slice": _slice,
    "Cast": lambda v, a: v[0].astype(onnx.helper.tensor_dtype_to_np_dtype(a["to"])),
    "Add": lambda v, a: v[0] + v[1],
    "Sub": lambda v, a: v[0] - v[1],
    "Mul": lambda v, a: v[0] * v[1],
    "Div": _int_div,
    "Identity": lambda v, a: v[0],
}

_UNARY = {"Relu": OpType.RELU, "HardSwish": OpType.HARDSWISH, "Sigmoid": OpType.SIGMOID}


def _load(path_or_model: Any) -> tuple[onnx.ModelProto, str]:
    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model, "<onnx.ModelProto>"
    if not isinstance(path_or_model, (str, os.PathLike)):
        raise GraphError(f"expected an ONNX file path or onnx.ModelProto, got "
                         f"{type(path_or_model).__name__}")
    path = os.fspath(path_or_model)
    if not os.path.isfile(path):
        raise GraphError(f"ONNX file {path!r} does not exist")
    try:
        return onnx.load(path), path
    except Exception as err:  # protobuf DecodeError, OSError, ...
        raise GraphError(f"ONNX file {path!r} cannot be read (corrupt or not ONNX): "
                         f"{type(err).__name__}: {err}") from err


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class _Importer:
    def __init__(self, model: onnx.ModelProto, where: str) -> None:
        self.where = where
        g = model.graph
        self.graph = g
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                          0)
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t)
                                              for t in g.initializer}
        self.value_info: dict[str, onnx.ValueInfoProto] = {
            v.name: v for v in list(g.input) + list(g.value_info) + list(g.output)}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.alias: dict[str, str] = {}
        # int tensors computed from shapes (shape arithmetic feeding Reshape): their value
        # with the batch size set to _BATCH_SENTINEL, or None where hwsim cannot evaluate it
        self.shape_values: dict[str, np.ndarray | None] = {}
        self.shapes: dict[str, Shape] = {}
        self.nodes: list[Node] = []
        self.node_names: set[str] = set()
        # channel shuffle in progress: reshaped tensor -> (first node, input, groups), then
        # the same keyed by the transposed tensor
        self.shuffle_split: dict[str, tuple[onnx.NodeProto, str, int]] = {}
        self.shuffle_swapped: dict[str, tuple[onnx.NodeProto, str, int]] = {}
        self.inputs: dict[str, Shape] = {}
        self.trust_onnx_shapes = True  # cross-check emitted shapes with ONNX's inference
        real_inputs = [v for v in g.input if v.name not in self.consts]
        if not real_inputs:
            raise GraphError(f"{where}: the model has no non-constant input")
        self.batch_dim = self._dims(real_inputs[0])[0]
        self.batch_value = (self.batch_dim if isinstance(self.batch_dim, int)
                            else _BATCH_SENTINEL)
        for v in real_inputs:
            elem = v.type.tensor_type.elem_type
            if elem != onnx.TensorProto.FLOAT:
                raise UnsupportedOpError(f"{where}: input {v.name!r} has element type "
                                         f"{onnx.TensorProto.DataType.Name(elem)}; only "
                                         "float32 inputs are supported")
            self.inputs[v.name] = self.shape(v.name, "graph input")
            self.shapes[v.name] = self.inputs[v.name]

    # -- tensors ---------------------------------------------------------------------------
    def _dims(self, v: onnx.ValueInfoProto) -> list[int | str | None]:
        if not v.type.HasField("tensor_type") or not v.type.tensor_type.HasField("shape"):
            raise GraphError(f"{self.where}: tensor {v.name!r} has no shape after shape "
                             "inference")
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in v.type.tensor_type.shape.dim]

    def shape(self, name: str, who: str) -> Shape:
        """Recorded shape (batch axis -> 1) of tensor ``name``; ``who`` names the node."""
        v = self.value_info.get(name)
        if v is None:
            raise GraphError(f"{self.where}: {who}: shape inference gave no shape for tensor "
                             f"{name!r}")
        dims = self._dims(v)
        if not dims or dims[0] != self.batch_dim:
            raise UnsupportedOpError(f"{self.where}: {who}: tensor {name!r} has shape {dims}, "
                                     f"which does not keep the batch axis ({self.batch_dim}) "
                                     "first; ops that mix samples are not supported")
        if any(not isinstance(d, int) or d < 1 for d in dims[1:]):
            raise GraphError(f"{self.where}: {who}: tensor {name!r} has unknown dimensions "
                             f"{dims}; only the batch axis may be symbolic")
        return (1,) + tuple(int(d) for d in dims[1:])

    def inferred(self, name: str, who: str) -> Shape | None:
        """ONNX's inferred shape of ``name`` (batch -> 1), or None where it is incomplete."""
        v = self.value_info.get(name)
        if v is None or not v.type.tensor_type.HasField("shape"):
            return None
        dims = self._dims(v)
        if dims and isinstance(dims[0], int) and dims[0] != self.batch_dim:
            raise UnsupportedOpError(f"{self.where}: {who}: tensor {name!r} has shape {dims}, "
                                     f"which does not keep the batch axis ({self.batch_dim}) "
                                     "first; ops that mix samples are not supported")
        if not dims or dims[0] != self.batch_dim or any(
                not isinstance(d, int) or d < 1 for d in dims[1:]):
            return None
        return (1,) + tuple(int(d) for d in dims[1:])

    def tensor(self, node: onnx.NodeProto, name: str) -> str:
        name = self.alias.get(name, name)
        if name in self.shapes:
            return name
        if name in self.consts:
            raise self.unsupported(node, f"constant operand {name!r} (only activation tensors "
                                   "are supported here)")
        raise GraphError(f"{self.where}: node {self.label(node)!r} reads {name!r}, which no "
                         "supported node produced")

    def const(self, node: onnx.NodeProto, index: int, what: str, required: bool = True
              ) -> np.ndarray | None:
        if index >= len(node.input) or node.input[index] == "":
            if required:
                raise GraphError(f"{self.where}: node {self.label(node)!r} ({node.op_type}): "
                                 f"missing {what}")
            return None
        name = node.input[index]
        if name not in self.consts:
            raise self.unsupported(node, f"{what} {name!r} is computed, not a constant "
                                   "initializer")
        return self.consts[name]

    def label(self, node: onnx.NodeProto) -> str:
        return node.name or f"{node.op_type}_{list(self.graph.node).index(node)}"

    def unsupported(self, node: onnx.NodeProto, why: str = "") -> UnsupportedOpError:
        reason = f": {why}" if why else ""
        return UnsupportedOpError(
            f"{self.where}: node {self.label(node)!r} (op {node.op_type}) is not "
            f"supported{reason}. Supported ONNX ops: {', '.join(SUPPORTED_OPS)}")

    def emit(self, node: onnx.NodeProto, op: OpType, inputs: list[str], attrs: Any,
             weights: Mapping[str, np.ndarray] | None = None, output: str | None = None) -> None:
        """Append an IR node; its output shape follows the IR's rule and is checked against
        ONNX's inferred shape where that is complete."""
        output = output or node.output[0]
        name = self.label(node)
        base, k = name, 1
        while name in self.node_names:
            name, k = f"{base}_{k}", k + 1
        who = f"node {name!r} ({node.op_type})"
        weights = weights or {}
        in_shapes = tuple(self.shapes[i] for i in inputs)
        try:
            out_shape = infer_output_shape(op, attrs, in_shapes, weights, who)
            ir_node = Node(name, op, tuple(inputs), output, attrs, in_shapes, out_shape, weights)
        except GraphError as err:
            raise GraphError(f"{self.where}: {err}") from err
        onnx_shape = self.inferred(output, who)
        if onnx_shape is not None and onnx_shape != out_shape and self.trust_onnx_shapes:
            if getattr(attrs, "ceil_mode", False):
                # ONNX shape inference before opset 22 keeps a last window that starts in the
                # end padding; ONNX Runtime and torch drop it (checked with onnxruntime 1.32),
                # as the IR does. Shapes inferred downstream of it are not comparable.
                self.trust_onnx_shapes = False
            else:
                raise GraphError(f"{self.where}: {who}: output shape {out_shape} differs from "
                                 f"ONNX shape inference {onnx_shape}")
        self.node_names.add(name)
        self.nodes.append(ir_node)
        self.shapes[output] = out_shape

    # -- main loop -------------------------------------------------------------------------
    def run(self) -> None:
        for node in self.graph.node:
            if node.domain not in ("", "ai.onnx"):
                raise self.unsupported(node, f"custom domain {node.domain!r}")
            handler = getattr(self, f"op_{node.op_type}", None)
            live = [i for i in node.input if i and i not in self.consts]
            if node.op_type == "Constant":
                self.op_Constant(node)
            elif not live and node.op_type in _SHAPE_OPS and self._fold_constant(node):
                continue
            elif node.op_type == "Shape" or (live and all(
                    self.alias.get(i, i) in self.shape_values for i in live)):
                self.shape_values[node.output[0]] = self.eval_shape_value(node)
            elif handler is None:
                raise self.unsupported(node)
            else:
                handler(node, _attrs(node))

    def _fold_constant(self, node: onnx.NodeProto) -> bool:
        """A shape-arithmetic node on constants only (exporters without constant folding)."""
        value = self.eval_shape_value(node)
        if value is None:
            return False
        self.consts[node.output[0]] = value
        return True

    def eval_shape_value(self, node: onnx.NodeProto) -> np.ndarray | None:
        """Value of a shape-arithmetic node, the batch axis sized _BATCH_SENTINEL."""
        op, a = node.op_type, _attrs(node)
        if op == "Shape":
            src = self.alias.get(node.input[0], node.input[0])
            if src not in self.shapes:
                return None
            dims = np.array((self.batch_value,) + self.shapes[src][1:], dtype=np.int64)
            return dims[a.get("start", 0):a.get("end", len(dims))]
        vals = []
        for name in node.input:
            v = self.consts.get(name) if name in self.consts else self.shape_values.get(
                self.alias.get(name, name))
            if name and v is None:
                return None
            vals.append(None if not name else np.asarray(v))
        try:
            return _SHAPE_OPS[op](vals, a) if op in _SHAPE_OPS else None
        except (ValueError, IndexError, TypeError, KeyError):
            return None

    def outputs(self) -> tuple[str, ...]:
        outs = []
        for v in self.graph.output:
            name = self.alias.get(v.name, v.name)
            if name not in self.shapes:
                raise GraphError(f"{self.where}: graph output {v.name!r} is not a float "
                                 "tensor computed by supported ops")
            outs.append(name)
        return tuple(outs)

    # -- ops -------------------------------------------------------------------------------
    def op_Constant(self, node: onnx.NodeProto) -> None:
        a = node.attribute[0]
        if a.name == "value":
            self.consts[node.output[0]] = numpy_helper.to_array(a.t)
        elif a.name in ("value_float", "value_floats", "value_int", "value_ints"):
            self.consts[node.output[0]] = np.array(onnx.helper.get_attribute_value(a))
        else:
            raise self.unsupported(node, f"Constant with attribute {a.name!r}")

    def op_Identity(self, node: onnx.NodeProto, a: dict[str, Any]) -> None:
        if node.input[0] in self.consts:
            self.consts[node.output[0]] = self.consts[node.input[0]]
        else:
            self.alias[node.output[0]] = self.tensor(node, node.input[0])

    def op_Dropout(self, node: onnx.NodeProto, a: dict[str, Any]) -> None:
        training = self.const(node, 2, "training_mode", required=False)
        if training is not None and bool(training):
            raise self.unsupported(node, "training_mode=True")
        if len(node.output) > 1 and node.output[1] and self.consumers.get(node.output[1]):
            raise self.unsupported(node, "the dropout mask output is used")
        self.alias[node.output[0]] = self.tensor(node, node.input[0])

    def _pads(self, node: onnx.NodeProto, a: dict[str, Any], x: Shape, kernel: tuple[int, int],
              stride: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int, int, int]:
        auto = _s(a.get("auto_pad", "NOTSET"))
        if auto == "NOTSET":
            pads = tuple(a.get("pads", (0, 0, 0, 0)))
            if len(pads) != 4:
                raise self.unsupported(node, f"pads {pads} (only 2-D)")
            return pads  # type: ignore[return-value]
        if auto == "VALID":
            return (0, 0, 0, 0)
        if auto not in ("SAME_UPPER", "SAME_LOWER"):
            raise self.unsupported(node, f"auto_pad={auto}")
        pads = []
        for size, k, s, d in zip(x[2:], kernel, stride, dilation, strict=True):
            total = max(0, (math.ceil(size / s) - 1) * s + d * (k - 1) + 1 - size)
            small, big = total // 2, total - total // 2
            pads.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return (pads[0][0], pads[1][0], pads[0][1], pads[1][1])

    def op_Conv(self, node: onnx.NodeProto, a: dict[str, Any]) -> None:
        x = self.tensor(node, node.input[0])
        w = self.const(node, 1, "weight W")
        if w.ndim != 4:
            raise self.unsupported(node, f"{w.ndim - 2}-D convolution (only 2-D)")
        b = self.const(node, 2, "bias B", required=False)
        groups = int(a.get("group", 1))
        kernel = tuple(a.get("kernel_shape", w.shape[2:]))
        stride = tuple(a.get("strides", (1, 1)))
        dilation = tuple(a.get("dilations", (1, 1)))
        pads = self._pads(node, a, self.shapes[x], kernel, stride, dilation)
        attrs = Conv2dAttrs(w.shape[1] * groups, w.shape[0], kernel, stride, pads, dilation,
                            groups)
        self.emit(node, OpType.CONV2D, [x], attrs,
                  {"weight": w.astype(np.float32),
                   "bias": np.zeros(w.shape[0], np.float32) if b is None else b})

    def op_Gemm(self, node: onnx.NodeProto, a: dict[str, Any]) -> None:
        if a.get("transA", 0):
            raise self.unsupported(node, "transA=1")
        x = self.tensor(node, node.input[0])
        bmat = self.const(node, 1, "B").astype(np.float64)
        weight = bmat if a.get("transB", 0) else bmat.T       # (out, in)
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        c = self.const(node, 2, "C", required=False)
        bias = np.zeros(weight.shape[0]) if c is None else c.astype(np.float64)
        try:
            bias = np.broadcast_to(bias, (1, weight.shape[0])).reshape(-1)
        except ValueError:
            raise self.unsupported(node, f"C of shape {bias.shape} (only per-output bias)") \
                from None
        self.emit(node, OpType.LINEAR, [x], LinearAttrs(weight.shape[1], weight.shape[0]),
                  {"weight": (alpha * weight).astype(np.float32),
                   "bias": (beta * bias).astype(np.float32)})

    def op_MatMul(self, node: onnx.NodeProto, a: dict[str, Any]) -> None:
        if node.input[0] in self.consts:
            raise self.unsupported(node, "constant left operand")
        x = self.tensor(node, node.input[0])
        w = self.const(node, 1, "right operand")
        if w.ndim != 2:
            raise self.unsupported(node, f"right operand of rank {w.ndim} (only 2-D)")
        self.emit(node, OpType.LINEAR, [x], LinearAttrs(w.shape[0], w.shape[1]),
                  {"weight": w.T.astype(np.float32),
                   "bias": np.zeros(w.shape[1], np.float32)})

    def op_BatchNormalization(self, node: onnx.NodeProto, a: dict[str, Any]) -> None:
        if a.get("training_mode", 0) or any(o for o in node.output[1:]):
            raise self.unsupported(node, "training mode (running statistics outputs)")
        x = self.tensor(node, node.input[0])
        gamma, beta, mean, var = (self.const(node, i, n) for i, n in
                                  enumerate(("scale", "B", "mean", "var"), start=1))
        self.emit(node, OpType.BATCHNORM, [x],
                  BatchNormAttrs(gamma.shape[0], float(a.get("epsilon", 1e-5))),
                  {"gamma": gamma, "beta": beta, "mean": mean, "var": var})

    def _unary(self, node: onnx.NodeProto, a: dict[str, Any]) -> None:
        self.emit(node, _UNARY[node.op_type], [self.tensor(node, node.input[0])], NoAttrs())

    op_Relu = op_Sigmoid = op_HardSwish = _unary  # noqa: N815

    def op_Clip(self, node: onnx.NodeProto, a: dict[str, Any]) -> None:
        x = self.tensor(node, node.input[0])
        if self.opset < 11:
            lo, hi = a.get("min", -np.inf), a.get("max", np.inf)
        else:
            lo_c = self.const(node, 1, "min", required=False)
            hi_c = self.const(node, 2, "max", required=False)
            lo = -np.inf if lo_c is None else float(lo_c)
            hi = np.inf if hi_c is None else float(hi_c)
        self.emit(node, OpType.CLIP, [x], ClipAttrs(lo, hi))

    def op_HardSigmoid(self, node: onnx.NodeProto, a: dict[str, Any]) -> None:
        self.emit(node, OpType.HARDSIGMOID, [self.tensor(node, node.input[0])],
                  HardSigmoidAttrs(float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))))

    def _pool_common(self, node: onnx.NodeProto, a: dict[str, Any]
                     ) -> tuple[str, tuple[int, int], tuple[int, int], tuple[int, int, int, int],
                                tuple[int, int], bool]:
        x = self.tensor(node, node.input[0])
        kernel = tuple(a["kernel_shape"])
        if len(kernel) != 2:
            raise self.unsupported(node, f"kernel_shape {kernel} (only 2-D)")
        stride = tuple(a.get("strides", (1, 1)))
        dilation = tuple(a.get("dilations", (1, 1)))
        pads = self._pads(node, a, self.shapes[x], kernel, stride, dilation)
        return x, kernel, stride, pads, dilation, bool(a.get("ceil_mode", 0))

    def op_MaxPool(self, node: onnx.NodeProto, a: dict[str, Any]) -> None:
        if len(node.output) > 1 and node.output[1]:
            raise self.unsupported(node, "the Indices output is used")
        x, kernel, stride, pads, dilation, ceil = self._pool_common(node, a)
        self.emit(node, OpType.MAXPOOL, [x], MaxPoolAttrs(kernel, stride, pads, dilation, ceil))

    def op_AveragePool(self, node: onnx.NodeProto, a: dict[str, Any]) -> None:
        x, kernel, stride, pads, dilation, ceil = self._pool_common(node, a)
        if dilation != (1, 1):
            raise self.unsupported(node, f"dilations {dilation}")
        self.emit(node, OpType.AVGPOOL, [x],
                  AvgPoolAttrs(kernel, stride, pads, ceil, bool(a.get("count_include_pad", 0))))

    def op_GlobalAveragePool(self, node: onnx.NodeProto, a: dict[str, Any]) -> None:
        self.emit(node, OpType.GLOBAL_AVGPOOL, [self.tensor(node, node.input[0])],
                  GlobalAvgPoolAttrs(keepdims=True))

    def op_ReduceMean(self, node: onnx.NodeProto, a: dict[str, Any]) -> None:
        x = self.tensor(node, node.input[0])
        axes = a.get("axes")
        if axes is None:
            c = self.const(node, 1, "axes", required=False)
            axes = None if c is None else c.tolist()
        rank = len(self.shapes[x])
        if rank != 4 or axes is None or {int(v) % 4 for v in axes} != {2, 3}:
            raise self.unsupported(node, f"mean over axes {axes} of a rank-{rank} tensor "
                                   "(only axes (2, 3) of a 4-D tensor)")
        self.emit(node, OpType.GLOBAL_AVGPOOL, [x],
                  GlobalAvgPoolAttrs(keepdims=bool(a.get("keepdims", 1))))

    def op_Add(self, node: onnx.NodeProto, a: dict[str, Any]) -> None:
        if self._fold_bias(node):
            return
        self.emit(node, OpType.ADD, [self.tensor(node, i) for i in node.input], NoAttrs())

    def op_Mul(self, node: onnx.NodeProto, a: dict[str, Any]) -> None:
        self.emit(node, OpType.MUL, [self.tensor(node, i) for i in node.input], NoAttrs())

    def _fold_bias(self, node: onnx.NodeProto) -> bool:
        """MatMul + Add(constant) (torch's export of Linear on >2-D input) -> linear bias."""
        consts = [i for i in node.input if i in self.consts]
        if len(consts) != 1:
            return False
        live = next(i for i in node.input if i not in self.consts)
        other = self.alias.get(live, live)
        prev = self.nodes[-1] if self.nodes else None
        if (prev is None or prev.output != other or prev.op is not OpType.LINEAR
                or len(self.consumers.get(other, [])) != 1 or np.any(prev.weights["bias"])):
            raise self.unsupported(node, "Add with a constant operand is supported only as "
                                   "the bias of a directly preceding MatMul")
        c = self.consts[consts[0]]
        out = prev.attrs.out_features
        if c.size != out or c.shape[-1] != out:
            raise self.unsupported(node, f"constant of shape {c.shape} is not a per-output "
                                   f"bias of size {out}")
        self.nodes.pop()
        self.node_names.discard(prev.name)
        self.nodes.append(Node(prev.name, prev.op, prev.inputs, node.output[0], prev.attrs,
                               prev.input_shapes, prev.output_shape,
                               {"weight": prev.weights["weight"],
                                "bias": c.reshape(-1).astype(np.float32)}))
        self.node_names.add(prev.name)
        del self.shapes[other]
        self.shapes[node.output[0]] = self.nodes[-1].output_shape
        return True

    def op_Concat(self, node: onnx.NodeProto, a: dict[str, Any]) -> None:
        xs = [self.tensor(node, i) for i in node.input]
        axis = int(a["axis"]) % len(self.shapes[xs[0]])
        if axis == 0:
            raise self.unsupported(node, "concatenation along the batch axis")
        if len(xs) == 1:
            self.alias[node.output[0]] = xs[0]
            return
        self.emit(node, OpType.CONCAT, xs, ConcatAttrs(axis))

    def op_Flatten(self, node: onnx.NodeProto, a: dict[str, Any]) -> None:
        x = self.tensor(node, node.input[0])
        axis = int(a.get("axis", 1)) % len(self.shapes[x])
        if axis != 1:
            raise self.unsupported(node, f"axis={a.get('axis')} (only axis 1 keeps samples "
                                   "apart)")
        self.emit(node, OpType.RESHAPE, [x],
                  ReshapeAttrs((math.prod(self.shapes[x][1:]),)))

    def op_Reshape(self, node: onnx.NodeProto, a: dict[str, Any]) -> None:
        src = self.alias.get(node.input[0], node.input[0])
        if src in self.shuffle_swapped:
            self._finish_channel_shuffle(node, src, a)
            return
        x = self.tensor(node, node.input[0])
        target = self._reshape_target(node, self.shapes[x], a)
        if not self._start_channel_shuffle(node, x, target):
            self.emit(node, OpType.RESHAPE, [x], ReshapeAttrs(target))

    def _reshape_target(self, node: onnx.NodeProto, in_shape: Shape, a: dict[str, Any]
                        ) -> tuple[int, ...]:
        """Per-sample target of a Reshape of ``in_shape``, checked to keep samples apart."""
        src = node.input[1]
        if src in self.consts:
            spec_arr = self.consts[src]
        else:
            spec_arr = self.shape_values.get(self.alias.get(src, src))
            if spec_arr is None:
                raise self.unsupported(node, f"target shape {src!r} is computed by ops hwsim "
                                       "cannot evaluate (export with constant folding)")
        spec = [int(v) for v in np.asarray(spec_arr).reshape(-1)]
        allowzero = bool(a.get("allowzero", 0))
        if not spec:
            raise self.unsupported(node, "reshape to a scalar")
        rest = [in_shape[i + 1] if v == 0 and not allowzero and i + 1 < len(in_shape) else v
                for i, v in enumerate(spec[1:])]
        per_sample = math.prod(in_shape[1:])
        if spec.count(-1) > 1 or any(v < -1 or (v == 0 and allowzero) for v in spec):
            raise self.unsupported(node, f"target shape {spec}")
        if -1 in rest:
            known = math.prod(v for v in rest if v != -1)
            rest = [per_sample // known if v == -1 else v for v in rest]
        keeps_batch = spec[0] == self.batch_value or (spec[0] == 0 and not allowzero) or (
            spec[0] == -1)
        if not keeps_batch or math.prod(rest) != per_sample or not rest:
            raise self.unsupported(node, f"target shape {spec} of input {in_shape} does not "
                                   "keep the batch axis first and samples apart")
        return tuple(rest)

    # A channel shuffle is Reshape (N,C,H,W)->(N,g,C/g,H,W), Transpose [0,2,1,3,4], Reshape
    # back to (N,C,H,W). The first Reshape is held back until the last one proves the pattern
    # (its target may be computed by shape ops that come after the Transpose).
    def _start_channel_shuffle(self, node: onnx.NodeProto, x: str,
                               target: tuple[int, ...]) -> bool:
        in_shape = self.shapes[x]
        mid = (1,) + target
        if (len(in_shape) != 4 or len(mid) != 5 or mid[1] * mid[2] != in_shape[1]
                or mid[3:] != in_shape[2:]):
            return False
        users = self.consumers.get(node.output[0], [])
        if len(users) != 1 or users[0].op_type != "Transpose":
            return False
        if list(_attrs(users[0]).get("perm", ())) != [0, 2, 1, 3, 4]:
            return False
        self.shuffle_split[node.output[0]] = (node, x, mid[1])
        return True

    def op_Transpose(self, node: onnx.NodeProto, a: dict[str, Any]) -> None:
        src = self.alias.get(node.input[0], node.input[0])
        users = self.consumers.get(node.output[0], [])
        if (src not in self.shuffle_split or list(a.get("perm", ())) != [0, 2, 1, 3, 4]
                or len(users) != 1 or users[0].op_type != "Reshape"):
            raise self.unsupported(node, "Transpose is supported only inside a channel "
                                   "shuffle (Reshape -> Transpose [0,2,1,3,4] -> Reshape)")
        self.shuffle_swapped[node.output[0]] = self.shuffle_split.pop(src)

    def _finish_channel_shuffle(self, node: onnx.NodeProto, src: str, a: dict[str, Any]
                                ) -> None:
        first, x, groups = self.shuffle_swapped.pop(src)
        in_shape = self.shapes[x]
        swapped = (1, in_shape[1] // groups, groups) + in_shape[2:]
        if (1,) + self._reshape_target(node, swapped, a) != in_shape:
            raise self.unsupported(node, "Transpose is supported only inside a channel "
                                   "shuffle (Reshape -> Transpose [0,2,1,3,4] -> Reshape "
                                   "back to the input shape)")
        self.emit(first, OpType.CHANNEL_SHUFFLE, [x], ChannelShuffleAttrs(groups),
                  output=node.output[0])


def graph_from_onnx(path_or_model: str | os.PathLike[str] | onnx.ModelProto, *,
                    fold_bn: bool = True) -> Graph:
    """Import an ONNX model (file path or ``onnx.ModelProto``) as a :class:`Graph`."""
    model, where = _load(path_or_model)
    try:
        onnx.checker.check_model(model)
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True,
                                                  data_prop=True)
    except Exception as err:  # onnx raises ValidationError / InferenceError / others
        raise GraphError(f"{where}: invalid ONNX model: {type(err).__name__}: {err}") from err
    imp = _Importer(model, where)
    imp.run()
    name = model.graph.name or os.path.splitext(os.path.basename(where))[0]
    try:
        graph = Graph(tuple(imp.nodes), imp.inputs, imp.outputs(), name)
    except GraphError as err:
        raise GraphError(f"{where}: {err}") from err
    return fold_batchnorm(graph) if fold_bn else graph
