"""``Device``: a validated device spec together with the quantizers its numerics define."""

from __future__ import annotations

import os
from typing import Literal

from hwsim.devices import DeviceSpec, Precision, load_device_spec
from hwsim.errors import SpecError
from hwsim.quant.factory import make_quantizer
from hwsim.quant.quantizer import Quantizer

Role = Literal["weight", "activation", "bias", "input"]
ROLES: tuple[str, ...] = ("weight", "activation", "bias", "input")


class Device:
    """A target device: its spec (``.spec``) and ``quantizer(role, precision)``."""

    def __init__(self, spec: DeviceSpec) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def precisions(self) -> list[str]:
        """Precisions with a public specification (``int8``, ``fp16``...)."""
        return self.spec.specified_precisions

    @property
    def default_precision(self) -> str:
        return self.spec.default_precision

    def precision(self, precision: str | None = None) -> Precision:
        return self.spec.precision(precision)

    def quantizer(self, role: Role, precision: str | None = None) -> Quantizer:
        """The quantizer of ``role`` ("weight" | "activation" | "bias" | "input") at
        ``precision`` (default: the device's default precision). "input" is the network input:
        the precision's ``input`` numerics where given, else its activation numerics."""
        if role not in ROLES:
            raise SpecError(f"role must be one of {ROLES}, got {role!r}")
        prec = self.spec.precision(precision)
        if role == "input":
            return make_quantizer(prec.input_numerics)
        return make_quantizer(getattr(prec, role))

    def __repr__(self) -> str:
        return f"Device({self.name!r}, precisions={self.precisions})"


def load_device(name_or_path: str | os.PathLike[str]) -> Device:
    """A device by name (``"nnie"``) or from a YAML file path, validated."""
    return Device(load_device_spec(name_or_path))
