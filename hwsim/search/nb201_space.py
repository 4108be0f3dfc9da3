"""NAS-Bench-201 cell space (Dong & Yang, ICLR'20; DESIGN.md B7): 6 edges x 5 ops.

Network (CIFAR, 32x32): stem conv3x3 3->16 + BN; 5 cells at C=16 (32x32); residual reduction
block 16->32 stride 2; 5 cells at 32 (16x16); reduction 32->64; 5 cells at 64 (8x8); BN, ReLU,
global pool, linear. Cell: nodes 0..3, node j = sum over i < j of op_ij(node i); the output is
node 3. Ops: none, skip_connect, nor_conv_1x1, nor_conv_3x3 (ReLU-Conv-BN), avg_pool_3x3
(stride 1, padding 1, padding not counted). Reduction block (NB201 ``ResNetBasicblock``):
ReLU-Conv3x3(s2)-BN, ReLU-Conv3x3-BN, plus a shortcut avgpool 2x2 s2 -> conv 1x1; then add.

As in the reference implementation every non-``none`` edge computes, even when its source node
receives nothing (a node without inputs is a zero tensor, built as ``clamp(x, 0, 0)`` so the
network stays importable). ``none`` edges are left out.

Latency (a table model, like every LUT sum): NB201 cells are not additive per edge in general
(the adds that sum a node's inputs depend on how many of its edges are live). The terms here
are exact for this network under a kernel-sum model: one term per edge (the op's kernels at the
cell's resolution, times 5 cells, over the 3 stages) and one term per node over its incoming
edges (``k - 1`` adds for ``k`` live edges, a zero op for none). Keys are canonical kernel keys
(``relu``, ``conv`` with BN folded, ``avgpool``, ``add``, ``clip``): no published per-op NB201
LUT format exists.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hwsim.errors import LatencyError, SearchError
from hwsim.latency.arch_encoding import NB201_EDGES, NB201_OPS, format_nb201, parse_nb201
from hwsim.latency.op_key import OpKey
from hwsim.search.space import ArchOp, CostTerm, SearchSpace

NB201_STAGES = ((16, 32), (32, 16), (64, 8))  # (channels, feature size) of the 3 stages
NB201_CELLS_PER_STAGE = 5
_NODE_EDGES = {j: tuple(e for e, (_, dst) in enumerate(NB201_EDGES) if dst == j)
               for j in (1, 2, 3)}


def edge_op_keys(op: str, c: int, hw: int) -> tuple[OpKey, ...]:
    """Kernel keys of one NB201 op at C channels, hw x hw."""
    shape = (hw, hw, c)
    if op in ("none", "skip_connect"):
        return ()
    if op == "nor_conv_1x1":
        return (OpKey("relu", shape, shape), OpKey("conv", shape, shape, kernel=1, stride=1))
    if op == "nor_conv_3x3":
        return (OpKey("relu", shape, shape), OpKey("conv", shape, shape, kernel=3, stride=1))
    if op == "avg_pool_3x3":
        return (OpKey("avgpool", shape, shape, kernel=3, stride=1),)
    raise SearchError(f"nb201: unknown op {op!r}; allowed: {', '.join(NB201_OPS)}")


def node_sum_keys(n_live: int, c: int, hw: int) -> tuple[OpKey, ...]:
    """Kernels that form a node from ``n_live`` non-none inputs."""
    shape = (hw, hw, c)
    if n_live == 0:
        return (OpKey("clip", shape, shape),)
    return (OpKey("add", shape, shape),) * (n_live - 1)


class NB201Space(SearchSpace):
    """6 edges x 5 ops (see module docstring)."""

    name = "nb201"
    key_format = "canonical"

    def __init__(self, classes: int = 10) -> None:
        if not isinstance(classes, int) or classes < 1:
            raise SearchError(f"nb201: classes must be a positive integer, got {classes!r}")
        self.classes = classes
        super().__init__([NB201_OPS] * len(NB201_EDGES),
                         slot_names=[f"edge{s}->{d}" for s, d in NB201_EDGES])

    def fixed_keys(self) -> tuple[OpKey, ...]:
        keys = [OpKey("conv", (32, 32, 3), (32, 32, 16), kernel=3, stride=1)]
        for (c, hw), (c2, hw2) in zip(NB201_STAGES, NB201_STAGES[1:], strict=False):
            a, b = (hw, hw, c), (hw2, hw2, c2)
            keys += [OpKey("relu", a, a), OpKey("conv", a, b, kernel=3, stride=2),
                     OpKey("relu", b, b), OpKey("conv", b, b, kernel=3, stride=1),
                     OpKey("avgpool", a, (hw2, hw2, c), kernel=2, stride=2),
                     OpKey("conv", (hw2, hw2, c), b, kernel=1, stride=1, idskip=1)]
        c, hw = NB201_STAGES[-1]
        keys += [OpKey("bn", (hw, hw, c), (hw, hw, c), act="relu"),
                 OpKey("gap", (hw, hw, c), (1, 1, c)), OpKey("linear", (c,), (self.classes,))]
        return tuple(keys)

    def cost_terms(self) -> list[CostTerm]:
        cells = NB201_CELLS_PER_STAGE

        def edge_term(slot: int):  # noqa: ANN202
            def keys(choice: tuple[int, ...]) -> tuple[OpKey, ...]:
                op = NB201_OPS[choice[0]]
                return tuple(k for c, hw in NB201_STAGES for k in edge_op_keys(op, c, hw)
                             for _ in range(cells))
            return keys

        def node_term():  # noqa: ANN202
            def keys(choice: tuple[int, ...]) -> tuple[OpKey, ...]:
                live = sum(1 for c in choice if NB201_OPS[c] != "none")
                return tuple(k for c, hw in NB201_STAGES for k in node_sum_keys(live, c, hw)
                             for _ in range(cells))
            return keys

        terms = [CostTerm((s,), edge_term(s), self.slot_names[s]) for s in range(self.n_slots)]
        terms += [CostTerm(_NODE_EDGES[j], node_term(), f"node{j}") for j in (1, 2, 3)]
        return terms

    def ops(self, arch: Any) -> list[ArchOp]:
        row = self.arch_row(arch)
        fixed = self.fixed_keys()
        out = [ArchOp(None, "stem", fixed[0])]
        reductions = [fixed[1 + 6 * i: 7 + 6 * i] for i in range(2)]
        for stage, (c, hw) in enumerate(NB201_STAGES):
            for cell in range(NB201_CELLS_PER_STAGE):
                for j in (1, 2, 3):
                    live = 0
                    for e in _NODE_EDGES[j]:
                        op = NB201_OPS[int(row[e])]
                        for key in edge_op_keys(op, c, hw):
                            out.append(ArchOp(e, f"s{stage}c{cell}:{op}", key))
                        live += op != "none"
                    for key in node_sum_keys(live, c, hw):
                        out.append(ArchOp(None, f"s{stage}c{cell}:node{j}", key))
            if stage < 2:
                out += [ArchOp(None, f"reduction{stage}", k) for k in reductions[stage]]
        out += [ArchOp(None, "lastact", fixed[-3]), ArchOp(None, "pool", fixed[-2]),
                ArchOp(None, "classifier", fixed[-1])]
        return out

    def encode(self, arch: Any) -> str:
        """The NB201 ``arch_str``."""
        return format_nb201(tuple(int(v) for v in self.arch_row(arch)))

    def decode(self, published: Any) -> np.ndarray:
        try:
            return self.arch_row(np.array(parse_nb201(published)))
        except LatencyError as err:
            raise SearchError(f"nb201: {err}") from None

    def build(self, arch: Any, seed: int = 0) -> Any:
        import torch

        from hwsim.search.nb201_modules import NB201Network
        from hwsim.search.torch_blocks import finish

        row = self.arch_row(arch)
        torch.manual_seed(seed)
        ops = tuple(NB201_OPS[int(v)] for v in row)
        return finish(NB201Network(ops, NB201_EDGES, NB201_STAGES, NB201_CELLS_PER_STAGE,
                                   self.classes), seed)

    def example_input(self) -> Any:
        import torch

        return torch.zeros(1, 3, 32, 32)
