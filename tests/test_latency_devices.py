"""Every shipped device whose ``performance:`` section gives a peak MAC rate for its default
precision models MobileNetV2 (roofline, kernel level); the others fail naming the missing
figure, never with a silent default."""

from __future__ import annotations

import math

import pytest

from hwsim.devices.registry import list_devices, load_device_spec
from hwsim.errors import LatencyError
from hwsim.graph import load_model
from hwsim.latency.fusion import graph_kernels, rules_for
from hwsim.latency.mbnet import arch_onnx
from hwsim.latency.model_latency import model_latency
from hwsim.latency.roofline import RooflineModel
from hwsim.latency.table import LatencyTable


@pytest.fixture(scope="module")
def mbv2():
    return load_model(arch_onnx("mobilenetv2"))


def _modeled(spec) -> bool:
    perf = spec.performance
    return perf is not None and spec.default_precision in perf.peak_macs_per_s


@pytest.mark.parametrize("name", list_devices())
def test_device_models_mobilenetv2_or_names_the_missing_figure(name, mbv2):
    spec = load_device_spec(name)
    if not _modeled(spec):
        with pytest.raises(LatencyError, match="performance") as err:
            RooflineModel(spec)
        if spec.performance is not None and not spec.performance.peak_macs_per_s:
            assert "no public figure" in str(err.value)
        return
    perf = spec.performance
    # a device that can be modeled states its memory bandwidth, sourced or as an assumption
    assert perf.memory_bandwidth_gb_s is not None
    text = " ".join(perf.sources + perf.assumptions)
    assert "memory_bandwidth_gb_s" in text or "GB/s" in text
    roofline = RooflineModel(spec)
    rules = rules_for(name)
    table = LatencyTable()
    for k in graph_kernels(mbv2, rules):
        if k.key is not None and k.key not in table:
            table.add(roofline.row(k.key))
    total = model_latency(mbv2, table, rules).total_ms
    assert total is not None and math.isfinite(total) and total > 0


def test_at_least_the_sourced_accelerators_are_modeled():
    modeled = {n for n in list_devices() if _modeled(load_device_spec(n))}
    assert {"nnie", "ascend310", "vitis", "tensorrt", "nart-gpu"} <= modeled


def test_cli_latency_on_nnie(capsys):
    from hwsim.cli.main import main

    assert main(["latency", "--device", "nnie", "--arch", "mobilenetv2"]) == 0
    out = capsys.readouterr().out
    assert "total:" in out and "modeled on the fly" in out
