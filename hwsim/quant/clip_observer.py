"""Running clip magnitude of a tensor over calibration batches (log and Ristretto schemes).

The clip is the running maximum over batches of ``max(-lo, hi)``, where (lo, hi) are after each
batch:
  minmax: running min and max of x        -> the clip is max |x| over all batches;
  absmax: (-max|x|, max|x|) running        -> the same clip as minmax;
  ema_minmax: exponential moving averages lo <- d*lo + (1-d)*min(batch) (first batch: its
    min/max), likewise hi, with d = ``ema_decay``. This is MQBench's EMA observer followed by
    ``NNIEFakeQuantize``'s running ``data_max = max(data_max, max(-min_val, max_val))``.
Ristretto's ``RangeInLayers`` is the minmax/absmax case (running max of max |x|).

Calibration tensors must be finite and non-empty: a NaN or Inf would make the clip meaningless,
so they raise QuantError rather than being skipped.
"""

from __future__ import annotations

import numpy as np

from hwsim.devices.spec import Calibration, CalibrationMethod
from hwsim.errors import QuantError

CLIP_METHODS = (CalibrationMethod.MINMAX, CalibrationMethod.ABSMAX, CalibrationMethod.EMA_MINMAX)


class ClipStatistics:
    """Streaming clip magnitude per the module docstring; ``clip`` is None before any batch."""

    def __init__(self, calibration: Calibration, scheme: str) -> None:
        if calibration.method not in CLIP_METHODS:
            raise QuantError(f"{scheme}: calibration method {calibration.method.value!r} is not "
                             f"defined for this scheme; allowed: "
                             f"{[m.value for m in CLIP_METHODS]}")
        self.method = calibration.method
        self.ema_decay = calibration.ema_decay
        self.scheme = scheme
        self.lo: float | None = None
        self.hi: float | None = None
        self.clip: float | None = None

    def update(self, x: np.ndarray) -> None:
        """Fold one float32 batch into the statistics."""
        if x.size == 0:
            raise QuantError(f"{self.scheme}: cannot calibrate on an empty tensor "
                             f"(shape {x.shape})")
        bmin = float(np.min(x))
        bmax = float(np.max(x))
        if not (np.isfinite(bmin) and np.isfinite(bmax)):
            raise QuantError(f"{self.scheme}: calibration tensor (shape {x.shape}) contains NaN "
                             "or Inf; the clip must come from finite data")
        if self.method is CalibrationMethod.ABSMAX:
            a = max(-bmin, bmax)
            bmin, bmax = -a, a
        if self.lo is None or self.hi is None:
            self.lo, self.hi = bmin, bmax
        elif self.method is CalibrationMethod.EMA_MINMAX:
            d = float(self.ema_decay)
            self.lo = self.lo * d + bmin * (1.0 - d)
            self.hi = self.hi * d + bmax * (1.0 - d)
        else:
            self.lo, self.hi = min(self.lo, bmin), max(self.hi, bmax)
        c = max(-self.lo, self.hi)
        self.clip = c if self.clip is None else max(self.clip, c)

    def positive_clip(self) -> float:
        """The clip, which must exist and be > 0 (QuantError otherwise)."""
        if self.clip is None:
            raise QuantError(f"{self.scheme}: no calibration data seen yet (call update(x))")
        if not self.clip > 0.0:
            raise QuantError(f"{self.scheme}: the calibration data is all zero (clip "
                             f"{self.clip}); a log or fixed-point range needs a clip > 0")
        return self.clip
