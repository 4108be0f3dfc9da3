"""Import a ``torch.nn.Module`` into the graph IR with the public torch.fx API.

``torch.fx.symbolic_trace`` gives the op list; ``torch.fx.passes.shape_prop.ShapeProp`` runs
the example input through it to record every tensor's shape. Tensor and node names are the fx
node names. The model must be in eval mode (BatchNorm running statistics, no dropout) and
float32. Shapes are recorded with the batch axis set to 1 (see :mod:`hwsim.graph.ir`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

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
)

_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d)

SUPPORTED_MODULES = ("Conv2d", "Linear", "BatchNorm1d", "BatchNorm2d", "ReLU", "ReLU6",
                     "Hardtanh", "Hardswish", "Hardsigmoid", "Sigmoid", "MaxPool2d", "AvgPool2d",
                     "AdaptiveAvgPool2d", "Flatten", "ChannelShuffle", "Identity", "Dropout*")
SUPPORTED_CALLS = ("relu", "relu6", "hardtanh", "clamp/clip", "hardswish", "hardsigmoid",
                   "sigmoid", "add", "mul", "cat", "flatten", "view", "reshape", "contiguous",
                   "mean over (2, 3)", "adaptive_avg_pool2d", "avg_pool2d", "max_pool2d",
                   "channel_shuffle", "dropout", "transpose/permute (channel shuffle only)")


def _unsupported(node: torch.fx.Node, what: str, why: str = "") -> UnsupportedOpError:
    reason = f": {why}" if why else ""
    return UnsupportedOpError(
        f"node {node.name!r} ({what}) is not supported{reason}. Supported modules: "
        f"{', '.join(SUPPORTED_MODULES)}; functions/methods: {', '.join(SUPPORTED_CALLS)}")


def _arg(node: torch.fx.Node, index: int, name: str, default: Any = None) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    t = tuple(int(x) for x in v)
    return (t[0], t[0]) if len(t) == 1 else (t[0], t[1])


def _pad4(v: Any) -> tuple[int, int, int, int]:
    ph, pw = _pair(v)
    return (ph, pw, ph, pw)


def _np(t: torch.Tensor | None, what: str, node: torch.fx.Node) -> np.ndarray:
    if t is None:
        raise GraphError(f"node {node.name!r}: {what} is missing")
    if t.dtype != torch.float32:
        raise GraphError(f"node {node.name!r}: {what} has dtype {t.dtype}; hwsim imports "
                         "float32 models (call model.float())")
    return t.detach().cpu().numpy().astype(np.float32, copy=True)


class _Importer:
    def __init__(self, gm: torch.fx.GraphModule, batch: int) -> None:
        self.gm = gm
        self.batch = batch
        self.modules = dict(gm.named_modules())
        self.env: dict[torch.fx.Node, str] = {}   # fx node -> IR tensor name
        self.shapes: dict[str, Shape] = {}
        self.nodes: list[Node] = []
        self.inputs: dict[str, Shape] = {}
        self.outputs: tuple[str, ...] = ()
        self.done: set[torch.fx.Node] = set()       # consumed by a matched pattern

    # -- helpers ---------------------------------------------------------------------------
    def shape_of(self, node: torch.fx.Node) -> Shape:
        meta = node.meta.get("tensor_meta")
        if not isinstance(meta, TensorMetadata):
            raise GraphError(f"node {node.name!r}: no single-tensor shape recorded")
        s = tuple(int(d) for d in meta.shape)
        if not s or s[0] != self.batch:
            raise UnsupportedOpError(
                f"node {node.name!r} ({node.op} {_target_name(node)}): output shape {s} does "
                f"not keep the batch axis (size {self.batch}) first; ops that mix samples "
                "are not supported")
        if meta.dtype != torch.float32:
            raise UnsupportedOpError(f"node {node.name!r} ({_target_name(node)}): produces "
                                     f"{meta.dtype}; only float32 tensors are supported")
        return (1,) + s[1:]

    def tensor(self, node: torch.fx.Node, arg: Any) -> str:
        if isinstance(arg, torch.fx.Node) and arg in self.env:
            return self.env[arg]
        what = f"constant {arg!r}" if not isinstance(arg, torch.fx.Node) else (
            f"{arg.op} {arg.target}")
        raise _unsupported(node, _target_name(node),
                           f"operand {what} is not an activation tensor (only tensor operands "
                           "computed from the model input are supported)")

    def emit(self, node: torch.fx.Node, op: OpType, inputs: list[str], attrs: Any,
             weights: dict[str, np.ndarray] | None = None, *, name: str | None = None,
             out_node: torch.fx.Node | None = None) -> None:
        out_node = out_node or node
        name = name or out_node.name
        out_shape = self.shape_of(out_node)
        self.nodes.append(Node(name, op, tuple(inputs), name, attrs,
                               tuple(self.shapes[i] for i in inputs), out_shape,
                               weights or {}))
        self.shapes[name] = out_shape
        self.env[out_node] = name

    def alias(self, node: torch.fx.Node, src: Any) -> None:
        self.env[node] = self.tensor(node, src)

    # -- main loop -------------------------------------------------------------------------
    def run(self) -> None:
        for node in self.gm.graph.nodes:
            if node in self.done:
                continue
            if node.op == "placeholder":
                shape = self.shape_of(node)
                self.inputs[node.name] = shape
                self.shapes[node.name] = shape
                self.env[node] = node.name
            elif node.op == "output":
                self.outputs = self.output_names(node)
            elif node.op == "get_attr":
                continue  # a parameter read; an op using it as an operand is rejected
            elif "tensor_meta" not in node.meta:
                continue  # a Python value (x.size(), shape arithmetic): only feeds reshapes
            elif not isinstance(node.meta["tensor_meta"], TensorMetadata):
                raise _unsupported(node, _target_name(node), "it produces several tensors")
            elif node.op == "call_module":
                self.call_module(node)
            elif node.op == "call_function":
                self.call_function(node, node.target)
            elif node.op == "call_method":
                self.call_method(node)
            else:
                raise _unsupported(node, f"fx op {node.op}")

    def output_names(self, node: torch.fx.Node) -> tuple[str, ...]:
        out = node.args[0]
        items = out if isinstance(out, (tuple, list)) else (out,)
        return tuple(self.tensor(node, a) for a in items)

    # -- modules ---------------------------------------------------------------------------
    def call_module(self, node: torch.fx.Node) -> None:
        mod = self.modules[node.target]
        x = node.args[0] if node.args else None
        kind = f"call_module {type(mod).__name__} {node.target!r}"
        if isinstance(mod, _DROPOUT) or type(mod) is nn.Identity:
            self.alias(node, x)
        elif type(mod) is nn.Conv2d:
            self.conv2d(node, mod)
        elif type(mod) is nn.Linear:
            w = _np(mod.weight, "weight", node)
            b = (_np(mod.bias, "bias", node) if mod.bias is not None
                 else np.zeros(mod.out_features, np.float32))
            self.emit(node, OpType.LINEAR, [self.tensor(node, x)],
                      LinearAttrs(mod.in_features, mod.out_features), {"weight": w, "bias": b})
        elif type(mod) in _BATCHNORM:
            self.batchnorm(node, mod)
        elif type(mod) is nn.ReLU:
            self.emit(node, OpType.RELU, [self.tensor(node, x)], NoAttrs())
        elif type(mod) in (nn.ReLU6, nn.Hardtanh):
            self.emit(node, OpType.CLIP, [self.tensor(node, x)],
                      ClipAttrs(mod.min_val, mod.max_val))
        elif type(mod) is nn.Hardswish:
            self.emit(node, OpType.HARDSWISH, [self.tensor(node, x)], NoAttrs())
        elif type(mod) is nn.Hardsigmoid:
            self.emit(node, OpType.HARDSIGMOID, [self.tensor(node, x)],
                      HardSigmoidAttrs(1.0 / 6.0, 0.5))
        elif type(mod) is nn.Sigmoid:
            self.emit(node, OpType.SIGMOID, [self.tensor(node, x)], NoAttrs())
        elif type(mod) is nn.MaxPool2d:
            if mod.return_indices:
                raise _unsupported(node, kind, "return_indices=True")
            self.maxpool(node, x, mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                         mod.ceil_mode)
        elif type(mod) is nn.AvgPool2d:
            if mod.divisor_override is not None:
                raise _unsupported(node, kind, "divisor_override is set")
            self.avgpool(node, x, mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode,
                         mod.count_include_pad)
        elif type(mod) is nn.AdaptiveAvgPool2d:
            self.adaptive_avgpool(node, x, mod.output_size, kind)
        elif type(mod) is nn.Flatten:
            self.flatten(node, x, mod.start_dim, kind)
        elif type(mod) is nn.ChannelShuffle:
            self.emit(node, OpType.CHANNEL_SHUFFLE, [self.tensor(node, x)],
                      ChannelShuffleAttrs(mod.groups))
        else:
            raise _unsupported(node, kind)

    def conv2d(self, node: torch.fx.Node, mod: nn.Conv2d) -> None:
        if mod.padding_mode != "zeros":
            raise _unsupported(node, "Conv2d", f"padding_mode={mod.padding_mode!r} (only "
                               "'zeros')")
        kernel = _pair(mod.kernel_size)
        dilation = _pair(mod.dilation)
        if mod.padding == "valid":
            pad = (0, 0, 0, 0)
        elif mod.padding == "same":
            # torch pads total = d*(k-1): total//2 before, the rest after (nn.Conv2d, 'same')
            th, tw = (dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1))
            pad = (th // 2, tw // 2, th - th // 2, tw - tw // 2)
        else:
            pad = _pad4(mod.padding)
        w = _np(mod.weight, "weight", node)
        b = (_np(mod.bias, "bias", node) if mod.bias is not None
             else np.zeros(mod.out_channels, np.float32))
        attrs = Conv2dAttrs(mod.in_channels, mod.out_channels, kernel, _pair(mod.stride), pad,
                            dilation, mod.groups)
        self.emit(node, OpType.CONV2D, [self.tensor(node, node.args[0])], attrs,
                  {"weight": w, "bias": b})

    def batchnorm(self, node: torch.fx.Node, mod: nn.modules.batchnorm._BatchNorm) -> None:
        if mod.running_mean is None or mod.running_var is None:
            raise _unsupported(node, type(mod).__name__, "track_running_stats=False (no "
                               "running statistics to fold)")
        n = mod.num_features
        gamma = _np(mod.weight, "weight", node) if mod.affine else np.ones(n, np.float32)
        beta = _np(mod.bias, "bias", node) if mod.affine else np.zeros(n, np.float32)
        weights = {"gamma": gamma, "beta": beta, "mean": _np(mod.running_mean, "mean", node),
                   "var": _np(mod.running_var, "var", node)}
        self.emit(node, OpType.BATCHNORM, [self.tensor(node, node.args[0])],
                  BatchNormAttrs(n, float(mod.eps)), weights)

    def maxpool(self, node: torch.fx.Node, x: Any, kernel: Any, stride: Any, padding: Any,
                dilation: Any, ceil_mode: bool) -> None:
        k = _pair(kernel)
        s = k if stride is None or stride == [] or stride == () else _pair(stride)
        self.emit(node, OpType.MAXPOOL, [self.tensor(node, x)],
                  MaxPoolAttrs(k, s, _pad4(padding), _pair(dilation), bool(ceil_mode)))

    def avgpool(self, node: torch.fx.Node, x: Any, kernel: Any, stride: Any, padding: Any,
                ceil_mode: bool, count_include_pad: bool) -> None:
        k = _pair(kernel)
        s = k if stride is None or stride == [] or stride == () else _pair(stride)
        self.emit(node, OpType.AVGPOOL, [self.tensor(node, x)],
                  AvgPoolAttrs(k, s, _pad4(padding), bool(ceil_mode), bool(count_include_pad)))

    def adaptive_avgpool(self, node: torch.fx.Node, x: Any, output_size: Any,
                         kind: str) -> None:
        src = self.tensor(node, x)
        in_shape = self.shapes[src]
        if output_size is None or len(in_shape) != 4:
            raise _unsupported(node, kind, f"input {in_shape}, output_size {output_size!r}")
        osize = _pair(output_size) if not isinstance(output_size, (tuple, list)) else tuple(
            in_shape[2 + i] if v is None else int(v) for i, v in enumerate(output_size))
        if osize == (1, 1):
            self.emit(node, OpType.GLOBAL_AVGPOOL, [src], GlobalAvgPoolAttrs(keepdims=True))
            return
        h, w = in_shape[2:]
        if h % osize[0] or w % osize[1]:
            raise _unsupported(node, kind, f"output size {osize} does not divide the input "
                               f"{(h, w)} (only uniform windows are supported)")
        k = (h // osize[0], w // osize[1])
        self.emit(node, OpType.AVGPOOL, [src], AvgPoolAttrs(k, k))

    def flatten(self, node: torch.fx.Node, x: Any, start_dim: int, kind: str) -> None:
        src = self.tensor(node, x)
        rank = len(self.shapes[src])
        if start_dim % rank == 0:
            raise _unsupported(node, kind, "flattening the batch axis (start_dim=0)")
        self.reshape(node, src)

    def reshape(self, node: torch.fx.Node, src: str) -> None:
        shuffle = self.match_channel_shuffle(node, src)
        if shuffle is not None:
            end, groups = shuffle
            self.emit(node, OpType.CHANNEL_SHUFFLE, [src], ChannelShuffleAttrs(groups),
                      out_node=end)
            return
        out = self.shape_of(node)
        self.emit(node, OpType.RESHAPE, [src], ReshapeAttrs(out[1:]))

    def match_channel_shuffle(self, node: torch.fx.Node,
                              src: str) -> tuple[torch.fx.Node, int] | None:
        """reshape (N,C,H,W)->(N,g,C/g,H,W), swap axes 1 and 2, reshape back -> shuffle."""
        x = self.shapes[src]
        y = self.shape_of(node)
        if len(x) != 4 or len(y) != 5 or y[1] * y[2] != x[1] or y[3:] != x[2:]:
            return None
        chain = [node]
        cur = node
        for _ in range(3):
            users = list(cur.users)
            if len(users) != 1:
                return None
            cur = users[0]
            chain.append(cur)
            if _is_swap12(cur):
                continue
            if cur.op == "call_method" and cur.target == "contiguous":
                continue
            break
        if not any(_is_swap12(n) for n in chain) or not _is_reshape_like(cur):
            return None
        meta = cur.meta.get("tensor_meta")
        if not isinstance(meta, TensorMetadata) or (1,) + tuple(meta.shape)[1:] != x:
            return None
        self.done.update(chain[1:])
        return cur, y[1]

    # -- functions and methods -------------------------------------------------------------
    def call_method(self, node: torch.fx.Node) -> None:
        name = node.target
        x = node.args[0]
        if name in ("view", "reshape"):
            self.reshape(node, self.tensor(node, x))
        elif name == "flatten":
            self.flatten(node, x, _arg(node, 1, "start_dim", 0), f"method {name}")
        elif name == "contiguous":
            self.alias(node, x)
        else:
            fn = _METHOD_AS_FUNCTION.get(name)
            if fn is None:
                raise _unsupported(node, f"method {name}")
            self.call_function(node, fn)

    def call_function(self, node: torch.fx.Node, fn: Callable[..., Any]) -> None:
        kind = _target_name(node)
        x = node.args[0] if node.args else node.kwargs.get("input")
        if fn in (torch.relu, F.relu):
            self.emit(node, OpType.RELU, [self.tensor(node, x)], NoAttrs())
        elif fn is F.relu6:
            self.emit(node, OpType.CLIP, [self.tensor(node, x)], ClipAttrs(0.0, 6.0))
        elif fn is F.hardtanh:
            self.emit(node, OpType.CLIP, [self.tensor(node, x)],
                      ClipAttrs(_arg(node, 1, "min_val", -1.0), _arg(node, 2, "max_val", 1.0)))
        elif fn in (torch.clamp, torch.clip):
            lo, hi = _arg(node, 1, "min"), _arg(node, 2, "max")
            if not all(v is None or isinstance(v, (int, float)) for v in (lo, hi)):
                raise _unsupported(node, kind, "clamp bounds must be numbers")
            self.emit(node, OpType.CLIP, [self.tensor(node, x)],
                      ClipAttrs(-np.inf if lo is None else lo, np.inf if hi is None else hi))
        elif fn is F.hardswish:
            self.emit(node, OpType.HARDSWISH, [self.tensor(node, x)], NoAttrs())
        elif fn is F.hardsigmoid:
            self.emit(node, OpType.HARDSIGMOID, [self.tensor(node, x)],
                      HardSigmoidAttrs(1.0 / 6.0, 0.5))
        elif fn in (torch.sigmoid, F.sigmoid):
            self.emit(node, OpType.SIGMOID, [self.tensor(node, x)], NoAttrs())
        elif fn in (operator.add, operator.iadd, torch.add):
            if _arg(node, 2, "alpha", 1) != 1:
                raise _unsupported(node, kind, "alpha != 1")
            other = _arg(node, 1, "other")
            self.emit(node, OpType.ADD, [self.tensor(node, x), self.tensor(node, other)],
                      NoAttrs())
        elif fn in (operator.mul, operator.imul, torch.mul):
            other = _arg(node, 1, "other")
            self.emit(node, OpType.MUL, [self.tensor(node, x), self.tensor(node, other)],
                      NoAttrs())
        elif fn in (torch.cat, torch.concat, torch.concatenate):
            self.concat(node, x, _arg(node, 1, "dim", 0))
        elif fn is torch.flatten:
            self.flatten(node, x, _arg(node, 1, "start_dim", 0), kind)
        elif fn is torch.reshape:
            self.reshape(node, self.tensor(node, x))
        elif fn is torch.mean:
            self.mean(node, x, kind)
        elif fn is F.adaptive_avg_pool2d:
            self.adaptive_avgpool(node, x, _arg(node, 1, "output_size"), kind)
        elif fn is F.avg_pool2d:
            if _arg(node, 6, "divisor_override") is not None:
                raise _unsupported(node, kind, "divisor_override is set")
            self.avgpool(node, x, _arg(node, 1, "kernel_size"), _arg(node, 2, "stride"),
                         _arg(node, 3, "padding", 0), _arg(node, 4, "ceil_mode", False),
                         _arg(node, 5, "count_include_pad", True))
        elif fn is F.max_pool2d:
            if _arg(node, 6, "return_indices", False):
                raise _unsupported(node, kind, "return_indices=True")
            self.maxpool(node, x, _arg(node, 1, "kernel_size"), _arg(node, 2, "stride"),
                         _arg(node, 3, "padding", 0), _arg(node, 4, "dilation", 1),
                         _arg(node, 5, "ceil_mode", False))
        elif fn in (F.channel_shuffle, torch.channel_shuffle):
            self.emit(node, OpType.CHANNEL_SHUFFLE, [self.tensor(node, x)],
                      ChannelShuffleAttrs(int(_arg(node, 1, "groups"))))
        elif fn is F.dropout:
            if _arg(node, 2, "training", True):
                raise _unsupported(node, kind, "dropout in training mode (call model.eval())")
            self.alias(node, x)
        else:
            raise _unsupported(node, kind)

    def concat(self, node: torch.fx.Node, items: Any, dim: int) -> None:
        names = [self.tensor(node, t) for t in items]
        if len(names) == 1:
            self.env[node] = names[0]
            return
        rank = len(self.shapes[names[0]])
        axis = dim % rank
        if axis == 0:
            raise _unsupported(node, _target_name(node), "concatenation along the batch axis")
        self.emit(node, OpType.CONCAT, names, ConcatAttrs(axis))

    def mean(self, node: torch.fx.Node, x: Any, kind: str) -> None:
        src = self.tensor(node, x)
        shape = self.shapes[src]
        dim = _arg(node, 1, "dim")
        keepdim = bool(_arg(node, 2, "keepdim", False))
        dims = {dim} if isinstance(dim, int) else set(dim or ())
        if len(shape) != 4 or {d % 4 for d in dims} != {2, 3}:
            raise _unsupported(node, kind, f"mean over dims {dim} of {shape}; only the "
                               "spatial mean over (2, 3) of a 4-D tensor (global average pool)")
        self.emit(node, OpType.GLOBAL_AVGPOOL, [src], GlobalAvgPoolAttrs(keepdims=keepdim))


_METHOD_AS_FUNCTION: dict[str, Callable[..., Any]] = {
    "relu": torch.relu, "relu_": torch.relu, "sigmoid": torch.sigmoid, "clamp": torch.clamp,
    "clip": torch.clamp, "add": torch.add, "add_": torch.add, "mul": torch.mul,
    "mul_": torch.mul, "mean": torch.mean,
}


def _target_name(node: torch.fx.Node) -> str:
    t = node.target
    if node.op == "call_function":
        mod = getattr(t, "__module__", None) or ""
        return f"call_function {mod + '.' if mod else ''}{getattr(t, '__name__', str(t))}"
    return f"{node.op} {t}"


def _is_swap12(node: torch.fx.Node) -> bool:
    if node.op == "call_function" and node.target is torch.transpose or (
            node.op == "call_method" and node.target == "transpose"):
        dims = {a % 5 for a in node.args[1:3] if isinstance(a, int)}
        return dims == {1, 2}
    if (node.op == "call_function" and node.target is torch.permute) or (
            node.op == "call_method" and node.target == "permute"):
        perm = node.args[1] if len(node.args) == 2 else node.args[1:]
        return isinstance(perm, (tuple, list)) and [int(p) % 5 for p in perm] == [0, 2, 1, 3, 4]
    return False


def _is_reshape_like(node: torch.fx.Node) -> bool:
    return ((node.op == "call_method" and node.target in ("view", "reshape", "flatten"))
            or (node.op == "call_function" and node.target in (torch.reshape, torch.flatten)))


def _check_eval_mode(module: nn.Module) -> None:
    for qual, sub in module.named_modules():
        if sub.training and isinstance(sub, (*_BATCHNORM, *_DROPOUT)):
            raise GraphError(f"module {qual or type(module).__name__!r} "
                             f"({type(sub).__name__}) is in training mode; call model.eval() "
                             "before importing (inference statistics are needed)")


def graph_from_torch(module: nn.Module, example_input: torch.Tensor | tuple[torch.Tensor, ...],
                     *, fold_bn: bool = True) -> Graph:
    """Trace ``module`` with torch.fx and return its :class:`Graph`.

    ``example_input``: one float32 tensor (or a tuple, one per forward argument), batch axis
    first; its values are only used to propagate shapes. BatchNorm is folded unless
    ``fold_bn`` is False.
    """
    if not isinstance(module, nn.Module):
        raise GraphError(f"expected a torch.nn.Module, got {type(module).__name__}")
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    if not inputs or not all(isinstance(t, torch.Tensor) and t.ndim >= 1 for t in inputs):
        raise GraphError("example_input must be a tensor (or a tuple of tensors) with a batch "
                         "axis")
    batch = int(inputs[0].shape[0])
    if any(int(t.shape[0]) != batch for t in inputs):
        raise GraphError("example inputs disagree on the batch size: "
                         f"{[tuple(t.shape) for t in inputs]}")
    _check_eval_mode(module)
    name = type(module).__name__
    try:
        gm = torch.fx.symbolic_trace(module)
    except Exception as err:  # fx raises many types (TraceError, TypeError, ...)
        raise GraphError(f"torch.fx cannot trace {name}: {type(err).__name__}: {err}") from err
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(*inputs)
    except Exception as err:
        raise GraphError(f"running {name} on example input of shape(s) "
                         f"{[tuple(t.shape) for t in inputs]} failed: {err}") from err
    imp = _Importer(gm, batch)
    imp.run()
    graph = Graph(tuple(imp.nodes), imp.inputs, imp.outputs, name)
    return fold_batchnorm(graph) if fold_bn else graph
