"""The Quantizer contract every scheme implements, and the table from spec kind to scheme.

A quantizer is built from one ``TensorNumerics`` record of a device spec. It never reads files
or YAML; its kernels take arrays and plain scalars.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from hwsim.quant.qparams import QParams


class Observer(ABC):
    """Gathers statistics of a tensor over calibration batches; ``qparams()`` turns them into
    quantization parameters with the scheme's one qparams function."""

    @abstractmethod
    def update(self, x: np.ndarray) -> Observer:
        """Fold one batch into the statistics; returns self."""

    @abstractmethod
    def qparams(self) -> QParams:
        """Quantization parameters from the statistics seen so far."""


class Quantizer(ABC):
    """calibrate -> qparams; quantize -> codes; dequantize -> float32; fake_quant = both.

    Codes are int64 arrays for integer-coded schemes (uniform, log sign-magnitude bytes, fixed
    point, minifloat and power-of-two bit patterns) and float16 arrays for float schemes.
    """

    numerics: Any

    @abstractmethod
    def observer(self) -> Observer:
        """A fresh observer for streaming calibration (activations)."""

    def calibrate(self, x: np.ndarray, **context: Any) -> QParams:
        """Qparams from one tensor (weights, or a whole calibration set of activations)."""
        return self.observer().update(np.asarray(x)).qparams()

    @abstractmethod
    def quantize(self, x: np.ndarray, qp: QParams) -> np.ndarray:
        """Codes of ``x`` under ``qp`` (NaN/Inf handled as the scheme documents)."""

    @abstractmethod
    def dequantize(self, codes: np.ndarray, qp: QParams) -> np.ndarray:
        """float32 values the device represents for ``codes``."""

    def fake_quant(self, x: np.ndarray, qp: QParams) -> np.ndarray:
        """``dequantize(quantize(x, qp), qp)``: float32 values on the device's grid."""
        return self.dequantize(self.quantize(x, qp), qp)
