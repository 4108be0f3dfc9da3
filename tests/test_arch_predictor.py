"""Few-shot architecture latency predictors: sklearn contract, exact LOO, errors, real-data LODO."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import lsq_linear
from sklearn.linear_model import Ridge

from hwsim.errors import PredictorError
from hwsim.latency import arch_encoding as ae
from hwsim.latency.arch_predictor import (
    CrossValidatedLatencyPredictor,
    FewShotLatencyPredictor,
    SourceRidgePredictor,
    SourceTable,
    _fit_nonneg_additive,
    _loo_ridge,
)
from hwsim.latency.metrics import latency_metrics

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "latency"
ALL_NB201 = [ae.format_nb201(c) for c in itertools.product(range(5), repeat=6)]


def synthetic_space(seed: int = 0, n: int = 600, noise: float = 0.0):
    """NB201 archs with additive per-op costs on 3 source devices and a target device."""
    rng = np.random.default_rng(seed)
    archs = [ALL_NB201[i] for i in rng.choice(len(ALL_NB201), n, replace=False)]
    codes = ae.nb201_codes(archs)
    costs = rng.uniform(0.2, 3.0, size=(4, 5))
    costs[:, 0] = 0.0
    lat = 2.0 + costs[:, codes].sum(axis=2).T  # (n, 4)
    lat *= np.exp(noise * rng.standard_normal(lat.shape))
    table = SourceTable.from_archs("nb201", archs, lat[:, :3], ["dev_a", "dev_b", "dev_c"])
    return archs, lat[:, 3], table


def test_init_stores_only_hyper_parameters_and_fit_returns_self():
    est = FewShotLatencyPredictor(space="nb201", hardware_weight=0.3)
    assert est.get_params()["hardware_weight"] == 0.3
    assert not [k for k in vars(est) if k.endswith("_")]
    with pytest.raises(PredictorError, match="not fitted yet"):
        est.predict(ALL_NB201[:2])
    archs, y, table = synthetic_space()
    assert est.fit(archs[:50], y[:50], source=table) is est
    assert est.n_train_ == 50 and len(est.components_) == 2 and est.weights_ == [0.3, 0.7]


def test_target_that_is_a_power_law_of_one_source_is_recovered():
    archs, _, table = synthetic_space()
    y = 0.5 * table.latency_ms[:, 1] ** 1.3
    for cls in (SourceRidgePredictor, FewShotLatencyPredictor):
        model = cls(space="nb201", alphas=(1e-8,)).fit(archs[:40], y[:40], source=table)
        np.testing.assert_allclose(model.predict(archs[40:]), y[40:], rtol=1e-5)


def test_loo_shortcut_equals_brute_force_refits():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((15, 6))
    y = z @ rng.standard_normal(6) + 0.3 * rng.standard_normal(15)
    alpha, coef, mse, loo_pred = _loo_ridge(z, y, (0.5,))
    brute = np.array([
        Ridge(alpha=0.5).fit(np.delete(z, i, 0), np.delete(y, i)).predict(z[i:i + 1])[0]
        for i in range(15)])
    np.testing.assert_allclose(loo_pred, brute, rtol=1e-9, atol=1e-12)
    assert mse == pytest.approx(np.mean((y - brute) ** 2))
    np.testing.assert_allclose(coef, Ridge(alpha=0.5).fit(z, y).coef_, rtol=1e-9)


def test_arch_only_model_without_source_learns_additive_costs():
    archs, y, _ = synthetic_space(noise=0.01)
    model = FewShotLatencyPredictor(space="nb201").fit(archs[:300], y[:300])
    assert model.source_devices_ == ()
    assert latency_metrics(y[300:], model.predict(archs[300:])).acc10 > 0.95


def test_degenerate_training_rows_are_dropped_and_counted():
    archs, y, table = synthetic_space()
    y = y.copy()
    y[3] = 1e-3
    model = SourceRidgePredictor(space="nb201").fit(archs[:30], y[:30], source=table)
    assert model.n_dropped_degenerate_ == 1 and model.n_train_ == 29
    assert len(model.train_keys_) == 30


def test_missing_source_latency_is_an_error_naming_the_architecture():
    archs, y, table = synthetic_space()
    model = FewShotLatencyPredictor(space="nb201").fit(archs[:30], y[:30], source=table)
    outside = next(a for a in ALL_NB201 if a not in set(archs))
    key = ae.arch_keys("nb201", [outside])[0]
    with pytest.raises(PredictorError, match=rf"1 of 2 architectures .* row 1.*'{key}'"):
        model.predict([archs[0], outside])
    lat = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    assert model.predict([archs[0], outside], lat).shape == (2,)
    with pytest.raises(PredictorError, match=r"shape \(2, 3\)"):
        model.predict([archs[0], outside], lat[:, :2])
    with pytest.raises(PredictorError, match="needs a source table"):
        SourceRidgePredictor(space="nb201").fit(archs[:30], y[:30])


def test_bad_training_input_and_hyper_parameters_are_rejected():
    archs, y, table = synthetic_space()
    with pytest.raises(PredictorError, match="at row 2 is nan"):
        FewShotLatencyPredictor().fit(archs[:5], np.r_[y[:2], np.nan, y[3:5]], source=table)
    with pytest.raises(PredictorError, match="5 architectures but 4 latencies"):
        FewShotLatencyPredictor().fit(archs[:5], y[:4], source=table)
    with pytest.raises(PredictorError, match="hardware_weight must be in"):
        FewShotLatencyPredictor(hardware_weight=2).fit(archs[:5], y[:5], source=table)
    with pytest.raises(PredictorError, match="alphas values must be finite and > 0"):
        SourceRidgePredictor(alphas=(0.0,)).fit(archs[:5], y[:5], source=table)
    with pytest.raises(PredictorError, match="appears 2 times"):
        SourceTable.from_archs("nb201", [archs[0], archs[0]], np.ones((2, 1)), ["d"])


def test_target_mixing_sources_and_own_op_costs_is_recovered_by_the_additive_model():
    archs, _, table = synthetic_space()
    codes = ae.nb201_codes(archs)
    conv3 = (codes == 3).sum(axis=1)
    mix = 0.7 * table.latency_ms[:, 0] + 0.2 * table.latency_ms[:, 2]
    for y, chosen in ((mix, "additive:sources"),
                      (mix + 0.9 * conv3 + 0.4, "additive:sources+counts")):
        model = CrossValidatedLatencyPredictor(space="nb201").fit(archs[:80], y[:80],
                                                                  source=table)
        assert model.selection_["chosen"] == chosen  # simplest exact candidate (1-SE rule)
        assert model.selection_["n_folds"] == 10
        np.testing.assert_allclose(model.predict(archs[80:]), y[80:], rtol=1e-6)
        assert all(c.penalty == 0.0 or chosen == "additive:sources"
                   for c in model.components_)


def test_nonneg_additive_fit_equals_bounded_least_squares_of_scipy():
    rng = np.random.default_rng(4)
    src = rng.uniform(1, 5, size=(40, 3))
    arch = rng.integers(0, 4, size=(40, 5)).astype(float)
    y = src @ [0.5, 0.0, 0.3] + arch @ [0.2, 0.0, 0.7, 0.1, 0.0] + 0.3
    y *= np.exp(0.05 * rng.standard_normal(40))
    for penalty in (0.0, 0.5):
        model = _fit_nonneg_additive(src, arch, np.arange(5), y, penalty)
        x = np.column_stack([np.ones(40), src, arch]) / y[:, None]
        rhs = np.ones(40)
        if penalty:
            sd = x[:, 4:].std(axis=0)
            pen = np.column_stack([np.zeros((5, 4)), np.diag(np.sqrt(penalty * 40) * sd)])
            x = np.vstack([x, pen])
            rhs = np.r_[rhs, np.zeros(5)]
        ref = lsq_linear(x, rhs, bounds=(0, np.inf), tol=1e-14, method="bvls").x
        got = np.r_[model.intercept, model.source_coef, model.arch_coef]
        np.testing.assert_allclose(got, ref, atol=1e-8)
        assert np.all(got >= 0)


def test_cross_validation_is_leave_one_out_for_few_rows_and_deterministic():
    archs, y, table = synthetic_space(noise=0.03)
    a = CrossValidatedLatencyPredictor(space="nb201").fit(archs[:12], y[:12], source=table)
    b = CrossValidatedLatencyPredictor(space="nb201").fit(archs[:12], y[:12], source=table)
    assert a.selection_["n_folds"] == 12
    assert a.selection_ == b.selection_
    np.testing.assert_array_equal(a.predict(archs), b.predict(archs))
    names = [c["name"] for c in a.selection_["candidates"]]
    assert names[0] == "additive:sources" and "log_blend" in names
    assert names[-1] == "additive:sources+counts+positions x log_blend"
    with pytest.raises(PredictorError, match="penalties values must be finite and >= 0"):
        CrossValidatedLatencyPredictor(penalties=(-1.0,)).fit(archs[:12], y[:12], source=table)
    with pytest.raises(PredictorError, match="n_folds must be an integer >= 2"):
        CrossValidatedLatencyPredictor(n_folds=1).fit(archs[:12], y[:12], source=table)


@pytest.mark.skipif(not (DATA / "nb201.csv").exists(),
                    reason=f"measured latency data not found at {DATA}")
def test_few_shot_beats_ridge_baseline_on_a_lodo_slice_of_nb201():
    frame = pd.read_csv(DATA / "nb201.csv")
    archs = frame["arch_str"].tolist()
    devices = [c for c in frame.columns if c not in ("arch_idx", "arch_str")]
    scores = {"ridge": [], "fewshot": []}
    for target in ("pixel3", "silver_4210r", "titanx_1"):
        sources = [d for d in devices if d != target]
        table = SourceTable.from_archs("nb201", archs, frame[sources].to_numpy(), sources)
        y = frame[target].to_numpy()
        for seed in (0, 1):
            train = np.random.default_rng([seed, 100]).choice(len(archs), 100, replace=False)
            test = np.setdiff1d(np.arange(len(archs)), train)
            for name, cls in (("ridge", SourceRidgePredictor),
                              ("fewshot", FewShotLatencyPredictor)):
                model = cls(space="nb201").fit([archs[i] for i in train], y[train], source=table)
                pred = model.predict([archs[i] for i in test])
                scores[name].append(latency_metrics(y[test], pred).spearman)
    assert np.mean(scores["fewshot"]) > np.mean(scores["ridge"]) + 0.005
    assert min(scores["fewshot"]) > 0.9


@pytest.mark.skipif(not (DATA / "nb201.csv").exists(),
                    reason=f"measured latency data not found at {DATA}")
def test_cv_select_beats_ridge_baseline_with_ten_architectures_on_nb201():
    """Every NB201 device in turn as the new one, N = 10, the draws of the benchmark."""
    frame = pd.read_csv(DATA / "nb201.csv")
    archs = frame["arch_str"].tolist()
    devices = [c for c in frame.columns if c not in ("arch_idx", "arch_str")]
    scores = {"ridge": [], "cv_select": []}
    for target in devices:
        sources = [d for d in devices if d != target]
        table = SourceTable.from_archs("nb201", archs, frame[sources].to_numpy(), sources)
        y = frame[target].to_numpy()
        for seed in (0, 1, 2):
            train = np.random.default_rng([seed, 10]).choice(len(archs), 10, replace=False)
            test = np.setdiff1d(np.arange(len(archs)), train)
            for name, cls in (("ridge", SourceRidgePredictor),
                              ("cv_select", CrossValidatedLatencyPredictor)):
                model = cls(space="nb201").fit([archs[i] for i in train], y[train], source=table)
                pred = model.predict([archs[i] for i in test])
                scores[name].append(latency_metrics(y[test], pred).spearman)
    assert np.mean(scores["cv_select"]) > np.mean(scores["ridge"]) + 0.01
    assert min(scores["cv_select"]) > min(scores["ridge"])


def test_blend_candidate_cv_error_equals_brute_force_leave_one_out():
    archs, y, table = synthetic_space(noise=0.05)
    archs, y = archs[:12], y[:12]
    model = CrossValidatedLatencyPredictor(space="nb201").fit(archs, y, source=table)
    cv = {(c["name"], c["penalty"]): c["cv_mse_log"] for c in model.selection_["candidates"]}
    src = table.lookup(ae.arch_keys("nb201", archs))
    errs = []
    for i in range(12):
        rest = np.delete(np.arange(12), i)
        add = _fit_nonneg_additive(src[rest], None, np.zeros(0, dtype=np.int64), y[rest], 0.0)
        pred_add = np.log(add.intercept + src[i] @ add.source_coef)
        log = FewShotLatencyPredictor(space="nb201").fit([archs[j] for j in rest], y[rest],
                                                          source=table)
        pred_log = log.predict_log([archs[i]])[0]
        errs.append(0.5 * (pred_add + pred_log) - np.log(y[i]))
    assert cv[("additive:sources x log_blend", 0.0)] == pytest.approx(np.mean(np.square(errs)),
                                                                      rel=1e-9)


def interaction_space(seed: int = 0, n: int = 600):
    """Like :func:`synthetic_space`, but the target device runs a 3x3 conv on edge 0 followed by
    one on edge 5 1.8x slower than their additive cost (an op-pair interaction no additive or
    log-linear model of the encoder's features can express)."""
    archs, _, table = synthetic_space(seed, n)
    codes = ae.nb201_codes(archs)
    rng = np.random.default_rng(seed + 100)
    costs = rng.uniform(0.2, 3.0, size=5)
    costs[0] = 0.0
    y = 2.0 + costs[codes].sum(axis=1)
    y = y * np.where((codes[:, 0] == 3) & (codes[:, 5] == 3), 1.8, 1.0)
    return archs, y, table


def test_tree_candidate_is_offered_from_tree_min_rows_and_validated():
    est = CrossValidatedLatencyPredictor(space="nb201", tree_min_rows=50,
                                         tree_counts=(40, 10, 40))
    est._check_params()
    assert not any("trees" in c.name for c in est.candidates(49))
    assert est.candidates(50)[-1].name == "log_blend + trees"
    assert est.candidates(50)[-1].tree_counts == (10, 40)
    # no more trees than training rows, except the smallest count
    few = CrossValidatedLatencyPredictor(space="nb201", tree_min_rows=20,
                                         tree_counts=(10, 40, 60))
    few._check_params()
    assert few.candidates(45)[-1].tree_counts == (10, 40)
    assert few.candidates(30)[-1].tree_counts == (10,)
    few.tree_counts = (60, 90)
    assert few.candidates(30)[-1].tree_counts == (60,)
    assert not any("trees" in c.name for c in est.candidates())
    none = CrossValidatedLatencyPredictor(space="nb201", tree_min_rows=None)
    assert not any("trees" in c.name for c in none.candidates(10 ** 6))
    archs, y, table = synthetic_space()
    for bad in (1, 5, 2.5, True):
        with pytest.raises(PredictorError, match="tree_min_rows must be None"):
            CrossValidatedLatencyPredictor(tree_min_rows=bad).fit(archs[:12], y[:12],
                                                                   source=table)
    for bad in ((), (0, 10), (2.5,), "25", (True,)):
        with pytest.raises(PredictorError, match="tree_counts must be a non-empty sequence"):
            CrossValidatedLatencyPredictor(tree_counts=bad).fit(archs[:12], y[:12],
                                                                 source=table)
    for bad in (0, 1.5, -0.1, float("nan"), "0.1"):
        with pytest.raises(PredictorError, match=r"tree_learning_rate must be a number in"):
            CrossValidatedLatencyPredictor(tree_learning_rate=bad).fit(archs[:12], y[:12],
                                                                        source=table)


def test_tree_counts_scored_from_one_boosting_run_equal_separate_fits():
    """Within a fold, the CV prediction of K trees is read from one fit of the largest count;
    it must equal what a separate fit of exactly K trees predicts."""
    archs, y, table = interaction_space(n=300)

    def fit(counts):
        return CrossValidatedLatencyPredictor(space="nb201", tree_min_rows=200,
                                              tree_counts=counts).fit(archs, y, source=table)

    together = fit((7, 30))
    per_count = {c["n_trees"]: c["cv_mse_log"] for c in together.selection_["tree_counts_cv"]}
    for k in (7, 30):
        alone = fit((k,)).selection_["tree_counts_cv"]
        assert [c["n_trees"] for c in alone] == [k]
        np.testing.assert_allclose(per_count[k], alone[0]["cv_mse_log"], rtol=1e-12, atol=0)
    assert per_count[30] != per_count[7]
    # the tree candidate carries the count with the smaller CV error, and that count's error
    best = min(per_count, key=per_count.get)
    entry = next(c for c in together.selection_["candidates"] if "trees" in c["name"])
    assert entry["name"] == f"log_blend + trees({best})"
    assert entry["cv_mse_log"] == per_count[best]


def test_tree_candidate_learns_an_op_interaction_the_other_candidates_cannot():
    archs, y, table = interaction_space(n=1200)
    train, test = slice(0, 400), slice(400, None)
    test_archs = archs[test]
    with_trees = CrossValidatedLatencyPredictor(space="nb201", tree_min_rows=200).fit(
        archs[train], y[train], source=table)
    without = CrossValidatedLatencyPredictor(space="nb201", tree_min_rows=None).fit(
        archs[train], y[train], source=table)
    assert with_trees.selection_["chosen"].startswith("log_blend + trees(")
    pair = (ae.nb201_codes(test_archs)[:, [0, 5]] == 3).all(axis=1)
    assert pair.sum() > 10
    lw = np.log(with_trees.predict(test_archs) / y[test])  # log errors
    lo = np.log(without.predict(test_archs) / y[test])
    # the interacting architectures are where the trees help; elsewhere they do no harm
    assert np.median(np.abs(lw[pair])) < 0.7 * np.median(np.abs(lo[pair]))
    assert np.mean(lw ** 2) < 0.5 * np.mean(lo ** 2)
    assert np.mean(lw[~pair] ** 2) < 1.1 * np.mean(lo[~pair] ** 2)


def test_tree_count_grid_stops_at_the_first_rise_of_the_cv_error():
    """Additive latencies with noise: residual trees can only fit noise, so more of them do
    worse in CV and the ascending grid stops without fitting the largest counts."""
    archs, y, table = synthetic_space(n=400, noise=0.05)
    counts = (10, 40, 160, 640)
    est = CrossValidatedLatencyPredictor(space="nb201", tree_min_rows=200,
                                         tree_counts=counts).fit(archs, y, source=table)
    tried = est.selection_["tree_counts_cv"]
    mse = [c["cv_mse_log"] for c in tried]
    assert [c["n_trees"] for c in tried] == list(counts[:len(tried)])
    assert len(tried) < len(counts) and mse[-1] > mse[-2]
    assert all(a >= b for a, b in zip(mse[:-2], mse[1:-1], strict=True))


def test_residual_trees_evaluate_like_scikit_learn_on_the_same_inputs():
    from sklearn.ensemble import GradientBoostingRegressor

    from hwsim.latency.arch_predictor import DEFAULT_TREE_PARAMS, _fit_residual_trees

    archs, y, table = interaction_space(n=300)
    feats = ae.encode("nb201", archs)
    log_src = np.log(table.lookup(ae.arch_keys("nb201", archs)))
    resid = np.log(y) - np.log(y).mean()
    params = {**DEFAULT_TREE_PARAMS, "n_estimators": 120, "learning_rate": 0.1}
    model = _fit_residual_trees(log_src, feats, resid, params)
    assert len(model.ensemble.trees) == 120
    ref = GradientBoostingRegressor(random_state=0, **params).fit(
        np.hstack([feats, log_src]), resid)
    np.testing.assert_allclose(model.predict_log(log_src, feats),
                               ref.predict(np.hstack([feats, log_src])), rtol=0, atol=1e-12)
    with pytest.raises(PredictorError, match="expect 3 source devices, got 0"):
        model.predict_log(None, feats)


def test_additive_model_that_would_predict_zero_ms_somewhere_is_passed_over():
    """A target whose latency is the cost of its convolutions alone: the exact additive fit has
    intercept 0 and gives the all-skip architecture 0 ms, so it must not be chosen."""
    codes = np.array(list(itertools.product(range(5), repeat=6)))
    n_conv = np.isin(codes, (2, 3)).sum(axis=1)
    rng = np.random.default_rng(0)
    pick = rng.choice(np.flatnonzero(n_conv >= 3), 40, replace=False)
    archs = [ALL_NB201[i] for i in pick]
    y = (1.0 * (codes[pick] == 2) + 2.5 * (codes[pick] == 3)).sum(axis=1).astype(float)
    model = CrossValidatedLatencyPredictor(space="nb201").fit(archs, y)
    rejected = model.selection_["rejected_zero_latency"]
    assert rejected and all(r["name"].startswith("additive:") for r in rejected)
    chosen = (model.selection_["chosen"], model.selection_["chosen_penalty"])
    assert chosen not in {(r["name"], r["penalty"]) for r in rejected}
    pred = model.predict(ALL_NB201)
    assert np.all(np.isfinite(pred) & (pred > 0))
