"""Weight-sharing supernet of a ProxylessNAS-style space (one module per candidate and slot).

``forward(x, arch=row)`` runs one path (single-path one-shot training, Guo et al. 2020, and
candidate evaluation in evolution); ``forward(x, probs=p)`` runs the continuous relaxation
sum_i p_i * op_i(x) per slot (differentiable in p, the gradient search). ``zero`` is the
identity (ProxylessNAS ZeroLayer + identity shortcut). Weights are saved as ``.npz`` (no pickle).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwsim.errors import SearchError
from hwsim.search.proxyless_space import ProxylessSpace
from hwsim.search.torch_blocks import ClassifierHead, ConvBNAct, MBConv


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
        slots = []
        for slot in range(space.n_slots):
            cands: list[nn.Module] = []
            for c in range(len(space.choices[slot])):
                key = space.block_key(slot, c)
                if key is None:
                    cands.append(nn.Identity())
                else:
                    cands.append(MBConv(key.input[2], key.output[2], key.input[2] * key.expand,
                                        key.kernel, key.stride, "relu6",
                                        skip=bool(key.idskip)))
            slots.append(nn.ModuleList(cands))
        self.slots = nn.ModuleList(slots)
        self.head = nn.Sequential(ConvBNAct(space.out_channels, space.head, 1, 1, act="relu6"),
                                  ClassifierHead(space.head, space.classes))

    def forward(self, x: torch.Tensor, arch: Any = None, probs: torch.Tensor | None = None
                ) -> torch.Tensor:
        if (arch is None) == (probs is None):
            raise SearchError("supernet forward takes exactly one of arch= or probs=")
        y = self.stem(x)
        if arch is not None:
            for slot, c in enumerate(arch):
                y = self.slots[slot][int(c)](y)
        else:
            mask = self.space.mask
            for slot, cands in enumerate(self.slots):
                y = sum(probs[slot, c] * cands[c](y) for c in range(len(cands))
                        if mask[slot, c])
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
