"""The one table from a numerics ``kind`` to the scheme class implementing it."""

from __future__ import annotations

import importlib

from hwsim.errors import SpecError
from hwsim.quant.quantizer import Quantizer

# kind -> (module, class). Imported on first use; no registration by import side effects.
SCHEMES: dict[str, tuple[str, str]] = {
    "uniform": ("hwsim.quant.uniform", "UniformQuantizer"),
    "log": ("hwsim.quant.log", "LogQuantizer"),
    "dynamic_fixed_point": ("hwsim.quant.fixed_point", "DynamicFixedPointQuantizer"),
    "minifloat": ("hwsim.quant.minifloat", "MinifloatQuantizer"),
    "power_of_two": ("hwsim.quant.power_of_two", "PowerOfTwoQuantizer"),
    "float": ("hwsim.quant.fp16", "Fp16Quantizer"),
}
# float formats other than fp16: tensors a device keeps unquantized (e.g. NNIE biases)
FLOAT_FORMATS: dict[str, tuple[str, str]] = {
    "fp16": ("hwsim.quant.fp16", "Fp16Quantizer"),
    "fp32": ("hwsim.quant.fp32", "Fp32Passthrough"),
}


def make_quantizer(numerics) -> Quantizer:
    """The quantizer for one ``TensorNumerics`` record of a device spec."""
    try:
        module, cls = SCHEMES[numerics.kind]
    except (KeyError, AttributeError):
        raise SpecError(f"no quantization scheme for kind {getattr(numerics, 'kind', None)!r}; "
                        f"allowed: {sorted(SCHEMES)}") from None
    if numerics.kind == "float":
        module, cls = FLOAT_FORMATS[numerics.format]
    return getattr(importlib.import_module(module), cls)(numerics)
