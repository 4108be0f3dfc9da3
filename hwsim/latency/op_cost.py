"""Work of one op configuration: multiply-accumulates, parameters and tensor elements moved.

Used by the roofline model (modeled latency) and as kernel features. Conventions:
- convolutions pad ``kernel // 2`` ("same" for odd kernels); MACs = Ho*Wo*Cout*(Cin/groups)*K*K.
- elements moved = activation elements read + written + parameters, each tensor once
  (no cache reuse modeled). Inside a block (``expanded_conv``, ``ConvBlock``) every intermediate
  tensor is written and read once: an **assumption** of no on-chip fusion inside blocks.
- the semantics of the published block keys follow their sources: ProxylessNAS
  ``MBInvertedConvLayer`` (1x1 expand conv omitted when expand == 1, depthwise KxK stride S,
  1x1 projection, residual add when idskip), OFA ``MBConvLayer`` (same with ``mid`` channels,
  expand conv omitted when mid == Cin, SE squeeze to make_divisible(mid // 4, 8)), FBNet
  ``ConvBlock`` (1x1 group conv, KxK depthwise, 1x1 group conv, residual when shapes match).
  ``Skip`` with a shape change is modeled as a 1x1 conv of stride S (**assumption**: the key does
  not say which reduction HW-NAS-Bench used).
"""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.errors import LatencyError
from hwsim.latency.op_key import OpKey

ELEMENTWISE_OPS = ("relu", "relu6", "clip", "hswish", "hsigmoid", "sigmoid", "swish", "add",
                   "mul", "bn", "channel_shuffle", "add_broadcast", "mul_broadcast")
POOL_OPS = ("avgpool", "maxpool", "gap")
KERNEL_OPS = ("conv", "dwconv", "linear", *POOL_OPS, *ELEMENTWISE_OPS)
BLOCK_OPS = ("expanded_conv", "Conv", "Conv_1", "Conv_2", "Logits", "AvgPool2D", "ConvBlock",
             "Skip", "ConvNorm", "AvgP", "FC")


@dataclass(frozen=True)
class OpCost:
    """macs: multiply-accumulates; params: weight+bias elements; act_elems: activation
    elements read plus written."""

    macs: int
    params: int
    act_elems: int

    def __add__(self, other: OpCost) -> OpCost:
        return OpCost(self.macs + other.macs, self.params + other.params,
                      self.act_elems + other.act_elems)

    def bytes_moved(self, wbits: int, abits: int) -> float:
        """Bytes read and written with weights at ``wbits`` and activations at ``abits``."""
        return (self.params * wbits + self.act_elems * abits) / 8.0


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _conv(h: int, w: int, cin: int, cout: int, k: int, s: int, g: int, residual: bool) -> OpCost:
    ho, wo = (h + 2 * (k // 2) - k) // s + 1, (w + 2 * (k // 2) - k) // s + 1
    macs = ho * wo * cout * (cin // g) * k * k
    params = cout * (cin // g) * k * k + cout
    act = h * w * cin + ho * wo * cout + (2 * ho * wo * cout if residual else 0)
    return OpCost(macs, params, act)


def _make_divisible(v: float, divisor: int = 8) -> int:
    # OFA make_divisible (min_value = divisor): round to nearest multiple, never below 90 %.
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _need_hwc(key: OpKey) -> None:
    if len(key.input) != 3 or len(key.output) != 3:
        raise LatencyError(f"{key}: op {key.op!r} needs HxWxC input and output shapes")


def _need(key: OpKey, *names: str) -> None:
    missing = [n for n in names if getattr(key, n) is None]
    if missing:
        raise LatencyError(f"{key}: op {key.op!r} needs field(s) {', '.join(missing)}")


def op_cost(key: OpKey) -> OpCost:
    """MACs, parameters and activation elements of ``key``; LatencyError for unknown ops."""
    op = key.op
    if op in ("conv", "dwconv", "ConvNorm"):
        _need_hwc(key)
        _need(key, "kernel", "stride")
        (h, w, cin), (_, _, cout) = key.input, key.output
        g = key.groups if key.groups is not None else (cin if op == "dwconv" else 1)
        if g < 1 or cin % g or cout % g:
            raise LatencyError(f"{key}: groups {g} must divide Cin {cin} and Cout {cout}")
        return _conv(h, w, cin, cout, key.kernel, key.stride, g, bool(key.idskip))
    if op in ("linear", "FC"):
        cin, cout = key.input[-1], key.output[-1]
        extra = 2 * cout if key.idskip else 0
        return OpCost(cin * cout, cin * cout + cout, _numel(key.input) + cout + extra)
    if op in ("avgpool", "maxpool", "AvgP"):
        _need_hwc(key)
        _need(key, "kernel")
        ho, wo, c = key.output
        return OpCost(0, 0, _numel(key.input) + ho * wo * c)
    if op in ("gap", "AvgPool2D"):
        return OpCost(0, 0, _numel(key.input) + key.output[-1])
    if op in ELEMENTWISE_OPS:
        n = _numel(key.output)
        reads = 2 * n if op in ("add", "mul", "add_broadcast", "mul_broadcast") else n
        return OpCost(0, 2 * key.output[-1] if op == "bn" else 0, reads + n)
    if op in ("Conv", "Conv_1", "Conv_2"):
        _need_hwc(key)
        (h, w, cin), (ho, _, cout) = key.input, key.output
        k = 3 if op == "Conv" else 1  # ProxylessNAS/OFA: first conv 3x3, later ones 1x1
        s = max(1, round(h / ho))
        return _conv(h, w, cin, cout, k, s, 1, False)
    if op == "Logits":
        c = key.input[-1]
        cout = key.output[-1]
        return OpCost(c * cout, c * cout + cout, _numel(key.input) + c + cout)
    if op == "expanded_conv":
        _need_hwc(key)
        _need(key, "kernel", "stride")
        (h, w, cin), (ho, wo, cout) = key.input, key.output
        if key.mid is not None:
            mid = key.mid
        elif key.expand is not None:
            mid = cin * key.expand
        else:
            raise LatencyError(f"{key}: expanded_conv needs expand or mid")
        cost = OpCost(0, 0, 0)
        if mid != cin:
            cost = cost + _conv(h, w, cin, mid, 1, 1, 1, False)
        cost = cost + _conv(h, w, mid, mid, key.kernel, key.stride, mid, False)
        if key.se:
            se_mid = _make_divisible(mid // 4)
            cost = cost + OpCost(2 * mid * se_mid, 2 * mid * se_mid + mid + se_mid,
                                 3 * ho * wo * mid)
        return cost + _conv(ho, wo, mid, cout, 1, 1, 1, bool(key.idskip))
    if op == "ConvBlock":
        _need_hwc(key)
        _need(key, "expand", "kernel", "stride", "groups")
        (h, w, cin), (ho, wo, cout) = key.input, key.output
        mid, g = cin * key.expand, key.groups
        residual = key.stride == 1 and cin == cout
        return (_conv(h, w, cin, mid, 1, 1, g, False)
                + _conv(h, w, mid, mid, key.kernel, key.stride, mid, False)
                + _conv(ho, wo, mid, cout, 1, 1, g, residual))
    if op == "Skip":
        _need_hwc(key)
        (h, w, cin), (_, _, cout) = key.input, key.output
        if key.stride in (None, 1) and cin == cout:
            return OpCost(0, 0, 0)
        return _conv(h, w, cin, cout, 1, key.stride or 1, 1, False)
    raise LatencyError(f"{key}: no cost model for op {op!r}; known ops: "
                       f"{', '.join(KERNEL_OPS + BLOCK_OPS)}")
