"""hwsim.search: NAS search spaces, latency models at search speed, latency rewards.

    from hwsim.search import get_space, mnas_reward, expected_latency
    space = get_space("proxyless")            # "mnasnet" | "fbnet" | "nb201" | "proxyless-digits"
    archs = space.sample(n, seed=0)           # int array (n, space.n_slots) of op indices
    lm = hwsim.LatencyModel(device="nnie", space=space)
    lm.predict(archs)                         # float array (n,) in ms
"""

from hwsim.search.latency_model import LatencyModel, roofline_fallback, space_keys
from hwsim.search.rewards import (
    MNAS_HARD,
    MNAS_SOFT,
    add_linear_loss,
    expected_latency,
    masked_logits,
    mnas_reward,
    mul_log_loss,
    proxyless_rl_reward,
)
from hwsim.search.space import ArchOp, CostTerm, SearchSpace
from hwsim.search.space_registry import SPACES, get_space

__all__ = ["MNAS_HARD", "MNAS_SOFT", "SPACES", "ArchOp", "CostTerm", "LatencyModel",
           "SearchSpace", "add_linear_loss", "expected_latency", "get_space", "masked_logits",
           "mnas_reward", "mul_log_loss", "proxyless_rl_reward", "roofline_fallback",
           "space_keys"]
