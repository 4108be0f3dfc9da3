"""Kernel keys a published block key stands for (semantics as in ``op_cost``'s docstring).

Activations are fused into the convolution before them and a residual add into the last
1x1 convolution, the usual inference-engine fusion; used to model blocks kernel by kernel.
"""

from __future__ import annotations

from hwsim.errors import LatencyError
from hwsim.latency.op_cost import _make_divisible
from hwsim.latency.op_key import OpKey


def block_kernel_keys(key: OpKey) -> list[OpKey]:
    """Kernel-level keys of block op ``key`` (expanded_conv, Conv, Conv_1, Conv_2, Logits,
    AvgPool2D, ConvBlock, Skip, ConvNorm, AvgP, FC)."""
    op = key.op
    if op in ("Conv", "Conv_1", "Conv_2", "ConvNorm"):
        k = key.kernel if op == "ConvNorm" else (3 if op == "Conv" else 1)
        s = key.stride if op == "ConvNorm" else max(1, round(key.input[0] / key.output[0]))
        g = key.groups if op == "ConvNorm" and key.groups and key.groups > 1 else None
        act = None if op == "ConvNorm" else "relu6"
        return [OpKey("conv", key.input, key.output, kernel=k, stride=s, groups=g, act=act)]
    if op in ("Logits", "FC"):
        keys = []
        c = key.input[-1]
        if len(key.input) == 3 and key.input[:2] != (1, 1):
            keys.append(OpKey("gap", key.input, (1, 1, c)))
        return keys + [OpKey("linear", (c,), (key.output[-1],))]
    if op in ("AvgPool2D",):
        return [OpKey("gap", key.input, (1, 1, key.output[-1]))]
    if op == "AvgP":
        return [OpKey("avgpool", key.input, key.output, kernel=key.kernel, stride=key.stride)]
    if op == "Skip":
        h, w, cin = key.input
        if key.stride in (None, 1) and cin == key.output[2]:
            return []
        return [OpKey("conv", key.input, key.output, kernel=1, stride=key.stride or 1)]
    if op == "expanded_conv":
        (h, w, cin), (ho, wo, cout) = key.input, key.output
        mid = key.mid if key.mid is not None else cin * (key.expand or 1)
        act = key.act or "relu6"
        keys = []
        if mid != cin:
            keys.append(OpKey("conv", (h, w, cin), (h, w, mid), kernel=1, stride=1, act=act))
        keys.append(OpKey("dwconv", (h, w, mid), (ho, wo, mid), kernel=key.kernel,
                          stride=key.stride, act=act))
        if key.se:
            se_mid = _make_divisible(mid // 4)
            keys += [OpKey("gap", (ho, wo, mid), (1, 1, mid)),
                     OpKey("conv", (1, 1, mid), (1, 1, se_mid), kernel=1, stride=1, act="relu"),
                     OpKey("conv", (1, 1, se_mid), (1, 1, mid), kernel=1, stride=1,
                           act="hsigmoid"),
                     OpKey("mul_broadcast", (ho, wo, mid), (ho, wo, mid))]
        keys.append(OpKey("conv", (ho, wo, mid), (ho, wo, cout), kernel=1, stride=1,
                          idskip=1 if key.idskip else None))
        return keys
    if op == "ConvBlock":
        (h, w, cin), (ho, wo, cout) = key.input, key.output
        mid, g = cin * key.expand, key.groups
        gk = g if g and g > 1 else None
        residual = key.stride == 1 and cin == cout
        keys = [OpKey("conv", (h, w, cin), (h, w, mid), kernel=1, stride=1, groups=gk,
                      act="relu")]
        if gk:
            keys.append(OpKey("channel_shuffle", (h, w, mid), (h, w, mid)))
        keys += [OpKey("dwconv", (h, w, mid), (ho, wo, mid), kernel=key.kernel,
                       stride=key.stride, act="relu"),
                 OpKey("conv", (ho, wo, mid), (ho, wo, cout), kernel=1, stride=1, groups=gk,
                       idskip=1 if residual else None)]
        return keys
    raise LatencyError(f"{key}: op {op!r} is not a block op")
