"""Range estimation: streaming statistics, percentile, MSE grid search, TensorRT KL entropy,
bounded sampling, and the errors of bad calibration data."""

from __future__ import annotations

import numpy as np
import pytest
from oracles import uniform_oracle as oracle

from hwsim.devices.spec import UniformNumerics
from hwsim.errors import QuantError
from hwsim.quant.calibration import RangeObserver, kl_amax
from hwsim.quant.uniform import UniformQuantizer, qmin_qmax

F32 = np.float32


def batches(seed=0, n=5, shape=(4, 3, 50)):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(shape) * rng.uniform(0.5, 3) + rng.normal()).astype(F32)
            for _ in range(n)]


def test_minmax_streaming_equals_min_max_of_all_batches_per_tensor_and_per_channel():
    bs = batches()
    allx = np.concatenate(bs, axis=0)
    r = RangeObserver("minmax")
    for b in bs:
        assert r.update(b) is r
    assert (r.range().lo, r.range().hi) == (allx.min(), allx.max())
    rc = RangeObserver("minmax", axis=-2)
    for b in bs:
        rc.update(b)
    assert rc.range().lo.tolist() == allx.min(axis=(0, 2)).tolist()
    assert rc.range().hi.tolist() == allx.max(axis=(0, 2)).tolist()


def test_ema_minmax_follows_the_documented_recursion():
    bs = batches(1)
    r = RangeObserver("ema_minmax", ema_decay=0.9)
    lo, hi = float(bs[0].min()), float(bs[0].max())
    for i, b in enumerate(bs):
        r.update(b)
        if i:
            lo = 0.9 * lo + 0.1 * float(b.min())
            hi = 0.9 * hi + 0.1 * float(b.max())
    assert r.range().lo == pytest.approx(lo, rel=1e-15)
    assert r.range().hi == pytest.approx(hi, rel=1e-15)


def test_absmax_is_symmetric_max_abs():
    bs = batches(2)
    r = RangeObserver("absmax")
    for b in bs:
        r.update(b)
    amax = max(float(np.abs(b).max()) for b in bs)
    assert (r.range().lo, r.range().hi) == (-amax, amax)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("axis", [None, 1])
def test_percentile_equals_numpy_percentile_of_all_data(symmetric, axis):
    bs = batches(3)
    r = RangeObserver("percentile", percentile=99.0, symmetric=symmetric, axis=axis)
    for b in bs:
        r.update(b)
    allx = np.concatenate(bs, axis=0)
    m = allx.reshape(1, -1) if axis is None else np.moveaxis(allx, 1, 0).reshape(3, -1)
    if symmetric:
        hi = np.percentile(np.abs(m), 99.0, axis=1)
        lo = -hi
    else:
        lo, hi = np.percentile(m, 1.0, axis=1), np.percentile(m, 99.0, axis=1)
    got = r.range()
    assert np.atleast_1d(got.lo).tolist() == lo.tolist()
    assert np.atleast_1d(got.hi).tolist() == hi.tolist()


def test_bounded_sample_keeps_every_power_of_two_th_value_of_the_stream():
    r = RangeObserver("percentile", percentile=99.0, sample_cap=100)
    stream = np.arange(1000, dtype=F32)
    for chunk in np.array_split(stream, 7):
        r.update(chunk)
    s = r.sample()[0]
    stride = int(s[1] - s[0])
    assert s.size <= 100 and stride & (stride - 1) == 0
    assert s.tolist() == stream[::stride].tolist()


def test_mse_picks_the_grid_range_of_least_error_under_the_scheme_quantizer():
    rng = np.random.default_rng(4)
    x = rng.standard_t(2, size=3000).astype(F32)
    num = UniformNumerics(bits=4, signed=True, symmetric=True,
                          calibration={"method": "mse", "bins": 128})
    qz = UniformQuantizer(num)
    qp = qz.calibrate(x)
    qmin, qmax = qmin_qmax(4, True)
    amax = float(np.abs(x).max())

    def err(scale):
        codes = oracle.quantize(x, scale, 0, qmin, qmax, oracle.RNE, True, False)
        return float(np.mean((oracle.dequantize(codes, scale, 0).astype(np.float64) - x) ** 2))

    chosen = err(float(qp.scale))
    candidates = [oracle.standard_symmetric(amax * k / 128, qmax) for k in range(1, 129, 9)]
    assert all(chosen <= err(s) for s in candidates)
    assert float(qp.scale) < oracle.standard_symmetric(amax, qmax)  # heavy tails get clipped


def test_mse_per_channel_and_asymmetric_runs_per_channel():
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((3, 500)) * np.array([[0.1], [1.0], [10.0]])).astype(F32)
    qz = UniformQuantizer(UniformNumerics(bits=8, signed=False, symmetric=False,
                                          granularity="per_channel", axis=0,
                                          calibration={"method": "mse"}))
    qp = qz.calibrate(x)
    assert qp.scale.shape == (3,) and np.all(np.diff(qp.scale) > 0)


def test_kl_equals_the_reference_entropy_loop():
    rng = np.random.default_rng(6)
    for trial in range(3):
        a = np.abs(np.concatenate([rng.standard_normal(20000),
                                   rng.standard_normal(50) * (8 + trial)]))
        width = a.max() / 300
        hist = np.bincount(np.minimum((a / width).astype(np.int64), 299), minlength=300)
        assert kl_amax(hist, width, 128) == oracle.kl_amax_reference(hist, width, 128)


def test_kl_streaming_histogram_grows_and_clips_outliers():
    rng = np.random.default_rng(7)
    num = UniformNumerics(bits=8, signed=True, symmetric=True,
                          calibration={"method": "kl", "bins": 512})
    obs = UniformQuantizer(num).observer()
    data = [rng.standard_normal(20000).astype(F32) for _ in range(3)]
    data[2][:5] = [30.0, -25.0, 28.0, 29.0, -31.0]
    for d in data:
        obs.update(d)
    amax = float(obs.qparams().scale) * 127
    assert 2.5 < amax < 20.0  # outliers clipped, bulk of the Gaussian kept
    hist = obs._range._hist
    assert hist.counts.sum() == 60000 and hist.counts.size > 512


def test_calibration_rejects_bad_data_and_impossible_configurations():
    with pytest.raises(QuantError, match="empty"):
        RangeObserver("minmax").update(np.zeros(0, F32))
    with pytest.raises(QuantError, match="0 NaN and 1"):
        RangeObserver("minmax").update(np.array([1.0, -np.inf], F32))
    with pytest.raises(QuantError, match="seen no data"):
        RangeObserver("minmax").range()
    r = RangeObserver("minmax", axis=0).update(np.ones((3, 2), F32))
    with pytest.raises(QuantError, match="earlier batches had 3"):
        r.update(np.ones((4, 2), F32))
    with pytest.raises(QuantError, match="per tensor"):
        RangeObserver("kl", axis=0, symmetric=True, quant_bins=128)
    with pytest.raises(QuantError, match="symmetric"):
        RangeObserver("kl", quant_bins=128)
    with pytest.raises(QuantError, match="unknown calibration method"):
        RangeObserver("median")
    with pytest.raises(QuantError, match="at least 128"):
        kl_amax(np.ones(100, np.int64), 0.1, 128)
