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

__all__ = ["Device", "HwsimError", "list_devices", "load_device", "__version__"]
