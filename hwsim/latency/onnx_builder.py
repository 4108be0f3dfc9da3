"""ONNX models of op configurations (one op, a chain of ops, a whole network) for timing.

Layout NCHW, batch 1, float32, opset 17, random weights from a seeded generator. Batch norm
is folded into the preceding convolution's bias (as an exporter in eval mode does) unless a
``bn`` op is asked for explicitly. Convolutions pad ``kernel // 2``.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hwsim.errors import LatencyError
from hwsim.latency.op_key import OpKey

OPSET = 17
ACTIVATIONS = ("relu", "relu6", "hswish", "hsigmoid", "sigmoid", "swish")


class OnnxNetBuilder:
    """Appends ONNX nodes and tracks tensor shapes (C, H, W) or (C,) per tensor name."""

    def __init__(self, seed: int = 0, first_index: int = 0) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self._rng = np.random.default_rng(seed)
        self._n = first_index  # node/tensor names are <prefix>_<index>; index starts here

    def _name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def _const(self, array: np.ndarray, prefix: str) -> str:
        name = self._name(prefix)
        self.inits.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def input(self, shape: tuple[int, ...], name: str | None = None) -> str:
        """A graph input of shape (C, H, W) or (C,) (batch 1 is added)."""
        name = name or self._name("input")
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                         [1, *shape]))
        self.shapes[name] = tuple(shape)
        return name

    def _node(self, op: str, inputs: list[str], shape: tuple[int, ...], **attrs: object) -> str:
        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        self.shapes[out] = shape
        return out

    def conv(self, x: str, cout: int, kernel: int, stride: int, groups: int = 1) -> str:
        cin, h, w = self.shapes[x]
        if cin % groups or cout % groups:
            raise LatencyError(f"conv groups {groups} must divide Cin {cin} and Cout {cout}")
        pad = kernel // 2
        ho, wo = (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1
        wgt = self._rng.standard_normal((cout, cin // groups, kernel, kernel)).astype(np.float32)
        wgt *= np.float32(1.0 / np.sqrt(cin // groups * kernel * kernel))
        bias = (0.01 * self._rng.standard_normal(cout)).astype(np.float32)
        return self._node("Conv", [x, self._const(wgt, "w"), self._const(bias, "b")],
                          (cout, ho, wo), kernel_shape=[kernel, kernel], strides=[stride, stride],
                          pads=[pad] * 4, group=groups)

    def linear(self, x: str, cout: int) -> str:
        if len(self.shapes[x]) != 1:
            x = self.flatten(x)
        (cin,) = self.shapes[x]
        wgt = (self._rng.standard_normal((cout, cin)) / np.sqrt(cin)).astype(np.float32)
        bias = (0.01 * self._rng.standard_normal(cout)).astype(np.float32)
        return self._node("Gemm", [x, self._const(wgt, "w"), self._const(bias, "b")], (cout,),
                          transB=1)

    def flatten(self, x: str) -> str:
        n = int(np.prod(self.shapes[x]))
        return self._node("Flatten", [x], (n,), axis=1)

    def bn(self, x: str) -> str:
        c = self.shapes[x][0]
        scale = (1 + 0.1 * self._rng.standard_normal(c)).astype(np.float32)
        shift = (0.1 * self._rng.standard_normal(c)).astype(np.float32)
        mean = (0.1 * self._rng.standard_normal(c)).astype(np.float32)
        var = (1 + 0.1 * np.abs(self._rng.standard_normal(c))).astype(np.float32)
        ins = [x] + [self._const(a, n) for a, n in ((scale, "g"), (shift, "be"), (mean, "m"),
                                                      (var, "v"))]
        return self._node("BatchNormalization", ins, self.shapes[x], epsilon=1e-5)

    def act(self, x: str, name: str) -> str:
        shape = self.shapes[x]
        if name == "relu":
            return self._node("Relu", [x], shape)
        if name == "relu6":
            lo = self._const(np.array(0.0, np.float32), "lo")
            hi = self._const(np.array(6.0, np.float32), "hi")
            return self._node("Clip", [x, lo, hi], shape)
        if name == "hswish":
            return self._node("HardSwish", [x], shape)
        if name == "hsigmoid":
            return self._node("HardSigmoid", [x], shape, alpha=1.0 / 6.0, beta=0.5)
        if name == "sigmoid":
            return self._node("Sigmoid", [x], shape)
        if name == "swish":
            s = self._node("Sigmoid", [x], shape)
            return self._node("Mul", [x, s], shape)
        raise LatencyError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")

    def add(self, x: str, y: str) -> str:
        if self.shapes[x] != self.shapes[y]:
            raise LatencyError(f"add of shapes {self.shapes[x]} and {self.shapes[y]}")
        return self._node("Add", [x, y], self.shapes[x])

    def mul(self, x: str, y: str) -> str:
        return self._node("Mul", [x, y], self.shapes[x])

    def gap(self, x: str) -> str:
        c = self.shapes[x][0]
        return self._node("GlobalAveragePool", [x], (c, 1, 1))

    def pool(self, x: str, kind: str, kernel: int, stride: int, pad: int) -> str:
        c, h, w = self.shapes[x]
        ho, wo = (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1
        op = {"avgpool": "AveragePool", "maxpool": "MaxPool"}[kind]
        extra = {"count_include_pad": 0} if kind == "avgpool" else {}
        return self._node(op, [x], (c, ho, wo), kernel_shape=[kernel, kernel],
                          strides=[stride, stride], pads=[pad] * 4, **extra)

    def model(self, outputs: list[str]) -> onnx.ModelProto:
        outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, *self.shapes[o]])
                for o in outputs]
        graph = helper.make_graph(self.nodes, "hwsim_latency", self.inputs, outs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="hwsim")
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model

    # -- composite blocks --------------------------------------------------------------------
    def mbconv(self, x: str, cout: int, mid: int, kernel: int, stride: int, idskip: bool,
               act: str = "relu6", se: bool = False) -> str:
        """MobileNetV2 / ProxylessNAS inverted residual (BN folded)."""
        cin = self.shapes[x][0]
        y = x
        if mid != cin:
            y = self.act(self.conv(y, mid, 1, 1), act)
        y = self.act(self.conv(y, mid, kernel, stride, groups=mid), act)
        if se:
            se_mid = max(8, int(mid // 4 + 4) // 8 * 8)
            s = self.act(self.conv(self.gap(y), se_mid, 1, 1), "relu")
            s = self.act(self.conv(s, mid, 1, 1), "hsigmoid")
            y = self.mul(y, s)
        y = self.conv(y, cout, 1, 1)
        if idskip:
            y = self.add(y, x)
        return y


def _hwc(shape: tuple[int, ...]) -> tuple[int, int, int]:
    h, w, c = shape
    return c, h, w


def _pool_pad(key: OpKey) -> int:
    (h, _, _), (ho, _, _) = key.input, key.output
    k, s = key.kernel or 1, key.stride or 1
    for pad in (k // 2, 0):
        if (h + 2 * pad - k) // s + 1 == ho:
            return pad
    raise LatencyError(f"{key}: no padding gives output {ho} from {h} with kernel {k} stride {s}")


def op_model(key: OpKey, seed: int = 0) -> onnx.ModelProto:
    """A one-kernel ONNX model computing ``key`` (fused activation / residual included).

    Supported ops: conv, dwconv, linear, avgpool, maxpool, gap, the activations, add, bn and
    the ProxylessNAS blocks expanded_conv, Conv, Conv_1, Logits.
    """
    b = OnnxNetBuilder(seed)
    op = key.op
    if op in ("conv", "dwconv", "Conv", "Conv_1", "Conv_2", "expanded_conv"):
        if len(key.input) != 3 or len(key.output) != 3:
            raise LatencyError(f"{key}: needs HxWxC shapes")
    x = b.input(_hwc(key.input) if len(key.input) == 3 else key.input, "x")
    out: str
    if op in ("conv", "dwconv"):
        cin, cout = key.input[2], key.output[2]
        groups = key.groups if key.groups is not None else (cin if op == "dwconv" else 1)
        out = b.conv(x, cout, key.kernel or 1, key.stride or 1, groups)
        if b.shapes[out] != _hwc(key.output):
            raise LatencyError(f"{key}: conv with pad kernel//2 gives {b.shapes[out]} (CxHxW), "
                               f"not the key's output")
        if key.idskip:
            out = b.add(out, b.input(_hwc(key.output), "residual"))
        if key.act:
            out = b.act(out, key.act)
    elif op == "linear":
        out = b.linear(x, key.output[-1])
        if key.idskip:
            out = b.add(out, b.input((key.output[-1],), "residual"))
        if key.act:
            out = b.act(out, key.act)
    elif op in ("avgpool", "maxpool"):
        out = b.pool(x, op, key.kernel or 1, key.stride or 1, _pool_pad(key))
    elif op == "gap":
        out = b.gap(x)
    elif op in ACTIVATIONS:
        out = b.act(x, op)
    elif op == "add":
        out = b.add(x, b.input(b.shapes[x], "y"))
        if key.act:
            out = b.act(out, key.act)
    elif op == "bn":
        out = b.bn(x)
        if key.act:
            out = b.act(out, key.act)
    elif op in ("Conv", "Conv_1"):
        # ProxylessNAS first conv (3x3, stride from the shapes) and feature mix layer (1x1),
        # both Conv+BN+ReLU6.
        k = 3 if op == "Conv" else 1
        s = max(1, round(key.input[0] / key.output[0]))
        out = b.act(b.conv(x, key.output[2], k, s), "relu6")
    elif op == "Logits":
        y = b.gap(x) if len(key.input) == 3 and key.input[:2] != (1, 1) else x
        out = b.linear(b.flatten(y), key.output[-1])
    elif op == "expanded_conv":
        cin = key.input[2]
        mid = key.mid if key.mid is not None else cin * (key.expand or 1)
        out = b.mbconv(x, key.output[2], mid, key.kernel or 3, key.stride or 1,
                       bool(key.idskip), act=key.act or "relu6", se=bool(key.se))
    else:
        raise LatencyError(f"{key}: cannot build an ONNX model for op {op!r}; supported: conv, "
                           f"dwconv, linear, avgpool, maxpool, gap, {', '.join(ACTIVATIONS)}, "
                           f"add, bn, expanded_conv, Conv, Conv_1, Logits")
    want = _hwc(key.output) if len(key.output) == 3 else key.output
    if b.shapes[out] != want:
        raise LatencyError(f"{key}: the built op gives shape {b.shapes[out]} (CxHxW), the key "
                           f"says {want}")
    return b.model([out])


def chain_model(first: OpKey, second_op: str, seed: int = 0) -> onnx.ModelProto:
    """``first`` (without fused extras) followed by ``second_op`` (an activation, ``bn`` or
    ``add`` with a second graph input): the A+B case of fusion detection."""
    model_a = op_model(first, seed)
    # appended names start at 10000 so they cannot collide with those of model A
    b = OnnxNetBuilder(seed, first_index=10_000)
    b.nodes = list(model_a.graph.node)
    b.inits = list(model_a.graph.initializer)
    b.inputs = list(model_a.graph.input)
    out = model_a.graph.output[0].name
    dims = [d.dim_value for d in model_a.graph.output[0].type.tensor_type.shape.dim][1:]
    b.shapes[out] = tuple(dims)
    if second_op == "bn":
        y = b.bn(out)
    elif second_op == "add":
        y = b.add(out, b.input(tuple(dims), "z"))
    else:
        y = b.act(out, second_op)
    return b.model([y])
