"""HAQ's DDPG agent and search loop (``run_haq``), seeded, checkpointed and resumable.

Follows mit-han-lab/haq ``lib/rl/ddpg.py``, ``lib/rl/memory.py`` and ``rl_quantize.py`` with the
hyper-parameters of DESIGN.md B9 (``DdpgConfig`` defaults): actor state -> 300 -> 300 -> 1 with
ReLU and a sigmoid output; critic (state, action) -> 300 (the two inputs' linear maps added) ->
300 -> 1; Adam with lr 1e-4 (actor) and 1e-3 (critic); soft target updates with tau 0.01;
discount 1; batch 64; a replay memory of 128 transitions per layer; uniform random actions
during the warm-up episodes, then the actor's action perturbed by a normal truncated to [0, 1]
with sigma 0.5 * 0.99^(episode - warmup). Every transition of an episode is stored with the
episode's final reward, and each stored transition is followed by one update (after warm-up).
Each update subtracts a moving-average baseline (alpha 0.5, over the batch mean reward) from
the sampled rewards; the critic regresses r + discount * (1 - done) * Q'(s', mu'(s')) (MSE), the
actor maximises Q(s, mu(s)).

Deviations from HAQ's code:

- Warm-up is episodes ``0 .. warmup - 1`` (HAQ: ``episode <= warmup``, one more); learning and
  the noise schedule start at episode ``warmup`` with sigma 0.5.
- Transitions are stored with their next state explicitly; HAQ's keras-rl memory infers it
  from the next stored observation and appends an extra zero-reward entry after each episode.
- All randomness of the search (warm-up actions, noise, replay sampling) comes from one seeded
  ``numpy.random.Generator``; torch's global RNG is used only to initialise the networks, inside
  ``torch.random.fork_rng`` seeded with ``seed`` (the caller's torch RNG state is untouched).
- The best policy is the one with the highest reward, as HAQ; among episodes tied at that
  reward (common with top-1 on a small validation split) the one with the lowest
  ``tie_break(policy)`` if the caller gives one (``haq_run``: the validation NLL measured with
  the accuracy), then the earliest (HAQ: the earliest).

Checkpoint: one file written by ``torch.save`` (temporary name, then ``os.replace``) after every
episode, holding only tensors, numbers, strings, lists and dicts: the four networks' and two
optimizers' state dicts, the replay memory as float64 tensors, and a JSON string with the config,
the problem (layers, widths, budget, fixed pairs, fp accuracy), the numpy generator state, the
reward baseline and every episode so far. It is read with ``torch.load(weights_only=True)``.
Resuming with the same evaluator, costs, budget and config ends exactly where an uninterrupted run
does. ``run_haq`` runs torch with one intra-op thread (the caller's setting is restored): the
networks are tiny (multi-threading made updates ~10x slower on a shared 2-core machine), and a
fixed thread count keeps float results independent of the machine's core count.
"""

from __future__ import annotations

import json
import os
import pickle  # only for the error class torch.load raises on a corrupt file
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import ndtr, ndtri
from torch import nn
from tqdm import tqdm

from hwsim.errors import SearchError
from hwsim.search.haq_accuracy import torch_threads
from hwsim.search.haq_cost import CostTable
from hwsim.search.haq_env import AccuracySource, HaqEnv, Policy

CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class DdpgConfig:
    """HAQ's DDPG hyper-parameters (``rl_quantize.py`` defaults, DESIGN.md B9) and the seed."""

    episodes: int = 600
    warmup: int = 20  # episodes of uniform random actions before learning
    hidden1: int = 300
    hidden2: int = 300
    lr_actor: float = 1e-4
    lr_critic: float = 1e-3
    tau: float = 0.01
    discount: float = 1.0
    batch_size: int = 64
    replay_per_layer: int = 128  # replay capacity = 128 x quantizable layers (HAQ rmsize)
    noise_sigma: float = 0.5  # truncated-normal sigma at the first learning episode
    noise_decay: float = 0.99  # per episode after warm-up
    baseline_alpha: float = 0.5  # moving-average reward baseline (per update)
    updates_per_step: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        positive = ("episodes", "hidden1", "hidden2", "batch_size", "replay_per_layer",
                    "updates_per_step")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise SearchError(f"DdpgConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise SearchError(f"DdpgConfig.warmup must be >= 0, got {self.warmup}")
        for name in ("lr_actor", "lr_critic", "noise_sigma"):
            if not getattr(self, name) > 0:
                raise SearchError(f"DdpgConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("tau", "noise_decay", "baseline_alpha", "discount"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise SearchError(f"DdpgConfig.{name} must lie in [0, 1], got {v}")

    def sigma(self, episode: int) -> float:
        """Exploration sigma at ``episode`` (>= warmup)."""
        return self.noise_sigma * self.noise_decay ** (episode - self.warmup)


@dataclass(frozen=True)
class HaqEpisode:
    """One episode: the budget-walked policy, its cost (cost-table unit), validation accuracy
    (fraction) and reward."""

    episode: int
    policy: Policy
    cost: float
    accuracy: float
    reward: float


@dataclass(frozen=True)
class HaqSearchResult:
    """Best policy by reward with its cost and validation accuracy, every episode, and how many
    episodes were tied at the best reward (the tie-break is in the module docstring)."""

    policy: Policy
    cost: float
    accuracy: float
    episodes: list[HaqEpisode]
    tied_at_best: int = 1


class Actor(nn.Module):
    """state -> hidden1 -> hidden2 -> 1, ReLU, sigmoid output (an action in [0, 1])."""

    def __init__(self, n_states: int, hidden1: int, hidden2: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_states, hidden1)
        self.fc2 = nn.Linear(hidden1, hidden2)
        self.fc3 = nn.Linear(hidden2, 1)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc3(F.relu(self.fc2(F.relu(self.fc1(s))))))


class Critic(nn.Module):
    """(state, action) -> hidden1 (sum of both inputs' linear maps) -> hidden2 -> Q."""

    def __init__(self, n_states: int, hidden1: int, hidden2: int) -> None:
        super().__init__()
        self.fc_state = nn.Linear(n_states, hidden1)
        self.fc_action = nn.Linear(1, hidden1)
        self.fc2 = nn.Linear(hidden1, hidden2)
        self.fc3 = nn.Linear(hidden2, 1)

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc_state(s) + self.fc_action(a))
        return self.fc3(F.relu(self.fc2(h)))


class ReplayMemory:
    """Ring buffer of transitions (float64 arrays) with uniform sampling: without replacement
    when it holds at least a batch, else with replacement (HAQ's memory does the same)."""

    def __init__(self, capacity: int, n_states: int) -> None:
        self.capacity = capacity
        self.state = np.zeros((capacity, n_states))
        self.action = np.zeros(capacity)
        self.reward = np.zeros(capacity)
        self.next_state = np.zeros((capacity, n_states))
        self.done = np.zeros(capacity)
        self.count = 0
        self.pos = 0

    def append(self, s: np.ndarray, a: float, r: float, s2: np.ndarray, done: bool) -> None:
        i = self.pos
        self.state[i], self.action[i], self.reward[i] = s, a, r
        self.next_state[i], self.done[i] = s2, float(done)
        self.pos = (i + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)

    def sample(self, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        idx = rng.choice(self.count, size=batch, replace=self.count < batch)
        return (self.state[idx], self.action[idx], self.reward[idx].copy(),
                self.next_state[idx], self.done[idx])

    def arrays(self) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(getattr(self, k).copy())
                for k in ("state", "action", "reward", "next_state", "done")}

    def load(self, arrays: dict[str, torch.Tensor], count: int, pos: int) -> None:
        for k, v in arrays.items():
            arr = v.numpy()
            if arr.shape != getattr(self, k).shape:
                raise SearchError(f"checkpoint replay {k!r} has shape {arr.shape}, expected "
                                  f"{getattr(self, k).shape}")
            setattr(self, k, arr.astype(np.float64, copy=True))
        self.count, self.pos = count, pos


def truncated_normal(mu: float, sigma: float, rng: np.random.Generator,
                     lower: float = 0.0, upper: float = 1.0) -> float:
    """One draw of N(mu, sigma) truncated to [lower, upper] by inverting the CDF of one uniform
    draw (HAQ draws from scipy's truncnorm; same distribution, different stream)."""
    lo, hi = ndtr((lower - mu) / sigma), ndtr((upper - mu) / sigma)
    x = mu + sigma * float(ndtri(lo + rng.uniform() * (hi - lo)))
    return float(np.clip(x, lower, upper))


class DdpgAgent:
    """Actor, critic, their targets, optimizers, replay memory and reward baseline."""

    def __init__(self, n_states: int, n_layers: int, config: DdpgConfig) -> None:
        c = config
        self.config = c
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            self.actor = Actor(n_states, c.hidden1, c.hidden2)
            self.critic = Critic(n_states, c.hidden1, c.hidden2)
            self.actor_target = Actor(n_states, c.hidden1, c.hidden2)
            self.critic_target = Critic(n_states, c.hidden1, c.hidden2)
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=c.lr_actor)
        self.critic_optim = torch.optim.Adam(self.critic.parameters(), lr=c.lr_critic)
        self.memory = ReplayMemory(c.replay_per_layer * n_layers, n_states)
        self.baseline: float | None = None

    def act(self, state: np.ndarray, episode: int, rng: np.random.Generator) -> float:
        if episode < self.config.warmup:
            return float(rng.uniform(0.0, 1.0))
        with torch.no_grad():
            mu = float(self.actor(torch.as_tensor(state, dtype=torch.float32)[None])[0, 0])
        return truncated_normal(mu, self.config.sigma(episode), rng)

    def update(self, rng: np.random.Generator) -> None:
        c = self.config
        s, a, r, s2, done = self.memory.sample(c.batch_size, rng)
        mean = float(np.mean(r))
        self.baseline = (mean if self.baseline is None
                         else self.baseline + c.baseline_alpha * (mean - self.baseline))
        r = r - self.baseline
        st = torch.as_tensor(s, dtype=torch.float32)
        at = torch.as_tensor(a, dtype=torch.float32)[:, None]
        s2t = torch.as_tensor(s2, dtype=torch.float32)
        with torch.no_grad():
            q_next = self.critic_target(s2t, self.actor_target(s2t))
            target = (torch.as_tensor(r, dtype=torch.float32)[:, None]
                      + c.discount * torch.as_tensor(1.0 - done, dtype=torch.float32)[:, None]
                      * q_next)
        self.critic_optim.zero_grad()
        F.mse_loss(self.critic(st, at), target).backward()
        self.critic_optim.step()
        self.actor_optim.zero_grad()
        (-self.critic(st, self.actor(st)).mean()).backward()
        self.actor_optim.step()
        self.critic_optim.zero_grad()
        with torch.no_grad():
            for tgt, src in ((self.actor_target, self.actor), (self.critic_target, self.critic)):
                for pt, ps in zip(tgt.parameters(), src.parameters(), strict=True):
                    pt.mul_(1.0 - c.tau).add_(ps, alpha=c.tau)

    def state_dicts(self) -> dict[str, Any]:
        return {"actor": self.actor.state_dict(), "actor_target": self.actor_target.state_dict(),
                "critic": self.critic.state_dict(),
                "critic_target": self.critic_target.state_dict(),
                "actor_optim": self.actor_optim.state_dict(),
                "critic_optim": self.critic_optim.state_dict()}

    def load_state_dicts(self, sd: dict[str, Any]) -> None:
        for name in ("actor", "actor_target", "critic", "critic_target", "actor_optim",
                     "critic_optim"):
            getattr(self, name).load_state_dict(sd[name])


def _problem(env: HaqEnv) -> dict[str, Any]:
    return {"layers": list(env.costs.layer_names), "metric": env.costs.metric,
            "unit": env.costs.unit, "bits": list(env.bits), "budget": env.budget,
            "fixed": {str(k): list(v) for k, v in sorted(env.fixed.items())},
            "fp_accuracy": env.fp_accuracy}


def _config_for_match(config: DdpgConfig) -> dict[str, Any]:
    d = asdict(config)
    d.pop("episodes")  # a longer run may continue a shorter one
    return d


def _write_checkpoint(path: Path, agent: DdpgAgent, meta: dict[str, Any]) -> None:
    payload = {"format": CHECKPOINT_VERSION, "meta": json.dumps(meta),
               **agent.state_dicts(), "replay": agent.memory.arrays()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        meta = json.loads(payload["meta"])
    except (OSError, RuntimeError, KeyError, TypeError, ValueError,
            pickle.UnpicklingError) as err:
        raise SearchError(f"cannot read the HAQ checkpoint {str(path)!r}: {err} (delete it to "
                          "start a new search)") from None
    if payload.get("format") != CHECKPOINT_VERSION:
        raise SearchError(f"HAQ checkpoint {str(path)!r} has format {payload.get('format')!r}; "
                          f"this version reads format {CHECKPOINT_VERSION}")
    payload["meta"] = meta
    return payload


def _check_resume(path: Path, meta: dict[str, Any], env: HaqEnv, config: DdpgConfig) -> None:
    want = {"config": _config_for_match(config), "problem": _problem(env)}
    for part, expected in want.items():
        got = meta.get(part, {})
        diff = sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k))
        if diff:
            raise SearchError(f"HAQ checkpoint {str(path)!r} belongs to another search: its "
                              f"{part} differs in {diff} (checkpoint "
                              f"{ {k: got.get(k) for k in diff} }, now "
                              f"{ {k: expected.get(k) for k in diff} }); use another checkpoint "
                              "path or delete it")


def _episode_from_json(d: dict[str, Any]) -> HaqEpisode:
    return HaqEpisode(episode=int(d["episode"]), policy=[(int(w), int(a)) for w, a in d["policy"]],
                      cost=float(d["cost"]), accuracy=float(d["accuracy"]),
                      reward=float(d["reward"]))


def _result(episodes: list[HaqEpisode],
            tie_break: Callable[[Policy], float] | None = None) -> HaqSearchResult:
    top = max(ep.reward for ep in episodes)
    tied = [ep for ep in episodes if ep.reward == top]
    best = tied[0]
    if tie_break is not None and len(tied) > 1:
        best = min(tied, key=lambda ep: (tie_break(list(ep.policy)), ep.episode))
    return HaqSearchResult(policy=list(best.policy), cost=best.cost, accuracy=best.accuracy,
                           episodes=list(episodes), tied_at_best=len(tied))


def run_haq(evaluator: AccuracySource, costs: CostTable, budget: float, config: DdpgConfig,
            checkpoint: str | Path | None = None, progress: bool = True,
            tie_break: Callable[[Policy], float] | None = None) -> HaqSearchResult:
    """Search per-layer (weight, activation) bits with HAQ's DDPG under ``budget`` (absolute, in
    ``costs.unit``) for ``config.episodes`` episodes; accuracies from ``evaluator`` (validation
    split). ``checkpoint``: a file written after every episode; if it exists, the search resumes
    from it (SearchError if it belongs to a different search). ``progress``: a tqdm bar on
    stderr. ``tie_break``: lower is better among the episodes tied at the best reward (module
    docstring). Same config (seed) and inputs -> same result."""
    with torch_threads(1):
        return _result(_run_haq(evaluator, costs, budget, config, checkpoint, progress),
                       tie_break)


def _run_haq(evaluator: AccuracySource, costs: CostTable, budget: float, config: DdpgConfig,
             checkpoint: str | Path | None, progress: bool) -> list[HaqEpisode]:
    """Every episode of the search (resumed from ``checkpoint`` if it exists)."""
    env = HaqEnv(evaluator, costs, budget)
    agent = DdpgAgent(env.state_dim, env.n_layers, config)
    rng = np.random.default_rng(config.seed)
    episodes: list[HaqEpisode] = []
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        payload = _read_checkpoint(path)
        meta = payload["meta"]
        _check_resume(path, meta, env, config)
        agent.load_state_dicts(payload)
        agent.memory.load(payload["replay"], int(meta["replay_count"]), int(meta["replay_pos"]))
        agent.baseline = meta["baseline"]
        rng.bit_generator.state = meta["rng"]
        episodes = [_episode_from_json(d) for d in meta["episodes"]]
        for ep in episodes:
            env.cache[tuple(ep.policy)] = ep.accuracy
        if len(episodes) >= config.episodes:
            return episodes[:config.episodes]
    bar = tqdm(total=config.episodes, initial=len(episodes), desc="HAQ search", unit="episode",
               disable=not progress, dynamic_ncols=True)
    try:
        for episode in range(len(episodes), config.episodes):
            state = env.reset()
            steps: list[tuple[np.ndarray, float, np.ndarray, bool]] = []
            done, reward, info = False, 0.0, {}
            while not done:
                action = agent.act(state, episode, rng)
                nxt, reward, done, info = env.step(action)
                steps.append((state, action, nxt, done))
                state = nxt
            for s, a, s2, d in steps:
                agent.memory.append(s, a, reward, s2, d)
                if episode >= config.warmup:
                    for _ in range(config.updates_per_step):
                        agent.update(rng)
            episodes.append(HaqEpisode(episode=episode, policy=list(info["policy"]),
                                       cost=float(info["cost"]),
                                       accuracy=float(info["accuracy"]), reward=float(reward)))
            if path is not None:
                meta = {"config": _config_for_match(config), "problem": _problem(env),
                        "episode": episode + 1, "rng": rng.bit_generator.state,
                        "baseline": agent.baseline, "replay_count": agent.memory.count,
                        "replay_pos": agent.memory.pos,
                        "episodes": [asdict(e) for e in episodes]}
                _write_checkpoint(path, agent, meta)
            best = _result(episodes)
            bar.set_postfix(acc=f"{episodes[-1].accuracy:.4f}", best=f"{best.accuracy:.4f}",
                            cost=f"{best.cost:.4g}{costs.unit}", refresh=False)
            bar.update(1)
    finally:
        bar.close()
    return episodes


__all__ = ["DdpgAgent", "DdpgConfig", "HaqEpisode", "HaqSearchResult", "ReplayMemory",
           "run_haq", "truncated_normal"]
