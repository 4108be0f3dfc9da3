"""Fusion rules as data, kernels of a graph, detection by test cases, model latency sums."""

from __future__ import annotations

import pytest

from hwsim.errors import LatencyError, MissingKeyError
from hwsim.graph import load_model
from hwsim.latency.fusion import (
    FusionRule,
    FusionRules,
    detect_rules,
    graph_kernels,
    rules_for,
)
from hwsim.latency.model_latency import model_latency
from hwsim.latency.onnx_builder import OnnxNetBuilder
from hwsim.latency.op_key import OpKey
from hwsim.latency.table import LatencyRow, LatencyTable


def _residual_graph():
    """conv3x3+relu -> conv3x3 -> add(input) -> relu -> pool -> flatten -> linear."""
    b = OnnxNetBuilder(seed=1)
    x = b.input((16, 14, 14), "x")
    y = b.act(b.conv(x, 16, 3, 1), "relu")
    y = b.act(b.add(b.conv(y, 16, 3, 1), x), "relu")
    y = b.linear(b.flatten(b.gap(y)), 10)
    return load_model(b.model([y]))


RULES = FusionRules("test", "assumption", (
    FusionRule(("conv", "relu"), True), FusionRule(("conv", "add", "relu"), True),
    FusionRule(("add", "relu"), False)))

CONV = dict(kernel=3, stride=1)
FUSED_KEYS = [
    OpKey("conv", (14, 14, 16), (14, 14, 16), act="relu", **CONV),
    OpKey("conv", (14, 14, 16), (14, 14, 16), idskip=1, act="relu", **CONV),
    OpKey("gap", (14, 14, 16), (1, 1, 16)),
    None,  # flatten: a view
    OpKey("linear", (16,), (10,)),
]


def test_kernels_follow_the_rules():
    kernels = graph_kernels(_residual_graph(), RULES)
    assert [k.key for k in kernels] == FUSED_KEYS
    assert [k.classes for k in kernels] == [("conv", "relu"), ("conv", "add", "relu"), ("gap",),
                                            ("reshape",), ("linear",)]


def test_without_rules_every_op_is_its_own_kernel():
    g = _residual_graph()
    kernels = graph_kernels(g, FusionRules.none())
    assert len(kernels) == len(g.nodes)
    assert kernels[2].key == OpKey("conv", (14, 14, 16), (14, 14, 16), **CONV)
    assert kernels[3].key == OpKey("add", (14, 14, 16), (14, 14, 16))


def test_a_partial_sequence_is_not_fused():
    # only conv+add+relu is a rule, conv+add alone is not: the longest fused chain wins,
    # and without the relu rule a conv followed by relu stays two kernels
    rules = FusionRules("t", "assumption", (FusionRule(("conv", "add", "relu"), True),))
    kernels = graph_kernels(_residual_graph(), rules)
    assert kernels[0].classes == ("conv",) and kernels[1].classes == ("relu",)
    assert kernels[2].classes == ("conv", "add", "relu")


def _table(keys, ms=0.5):
    return LatencyTable.from_rows(
        LatencyRow(key=k, latency_ms=ms * (i + 1), source="measured", device="host-ort")
        for i, k in enumerate(keys) if k is not None)


def test_model_latency_sums_kernels_and_names_missing_keys():
    g = _residual_graph()
    table = _table(FUSED_KEYS)
    result = model_latency(g, table, RULES)
    assert result.total_ms == pytest.approx(0.5 + 1.0 + 1.5 + 2.5)  # view costs 0
    assert result.coverage == {"table": 4, "fallback": 0, "view": 1, "missing": 0}

    partial = _table(FUSED_KEYS[:2])
    with pytest.raises(MissingKeyError, match="gap-input:14x14x16-output:1x1x16"):
        model_latency(g, partial, RULES)
    report = model_latency(g, partial, RULES, strict=False)
    assert report.total_ms is None
    assert [str(k) for k in report.missing] == [str(FUSED_KEYS[2]), str(FUSED_KEYS[4])]

    with_fallback = model_latency(g, partial, RULES, fallback=lambda key: 0.25)
    assert with_fallback.total_ms == pytest.approx(0.5 + 1.0 + 0.25 + 0.25)
    assert with_fallback.coverage["fallback"] == 2
    declined = model_latency(g, partial, RULES, fallback=lambda key: None, strict=False)
    assert declined.total_ms is None


def test_rules_files_round_trip_and_validation(tmp_path):
    RULES.save(tmp_path / "r.yaml")
    assert FusionRules.load(tmp_path / "r.yaml") == RULES
    (tmp_path / "bad.yaml").write_text("backend: x\nbasis: guessed\nrules: []\n")
    with pytest.raises(LatencyError, match="basis"):
        FusionRules.load(tmp_path / "bad.yaml")
    (tmp_path / "bad2.yaml").write_text("backend: x\nbasis: assumption\nrules:\n"
                                        "  - {ops: [conv], fused: true}\n")
    with pytest.raises(LatencyError, match=r"rules\[0\]"):
        FusionRules.load(tmp_path / "bad2.yaml")


def test_shipped_rules_load():
    for backend in ("host-ort", "host-torch", "host-cuda", "nnie"):
        rules = rules_for(backend)
        assert rules.basis in ("detected", "documented", "assumption")


class _FakeBackend:
    name, threads = "fake", 1

    def versions(self) -> str:
        return "fake=1"


class _FakeMeasure:
    """Sequence time = sum of parts, minus the activation's time when conv+act is fused."""

    def __call__(self, key: OpKey) -> LatencyRow:
        t = {"conv": 1.0, "dwconv": 0.8, "relu": 0.2, "relu6": 0.2}[key.op]
        if key.act is not None and key.act != "relu":  # relu fused: free; relu6 not fused
            t += 0.2
        return LatencyRow(key=key, latency_ms=t, source="measured", device="fake")


def test_detection_marks_sequences_fused_only_when_time_disappears():
    rules = detect_rules(_FakeBackend(), _FakeMeasure(),
                         sequences=[("conv", "relu"), ("conv", "relu6"), ("dwconv", "relu")])
    verdict = {r.ops: r.fused for r in rules.rules}
    assert verdict == {("conv", "relu"): True, ("conv", "relu6"): False,
                       ("dwconv", "relu"): True}
    assert rules.basis == "detected"
    assert rules.rules[0].evidence["t_parts_ms"] == [1.0, 0.2]
