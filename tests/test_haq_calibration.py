"""HAQ's clip-threshold search (``haq_kl``) against an independent transcription."""

from __future__ import annotations

import numpy as np
import pytest
from oracles.haq_threshold_oracle import haq_threshold as oracle_threshold

import hwsim
from hwsim.devices.spec import UniformNumerics
from hwsim.errors import QuantError
from hwsim.quant.calibration import RangeObserver, haq_threshold
from hwsim.quant.uniform import UniformQuantizer


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("levels", [2, 4, 8])
def test_haq_threshold_matches_independent_transcription(seed: int, levels: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3000))
    x = rng.laplace(scale=rng.uniform(0.01, 2.0), size=n)
    if seed % 2:
        x[: n // 10] = 0.0  # a spike of exact zeros, as after ReLU
    assert haq_threshold(np.abs(x), levels) == oracle_threshold(x, levels)


def test_haq_threshold_clips_heavy_tails_and_keeps_max_for_few_bins() -> None:
    rng = np.random.default_rng(0)
    x = rng.laplace(scale=0.1, size=10_000)
    x[0] = 50.0  # one outlier far out
    t = haq_threshold(np.abs(x), 8)
    assert 0.0 < t < 5.0
    few = np.array([0.1, -0.3, 0.2, 0.7])  # 2 bins < levels + 1: the threshold is max |x|
    assert haq_threshold(np.abs(few), 8) == 0.7
    assert haq_threshold(np.zeros(5), 8) == 0.0


def test_haq_kl_observer_ranges_symmetric_and_half_wave() -> None:
    rng = np.random.default_rng(1)
    x = rng.laplace(scale=0.5, size=(4, 900)).astype(np.float32)  # observers keep float32
    sym = RangeObserver("haq_kl", axis=0, symmetric=True, haq_levels=8).update(x).range()
    t = np.array([oracle_threshold(row, 8) for row in x])
    np.testing.assert_array_equal(sym.hi, t)
    np.testing.assert_array_equal(sym.lo, -t)
    relu = np.maximum(x[0], 0.0)
    half = RangeObserver("haq_kl", symmetric=False, haq_levels=8).update(relu).range()
    assert float(half.lo) == 0.0
    assert float(half.hi) == min(oracle_threshold(relu, 8), relu.max())
    with pytest.raises(QuantError, match="haq_levels"):
        RangeObserver("haq_kl", symmetric=True)


def test_haq_kl_weight_scale_is_threshold_over_qmax() -> None:
    q = UniformQuantizer(UniformNumerics(bits=4, signed=True, symmetric=True, narrow_range=True,
                                         calibration={"method": "haq_kl"}))
    w = np.random.default_rng(2).normal(scale=0.2, size=(16, 8, 3, 3)).astype(np.float32)
    qp = q.calibrate(w)
    assert float(qp.scale) == pytest.approx(oracle_threshold(w, 8) / 7, rel=1e-6)


def test_bismo_low_bit_weights_use_haq_threshold() -> None:
    spec = hwsim.load_device("bismo").spec
    for p in ("int2", "int3", "int4"):
        assert spec.precisions[p].weight.calibration.method.value == "haq_kl"
        assert spec.precisions[p].activation.calibration.method.value == "haq_kl"
    assert spec.precisions["int5"].weight.calibration.method.value == "absmax"
