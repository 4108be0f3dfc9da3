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
    assert tool.earliest_at_best(episodes, "e.csv") == (1, [(8, 8), (4, 5)], 2)
    with pytest.raises(SystemExit, match="e.csv: no episodes"):
        tool.earliest_at_best([], "e.csv")
    bad = [{"episode": "0", "reward": "0.0", "policy_w/a": "8/8 x"}]
    with pytest.raises(SystemExit, match=r"e.csv: policy_w/a item 'x' is not W/A bits"):
        tool.earliest_at_best(bad, "e.csv")
