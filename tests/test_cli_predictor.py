"""``hwsim predictor fit|predict|eval`` on small CSV files in the shared data format."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from hwsim.cli.main import main
from hwsim.latency import arch_encoding as ae
from hwsim.latency.predictor_io import load_predictor

ALL_NB201 = [ae.format_nb201(c) for c in itertools.product(range(5), repeat=6)]


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(7)
    idx = rng.choice(len(ALL_NB201), 400, replace=False)
    archs = [ALL_NB201[i] for i in idx]
    codes = ae.nb201_codes(archs)
    cost = rng.uniform(0.1, 2.0, size=(4, 5))
    lat = (1.0 + cost[:, codes].sum(axis=2).T) * np.exp(0.02 * rng.standard_normal((400, 4)))
    full = pd.DataFrame({"arch_idx": idx, "arch_str": archs, "gpu_1": lat[:, 0],
                         "cpu_1": lat[:, 1], "phone_1": lat[:, 2], "new_dev": lat[:, 3]})
    paths = {name: tmp_path / f"{name}.csv" for name in ("full", "train", "source", "archs")}
    full.to_csv(paths["full"], index=False)
    full.iloc[:40][["arch_idx", "arch_str", "new_dev"]].to_csv(paths["train"], index=False)
    full.drop(columns=["new_dev"]).to_csv(paths["source"], index=False)
    full[["arch_idx", "arch_str"]].to_csv(paths["archs"], index=False)
    paths["model"] = tmp_path / "model.json"
    paths["pred"] = tmp_path / "pred.csv"
    paths["dir"] = tmp_path
    return paths, full


def _fit(p, *extra):
    return main(["predictor", "fit", "--space", "nb201", "--train", str(p["train"]),
                 "--target", "new_dev", "--source", str(p["source"]), "--out", str(p["model"]),
                 *extra])


def test_fit_predict_writes_arch_columns_and_latency_ms(files, capsys):
    p, full = files
    assert _fit(p) == 0
    out = capsys.readouterr().out
    assert "on 40 architectures of 'new_dev'" in out and "gpu_1, cpu_1, phone_1" in out
    assert "chosen by 10-fold cross-validation (one-standard-error rule)" in out  # default kind
    assert main(["predictor", "predict", "--model", str(p["model"]), "--archs", str(p["archs"]),
                 "--out", str(p["pred"])]) == 0
    pred = pd.read_csv(p["pred"])
    assert list(pred.columns) == ["arch_str", "latency_ms"]
    model = load_predictor(p["model"])
    np.testing.assert_allclose(pred["latency_ms"], model.predict(full["arch_str"].tolist()),
                               rtol=1e-5)
    # Source columns in ARCHS.csv are used instead of the stored table: same numbers.
    assert main(["predictor", "predict", "--model", str(p["model"]), "--archs", str(p["full"]),
                 "--out", str(p["dir"] / "pred2.csv")]) == 0
    np.testing.assert_allclose(pd.read_csv(p["dir"] / "pred2.csv")["latency_ms"],
                               pred["latency_ms"], rtol=1e-5)


def test_eval_excludes_training_architectures_and_prints_metrics(files, capsys):
    p, _ = files
    assert _fit(p) == 0
    capsys.readouterr()
    assert main(["predictor", "eval", "--model", str(p["model"]), "--test", str(p["full"]),
                 "--target", "new_dev"]) == 0
    out = capsys.readouterr().out
    assert "40 training architectures excluded, 360 evaluated" in out
    assert "Spearman rho" in out and "+-10%" in out and "RMSPE" in out
    assert "residuals in row order" in out and "51-row neighbourhood" in out


def test_eval_reports_drift_when_the_test_rows_drift_in_row_order(files, capsys):
    # The same test rows, their latencies once as measured and once multiplied by a slow drift
    # of +-25% over the row order: only the drifted file shows a row-to-row correlation.
    p, full = files
    assert _fit(p) == 0
    drifted = full.copy()
    drifted["new_dev"] *= np.exp(0.25 * np.sin(np.arange(len(full)) * 2 * np.pi / 200))
    drifted.to_csv(p["dir"] / "drifted.csv", index=False)
    lag1 = {}
    for name in ("full", "drifted"):
        capsys.readouterr()
        path = p["full"] if name == "full" else p["dir"] / "drifted.csv"
        assert main(["predictor", "eval", "--model", str(p["model"]), "--test", str(path),
                     "--target", "new_dev"]) == 0
        line = [ln for ln in capsys.readouterr().out.splitlines() if "row order" in ln][0]
        lag1[name] = float(line.split("lag-1 autocorrelation ")[1].split()[0])
        band = float(line.split("|r| < ")[1].split()[0])
    assert abs(lag1["full"]) < band < 0.2
    assert lag1["drifted"] > 0.8


def test_fit_without_source_uses_architecture_features_only(files, capsys):
    p, _ = files
    assert main(["predictor", "fit", "--space", "nb201", "--train", str(p["full"]),
                 "--target", "new_dev", "--out", str(p["model"])]) == 0
    assert "source devices: (none)" in capsys.readouterr().out
    assert main(["predictor", "predict", "--model", str(p["model"]), "--archs", str(p["archs"]),
                 "--out", str(p["pred"])]) == 0


def test_errors_exit_non_zero_with_a_clear_message(files, capsys):
    p, full = files
    assert main(["predictor", "fit", "--space", "nb201", "--train", str(p["train"]),
                 "--target", "nope", "--out", str(p["model"])]) == 1
    assert "no column 'nope'" in capsys.readouterr().err
    assert _fit(p, "--source-devices", "gpu_1,new_dev") == 1
    assert "would leak" in capsys.readouterr().err
    assert _fit(p) == 0
    partial = full.drop(columns=["cpu_1"])
    partial.to_csv(p["dir"] / "partial.csv", index=False)
    assert main(["predictor", "predict", "--model", str(p["model"]), "--archs",
                 str(p["dir"] / "partial.csv"), "--out", str(p["pred"])]) == 1
    assert "lacks ['cpu_1']" in capsys.readouterr().err
    unseen = pd.DataFrame({"arch_str": [a for a in ALL_NB201 if a not in set(full.arch_str)][:3]})
    unseen.to_csv(p["dir"] / "unseen.csv", index=False)
    assert main(["predictor", "predict", "--model", str(p["model"]), "--archs",
                 str(p["dir"] / "unseen.csv"), "--out", str(p["pred"])]) == 1
    assert "have no source-device latency" in capsys.readouterr().err
    assert main(["predictor", "eval", "--model", str(p["model"]), "--test", str(p["full"]),
                 "--target", "gpu_1"]) == 1
    assert "is one of the model's source devices" in capsys.readouterr().err
    (p["dir"] / "bad.json").write_text("{")
    assert main(["predictor", "predict", "--model", str(p["dir"] / "bad.json"), "--archs",
                 str(p["archs"]), "--out", str(p["pred"])]) == 1
    assert "not valid JSON" in capsys.readouterr().err


def test_tree_min_rows_option_reaches_the_model_and_is_validated(files, capsys):
    p, _ = files
    assert _fit(p, "--tree-min-rows", "none") == 0
    assert load_predictor(p["model"]).tree_min_rows is None
    assert _fit(p, "--tree-min-rows", "20") == 0
    model = load_predictor(p["model"])
    assert model.tree_min_rows == 20
    assert any(c["name"].startswith("log_blend + trees(")
               for c in model.selection_["candidates"])
    capsys.readouterr()
    assert _fit(p, "--tree-min-rows", "lots") == 1
    assert "--tree-min-rows must be an integer or 'none'" in capsys.readouterr().err
    assert _fit(p, "--tree-min-rows", "3") == 1
    assert "tree_min_rows must be None" in capsys.readouterr().err
    assert _fit(p, "--kind", "source_ridge", "--tree-min-rows", "300") == 1
    assert "applies to --kind cv_select" in capsys.readouterr().err


def test_tree_counts_option_reaches_the_model_and_is_validated(files, capsys):
    p, _ = files
    assert _fit(p, "--tree-min-rows", "20", "--tree-counts", "30,5") == 0
    model = load_predictor(p["model"])
    assert model.tree_counts == (5, 30)
    assert [c["n_trees"] for c in model.selection_["tree_counts_cv"]] == [5, 30]
    capsys.readouterr()
    assert _fit(p, "--tree-counts", "5,many") == 1
    assert "--tree-counts must be comma-separated integers" in capsys.readouterr().err
    assert _fit(p, "--tree-counts", "0") == 1
    assert "tree_counts must be a non-empty sequence of integers >= 1" in capsys.readouterr().err
    assert _fit(p, "--kind", "few_shot_blend", "--tree-counts", "10") == 1
    assert "--tree-counts applies to --kind cv_select" in capsys.readouterr().err
