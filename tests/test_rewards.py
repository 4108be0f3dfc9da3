"""Rewards and losses at, below and above the target, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hwsim.errors import SearchError
from hwsim.search import (
    MNAS_HARD,
    MNAS_SOFT,
    add_linear_loss,
    mnas_reward,
    mul_log_loss,
    proxyless_rl_reward,
)


def test_mnas_soft_constraint() -> None:
    # ACC * (LAT/T)^-0.07 on both sides of T = 80 ms
    assert mnas_reward(0.75, 80.0, 80.0) == pytest.approx(0.75, rel=1e-15)
    assert mnas_reward(0.75, 40.0, 80.0) == pytest.approx(0.75 * 2 ** 0.07, rel=1e-15)
    assert mnas_reward(0.75, 160.0, 80.0) == pytest.approx(0.75 * 2 ** -0.07, rel=1e-15)
    assert 0.75 * 2 ** 0.07 == pytest.approx(0.78729, abs=1e-5)   # 2^0.07 = 1.049717
    assert 0.75 * 2 ** -0.07 == pytest.approx(0.71448, abs=1e-5)


def test_mnas_hard_constraint() -> None:
    a, b = MNAS_HARD
    assert (a, b) == (0.0, -1.0)
    assert mnas_reward(0.75, 80.0, 80.0, a, b) == 0.75
    assert mnas_reward(0.75, 40.0, 80.0, a, b) == 0.75          # below T: no bonus
    assert mnas_reward(0.75, 160.0, 80.0, a, b) == pytest.approx(0.375, rel=1e-15)
    assert MNAS_SOFT == (-0.07, -0.07)


def test_mnas_reward_vectorised_and_validated() -> None:
    lat = np.array([40.0, 80.0, 160.0])
    np.testing.assert_allclose(mnas_reward(np.full(3, 0.5), lat, 80.0, 0.0, -1.0),
                               [0.5, 0.5, 0.25])
    with pytest.raises(SearchError, match="lat_ms"):
        mnas_reward(0.5, 0.0, 80.0)
    with pytest.raises(SearchError, match="target_ms"):
        mnas_reward(0.5, 10.0, -1.0)


def test_proxyless_rl_reward() -> None:
    assert proxyless_rl_reward(0.7, 80.0, 80.0) == pytest.approx(0.7)
    assert proxyless_rl_reward(0.7, 40.0, 80.0) == pytest.approx(0.7 * 2 ** 0.1)
    assert proxyless_rl_reward(0.7, 160.0, 80.0) == pytest.approx(0.7 * 0.5 ** 0.1)


def test_proxyless_losses() -> None:
    ce = torch.tensor(1.3, dtype=torch.float64)
    # mul#log: 0.2 * CE * (log E / log T)^0.3
    for e in (40.0, 80.0, 160.0):
        got = float(mul_log_loss(ce, torch.tensor(e, dtype=torch.float64), 80.0))
        assert got == pytest.approx(0.2 * 1.3 * (math.log(e) / math.log(80.0)) ** 0.3,
                                    rel=1e-14)
    assert float(mul_log_loss(ce, torch.tensor(80.0, dtype=torch.float64), 80.0)) == \
        pytest.approx(0.26, rel=1e-14)
    # add#linear: CE + 0.1 * (E - T) / T
    assert float(add_linear_loss(ce, 80.0, 80.0)) == pytest.approx(1.3)
    assert float(add_linear_loss(ce, 160.0, 80.0)) == pytest.approx(1.4)
    assert float(add_linear_loss(ce, 40.0, 80.0)) == pytest.approx(1.25)
    with pytest.raises(SearchError, match="log T"):
        mul_log_loss(ce, torch.tensor(0.5), 0.8)
