"""ProxylessNAS mobile search space (Cai et al., ICLR'19; DESIGN.md B8).

Backbone: first conv 3x3 (stride ``stem_stride``) -> ``stem`` channels + BN + ReLU6; a fixed
MBConv (expand 1, 3x3) -> ``first_block``; searchable stages (width, blocks, first stride),
search default (24, 4, 2), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1);
1x1 conv -> ``head`` + BN + ReLU6, global pool, linear. Every searchable block is one of
``k3e3 k3e6 k5e3 k5e6 k7e3 k7e6`` (MBConv kernel k, expand e) or ``zero`` (the block is
skipped), ``zero`` only where the block can be an identity (stride 1 and Cin == Cout, as in the
ProxylessNAS search code); such blocks carry an identity shortcut.

Published forms: ``encode`` gives the ``blocks`` list of a ProxylessNASNets net config (the JSON
format of ``proxyless_mobile.config``: MobileInvertedResidualBlock with MBInvertedConvLayer or
ZeroLayer and IdentityLayer shortcuts), including the fixed first block; ``decode`` accepts that
list, a whole net config (a dict with ``blocks``), or a list of choice names. Table keys are the
ProxylessNAS LUT keys (``Conv``, ``expanded_conv``, ``Conv_1``, ``Logits``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hwsim.errors import SearchError
from hwsim.latency.mbnet import PROXYLESS_CHOICES, PROXYLESS_STAGES
from hwsim.latency.op_key import OpKey
from hwsim.search.space import ArchOp, CostTerm, SearchSpace

_SEARCH_WIDTHS = tuple(c for c, _, _ in PROXYLESS_STAGES)
_SEARCH_BLOCKS = tuple(n for _, n, _ in PROXYLESS_STAGES)
_SEARCH_STRIDES = tuple(s for _, _, s in PROXYLESS_STAGES)
_ZERO = len(PROXYLESS_CHOICES) - 1  # index of "zero"


def _conv_out(hw: int, stride: int) -> int:
    return (hw - 1) // stride + 1


class ProxylessSpace(SearchSpace):
    """The ProxylessNAS mobile space; all sizes configurable (the digits search uses a small
    one)."""

    key_format = "proxyless"

    def __init__(self, name: str = "proxyless", input_size: int = 224, in_channels: int = 3,
                 stem: int = 32, stem_stride: int = 2, first_block: int = 16,
                 widths: Sequence[int] = _SEARCH_WIDTHS,
                 n_blocks: Sequence[int] = _SEARCH_BLOCKS,
                 strides: Sequence[int] = _SEARCH_STRIDES, head: int = 1280,
                 classes: int = 1000) -> None:
        self.name = name
        if not len(widths) == len(n_blocks) == len(strides) or not widths:
            raise SearchError(f"{name}: widths, n_blocks and strides need one entry per stage, "
                              f"got {len(widths)}, {len(n_blocks)}, {len(strides)}")
        sizes = (input_size, in_channels, stem, stem_stride, first_block, head, classes,
                 *widths, *n_blocks, *strides)
        if any(not isinstance(v, int) or v < 1 for v in sizes):
            raise SearchError(f"{name}: sizes, widths, block counts and strides must be "
                              f"positive integers")
        self.input_size, self.in_channels = input_size, in_channels
        self.stem, self.stem_stride, self.first_block = stem, stem_stride, first_block
        self.widths, self.n_blocks, self.strides = tuple(widths), tuple(n_blocks), tuple(strides)
        self.head, self.classes = head, classes
        # (hw_in, cin, cout, stride) of every searchable block when no block is zero (a zero
        # block keeps the shape, so these never change).
        self.stem_hw = _conv_out(input_size, stem_stride)
        layout = []
        hw, cin = self.stem_hw, first_block
        for width, n, stride in zip(self.widths, self.n_blocks, self.strides, strict=True):
            for j in range(n):
                s = stride if j == 0 else 1
                layout.append((hw, cin, width, s))
                hw, cin = _conv_out(hw, s), width
        self.layout: tuple[tuple[int, int, int, int], ...] = tuple(layout)
        self.out_hw, self.out_channels = hw, cin
        mask = np.ones((len(layout), len(PROXYLESS_CHOICES)), dtype=bool)
        for i, (_, ci, co, s) in enumerate(layout):
            mask[i, _ZERO] = s == 1 and ci == co
        super().__init__([PROXYLESS_CHOICES] * len(layout), mask,
                         [f"block{i}:{co}@s{s}" for i, (_, _, co, s) in enumerate(layout)])

    # -- keys ------------------------------------------------------------------------------
    def block_key(self, slot: int, choice: int) -> OpKey | None:
        """The expanded_conv key of ``choice`` at ``slot`` (None for zero)."""
        if choice == _ZERO:
            return None
        hw, cin, cout, s = self.layout[slot]
        name = PROXYLESS_CHOICES[choice]
        k, e = int(name[1]), int(name[3])
        ho = _conv_out(hw, s)
        return OpKey("expanded_conv", (hw, hw, cin), (ho, ho, cout), expand=e, kernel=k,
                     stride=s, idskip=int(s == 1 and cin == cout))

    def fixed_keys(self) -> tuple[OpKey, ...]:
        s0 = self.stem_hw
        return (
            OpKey("Conv", (self.input_size, self.input_size, self.in_channels),
                  (s0, s0, self.stem)),
            OpKey("expanded_conv", (s0, s0, self.stem), (s0, s0, self.first_block), expand=1,
                  kernel=3, stride=1, idskip=int(self.stem == self.first_block)),
            OpKey("Conv_1", (self.out_hw, self.out_hw, self.out_channels),
                  (self.out_hw, self.out_hw, self.head)),
            OpKey("Logits", (self.out_hw, self.out_hw, self.head), (self.classes,)),
        )

    def cost_terms(self) -> list[CostTerm]:
        def cell(slot: int):  # noqa: ANN202
            def keys(choice: tuple[int, ...]) -> tuple[OpKey, ...] | None:
                (c,) = choice
                if not self.mask[slot, c]:
                    return None
                key = self.block_key(slot, c)
                return () if key is None else (key,)
            return keys
        return [CostTerm((s,), cell(s), self.slot_names[s]) for s in range(self.n_slots)]

    def ops(self, arch: Any) -> list[ArchOp]:
        row = self.arch_row(arch)
        stem, first, conv1, logits = self.fixed_keys()
        out = [ArchOp(None, "first_conv", stem, self.key_format),
               ArchOp(None, "first_block", first, self.key_format)]
        for slot, c in enumerate(row):
            key = self.block_key(slot, int(c))
            if key is not None:
                out.append(ArchOp(slot, PROXYLESS_CHOICES[int(c)], key, self.key_format))
        out += [ArchOp(None, "feature_mix", conv1, self.key_format),
                ArchOp(None, "classifier", logits, self.key_format)]
        return out

    # -- published forms -------------------------------------------------------------------
    def encode(self, arch: Any) -> list[dict[str, Any]]:
        """The ``blocks`` list of a ProxylessNASNets net config (first block included)."""
        row = self.arch_row(arch)

        def shortcut(c: int) -> dict[str, Any]:
            return {"name": "IdentityLayer", "in_channels": c, "out_channels": c}

        blocks = [{"name": "MobileInvertedResidualBlock",
                   "mobile_inverted_conv": {"name": "MBInvertedConvLayer",
                                            "in_channels": self.stem,
                                            "out_channels": self.first_block, "kernel_size": 3,
                                            "stride": 1, "expand_ratio": 1},
                   "shortcut": (shortcut(self.stem) if self.stem == self.first_block
                                else None)}]
        for slot, c in enumerate(row):
            _, cin, cout, s = self.layout[slot]
            name = PROXYLESS_CHOICES[int(c)]
            conv: dict[str, Any] = ({"name": "ZeroLayer", "stride": s} if c == _ZERO else
                                    {"name": "MBInvertedConvLayer", "in_channels": cin,
                                     "out_channels": cout, "kernel_size": int(name[1]),
                                     "stride": s, "expand_ratio": int(name[3])})
            blocks.append({"name": "MobileInvertedResidualBlock", "mobile_inverted_conv": conv,
                           "shortcut": shortcut(cout) if s == 1 and cin == cout else None})
        return blocks

    def decode(self, published: Any) -> np.ndarray:
        """A net config (dict with ``blocks``), its ``blocks`` list, or choice names -> arch."""
        if isinstance(published, dict):
            if "blocks" not in published:
                raise SearchError(f"{self.name}: a ProxylessNASNets config needs 'blocks'")
            published = published["blocks"]
        if not isinstance(published, (list, tuple)):
            raise SearchError(f"{self.name}: decode takes a net config, its blocks list or "
                              f"a list of choice names, got {type(published).__name__}")
        if published and all(isinstance(b, str) for b in published):
            return self._decode_names(list(published))
        if len(published) != self.n_slots + 1:
            raise SearchError(f"{self.name}: expected {self.n_slots + 1} blocks (the fixed "
                              f"first block + {self.n_slots} searchable), got {len(published)}")
        first = _block_conv(published[0], 0)
        want = (self.stem, self.first_block, 3, 1, 1)
        got = tuple(first.get(f) for f in ("in_channels", "out_channels", "kernel_size",
                                            "stride", "expand_ratio"))
        if first.get("name") != "MBInvertedConvLayer" or got != want:
            raise SearchError(f"{self.name}: block 0 must be the fixed MBInvertedConvLayer "
                              f"(in, out, kernel, stride, expand) = {want}, got {got}")
        row = np.zeros(self.n_slots, dtype=np.int64)
        for slot in range(self.n_slots):
            conv = _block_conv(published[slot + 1], slot + 1)
            _, cin, cout, s = self.layout[slot]
            if conv.get("name") == "ZeroLayer":
                row[slot] = _ZERO
            elif conv.get("name") == "MBInvertedConvLayer":
                got = (conv.get("in_channels"), conv.get("out_channels"), conv.get("stride"))
                if got != (cin, cout, s):
                    raise SearchError(f"{self.name}: block {slot + 1}: (in, out, stride) = "
                                      f"{got}, the space has {(cin, cout, s)} there")
                name = f"k{conv.get('kernel_size')}e{conv.get('expand_ratio')}"
                if name not in PROXYLESS_CHOICES:
                    raise SearchError(f"{self.name}: block {slot + 1}: kernel "
                                      f"{conv.get('kernel_size')} / expand "
                                      f"{conv.get('expand_ratio')} is not a candidate "
                                      f"({', '.join(PROXYLESS_CHOICES[:-1])})")
                row[slot] = PROXYLESS_CHOICES.index(name)
            else:
                raise SearchError(f"{self.name}: block {slot + 1}: unknown layer "
                                  f"{conv.get('name')!r}; expected MBInvertedConvLayer or "
                                  f"ZeroLayer")
        return self.arch_row(row)

    def _decode_names(self, names: list[str]) -> np.ndarray:
        if len(names) != self.n_slots:
            raise SearchError(f"{self.name}: expected {self.n_slots} choice names, got "
                              f"{len(names)}")
        bad = [n for n in names if n not in PROXYLESS_CHOICES]
        if bad:
            raise SearchError(f"{self.name}: unknown choice(s) {bad}; allowed: "
                              f"{', '.join(PROXYLESS_CHOICES)}")
        return self.arch_row(np.array([PROXYLESS_CHOICES.index(n) for n in names]))

    # -- network ---------------------------------------------------------------------------
    def build(self, arch: Any, seed: int = 0) -> Any:
        import torch

        from hwsim.search.torch_blocks import ClassifierHead, ConvBNAct, MBConv, finish

        row = self.arch_row(arch)
        torch.manual_seed(seed)
        layers = [ConvBNAct(self.in_channels, self.stem, 3, self.stem_stride, act="relu6"),
                  MBConv(self.stem, self.first_block, self.stem, 3, 1, "relu6",
                         skip=self.stem == self.first_block)]
        for slot, c in enumerate(row):
            key = self.block_key(slot, int(c))
            if key is None:
                continue
            cin, cout = key.input[2], key.output[2]
            layers.append(MBConv(cin, cout, cin * key.expand, key.kernel, key.stride, "relu6",
                                 skip=bool(key.idskip)))
        layers += [ConvBNAct(self.out_channels, self.head, 1, 1, act="relu6"),
                   ClassifierHead(self.head, self.classes)]
        return finish(torch.nn.Sequential(*layers), seed)

    def onnx(self, arch: Any, seed: int = 0) -> Any:
        """ONNX model of the architecture (BN folded, random weights), built with the same
        ``OnnxNetBuilder`` blocks the host tables time: a network to measure end to end."""
        from hwsim.latency.onnx_builder import OnnxNetBuilder

        row = self.arch_row(arch)
        b = OnnxNetBuilder(seed)
        x = b.input((self.in_channels, self.input_size, self.input_size), "image")
        y = b.act(b.conv(x, self.stem, 3, self.stem_stride), "relu6")
        y = b.mbconv(y, self.first_block, self.stem, 3, 1, self.stem == self.first_block)
        for slot, c in enumerate(row):
            key = self.block_key(slot, int(c))
            if key is not None:
                y = b.mbconv(y, key.output[2], key.input[2] * key.expand, key.kernel,
                             key.stride, bool(key.idskip))
        y = b.act(b.conv(y, self.head, 1, 1), "relu6")
        return b.model([b.linear(b.flatten(b.gap(y)), self.classes)])

    def example_input(self) -> Any:
        import torch

        return torch.zeros(1, self.in_channels, self.input_size, self.input_size)


def _block_conv(block: Any, index: int) -> dict[str, Any]:
    if not isinstance(block, dict) or not isinstance(block.get("mobile_inverted_conv"), dict):
        raise SearchError(f"block {index}: expected a MobileInvertedResidualBlock mapping with "
                          f"'mobile_inverted_conv'")
    return block["mobile_inverted_conv"]
