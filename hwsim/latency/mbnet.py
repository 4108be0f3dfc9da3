"""Reference networks for latency work: the ProxylessNAS mobile space, MobileNetV2, ResNet-18.

ProxylessNAS mobile space (Cai et al., ICLR'19; the layout of its published ``mobile_trim`` /
``pixel_trim`` LUTs): 224x224 input, first conv 3x3 s2 -> 32 (BN, ReLU6), a fixed MBConv
(expand 1, 3x3) 32 -> 16, six stages (channels, blocks, first stride) = (24, 4, 2), (40, 4, 2),
(80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1), every block one of k{3,5,7} x e{3,6} or
``zero`` (skipped; not allowed as the first block of a stage), a 1x1 conv 320 -> 1280 (ReLU6),
global average pooling and a 1000-way linear layer.

An architecture spec is ``proxyless:<21 comma-separated choices>`` (choices ``k3e3``,
``k3e6``, ``k5e3``, ``k5e6``, ``k7e3``, ``k7e6``, ``zero``), ``mobilenetv2`` or ``resnet18``.
Networks become ONNX models (BN folded, ``onnx_builder``) or, for MobileNet-style ones, the
published block-level keys.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import onnx

from hwsim.errors import LatencyError
from hwsim.latency.onnx_builder import OnnxNetBuilder
from hwsim.latency.op_key import OpKey

PROXYLESS_STAGES = ((24, 4, 2), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1))
PROXYLESS_CHOICES = ("k3e3", "k3e6", "k5e3", "k5e6", "k7e3", "k7e6", "zero")
PROXYLESS_N_BLOCKS = sum(n for _, n, _ in PROXYLESS_STAGES)


@dataclass(frozen=True)
class MBBlock:
    """One inverted-residual block; ``hw`` is the input height = width."""

    hw: int
    cin: int
    cout: int
    expand: int
    kernel: int
    stride: int

    @property
    def hw_out(self) -> int:
        return (self.hw - 1) // self.stride + 1

    @property
    def idskip(self) -> bool:
        return self.stride == 1 and self.cin == self.cout


@dataclass(frozen=True)
class MBNet:
    """Stem conv 3x3 s2 + ReLU6, blocks, 1x1 head conv + ReLU6, global pool, linear."""

    name: str
    input_size: int
    stem: int
    blocks: tuple[MBBlock, ...]
    head: int
    classes: int = 1000


def proxyless_net(choices: Sequence[str], input_size: int = 224) -> MBNet:
    """The ProxylessNAS mobile network with the given 21 block choices."""
    if len(choices) != PROXYLESS_N_BLOCKS:
        raise LatencyError(f"a ProxylessNAS architecture has {PROXYLESS_N_BLOCKS} block choices, "
                           f"got {len(choices)}")
    hw = (input_size - 1) // 2 + 1
    blocks = [MBBlock(hw, 32, 16, 1, 3, 1)]
    cin, i = 16, 0
    for cout, n, first_stride in PROXYLESS_STAGES:
        for j in range(n):
            choice = choices[i]
            if choice not in PROXYLESS_CHOICES:
                raise LatencyError(f"block {i}: unknown choice {choice!r}; allowed: "
                                   f"{', '.join(PROXYLESS_CHOICES)}")
            if choice == "zero":
                if j == 0:
                    raise LatencyError(f"block {i}: 'zero' is not allowed as the first block "
                                       f"of a stage (it changes the shape)")
            else:
                k, e = int(choice[1]), int(choice[3])
                s = first_stride if j == 0 else 1
                block = MBBlock(hw, cin, cout, e, k, s)
                blocks.append(block)
                hw, cin = block.hw_out, cout
            i += 1
    return MBNet(f"proxyless:{','.join(choices)}", input_size, 32, tuple(blocks), 1280)


def random_proxyless_choices(rng: random.Random) -> list[str]:
    """Uniformly random block choices (``zero`` only where allowed)."""
    out = []
    for _, n, _ in PROXYLESS_STAGES:
        for j in range(n):
            out.append(rng.choice(PROXYLESS_CHOICES[:-1] if j == 0 else PROXYLESS_CHOICES))
    return out


def mobilenetv2_net(input_size: int = 224) -> MBNet:
    """MobileNetV2 1.0 (Sandler et al. 2018, Table 2): (t, c, n, s) settings, all 3x3."""
    settings = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))
    hw, cin, blocks = (input_size - 1) // 2 + 1, 32, []
    for t, c, n, s in settings:
        for j in range(n):
            b = MBBlock(hw, cin, c, t, 3, s if j == 0 else 1)
            blocks.append(b)
            hw, cin = b.hw_out, c
    return MBNet("mobilenetv2", input_size, 32, tuple(blocks), 1280)


def mbnet_block_keys(net: MBNet) -> list[OpKey]:
    """The network as ProxylessNAS-format block keys (Conv, expanded_conv, Conv_1, Logits)."""
    s0 = (net.input_size - 1) // 2 + 1
    keys = [OpKey("Conv", (net.input_size, net.input_size, 3), (s0, s0, net.stem))]
    for b in net.blocks:
        keys.append(OpKey("expanded_conv", (b.hw, b.hw, b.cin), (b.hw_out, b.hw_out, b.cout),
                          expand=b.expand, kernel=b.kernel, stride=b.stride,
                          idskip=int(b.idskip)))
    last = net.blocks[-1]
    hw, c = last.hw_out, last.cout
    keys.append(OpKey("Conv_1", (hw, hw, c), (hw, hw, net.head)))
    keys.append(OpKey("Logits", (hw, hw, net.head), (net.classes,)))
    return keys


def mbnet_onnx(net: MBNet, seed: int = 0) -> onnx.ModelProto:
    """ONNX model of a MobileNet-style network (BN folded into the convolutions)."""
    b = OnnxNetBuilder(seed)
    x = b.input((3, net.input_size, net.input_size), "image")
    y = b.act(b.conv(x, net.stem, 3, 2), "relu6")
    for blk in net.blocks:
        y = b.mbconv(y, blk.cout, blk.cin * blk.expand, blk.kernel, blk.stride, blk.idskip)
    y = b.act(b.conv(y, net.head, 1, 1), "relu6")
    y = b.linear(b.flatten(b.gap(y)), net.classes)
    return b.model([y])


def resnet18_onnx(input_size: int = 224, seed: int = 0) -> onnx.ModelProto:
    """ResNet-18 (He et al. 2016) with BN folded: conv7x7 s2, maxpool 3x3 s2, 4 stages of 2
    basic blocks (64, 128, 256, 512; 1x1 s2 projection on downsampling), pool, linear."""
    b = OnnxNetBuilder(seed)
    x = b.input((3, input_size, input_size), "image")
    y = b.pool(b.act(b.conv(x, 64, 7, 2), "relu"), "maxpool", 3, 2, 1)
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for j in range(2):
            s = stride if j == 0 else 1
            z = b.act(b.conv(y, cout, 3, s), "relu")
            z = b.conv(z, cout, 3, 1)
            short = y if (s == 1 and cin == cout) else b.conv(y, cout, 1, s)
            y = b.act(b.add(z, short), "relu")
            cin = cout
    y = b.linear(b.flatten(b.gap(y)), 1000)
    return b.model([y])


def arch_onnx(spec: str, seed: int = 0) -> onnx.ModelProto:
    """ONNX model of an architecture spec (see module docstring)."""
    return resnet18_onnx(seed=seed) if spec == "resnet18" else mbnet_onnx(parse_arch(spec), seed)


def parse_arch(spec: str) -> MBNet:
    """``proxyless:<choices>`` or ``mobilenetv2`` -> MBNet."""
    if spec == "mobilenetv2":
        return mobilenetv2_net()
    if spec.startswith("proxyless:"):
        return proxyless_net([c.strip() for c in spec[len("proxyless:"):].split(",")])
    raise LatencyError(f"unknown architecture spec {spec!r}; allowed: 'proxyless:<"
                       f"{PROXYLESS_N_BLOCKS} choices of {'|'.join(PROXYLESS_CHOICES)}>', "
                       f"'mobilenetv2', 'resnet18'")
