"""HAQ DDPG search: reproducible, resumable, every policy within budget."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from hwsim.errors import SearchError
from hwsim.search.haq_cost import CostTable, QuantLayer
from hwsim.search.haq_ddpg import DdpgConfig, run_haq, truncated_normal

BITS = (2, 3, 4, 5, 6, 7, 8)
# HAQ's hyper-parameters with smaller networks, to keep the tests fast
CONFIG = DdpgConfig(episodes=9, warmup=3, hidden1=64, hidden2=64, seed=3)


def _layer(i: int, cin: int, cout: int, hw: int) -> QuantLayer:
    return QuantLayer(name=f"l{i}", op="conv2d", input_tensor=f"t{i}", in_channels=cin,
                      out_channels=cout, kernel=3, kernel_w=3, stride=1, groups=1,
                      in_hw=(hw, hw), out_hw=(hw, hw), macs=cin * cout * 9 * hw * hw,
                      params=cin * cout * 9, in_elems=cin * hw * hw)


class _Evaluator:
    """Stand-in for PolicyEvaluator: accuracy falls with fewer bits, more for early layers."""

    base_bits = 8

    def __init__(self, stop_after: int | None = None) -> None:
        self.layers = [_layer(i, 4 * (i + 1), 4 * (i + 2), 8 >> (i // 2)) for i in range(5)]
        self.calls = 0
        self.stop_after = stop_after

    def fp_accuracy(self, split: str = "val") -> float:
        return 0.95

    def accuracy(self, policy, split: str = "val") -> float:
        self.calls += 1
        if self.stop_after is not None and self.calls > self.stop_after:
            raise KeyboardInterrupt  # simulates a search killed in the middle of an episode
        sens = np.linspace(1.0, 0.3, len(policy))
        return 0.95 - float(sum(s * (2.0 ** -w + 2.0 ** -a)
                                for s, (w, a) in zip(sens, policy, strict=True)))


def _costs(ev: _Evaluator) -> CostTable:
    vals = np.array([[[lay.macs * w * a for a in BITS] for w in BITS] for lay in ev.layers],
                    float) * 1e-9
    return CostTable("latency", "ms", BITS, tuple(lay.name for lay in ev.layers), vals,
                     "test: MACs * w * a")


def _run(config=CONFIG, checkpoint=None, evaluator=None):
    ev = evaluator or _Evaluator()
    costs = _costs(ev)
    return run_haq(ev, costs, 0.55 * costs.uniform(8), config, checkpoint=checkpoint,
                   progress=False), costs


def test_same_seed_gives_the_same_search_and_other_seeds_differ():
    a, costs = _run()
    b, _ = _run()
    assert a.policy == b.policy
    assert a.episodes == b.episodes
    c, _ = _run(replace(CONFIG, seed=4))
    assert [e.policy for e in c.episodes] != [e.policy for e in a.episodes]
    assert len(a.episodes) == CONFIG.episodes
    best = max(a.episodes, key=lambda e: e.reward)
    assert (a.policy, a.cost, a.accuracy) == (best.policy, best.cost, best.accuracy)


def test_every_episode_respects_budget_and_first_last_rule():
    res, costs = _run()
    budget = 0.55 * costs.uniform(8)
    for ep in res.episodes:
        assert costs.total(ep.policy) == pytest.approx(ep.cost)
        assert ep.cost <= budget
        assert ep.policy[0] == (8, 8) and ep.policy[-1] == (8, 8)
        assert all(w in BITS and a in BITS for w, a in ep.policy)
        assert ep.reward == pytest.approx(0.1 * (100 * ep.accuracy - 95.0))


def test_interrupted_search_resumes_to_the_uninterrupted_result(tmp_path):
    full, _ = _run()
    ckpt = tmp_path / "haq.ckpt"
    # killed during the 7th episode's evaluation (after warm-up, so the agent has learned)
    with pytest.raises(KeyboardInterrupt):
        _run(checkpoint=ckpt, evaluator=_Evaluator(stop_after=6))
    assert ckpt.exists()
    assert not list(tmp_path.glob("*.tmp"))
    resumed, _ = _run(checkpoint=ckpt)
    assert resumed.episodes == full.episodes
    assert resumed.policy == full.policy
    # a finished checkpoint returns its result without evaluating again
    ev = _Evaluator()
    again, _ = _run(checkpoint=ckpt, evaluator=ev)
    assert again.episodes == full.episodes and ev.calls == 0


def test_a_shorter_run_continues_to_the_longer_one(tmp_path):
    ckpt = tmp_path / "haq.ckpt"
    _run(replace(CONFIG, episodes=5), checkpoint=ckpt)
    longer, _ = _run(checkpoint=ckpt)
    full, _ = _run()
    assert longer.episodes == full.episodes


def test_checkpoint_is_plain_data_and_guards_against_another_search(tmp_path):
    ckpt = tmp_path / "haq.ckpt"
    _run(replace(CONFIG, episodes=4), checkpoint=ckpt)
    payload = torch.load(ckpt, weights_only=True)
    assert isinstance(payload["meta"], str) and payload["replay"]["state"].dtype == torch.float64
    with pytest.raises(SearchError, match="seed"):
        _run(replace(CONFIG, seed=9), checkpoint=ckpt)
    ev = _Evaluator()
    costs = _costs(ev)
    with pytest.raises(SearchError, match="budget"):
        run_haq(ev, costs, 0.6 * costs.uniform(8), CONFIG, checkpoint=ckpt, progress=False)
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(SearchError, match="cannot read"):
        _run(checkpoint=ckpt)


def test_torch_global_state_is_left_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    _run(replace(CONFIG, episodes=4))
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


def test_truncated_normal_stays_in_range_and_centres_on_mu():
    rng = np.random.default_rng(0)
    xs = np.array([truncated_normal(0.3, 0.05, rng) for _ in range(4000)])
    assert xs.min() >= 0.0 and xs.max() <= 1.0
    assert abs(xs.mean() - 0.3) < 0.005
    assert abs(xs.std() - 0.05) < 0.005
    edge = np.array([truncated_normal(0.99, 0.5, rng) for _ in range(2000)])
    assert edge.min() >= 0.0 and edge.max() <= 1.0


def test_config_rejects_bad_hyper_parameters():
    with pytest.raises(SearchError, match="tau"):
        DdpgConfig(tau=1.5)
    with pytest.raises(SearchError, match="episodes"):
        DdpgConfig(episodes=0)
    d = DdpgConfig()
    assert (d.hidden1, d.hidden2, d.lr_actor, d.lr_critic, d.tau, d.discount, d.batch_size,
            d.replay_per_layer, d.warmup, d.noise_sigma, d.noise_decay, d.episodes) == \
        (300, 300, 1e-4, 1e-3, 0.01, 1.0, 64, 128, 20, 0.5, 0.99, 600)
    assert d.sigma(20) == 0.5 and d.sigma(120) == pytest.approx(0.5 * 0.99 ** 100)


class _SaturatedEvaluator(_Evaluator):
    """Top-1 that saturates like a small validation split: every policy scores 0.9 or 0.95."""

    def accuracy(self, policy, split: str = "val") -> float:
        return 0.95 if super().accuracy(policy, split) > 0.8 else 0.9


def test_ties_at_the_best_reward_go_to_the_lowest_tie_break_then_the_earliest():
    ev = _SaturatedEvaluator()
    costs = _costs(ev)
    config = replace(CONFIG, episodes=12)
    plain = run_haq(ev, costs, 0.55 * costs.uniform(8), config, progress=False)
    top = max(e.reward for e in plain.episodes)
    tied = [e for e in plain.episodes if e.reward == top]
    assert len(tied) >= 3 and plain.tied_at_best == len(tied)  # the case this rule is for
    assert plain.policy == tied[0].policy  # no tie-break: the earliest, as HAQ
    # tie-break: total bits of the policy (lower wins)
    score = {tuple(e.policy): sum(w + a for w, a in e.policy) for e in tied}
    want = min(tied, key=lambda e: (score[tuple(e.policy)], e.episode))
    assert want.episode != tied[0].episode  # so the rule is seen to act
    broken = run_haq(ev, costs, 0.55 * costs.uniform(8), config, progress=False,
                     tie_break=lambda p: float(sum(w + a for w, a in p)))
    assert broken.episodes == plain.episodes  # the search itself is unchanged
    assert (broken.policy, broken.cost) == (want.policy, want.cost)
    asked = []
    run_haq(ev, costs, 0.55 * costs.uniform(8), config, progress=False,
            tie_break=lambda p: asked.append(tuple(p)) or 0.0)
    assert set(asked) <= {tuple(e.policy) for e in tied}  # only tied episodes are scored
