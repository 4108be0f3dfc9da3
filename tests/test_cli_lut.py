"""``hwsim lut build|import|show`` and ``hwsim latency`` end to end (small inputs)."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import yaml

from hwsim.cli.main import main
from hwsim.graph import load_model
from hwsim.latency.fusion import graph_kernels, rules_for
from hwsim.latency.mbnet import mbnet_block_keys, mobilenetv2_net
from hwsim.latency.onnx_builder import OnnxNetBuilder
from hwsim.latency.op_key import format_key
from hwsim.latency.table import LatencyRow, LatencyTable

TRT = Path(__file__).resolve().parents[1] / "devices" / "tensorrt.yaml"


def _device_yaml(tmp_path: Path) -> Path:
    data = yaml.safe_load(TRT.read_text())
    data["name"] = "testgpu"
    data["performance"] = {"peak_macs_per_s": {"int8": 1e12, "fp16": 5e11},
                           "memory_bandwidth_gb_s": 10.0, "op_overhead_us": 1.0,
                           "efficiency": {"conv": 0.5, "dwconv": 0.25, "fc": 0.5, "pool": 0.5,
                                          "elementwise": 0.5}}
    path = tmp_path / "testgpu.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_lut_build_modeled_then_show(tmp_path, capsys):
    dev = _device_yaml(tmp_path)
    out = tmp_path / "testgpu.csv"
    assert main(["lut", "build", "--device", str(dev), "--space", "proxyless", "--out",
                 str(out), "--no-progress"]) == 0
    table = LatencyTable.load(out)
    assert len(table) == 72 and {r.source for r in table} == {"modeled"}
    capsys.readouterr()
    assert main(["lut", "show", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 72 and summary["ops"]["expanded_conv"] == 69


def test_lut_build_for_a_device_without_performance_fails_clearly(tmp_path, capsys):
    data = yaml.safe_load(TRT.read_text())
    data.pop("performance", None)
    data["name"] = "noperf"
    (tmp_path / "noperf.yaml").write_text(yaml.safe_dump(data))
    code = main(["lut", "build", "--device", str(tmp_path / "noperf.yaml"), "--space",
                 "proxyless", "--out", str(tmp_path / "x.csv"), "--no-progress"])
    assert code == 1
    assert "no 'performance:' section" in capsys.readouterr().err


def test_lut_import_and_block_level_arch_latency(tmp_path, capsys):
    keys = mbnet_block_keys(mobilenetv2_net())
    published = {}
    for i, key in enumerate(keys):
        published.setdefault(format_key(key, "proxyless"),
                             {"count": 10, "mean": 0.5 + i, "var": 0.01})
    src = tmp_path / "lut.yaml"
    src.write_text(yaml.safe_dump(published))
    out = tmp_path / "phone.csv"
    assert main(["lut", "import", str(src), "--format", "proxyless", "--device", "phone",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["latency", "--device", "phone", "--table", str(out), "--arch", "mobilenetv2",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["level"] == "block" and len(result["kernels"]) == len(keys)
    # repeated blocks (same key) count once per occurrence
    expected = sum(published[format_key(k, "proxyless")]["mean"] for k in keys)
    assert result["total_ms"] == pytest.approx(expected)


def _small_model(tmp_path: Path) -> Path:
    b = OnnxNetBuilder(seed=3)
    x = b.input((8, 16, 16), "x")
    y = b.act(b.conv(x, 16, 3, 2), "relu")
    y = b.linear(b.flatten(b.gap(y)), 10)
    path = tmp_path / "small.onnx"
    onnx.save(b.model([y]), path)
    return path


def test_latency_of_model_sums_table_and_names_missing_keys(tmp_path, capsys):
    model = _small_model(tmp_path)
    kernels = graph_kernels(load_model(str(model)), rules_for("host-ort"))
    keys = [k.key for k in kernels if k.key is not None]
    rows = [LatencyRow(key=k, latency_ms=0.1 * (i + 1), source="measured", device="host-ort",
                       backend="host-ort", threads=1) for i, k in enumerate(keys)]
    full = tmp_path / "full.csv"
    LatencyTable.from_rows(rows).save(full)
    assert main(["latency", "--device", "host-ort", "--table", str(full), str(model),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["total_ms"] == pytest.approx(sum(0.1 * (i + 1) for i in range(len(keys))))
    assert result["missing_keys"] == []

    partial = tmp_path / "partial.csv"
    LatencyTable.from_rows(rows[1:]).save(partial)
    assert main(["latency", "--device", "host-ort", "--table", str(partial), str(model)]) == 1
    captured = capsys.readouterr()
    assert str(keys[0]) in captured.err and "MISSING" in captured.out
    assert "unknown (missing keys)" in captured.out


def test_latency_on_a_modeled_device_without_table(tmp_path, capsys):
    dev = _device_yaml(tmp_path)
    model = _small_model(tmp_path)
    assert main(["latency", "--device", str(dev), str(model), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["total_ms"] > 0 and result["table"].startswith("modeled")
    assert all(k["source"] in ("table", "view") for k in result["kernels"])


def test_lut_build_needs_space_or_model(capsys):
    assert main(["lut", "build", "--device", "host-ort", "--no-progress"]) == 1
    assert "exactly one of --space" in capsys.readouterr().err
