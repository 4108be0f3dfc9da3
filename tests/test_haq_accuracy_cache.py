"""The HAQ accuracy cache: entries survive several evaluators writing one file."""

from __future__ import annotations

import json

import pytest

from hwsim.errors import SearchError
from hwsim.search.haq_run import CachedEvaluator


class _CountingEvaluator:
    """Accuracy = sum of the weight bits / 100, NLL = 1 / that; counts its measurements."""

    def __init__(self) -> None:
        self.asked: list[tuple[tuple[tuple[int, int], ...], str]] = []

    def evaluate(self, policy, split):
        self.asked.append((tuple(policy), split))
        top1 = sum(w for w, _ in policy) / 100
        return top1, 1 / top1

    def fp_evaluate(self, split):
        self.asked.append(((), split))
        return 0.99, 0.01


P1, P2, P3 = [(8, 8), (4, 4)], [(8, 8), (2, 4)], [(6, 6), (6, 6)]


def test_two_evaluators_on_one_file_keep_each_others_entries(tmp_path):
    path = tmp_path / "cache.json"
    search, final = _CountingEvaluator(), _CountingEvaluator()
    a = CachedEvaluator(search, "search-context", path)
    b = CachedEvaluator(final, "final-context", path)  # both read the file before any write
    assert a.accuracy(P1) == 0.12
    assert b.accuracy(P1, "test") == 0.12
    assert a.nll(P2) == pytest.approx(1 / 0.10)  # measured with its accuracy
    assert b.fp_accuracy("test") == 0.99
    assert a.accuracy(P3, "test") == 0.12
    assert (a.evaluations, b.evaluations) == (3, 1)
    stored = json.loads(path.read_text())["entries"]
    assert set(stored["search-context"]) == {
        "val|8.8,4.4", "nll|val|8.8,4.4", "val|8.8,2.4", "nll|val|8.8,2.4",
        "test|6.6,6.6", "nll|test|6.6,6.6"}
    assert set(stored["final-context"]) == {
        "test|8.8,4.4", "nll|test|8.8,4.4", "test|fp", "nll|test|fp"}
    # a later run measures nothing it asked before
    again_search, again_final = _CountingEvaluator(), _CountingEvaluator()
    a2 = CachedEvaluator(again_search, "search-context", path)
    b2 = CachedEvaluator(again_final, "final-context", path)
    assert [a2.accuracy(P1), a2.accuracy(P2), a2.nll(P3, "test")] == [0.12, 0.10, 1 / 0.12]
    assert [b2.accuracy(P1, "test"), b2.fp_nll("test")] == [0.12, 0.01]
    assert again_search.asked == [] and again_final.asked == []


def test_a_same_context_evaluator_writing_later_keeps_the_earlier_ones_entries(tmp_path):
    path = tmp_path / "cache.json"
    first = CachedEvaluator(_CountingEvaluator(), "ctx", path)
    second = CachedEvaluator(_CountingEvaluator(), "ctx", path)
    first.accuracy(P1)
    second.accuracy(P2)
    assert set(json.loads(path.read_text())["entries"]["ctx"]) == {
        "val|8.8,4.4", "nll|val|8.8,4.4", "val|8.8,2.4", "nll|val|8.8,2.4"}
    assert second.accuracy(P1) == 0.12 and second.evaluations == 1  # picked up at its write


def test_a_cache_file_of_another_format_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "cache.json"
    path.write_text(json.dumps({"format": "something else", "entries": {}}))
    with pytest.raises(SearchError, match="cache.json.*is not format"):
        CachedEvaluator(_CountingEvaluator(), "ctx", path)
    path.write_text("{truncated")
    with pytest.raises(SearchError, match="cannot read the accuracy cache"):
        CachedEvaluator(_CountingEvaluator(), "ctx", path)
