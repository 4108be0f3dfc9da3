"""Roofline-modeled latency from a device's performance section."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hwsim.devices.spec import parse_spec
from hwsim.errors import LatencyError
from hwsim.latency.block_kernels import block_kernel_keys
from hwsim.latency.op_key import OpKey
from hwsim.latency.roofline import RooflineModel

TRT = Path(__file__).resolve().parents[1] / "devices" / "tensorrt.yaml"


def _spec(performance):
    data = yaml.safe_load(TRT.read_text())
    data["performance"] = performance
    if performance is None:
        del data["performance"]
    return parse_spec(data, "test")


PERF = {"peak_macs_per_s": {"int8": 1.0e12, "fp16": 5.0e11}, "memory_bandwidth_gb_s": 10.0,
        "op_overhead_us": 2.0,
        "efficiency": {"conv": 0.5, "dwconv": 0.25, "fc": 0.5, "pool": 0.5, "elementwise": 0.8}}


def test_compute_bound_conv_matches_the_formula():
    model = RooflineModel(_spec(PERF))  # default precision int8: w8 a8
    key = OpKey("conv", (56, 56, 64), (56, 56, 64), kernel=3, stride=1)
    macs = 56 * 56 * 64 * 64 * 9
    nbytes = (64 * 64 * 9 + 64) + (56 * 56 * 64) * 2  # 8-bit weights+bias, input+output
    expected = max(macs / (1e12 * 0.5), nbytes / (10e9 * 1.0)) * 1e3 + 2e-3
    t, note = model.latency_ms(key)
    assert t == pytest.approx(expected, rel=1e-12)
    assert macs / (1e12 * 0.5) > nbytes / 10e9  # really compute-bound
    row = model.row(key)
    assert row.source == "modeled" and "roofline int8" in row.note and row.device == "tensorrt"


def test_elementwise_is_memory_bound_with_its_efficiency_on_bandwidth():
    model = RooflineModel(_spec(PERF), precision="fp16")
    key = OpKey("relu", (28, 28, 32), (28, 28, 32))
    nbytes = 2 * 28 * 28 * 32 * 2  # read + write, 16-bit
    assert model.latency_ms(key)[0] == pytest.approx(nbytes / (10e9 * 0.8) * 1e3 + 2e-3)


def test_block_is_sum_of_its_kernels():
    model = RooflineModel(_spec(PERF))
    block = OpKey("expanded_conv", (28, 28, 40), (14, 14, 80), expand=6, kernel=5, stride=2,
                  idskip=0)
    subs = block_kernel_keys(block)
    assert [k.op for k in subs] == ["conv", "dwconv", "conv"]
    assert model.latency_ms(block)[0] == pytest.approx(sum(model.latency_ms(k)[0]
                                                           for k in subs))


def test_missing_performance_or_figures_raise_clear_errors():
    with pytest.raises(LatencyError, match="no 'performance:' section"):
        RooflineModel(_spec(None))
    with pytest.raises(LatencyError, match="precision 'fp16'"):
        RooflineModel(_spec({**PERF, "peak_macs_per_s": {"int8": 1e12}}), precision="fp16")
    no_bw = RooflineModel(_spec({**PERF, "memory_bandwidth_gb_s": None}))
    with pytest.raises(LatencyError, match="memory_bandwidth_gb_s"):
        no_bw.latency_ms(OpKey("relu", (7, 7, 8), (7, 7, 8)))
    t, note = no_bw.latency_ms(OpKey("conv", (7, 7, 8), (7, 7, 8), kernel=1, stride=1))
    assert "memory term not modeled" in note
    no_eff = RooflineModel(_spec({**PERF, "efficiency": {"conv": 1.0}}))
    with pytest.raises(LatencyError, match="'dwconv'"):
        no_eff.latency_ms(OpKey("dwconv", (7, 7, 8), (7, 7, 8), kernel=3, stride=1))
