"""Graph IR records: validation on construction, lookups, summary rows."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hwsim.errors import GraphError
from hwsim.graph.ir import (
    AvgPoolAttrs,
    ConcatAttrs,
    Conv2dAttrs,
    Graph,
    LinearAttrs,
    NoAttrs,
    Node,
    OpType,
    ReshapeAttrs,
    infer_output_shape,
    pool_output_size,
)


def _conv(name="conv", x="x", out="y", cin=3, cout=8, shape=(1, 3, 8, 8), out_shape=(1, 8, 4, 4),
          **kw):
    attrs = Conv2dAttrs(cin, cout, (3, 3), kw.pop("stride", (2, 2)), (1, 1, 1, 1),
                        groups=kw.pop("groups", 1))
    weights = kw.pop("weights", {"weight": np.ones((cout, cin // attrs.groups, 3, 3)),
                                 "bias": np.zeros(cout)})
    return Node(name, OpType.CONV2D, (x,), out, attrs, (shape,), out_shape, weights)


def _relu(name, x, out, shape):
    return Node(name, OpType.RELU, (x,), out, NoAttrs(), (shape,), shape)


def test_graph_lookups_and_summary():
    conv = _conv()
    relu = _relu("relu", "y", "z", (1, 8, 4, 4))
    add = Node("add", OpType.ADD, ("y", "z"), "s", NoAttrs(), ((1, 8, 4, 4),) * 2, (1, 8, 4, 4))
    g = Graph((conv, relu, add), {"x": (1, 3, 8, 8)}, ("s",))
    assert [n.name for n in g] == ["conv", "relu", "add"]
    assert len(g) == 3
    assert g.node("relu") is relu
    assert g.consumers("y") == (relu, add)
    assert g.producer("x") is None and g.producer("z") is relu
    assert g.shape("s") == (1, 8, 4, 4)
    assert g.tensors == ("x", "y", "z", "s")
    rows = g.summary()
    assert rows[0]["op"] == "conv2d" and rows[0]["output_shape"] == "1x8x4x4"
    assert rows[0]["params"] == 8 * 3 * 9 + 8
    assert rows[0]["macs"] == 8 * 4 * 4 * 3 * 9
    assert rows[1]["macs"] is None
    with pytest.raises(GraphError, match="no node 'nope'"):
        g.node("nope")
    with pytest.raises(GraphError, match="no tensor 'nope'"):
        g.consumers("nope")


def test_weights_are_float32_and_read_only():
    conv = _conv()
    assert conv.weights["weight"].dtype == np.float32
    with pytest.raises(ValueError):
        conv.weights["weight"][0, 0, 0, 0] = 2.0
    with pytest.raises(TypeError):
        conv.weights["extra"] = np.zeros(1)  # type: ignore[index]


def test_depthwise_flag():
    dw = _conv(cin=8, cout=8, groups=8, shape=(1, 8, 8, 8), out_shape=(1, 8, 4, 4))
    assert dw.attrs.is_depthwise
    assert not _conv().attrs.is_depthwise


@pytest.mark.parametrize("bad, match", [
    ({"out_shape": (1, 8, 5, 5)}, "does not match"),
    ({"weights": {"weight": np.ones((8, 3, 1, 1)), "bias": np.zeros(8)}}, "weight"),
    ({"weights": {"weight": np.ones((8, 3, 3, 3))}}, "weights must be"),
    ({"shape": (1, 4, 8, 8)}, r"input must be \(N, 3, H, W\)"),
    ({"shape": (2, 3, 8, 8), "out_shape": (2, 8, 4, 4)}, "batch axis 1"),
    ({"weights": {"weight": np.full((8, 3, 3, 3), np.nan), "bias": np.zeros(8)}}, "non-finite"),
])
def test_node_rejects_inconsistent_records(bad, match):
    with pytest.raises(GraphError, match=match):
        _conv(**bad)


def test_node_rejects_wrong_attrs_type_and_arity():
    with pytest.raises(GraphError, match="attrs must be NoAttrs"):
        Node("r", OpType.RELU, ("x",), "y", LinearAttrs(1, 1), ((1, 4),), (1, 4))
    with pytest.raises(GraphError, match="needs 2 input"):
        Node("a", OpType.ADD, ("x",), "y", NoAttrs(), ((1, 4),), (1, 4))
    with pytest.raises(GraphError, match="unknown op 'gelu'"):
        Node("g", "gelu", ("x",), "y", NoAttrs(), ((1, 4),), (1, 4))
    with pytest.raises(GraphError, match="axis 0 is the batch"):
        ConcatAttrs(0)
    with pytest.raises(GraphError, match="groups=3 must divide"):
        Conv2dAttrs(4, 8, (3, 3), groups=3)


def test_graph_rejects_use_before_definition_and_double_production():
    relu = _relu("relu", "y", "z", (1, 8, 4, 4))
    with pytest.raises(GraphError, match="before any node produces it"):
        Graph((relu, _conv()), {"x": (1, 3, 8, 8)}, ("z",))
    with pytest.raises(GraphError, match="produced twice"):
        Graph((_conv(), _conv(name="conv2")), {"x": (1, 3, 8, 8)}, ("y",))
    with pytest.raises(GraphError, match="graph output 'w'"):
        Graph((_conv(),), {"x": (1, 3, 8, 8)}, ("w",))
    with pytest.raises(GraphError, match="recorded as"):
        Graph((_conv(shape=(1, 3, 8, 8)),), {"x": (1, 3, 9, 9)}, ("y",))


def test_shape_rules_of_elementwise_concat_reshape():
    assert infer_output_shape(OpType.MUL, NoAttrs(), ((1, 8, 4, 4), (1, 8, 1, 1)), {}) == (
        1, 8, 4, 4)
    assert infer_output_shape(OpType.CONCAT, ConcatAttrs(1), ((1, 8, 4, 4), (1, 2, 4, 4)),
                              {}) == (1, 10, 4, 4)
    assert infer_output_shape(OpType.RESHAPE, ReshapeAttrs((128,)), ((1, 8, 4, 4),), {}) == (
        1, 128)
    with pytest.raises(GraphError, match="do not broadcast"):
        infer_output_shape(OpType.ADD, NoAttrs(), ((1, 8, 4, 4), (1, 3, 4, 4)), {})
    with pytest.raises(GraphError, match="cannot reshape"):
        infer_output_shape(OpType.RESHAPE, ReshapeAttrs((100,)), ((1, 8, 4, 4),), {})


def test_pool_output_size_matches_torch_including_ceil_mode():
    for size, k, s, p, ceil in itertools.product((5, 7, 8), (2, 3), (1, 2, 3), (0, 1), (0, 1)):
        if p > k // 2:
            continue
        got = pool_output_size(size, k, s, p, p, 1, bool(ceil))
        ref = F.max_pool2d(torch.zeros(1, 1, size, size), k, s, p, ceil_mode=bool(ceil))
        assert got == ref.shape[-1], (size, k, s, p, ceil)
        node_shape = infer_output_shape(
            OpType.AVGPOOL, AvgPoolAttrs((k, k), (s, s), (p, p, p, p), bool(ceil)),
            ((1, 1, size, size),), {})
        assert node_shape[-1] == ref.shape[-1]
