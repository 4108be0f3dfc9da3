"""The digits NAS end to end on a modeled device (fast settings), resume, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwsim.cli.main import main
from hwsim.errors import SearchError
from hwsim.search import LatencyModel, get_space
from hwsim.search.nas import NasConfig, regularized_evolution, run_nas


def test_regularized_evolution_respects_a_hard_target() -> None:
    space = get_space("proxyless-digits")
    lm = LatencyModel("tensorrt", space)
    lat = lm.predict(space.sample(20000, seed=0))
    target = float(np.quantile(lat, 0.3))
    # accuracy = sqrt(latency / max): under the hard constraint the reward rises up to T and
    # falls beyond it (T / sqrt(LAT)), so the best architecture sits just below T
    best, history = regularized_evolution(
        space, lm, lambda a: (float(lm.predict(a[None, :])[0]) / lat.max()) ** 0.5, target,
        cycles=300,
        population=20, tournament=5, alpha=0.0, beta=-1.0, seed=0)
    assert len(history) == 300
    got = float(lm.predict(best[None, :])[0])
    assert got <= target * 1.0 + 1e-12
    assert got >= target * 0.9
    assert max(h["reward"] for h in history) == pytest.approx((got / lat.max()) ** 0.5)


def test_nas_runs_saves_and_resumes(tmp_path) -> None:
    config = NasConfig(device="tensorrt", targets_ms=(0.02, 0.05), generations=12,
                       population=6, tournament=3, supernet_epochs=1, final_epochs=1)
    results = run_nas(config, tmp_path, progress=False)
    assert [r.target_ms for r in results] == [0.02, 0.05]
    for r in results:
        assert r.measured_ms is None  # a modeled device is not measured
        assert r.evaluated == 12 and 0.0 <= r.test_acc <= 1.0
        assert r.predicted_ms == pytest.approx(
            float(LatencyModel("tensorrt", get_space("proxyless-digits")).predict(
                np.array(r.arch)[None, :])[0]))
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["latency_model"]["by_source"]["modeled"] == doc["latency_model"]["keys"]
    assert (tmp_path / "results.csv").read_text().count("\n") == 3
    assert (tmp_path / "pareto.png").stat().st_size > 1000
    mtime = (tmp_path / "supernet.npz").stat().st_mtime_ns
    again = run_nas(config, tmp_path, progress=False)
    assert [r.arch for r in again] == [r.arch for r in results]
    assert (tmp_path / "supernet.npz").stat().st_mtime_ns == mtime
    with pytest.raises(SearchError, match="other settings"):
        run_nas(NasConfig(device="tensorrt", targets_ms=(0.02,), seed=1), tmp_path,
                progress=False)


def test_gradient_search_runs(tmp_path) -> None:
    config = NasConfig(device="tensorrt", targets_ms=(0.03,), reward="proxyless",
                       grad_epochs=1, supernet_epochs=1, final_epochs=1)
    (r,) = run_nas(config, tmp_path, progress=False)
    assert r.reward_kind == "proxyless" and len(r.arch) == 9


def test_cli_search_nas(tmp_path, capsys) -> None:
    rc = main(["search", "nas", "--device", "tensorrt", "--target-ms", "0.03",
               "--generations", "8", "--population", "4", "--tournament", "2",
               "--supernet-epochs", "1", "--final-epochs", "1", "--out", str(tmp_path),
               "--no-progress"])
    assert rc == 0
    assert "0.03" in capsys.readouterr().out
    assert main(["search", "nas", "--space", "nb201", "--target-ms", "1", "--device",
                 "tensorrt", "--out", str(tmp_path / "x"), "--no-progress"]) == 1
    assert "cannot be trained on digits" in capsys.readouterr().err
