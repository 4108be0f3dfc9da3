"""torch modules of the NAS-Bench-201 network (layout in ``nb201_space``'s docstring)."""

from __future__ import annotations

import torch
from torch import nn

from hwsim.errors import SearchError


class ReLUConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__(nn.ReLU(), nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(cout))


def edge_module(op: str, c: int) -> nn.Module | None:
    """The module of one edge op (None for ``none``: the edge is left out)."""
    if op == "none":
        return None
    if op == "skip_connect":
        return nn.Identity()
    if op == "nor_conv_1x1":
        return ReLUConvBN(c, c, 1, 1)
    if op == "nor_conv_3x3":
        return ReLUConvBN(c, c, 3, 1)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    raise SearchError(f"nb201: unknown op {op!r}")


class NB201Cell(nn.Module):
    def __init__(self, ops: tuple[str, ...], edges: tuple[tuple[int, int], ...], c: int) -> None:
        super().__init__()
        self.edges = edges
        self.ops = nn.ModuleList([edge_module(op, c) or nn.Identity() for op in ops])
        self.live = tuple(op != "none" for op in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in (1, 2, 3):
            total = None
            for e, (src, dst) in enumerate(self.edges):
                if dst != j or not self.live[e]:
                    continue
                y = self.ops[e](nodes[src])
                total = y if total is None else total + y
            # a node without inputs is zero (the reference's x.mul(0.)); clamp keeps it a
            # graph op the importer accepts
            nodes.append(torch.clamp(x, 0.0, 0.0) if total is None else total)
        return nodes[3]


class NB201Reduction(nn.Module):
    """NB201 ResNetBasicblock with stride 2."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(cin, cout, 3, 2)
        self.conv_b = ReLUConvBN(cout, cout, 3, 1)
        self.pool = nn.AvgPool2d(2, 2)
        self.shortcut = nn.Conv2d(cin, cout, 1, 1, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.shortcut(self.pool(x))


class NB201Network(nn.Module):
    def __init__(self, ops: tuple[str, ...], edges: tuple[tuple[int, int], ...],
                 stages: tuple[tuple[int, int], ...], cells: int, classes: int) -> None:
        super().__init__()
        c0 = stages[0][0]
        layers: list[nn.Module] = [nn.Conv2d(3, c0, 3, 1, 1, bias=False), nn.BatchNorm2d(c0)]
        for i, (c, _) in enumerate(stages):
            if i > 0:
                layers.append(NB201Reduction(stages[i - 1][0], c))
            layers += [NB201Cell(ops, edges, c) for _ in range(cells)]
        c_last = stages[-1][0]
        layers += [nn.BatchNorm2d(c_last), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                   nn.Linear(c_last, classes)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
