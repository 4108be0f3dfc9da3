"""Integer layers on codes: conv2d, linear, and the elementwise/pooling ops of quantized nets.

Convolution and linear produce the *accumulator* (``Accumulation``): the exact integer sum
sum_k (x_k - zp_x) * (w_k - zp_w[o]) + bias[o], then the device's accumulator width applied
(wrap or saturate) with every output whose exact sum does not fit counted in
``overflow_count``. Requantization is separate (``hwsim.emulate.requant``).

Fast and exact: sums are computed by float GEMM/convolution only where the result is provably
exact. A float32 sum of integer products is exact while K * max|x| * max|w| < 2^24 (every
partial sum, in any order, with or without FMA, is an integer below 2^24); float64 while the
bound is < 2^53. Between the two, the weights are split w = hi * 2^s + lo and two float32
passes are combined in int64. Past 2^53 an int64 matmul is used. Padding uses the input zero
point as the pad value (it is 0 after subtracting the zero point), as QLinearConv and TFLite do.

int16 pair saturation (x86 ``vpmaddubsw``, ONNX Runtime MLAS u8 x s8 GEMM kernels on CPUs
without VNNI): raw codes are multiplied (u8 activation x s8 weight, zero points not yet
subtracted, padded taps holding the input zero point), products of adjacent pairs along the
reduction dimension are summed and saturated to [-32768, 32767] before the int32 sum; the zero
point corrections are exact. The reduction order is (kernel row, kernel column, input channel)
as ORT's NHWC im2col builds it, pairs (2j, 2j+1) with the channel count per tap padded to even
(see ``_pair_saturation_delta``). Depthwise convolutions use MLAS's int32 depthwise kernel and
are not affected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from hwsim.errors import EmulationError

_F32_EXACT = 1 << 24
_F64_EXACT = 1 << 53
_INT8_GEMM_MAX_K = 1 << 17  # K * 128 * 128 < 2^31: an int32 sum of int8 x int8 products is exact
_PAIR_CHUNK_ELEMENTS = 1 << 22  # int32 pair products held at once by the saturation model


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# Optional fast path: torch._int_mm (oneDNN int8 GEMM, int32 accumulation). torch has no public
# int8 x int8 -> int32 matmul on CPU (torch.mm on int8 tensors returns int8), and the quantized
# tensor ops requantize inside the kernel. _int_mm is private API, so it is used only (1) on
# x86 CPUs reporting VNNI (vpdpbusd sums four products in int32; without VNNI oneDNN may use
# vpmaddubsw, whose int16 pair sums can saturate), (2) when the environment does not set
# HWSIM_INT8_GEMM=0, and (3) after a probe at first use agrees with exact integer math on
# products that would saturate int16 pairs. Otherwise the exact float paths run (always correct,
# slower). Tests run both.
_INT8_GEMM = (bool({"avx512_vnni", "avx_vnni"} & _cpu_flags()) and hasattr(torch, "_int_mm")
              and os.environ.get("HWSIM_INT8_GEMM", "1") != "0")
_INT8_PROBE: list[bool] = []  # [result] once the probe ran


def _int8_gemm_ok() -> bool:
    """Whether the int8 GEMM fast path is enabled and passed its exactness probe."""
    if not _INT8_GEMM:
        return False
    if not _INT8_PROBE:
        rng = np.random.default_rng(0)
        a = rng.choice(np.array([-128, 127, -1, 3], np.int8), (33, 70))
        b = rng.choice(np.array([-128, 127, 5, -7], np.int8), (70, 19))
        a[0, :2] = b[:2, 0] = -128  # a pair of products summing to 2^15: saturates in int16
        try:
            with torch.no_grad():
                got = torch._int_mm(torch.from_numpy(a), torch.from_numpy(b)).numpy()
            _INT8_PROBE.append(bool(np.array_equal(got, a.astype(np.int64) @ b.astype(
                np.int64))))
        except RuntimeError:
            _INT8_PROBE.append(False)
    return _INT8_PROBE[0]


@dataclass(frozen=True, eq=False)
class Accumulation:
    """Accumulator values of a conv/linear layer.

    values: integer array (N, O, OH, OW) for conv, (..., O) for linear (int32 where the sum
      provably fits, else int64), already wrapped or saturated to ``accumulator_bits``;
      overflow_count: outputs whose exact sum (bias included) is outside the accumulator range;
      saturated_pairs: int16 pair sums that saturated (0 unless pair saturation is modelled);
      path: how the sum was computed ("int8_gemm", "float32", "float32_split", "float64",
      "int64").
    """

    values: np.ndarray
    overflow_count: int
    saturated_pairs: int
    path: str


def _check_int_codes(name: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.integer):
        raise EmulationError(f"{name} must hold integer codes, got dtype {a.dtype}")
    return a


def _weight_zero_point(w_zero_point: np.ndarray | int, out_channels: int) -> np.ndarray:
    zw = np.asarray(w_zero_point, dtype=np.int64)
    if zw.ndim == 0:
        return zw
    if zw.shape != (out_channels,):
        raise EmulationError(f"weight zero point must be a scalar or have shape "
                             f"({out_channels},), got {zw.shape}")
    return zw


def _fresh_int8(a: np.ndarray) -> np.ndarray:
    """A new C-ordered int8 copy with canonical strides. numpy keeps odd strides on size-1
    dimensions of views (still flagged contiguous) and torch._int_mm then reads wrong
    elements, so GEMM operands are fresh copies unless every dimension exceeds 1."""
    out = np.empty(a.shape, dtype=np.int8)
    out[...] = a
    return out


def _gemm_operand(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.int8 and a.flags.c_contiguous and min(a.shape) > 1:
        return a
    return _fresh_int8(a)


@dataclass(frozen=True, eq=False)
class PreparedWeights:
    """Weight codes of one conv2d / linear layer, planned once for repeated accumulation
    (``prepare_weights``); pass it as ``w`` to ``conv2d_accumulate`` / ``linear_accumulate``.

    codes: (O, C/groups, kh, kw) or (O, K) integer codes; zero_point: int64 scalar or (O,);
    shifted: codes - zero point (int32); max_abs: max |shifted|; int8_mats: where every code
    fits int8, per group the int8 GEMM operand (conv: (O/groups, kh*kw*C/groups) in the
    (kh, kw, C) reduction order; linear: (K, O)), and int8_row_sums its per-output sums
    (int64); otherwise None.
    """

    codes: np.ndarray
    zero_point: np.ndarray
    groups: int
    shifted: np.ndarray
    max_abs: int
    int8_mats: tuple[np.ndarray, ...] | None
    int8_row_sums: tuple[np.ndarray, ...] | None
    _tensors: dict = field(default_factory=dict, repr=False)

    def tensor(self, which: str, dtype: torch.dtype) -> torch.Tensor:
        """Shifted weights ("full"), or their split halves ("hi", "lo"; see ``_exact_sum``),
        as a torch tensor of ``dtype`` (cached: the weights never change)."""
        key = (which, dtype)
        if key not in self._tensors:
            ws = self.shifted
            if which != "full":
                s = _split_bits(self.max_abs)
                lo = ws & ((1 << s) - 1)
                ws = lo if which == "lo" else (ws - lo) >> s
            self._tensors[key] = torch.from_numpy(np.ascontiguousarray(ws)).to(dtype)
        return self._tensors[key]


def prepare_weights(w: np.ndarray, w_zero_point: np.ndarray | int = 0, groups: int = 1
                    ) -> PreparedWeights:
    """Plan weight codes ``w`` (conv (O, C/groups, kh, kw) or linear (O, K)) with per-tensor
    or per-output-channel zero point for repeated accumulation."""
    w = _check_int_codes("weight", w)
    if w.ndim not in (2, 4):
        raise EmulationError(f"weights must be (O, K) or (O, C/groups, kh, kw), got {w.shape}")
    o = w.shape[0]
    if groups < 1 or o % groups:
        raise EmulationError(f"weights {w.shape}: groups={groups} must divide O={o}")
    zw = _weight_zero_point(w_zero_point, o)
    zcol = zw.reshape((-1,) + (1,) * (w.ndim - 1)) if zw.ndim else zw
    shifted = (w.astype(np.int64) - zcol).astype(np.int32)
    codes = np.array(w, dtype=np.int64)
    codes.setflags(write=False)
    mats = sums = None
    if w.size and w.min() >= -128 and w.max() <= 127:
        og = o // groups
        if w.ndim == 4:
            mats = tuple(_fresh_int8(w[g * og:(g + 1) * og].transpose(0, 2, 3, 1).reshape(og, -1))
                         for g in range(groups))
            sums = tuple(m.sum(axis=1, dtype=np.int64) for m in mats)
        else:
            mats = (_fresh_int8(w.T),)
            sums = (w.sum(axis=1, dtype=np.int64),)
    return PreparedWeights(codes=codes, zero_point=zw, groups=groups, shifted=shifted,
                           max_abs=int(np.abs(shifted).max(initial=0)), int8_mats=mats,
                           int8_row_sums=sums)


def _prepared(w, w_zero_point, groups: int) -> PreparedWeights:
    if not isinstance(w, PreparedWeights):
        return prepare_weights(w, 0 if w_zero_point is None else w_zero_point, groups)
    if w.groups != groups:
        raise EmulationError(f"prepared weights have groups={w.groups}, the call groups={groups}")
    if w_zero_point is not None and not np.array_equal(
            np.broadcast_to(np.asarray(w_zero_point), np.shape(w.zero_point)), w.zero_point):
        raise EmulationError("w_zero_point differs from the prepared weights' zero point "
                             "(leave it None with prepared weights)")
    return w


def _bias(bias: np.ndarray | None, out_channels: int, accumulator_bits: int = 32
          ) -> np.ndarray | None:
    """Bias codes at the accumulator scale: int32, or int64 with a wider accumulator (TFLite's
    16x8 kernels take an int64 bias)."""
    if bias is None:
        return None
    b = _check_int_codes("bias", bias).astype(np.int64)
    if b.shape != (out_channels,):
        raise EmulationError(f"bias must have shape ({out_channels},), got {b.shape}")
    bits = 64 if accumulator_bits > 32 else 32
    if b.min(initial=0) < -(1 << (bits - 1)) or b.max(initial=0) > (1 << (bits - 1)) - 1:
        raise EmulationError(f"bias codes must fit in int{bits} (accumulator_bits "
                             f"{accumulator_bits}); got [{b.min()}, {b.max()}]")
    return b


def _add_bias(acc: np.ndarray, bias: np.ndarray | None, bound: int) -> np.ndarray:
    """acc + bias exactly; in place in int32 when every |sum| <= ``bound`` < 2^31."""
    if bias is None:
        return acc
    if acc.dtype == np.int32 and bound < (1 << 31):
        np.add(acc, bias.astype(np.int32), out=acc)
        return acc
    return acc.astype(np.int64) + bias


def _finish(exact: np.ndarray, accumulator_bits: int, overflow: str, saturated_pairs: int,
            path: str, bound: int) -> Accumulation:
    """Apply the accumulator width; ``bound`` >= every |exact| (skips the scan when it fits)."""
    if not 16 <= accumulator_bits <= 64:
        raise EmulationError(f"accumulator_bits must be in 16..64, got {accumulator_bits}")
    if overflow not in ("wrap", "saturate"):
        raise EmulationError(f"accumulator_overflow must be 'wrap' or 'saturate', got "
                             f"{overflow!r}")
    lo = -(1 << (accumulator_bits - 1))
    hi = (1 << (accumulator_bits - 1)) - 1
    count = 0
    if bound > hi and exact.size and (int(exact.min()) < lo or int(exact.max()) > hi):
        count = int(np.count_nonzero((exact < lo) | (exact > hi)))
    if count == 0 or accumulator_bits == 64:
        values = exact
    elif overflow == "wrap":
        span = 1 << accumulator_bits
        values = ((exact.astype(np.int64) - lo) & (span - 1)) + lo
    else:
        values = np.clip(exact, lo, hi)
    return Accumulation(values=values, overflow_count=count, saturated_pairs=saturated_pairs,
                        path=path)


def _split_bits(max_abs_w: int) -> int:
    return max(1, (int(max_abs_w).bit_length() + 1) // 2)


def _exact_sum(run_float, mx: int, pw: PreparedWeights, k: int, run_int64) -> tuple[
        np.ndarray, str]:
    """Exact integer sum of products via the cheapest exact float path (see module doc).

    mx: max |x - zx|; ``run_float(which, dtype)`` computes the sums of the layer's shifted
    input with ``pw.tensor(which, dtype)``; ``run_int64()`` exactly in int64. float32 results
    are exact integers below 2^24 (returned as int32).
    """
    mw = pw.max_abs
    bound = k * mx * mw
    if bound < _F32_EXACT:
        return run_float("full", torch.float32).to(torch.int32).numpy(), "float32"
    s = _split_bits(mw)
    hi_max = int(np.abs((pw.shifted - (pw.shifted & ((1 << s) - 1))) >> s).max(initial=0))
    if k * mx * max(hi_max, (1 << s) - 1) < _F32_EXACT:
        acc_hi = run_float("hi", torch.float32).to(torch.int64)
        acc_lo = run_float("lo", torch.float32).to(torch.int64)
        return ((acc_hi << s) + acc_lo).numpy(), "float32_split"
    if bound < _F64_EXACT:
        return run_float("full", torch.float64).to(torch.int64).numpy(), "float64"
    return run_int64(), "int64"


def _int8_offset(lo: int, hi: int, zero_point: int) -> int | None:
    """c such that codes in [lo, hi] minus c and zero_point - c fit int8 (0 for int8 codes,
    128 for uint8), or None when the codes do not fit the int8 GEMM path."""
    for c in (0, 128):
        if c - 128 <= min(lo, zero_point) and max(hi, zero_point) <= c + 127:
            return c
    return None


def conv_output_size(size: int, kernel: int, stride: int, pad_before: int, pad_after: int,
                     dilation: int) -> int:
    """floor((size + pads - dilation * (kernel - 1) - 1) / stride) + 1 (ONNX/PyTorch rule)."""
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


def _conv_geometry(x: np.ndarray, w: np.ndarray, stride, padding, dilation, groups):
    if x.ndim != 4 or w.ndim != 4:
        raise EmulationError(f"conv2d needs x (N, C, H, W) and w (O, C/groups, kh, kw); got "
                             f"x {x.shape}, w {w.shape}")
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    if groups < 1 or c % groups or o % groups or cg != c // groups:
        raise EmulationError(f"conv2d: groups={groups} does not fit x channels {c}, weight "
                             f"{w.shape} (need C % groups == 0, O % groups == 0, "
                             "w.shape[1] == C / groups)")
    sh, sw = stride
    dh, dw = dilation
    pt, pl, pb, pr = padding
    if min(sh, sw, dh, dw) < 1 or min(pt, pl, pb, pr) < 0:
        raise EmulationError(f"conv2d: stride {stride} and dilation {dilation} must be >= 1, "
                             f"padding {padding} >= 0")
    oh = conv_output_size(h, kh, sh, pt, pb, dh)
    ow = conv_output_size(wd, kw, sw, pl, pr, dw)
    if oh < 1 or ow < 1:
        raise EmulationError(f"conv2d: output would be empty ({oh}x{ow}) for input {h}x{wd}, "
                             f"kernel {kh}x{kw}, padding {padding}, dilation {dilation}")
    return n, c, o, cg, kh, kw, oh, ow


def _im2col(x: np.ndarray, kh: int, kw: int, stride, dilation, oh: int, ow: int) -> np.ndarray:
    """(N, C, Hp, Wp) padded -> (N, OH, OW, kh, kw, C) view-free copy, K order (kh, kw, C)."""
    sh, sw = stride
    dh, dw = dilation
    cols = np.empty((x.shape[0], oh, ow, kh, kw, x.shape[1]), dtype=x.dtype)
    for i in range(kh):  # loops over kernel taps only, never over pixels
        for j in range(kw):
            patch = x[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh,
                      j * dw: j * dw + sw * (ow - 1) + 1: sw]
            cols[:, :, :, i, j, :] = patch.transpose(0, 2, 3, 1)
    return cols


def _pair_saturation_delta(cols: np.ndarray, wk: np.ndarray) -> tuple[np.ndarray, int]:
    """Sum over pairs of (sat16(p) - p), p = a[2j] b[2j] + a[2j+1] b[2j+1], on raw codes.

    cols: (P, T, Cg) raw activation codes per output pixel, kernel tap and channel;
    wk: (T, Cg, O) raw weight codes. Channels are padded to even per tap. Returns the
    (P, O) int64 correction and the number of saturated pair sums.
    """
    p, t, cg = cols.shape
    o = wk.shape[2]
    if cg % 2:
        cols = np.concatenate([cols, np.zeros((p, t, 1), cols.dtype)], axis=2)
        wk = np.concatenate([wk, np.zeros((t, 1, o), wk.dtype)], axis=1)
    a = cols.reshape(p, -1, 2).astype(np.int32)  # (P, J, 2)
    b = wk.reshape(-1, 2, o).astype(np.int32)  # (J, 2, O)
    j = a.shape[1]
    # pairs whose largest possible |sum| fits in int16 can never saturate: skip them
    a_max = np.abs(a).max(axis=0)  # (J, 2)
    b_max = np.abs(b).max(axis=2)  # (J, 2)
    live = np.nonzero((a_max * b_max).sum(axis=1) > 32767)[0]
    delta = np.zeros((p, o), dtype=np.int64)
    count = 0
    if live.size == 0:
        return delta, 0
    a = a[:, live]
    b = b[live]
    j = live.size
    step = max(1, _PAIR_CHUNK_ELEMENTS // max(1, j * o))
    for s in range(0, p, step):  # chunks of pixels (bounded memory), not a per-pixel loop
        pair = (a[s:s + step, :, 0, None] * b[None, :, 0, :]
                + a[s:s + step, :, 1, None] * b[None, :, 1, :])  # (chunk, J, O)
        sat = np.clip(pair, -32768, 32767)
        diff = sat - pair
        count += int(np.count_nonzero(diff))
        delta[s:s + step] = diff.sum(axis=1, dtype=np.int64)
    return delta, count


def _conv_float(x, pw: PreparedWeights, zx, mx, stride, padding, dilation, oh, ow,
                bias_f32: np.ndarray | None = None):
    """Exact conv sums by float32 / split float32 / float64 convolution or int64 GEMM.
    ``bias_f32``: bias added inside a float32 convolution (the caller guarantees every
    |sum + bias| < 2^24, so the float32 result stays exact); ignored by the other paths."""
    n = x.shape[0]
    o, cg, kh, kw = pw.codes.shape
    groups = pw.groups
    pt, pl, pb, pr = padding
    k = cg * kh * kw
    shifted: dict[torch.dtype, torch.Tensor] = {}

    def run_float(which: str, dtype: torch.dtype) -> torch.Tensor:
        with torch.no_grad():
            if dtype not in shifted:  # x - zx: zero padding is zero point padding
                t = torch.from_numpy(x).to(dtype)
                t.sub_(zx)
                if (pt, pl) != (pb, pr):
                    t = F.pad(t, (pl, pr, pt, pb))
                shifted[dtype] = t
            pad = (pt, pl) if (pt, pl) == (pb, pr) else (0, 0)
            b = (torch.from_numpy(bias_f32) if bias_f32 is not None and which == "full"
                 and dtype == torch.float32 else None)
            return F.conv2d(shifted[dtype], pw.tensor(which, dtype), b, stride=stride,
                            padding=pad, dilation=dilation, groups=groups)

    def run_int64() -> np.ndarray:
        xa = np.pad(x.astype(np.int64) - zx, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
        out = np.empty((n, o, oh, ow), dtype=np.int64)
        og = o // groups
        for g in range(groups):  # exact fallback: int64 GEMM per group
            cols = _im2col(xa[:, g * cg:(g + 1) * cg], kh, kw, stride, dilation, oh,
                           ow).reshape(n * oh * ow, -1)
            wk = pw.shifted[g * og:(g + 1) * og].astype(np.int64).transpose(0, 2, 3, 1).reshape(
                og, -1)
            out[:, g * og:(g + 1) * og] = (cols @ wk.T).reshape(n, oh, ow, og).transpose(
                0, 3, 1, 2)
        return out

    return _exact_sum(run_float, mx, pw, k, run_int64)


def _conv_int8(x, pw: PreparedWeights, zx, mx, offset, stride, padding, dilation, oh, ow):
    """Exact conv sums by int8 im2col and torch's int8 GEMM, W (O, K) @ cols (K, pixels).

    cols hold x - offset (int8; padded taps zx - offset). The sum over k of
    (x_k - zx)(w_k - zw) = W cols - zw * colsum(cols) + (offset - zx) * (rowsum(W) - K zw).
    When K * max|x - zx| * max|w - zw| < 2^31 the exact result fits int32 and int32 wrap-around
    in the intermediate terms cancels, so int32 arithmetic is exact; otherwise int64 is used.
    """
    n = x.shape[0]
    o, cg, kh, kw = pw.codes.shape
    groups = pw.groups
    og = o // groups
    k = kh * kw * cg
    pt, pl, pb, pr = padding
    sh, sw = stride
    dh, dw = dilation
    xh = (x - offset).astype(np.int8)
    if any(padding):
        xh = np.pad(xh, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=zx - offset)
    zwv = np.broadcast_to(pw.zero_point, (o,))
    wide = np.int64 if k * mx * pw.max_abs >= (1 << 31) else np.int32
    d = offset - zx
    pointwise = kh == kw == 1 and stride == (1, 1)
    out = None if (n == 1 and groups == 1) else np.empty((n, o, oh, ow), dtype=wide)
    for g in range(groups):  # loops over groups and kernel taps, never over pixels
        if pointwise and n == 1:
            cols = xh[0, g * cg:(g + 1) * cg].reshape(cg, -1)
        else:
            cols = np.empty((kh, kw, cg, n, oh, ow), dtype=np.int8)
            for i in range(kh):
                for j in range(kw):
                    cols[i, j] = xh[:, g * cg:(g + 1) * cg,
                                    i * dh: i * dh + sh * (oh - 1) + 1: sh,
                                    j * dw: j * dw + sw * (ow - 1) + 1: sw].transpose(1, 0, 2, 3)
            cols = cols.reshape(k, -1)
        cols = _gemm_operand(cols)
        zg = zwv[g * og:(g + 1) * og]
        with torch.no_grad():
            acc = torch._int_mm(torch.from_numpy(pw.int8_mats[g]), torch.from_numpy(cols)
                                ).numpy()
        acc = acc.astype(wide, copy=False)
        corr = d * (pw.int8_row_sums[g] - k * zg)
        np.add(acc, corr.astype(wide)[:, None], out=acc)
        if np.any(zg != 0):
            acc -= zg.astype(wide)[:, None] * cols.sum(axis=0, dtype=np.int64).astype(wide)
        if out is None:
            return acc.reshape(1, o, oh, ow)
        out[:, g * og:(g + 1) * og] = acc.reshape(og, n, oh, ow).transpose(1, 0, 2, 3)
    return out


def _check_pair_saturation_codes(x: np.ndarray, codes: np.ndarray) -> None:
    if x.min(initial=0) < 0 or x.max(initial=0) > 255 or codes.min(initial=0) < -128 or (
            codes.max(initial=0) > 127):
        raise EmulationError("int16_pair_saturation models u8 activations x s8 weights "
                             "(vpmaddubsw): activation codes must be in [0, 255] and "
                             "weight codes in [-128, 127]")


def conv2d_accumulate(x: np.ndarray, w: np.ndarray | PreparedWeights, *,
                      x_zero_point: int = 0, w_zero_point: np.ndarray | int | None = None,
                      bias: np.ndarray | None = None, stride: tuple[int, int] = (1, 1),
                      padding: tuple[int, int, int, int] = (0, 0, 0, 0),
                      dilation: tuple[int, int] = (1, 1), groups: int = 1,
                      accumulator_bits: int = 32, accumulator_overflow: str = "wrap",
                      int16_pair_saturation: bool = False) -> Accumulation:
    """Integer 2-D convolution accumulator on codes.

    x: (N, C, H, W) activation codes; w: (O, C/groups, kh, kw) weight codes, or
    ``PreparedWeights`` (then ``w_zero_point`` is taken from it); zero points per tensor for x,
    per tensor or per output channel for w (None: 0); bias: int32 codes (O,) at scale
    s_x * s_w. padding: (top, left, bottom, right), padded taps hold ``x_zero_point``.
    """
    x = _check_int_codes("conv2d input", x)
    if not isinstance(w, PreparedWeights):
        w = _check_int_codes("conv2d weight", w)
    stride = tuple(int(v) for v in stride)
    dilation = tuple(int(v) for v in dilation)
    padding = tuple(int(v) for v in padding)
    if len(stride) != 2 or len(dilation) != 2 or len(padding) != 4:
        raise EmulationError(f"conv2d: stride {stride} and dilation {dilation} need 2 values, "
                             f"padding {padding} needs 4 (top, left, bottom, right)")
    codes = w.codes if isinstance(w, PreparedWeights) else w
    n, c, o, cg, kh, kw, oh, ow = _conv_geometry(x, codes, stride, padding, dilation, groups)
    pw = _prepared(w, w_zero_point, groups)
    b = _bias(bias, o, accumulator_bits)
    zx = int(x_zero_point)
    k = cg * kh * kw
    depthwise = cg == 1 and o == groups
    x_lo, x_hi = (int(x.min()), int(x.max())) if x.size else (zx, zx)
    mx = max(x_hi - zx, zx - x_lo, 0)
    offset = (_int8_offset(x_lo, x_hi, zx) if _int8_gemm_ok() and not depthwise
              and pw.int8_mats is not None and k < _INT8_GEMM_MAX_K else None)
    # |sum| <= K max|x - zx| max|w - zw| + max|bias| (pair saturation only shrinks sums)
    bound = k * mx * pw.max_abs + (int(np.abs(b).max(initial=0)) if b is not None else 0)
    bias_in_float = b is not None and bound < _F32_EXACT and not int16_pair_saturation
    if offset is not None:
        bias_in_float = False
        acc = _conv_int8(x, pw, zx, mx, offset, stride, padding, dilation, oh, ow)
        path = "int8_gemm"
    else:
        acc, path = _conv_float(x, pw, zx, mx, stride, padding, dilation, oh, ow,
                                b.astype(np.float32) if bias_in_float else None)
    saturated = 0
    if int16_pair_saturation and not depthwise:
        _check_pair_saturation_codes(x, pw.codes)
        acc = acc.astype(np.int64)
        pt, pl, pb, pr = padding
        xr = np.pad(x.astype(np.int16), ((0, 0), (0, 0), (pt, pb), (pl, pr)),
                    constant_values=zx)
        og = o // groups
        for g in range(groups):
            cols = _im2col(xr[:, g * cg:(g + 1) * cg], kh, kw, stride, dilation, oh, ow)
            cols = cols.reshape(n * oh * ow, kh * kw, cg)
            wk = pw.codes[g * og:(g + 1) * og].transpose(2, 3, 1, 0).reshape(kh * kw, cg, og)
            delta, cnt = _pair_saturation_delta(cols, wk)
            saturated += cnt
            acc[:, g * og:(g + 1) * og] += delta.reshape(n, oh, ow, og).transpose(0, 3, 1, 2)
    if b is not None and not bias_in_float:
        acc = _add_bias(acc, b.reshape(1, -1, 1, 1), bound)
    return _finish(acc, accumulator_bits, accumulator_overflow, saturated, path, bound)


def _linear_int8(x2, pw: PreparedWeights, zx, mx, offset):
    """Exact linear sums (x - offset) (M, K) @ W^T (K, O) with torch's int8 GEMM, corrected
    for the zero points as in ``_conv_int8``."""
    k = x2.shape[1]
    o = pw.codes.shape[0]
    x8 = _gemm_operand((x2 - offset).astype(np.int8))
    with torch.no_grad():
        acc = torch._int_mm(torch.from_numpy(x8), torch.from_numpy(pw.int8_mats[0])).numpy()
    zwv = np.broadcast_to(pw.zero_point, (o,))
    wide = np.int64 if k * mx * pw.max_abs >= (1 << 31) else np.int32
    acc = acc.astype(wide, copy=False)
    corr = (offset - zx) * (pw.int8_row_sums[0] - k * zwv)
    np.add(acc, corr.astype(wide)[None, :], out=acc)
    if np.any(zwv != 0):
        acc -= x8.sum(axis=1, dtype=np.int64).astype(wide)[:, None] * zwv.astype(wide)[None, :]
    return acc


def _linear_float(x2, pw: PreparedWeights, zx, mx):
    """Exact linear sums by float32 / split float32 / float64 matmul or int64 matmul."""
    k = pw.codes.shape[1]
    shifted: dict[torch.dtype, torch.Tensor] = {}

    def run_float(which: str, dtype: torch.dtype) -> torch.Tensor:
        with torch.no_grad():
            if dtype not in shifted:
                shifted[dtype] = torch.from_numpy(x2).to(dtype).sub_(zx)
            return shifted[dtype] @ pw.tensor(which, dtype).T

    def run_int64() -> np.ndarray:
        return (x2.astype(np.int64) - zx) @ pw.shifted.astype(np.int64).T

    return _exact_sum(run_float, mx, pw, k, run_int64)


def linear_accumulate(x: np.ndarray, w: np.ndarray | PreparedWeights, *,
                      x_zero_point: int = 0, w_zero_point: np.ndarray | int | None = None,
                      bias: np.ndarray | None = None, accumulator_bits: int = 32,
                      accumulator_overflow: str = "wrap",
                      int16_pair_saturation: bool = False) -> Accumulation:
    """Integer linear layer accumulator: x (..., K) codes, w (O, K) codes or
    ``PreparedWeights`` -> (..., O).

    Zero points: per tensor for x, per tensor or per output channel for w (None: 0, or the
    prepared weights'); bias int32 (O,).
    """
    x = _check_int_codes("linear input", x)
    if not isinstance(w, PreparedWeights):
        w = _check_int_codes("linear weight", w)
    codes = w.codes if isinstance(w, PreparedWeights) else w
    if codes.ndim != 2 or x.ndim < 1 or x.shape[-1] != codes.shape[1]:
        raise EmulationError(f"linear needs x (..., K) and w (O, K); got x {x.shape}, "
                             f"w {codes.shape}")
    pw = _prepared(w, w_zero_point, 1)
    o, k = codes.shape
    b = _bias(bias, o, accumulator_bits)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k)
    zx = int(x_zero_point)
    x_lo, x_hi = (int(x2.min()), int(x2.max())) if x2.size else (zx, zx)
    mx = max(x_hi - zx, zx - x_lo, 0)
    offset = (_int8_offset(x_lo, x_hi, zx) if _int8_gemm_ok() and pw.int8_mats is not None
              and k < _INT8_GEMM_MAX_K else None)
    if offset is not None:
        acc = _linear_int8(x2, pw, zx, mx, offset)
        path = "int8_gemm"
    else:
        acc, path = _linear_float(x2, pw, zx, mx)
    saturated = 0
    if int16_pair_saturation:
        _check_pair_saturation_codes(x, pw.codes)
        delta, saturated = _pair_saturation_delta(x2.astype(np.int16).reshape(-1, 1, k),
                                                  pw.codes.T.reshape(1, k, o))
        acc = acc.astype(np.int64) + delta
    bound = k * mx * pw.max_abs + (int(np.abs(b).max(initial=0)) if b is not None else 0)
    acc = _add_bias(acc, b, bound)
    res = _finish(acc, accumulator_bits, accumulator_overflow, saturated, path, bound)
    return Accumulation(values=res.values.reshape(*lead, o), overflow_count=res.overflow_count,
                        saturated_pairs=res.saturated_pairs, path=res.path)


__all__ = ["Accumulation", "PreparedWeights", "conv2d_accumulate", "conv_output_size",
           "linear_accumulate", "prepare_weights"]
