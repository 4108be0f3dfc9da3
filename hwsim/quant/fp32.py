"""float32 "numerics": tensors a device keeps unquantized (e.g. NNIE biases, kept in float by
MQBench's deploy flow). Codes are the float32 values themselves; NaN and +-Inf pass through."""

from __future__ import annotations

from typing import Any

import numpy as np

from hwsim.devices.spec import FloatNumerics
from hwsim.errors import QuantError
from hwsim.quant.qparams import FloatQParams
from hwsim.quant.quantizer import Observer, Quantizer
from hwsim.quant.tensor_input import float32_tensor, reject_context


class _NoStatistics(Observer):
    def update(self, x: np.ndarray) -> _NoStatistics:
        return self

    def qparams(self) -> FloatQParams:
        return FloatQParams(format="fp32")


class Fp32Passthrough(Quantizer):
    """Identity in float32: quantize/dequantize return float32 copies of the input."""

    def __init__(self, numerics: FloatNumerics) -> None:
        if numerics.format != "fp32":
            raise QuantError(f"Fp32Passthrough needs format fp32, got {numerics.format!r}")
        self.numerics = numerics

    def observer(self) -> Observer:
        return _NoStatistics()

    def calibrate(self, x: np.ndarray, **context: Any) -> FloatQParams:
        reject_context(context, "fp32")
        return FloatQParams(format="fp32")

    def quantize(self, x: np.ndarray, qp: FloatQParams) -> np.ndarray:
        return float32_tensor(x, "fp32").copy()

    def dequantize(self, codes: np.ndarray, qp: FloatQParams) -> np.ndarray:
        return float32_tensor(codes, "fp32").copy()
