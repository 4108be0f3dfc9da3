"""Graph IR shared by emulation and latency: typed op records with shapes and weights.

Layout and conventions (every consumer may rely on these; constructors validate them):

- A :class:`Graph` is a tuple of :class:`Node` in topological order, named graph inputs with
  shapes, and the names of the graph outputs. Tensors are identified by name (``str``); each
  node produces exactly one tensor, ``node.output``.
- Activations are **NCHW** (4-D, conv/pool ops) or ``(N, ..., F)`` (linear acts on the last
  axis). Axis 0 is always the batch axis and is recorded as **1** in every shape; no op mixes
  samples (importers reject a reshape or concat touching axis 0), so a graph runs unchanged on
  any batch size.
- Weights are float32 numpy arrays, read-only:
  ``conv2d``: ``weight`` (O, I/groups, kH, kW) (OIHW), ``bias`` (O,) (zeros if the model had
  none); ``linear``: ``weight`` (out, in), ``bias`` (out,), y = x @ weight.T + bias (ONNX Gemm
  alpha/beta/transB and MatMul with a constant right operand are folded into this form);
  ``batchnorm``: ``gamma``, ``beta``, ``mean``, ``var`` (C,), attribute ``eps``.
- ``batchnorm`` is folded into a preceding conv2d/linear by :func:`hwsim.graph.bn_fold.
  fold_batchnorm` (the importers do it by default). A batchnorm with no foldable predecessor
  stays a node and means ``y = (x - mean) / sqrt(var + eps) * gamma + beta`` over axis 1.
- Activations are separate nodes (``relu``, ``clip``, ``hardswish``, ``hardsigmoid``,
  ``sigmoid``); ReLU6 is ``clip(0, 6)``. Whether a backend fuses them is decided later, by the
  emulator or the latency layer.
- Padding is 4-sided, ``(top, left, bottom, right)``, zeros for conv/avgpool and -inf for
  maxpool. ``ceil_mode`` follows torch: the output size is ``ceil`` of the usual formula,
  minus one if the last window would start in the bottom/right padding; the recorded
  ``output_shape`` is authoritative.
- ``avgpool.count_include_pad``: True divides every window by ``kH*kW``; False divides by the
  number of window elements inside the unpadded input (ONNX's default is False, torch's True).
- ``add`` / ``mul`` take two tensors with numpy broadcasting (``mul`` with an (N, C, 1, 1)
  operand is the squeeze-excitation scale). ``concat`` joins along ``axis`` >= 1.
- ``reshape.shape`` is the per-sample target shape (without the batch axis, no -1); flatten
  is a reshape. ``channel_shuffle``: (N, C, H, W) -> view (N, g, C/g, H, W) -> swap axes 1, 2
  -> (N, C, H, W), as ``torch.nn.ChannelShuffle``.
- Identity and dropout are removed by the importers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from types import MappingProxyType
from typing import Any

import numpy as np

from hwsim.errors import GraphError

Shape = tuple[int, ...]


class OpType(str, Enum):
    """The closed set of ops in the IR."""

    CONV2D = "conv2d"
    LINEAR = "linear"
    BATCHNORM = "batchnorm"
    RELU = "relu"
    CLIP = "clip"
    HARDSWISH = "hardswish"
    HARDSIGMOID = "hardsigmoid"
    SIGMOID = "sigmoid"
    MAXPOOL = "maxpool"
    AVGPOOL = "avgpool"
    GLOBAL_AVGPOOL = "global_avgpool"
    ADD = "add"
    MUL = "mul"
    CONCAT = "concat"
    RESHAPE = "reshape"
    CHANNEL_SHUFFLE = "channel_shuffle"


def _pair(value: Any, what: str) -> tuple[int, int]:
    t = tuple(int(v) for v in value)
    if len(t) != 2:
        raise GraphError(f"{what} must have 2 entries (H, W), got {value!r}")
    return t  # type: ignore[return-value]


def _quad(value: Any, what: str) -> tuple[int, int, int, int]:
    t = tuple(int(v) for v in value)
    if len(t) != 4 or min(t) < 0:
        raise GraphError(f"{what} must be 4 non-negative ints (top, left, bottom, right), "
                         f"got {value!r}")
    return t  # type: ignore[return-value]


def _positive(values: tuple[int, ...], what: str) -> None:
    if min(values) < 1:
        raise GraphError(f"{what} must be >= 1, got {values}")


@dataclass(frozen=True)
class NoAttrs:
    """Attributes of ops that have none (relu, hardswish, sigmoid, add, mul)."""


@dataclass(frozen=True)
class Conv2dAttrs:
    """2-D convolution; ``groups == in_channels`` (> 1) is a depthwise convolution."""

    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel", _pair(self.kernel, "conv2d kernel"))
        object.__setattr__(self, "stride", _pair(self.stride, "conv2d stride"))
        object.__setattr__(self, "dilation", _pair(self.dilation, "conv2d dilation"))
        object.__setattr__(self, "padding", _quad(self.padding, "conv2d padding"))
        _positive(self.kernel + self.stride + self.dilation, "conv2d kernel/stride/dilation")
        _positive((self.in_channels, self.out_channels, self.groups), "conv2d channels/groups")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise GraphError(f"conv2d groups={self.groups} must divide in_channels="
                             f"{self.in_channels} and out_channels={self.out_channels}")

    @property
    def is_depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_channels


@dataclass(frozen=True)
class LinearAttrs:
    """Fully connected layer on the last axis: y = x @ weight.T + bias."""

    in_features: int
    out_features: int

    def __post_init__(self) -> None:
        _positive((self.in_features, self.out_features), "linear features")


@dataclass(frozen=True)
class BatchNormAttrs:
    """Inference batch normalization over axis 1 (only when it cannot be folded)."""

    num_features: int
    eps: float

    def __post_init__(self) -> None:
        if not (self.eps >= 0.0 and math.isfinite(self.eps)):
            raise GraphError(f"batchnorm eps must be finite and >= 0, got {self.eps}")


@dataclass(frozen=True)
class ClipAttrs:
    """y = min(max(x, min), max); ReLU6 is clip(0, 6). A bound may be -inf / +inf."""

    min: float
    max: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "min", float(self.min))
        object.__setattr__(self, "max", float(self.max))
        if math.isnan(self.min) or math.isnan(self.max) or self.min > self.max:
            raise GraphError(f"clip needs min <= max, got min={self.min}, max={self.max}")

    @property
    def is_relu6(self) -> bool:
        return self.min == 0.0 and self.max == 6.0


@dataclass(frozen=True)
class HardSigmoidAttrs:
    """y = max(0, min(1, alpha * x + beta)); torch's Hardsigmoid is alpha=1/6, beta=0.5."""

    alpha: float
    beta: float


@dataclass(frozen=True)
class MaxPoolAttrs:
    """2-D max pooling; padding reads as -inf."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    ceil_mode: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel", _pair(self.kernel, "maxpool kernel"))
        object.__setattr__(self, "stride", _pair(self.stride, "maxpool stride"))
        object.__setattr__(self, "dilation", _pair(self.dilation, "maxpool dilation"))
        object.__setattr__(self, "padding", _quad(self.padding, "maxpool padding"))
        _positive(self.kernel + self.stride + self.dilation, "maxpool kernel/stride/dilation")


@dataclass(frozen=True)
class AvgPoolAttrs:
    """2-D average pooling; see the module docstring for ``count_include_pad``."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    ceil_mode: bool = False
    count_include_pad: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel", _pair(self.kernel, "avgpool kernel"))
        object.__setattr__(self, "stride", _pair(self.stride, "avgpool stride"))
        object.__setattr__(self, "padding", _quad(self.padding, "avgpool padding"))
        _positive(self.kernel + self.stride, "avgpool kernel/stride")


@dataclass(frozen=True)
class GlobalAvgPoolAttrs:
    """Mean over H and W; output (N, C, 1, 1) when ``keepdims`` else (N, C)."""

    keepdims: bool = True


@dataclass(frozen=True)
class ConcatAttrs:
    """Concatenation along ``axis`` (non-negative, >= 1: never the batch axis)."""

    axis: int

    def __post_init__(self) -> None:
        if self.axis < 1:
            raise GraphError(f"concat axis must be >= 1 (axis 0 is the batch), got {self.axis}")


@dataclass(frozen=True)
class ReshapeAttrs:
    """Per-sample target shape (batch axis excluded, every entry resolved, no -1)."""

    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(v) for v in self.shape))
        if not self.shape or min(self.shape) < 1:
            raise GraphError(f"reshape target must be positive ints, got {self.shape}")


@dataclass(frozen=True)
class ChannelShuffleAttrs:
    """Channel shuffle with ``groups`` groups (see the module docstring)."""

    groups: int

    def __post_init__(self) -> None:
        _positive((self.groups,), "channel_shuffle groups")


Attrs = (NoAttrs | Conv2dAttrs | LinearAttrs | BatchNormAttrs | ClipAttrs | HardSigmoidAttrs
         | MaxPoolAttrs | AvgPoolAttrs | GlobalAvgPoolAttrs | ConcatAttrs | ReshapeAttrs
         | ChannelShuffleAttrs)

# op -> (attrs class, weight names, number of inputs; None = two or more)
OP_SCHEMA: Mapping[OpType, tuple[type, tuple[str, ...], int | None]] = MappingProxyType({
    OpType.CONV2D: (Conv2dAttrs, ("weight", "bias"), 1),
    OpType.LINEAR: (LinearAttrs, ("weight", "bias"), 1),
    OpType.BATCHNORM: (BatchNormAttrs, ("gamma", "beta", "mean", "var"), 1),
    OpType.RELU: (NoAttrs, (), 1),
    OpType.CLIP: (ClipAttrs, (), 1),
    OpType.HARDSWISH: (NoAttrs, (), 1),
    OpType.HARDSIGMOID: (HardSigmoidAttrs, (), 1),
    OpType.SIGMOID: (NoAttrs, (), 1),
    OpType.MAXPOOL: (MaxPoolAttrs, (), 1),
    OpType.AVGPOOL: (AvgPoolAttrs, (), 1),
    OpType.GLOBAL_AVGPOOL: (GlobalAvgPoolAttrs, (), 1),
    OpType.ADD: (NoAttrs, (), 2),
    OpType.MUL: (NoAttrs, (), 2),
    OpType.CONCAT: (ConcatAttrs, (), None),
    OpType.RESHAPE: (ReshapeAttrs, (), 1),
    OpType.CHANNEL_SHUFFLE: (ChannelShuffleAttrs, (), 1),
})

ELEMENTWISE_UNARY = frozenset({OpType.RELU, OpType.CLIP, OpType.HARDSWISH, OpType.HARDSIGMOID,
                               OpType.SIGMOID, OpType.BATCHNORM, OpType.CHANNEL_SHUFFLE})


def pool_output_size(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int,
                     dilation: int = 1, ceil_mode: bool = False) -> int:
    """Output length of a conv/pool window along one axis (torch's rule, incl. ceil_mode)."""
    span = size + pad_begin + pad_end - dilation * (kernel - 1) - 1
    if span < 0:
        return 0
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + pad_begin:  # last window would start in the end padding
        out -= 1
    return out


def _readonly_weights(weights: Mapping[str, Any], node: str) -> Mapping[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key, value in weights.items():
        arr = np.array(value, dtype=np.float32, copy=True, order="C")
        if not np.all(np.isfinite(arr)):
            raise GraphError(f"node {node!r}: weight {key!r} has non-finite values")
        arr.setflags(write=False)
        out[key] = arr
    return MappingProxyType(out)


def infer_output_shape(op: OpType, attrs: Attrs, input_shapes: tuple[Shape, ...],
                       weights: Mapping[str, np.ndarray], where: str = "node") -> Shape:
    """Output shape of ``op`` on ``input_shapes``; GraphError (prefixed ``where``) if the
    inputs, attributes and weights do not fit together."""
    attrs_cls, weight_names, _ = OP_SCHEMA[op]
    if not isinstance(attrs, attrs_cls) or not set(weight_names) <= set(weights):
        raise GraphError(f"{where}: {op.value} needs {attrs_cls.__name__} and weights "
                         f"{list(weight_names)}")
    if not input_shapes:
        raise GraphError(f"{where}: {op.value} has no inputs")
    a, ins, w = attrs, input_shapes, weights
    x = ins[0]
    if op is OpType.CONV2D:
        if len(x) != 4 or x[1] != a.in_channels:
            raise GraphError(f"{where}: input must be (N, {a.in_channels}, H, W), got {x}")
        wshape = (a.out_channels, a.in_channels // a.groups) + a.kernel
        if w["weight"].shape != wshape or w["bias"].shape != (a.out_channels,):
            raise GraphError(f"{where}: weight {w['weight'].shape} / bias "
                             f"{w['bias'].shape} must be {wshape} / ({a.out_channels},)")
        return (x[0], a.out_channels) + _window_hw(x, a.kernel, a.stride, a.padding,
                                                   a.dilation, False, where)
    if op is OpType.LINEAR:
        if x[-1] != a.in_features or len(x) < 2:
            raise GraphError(f"{where}: input last axis must be {a.in_features}, got {x}")
        if (w["weight"].shape != (a.out_features, a.in_features)
                or w["bias"].shape != (a.out_features,)):
            raise GraphError(f"{where}: weight {w['weight'].shape} / bias "
                             f"{w['bias'].shape} must be ({a.out_features}, "
                             f"{a.in_features}) / ({a.out_features},)")
        return x[:-1] + (a.out_features,)
    if op is OpType.BATCHNORM:
        if len(x) < 2 or x[1] != a.num_features:
            raise GraphError(f"{where}: input axis 1 must be {a.num_features}, got {x}")
        for key in ("gamma", "beta", "mean", "var"):
            if w[key].shape != (a.num_features,):
                raise GraphError(f"{where}: {key} shape {w[key].shape} must be "
                                 f"({a.num_features},)")
        if np.any(w["var"] < 0):
            raise GraphError(f"{where}: var has negative entries")
        return x
    if op is OpType.CHANNEL_SHUFFLE:
        if len(x) != 4 or x[1] % a.groups:
            raise GraphError(f"{where}: groups={a.groups} must divide the channels of a "
                             f"4-D input, got {x}")
        return x
    if op in ELEMENTWISE_UNARY:
        return x
    if op in (OpType.MAXPOOL, OpType.AVGPOOL):
        if len(x) != 4:
            raise GraphError(f"{where}: input must be 4-D NCHW, got {x}")
        dil = a.dilation if op is OpType.MAXPOOL else (1, 1)
        return x[:2] + _window_hw(x, a.kernel, a.stride, a.padding, dil, a.ceil_mode, where)
    if op is OpType.GLOBAL_AVGPOOL:
        if len(x) != 4:
            raise GraphError(f"{where}: input must be 4-D NCHW, got {x}")
        return x[:2] + ((1, 1) if a.keepdims else ())
    if op in (OpType.ADD, OpType.MUL):
        try:
            return tuple(np.broadcast_shapes(*ins))
        except ValueError:
            raise GraphError(f"{where}: input shapes {ins} do not broadcast") from None
    if op is OpType.CONCAT:
        rank = len(x)
        if a.axis >= rank or any(len(s) != rank for s in ins) or any(
                s[:a.axis] + s[a.axis + 1:] != x[:a.axis] + x[a.axis + 1:] for s in ins):
            raise GraphError(f"{where}: inputs {ins} cannot be joined on axis {a.axis}")
        return x[:a.axis] + (sum(s[a.axis] for s in ins),) + x[a.axis + 1:]
    if op is OpType.RESHAPE:
        if math.prod(x[1:]) != math.prod(a.shape):
            raise GraphError(f"{where}: cannot reshape {x} to per-sample {a.shape}")
        return (x[0],) + a.shape
    raise GraphError(f"{where}: no shape rule")  # unreachable: OP_SCHEMA covers OpType


def _window_hw(x: Shape, kernel: tuple[int, int], stride: tuple[int, int],
               padding: tuple[int, int, int, int], dilation: tuple[int, int],
               ceil_mode: bool, where: str) -> tuple[int, int]:
    h = pool_output_size(x[2], kernel[0], stride[0], padding[0], padding[2], dilation[0],
                         ceil_mode)
    w = pool_output_size(x[3], kernel[1], stride[1], padding[1], padding[3], dilation[1],
                         ceil_mode)
    if h < 1 or w < 1:
        raise GraphError(f"{where}: window {kernel} larger than padded input {x}")
    return h, w


@dataclass(frozen=True, eq=False)
class Node:
    """One op: ``output = op(*inputs)`` with attributes, shapes and float32 weights."""

    name: str
    op: OpType
    inputs: tuple[str, ...]
    output: str
    attrs: Attrs
    input_shapes: tuple[Shape, ...]
    output_shape: Shape
    weights: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        try:
            op = OpType(self.op)
        except ValueError:
            raise GraphError(f"node {self.name!r}: unknown op {self.op!r}; known: "
                             f"{', '.join(o.value for o in OpType)}") from None
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "input_shapes",
                           tuple(tuple(int(d) for d in s) for s in self.input_shapes))
        object.__setattr__(self, "output_shape", tuple(int(d) for d in self.output_shape))
        object.__setattr__(self, "weights", _readonly_weights(self.weights, self.name))
        attrs_cls, weight_names, arity = OP_SCHEMA[op]
        where = f"node {self.name!r} ({op.value})"
        if not isinstance(self.attrs, attrs_cls):
            raise GraphError(f"{where}: attrs must be {attrs_cls.__name__}, "
                             f"got {type(self.attrs).__name__}")
        if arity is not None and len(self.inputs) != arity:
            raise GraphError(f"{where}: needs {arity} input(s), got {len(self.inputs)}")
        if arity is None and len(self.inputs) < 2:
            raise GraphError(f"{where}: needs two or more inputs, got {len(self.inputs)}")
        if len(self.input_shapes) != len(self.inputs):
            raise GraphError(f"{where}: {len(self.inputs)} inputs but "
                             f"{len(self.input_shapes)} input shapes")
        if set(self.weights) != set(weight_names):
            raise GraphError(f"{where}: weights must be {sorted(weight_names)}, "
                             f"got {sorted(self.weights)}")
        for s in self.input_shapes + (self.output_shape,):
            if not s or s[0] != 1 or min(s) < 1:
                raise GraphError(f"{where}: shapes must be positive with batch axis 1, "
                                 f"got {s}")
        expected = infer_output_shape(op, self.attrs, self.input_shapes, self.weights, where)
        if expected != self.output_shape:
            raise GraphError(f"{where}: output shape {self.output_shape} does not match "
                             f"{expected} computed from inputs {self.input_shapes}")

    @property
    def params(self) -> int:
        """Number of weight elements (all weight arrays together)."""
        return int(sum(a.size for a in self.weights.values()))

    @property
    def macs(self) -> int | None:
        """Multiply-accumulates per sample of conv2d / linear; None for other ops."""
        if self.op is OpType.CONV2D:
            kh, kw = self.attrs.kernel
            return (math.prod(self.output_shape) * (self.attrs.in_channels // self.attrs.groups)
                    * kh * kw)
        if self.op is OpType.LINEAR:
            return math.prod(self.output_shape) * self.attrs.in_features
        return None

    def describe_attrs(self) -> str:
        """Attributes as ``key=value`` text (for tables and messages)."""
        return " ".join(f"{f.name}={getattr(self.attrs, f.name)}" for f in fields(self.attrs))


@dataclass(frozen=True, eq=False)
class Graph:
    """Nodes in topological order, graph inputs (name -> shape) and output tensor names."""

    nodes: tuple[Node, ...]
    inputs: Mapping[str, Shape]
    outputs: tuple[str, ...]
    name: str = "graph"
    _by_name: dict[str, Node] = field(init=False, repr=False)
    _producer: dict[str, Node] = field(init=False, repr=False)
    _consumers: dict[str, tuple[Node, ...]] = field(init=False, repr=False)
    _shapes: dict[str, Shape] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        nodes = tuple(self.nodes)
        inputs = {str(k): tuple(int(d) for d in v) for k, v in dict(self.inputs).items()}
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "inputs", MappingProxyType(inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        if not inputs:
            raise GraphError(f"graph {self.name!r} has no inputs")
        if not self.outputs:
            raise GraphError(f"graph {self.name!r} has no outputs")
        shapes: dict[str, Shape] = {}
        for tname, s in inputs.items():
            if not s or s[0] != 1 or min(s) < 1:
                raise GraphError(f"graph input {tname!r}: shape must be positive with batch "
                                 f"axis 1, got {s}")
            shapes[tname] = s
        by_name: dict[str, Node] = {}
        producer: dict[str, Node] = {}
        consumers: dict[str, list[Node]] = {}
        for node in nodes:
            if not isinstance(node, Node):
                raise GraphError(f"graph {self.name!r}: nodes must be Node, got {type(node)}")
            if node.name in by_name:
                raise GraphError(f"graph {self.name!r}: duplicate node name {node.name!r}")
            for tname, s in zip(node.inputs, node.input_shapes, strict=True):
                if tname not in shapes:
                    raise GraphError(f"node {node.name!r} reads tensor {tname!r} before any "
                                     "node produces it (nodes must be in topological order)")
                if shapes[tname] != s:
                    raise GraphError(f"node {node.name!r}: input {tname!r} recorded as {s} "
                                     f"but produced as {shapes[tname]}")
                consumers.setdefault(tname, []).append(node)
            if node.output in shapes:
                raise GraphError(f"node {node.name!r}: tensor {node.output!r} is produced twice")
            shapes[node.output] = node.output_shape
            by_name[node.name] = node
            producer[node.output] = node
        for out in self.outputs:
            if out not in shapes:
                raise GraphError(f"graph output {out!r} is not produced by any node or input")
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(self, "_producer", producer)
        object.__setattr__(self, "_consumers", {k: tuple(v) for k, v in consumers.items()})
        object.__setattr__(self, "_shapes", shapes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def node(self, name: str) -> Node:
        """The node called ``name`` (GraphError if none)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise GraphError(f"graph {self.name!r} has no node {name!r}") from None

    def producer(self, tensor: str) -> Node | None:
        """The node producing ``tensor``; None for a graph input."""
        self.shape(tensor)
        return self._producer.get(tensor)

    def consumers(self, tensor: str) -> tuple[Node, ...]:
        """Nodes reading ``tensor``, in graph order."""
        self.shape(tensor)
        return self._consumers.get(tensor, ())

    def shape(self, tensor: str) -> Shape:
        """Shape of a tensor (batch axis recorded as 1)."""
        try:
            return self._shapes[tensor]
        except KeyError:
            raise GraphError(f"graph {self.name!r} has no tensor {tensor!r}") from None

    @property
    def tensors(self) -> tuple[str, ...]:
        """All tensor names: graph inputs first, then node outputs in order."""
        return tuple(self._shapes)

    def summary(self) -> list[dict[str, Any]]:
        """One row per node: name, op, inputs, output shape, attrs text, params, macs."""
        return [{"name": n.name, "op": n.op.value, "inputs": ", ".join(n.inputs),
                 "output_shape": "x".join(str(d) for d in n.output_shape),
                 "attrs": n.describe_attrs(), "params": n.params, "macs": n.macs}
                for n in self.nodes]
