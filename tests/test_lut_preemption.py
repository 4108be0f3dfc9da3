"""Timing drops samples during which the measuring thread was descheduled (shared machines)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from hwsim.errors import LatencyError
from hwsim.latency.measure import TimingPolicy, time_runner

POLICY = TimingPolicy(min_samples=6, max_samples=40, batch=2, warmup_samples=0,
                      min_sample_s=0.0, budget_s=2.0, rel_tol=0.5)


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _runner(pattern):
    """Runner whose odd calls sleep (wall time without CPU time: what preemption looks like)
    after spinning 1 ms; even calls only spin."""
    calls = [0]

    def run(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            _spin(0.001)
            if pattern(calls[0]):
                time.sleep(0.004)
        calls[0] += 1
        return time.perf_counter() - t0

    run.caller_thread_only = True
    return run


def test_descheduled_samples_are_dropped():
    timing = time_runner(_runner(lambda i: i % 2 == 1), POLICY)
    kept = timing.kept_mask
    # call 0 calibrates the inner loop; sample j is call j + 1, which sleeps when j is even
    assert not kept[0::2].any() and kept.sum() >= 3
    assert np.median(timing.clean) == pytest.approx(0.001, rel=0.5)


def test_runner_that_cannot_tell_keeps_every_sample():
    run = _runner(lambda i: i % 2 == 1)
    run.caller_thread_only = False
    timing = time_runner(run, POLICY)
    assert timing.kept_mask.all()


def test_always_descheduled_runner_fails_instead_of_writing_a_row():
    with pytest.raises(LatencyError, match="too loaded"):
        time_runner(_runner(lambda i: True), POLICY)


def test_thread_cpu_clock_times_only_the_computation():
    policy = TimingPolicy(min_samples=6, max_samples=20, batch=2, warmup_samples=0,
                          min_sample_s=0.0, budget_s=2.0, rel_tol=0.5, clock="thread-cpu")
    timing = time_runner(_runner(lambda i: True), policy)  # every call also sleeps 4 ms
    assert timing.kept_mask.all()
    assert np.median(timing.samples) == pytest.approx(0.001, rel=0.5)
    run = _runner(lambda i: False)
    run.caller_thread_only = False
    with pytest.raises(LatencyError, match="calling thread"):
        time_runner(run, policy)
