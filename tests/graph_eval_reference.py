"""Float64 numpy evaluation of a hwsim Graph, written from the IR docstring only.

Test oracle for the importers: plain loops over kernel positions, no hwsim kernels. It is not
the project's float runner (that lives in the emulation layer).
"""

from __future__ import annotations

import numpy as np

from hwsim.graph.ir import Graph, Node, OpType


def _pad(x: np.ndarray, pad: tuple[int, int, int, int], value: float) -> np.ndarray:
    top, left, bottom, right = pad
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def _windows(x: np.ndarray, kernel, stride, dilation, out_hw):
    """Yield (i, j, patch) with patch (N, C, kH, kW) for each output position."""
    kh, kw = kernel
    for i in range(out_hw[0]):
        for j in range(out_hw[1]):
            r0, c0 = i * stride[0], j * stride[1]
            rows = r0 + dilation[0] * np.arange(kh)
            cols = c0 + dilation[1] * np.arange(kw)
            yield i, j, rows, cols


def conv2d(x: np.ndarray, node: Node) -> np.ndarray:
    a = node.attrs
    w = node.weights["weight"].astype(np.float64)
    b = node.weights["bias"].astype(np.float64)
    n = x.shape[0]
    ho, wo = node.output_shape[2:]
    xp = _pad(x, a.padding, 0.0)
    cin_g, cout_g = a.in_channels // a.groups, a.out_channels // a.groups
    out = np.zeros((n, a.out_channels, ho, wo))
    for i, j, rows, cols in _windows(xp, a.kernel, a.stride, a.dilation, (ho, wo)):
        patch = xp[:, :, rows][:, :, :, cols]  # (N, Cin, kH, kW)
        for g in range(a.groups):
            pg = patch[:, g * cin_g:(g + 1) * cin_g].reshape(n, -1)
            wg = w[g * cout_g:(g + 1) * cout_g].reshape(cout_g, -1)
            out[:, g * cout_g:(g + 1) * cout_g, i, j] = pg @ wg.T
    return out + b.reshape(1, -1, 1, 1)


def _pool_padded(x: np.ndarray, node: Node, value: float) -> tuple[np.ndarray, np.ndarray]:
    """Input padded (plus extra end padding for ceil_mode) and a mask of real elements."""
    a = node.attrs
    ho, wo = node.output_shape[2:]
    dil = getattr(a, "dilation", (1, 1))
    top, left, bottom, right = a.padding
    need_h = (ho - 1) * a.stride[0] + dil[0] * (a.kernel[0] - 1) + 1
    need_w = (wo - 1) * a.stride[1] + dil[1] * (a.kernel[1] - 1) + 1
    extra_b = max(0, need_h - (x.shape[2] + top + bottom))
    extra_r = max(0, need_w - (x.shape[3] + left + right))
    xp = _pad(x, (top, left, bottom + extra_b, right + extra_r), value)
    real = _pad(np.ones((1, 1) + x.shape[2:]), (top, left, bottom + extra_b, right + extra_r),
                0.0)
    # positions in declared padding (not the ceil_mode extension) count for count_include_pad
    declared = _pad(np.ones((1, 1, x.shape[2] + top + bottom, x.shape[3] + left + right)),
                    (0, 0, extra_b, extra_r), 0.0)
    return xp, np.stack([real, declared])


def pool(x: np.ndarray, node: Node) -> np.ndarray:
    a = node.attrs
    ho, wo = node.output_shape[2:]
    is_max = node.op is OpType.MAXPOOL
    xp, masks = _pool_padded(x, node, -np.inf if is_max else 0.0)
    dil = getattr(a, "dilation", (1, 1))
    out = np.zeros(x.shape[:2] + (ho, wo))
    for i, j, rows, cols in _windows(xp, a.kernel, a.stride, dil, (ho, wo)):
        patch = xp[:, :, rows][:, :, :, cols]
        if is_max:
            out[:, :, i, j] = patch.max(axis=(2, 3))
        else:
            which = 1 if a.count_include_pad else 0
            count = masks[which][0, 0][rows][:, cols].sum()
            out[:, :, i, j] = patch.sum(axis=(2, 3)) / count
    return out


def run_node(node: Node, xs: list[np.ndarray]) -> np.ndarray:
    x = xs[0]
    a = node.attrs
    op = node.op
    if op is OpType.CONV2D:
        return conv2d(x, node)
    if op is OpType.LINEAR:
        return x @ node.weights["weight"].astype(np.float64).T + node.weights["bias"]
    if op is OpType.BATCHNORM:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        w = {k: v.astype(np.float64).reshape(shape) for k, v in node.weights.items()}
        return (x - w["mean"]) / np.sqrt(w["var"] + a.eps) * w["gamma"] + w["beta"]
    if op is OpType.RELU:
        return np.maximum(x, 0.0)
    if op is OpType.CLIP:
        return np.minimum(np.maximum(x, a.min), a.max)
    if op is OpType.HARDSWISH:
        return x * np.minimum(np.maximum(x + 3.0, 0.0), 6.0) / 6.0
    if op is OpType.HARDSIGMOID:
        return np.minimum(np.maximum(a.alpha * x + a.beta, 0.0), 1.0)
    if op is OpType.SIGMOID:
        return 1.0 / (1.0 + np.exp(-x))
    if op in (OpType.MAXPOOL, OpType.AVGPOOL):
        return pool(x, node)
    if op is OpType.GLOBAL_AVGPOOL:
        return x.mean(axis=(2, 3), keepdims=a.keepdims)
    if op is OpType.ADD:
        return xs[0] + xs[1]
    if op is OpType.MUL:
        return xs[0] * xs[1]
    if op is OpType.CONCAT:
        return np.concatenate(xs, axis=a.axis)
    if op is OpType.RESHAPE:
        return x.reshape((x.shape[0],) + a.shape)
    if op is OpType.CHANNEL_SHUFFLE:
        n, c, h, w = x.shape
        g = a.groups
        return x.reshape(n, g, c // g, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)
    raise AssertionError(f"reference has no rule for {op}")


def evaluate(graph: Graph, *inputs: np.ndarray) -> dict[str, np.ndarray]:
    """All tensors of the graph in float64, keyed by name."""
    env = {name: np.asarray(x, dtype=np.float64) for name, x in
           zip(graph.inputs, inputs, strict=True)}
    for node in graph:
        env[node.output] = run_node(node, [env[i] for i in node.inputs])
        expected = (env[node.inputs[0]].shape[0],) + node.output_shape[1:]
        if env[node.output].shape != expected:
            raise AssertionError(f"{node.name}: reference produced {env[node.output].shape}, "
                                 f"IR says {expected}")
    return env


def outputs(graph: Graph, *inputs: np.ndarray) -> list[np.ndarray]:
    env = evaluate(graph, *inputs)
    return [env[o] for o in graph.outputs]

