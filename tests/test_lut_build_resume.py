"""Table builds resume after an interruption and measure only what is missing."""

from __future__ import annotations

import pytest

from hwsim.errors import LatencyError
from hwsim.latency.build import build_table
from hwsim.latency.measure import TimingPolicy
from hwsim.latency.op_key import OpKey
from hwsim.latency.table import LatencyRow, LatencyTable

KEYS = [OpKey("relu", (8, 8, c), (8, 8, c)) for c in (1, 2, 3, 4, 5, 6, 7)]


class Interrupted(Exception):
    """Stands in for a kill (Ctrl-C, OOM) in the middle of a build."""


class FakeMeasurer:
    """Returns a row per key; raises Interrupted on call number ``fail_at`` (1-based)."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.calls: list[OpKey] = []

    def __call__(self, key: OpKey) -> LatencyRow:
        self.calls.append(key)
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise Interrupted(f"killed while measuring {key}")
        return LatencyRow(key=key, latency_ms=0.01 * key.input[2], source="measured",
                          device="host-ort", backend="host-ort", threads=1, samples=15)


def test_interrupted_build_keeps_rows_and_resumes_with_only_missing_keys(tmp_path):
    out = tmp_path / "lut" / "host-ort.csv"
    first = FakeMeasurer(fail_at=4)
    with pytest.raises(Interrupted):
        build_table("host-ort", KEYS, out, progress=False, row_maker=first)
    saved = LatencyTable.load(out)
    assert [r.key for r in saved] == KEYS[:3]  # every row finished before the kill is on disk

    second = FakeMeasurer()
    report = build_table("host-ort", KEYS, out, progress=False, row_maker=second)
    assert second.calls == KEYS[3:]
    assert report.already_present == 3 and report.added == KEYS[3:]
    final = LatencyTable.load(out)
    assert [r.key for r in final] == KEYS
    assert final.lookup(KEYS[0]) == saved.lookup(KEYS[0])

    third = FakeMeasurer()
    build_table("host-ort", KEYS, out, progress=False, row_maker=third)
    assert third.calls == []


def test_failed_keys_are_reported_not_written(tmp_path):
    def maker(key: OpKey) -> LatencyRow:
        if key.input[2] == 2:
            raise LatencyError("cannot time this one")
        return FakeMeasurer()(key)

    report = build_table("host-ort", KEYS[:3], tmp_path / "t.csv", progress=False,
                         row_maker=maker)
    assert [k for k, _ in report.failed] == [KEYS[1]]
    assert KEYS[1] not in LatencyTable.load(tmp_path / "t.csv")


def test_resume_refuses_a_table_of_another_device_or_thread_count(tmp_path):
    out = tmp_path / "t.csv"
    build_table("host-ort", KEYS[:2], out, progress=False, row_maker=FakeMeasurer())
    with pytest.raises(LatencyError, match="device 'host-ort'"):
        build_table("host-torch", KEYS, out, progress=False, row_maker=FakeMeasurer())
    with pytest.raises(LatencyError, match="1 thread"):
        build_table("host-ort", KEYS, out, threads=2, progress=False, row_maker=FakeMeasurer())


def test_real_onnxruntime_build_of_two_small_ops(tmp_path):
    keys = [OpKey("conv", (14, 14, 16), (14, 14, 16), kernel=3, stride=1, act="relu"),
            OpKey("gap", (7, 7, 64), (1, 1, 64))]
    fast = TimingPolicy(min_samples=5, max_samples=10, budget_s=0.3, min_sample_s=0.0005)
    report = build_table("host-ort", keys, tmp_path / "ort.csv", progress=False, policy=fast)
    assert report.added == keys and not report.failed
    table = LatencyTable.load(tmp_path / "ort.csv")
    for row in table:
        assert row.source == "measured" and row.backend == "host-ort" and row.threads == 1
        assert row.latency_ms > 0 and row.p10_ms <= row.latency_ms <= row.p90_ms
        assert "onnxruntime=" in row.versions and "cpu=" in row.versions
        # host-ort's default method: ORT profiler kernel time, nothing subtracted
        assert row.samples >= 5 and row.method == "kernel" and row.overhead_ms is None
    report = build_table("host-ort", keys, tmp_path / "wall.csv", progress=False, policy=fast,
                         method="wall")
    for row in LatencyTable.load(tmp_path / "wall.csv"):
        assert row.method == "wall" and row.overhead_ms > 0 and row.latency_ms > 0
