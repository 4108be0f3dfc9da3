"""How table rows are timed (``method``): ORT kernel times without boundary layout
conversions, warm wall time, cold wall time; and fusion read from ORT's optimized graph."""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.errors import LatencyError
from hwsim.latency.build import build_table
from hwsim.latency.fusion import detect_rules_from_graph, graph_kernels, rules_for
from hwsim.latency.host_backends import (
    ORT_PROFILE_TRUNCATION_MS,
    OrtBackend,
    _kernel_ms_per_run,
    cold_copies,
    last_level_cache_bytes,
    make_backend,
)
from hwsim.latency.measure import OpMeasurer, TimingPolicy
from hwsim.latency.op_key import OpKey
from hwsim.latency.table import LatencyRow, LatencyTable

FAST = TimingPolicy(min_samples=5, max_samples=10, budget_s=0.3, min_sample_s=0.0005)


def _node(op: str, dur_us: int) -> dict:
    return {"cat": "Node", "name": f"{op.lower()}_kernel_time", "dur": dur_us,
            "args": {"op_name": op}}


def _run_end() -> dict:
    return {"cat": "Session", "name": "model_run", "dur": 999}


def test_kernel_times_per_run_leave_out_layout_conversions():
    events = [{"cat": "Session", "name": "session_initialization", "dur": 5000}]
    for conv_us in (40, 30, 31, 33):  # first run is a warm-up the caller does not ask for
        events += [_node("ReorderInput", 7), _node("Conv", conv_us), _node("Add", 2),
                   _node("ReorderOutput", 9), _run_end()]
    got = _kernel_ms_per_run(events, 3, "test")
    # conv + add per run, each kernel + half a microsecond for the profiler's truncation
    want = np.array([32, 33, 35]) * 1e-3 + 2 * ORT_PROFILE_TRUNCATION_MS
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)


def test_kernel_times_missing_runs_or_kernels_are_errors():
    events = [_node("Conv", 5), _run_end()]
    with pytest.raises(LatencyError, match="holds 1 runs, expected at least 2"):
        _kernel_ms_per_run(events, 2, "p.json")
    with pytest.raises(LatencyError, match="no kernel other than layout"):
        _kernel_ms_per_run([_node("ReorderInput", 5), _run_end()], 1, "p.json")


def test_cold_copies_cover_twice_the_last_level_cache():
    llc = last_level_cache_bytes()
    assert llc >= 1 << 20
    ws = llc // 10 + 1
    k = cold_copies(ws)
    assert k * ws >= 2 * llc and (k - 1) * ws < 2 * llc
    assert cold_copies(4 * llc) == 1
    assert cold_copies(16, max_copies=64) == 64
    with pytest.raises(LatencyError, match="positive"):
        cold_copies(0)


def test_method_column_round_trips_and_unknown_methods_are_rejected(tmp_path):
    key = OpKey("relu", (8, 8, 4), (8, 8, 4))
    row = LatencyRow(key=key, latency_ms=0.01, source="measured", device="host-ort",
                     method="wall-cold", note="copies=64")
    table = LatencyTable.from_rows([row])
    table.save(tmp_path / "t.csv")
    assert LatencyTable.load(tmp_path / "t.csv") == table
    with pytest.raises(LatencyError, match="method 'hot'"):
        LatencyRow(key=key, latency_ms=0.01, source="measured", device="host-ort",
                   method="hot")


def test_a_table_holds_one_method(tmp_path):
    out = tmp_path / "t.csv"
    key = OpKey("relu", (8, 8, 4), (8, 8, 4))
    LatencyTable.from_rows([LatencyRow(key=key, latency_ms=0.01, source="measured",
                                       device="host-ort", threads=1, method="wall")]).save(out)
    with pytest.raises(LatencyError, match="method 'wall'.*'kernel'"):
        build_table("host-ort", [key.with_(input=(8, 8, 5), output=(8, 8, 5))], out,
                    progress=False)


def test_kernel_method_times_the_op_kernel_only():
    backend = OrtBackend(1)
    key = OpKey("conv", (14, 14, 16), (14, 14, 32), kernel=1, stride=1, act="relu6")
    # the one-op model runs as ReorderInput + NCHWc Conv[Clip] + ReorderOutput
    assert backend.optimized_ops(__import__("hwsim.latency.onnx_builder",
                                            fromlist=["op_model"]).op_model(key)) == \
        ["Conv[Clip]"]
    row = OpMeasurer(backend, FAST)(key)
    assert row.method == "kernel" and row.overhead_ms is None and row.latency_ms > 0
    assert "load1=" in row.note
    with pytest.raises(LatencyError, match="not available on host-torch"):
        OpMeasurer(make_backend("host-torch"), FAST, "kernel")


def test_wall_cold_cycles_through_copies():
    backend = OrtBackend(1)
    key = OpKey("conv", (14, 14, 16), (14, 14, 16), kernel=3, stride=1)
    row = OpMeasurer(backend, FAST, "wall-cold")(key)
    copies = int(dict(p.split("=") for p in row.note.split(";"))["copies"])
    assert copies == cold_copies(backend.op_bytes(key))
    assert copies * backend.op_bytes(key) >= 2 * last_level_cache_bytes() or copies == 64
    run = backend.op_runner(key, copies=3)
    assert run(7) > 0  # 7 runs over 3 instances: wraps around without error


def test_ort_optimized_graph_shows_which_sequences_fuse():
    rules = detect_rules_from_graph(OrtBackend(1), sequences=[
        ("conv", "relu6"), ("conv", "add"), ("conv", "add", "relu"), ("conv", "hswish"),
        ("add", "relu")])
    verdict = {r.ops: r.fused for r in rules.rules}
    assert verdict == {("conv", "relu6"): True, ("conv", "add"): True,
                       ("conv", "add", "relu"): True, ("conv", "hswish"): False,
                       ("add", "relu"): False}
    ev = {r.ops: r.evidence for r in rules.rules}
    assert ev[("conv", "relu6")]["optimized_with_sequence"] == ["Conv", "Conv[Clip]"]
    assert ev[("conv", "add")]["optimized_with_sequence"] == ["Conv", "Conv+Sum"]


def test_shipped_host_ort_rules_make_mbconv_three_kernels():
    from hwsim.graph import load_model
    from hwsim.latency.onnx_builder import op_model

    key = OpKey("expanded_conv", (28, 28, 32), (28, 28, 32), expand=6, kernel=5, stride=1,
                idskip=1)
    kernels = graph_kernels(load_model(op_model(key)), rules_for("host-ort"))
    assert [k.classes for k in kernels] == [("conv", "relu6"), ("dwconv", "relu6"),
                                            ("conv", "add")]
