"""torch modules computing one op key (same semantics as ``onnx_builder.op_model``)."""

from __future__ import annotations

import torch
from torch import nn

from hwsim.errors import LatencyError
from hwsim.latency.op_key import OpKey

_ACTS = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hswish": nn.Hardswish,
    "hsigmoid": nn.Hardsigmoid,
    "sigmoid": nn.Sigmoid,
    "swish": nn.SiLU,
}


def _act(name: str | None) -> nn.Module:
    if name is None:
        return nn.Identity()
    if name not in _ACTS:
        raise LatencyError(f"unknown activation {name!r}; known: {', '.join(_ACTS)}")
    return _ACTS[name]()


class _Fused(nn.Module):
    """body(x) [+ residual] [-> act]."""

    def __init__(self, body: nn.Module, act: str | None, residual: bool) -> None:
        super().__init__()
        self.body, self.act, self.residual = body, _act(act), residual

    def forward(self, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if self.residual:
            y = y + rest[0]
        return self.act(y)


class _Add(nn.Module):
    def __init__(self, act: str | None) -> None:
        super().__init__()
        self.act = _act(act)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.act(x + y)


class _MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, mid: int, k: int, s: int, idskip: bool,
                 act: str) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if mid != cin:
            layers += [nn.Conv2d(cin, mid, 1), _act(act)]
        layers += [nn.Conv2d(mid, mid, k, s, k // 2, groups=mid), _act(act),
                   nn.Conv2d(mid, cout, 1)]
        self.body, self.idskip = nn.Sequential(*layers), idskip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y + x if self.idskip else y


def _chw(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[2], shape[0], shape[1]) if len(shape) == 3 else shape


def op_module(key: OpKey) -> tuple[nn.Module, list[tuple[int, ...]]]:
    """(module, input shapes without batch) computing ``key`` in float32 eval mode."""
    op = key.op
    shapes = [_chw(key.input)]
    if op in ("conv", "dwconv"):
        cin, cout = key.input[2], key.output[2]
        g = key.groups if key.groups is not None else (cin if op == "dwconv" else 1)
        k = key.kernel or 1
        body: nn.Module = nn.Conv2d(cin, cout, k, key.stride or 1, k // 2, groups=g)
        mod: nn.Module = _Fused(body, key.act, bool(key.idskip))
        if key.idskip:
            shapes.append(_chw(key.output))
    elif op == "linear":
        mod = _Fused(nn.Sequential(nn.Flatten(), nn.Linear(key.input[-1] if len(key.input) == 1
                                                           else _numel(key.input),
                                                           key.output[-1])),
                     key.act, bool(key.idskip))
        if key.idskip:
            shapes.append((key.output[-1],))
    elif op in ("avgpool", "maxpool"):
        (h, _, _), (ho, _, _) = key.input, key.output
        k, s = key.kernel or 1, key.stride or 1
        pad = next((p for p in (k // 2, 0) if (h + 2 * p - k) // s + 1 == ho), None)
        if pad is None:
            raise LatencyError(f"{key}: no padding gives output {ho} from {h}")
        mod = (nn.AvgPool2d(k, s, pad, count_include_pad=False) if op == "avgpool"
               else nn.MaxPool2d(k, s, pad))
    elif op == "gap":
        mod = nn.AdaptiveAvgPool2d(1)
    elif op in _ACTS:
        mod = _act(op)
    elif op == "add":
        mod = _Add(key.act)
        shapes.append(shapes[0])
    elif op == "bn":
        mod = nn.Sequential(nn.BatchNorm2d(key.input[-1]), _act(key.act))
    elif op in ("Conv", "Conv_1"):
        k = 3 if op == "Conv" else 1
        s = max(1, round(key.input[0] / key.output[0]))
        mod = nn.Sequential(nn.Conv2d(key.input[2], key.output[2], k, s, k // 2), nn.ReLU6())
    elif op == "Logits":
        mod = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(key.input[-1], key.output[-1]))
    elif op == "expanded_conv":
        cin = key.input[2]
        mid = key.mid if key.mid is not None else cin * (key.expand or 1)
        if key.se:
            raise LatencyError(f"{key}: squeeze-excite blocks are not built for torch timing")
        mod = _MBConv(cin, key.output[2], mid, key.kernel or 3, key.stride or 1,
                      bool(key.idskip), key.act or "relu6")
    else:
        raise LatencyError(f"{key}: cannot build a torch module for op {op!r}")
    return mod.eval(), shapes


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
