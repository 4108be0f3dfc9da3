"""HAQ cost tables: BitFusion brick counts, BISMO bit-serial latency, size, totals.

Expected numbers are worked out by hand from the papers' formulas (DESIGN.md B9) and the
configurations in devices/bitfusion.yaml and devices/bismo.yaml; the derivations are in the
comments, the tests never call the cost model to get an expected value.

Tiny net (input 1x8x8): conv1 1->16 3x3 s1 p1 (out 8x8), ReLU, conv2 16->32 3x3 s2 p1 (out 4x4),
ReLU, global average pool, flatten, fc 32->10.
  conv1: MACs 1*16*9*64 = 9216, params 144, input elements 64
  conv2: MACs 16*32*9*16 = 73728, params 4608, input elements 16*64 = 1024
  fc:    MACs 320, params 320, input elements 32
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_nets import TinyNet

import hwsim
from hwsim.errors import SearchError
from hwsim.graph.load import load_model
from hwsim.search.haq_cost import bit_brick_count, build_cost_table, quantizable_layers


@pytest.fixture(scope="module")
def tiny_graph():
    torch.manual_seed(0)
    return load_model(TinyNet().eval(), torch.zeros(1, 1, 8, 8))


def test_tiny_net_layers_have_the_hand_counted_work(tiny_graph):
    layers = quantizable_layers(tiny_graph)
    assert [lay.name for lay in layers] == ["conv1", "conv2", "fc"]
    assert [lay.macs for lay in layers] == [9216, 73728, 320]
    assert [lay.params for lay in layers] == [144, 4608, 320]
    assert [lay.in_elems for lay in layers] == [64, 1024, 32]


# BitFusion: a w x a product takes (w'/2) * (a'/2) BitBricks, w', a' = bits rounded up to
# 2, 4, 8 or 16.
@pytest.mark.parametrize(("w", "a", "bricks"), [
    (2, 2, 1), (1, 1, 1), (3, 2, 2), (4, 4, 4), (2, 8, 4), (8, 2, 4), (5, 4, 8), (6, 7, 16),
    (8, 8, 16), (8, 16, 32), (16, 16, 64),
])
def test_bitfusion_brick_count_follows_the_papers_rounding(w, a, bricks):
    flex = hwsim.load_device("bitfusion").spec.performance.bit_flexible
    assert bit_brick_count(w, a, flex) == bricks


def test_bitfusion_latency_and_energy_match_hand_computation(tiny_graph):
    spec = hwsim.load_device("bitfusion").spec
    lat = build_cost_table(tiny_graph, spec, "latency")
    assert lat.unit == "ms"
    # isca18: 16 x 32 Fusion Units x 16 bricks = 8192 bricks per cycle, 500 MHz (5e5 cycles/ms),
    # 25.6 GB/s = 2.56e7 bytes/ms; latency = max(compute, DRAM).
    # conv2 W8A8: 73728 MACs * 16 bricks / 8192 = 144 cycles -> 2.88e-4 ms;
    #   bytes 4608 (weights) + 2 * 1024 (input written + read) = 6656 -> 2.6e-4 ms => 2.88e-4
    assert lat.layer_cost(1, 8, 8) == pytest.approx(2.88e-4, rel=1e-12)
    # conv2 W4A2: 2 * 1 = 2 bricks -> 18 cycles -> 3.6e-5 ms; bytes 2304 + 512 = 2816
    #   -> 1.1e-4 ms (memory bound) => 1.1e-4
    assert lat.layer_cost(1, 4, 2) == pytest.approx(1.1e-4, rel=1e-12)
    # W3A3 rounds up to 4x4 bricks: 4 bricks -> 36 cycles -> 7.2e-5 ms; bytes 1728 + 768 = 2496
    #   -> 9.75e-5 ms => 9.75e-5
    assert lat.layer_cost(1, 3, 3) == pytest.approx(9.75e-5, rel=1e-12)
    # fc W8A8: 320 * 16 / 8192 -> 1 cycle (2e-6 ms); bytes 320 + 64 = 384 -> 1.5e-5 ms
    assert lat.layer_cost(2, 8, 8) == pytest.approx(1.5e-5, rel=1e-12)
    # conv1 W8A8: 9216 * 16 / 8192 = 18 cycles -> 3.6e-5 ms; bytes 144 + 128 -> 1.0625e-5
    assert lat.uniform(8) == pytest.approx(3.6e-5 + 2.88e-4 + 1.5e-5, rel=1e-12)
    energy = build_cost_table(tiny_graph, spec, "energy")
    assert energy.unit == "mJ"
    # conv2 W8A8: 1179648 bricks * 0.014375 pJ + 6656 bytes * 160 pJ = 1081917.44 pJ
    assert energy.layer_cost(1, 8, 8) == pytest.approx(1081917.44e-9, rel=1e-12)


def test_bismo_bit_serial_latency_matches_hand_computation(tiny_graph):
    spec = hwsim.load_device("bismo").spec
    lat = build_cost_table(tiny_graph, spec, "latency")
    assert lat.bits == (2, 3, 4, 5, 6, 7, 8)
    # edge: 8 x 8 dot-product units of 256 bits, 200 MHz (2e5 cycles/ms), 6.4e6 bytes/ms.
    # A layer is a GEMM M (out channels) x K (in channels * kh * kw) x N (output pixels);
    # cycles = ceil(M/8) * ceil(N/8) * ceil(K/256) * w * a.
    # conv1: M 16, K 9, N 64 -> 2 * 8 * 1 = 16 tiles; W8A8 1024 cycles -> 5.12e-3 ms
    #   (bytes 144 + 128 = 272 -> 4.25e-5 ms)
    assert lat.layer_cost(0, 8, 8) == pytest.approx(5.12e-3, rel=1e-12)
    # conv2: M 32, K 144, N 16 -> 4 * 2 * 1 = 8 tiles; W8A8 512 cycles -> 2.56e-3 ms
    assert lat.layer_cost(1, 8, 8) == pytest.approx(2.56e-3, rel=1e-12)
    # conv2 W5A3: 8 * 15 = 120 cycles -> 6e-4 ms; bytes 2880 + 768 = 3648 -> 5.7e-4 ms => 6e-4
    assert lat.layer_cost(1, 5, 3) == pytest.approx(6e-4, rel=1e-12)
    # conv2 W4A2: 64 cycles -> 3.2e-4 ms; bytes 2304 + 512 = 2816 -> 4.4e-4 ms (memory bound)
    assert lat.layer_cost(1, 4, 2) == pytest.approx(4.4e-4, rel=1e-12)
    # fc: M 10, K 32, N 1 -> 2 tiles; W8A8 128 cycles -> 6.4e-4 ms (bytes 384 -> 6e-5 ms)
    assert lat.layer_cost(2, 8, 8) == pytest.approx(6.4e-4, rel=1e-12)
    assert lat.uniform(8) == pytest.approx(5.12e-3 + 2.56e-3 + 6.4e-4, rel=1e-12)
    # W2A2: conv1 64 cycles -> 3.2e-4 (bytes 68); conv2 32 cycles -> 1.6e-4 vs bytes
    #   1152 + 512 = 1664 -> 2.6e-4; fc 8 cycles -> 4e-5 (bytes 96 -> 1.5e-5)
    assert lat.uniform(2) == pytest.approx(3.2e-4 + 2.6e-4 + 4e-5, rel=1e-12)
    # bit-serial: compute-bound cost grows with w * a
    assert lat.layer_cost(0, 8, 4) == pytest.approx(lat.layer_cost(0, 4, 8), rel=1e-12)
    assert lat.layer_cost(0, 8, 4) == pytest.approx(lat.layer_cost(0, 8, 8) / 2, rel=1e-12)


def test_bismo_cloud_configuration_batches_sixteen_images(tiny_graph):
    spec = hwsim.load_device("bismo").spec
    lat = build_cost_table(tiny_graph, spec, "latency", configuration="cloud")
    # cloud: 16 x 16 units, batch 16. conv1: M 16, K 9, N 16 * 64 = 1024 -> 1 * 64 * 1 = 64
    #   tiles; W8A8 4096 cycles -> 2.048e-2 ms (bytes 144 + 2*16*64 = 2192 -> 8.6e-5 ms)
    assert lat.layer_cost(0, 8, 8) == pytest.approx(2.048e-2, rel=1e-12)


def test_bismo_has_no_energy_figures(tiny_graph):
    with pytest.raises(SearchError, match="energy"):
        build_cost_table(tiny_graph, hwsim.load_device("bismo").spec, "energy")


def test_size_is_weight_bytes_at_weight_bits(tiny_graph):
    size = build_cost_table(tiny_graph, hwsim.load_device("bismo").spec, "size")
    assert size.unit == "bytes"
    # params * w / 8, independent of the activation bits
    assert size.layer_cost(1, 3, 8) == 4608 * 3 / 8 == size.layer_cost(1, 3, 2)
    assert size.uniform(8) == 144 + 4608 + 320
    assert size.uniform(4) == (144 + 4608 + 320) / 2
    assert size.total([(8, 2), (2, 8), (5, 5)]) == 144 + 4608 / 4 + 320 * 5 / 8


def test_cost_table_total_sums_the_layers(tiny_graph):
    lat = build_cost_table(tiny_graph, hwsim.load_device("bismo").spec, "latency")
    policy = [(8, 8), (5, 3), (8, 8)]
    assert lat.total(policy) == pytest.approx(5.12e-3 + 6e-4 + 6.4e-4, rel=1e-12)
    assert np.all(np.diff(lat.values, axis=1) >= 0) and np.all(np.diff(lat.values, axis=2) >= 0)
    with pytest.raises(SearchError, match="policy has 2 layers"):
        lat.total([(8, 8), (8, 8)])
    with pytest.raises(SearchError, match="not a candidate width"):
        lat.total([(8, 8), (1, 8), (8, 8)])


def test_unknown_metric_names_the_allowed_ones(tiny_graph):
    with pytest.raises(SearchError, match="allowed"):
        build_cost_table(tiny_graph, hwsim.load_device("bismo").spec, "power")
