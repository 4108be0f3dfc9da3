"""MnasNet factorized hierarchical search space (Tan et al., CVPR'19, section 4.1).

The network is MobileNetV2's skeleton of 7 blocks, (filters, layers, stride) = (16,1,1),
(24,2,2), (32,3,2), (64,4,2), (96,3,1), (160,3,2), (320,1,1), after a 3x3 stride-2 stem of 32
channels on 224x224, and before a 1x1 conv to 1280, global pool and a 1000-way linear layer
(ReLU everywhere, as MnasNet-A1/B1). Every block searches, for all its layers at once:

========  =====================================================================================
slot      choices (this discretisation)
========  =====================================================================================
conv      ``sepconv`` (depthwise separable = MBConv expand 1), ``mbconv3``, ``mbconv6``
kernel    ``k3``, ``k5``
se        ``se0``, ``se0.25``
skip      ``noskip``, ``skip`` (identity residual on layers with stride 1 and Cin == Cout)
filters   multiples of 8 within [0.75, 1.25] x MobileNetV2's filters of the block
layers    ``n+0``, ``n+1``, ``n-1`` (MobileNetV2's count; ``n-1`` not allowed where n = 1)
========  =====================================================================================

42 slots (7 blocks x 6). Deviations from the paper, stated: the paper's regular-conv ConvOp and
pooling skip are left out (no released MnasNet uses them and they have no ProxylessNAS/OFA key);
the paper's filter grid {0.75, 1.0, 1.25} x MobileNetV2 does not contain the released widths
(A1: 112 = 1.17 x 96, B1: 192 = 1.2 x 160), so filters here are every multiple of 8 in that
range, which holds them. Squeeze-excite follows OFA (squeeze to make_divisible(mid // 4, 8),
h-sigmoid gate), not TF MnasNet's (input_filters * 0.25, sigmoid), so that the OFA key ``se:1``
means what is built.

Published form: the block strings of ``tensorflow/tpu`` ``mnasnet_models.py``
(``r3_k5_s22_e6_i40_o80_se0.25[_noskip]``). Table keys: OFA ``expanded_conv`` keys per layer
(``act: relu`` = ``hs:0``); stem and head are canonical ``conv`` keys with ``act: relu`` (the
ProxylessNAS ``Conv``/``Conv_1`` keys mean ReLU6) and ``Logits``.

Latency is not additive per slot here: a block's layers depend on all six of its slots and on
the previous block's filters, so each block is one cost term over 7 slots (6 for block 0), and
the head conv a term over the last block's filters.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from hwsim.errors import SearchError
from hwsim.latency.op_key import OpKey
from hwsim.search.space import ArchOp, CostTerm, SearchSpace

MNASNET_BASE = ((16, 1, 1), (24, 2, 2), (32, 3, 2), (64, 4, 2), (96, 3, 1), (160, 3, 2),
                (320, 1, 1))  # MobileNetV2 (filters, layers, first stride) per block
CONV_CHOICES = ("sepconv", "mbconv3", "mbconv6")
CONV_EXPAND = (1, 3, 6)
KERNEL_CHOICES = ("k3", "k5")
SE_CHOICES = ("se0", "se0.25")
SKIP_CHOICES = ("noskip", "skip")
LAYER_CHOICES = ("n+0", "n+1", "n-1")
LAYER_OFFSET = (0, 1, -1)
FACTORS = ("conv", "kernel", "se", "skip", "filters", "layers")
_BLOCK_STRING = re.compile(r"^r(\d+)_k(\d+)_s(\d)(\d)_e(\d+)_i(\d+)_o(\d+)(?:_se([0-9.]+))?"
                           r"(_noskip)?$")


def filter_choices(base: int) -> tuple[int, ...]:
    """Multiples of 8 in [0.75 * base, 1.25 * base]."""
    lo, hi = 0.75 * base, 1.25 * base
    return tuple(c for c in range(8, int(hi) + 1, 8) if lo <= c <= hi)


class MnasNetSpace(SearchSpace):
    """See module docstring."""

    name = "mnasnet"
    key_format = "ofa"

    def __init__(self, input_size: int = 224, stem: int = 32, head: int = 1280,
                 classes: int = 1000) -> None:
        for n, v in (("input_size", input_size), ("stem", stem), ("head", head),
                     ("classes", classes)):
            if not isinstance(v, int) or v < 1:
                raise SearchError(f"mnasnet: {n} must be a positive integer, got {v!r}")
        self.input_size, self.stem, self.head, self.classes = input_size, stem, head, classes
        self.filters = tuple(filter_choices(c) for c, _, _ in MNASNET_BASE)
        choices, names = [], []
        for b in range(len(MNASNET_BASE)):
            choices += [CONV_CHOICES, KERNEL_CHOICES, SE_CHOICES, SKIP_CHOICES,
                        tuple(str(c) for c in self.filters[b]), LAYER_CHOICES]
            names += [f"block{b}.{f}" for f in FACTORS]
        n_ops = max(len(c) for c in choices)
        mask = np.zeros((len(choices), n_ops), dtype=bool)
        for i, c in enumerate(choices):
            mask[i, :len(c)] = True
        for b, (_, n, _) in enumerate(MNASNET_BASE):
            if n == 1:
                mask[self.slot(b, "layers"), LAYER_OFFSET.index(-1)] = False
        super().__init__(choices, mask, names)
        # feature size at the input of every block
        hw = (input_size - 1) // 2 + 1
        self.block_hw = []
        for _, _, s in MNASNET_BASE:
            self.block_hw.append(hw)
            hw = (hw - 1) // s + 1
        self.out_hw = hw

    @staticmethod
    def slot(block: int, factor: str) -> int:
        return 6 * block + FACTORS.index(factor)

    # -- keys ------------------------------------------------------------------------------
    def block_layer_keys(self, block: int, conv: int, kernel: int, se: int, skip: int,
                         filt: int, layers: int, cin: int) -> tuple[OpKey, ...] | None:
        """The OFA keys of all layers of ``block`` (None when ``layers`` is not allowed)."""
        base_f, base_n, stride = MNASNET_BASE[block]
        n = base_n + LAYER_OFFSET[layers]
        if n < 1:
            return None
        cout = self.filters[block][filt]
        e, k = CONV_EXPAND[conv], (3, 5)[kernel]
        keys = []
        hw = self.block_hw[block]
        for j in range(n):
            s = stride if j == 0 else 1
            ci = cin if j == 0 else cout
            ho = (hw - 1) // s + 1
            keys.append(OpKey("expanded_conv", (hw, hw, ci), (ho, ho, cout), mid=ci * e,
                              kernel=k, stride=s, idskip=int(bool(skip) and s == 1 and
                                                             ci == cout),
                              se=se, act="relu"))
            hw = ho
        return tuple(keys)

    def _head_key(self, cin: int) -> OpKey:
        hw = self.out_hw
        return OpKey("conv", (hw, hw, cin), (hw, hw, self.head), kernel=1, stride=1, act="relu")

    def fixed_keys(self) -> tuple[OpKey, ...]:
        s0 = self.block_hw[0]
        return (OpKey("conv", (self.input_size, self.input_size, 3), (s0, s0, self.stem),
                      kernel=3, stride=2, act="relu"),
                OpKey("Logits", (self.out_hw, self.out_hw, self.head), (self.classes,)))

    def cost_terms(self) -> list[CostTerm]:
        terms = []
        for b in range(len(MNASNET_BASE)):
            own = tuple(self.slot(b, f) for f in FACTORS)
            slots = own if b == 0 else own + (self.slot(b - 1, "filters"),)

            def keys(choice: tuple[int, ...], b: int = b) -> tuple[OpKey, ...] | None:
                cin = self.stem if b == 0 else self.filters[b - 1][choice[6]]
                return self.block_layer_keys(b, *choice[:6], cin=cin)
            terms.append(CostTerm(slots, keys, f"block{b}"))
        last = len(MNASNET_BASE) - 1
        terms.append(CostTerm((self.slot(last, "filters"),),
                              lambda c: (self._head_key(self.filters[last][c[0]]),), "head"))
        return terms

    def _blocks(self, row: np.ndarray) -> list[tuple[int, ...]]:
        return [tuple(int(v) for v in row[6 * b: 6 * b + 6]) for b in range(len(MNASNET_BASE))]

    def ops(self, arch: Any) -> list[ArchOp]:
        row = self.arch_row(arch)
        stem, logits = self.fixed_keys()
        out = [ArchOp(None, "stem", stem, self.key_format)]
        cin = self.stem
        for b, choice in enumerate(self._blocks(row)):
            keys = self.block_layer_keys(b, *choice, cin=cin)
            if keys is None:  # excluded by the mask; arch_row has checked
                raise SearchError(f"mnasnet: block {b} has no layers")
            for j, key in enumerate(keys):
                slot = self.slot(b, "conv")
                out.append(ArchOp(slot, f"block{b}.layer{j}", key, self.key_format))
            cin = self.filters[b][choice[4]]
        out += [ArchOp(self.slot(len(MNASNET_BASE) - 1, "filters"), "head",
                       self._head_key(cin), self.key_format),
                ArchOp(None, "classifier", logits, self.key_format)]
        return out

    # -- published forms -------------------------------------------------------------------
    def encode(self, arch: Any) -> list[str]:
        """TF MnasNet block strings (``r3_k5_s22_e6_i40_o80_se0.25``)."""
        row = self.arch_row(arch)
        out, cin = [], self.stem
        for b, (conv, kernel, se, skip, filt, layers) in enumerate(self._blocks(row)):
            _, base_n, s = MNASNET_BASE[b]
            cout = self.filters[b][filt]
            text = (f"r{base_n + LAYER_OFFSET[layers]}_k{(3, 5)[kernel]}_s{s}{s}_e"
                    f"{CONV_EXPAND[conv]}_i{cin}_o{cout}")
            if se:
                text += "_se0.25"
            if not skip:
                text += "_noskip"
            out.append(text)
            cin = cout
        return out

    def decode(self, published: Any) -> np.ndarray:
        """TF MnasNet block strings (one per block) -> arch."""
        if not isinstance(published, (list, tuple)) or len(published) != len(MNASNET_BASE) or \
                not all(isinstance(p, str) for p in published):
            raise SearchError(f"mnasnet: decode takes {len(MNASNET_BASE)} block strings like "
                              f"'r3_k5_s22_e6_i40_o80_se0.25'")
        row, cin = [], self.stem
        for b, text in enumerate(published):
            m = _BLOCK_STRING.match(text)
            if m is None:
                raise SearchError(f"mnasnet: block {b}: {text!r} is not a block string "
                                  f"r<N>_k<K>_s<S><S>_e<E>_i<IN>_o<OUT>[_se<R>][_noskip]")
            r, k, s1, s2, e, i, o = (int(g) for g in m.groups()[:7])
            se_text, noskip = m.group(8), m.group(9)
            base_f, base_n, stride = MNASNET_BASE[b]

            def fail(what: str, b: int = b, text: str = text) -> SearchError:
                return SearchError(f"mnasnet: block {b} ({text!r}): {what}")
            if (s1, s2) != (stride, stride):
                raise fail(f"stride {s1}{s2}; the space has {stride}{stride} there")
            if i != cin:
                raise fail(f"input filters {i}, but the previous block gives {cin}")
            if o not in self.filters[b]:
                raise fail(f"output filters {o} not among {self.filters[b]}")
            if r - base_n not in LAYER_OFFSET:
                raise fail(f"{r} layers; allowed {base_n - 1}..{base_n + 1}")
            if e not in CONV_EXPAND or k not in (3, 5):
                raise fail(f"expand {e} / kernel {k}; allowed expand {CONV_EXPAND}, kernel 3, 5")
            if se_text is not None and float(se_text) not in (0.0, 0.25):
                raise fail(f"se ratio {se_text}; allowed 0 or 0.25")
            se = int(se_text is not None and float(se_text) == 0.25)
            row += [CONV_EXPAND.index(e), (3, 5).index(k), se, int(noskip is None),
                    self.filters[b].index(o), LAYER_OFFSET.index(r - base_n)]
            cin = o
        return self.arch_row(np.array(row))

    # -- network ---------------------------------------------------------------------------
    def build(self, arch: Any, seed: int = 0) -> Any:
        import torch

        from hwsim.search.torch_blocks import ClassifierHead, ConvBNAct, MBConv, finish

        torch.manual_seed(seed)
        layers: list[torch.nn.Module] = [ConvBNAct(3, self.stem, 3, 2, act="relu")]
        c_last = self.stem
        for op in self.ops(arch):
            key = op.key
            if key.op != "expanded_conv":
                continue
            layers.append(MBConv(key.input[2], key.output[2], key.mid, key.kernel, key.stride,
                                 "relu", se=bool(key.se), skip=bool(key.idskip)))
            c_last = key.output[2]
        layers += [ConvBNAct(c_last, self.head, 1, 1, act="relu"),
                   ClassifierHead(self.head, self.classes)]
        return finish(torch.nn.Sequential(*layers), seed)

    def example_input(self) -> Any:
        import torch

        return torch.zeros(1, 3, self.input_size, self.input_size)
