"""Per-layer hardware cost of every (weight bits, activation bits) pair, for the HAQ search.

The layers HAQ quantizes are the graph's conv2d and linear nodes, in graph order. A layer's
activation bits are the bits of its **input** activation (HAQ's ``QConv2d``/``QLinear``
quantize their input with ``a_bit``), so a layer's cost depends on its own pair only and the
total cost is a sum over layers (what the budget walk, the knapsack and the ILP need).

Cost sources (device data, no device names in code):

- ``performance.bit_flexible`` (BitFusion ``bit_brick``, BISMO ``bit_serial``): the model in
  ``hwsim.devices.spec.BitFlexible``; latency in ms per batch of the configuration, energy in
  mJ where the configuration gives energy figures.
- otherwise the roofline of ``performance.peak_macs_per_s`` (``hwsim.latency.roofline``): a
  layer with pair (w, a) runs at the narrowest specified precision whose weight and activation
  bits cover w and a and that has a peak; bytes moved at w and a bits. Energy from
  ``energy_pj_per_mac`` (+ ``energy_pj_per_byte``) of that precision where given.

Size: bytes of the layer's weights at w bits (``params * w / 8``; biases, kept in 32 bits by
every device here, are a constant left out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from hwsim.devices.spec import BitFlexible, BitFlexibleConfiguration, DeviceSpec, Precision
from hwsim.errors import LatencyError, SearchError
from hwsim.graph.ir import Graph, OpType
from hwsim.latency.op_key import OpKey
from hwsim.latency.roofline import RooflineModel

Metric = Literal["latency", "energy", "size"]
METRICS: tuple[str, ...] = ("latency", "energy", "size")
METRIC_UNITS = {"latency": "ms", "energy": "mJ", "size": "bytes"}


@dataclass(frozen=True)
class QuantLayer:
    """One quantizable layer: shapes and work per image (batch axis excluded)."""

    name: str
    op: str  # "conv2d" or "linear"
    input_tensor: str
    in_channels: int
    out_channels: int
    kernel: int  # kernel height (1 for linear)
    kernel_w: int
    stride: int  # stride height (0 for linear, as HAQ's embedding)
    groups: int
    in_hw: tuple[int, int]  # input feature map (1, 1 for linear)
    out_hw: tuple[int, int]
    macs: int
    params: int  # weight elements (bias excluded)
    in_elems: int  # input activation elements

    @property
    def is_depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_channels


def quantizable_layers(graph: Graph) -> list[QuantLayer]:
    """The conv2d / linear nodes of ``graph`` in order (SearchError if there are none)."""
    out = []
    for node in graph.nodes:
        if node.op not in (OpType.CONV2D, OpType.LINEAR):
            continue
        x = node.input_shapes[0]
        w = node.weights["weight"]
        if node.op is OpType.CONV2D:
            a = node.attrs
            out.append(QuantLayer(
                name=node.name, op="conv2d", input_tensor=node.inputs[0],
                in_channels=a.in_channels, out_channels=a.out_channels, kernel=a.kernel[0],
                kernel_w=a.kernel[1], stride=a.stride[0], groups=a.groups,
                in_hw=(x[2], x[3]), out_hw=(node.output_shape[2], node.output_shape[3]),
                macs=int(node.macs), params=int(w.size), in_elems=math.prod(x[1:])))
        else:
            a = node.attrs
            rows = math.prod(x[1:-1])  # linear over leading axes: one product per row
            out.append(QuantLayer(
                name=node.name, op="linear", input_tensor=node.inputs[0],
                in_channels=a.in_features, out_channels=a.out_features, kernel=1, kernel_w=1,
                stride=0, groups=1, in_hw=(rows, 1), out_hw=(rows, 1), macs=int(node.macs),
                params=int(w.size), in_elems=math.prod(x[1:])))
    if not out:
        raise SearchError(f"graph {graph.name!r} has no conv2d or linear layer to quantize")
    return out


def device_bit_widths(spec: DeviceSpec) -> list[int]:
    """Bit-widths b with a specified precision ``int<b>`` whose weight and activation numerics
    both have b bits (the widths a mixed-precision policy may use), sorted."""
    out = []
    for name in spec.specified_precisions:
        if not name.startswith("int"):
            continue
        prec = spec.precision(name)
        b = int(name[3:])
        if prec.weight.bits == b and prec.activation.bits == b:
            out.append(b)
    if not out:
        raise SearchError(f"device {spec.name!r} has no integer precision int<b> with b-bit "
                          f"weights and activations; precisions: {spec.specified_precisions}")
    return sorted(out)


# ----------------------------------------------------------------------------- bit-flexible
def _round_up(bits: int, operand_bits: list[int], what: str) -> int:
    for b in operand_bits:
        if b >= bits:
            return b
    raise SearchError(f"{what}: {bits} bits exceed the widest operand {operand_bits[-1]}")


def bit_brick_count(w_bits: int, a_bits: int, flex: BitFlexible) -> int:
    """BitBricks one w-bit x a-bit product takes: (w'/brick) * (a'/brick), w', a' rounded up to
    the next operand width (BitFusion: 2, 4, 8, 16)."""
    if flex.model != "bit_brick" or flex.brick_bits is None:
        raise SearchError("bit_brick_count needs a 'bit_brick' model")
    wb = _round_up(w_bits, flex.operand_bits, "weight")
    ab = _round_up(a_bits, flex.operand_bits, "activation")
    return (wb // flex.brick_bits) * (ab // flex.brick_bits)


def bit_flexible_cycles(layer: QuantLayer, w_bits: int, a_bits: int, flex: BitFlexible,
                        cfg: BitFlexibleConfiguration) -> tuple[int, int]:
    """(compute cycles per batch, unit operations per batch) of ``layer`` (model docstring in
    ``hwsim.devices.spec.BitFlexible``). Unit operations: BitBrick products (bit_brick) or
    binary products (bit_serial), for energy."""
    if flex.model == "bit_brick":
        bricks = bit_brick_count(w_bits, a_bits, flex)
        ops = cfg.batch * layer.macs * bricks
        per_cycle = cfg.array_rows * cfg.array_cols * flex.bricks_per_unit
        return -(-ops // per_cycle), ops
    wb = _round_up(w_bits, flex.operand_bits, "weight")
    ab = _round_up(a_bits, flex.operand_bits, "activation")
    g = layer.groups
    m = layer.out_channels // g
    k = (layer.in_channels // g) * layer.kernel * layer.kernel_w
    n = cfg.batch * layer.out_hw[0] * layer.out_hw[1]
    tiles = g * -(-m // cfg.array_rows) * -(-n // cfg.array_cols) * -(-k // cfg.dot_product_bits)
    return tiles * wb * ab, cfg.batch * layer.macs * wb * ab


def dram_bytes(layer: QuantLayer, w_bits: int, a_bits: int, batch: int) -> float:
    """Weights at w bits once per batch, plus the input activation written by its producer and
    read by the layer once per image at a bits."""
    return layer.params * w_bits / 8.0 + 2.0 * batch * layer.in_elems * a_bits / 8.0


def _bit_flexible_cost(layer: QuantLayer, w: int, a: int, flex: BitFlexible,
                       cfg: BitFlexibleConfiguration) -> tuple[float, float | None]:
    cycles, ops = bit_flexible_cycles(layer, w, a, flex, cfg)
    nbytes = dram_bytes(layer, w, a, cfg.batch)
    t_ms = max(cycles / (cfg.clock_mhz * 1e3), nbytes / (cfg.memory_bandwidth_gb_s * 1e6))
    energy = None
    if cfg.energy_pj_per_unit_op is not None:
        energy = (ops * cfg.energy_pj_per_unit_op + nbytes * cfg.energy_pj_per_dram_byte) * 1e-9
    return t_ms, energy


# ----------------------------------------------------------------------------- roofline
def _op_key(layer: QuantLayer, w: int, a: int) -> OpKey:
    if layer.op == "linear":
        return OpKey("linear", (layer.in_channels,), (layer.out_channels,), wbits=w, abits=a)
    if layer.kernel != layer.kernel_w:
        raise SearchError(f"layer {layer.name!r}: the roofline op key needs a square kernel, "
                          f"got {layer.kernel}x{layer.kernel_w}")
    op = "dwconv" if layer.is_depthwise else "conv"
    return OpKey(op, (*layer.in_hw, layer.in_channels), (*layer.out_hw, layer.out_channels),
                 kernel=layer.kernel, stride=layer.stride, groups=layer.groups, wbits=w, abits=a)


def _covering_precision(spec: DeviceSpec, w: int, a: int) -> str:
    perf = spec.performance
    best: tuple[int, str] | None = None
    for name in spec.specified_precisions:
        prec: Precision = spec.precision(name)
        if name not in perf.peak_macs_per_s:
            continue
        if prec.weight.bits >= w and prec.activation.bits >= a:
            width = max(prec.weight.bits, prec.activation.bits)
            if best is None or width < best[0]:
                best = (width, name)
    if best is None:
        raise SearchError(f"device {spec.name!r}: no precision with a peak_macs_per_s entry "
                          f"covers w{w}a{a} (peaks for {sorted(perf.peak_macs_per_s)})")
    return best[1]


def _roofline_cost(layer: QuantLayer, w: int, a: int, spec: DeviceSpec
                   ) -> tuple[float, float | None]:
    prec = _covering_precision(spec, w, a)
    key = _op_key(layer, w, a)
    try:
        t_ms, _ = RooflineModel(spec, prec).latency_ms(key)
    except LatencyError as err:
        raise SearchError(f"layer {layer.name!r}: {err}") from None
    perf = spec.performance
    energy = None
    if prec in perf.energy_pj_per_mac:
        pj = layer.macs * perf.energy_pj_per_mac[prec]
        if perf.energy_pj_per_byte is not None:
            from hwsim.latency.op_cost import op_cost

            pj += op_cost(key).bytes_moved(w, a) * perf.energy_pj_per_byte
        energy = pj * 1e-9
    return t_ms, energy


# ----------------------------------------------------------------------------- table
@dataclass(frozen=True, eq=False)
class CostTable:
    """Cost of every layer at every (w, a) pair: ``values[layer, wi, ai]`` for
    ``bits[wi]``, ``bits[ai]``, in ``unit``."""

    metric: str
    unit: str
    bits: tuple[int, ...]
    layer_names: tuple[str, ...]
    values: np.ndarray
    source: str

    def index(self, bits: int) -> int:
        try:
            return self.bits.index(bits)
        except ValueError:
            raise SearchError(f"{bits} bits is not a candidate width {list(self.bits)}") from None

    def layer_cost(self, layer: int, w: int, a: int) -> float:
        return float(self.values[layer, self.index(w), self.index(a)])

    def total(self, policy: list[tuple[int, int]]) -> float:
        """Sum of the layers' costs under ``policy`` (one (w, a) per layer)."""
        if len(policy) != len(self.layer_names):
            raise SearchError(f"policy has {len(policy)} layers, the model {len(self.layer_names)}")
        return math.fsum(self.layer_cost(i, w, a) for i, (w, a) in enumerate(policy))

    def uniform(self, bits: int) -> float:
        """Cost with every layer at ``bits`` for weights and activations."""
        return self.total([(bits, bits)] * len(self.layer_names))


def build_cost_table(graph: Graph, spec: DeviceSpec, metric: str = "latency",
                     configuration: str | None = None, bits: list[int] | None = None
                     ) -> CostTable:
    """The cost table of ``graph`` on ``spec`` for ``metric`` (latency ms, energy mJ, size
    bytes). ``configuration``: a ``bit_flexible`` configuration (default: the spec's).
    ``bits``: candidate widths (default: ``device_bit_widths``)."""
    if metric not in METRICS:
        raise SearchError(f"unknown cost metric {metric!r}; allowed: {list(METRICS)}")
    layers = quantizable_layers(graph)
    bits = sorted(bits or device_bit_widths(spec))
    nb = len(bits)
    values = np.zeros((len(layers), nb, nb), dtype=np.float64)
    perf = spec.performance
    flex = perf.bit_flexible if perf is not None else None
    if metric == "size":
        for i, layer in enumerate(layers):
            for wi, w in enumerate(bits):
                values[i, wi, :] = layer.params * w / 8.0
        return CostTable(metric, METRIC_UNITS[metric], tuple(bits),
                         tuple(lay.name for lay in layers), values, "weight bytes at w bits")
    if flex is not None:
        cname = configuration or flex.default_configuration
        if cname not in flex.configurations:
            raise SearchError(f"device {spec.name!r}: no bit_flexible configuration {cname!r}; "
                              f"allowed: {sorted(flex.configurations)}")
        cfg = flex.configurations[cname]
        if metric == "energy" and cfg.energy_pj_per_unit_op is None:
            raise SearchError(f"device {spec.name!r} configuration {cname!r} gives no energy "
                              "figures (energy_pj_per_unit_op); use latency or size")

        def cost(layer: QuantLayer, w: int, a: int) -> tuple[float, float | None]:
            return _bit_flexible_cost(layer, w, a, flex, cfg)
        source = f"bit_flexible {flex.model} model, configuration {cname!r} (batch {cfg.batch})"
    else:
        if configuration is not None:
            raise SearchError(f"device {spec.name!r} has no bit_flexible configurations; "
                              f"got configuration {configuration!r}")
        if perf is None or not perf.peak_macs_per_s:
            raise SearchError(f"device {spec.name!r} has neither performance.bit_flexible nor "
                              "performance.peak_macs_per_s: no latency or energy model (a "
                              "size budget works on any device)")

        def cost(layer: QuantLayer, w: int, a: int) -> tuple[float, float | None]:
            return _roofline_cost(layer, w, a, spec)
        source = "roofline of performance.peak_macs_per_s"
    for i, layer in enumerate(layers):
        for wi, w in enumerate(bits):
            for ai, a in enumerate(bits):
                t_ms, e_mj = cost(layer, w, a)
                if metric == "energy":
                    if e_mj is None:
                        raise SearchError(f"device {spec.name!r}: no energy figures for layer "
                                          f"{layer.name!r} at w{w}a{a} (energy_pj_per_mac)")
                    values[i, wi, ai] = e_mj
                else:
                    values[i, wi, ai] = t_ms
    return CostTable(metric, METRIC_UNITS[metric], tuple(bits),
                     tuple(lay.name for lay in layers), values, source)
