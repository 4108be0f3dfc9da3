"""The search's data splits (``digits_search_data``): held-out or training-split reward images,
or the fine-tune's own images (HAQ's released code)."""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.errors import SearchError
from hwsim.graph.digits_demo import N_TRAIN, digits_images
from hwsim.search.haq_run import (
    TRAIN_REWARD_SIZE,
    digits_search_data,
    run_haq_experiment,
    search_val_images,
)


def _rows(x: np.ndarray, y: np.ndarray) -> list[tuple[bytes, int]]:
    return [(a.tobytes(), int(b)) for a, b in zip(x, y, strict=True)]


def test_train_reward_images_are_a_seeded_third_of_the_training_split():
    x, y = digits_images(8)
    d = digits_search_data(8, reward_data="train")
    assert TRAIN_REWARD_SIZE == N_TRAIN // 3 == 479
    # the documented split, written out: seed-0 permutation, first third = reward
    perm = np.random.default_rng(0).permutation(N_TRAIN)
    reward, tune = sorted(perm[:479]), sorted(perm[479:])
    assert _rows(d.val_x, d.val_y) == _rows(x[reward], y[reward])
    assert _rows(d.train_x, d.train_y) == _rows(x[tune], y[tune])
    assert _rows(d.calib_x, d.train_y[:128]) == _rows(x[tune[:128]], y[tune[:128]])
    assert search_val_images(reward_data="train").tolist() == reward


def test_finetune_reward_data_is_the_train_split_and_rewards_on_the_finetune_images():
    x, y = digits_images(8)
    train = digits_search_data(8, reward_data="train")
    ft = digits_search_data(8, reward_data="finetune")
    for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y", "calib_x"):
        np.testing.assert_array_equal(getattr(ft, name), getattr(train, name))
    # the images the reward is measured on: the other two thirds (the fine-tune's), ascending
    perm = np.random.default_rng(0).permutation(N_TRAIN)
    tune = sorted(perm[479:])
    assert search_val_images(reward_data="finetune").tolist() == tune
    assert _rows(ft.train_x, ft.train_y) == _rows(x[tune], y[tune])


def test_train_reward_keeps_the_heldout_test_split():
    held = digits_search_data(8)
    train = digits_search_data(8, reward_data="train")
    assert len(train.test_y) == 200
    np.testing.assert_array_equal(train.test_x, held.test_x)
    np.testing.assert_array_equal(train.test_y, held.test_y)


def test_train_reward_split_follows_the_seed():
    a = search_val_images(reward_data="train", split_seed=0)
    b = search_val_images(reward_data="train", split_seed=1)
    assert len(a) == len(b) == 479 and a.tolist() != b.tolist()
    np.testing.assert_array_equal(
        digits_search_data(8, split_seed=1, reward_data="train").val_y,
        digits_images(8)[1][b])


def test_val_size_is_checked_against_the_chosen_pool():
    assert len(digits_search_data(8, val_size=1000, reward_data="train").val_y) == 1000
    with pytest.raises(SearchError, match=r"val_size must lie in 1..1436 \(training images\)"):
        digits_search_data(8, val_size=1437, reward_data="train")
    with pytest.raises(SearchError, match=r"val_size must lie in 1..359, got 360"):
        digits_search_data(8, val_size=360)
    with pytest.raises(SearchError, match=r"1..1436 \(training images\)"):
        search_val_images(0, reward_data="train")


def test_unknown_reward_data_is_refused_before_any_work(tmp_path):
    with pytest.raises(SearchError, match="reward_data 'test'; allowed: heldout, train, finetune"):
        digits_search_data(8, reward_data="test")
    with pytest.raises(SearchError, match="reward_data 'test'; allowed: heldout, train, finetune"):
        search_val_images(reward_data="test")
    with pytest.raises(SearchError, match="reward_data 'test'; allowed: heldout, train, finetune"):
        run_haq_experiment("bismo", "digits_cnn", "latency=0.6", 1, 0, tmp_path / "o",
                           reward_data="test")
    assert not (tmp_path / "o").exists()
