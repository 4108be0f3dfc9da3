"""The digits NAS: evolution and calibration logic, save/resume, CLI. The end-to-end runs here
train on a small slice of digits (fast); the real run is tools/run_nas_pareto.sh."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwsim.cli.main import main
from hwsim.errors import SearchError
from hwsim.latency.table import LatencyRow, LatencyTable
from hwsim.search import LatencyModel, get_space, space_keys
from hwsim.search import nas as nas_module
from hwsim.search.nas import (
    LatencyCalibration,
    NasConfig,
    calibrate_latency,
    regularized_evolution,
    run_nas,
)

_full_digits = nas_module._digits


@pytest.fixture
def small_digits(monkeypatch):
    """Train 128 / validate 64 / test 64 digits: the pipeline, not the accuracy, is tested."""

    def small(space, seed):  # noqa: ANN001, ANN202
        data = _full_digits(space, seed)
        return {"train": tuple(t[:128] for t in data["train"]),
                "val": tuple(t[:64] for t in data["val"]),
                "test": tuple(t[:64] for t in data["test"])}

    monkeypatch.setattr(nas_module, "_digits", small)


def test_regularized_evolution_climbs_to_a_hard_target() -> None:
    space = get_space("proxyless-digits")
    rng = np.random.default_rng(0)  # a table with widely spread latencies
    table = LatencyTable.from_rows(
        LatencyRow(key=k, latency_ms=float(rng.uniform(0.01, 2.0)), source="modeled",
                   device="test", note="random") for k in space_keys(space))
    lm = LatencyModel("test", space, table=table)
    lat = lm.predict(space.sample(20000, seed=0))
    target = float(np.quantile(lat, 0.3))
    # accuracy = sqrt(latency / max): under the hard constraint the reward rises up to T
    # (sqrt(LAT / max)) and falls beyond it (T / sqrt(LAT * max)): its peak is at LAT = T
    best, history = regularized_evolution(
        space, lm, lambda a: (float(lm.predict(a[None, :])[0]) / lat.max()) ** 0.5, target,
        cycles=300, population=20, tournament=5, alpha=0.0, beta=-1.0, seed=0)
    assert len(history) == 300
    got = float(lm.predict(best[None, :])[0])
    assert abs(got / target - 1.0) <= 0.02
    assert max(h["reward"] for h in history) == pytest.approx(
        (got / lat.max()) ** 0.5 * min(1.0, target / got), rel=1e-12)


def test_evolution_prices_candidates_with_the_calibrated_latency() -> None:
    space = get_space("proxyless-digits")
    lm = LatencyModel("tensorrt", space)
    calib = LatencyCalibration(scale=0.5, offset_ms=0.01)
    table = lm.predict(space.sample(5000, seed=1))
    target = float(np.median(calib.apply(table)))
    # the same accuracy for every net: the hard-constraint reward is maximal exactly for the
    # nets with calibrated latency <= T
    best, history = regularized_evolution(space, lm, lambda a: 0.9, target, cycles=60,
                                          population=10, tournament=3, alpha=0.0, beta=-1.0,
                                          seed=0, calibration=calib)
    for h in history:
        assert h["lat_ms"] == pytest.approx(
            0.5 * float(lm.predict(np.array(h["arch"])[None, :])[0]) + 0.01, rel=1e-12)
    assert calib.apply(float(lm.predict(best[None, :])[0])) <= target


def test_calibration_fit_recovers_an_affine_map_and_rejects_nonsense() -> None:
    table = [0.1, 0.2, 0.3, 0.5]
    calib = LatencyCalibration.fit([[0], [1], [2], [3]], table, [0.5 * t + 0.02 for t in table])
    assert calib.scale == pytest.approx(0.5, rel=1e-12)
    assert calib.offset_ms == pytest.approx(0.02, rel=1e-9)
    assert calib.max_rel_error() == pytest.approx(0.0, abs=1e-12)
    assert LatencyCalibration().apply(0.3) == 0.3 and LatencyCalibration().max_rel_error() is None
    # one disturbed sample does not tilt a robust fit
    noisy = LatencyCalibration.fit([[0], [1], [2], [3], [4]], [0.1, 0.2, 0.3, 0.4, 0.5],
                                   [0.07, 0.12, 0.37, 0.22, 0.27])
    assert noisy.scale == pytest.approx(0.5) and noisy.offset_ms == pytest.approx(0.02)
    assert noisy.median_rel_error() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(SearchError, match=">= 3 architectures"):
        LatencyCalibration.fit([[0], [1]], [0.1, 0.2], [0.1, 0.2])
    with pytest.raises(SearchError, match="scale"):
        LatencyCalibration.fit([[0], [1], [2]], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
    with pytest.raises(SearchError, match="calibrate"):
        NasConfig(targets_ms=(0.1,), calibrate=2)


def test_calibration_times_architectures_across_the_table_range(monkeypatch) -> None:
    space = get_space("proxyless-digits")
    lm = LatencyModel("tensorrt", space)
    timed = []

    def fake_measure(space_, arch, device, threads):  # noqa: ANN001, ANN202
        table = float(lm.predict(np.asarray(arch)[None, :])[0])
        timed.append(table)
        return 0.4 * table + 0.003 + 0.001, 0.0, 0.001  # (median, p10, overhead)

    monkeypatch.setattr(nas_module, "measure_arch_ms", fake_measure)
    calib = calibrate_latency(space, lm, "host-ort", 1, 6, seed=0)
    assert calib.scale == pytest.approx(0.4, rel=1e-9)
    assert calib.offset_ms == pytest.approx(0.003, rel=1e-6)
    assert len(timed) == 6 and timed == sorted(timed)
    # from the space's fastest to its slowest architecture (per-slot cheapest / dearest ops),
    # which uniform sampling does not reach
    cost = np.where(space.mask, lm.unary_ms, np.nan)
    fastest = lm.fixed_ms + np.nansum(np.nanmin(cost, axis=1))
    slowest = lm.fixed_ms + np.nansum(np.nanmax(cost, axis=1))
    assert timed[0] == pytest.approx(fastest, rel=1e-12)
    assert timed[-1] == pytest.approx(slowest, rel=1e-12)


def test_nas_runs_saves_and_resumes(tmp_path, small_digits) -> None:
    config = NasConfig(device="tensorrt", targets_ms=(0.02, 0.05), generations=12,
                       population=6, tournament=3, supernet_epochs=1, final_epochs=1)
    results = run_nas(config, tmp_path, progress=False)
    assert [r.target_ms for r in results] == [0.02, 0.05]
    lm = LatencyModel("tensorrt", get_space("proxyless-digits"))
    for r in results:
        assert r.measured_ms is None  # a modeled device is not measured
        assert r.evaluated == 12 and 0.0 <= r.test_acc <= 1.0
        assert r.predicted_ms == r.table_ms == pytest.approx(
            float(lm.predict(np.array(r.arch)[None, :])[0]))
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["latency_model"]["by_source"]["modeled"] == doc["latency_model"]["keys"]
    assert doc["calibration"] == {"scale": 1.0, "offset_ms": 0.0, "n": 0,
                                  "max_rel_error": None, "median_rel_error": None}
    assert (tmp_path / "results.csv").read_text().count("\n") == 3
    assert (tmp_path / "pareto.png").stat().st_size > 1000
    mtime = (tmp_path / "supernet.npz").stat().st_mtime_ns
    again = run_nas(config, tmp_path, progress=False)
    assert [r.arch for r in again] == [r.arch for r in results]
    assert (tmp_path / "supernet.npz").stat().st_mtime_ns == mtime
    with pytest.raises(SearchError, match="other settings"):
        run_nas(NasConfig(device="tensorrt", targets_ms=(0.02,), seed=1), tmp_path,
                progress=False)


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, small_digits,
                                                     monkeypatch) -> None:
    config = NasConfig(device="tensorrt", targets_ms=(0.02, 0.03, 0.05), generations=8,
                       population=4, tournament=2, supernet_epochs=1, final_epochs=1)
    searched = []
    real = nas_module.regularized_evolution

    def counting(space, lm, fitness, target, *args, **kwargs):  # noqa: ANN001, ANN202
        searched.append(target)
        if len(searched) == 2 and not (tmp_path / "interrupted").exists():
            (tmp_path / "interrupted").touch()
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C during the 2nd target
        return real(space, lm, fitness, target, *args, **kwargs)

    monkeypatch.setattr(nas_module, "regularized_evolution", counting)
    with pytest.raises(KeyboardInterrupt):
        run_nas(config, tmp_path, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [t["target_ms"] for t in saved["targets"]] == [0.02]
    results = run_nas(config, tmp_path, progress=False)
    assert searched == [0.02, 0.03, 0.03, 0.05]  # the finished target was not searched again
    assert [r.target_ms for r in results] == [0.02, 0.03, 0.05]
    assert results[0].arch == saved["targets"][0]["arch"]


def test_gradient_search_runs(tmp_path, small_digits) -> None:
    config = NasConfig(device="tensorrt", targets_ms=(0.03,), reward="proxyless",
                       grad_epochs=2, supernet_epochs=1, final_epochs=1)
    (r,) = run_nas(config, tmp_path, progress=False)
    assert r.reward_kind == "proxyless" and len(r.arch) == 9
    assert [h["epoch"] for h in r.history] == [0, 1]
    space = get_space("proxyless-digits")
    assert space.mask[np.arange(9), r.arch].all()


def test_cli_search_nas(tmp_path, capsys, small_digits) -> None:
    rc = main(["search", "nas", "--device", "tensorrt", "--target-ms", "0.03",
               "--generations", "8", "--population", "4", "--tournament", "2",
               "--supernet-epochs", "1", "--final-epochs", "1", "--out", str(tmp_path),
               "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["T", "ms", "table", "ms"]
    assert out.splitlines()[1].split()[0] == "0.03"
    assert main(["search", "nas", "--space", "nb201", "--target-ms", "1", "--device",
                 "tensorrt", "--out", str(tmp_path / "x"), "--no-progress"]) == 1
    assert "cannot be trained on digits" in capsys.readouterr().err


@pytest.mark.slow
def test_host_ort_run_measures_and_calibrates(tmp_path, small_digits) -> None:
    """Times the table, calibration networks and the found network on this machine."""
    config = NasConfig(device="host-ort", targets_ms=(0.1,), generations=8, population=4,
                       tournament=2, supernet_epochs=1, final_epochs=1, calibrate=4,
                       lut_budget_s=0.2)
    (r,) = run_nas(config, tmp_path, progress=False)
    assert r.measured_net_ms is not None and r.measured_net_ms > 0
    calib = json.loads((tmp_path / "calibration.json").read_text())
    assert len(calib["archs"]) == 4 and calib["scale"] > 0
    assert r.predicted_ms == pytest.approx(calib["scale"] * r.table_ms + calib["offset_ms"])


def test_a_supernet_path_computes_the_network_the_space_builds() -> None:
    """Copy a path's shared-weight slices into ``space.build(arch)`` (independent MBConv
    modules): both must compute the same function, for every candidate op."""
    import torch

    from hwsim.search.supernet import ProxylessSupernet
    from hwsim.search.torch_blocks import finish

    space = get_space("proxyless-digits")
    net = finish(ProxylessSupernet(space), seed=3)  # non-trivial BN statistics everywhere
    archs = np.array([[c if space.mask[s, c] else 0 for s in range(space.n_slots)]
                      for c in range(space.n_ops)])  # every op in every slot that allows it
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for arch in archs:
        model = space.build(arch)
        blocks = iter(model[2:2 + sum(space.block_key(s, int(c)) is not None
                                      for s, c in enumerate(arch))])
        model[0].load_state_dict(net.stem[0].state_dict())
        model[1].load_state_dict(net.stem[1].state_dict())
        for slot, c in enumerate(arch):
            op = net.choice_ops[slot][int(c)]
            if op is None:
                continue
            shared, block = net.slots[slot], next(blocks)
            k, e = op
            mid, lo = shared.cin * e, (shared.k_max - k) // 2
            bn1, bn2, bn3 = shared.bns[f"k{k}e{e}"]
            expand, depthwise, project = (m for m in block.body)
            with torch.no_grad():
                expand[0].weight.copy_(shared.expand[:mid])
                depthwise[0].weight.copy_(shared.depthwise[:mid, :, lo:lo + k, lo:lo + k])
                project[0].weight.copy_(shared.project[:, :mid])
            for conv_bn_act, bn in ((expand, bn1), (depthwise, bn2), (project, bn3)):
                conv_bn_act[1].load_state_dict(bn.state_dict())
        model[-2].load_state_dict(net.head[0].state_dict())
        model[-1].load_state_dict(net.head[1].state_dict())
        with torch.no_grad():
            torch.testing.assert_close(net(x, arch=arch), model.eval()(x), rtol=1e-5,
                                       atol=1e-5)
