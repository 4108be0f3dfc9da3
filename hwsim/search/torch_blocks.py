"""torch building blocks of the search-space networks (float32; BN after every conv).

Semantics match the latency keys the spaces list (``hwsim.latency.op_cost`` docstring):
``MBConv`` is ProxylessNAS ``MBInvertedConvLayer`` / OFA ``MBConvLayer`` (1x1 expand omitted when
mid == Cin, KxK depthwise, optional squeeze-excite with OFA's squeeze width and h-sigmoid gate,
1x1 projection, identity residual); ``FBNetBlock`` is the HW-NAS-Bench FBNet block. All convs
pad ``kernel // 2``. Every module here imports into ``hwsim.graph`` (torch.fx) unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from hwsim.errors import SearchError
from hwsim.latency.op_cost import _make_divisible

_ACTS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish}


def act_module(name: str | None) -> nn.Module:
    if name is None:
        return nn.Identity()
    if name not in _ACTS:
        raise SearchError(f"unknown activation {name!r}; known: {', '.join(_ACTS)}")
    return _ACTS[name]()


class ConvBNAct(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> activation (None: none)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: str | None = "relu6") -> None:
        super().__init__(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups,
                                   bias=False),
                         nn.BatchNorm2d(cout), act_module(act))


class SqueezeExcite(nn.Module):
    """OFA SE: global pool -> 1x1 (mid -> make_divisible(mid // 4, 8)) -> ReLU -> 1x1 ->
    h-sigmoid -> scale."""

    def __init__(self, mid: int) -> None:
        super().__init__()
        se_mid = _make_divisible(mid // 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(mid, se_mid, 1)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(se_mid, mid, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class MBConv(nn.Module):
    """Mobile inverted bottleneck (see module docstring); ``skip`` adds the input (needs
    stride 1 and Cin == Cout)."""

    def __init__(self, cin: int, cout: int, mid: int, kernel: int, stride: int,
                 act: str = "relu6", se: bool = False, skip: bool = False) -> None:
        super().__init__()
        if skip and (stride != 1 or cin != cout):
            raise SearchError(f"MBConv {cin}->{cout} stride {stride}: an identity skip needs "
                              f"stride 1 and equal channels")
        layers: list[nn.Module] = []
        if mid != cin:
            layers.append(ConvBNAct(cin, mid, 1, 1, act=act))
        layers.append(ConvBNAct(mid, mid, kernel, stride, groups=mid, act=act))
        if se:
            layers.append(SqueezeExcite(mid))
        layers.append(ConvBNAct(mid, cout, 1, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.skip = skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y + x if self.skip else y


class FBNetBlock(nn.Module):
    """1x1 group conv (Cin -> e*Cin) + BN + ReLU -> channel shuffle if groups > 1 -> KxK
    depthwise (stride) + BN + ReLU -> 1x1 group conv + BN; residual when shapes match."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int,
                 groups: int) -> None:
        super().__init__()
        mid = cin * expand
        layers: list[nn.Module] = [ConvBNAct(cin, mid, 1, 1, groups=groups, act="relu")]
        if groups > 1:
            layers.append(nn.ChannelShuffle(groups))
        layers += [ConvBNAct(mid, mid, kernel, stride, groups=mid, act="relu"),
                   ConvBNAct(mid, cout, 1, 1, groups=groups, act=None)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y + x if self.residual else y


class ClassifierHead(nn.Module):
    """Global average pool -> flatten -> linear."""

    def __init__(self, cin: int, classes: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(x)))


def finish(module: nn.Module, seed: int = 0) -> nn.Module:
    """Eval mode, float32, deterministic non-trivial BN statistics (so BN folding is tested
    on real values, not identities)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_var.copy_(1.0 + 0.1 * torch.rand(n, generator=gen))
                m.weight.copy_(1.0 + 0.1 * torch.randn(n, generator=gen))
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))
    return module.float().eval()
