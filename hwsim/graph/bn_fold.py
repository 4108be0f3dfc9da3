"""Fold inference BatchNorm into the preceding conv2d / linear node.

With s = gamma / sqrt(var + eps) per output channel c:
``w'[c] = w[c] * s[c]`` and ``b'[c] = (b[c] - mean[c]) * s[c] + beta[c]``,
computed in float64 from the float32 parameters and rounded once to float32 (RNE, numpy's
cast). A batchnorm is folded only when its input is the output of a conv2d (4-D) or a linear
with a 2-D output (channel axis 1 is then the output-feature axis) that nothing else reads and
that is not a graph output; any other batchnorm stays a node (see :mod:`hwsim.graph.ir`).
"""

from __future__ import annotations

import numpy as np

from hwsim.graph.ir import Graph, Node, OpType


def _foldable(graph: Graph, bn: Node) -> Node | None:
    prev = graph.producer(bn.inputs[0])
    if prev is None or prev.op not in (OpType.CONV2D, OpType.LINEAR):
        return None
    if prev.op is OpType.LINEAR and len(prev.output_shape) != 2:
        return None
    if len(graph.consumers(prev.output)) != 1 or prev.output in graph.outputs:
        return None
    return prev


def fold_bn_params(weight: np.ndarray, bias: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                   mean: np.ndarray, var: np.ndarray, eps: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Folded (weight, bias) in float32; the output-channel axis of ``weight`` is axis 0."""
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + float(eps))
    w64 = weight.astype(np.float64) * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    b64 = (bias.astype(np.float64) - mean.astype(np.float64)) * scale + beta.astype(np.float64)
    return w64.astype(np.float32), b64.astype(np.float32)


def fold_batchnorm(graph: Graph) -> Graph:
    """A new graph with every foldable batchnorm merged into its producer.

    The merged node keeps the conv/linear node's name and takes the batchnorm's output tensor
    name, so consumers and graph outputs are unchanged.
    """
    folded: dict[str, Node] = {}  # producer name -> merged node
    dropped: set[str] = set()     # batchnorm names merged away
    for node in graph:
        if node.op is not OpType.BATCHNORM:
            continue
        prev = _foldable(graph, node)
        if prev is None:
            continue
        w, b = fold_bn_params(prev.weights["weight"], prev.weights["bias"],
                              node.weights["gamma"], node.weights["beta"],
                              node.weights["mean"], node.weights["var"], node.attrs.eps)
        folded[prev.name] = Node(prev.name, prev.op, prev.inputs, node.output, prev.attrs,
                                 prev.input_shapes, prev.output_shape,
                                 {"weight": w, "bias": b})
        dropped.add(node.name)
    if not folded:
        return graph
    nodes = tuple(folded.get(n.name, n) for n in graph if n.name not in dropped)
    return Graph(nodes, graph.inputs, graph.outputs, graph.name)
