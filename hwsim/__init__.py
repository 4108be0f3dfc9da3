"""hwsim: hardware-aware quantization emulation, latency modeling and deployment simulation.

    import hwsim
    hwsim.list_devices()
    dev = hwsim.load_device("nnie")
    qz = dev.quantizer("weight", precision="int8")
    qp = qz.calibrate(w); codes = qz.quantize(w, qp); w_dev = qz.dequantize(codes, qp)
"""

from hwsim.devices import list_devices
from hwsim.errors import HwsimError
from hwsim.quant.device import Device, load_device

__version__ = "0.1.0"

__all__ = ["Device", "HwsimError", "LatencyModel", "list_devices", "load_device",
           "__version__"]


def __getattr__(name: str):  # noqa: ANN202 (lazy attributes keep `import hwsim` light)
    if name == "LatencyModel":
        from hwsim.search.latency_model import LatencyModel

        return LatencyModel
    raise AttributeError(f"module 'hwsim' has no attribute {name!r}")
