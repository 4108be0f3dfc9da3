"""The shipped host-ort table covers the reference networks; the shipped kernel predictor
loads, covers the table's kernel types and stays small."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwsim.graph import load_model
from hwsim.latency.fusion import rules_for
from hwsim.latency.kernel_predictor import kernel_type
from hwsim.latency.mbnet import arch_onnx
from hwsim.latency.op_space import graphs_kernel_keys, proxyless_block_keys
from hwsim.latency.predictor_io import load_predictor
from hwsim.latency.table import LatencyTable

LUT = Path(__file__).resolve().parents[1] / "lut"


@pytest.fixture(scope="module")
def table():
    return LatencyTable.load(LUT / "host-ort.csv")


def test_shipped_table_covers_mobilenetv2_resnet18_and_proxyless_blocks(table):
    graphs = [load_model(arch_onnx(a)) for a in ("mobilenetv2", "resnet18")]
    keys = graphs_kernel_keys(graphs, rules_for("host-ort"))  # fused and unfused
    missing = [str(k) for k in keys if k not in table]
    assert not missing, missing
    assert all(k in table for k in proxyless_block_keys())
    assert {r.source for r in table} == {"measured"} and {r.threads for r in table} == {1}


def test_shipped_kernel_predictor_loads_and_covers_the_table_kernel_types(table):
    path = LUT / "host-ort-kernels.json"
    assert path.stat().st_size < 2_000_000
    model = load_predictor(path)
    types = {kernel_type(r.key) for r in table} - {None}
    assert types <= set(model.models_)
    some = [r.key for r in table if kernel_type(r.key) is not None][:50]
    assert (model.predict(some) > 0).all()
