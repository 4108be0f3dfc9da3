"""A torch module that runs a graph IR with fake quantization and a straight-through estimator.

Used for HAQ's short fine-tune: conv/linear weights are trainable parameters initialised from the
graph; every weight is fake-quantized with the qparams the device's own weight quantizer gave
(``Emulator.layers_[name].weight_qparams``) and every tensor the emulator quantizes with its
calibrated activation qparams (``Emulator.qparams_``), both held fixed during the fine-tune
(HAQ calibrates ranges once, then fine-tunes). Fake quantization is
``(clamp(round(x / s) + zp, qmin, qmax) - zp) * s`` with ``torch.round`` (half to even, as the
devices' RNE) and an identity gradient (HAQ's ``STE``). The final accuracy is always measured
with the emulator, not with this module.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwsim.errors import SearchError, UnsupportedOpError
from hwsim.graph.ir import Graph, Node, OpType
from hwsim.quant.qparams import UniformQParams


class _FakeQuantTensors:
    """Uniform qparams as torch tensors, built once per tensor (not per batch)."""

    __slots__ = ("scale", "zp", "qmin", "qmax")

    def __init__(self, qp: UniformQParams, axis: int | None, ndim: int | None) -> None:
        scale = torch.from_numpy(np.asarray(qp.scale, dtype=np.float32))
        zp = torch.from_numpy(np.asarray(qp.zero_point, dtype=np.float32))
        if scale.ndim == 1:
            if axis is None or ndim is None:
                raise SearchError("per-channel qparams need the channel axis")
            shape = [1] * ndim
            shape[axis] = -1
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        self.scale, self.zp = scale, zp
        self.qmin, self.qmax = float(qp.qmin), float(qp.qmax)


class _FakeQuantSTE(torch.autograd.Function):
    """Forward: ``x + (fq(x) - x)`` (the value the detach form ``x + (fq(x) - x).detach()``
    gives, bit for bit); backward: the identity (HAQ's STE). As a Function, autograd records one
    node instead of the eight elementwise ops of the detach form."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, q: _FakeQuantTensors) -> torch.Tensor:  # type: ignore[override]
        y = torch.div(x, q.scale)
        y.round_().add_(q.zp).clamp_(q.qmin, q.qmax).sub_(q.zp).mul_(q.scale)
        return y.sub_(x).add_(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad, None


class _Clamp(torch.autograd.Function):
    """``torch.clamp(x, lo, hi)`` with the gradient ``torch.clamp`` gives (passed where
    ``lo <= x <= hi``, inclusive, else 0) from one fused kernel: ``hardtanh_backward`` zeroes
    where ``x <= lo'`` or ``x >= hi'``; with ``lo'``/``hi'`` the float32 neighbours just outside
    ``lo``/``hi`` that is exactly the inclusive rule for float32 ``x`` (clamp's own backward
    builds a mask and ``where``, ~10x slower on CPU). Bounds must be finite float32 values."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.bounds = (float(np.nextafter(np.float32(lo), np.float32(-np.inf))),
                      float(np.nextafter(np.float32(hi), np.float32(np.inf))))
        return torch.clamp(x, lo, hi)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        lo, hi = ctx.bounds
        return torch.ops.aten.hardtanh_backward(grad, x, lo, hi), None, None


def fake_quant_ste(x: torch.Tensor, qp: UniformQParams | _FakeQuantTensors,
                   axis: int | None = None) -> torch.Tensor:
    """Fake-quantize ``x`` with uniform qparams (per tensor, or per channel along ``axis``):
    ``(clamp(round(x / s) + zp, qmin, qmax) - zp) * s`` in float32, ``torch.round`` half to
    even; the gradient passes straight through."""
    q = qp if isinstance(qp, _FakeQuantTensors) else _FakeQuantTensors(qp, axis, x.ndim)
    return _FakeQuantSTE.apply(x, q)


def _as_uniform(qp, what: str) -> UniformQParams:
    if not isinstance(qp, UniformQParams):
        raise SearchError(f"{what}: the fine-tune fake-quantizes uniform qparams only, got "
                          f"{type(qp).__name__}")
    return qp


class FakeQuantNet(nn.Module):
    """``graph`` as a torch module; ``weight_qparams`` (layer name -> qparams) and
    ``act_qparams`` (tensor name -> qparams) select what is fake-quantized."""

    def __init__(self, graph: Graph, weight_qparams: Mapping[str, UniformQParams],
                 act_qparams: Mapping[str, UniformQParams]) -> None:
        super().__init__()
        self.graph = graph
        self.weight_qparams = {k: _as_uniform(v, f"layer {k!r} weight")
                               for k, v in weight_qparams.items()}
        self.act_qparams = {k: _as_uniform(v, f"tensor {k!r}") for k, v in act_qparams.items()}
        self.weights = nn.ParameterDict()
        self.biases = nn.ParameterDict()
        self._key: dict[str, str] = {}
        self._act_q = {k: _FakeQuantTensors(v, None, None) for k, v in self.act_qparams.items()}
        self._weight_q: dict[str, _FakeQuantTensors] = {}
        self._bn: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        for i, node in enumerate(graph.nodes):
            if node.op in (OpType.CONV2D, OpType.LINEAR):
                key = f"l{i}"
                self._key[node.name] = key
                self.weights[key] = nn.Parameter(torch.tensor(np.array(node.weights["weight"])))
                self.biases[key] = nn.Parameter(torch.tensor(np.array(node.weights["bias"])))
                qp = self.weight_qparams.get(node.name)
                if qp is not None:
                    self._weight_q[node.name] = _FakeQuantTensors(
                        qp, qp.axis, self.weights[key].ndim)
            elif node.op is OpType.BATCHNORM:
                self._bn[node.name] = _batchnorm_tensors(node, graph.shape(node.inputs[0]))
            elif node.op not in _TORCH_OPS:
                raise UnsupportedOpError(f"node {node.name!r} ({node.op.value}): no torch "
                                         "implementation for the fine-tune; supported: "
                                         f"{sorted(o.value for o in _TORCH_OPS)}")

    def _maybe_quant(self, tensor: str, x: torch.Tensor) -> torch.Tensor:
        q = self._act_q.get(tensor)
        return x if q is None else _FakeQuantSTE.apply(x, q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (name,) = self.graph.inputs
        env = {name: self._maybe_quant(name, x)}
        for node in self.graph.nodes:
            y = self._apply(node, [env[t] for t in node.inputs])
            env[node.output] = self._maybe_quant(node.output, y)
        return env[self.graph.outputs[0]]

    def _apply(self, node: Node, xs: list[torch.Tensor]) -> torch.Tensor:
        op, a, x = node.op, node.attrs, xs[0]
        if op in (OpType.CONV2D, OpType.LINEAR):
            key = self._key[node.name]
            w = self.weights[key]
            q = self._weight_q.get(node.name)
            if q is not None:
                w = _FakeQuantSTE.apply(w, q)
            b = self.biases[key]
            if op is OpType.LINEAR:
                return F.linear(x, w, b)
            pt, pl, pb, pr = a.padding
            if (pt, pl) == (pb, pr):  # symmetric zero padding: conv2d pads itself
                return F.conv2d(x, w, b, stride=a.stride, padding=(pt, pl),
                                dilation=a.dilation, groups=a.groups)
            return F.conv2d(F.pad(x, (pl, pr, pt, pb)), w, b, stride=a.stride,
                            dilation=a.dilation, groups=a.groups)
        if op is OpType.RELU:
            return F.relu(x)
        if op is OpType.CLIP:
            if x.dtype == torch.float32 and all(np.isfinite(np.float32(v)) and
                                                np.float32(v) == v for v in (a.min, a.max)):
                return _Clamp.apply(x, a.min, a.max)
            return torch.clamp(x, a.min, a.max)
        if op is OpType.ADD:
            return xs[0] + xs[1]
        if op is OpType.MUL:
            return xs[0] * xs[1]
        if op is OpType.SIGMOID:
            return torch.sigmoid(x)
        if op is OpType.HARDSWISH:
            return x * torch.clamp(x + 3.0, 0.0, 6.0) / 6.0
        if op is OpType.HARDSIGMOID:
            return torch.clamp(x * a.alpha + a.beta, 0.0, 1.0)
        if op is OpType.GLOBAL_AVGPOOL:
            return x.mean(dim=(2, 3), keepdim=a.keepdims)
        if op is OpType.MAXPOOL:
            pt, pl, pb, pr = a.padding
            xp = F.pad(x, (pl, pr, pt, pb), value=float("-inf"))
            return F.max_pool2d(xp, a.kernel, a.stride, dilation=a.dilation,
                                ceil_mode=a.ceil_mode)
        if op is OpType.AVGPOOL:
            pt, pl, pb, pr = a.padding
            if (pt, pl) != (pb, pr) or a.ceil_mode:
                raise UnsupportedOpError(f"node {node.name!r} (avgpool): the fine-tune supports "
                                         "symmetric padding without ceil_mode only")
            return F.avg_pool2d(x, a.kernel, a.stride, padding=(pt, pl),
                                count_include_pad=a.count_include_pad)
        if op is OpType.RESHAPE:
            return x.reshape((x.shape[0],) + a.shape)
        if op is OpType.CONCAT:
            return torch.cat(xs, dim=a.axis)
        if op is OpType.CHANNEL_SHUFFLE:
            n, c, h, w = x.shape
            return x.reshape(n, a.groups, c // a.groups, h, w).transpose(1, 2).reshape(n, c, h, w)
        # batchnorm (unfolded, inference form)
        mean, inv, beta = self._bn[node.name]
        return (x - mean) * inv + beta

    def trained_weights(self) -> dict[str, dict[str, np.ndarray]]:
        """Layer name -> {"weight", "bias"} as float32 numpy arrays (unquantized masters)."""
        return {name: {"weight": self.weights[k].detach().numpy().astype(np.float32),
                       "bias": self.biases[k].detach().numpy().astype(np.float32)}
                for name, k in self._key.items()}


def _batchnorm_tensors(node: Node, in_shape: tuple[int, ...]
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, gamma / sqrt(var + eps), beta) of an unfolded batchnorm, shaped to broadcast."""
    wts = node.weights
    shape = (1, -1) + (1,) * (len(in_shape) - 2)
    inv = torch.from_numpy(np.asarray(wts["gamma"] / np.sqrt(wts["var"] + node.attrs.eps),
                                      dtype=np.float32)).reshape(shape)
    mean = torch.from_numpy(np.asarray(wts["mean"], np.float32)).reshape(shape)
    beta = torch.from_numpy(np.asarray(wts["beta"], np.float32)).reshape(shape)
    return mean, inv, beta


_TORCH_OPS = frozenset({OpType.CONV2D, OpType.LINEAR, OpType.RELU, OpType.CLIP, OpType.ADD,
                        OpType.MUL, OpType.SIGMOID, OpType.HARDSWISH, OpType.HARDSIGMOID,
                        OpType.GLOBAL_AVGPOOL, OpType.MAXPOOL, OpType.AVGPOOL, OpType.RESHAPE,
                        OpType.CONCAT, OpType.CHANNEL_SHUFFLE, OpType.BATCHNORM})


def with_weights(graph: Graph, weights: Mapping[str, Mapping[str, np.ndarray]]) -> Graph:
    """A copy of ``graph`` whose conv/linear nodes named in ``weights`` carry new weights."""
    from dataclasses import replace

    nodes = []
    for node in graph.nodes:
        if node.name in weights:
            node = replace(node, weights={k: np.asarray(v, np.float32)
                                          for k, v in weights[node.name].items()})
        nodes.append(node)
    return Graph(nodes=tuple(nodes), inputs=dict(graph.inputs), outputs=graph.outputs,
                 name=graph.name)
