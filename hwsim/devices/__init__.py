"""Device specs: validated YAML descriptions of each target's numerics and performance."""

from hwsim.devices.registry import device_dirs, list_devices, load_device_spec
from hwsim.devices.spec import (
    Arithmetic,
    Calibration,
    CalibrationMethod,
    DeviceSpec,
    DynamicFixedPointNumerics,
    FloatNumerics,
    Granularity,
    LogNumerics,
    MinifloatNumerics,
    Performance,
    PowerOfTwoNumerics,
    Precision,
    Rounding,
    UniformNumerics,
    UnspecifiedPrecision,
    load_spec,
    parse_spec,
)

__all__ = [
    "Arithmetic", "Calibration", "CalibrationMethod", "DeviceSpec", "DynamicFixedPointNumerics",
    "FloatNumerics", "Granularity", "LogNumerics", "MinifloatNumerics", "Performance",
    "PowerOfTwoNumerics", "Precision", "Rounding", "UniformNumerics", "UnspecifiedPrecision",
    "device_dirs", "list_devices", "load_device_spec", "load_spec", "parse_spec",
]
