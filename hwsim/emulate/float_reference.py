"""Float execution of a graph: the fp32 reference the emulation is compared with, and the
float arithmetic of devices that compute in floating point (``requant: float``).

Every op follows the IR conventions of ``hwsim.graph.ir`` (NCHW, OIHW weights, 4-sided padding,
recorded output shapes authoritative). Convolution and linear layers run through torch in the
requested dtype (float32 or float64); fp16 accumulation is emulated separately
(``hwsim.emulate.fp16_accumulate``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from hwsim.errors import EmulationError
from hwsim.graph.ir import Graph, Node, OpType

# A layer function: (x, weight, bias, node) -> float output; used to swap the accumulation.
LayerFn = Callable[[np.ndarray, np.ndarray, np.ndarray, Node], np.ndarray]


def _tensor(a: np.ndarray, dtype) -> torch.Tensor:
    # torch warns on read-only numpy arrays (IR weights are read-only): hand it a writable copy
    return torch.from_numpy(np.require(a, requirements=["C", "W"])).to(dtype)


def conv2d_float(x: np.ndarray, w: np.ndarray, b: np.ndarray, node: Node,
                 dtype: np.dtype = np.float32) -> np.ndarray:
    """Convolution of ``node`` (stride, 4-sided zero padding, dilation, groups) in ``dtype``."""
    a = node.attrs
    tt = torch.float64 if np.dtype(dtype) == np.float64 else torch.float32
    pt, pl, pb, pr = a.padding
    with torch.no_grad():
        xt = F.pad(_tensor(x, tt), (pl, pr, pt, pb))
        y = F.conv2d(xt, _tensor(w, tt), _tensor(b, tt),
                     stride=a.stride, dilation=a.dilation, groups=a.groups)
    return y.numpy().astype(dtype, copy=False)


def linear_float(x: np.ndarray, w: np.ndarray, b: np.ndarray, node: Node,
                 dtype: np.dtype = np.float32) -> np.ndarray:
    """y = x @ w.T + b on the last axis, in ``dtype``."""
    tt = torch.float64 if np.dtype(dtype) == np.float64 else torch.float32
    with torch.no_grad():
        y = F.linear(_tensor(x, tt), _tensor(w, tt), _tensor(b, tt))
    return y.numpy().astype(dtype, copy=False)


def _windows(x: np.ndarray, node: Node, fill: float):
    """Yield the strided tap views of a pooling window and the valid-tap mask per output."""
    a = node.attrs
    kh, kw = a.kernel
    sh, sw = a.stride
    dh, dw = getattr(a, "dilation", (1, 1))
    pt, pl, _, _ = a.padding
    n, c, h, w = x.shape
    oh, ow = node.output_shape[2], node.output_shape[3]
    # pad enough on every side for the recorded output (ceil_mode windows may pass the pads)
    need_h = (oh - 1) * sh + (kh - 1) * dh + 1
    need_w = (ow - 1) * sw + (kw - 1) * dw + 1
    eb = max(0, need_h - pt - h)
    er = max(0, need_w - pl - w)
    big = np.full((n, c, pt + h + eb, pl + w + er), fill, dtype=x.dtype)
    big[:, :, pt:pt + h, pl:pl + w] = x
    inside = np.zeros(big.shape[2:], dtype=np.int64)
    inside[pt:pt + h, pl:pl + w] = 1
    padded = np.zeros(big.shape[2:], dtype=np.int64)  # inside the declared padding
    pb, pr = a.padding[2], a.padding[3]
    padded[: pt + h + pb, : pl + w + pr] = 1
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh)
            cols = slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)
            yield big[:, :, rows, cols], inside[rows, cols], padded[rows, cols]


def maxpool_float(x: np.ndarray, node: Node) -> np.ndarray:
    out = None
    for tap, _, _ in _windows(x, node, -np.inf):
        out = tap.copy() if out is None else np.maximum(out, tap)
    return out


def avgpool_float(x: np.ndarray, node: Node) -> np.ndarray:
    """Average pooling; sums taps in row-major window order in x's dtype."""
    total = None
    count_in = 0
    count_pad = 0
    for tap, inside, padded in _windows(x, node, 0.0):
        total = tap.copy() if total is None else (total + tap).astype(x.dtype)
        count_in = count_in + inside
        count_pad = count_pad + padded
    div = count_pad if node.attrs.count_include_pad else count_in
    return (total / np.maximum(div, 1).astype(x.dtype)).astype(x.dtype)


def _hardswish(x: np.ndarray) -> np.ndarray:
    return x * np.clip(x + 3.0, 0.0, 6.0).astype(x.dtype) / x.dtype.type(6.0)


def apply_node(node: Node, inputs: list[np.ndarray], dtype: np.dtype = np.float32,
               layer_fn: LayerFn | None = None) -> np.ndarray:
    """The float output of one node (weights from ``node.weights`` unless ``layer_fn`` is given
    for conv/linear, which then receives the weights to use)."""
    op = node.op
    x = inputs[0]
    t = np.dtype(dtype).type
    if op is OpType.CONV2D:
        if layer_fn is not None:
            return layer_fn(x, node.weights["weight"], node.weights["bias"], node)
        return conv2d_float(x, node.weights["weight"], node.weights["bias"], node, dtype)
    if op is OpType.LINEAR:
        if layer_fn is not None:
            return layer_fn(x, node.weights["weight"], node.weights["bias"], node)
        return linear_float(x, node.weights["weight"], node.weights["bias"], node, dtype)
    if op is OpType.BATCHNORM:
        wts = node.weights
        shape = (1, -1) + (1,) * (x.ndim - 2)
        inv = (wts["gamma"].astype(np.float64)
               / np.sqrt(wts["var"].astype(np.float64) + node.attrs.eps))
        scale = inv.astype(dtype).reshape(shape)
        shift = (wts["beta"] - wts["mean"] * inv).astype(dtype).reshape(shape)
        return (x * scale + shift).astype(dtype)
    if op is OpType.RELU:
        return np.maximum(x, t(0))
    if op is OpType.CLIP:
        return np.clip(x, t(node.attrs.min), t(node.attrs.max))
    if op is OpType.HARDSWISH:
        return _hardswish(x)
    if op is OpType.HARDSIGMOID:
        return np.clip(x * t(node.attrs.alpha) + t(node.attrs.beta), t(0), t(1)).astype(dtype)
    if op is OpType.SIGMOID:
        with np.errstate(over="ignore"):
            return (t(1) / (t(1) + np.exp(-x))).astype(dtype)
    if op is OpType.MAXPOOL:
        return maxpool_float(x, node)
    if op is OpType.AVGPOOL:
        return avgpool_float(x, node)
    if op is OpType.GLOBAL_AVGPOOL:
        return x.mean(axis=(2, 3), keepdims=node.attrs.keepdims, dtype=dtype).astype(dtype)
    if op is OpType.ADD:
        return (inputs[0] + inputs[1]).astype(dtype)
    if op is OpType.MUL:
        return (inputs[0] * inputs[1]).astype(dtype)
    if op is OpType.CONCAT:
        return np.concatenate(inputs, axis=node.attrs.axis)
    if op is OpType.RESHAPE:
        return x.reshape((x.shape[0],) + node.attrs.shape)
    if op is OpType.CHANNEL_SHUFFLE:
        n, c, h, w = x.shape
        g = node.attrs.groups
        return x.reshape(n, g, c // g, h, w).swapaxes(1, 2).reshape(n, c, h, w)
    raise EmulationError(f"node {node.name!r}: no float implementation of op {op.value!r}")


def run_float(graph: Graph, inputs: Mapping[str, np.ndarray] | np.ndarray,
              dtype: np.dtype = np.float32) -> dict[str, np.ndarray]:
    """Every tensor of ``graph`` computed in ``dtype`` (keys: tensor names, graph inputs
    included). ``inputs``: one array for a single-input graph, or a name -> array mapping."""
    env = dict(_bind_inputs(graph, inputs, dtype))
    for node in graph.nodes:
        env[node.output] = apply_node(node, [env[i] for i in node.inputs], dtype)
    return env


def _bind_inputs(graph: Graph, inputs: Mapping[str, np.ndarray] | np.ndarray,
                 dtype: np.dtype) -> dict[str, np.ndarray]:
    names = list(graph.inputs)
    if not isinstance(inputs, Mapping):
        if len(names) != 1:
            raise EmulationError(f"graph has inputs {names}: pass a mapping name -> array")
        inputs = {names[0]: inputs}
    out = {}
    for name in names:
        if name not in inputs:
            raise EmulationError(f"missing graph input {name!r}; expected {names}")
        arr = np.asarray(inputs[name])
        want = graph.inputs[name]
        if arr.ndim != len(want) or tuple(arr.shape[1:]) != tuple(want[1:]):
            raise EmulationError(f"graph input {name!r}: expected shape (N, "
                                 f"{', '.join(str(d) for d in want[1:])}), got {arr.shape}")
        out[name] = np.ascontiguousarray(arr, dtype=dtype)
    return out
