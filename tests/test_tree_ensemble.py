"""Tree ensembles evaluated by our kernel agree with scikit-learn's own prediction."""

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor

from hwsim.errors import PredictorError
from hwsim.latency.tree_ensemble import TreeEnsemble, fit_ensemble


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 6))
    x[:, 0] = rng.integers(0, 4, size=400)  # ties: many rows sit exactly on thresholds
    y = np.sin(x[:, 1]) + 0.5 * x[:, 0] * (x[:, 2] > 0) + 0.1 * rng.normal(size=400)
    return x, y


@pytest.mark.parametrize("model,params,ref_cls", [
    ("gradient_boosting", {"n_estimators": 60, "max_depth": 4, "learning_rate": 0.1,
                           "subsample": 0.8}, GradientBoostingRegressor),
    ("random_forest", {"n_estimators": 30, "min_samples_leaf": 3}, RandomForestRegressor),
])
def test_ensemble_predicts_like_scikit_learn_including_float32_edge_rows(data, model, params,
                                                                         ref_cls):
    x, y = data
    ens, _ = fit_ensemble(model, params, x, y, seed=0)
    kwargs = {"n_jobs": 1} if model == "random_forest" else {"loss": "squared_error"}
    ref = ref_cls(random_state=0, **kwargs, **params).fit(x, y)  # an independent fit
    # rows exactly at thresholds and a hair either side of them (equal once cast to float32)
    thr = np.concatenate([t.threshold[t.feature >= 0] for t in ens.trees])
    feat = np.concatenate([t.feature[t.feature >= 0] for t in ens.trees])
    edge = x[np.arange(len(thr)) % len(x)].copy()
    edge[np.arange(len(thr)), feat] = thr
    nudged = edge.copy()
    nudged[np.arange(len(thr)), feat] = np.nextafter(thr, np.inf)
    probe = np.vstack([x, edge, nudged])
    np.testing.assert_allclose(ens.predict_log(probe), ref.predict(probe), rtol=0, atol=1e-12)


def test_ensemble_refuses_too_few_features_and_handles_no_trees(data):
    x, y = data
    ens, _ = fit_ensemble("gradient_boosting", {"n_estimators": 5}, x, y, seed=0)
    used = max(int(t.feature.max()) for t in ens.trees)
    with pytest.raises(PredictorError, match=f"tests feature {used}, but the input has only"):
        ens.predict_log(x[:, :used])
    with pytest.raises(PredictorError, match="must be 2-D"):
        ens.predict_log(x[0])
    empty = TreeEnsemble("gradient_boosting", 1.25, 0.1, (), {})
    np.testing.assert_array_equal(empty.predict_log(x[:3]), [1.25, 1.25, 1.25])
