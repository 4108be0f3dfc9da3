"""Independent transcription of HAQ's clip-threshold search (mit-han-lab/haq,
``lib/utils/quantize_utils.py`` ``_compute_threshold``), written from its description, for
checking ``hwsim.quant.calibration.haq_threshold``. Does not import hwsim.

One deliberate difference from HAQ's code, shared with hwsim: a term whose two CDF values are
equal counts 0 (HAQ's code computes 0 * log2(0 / 0) = NaN there).
"""

from __future__ import annotations

import math

import numpy as np


def _interp(xs: list[float], xp: list[float], fp: list[float]) -> list[float]:
    out = []
    for x in xs:
        j = 0
        while j + 1 < len(xp) - 1 and xp[j + 1] < x:
            j += 1
        x0, x1 = xp[j], xp[j + 1]
        t = 0.0 if x1 == x0 else (x - x0) / (x1 - x0)
        t = min(max(t, 0.0), 1.0)
        out.append(fp[j] + t * (fp[j + 1] - fp[j]))
    return out


def _grid(n: int) -> list[float]:
    return [0.0] if n == 1 else [k / (n - 1) for k in range(n)]


def haq_threshold(values: np.ndarray, levels: int) -> float:
    a = np.abs(np.asarray(values, dtype=np.float64)).reshape(-1)
    mx = float(a.max())
    if mx == 0.0:
        return 0.0
    hist, edges = np.histogram(a, bins="sqrt", range=(0.0, mx))
    total = float(hist.sum())
    cdf, run = [], 0.0
    for h in hist:
        run += float(h) / total
        cdf.append(run)
    nb = len(hist)
    if levels + 1 > nb:
        return mx
    width = float(edges[1] - edges[0])
    divergences, thresholds = [], []
    for i in range(levels + 1, nb + 1):
        p = cdf[:i - 1] + [1.0] * (nb - i + 1)
        p_levels = _interp(_grid(levels), _grid(i), p[:i])
        q = _interp(_grid(i), _grid(levels), p_levels) + p[i:]
        d = 0.0
        for c, qq in zip(cdf, q, strict=True):
            if c == qq:
                continue
            if c <= 0.0 or qq <= 0.0:
                d = math.inf
                break
            d += (c - qq) * math.log2(c / qq)
        divergences.append(d)
        thresholds.append((i + 0.5) * width)
    best = min(range(len(divergences)), key=lambda k: (divergences[k], k))
    return thresholds[best]
