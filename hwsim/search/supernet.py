"""Weight-sharing supernet of a ProxylessNAS-style space.

Each searchable slot holds one ``ElasticMBConv`` at the slot's largest candidate (kernel 7,
expand 6); a candidate ``kKeE`` runs the first ``E * Cin`` channels of the expansion and
projection weights and the centre ``K x K`` of the depthwise kernels, with its own BatchNorms
(Once-for-All's kernel/width sharing, Cai et al. ICLR'20). **Deviation** from the ProxylessNAS
search code, which keeps separate weights per candidate: with separate weights, single-path
training on digits stayed at chance (cross-entropy 2.3 after 60 steps of uniformly sampled
paths, measured here) while 2 alternating paths fit in 30 steps; shared weights give every
path a consistent feature extractor.

``forward(x, arch=row)`` runs one path (single-path one-shot training, Guo et al. 2020, and
candidate evaluation in evolution); ``forward(x, probs=p)`` runs the continuous relaxation
sum_i p_i * op_i(x) per slot (differentiable in p, the gradient search). ``zero`` is the
identity (ProxylessNAS ZeroLayer + identity shortcut). Weights are saved as ``.npz`` (no
pickle).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwsim.errors import SearchError
from hwsim.search.proxyless_space import ProxylessSpace
from hwsim.search.torch_blocks import ClassifierHead, ConvBNAct, MBConv


class ElasticMBConv(nn.Module):
    """MBConv candidates (kernel, expand) of one slot sharing their weights (module docstring).
    Every candidate computes expand 1x1 + BN + ReLU6, KxK depthwise (stride) + BN + ReLU6,
    1x1 projection + BN, plus the input when ``skip``: the ``MBConv`` the space builds."""

    def __init__(self, cin: int, cout: int, stride: int, candidates: list[tuple[int, int]],
                 skip: bool) -> None:
        super().__init__()
        if not candidates or any(e < 2 for _, e in candidates):
            raise SearchError(f"ElasticMBConv needs (kernel, expand >= 2) candidates, got "
                              f"{candidates}")
        self.cin, self.cout, self.stride, self.skip = cin, cout, stride, skip
        self.k_max = max(k for k, _ in candidates)
        mid = cin * max(e for _, e in candidates)
        self.expand = nn.Parameter(torch.empty(mid, cin, 1, 1))
        self.depthwise = nn.Parameter(torch.empty(mid, 1, self.k_max, self.k_max))
        self.project = nn.Parameter(torch.empty(cout, mid, 1, 1))
        for w in (self.expand, self.depthwise, self.project):
            nn.init.kaiming_uniform_(w, a=5 ** 0.5)  # nn.Conv2d's default
        self.bns = nn.ModuleDict({
            f"k{k}e{e}": nn.ModuleList([nn.BatchNorm2d(cin * e), nn.BatchNorm2d(cin * e),
                                        nn.BatchNorm2d(cout)]) for k, e in candidates})

    def forward(self, x: torch.Tensor, kernel: int, expand: int) -> torch.Tensor:
        bn1, bn2, bn3 = self.bns[f"k{kernel}e{expand}"]
        mid = self.cin * expand
        lo = (self.k_max - kernel) // 2
        h = F.relu6(bn1(F.conv2d(x, self.expand[:mid])))
        h = F.relu6(bn2(F.conv2d(h, self.depthwise[:mid, :, lo:lo + kernel, lo:lo + kernel],
                                 stride=self.stride, padding=kernel // 2, groups=mid)))
        y = bn3(F.conv2d(h, self.project[:, :mid]))
        return y + x if self.skip else y


class ProxylessSupernet(nn.Module):
    def __init__(self, space: ProxylessSpace) -> None:
        super().__init__()
        if not isinstance(space, ProxylessSpace):
            raise SearchError(f"the supernet covers ProxylessNAS-style spaces, got {space.name}")
        self.space = space
        self.stem = nn.Sequential(
            ConvBNAct(space.in_channels, space.stem, 3, space.stem_stride, act="relu6"),
            MBConv(space.stem, space.first_block, space.stem, 3, 1, "relu6",
                   skip=space.stem == space.first_block))
        # per slot: choice index -> (kernel, expand), None for zero
        self.choice_ops: list[list[tuple[int, int] | None]] = []
        slots = []
        for slot in range(space.n_slots):
            ops: list[tuple[int, int] | None] = []
            for c in range(len(space.choices[slot])):
                key = space.block_key(slot, c)
                ops.append(None if key is None else (key.kernel, key.expand))
            _, cin, cout, stride = space.layout[slot]
            cands = [op for c, op in enumerate(ops) if op is not None and space.mask[slot, c]]
            slots.append(ElasticMBConv(cin, cout, stride, cands,
                                       skip=stride == 1 and cin == cout))
            self.choice_ops.append(ops)
        self.slots = nn.ModuleList(slots)
        self.head = nn.Sequential(ConvBNAct(space.out_channels, space.head, 1, 1, act="relu6"),
                                  ClassifierHead(space.head, space.classes))

    def _op(self, slot: int, choice: int, y: torch.Tensor) -> torch.Tensor:
        op = self.choice_ops[slot][choice]
        return y if op is None else self.slots[slot](y, *op)

    def forward(self, x: torch.Tensor, arch: Any = None, probs: torch.Tensor | None = None
                ) -> torch.Tensor:
        if (arch is None) == (probs is None):
            raise SearchError("supernet forward takes exactly one of arch= or probs=")
        y = self.stem(x)
        if arch is not None:
            row = self.space.arch_row(arch)
            for slot, c in enumerate(row):
                y = self._op(slot, int(c), y)
        else:
            mask = self.space.mask
            for slot in range(self.space.n_slots):
                y = sum(probs[slot, c] * self._op(slot, c, y)
                        for c in range(len(self.choice_ops[slot])) if mask[slot, c])
        return self.head(y)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Weights as ``.npz`` (written to a temporary name, then renamed)."""
        path = Path(path)
        arrays = {k: v.detach().cpu().numpy() for k, v in self.state_dict().items()}
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)

    def load(self, path: str | os.PathLike[str]) -> None:
        with np.load(path, allow_pickle=False) as data:
            state = {k: torch.from_numpy(data[k]) for k in data.files}
        own = self.state_dict()
        if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
            raise SearchError(f"{path}: supernet weights do not match space {self.space.name}")
        self.load_state_dict(state)
