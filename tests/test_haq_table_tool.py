"""tools/haq_table.py: rows, CSV columns and the table text for a reward on training images."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def tool(import_tool):
    return import_tool("haq_table")


META = {"date": "d", "command": "c", "episodes": "m 2", "finetune_epochs": 1, "seed": 0,
        "timings": [], "final_finetune_epochs": 10, "reward_metric": "nll", "metric": "latency",
        "val": 479, "test": 200, "train": 958, "final_train": 1437, "reward_data": "train",
        "total_s": 1.0}


def _entry(w: int, cost: float, val: float, nll: float, test: float, final: float) -> dict:
    return {"policy": {"a": {"weight_bits": 8, "activation_bits": 8},
                       "b": {"weight_bits": w, "activation_bits": w}},
            "cost_fraction": cost, "cost": cost, "fits_budget": cost <= 0.6,
            "val_accuracy": val, "val_nll": nll, "accuracy": test,
            "final_finetune": {"accuracy": final}}


def _result() -> dict:
    return {"model": "m", "device": "d", "budget_fraction": 0.6, "metric": "latency",
            "unit": "ms", "finetune_epochs": 1, "final_finetune_epochs": 10, "seed": 0,
            "reward_metric": "nll",
            "data": {"train": 958, "val": 479, "test": 200, "reward_data": "train",
                     "final_finetune_train": 1437},
            **_entry(5, 0.59, 1.0, 0.0123, 0.97, 0.98),
            "baselines": {"uniform-4": _entry(4, 0.43, 1.0, 0.07, 0.90, 0.95),
                          "uniform-6": _entry(6, 0.70, 1.0, 0.003, 0.97, 0.97),
                          "greedy": _entry(7, 0.58, 1.0, 0.02, 0.96, 0.99),
                          "ilp": _entry(3, 0.55, 0.99, 0.03, 0.95, 0.96)}}


def test_rows_carry_the_reward_design_and_the_widest_fitting_uniform(tool):
    rows = tool._rows(_result())
    assert [r["method"] for r in rows] == ["haq", "uniform-4", "greedy", "ilp"]
    assert {(r["reward_metric"], r["reward_data"]) for r in rows} == {("nll", "train")}
    assert [r["val_nll"] for r in rows] == [0.0123, 0.07, 0.02, 0.03]
    assert rows[0]["policy_w/a"] == "8/8 5/5"


def test_markdown_states_the_training_image_reward_and_the_nll_column(tool):
    rows = tool._rows(_result())
    text = tool._markdown([rows], META)
    assert ("val = 479 images of the training split (search reward, greedy/ILP sensitivities; "
            "HAQ's code draws its reward images from the training set), fine-tune on the other "
            "958, test = 200 held-out images.") in text
    assert "fine-tuned 10 epochs on the whole training split (1437 images)" in text
    assert "per-component validation NLL increase" in text
    assert "| m | d | 0.6 | haq | 0.590 | 100.00% | 0.0123 | 97.00% | 98.00% | 8/8 5/5 |" in text
    # final test: HAQ 98% against greedy's 99% -> behind the best baseline, ahead of uniform
    assert "| no (-1.0 pp) |" in text and "| yes (+3.0 pp) |" in text


def test_nll_reward_val_verdict_compares_the_nll_the_search_optimised(tool):
    rows = tool._rows(_result())
    text = tool._markdown([rows], META)
    # val top-1 ties at 100%; the NLL: HAQ 0.0123, best baseline greedy 0.02, uniform-4 0.07
    assert "| HAQ >= best baseline (val NLL) |" in text
    assert ("| m | d | 0.6 | yes (-0.0077 NLL) | yes (+1.0 pp) | no (-1.0 pp) | "
            "yes (-0.0577 NLL) | yes (+7.0 pp) | yes (+3.0 pp) |") in text
    assert "HAQ >= best baseline: val NLL 1/1, test 1/1, final_test 0/1" in text


def _finetune_result(metric: str) -> dict:
    res = _result()
    res["reward_metric"] = metric
    res["data"]["reward_data"] = "finetune"
    running = {"haq": (0.95, 0.20), "uniform-4": (0.90, 0.30), "uniform-6": (0.99, 0.05),
               "greedy": (0.96, 0.15), "ilp": (0.93, 0.25)}
    for name, entry in [("haq", res), *res["baselines"].items()]:
        acc, nll = running[name]
        entry["finetune_running"] = {"accuracy": acc, "nll": nll}
    return res


def test_finetune_reward_rows_and_val_verdict_use_the_running_score(tool):
    meta = {**META, "reward_metric": "top1", "reward_data": "finetune"}
    rows = tool._rows(_finetune_result("top1"))
    assert [r["running_accuracy"] for r in rows] == [0.95, 0.90, 0.96, 0.93]
    text = tool._markdown([rows], meta)
    assert "fine-tune's running top-1 on its own images" in text
    assert "ties broken by the lowest running NLL" in text
    assert "per-component fine-tune running accuracy drop" in text
    assert "| m | d | 0.6 | haq | 0.590 | 95.00% | 0.2000 | 100.00% | 97.00% |" in text
    # running top-1: HAQ 95% behind greedy's 96%, ahead of uniform-4's 90%
    assert "| HAQ >= best baseline (running acc) |" in text
    assert "| m | d | 0.6 | no (-1.0 pp) | yes (+1.0 pp) | no (-1.0 pp) | yes (+5.0 pp) |" in text


def test_finetune_nll_reward_val_verdict_uses_the_running_nll(tool):
    meta = {**META, "reward_data": "finetune"}
    text = tool._markdown([tool._rows(_finetune_result("nll"))], meta)
    # running NLL: HAQ 0.20 behind greedy's 0.15, ahead of uniform-4's 0.30
    assert "| m | d | 0.6 | no (+0.0500 NLL) |" in text
    assert "yes (-0.1000 NLL) |" in text
    assert "HAQ >= best baseline: running NLL 0/1" in text
