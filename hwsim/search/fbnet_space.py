"""FBNet search space, CIFAR variant of HW-NAS-Bench (Wu et al., CVPR'19; DESIGN.md B7).

22 searchable layers in stages [1,4,4,4,4,4,1], channels [16,24,32,64,112,184,352], first-layer
strides [1,1,2,2,1,2,1]; stem ConvNorm 3x3 3->16 stride 1 on 32x32; head ConvNorm 1x1
352->1504, average pool over the whole map, FC -> ``classes`` (HW-NAS-Bench: CIFAR-100). Ops
0..8: k3_e1, k3_e1_g2, k3_e3, k3_e6, k5_e1, k5_e1_g2, k5_e3, k5_e6, skip (the op list and
layout are those of ``hwsim.latency.arch_encoding``, shared with the FBNet predictors and
``../shared/data/latency/fbnet.csv``).

Published form: the list of 22 op names (``encode``), or the 22 op indices of the HW-NAS-Bench
/ HELP data. Table keys: the HW-NAS-Bench op LUT keys (``ConvBlock_H..``, ``Skip_H..``,
``ConvNorm_H..``, ``AvgP_H..``, ``FC_Cin..``), built as HW-NAS-Bench's tabular model does (the
key's H is the layer's input size; stride-2 layers halve it). ``ConvNorm`` is conv + BN without
activation, as ``hwsim.latency.block_kernels`` reads the key. A shape-changing ``skip`` is a 1x1
conv with the layer's stride (**assumption**, as in ``arch_encoding``: the key does not say).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hwsim.errors import SearchError
from hwsim.latency.arch_encoding import (
    FBNET_INPUT_HW,
    FBNET_OPS,
    FBNET_STEM_CHANNELS,
    fbnet_layers,
)
from hwsim.latency.op_key import OpKey
from hwsim.search.space import ArchOp, CostTerm, SearchSpace

FBNET_HEAD_CHANNELS = 1504  # FBNetV1 CIFAR setting in HW-NAS-Bench
FBNET_OP_NAMES = tuple(op.name for op in FBNET_OPS)


class FBNetSpace(SearchSpace):
    """22 layers x 9 ops (see module docstring)."""

    name = "fbnet"
    key_format = "fbnet"

    def __init__(self, classes: int = 100) -> None:
        if not isinstance(classes, int) or classes < 1:
            raise SearchError(f"fbnet: classes must be a positive integer, got {classes!r}")
        self.classes = classes
        self.layers = fbnet_layers()
        super().__init__([FBNET_OP_NAMES] * len(self.layers),
                         slot_names=[f"layer{i}" for i in range(len(self.layers))])
        last = self.layers[-1]
        self.out_hw = last.hw_in // last.stride
        self.out_channels = last.c_out

    def layer_key(self, slot: int, choice: int) -> OpKey:
        layer, op = self.layers[slot], FBNET_OPS[choice]
        h, s = layer.hw_in, layer.stride
        ho = h // s
        if op.skip:
            return OpKey("Skip", (h, h, layer.c_in), (ho, ho, layer.c_out), stride=s)
        return OpKey("ConvBlock", (h, h, layer.c_in), (ho, ho, layer.c_out), expand=op.expand,
                     kernel=op.kernel, stride=s, groups=op.groups)

    def fixed_keys(self) -> tuple[OpKey, ...]:
        h0, hw, head = FBNET_INPUT_HW, self.out_hw, FBNET_HEAD_CHANNELS
        return (
            OpKey("ConvNorm", (h0, h0, 3), (h0, h0, FBNET_STEM_CHANNELS), kernel=3, stride=1,
                  groups=1),
            OpKey("ConvNorm", (hw, hw, self.out_channels), (hw, hw, head), kernel=1, stride=1,
                  groups=1),
            OpKey("AvgP", (hw, hw, head), (1, 1, head), kernel=hw, stride=1),
            OpKey("FC", (head,), (self.classes,)),
        )

    def cost_terms(self) -> list[CostTerm]:
        def cell(slot: int):  # noqa: ANN202
            def keys(choice: tuple[int, ...]) -> tuple[OpKey, ...] | None:
                key = self.layer_key(slot, choice[0])
                # an identity skip runs nothing
                return () if key.op == "Skip" and key.input == key.output else (key,)
            return keys
        return [CostTerm((s,), cell(s), self.slot_names[s]) for s in range(self.n_slots)]

    def ops(self, arch: Any) -> list[ArchOp]:
        row = self.arch_row(arch)
        stem, head, pool, fc = self.fixed_keys()
        out = [ArchOp(None, "stem", stem, self.key_format)]
        for slot, c in enumerate(row):
            key = self.layer_key(slot, int(c))
            if not (key.op == "Skip" and key.input == key.output):
                out.append(ArchOp(slot, FBNET_OP_NAMES[int(c)], key, self.key_format))
        out += [ArchOp(None, "head", head, self.key_format),
                ArchOp(None, "avgpool", pool, self.key_format),
                ArchOp(None, "fc", fc, self.key_format)]
        return out

    def encode(self, arch: Any) -> list[str]:
        return self.choice_names(arch)

    def decode(self, published: Any) -> np.ndarray:
        """22 op names (``k3_e6`` ...) or 22 op indices (HW-NAS-Bench / HELP columns)."""
        if not isinstance(published, (list, tuple, np.ndarray)) or len(published) != \
                self.n_slots:
            raise SearchError(f"fbnet: decode takes {self.n_slots} op names or indices")
        if all(isinstance(p, str) for p in published):
            bad = [p for p in published if p not in FBNET_OP_NAMES]
            if bad:
                raise SearchError(f"fbnet: unknown op(s) {bad}; allowed: "
                                  f"{', '.join(FBNET_OP_NAMES)}")
            return self.arch_row(np.array([FBNET_OP_NAMES.index(p) for p in published]))
        return self.arch_row(np.asarray(published))

    def build(self, arch: Any, seed: int = 0) -> Any:
        import torch

        from hwsim.search.torch_blocks import ClassifierHead, ConvBNAct, FBNetBlock, finish

        row = self.arch_row(arch)
        torch.manual_seed(seed)
        layers: list[torch.nn.Module] = [ConvBNAct(3, FBNET_STEM_CHANNELS, 3, 1, act=None)]
        for slot, c in enumerate(row):
            layer, op = self.layers[slot], FBNET_OPS[int(c)]
            if op.skip:
                if layer.stride == 1 and layer.c_in == layer.c_out:
                    continue
                layers.append(ConvBNAct(layer.c_in, layer.c_out, 1, layer.stride, act=None))
            else:
                layers.append(FBNetBlock(layer.c_in, layer.c_out, op.expand, op.kernel,
                                         layer.stride, op.groups))
        layers += [ConvBNAct(self.out_channels, FBNET_HEAD_CHANNELS, 1, 1, act=None),
                   ClassifierHead(FBNET_HEAD_CHANNELS, self.classes)]
        return finish(torch.nn.Sequential(*layers), seed)

    def example_input(self) -> Any:
        import torch

        return torch.zeros(1, 3, FBNET_INPUT_HW, FBNET_INPUT_HW)
