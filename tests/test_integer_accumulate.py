"""Integer conv / linear accumulators against nested-loop Python-integer oracles: every exact
path (float32, split float32, float64, int64), overflow counting with wrap and saturate, and the
int16 pair saturation model."""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.emulate import integer_ops
from hwsim.emulate.integer_ops import conv2d_accumulate, linear_accumulate
from hwsim.errors import EmulationError


@pytest.fixture(params=["int8_gemm_allowed", "float_paths_only"])
def gemm_mode(request, monkeypatch):
    """Run a test with the int8 GEMM path as detected, and with float paths only."""
    if request.param == "float_paths_only":
        monkeypatch.setattr(integer_ops, "_INT8_GEMM", False)
    return request.param


def _oracle_conv(x, w, zx, zw, bias, stride, pads, dil, groups, pair_sat=False):
    """Plain loops over outputs and taps with Python ints (pads hold the zero point)."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    pt, pl, pb, pr = pads
    oh = (h + pt + pb - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + pl + pr - dil[1] * (kw - 1) - 1) // stride[1] + 1
    og = o // groups
    zwv = [int(v) for v in np.broadcast_to(zw, (o,))]
    out = np.zeros((n, o, oh, ow), dtype=object)
    for b in range(n):
        for oc in range(o):
            g = oc // og
            for i in range(oh):
                for j in range(ow):
                    raw = []  # (activation code, weight code) in (tap row, tap col, channel)
                    for r in range(kh):
                        for s in range(kw):
                            for ci in range(cg):
                                yy = i * stride[0] + r * dil[0] - pt
                                xx = j * stride[1] + s * dil[1] - pl
                                inside = 0 <= yy < h and 0 <= xx < wd
                                a = int(x[b, g * cg + ci, yy, xx]) if inside else zx
                                raw.append((a, int(w[oc, ci, r, s]), ci))
                    acc = sum((a - zx) * (wv - zwv[oc]) for a, wv, _ in raw)
                    if pair_sat:  # pairs of channels per tap; odd last channel pairs with 0
                        delta = 0
                        for t in range(kh * kw):
                            tap = raw[t * cg:(t + 1) * cg]
                            for p in range(0, cg, 2):
                                pair = tap[p][0] * tap[p][1]
                                if p + 1 < cg:
                                    pair += tap[p + 1][0] * tap[p + 1][1]
                                delta += min(max(pair, -32768), 32767) - pair
                        acc += delta
                    out[b, oc, i, j] = acc + (int(bias[oc]) if bias is not None else 0)
    return out


def _case(rng, xlo, xhi, wlo, whi):
    c = int(rng.integers(1, 7))
    groups = int(rng.choice([g for g in range(1, c + 1) if c % g == 0]))
    o = groups * int(rng.integers(1, 3))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    dil = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    pads = tuple(int(v) for v in rng.integers(0, 3, 4))
    h = int(rng.integers((kh - 1) * dil[0] + 1, 8))
    w = int(rng.integers((kw - 1) * dil[1] + 1, 8))
    x = rng.integers(xlo, xhi + 1, (int(rng.integers(1, 3)), c, h, w))
    wq = rng.integers(wlo, whi + 1, (o, c // groups, kh, kw))
    zx = int(rng.integers(xlo, xhi + 1))
    zw = rng.integers(wlo, whi + 1, o) if rng.integers(2) else int(rng.integers(wlo, whi + 1))
    bias = rng.integers(-2 ** 20, 2 ** 20, o) if rng.integers(2) else None
    return x, wq, zx, zw, bias, stride, pads, dil, groups


@pytest.mark.parametrize(("xr", "wr", "path"), [
    ((-128, 127), (-128, 127), None),            # typical int8: float32 or split
    ((0, 255), (0, 255), None),                  # uint8 x uint8
    ((-2 ** 15, 2 ** 15), (-2 ** 15, 2 ** 15), "float64"),  # 16-bit codes
    ((-2 ** 28, 2 ** 28), (-2 ** 28, 2 ** 28), "int64"),    # beyond 2^53: int64 fallback
])
def test_conv_accumulator_equals_python_integer_loops(xr, wr, path, gemm_mode):
    rng = np.random.default_rng(abs(hash((xr, wr))) % 2 ** 32)
    paths = set()
    for _ in range(25):
        x, w, zx, zw, bias, stride, pads, dil, groups = _case(rng, *xr, *wr)
        acc = conv2d_accumulate(x, w, x_zero_point=zx, w_zero_point=zw, bias=bias,
                                stride=stride, padding=pads, dilation=dil, groups=groups,
                                accumulator_bits=64)
        ref = _oracle_conv(x, w, zx, zw, bias, stride, pads, dil, groups)
        assert acc.values.tolist() == ref.tolist()
        paths.add(acc.path)
    if path is not None:
        assert path in paths
    if gemm_mode == "float_paths_only":
        assert "int8_gemm" not in paths


def test_split_float32_path_is_used_and_exact(monkeypatch):
    monkeypatch.setattr(integer_ops, "_INT8_GEMM", False)
    rng = np.random.default_rng(9)
    x = rng.integers(0, 256, (1, 64, 6, 6))
    w = rng.integers(-128, 128, (4, 64, 3, 3))
    acc = conv2d_accumulate(x, w, x_zero_point=0, padding=(1, 1, 1, 1))
    assert acc.path == "float32_split"  # 576 * 255 * 128 > 2^24
    ref = _oracle_conv(x, w, 0, 0, None, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    assert acc.values.tolist() == ref.tolist()


@pytest.mark.parametrize("mode", ["wrap", "saturate"])
def test_accumulator_overflow_is_counted_and_applied(mode, gemm_mode):
    rng = np.random.default_rng(10)
    x = rng.integers(-128, 128, (2, 8, 5, 5))
    w = rng.integers(-128, 128, (3, 8, 3, 3))
    exact = conv2d_accumulate(x, w, accumulator_bits=64).values
    acc = conv2d_accumulate(x, w, accumulator_bits=16, accumulator_overflow=mode)
    outside = (exact < -32768) | (exact > 32767)
    assert acc.overflow_count == int(outside.sum()) > 0
    if mode == "wrap":
        want = (exact + 32768) % 65536 - 32768
    else:
        want = np.clip(exact, -32768, 32767)
    assert np.array_equal(acc.values, want)


def test_int16_pair_saturation_model_equals_pair_loop_oracle(gemm_mode):
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(25):
        x, w, zx, _, bias, stride, pads, dil, groups = _case(rng, 0, 255, -128, 127)
        x = np.where(rng.random(x.shape) < 0.7, 255, x)
        w = np.where(rng.random(w.shape) < 0.5, -128, w)
        depthwise = w.shape[1] == 1 and w.shape[0] == groups
        acc = conv2d_accumulate(x, w, x_zero_point=zx, bias=bias, stride=stride, padding=pads,
                                dilation=dil, groups=groups, int16_pair_saturation=True,
                                accumulator_bits=64)
        ref = _oracle_conv(x, w, zx, 0, bias, stride, pads, dil, groups,
                           pair_sat=not depthwise)
        assert acc.values.tolist() == ref.tolist()
        hits += acc.saturated_pairs
    assert hits > 0


def test_linear_accumulator_and_pair_saturation_equal_python_loops(gemm_mode):
    rng = np.random.default_rng(12)
    x = rng.choice([0, 200, 255], (5, 13))
    w = rng.choice([-128, -3, 127], (4, 13))
    zw = np.array([0, 1, -2, 3])
    acc = linear_accumulate(x, w, x_zero_point=7, w_zero_point=zw, bias=np.arange(4),
                            int16_pair_saturation=True)
    for n in range(5):
        for o in range(4):
            exact = sum((int(x[n, k]) - 7) * (int(w[o, k]) - int(zw[o])) for k in range(13))
            delta = 0
            for k in range(0, 13, 2):
                p = int(x[n, k]) * int(w[o, k]) + (
                    int(x[n, k + 1]) * int(w[o, k + 1]) if k + 1 < 13 else 0)
                delta += min(max(p, -32768), 32767) - p
            assert acc.values[n, o] == exact + delta + o


def test_bad_inputs_raise_emulation_errors():
    x = np.zeros((1, 4, 5, 5), np.int8)
    with pytest.raises(EmulationError, match="groups"):
        conv2d_accumulate(x, np.zeros((4, 3, 3, 3), np.int8), groups=2)
    with pytest.raises(EmulationError, match="integer codes"):
        conv2d_accumulate(x.astype(np.float32), np.zeros((4, 4, 3, 3), np.int8))
    with pytest.raises(EmulationError, match="empty"):
        conv2d_accumulate(x, np.zeros((4, 4, 7, 7), np.int8))
    with pytest.raises(EmulationError, match="zero point"):
        conv2d_accumulate(x, np.zeros((4, 4, 3, 3), np.int8), w_zero_point=np.zeros(3))
    with pytest.raises(EmulationError, match="u8 activations"):
        conv2d_accumulate(x - 1, np.zeros((4, 4, 3, 3), np.int8), int16_pair_saturation=True)
    with pytest.raises(EmulationError, match="linear"):
        linear_accumulate(np.zeros((2, 3), np.int8), np.zeros((4, 5), np.int8))


def test_degenerate_shapes_size_one_dimensions_are_exact(gemm_mode):
    """Size-1 dimensions (one output, one input, K = 1, one pixel) give odd numpy strides that
    a GEMM must not misread."""
    rng = np.random.default_rng(13)
    for n, k, o in [(42, 1, 1), (1, 1, 1), (1, 7, 1), (5, 1, 3), (1, 300, 2), (17, 2, 1)]:
        x = rng.integers(-128, 128, (n, k))
        w = rng.integers(-128, 128, (o, k))
        acc = linear_accumulate(x, w, x_zero_point=5, w_zero_point=-2)
        assert np.array_equal(acc.values, (x - 5) @ (w + 2).T)
    for c, o, h in [(1, 1, 1), (1, 3, 2), (2, 1, 3)]:
        x = rng.integers(0, 256, (1, c, h, h))
        w = rng.integers(-128, 128, (o, c, 1, 1))
        acc = conv2d_accumulate(x, w, x_zero_point=9)
        ref = _oracle_conv(x, w, 9, 0, None, (1, 1), (0, 0, 0, 0), (1, 1), 1)
        assert acc.values.tolist() == ref.tolist()
