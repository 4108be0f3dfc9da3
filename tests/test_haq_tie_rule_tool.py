"""tools/haq_tie_rule.py: which episode HAQ's released code would keep."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def tool(import_tool):
    return import_tool("haq_tie_rule")


def test_earliest_at_best_takes_the_first_of_the_tied_episodes(tool):
    episodes = [{"episode": "0", "reward": "-0.5", "policy_w/a": "8/8 2/2"},
                {"episode": "1", "reward": "0.0", "policy_w/a": "8/8 4/5"},
                {"episode": "2", "reward": "-0.1", "policy_w/a": "8/8 3/3"},
                {"episode": "3", "reward": "0.0", "policy_w/a": "8/8 6/6"}]
    assert tool.earliest_at_best(episodes) == (1, [(8, 8), (4, 5)], 2)
    with pytest.raises(ValueError, match="no episodes"):
        tool.earliest_at_best([])


def test_reported_policy_follows_the_result_layer_order(tool):
    res = {"policy": {"conv1": {"weight_bits": 8, "activation_bits": 8},
                      "fc": {"weight_bits": 4, "activation_bits": 6}}}
    assert tool.reported_policy(res) == [(8, 8), (4, 6)]
