"""One exception hierarchy for hwsim.

Public entry points raise these with context (file, field, node, op, shapes, scheme); the CLI
prints the message and exits non-zero without a traceback.
"""

from __future__ import annotations


class HwsimError(Exception):
    """Base class of every error hwsim raises on purpose."""


class SpecError(HwsimError):
    """A device spec (YAML) is malformed, inconsistent or names something unknown."""


class UnknownDeviceError(SpecError):
    """No device spec of that name exists."""


class NotSpecifiedError(SpecError):
    """A device precision or behaviour exists but no public source specifies its numerics."""


class QuantError(HwsimError):
    """Bad input to a quantization scheme (shape, dtype, qparams, range)."""


class GraphError(HwsimError):
    """A model cannot be imported or a graph is malformed."""


class UnsupportedOpError(GraphError):
    """An op that the importer, the emulator or the device does not support."""


class EmulationError(HwsimError):
    """Emulation of a graph under a device's numerics failed."""


class LatencyError(HwsimError):
    """Latency tables, measurement or prediction failed."""


class MissingKeyError(LatencyError):
    """A latency table lacks a key and no fallback is available (never counted as zero)."""


class PredictorError(LatencyError):
    """A latency predictor file is malformed, tampered with or incompatible."""


class SearchError(HwsimError):
    """A search (NAS or mixed precision) cannot run as asked (e.g. an unreachable budget)."""


class BudgetError(SearchError):
    """A search budget is malformed (``metric=fraction``) or below the minimum achievable cost."""
