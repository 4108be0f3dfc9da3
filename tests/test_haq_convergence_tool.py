"""tools/haq_convergence.py: the agent's best score so far against greedy and ILP."""

from __future__ import annotations

import csv
import json

import pytest


@pytest.fixture(scope="module")
def tool(import_tool):
    return import_tool("haq_convergence")


def _result(reward_data: str, metric: str, greedy: float, ilp: float, chosen: float) -> dict:
    def entry(score: float) -> dict:
        if reward_data == "finetune":
            return {"finetune_running": {"accuracy": score, "nll": score}}
        return {"val_accuracy": score, "val_nll": score}
    return {"model": "m", "device": "d", "budget_fraction": 0.5, "reward_metric": metric,
            "data": {"reward_data": reward_data}, **entry(chosen),
            "baselines": {"greedy": entry(greedy), "ilp": entry(ilp)},
            "sensitivity": {"evaluations": 13}}


@pytest.mark.parametrize(("reward_data", "metric", "expected"), [
    ("finetune", "top1", ("running_accuracy", "finetune_running.accuracy", True)),
    ("finetune", "nll", ("running_nll", "finetune_running.nll", False)),
    ("train", "nll", ("val_nll", "val_nll", False)),
    ("heldout", "top1", ("val_accuracy", "val_accuracy", True)),
])
def test_reward_score_follows_the_runs_reward_design(tool, reward_data, metric, expected):
    assert tool.reward_score(_result(reward_data, metric, 0, 0, 0), "r.json") == expected


def test_reward_score_refuses_an_unknown_metric(tool):
    with pytest.raises(SystemExit, match=r"r.json: reward_metric 'mse' is not top1 or nll"):
        tool.reward_score(_result("heldout", "mse", 0, 0, 0), "r.json")


def test_best_so_far_is_the_running_max_or_min(tool):
    assert tool.best_so_far([0.5, 0.3, 0.4, 0.2], higher=False) == [0.5, 0.3, 0.3, 0.2]
    assert tool.best_so_far([0.5, 0.3, 0.7, 0.2], higher=True) == [0.5, 0.5, 0.7, 0.7]


def test_lower_better_score_reaches_the_best_baseline_only_at_the_end(tool):
    episodes = [{"running_nll": str(v)} for v in (0.5, 0.3, 0.4, 0.2)]
    c = tool.cell_convergence(_result("finetune", "nll", 0.25, 0.35, 0.2), episodes, "r.json")
    assert c["at"] == {0.25: 0.5, 0.5: 0.3, 0.75: 0.3, 1.0: 0.2}
    assert c["reached"] == {0.25: False, 0.5: False, 0.75: False, 1.0: True}
    assert (c["best_baseline"], c["first_at_best"], c["episodes_at_least_baseline"]) == \
        (0.25, 3, 1)


def test_higher_better_score_counts_ties_with_the_baseline_as_reached(tool):
    episodes = [{"val_accuracy": str(v)} for v in (0.90, 0.95, 0.95, 0.93, 0.95, 0.80, 0.70,
                                                   0.95)]
    result = _result("heldout", "top1", 0.95, 0.90, 0.95)
    del result["sensitivity"]  # runs that did not record it
    c = tool.cell_convergence(result, episodes, "r.json")
    assert c["sensitivity_measurements"] is None
    assert c["at"] == {0.25: 0.95, 0.5: 0.95, 0.75: 0.95, 1.0: 0.95}
    assert all(c["reached"].values())
    assert (c["first_at_best"], c["episodes_at_least_baseline"]) == (1, 4)


def test_missing_column_or_field_names_the_file(tool):
    with pytest.raises(SystemExit, match=r"r.json: episodes.csv has no 'val_nll' column"):
        tool.cell_convergence(_result("train", "nll", 0, 0, 0), [{"val_accuracy": "1"}],
                              "r.json")
    old = _result("finetune", "top1", 0, 0, 0)
    del old["baselines"]["ilp"]["finetune_running"]
    with pytest.raises(SystemExit, match=r"r.json: no 'finetune_running.accuracy'"):
        tool.cell_convergence(old, [{"running_accuracy": "1"}], "r.json")
    with pytest.raises(SystemExit, match="r.json: no episodes"):
        tool.cell_convergence(old, [], "r.json")


def test_main_writes_the_report_and_the_plot(tool, tmp_path):
    cell = tmp_path / "run" / "m" / "d" / "latency-0.5"
    cell.mkdir(parents=True)
    (cell / "result.json").write_text(json.dumps(_result("finetune", "nll", 0.25, 0.35, 0.2)))
    with (cell / "episodes.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["episode", "running_nll"])
        w.writerows([[i, v] for i, v in enumerate((0.5, 0.3, 0.4, 0.2))])
    out, png = tmp_path / "c.md", tmp_path / "c.png"
    assert tool.main([str(tmp_path / "run"), "--out", str(out), "--plot", str(png)]) == 0
    text = out.read_text()
    assert ("| m | d | 0.5 | running_nll | 4 | 0.5 | 0.3 | 0.3 | 0.2 * | 3 | 0.25 | 0.35 | 0.2 "
            "| 1 | 13 |") in text
    assert "after 25%: 0/1, after 50%: 0/1, after 75%: 0/1, after 100%: 1/1." in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert tool.main([str(tmp_path / "empty")]) == 2
