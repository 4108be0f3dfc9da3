"""Predictor files: save -> load in a fresh process gives identical numbers; defects rejected."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

from hwsim.errors import PredictorError
from hwsim.latency import arch_encoding as ae
from hwsim.latency.arch_predictor import (
    CrossValidatedLatencyPredictor,
    FewShotLatencyPredictor,
    SourceRidgePredictor,
    SourceTable,
)
from hwsim.latency.predictor_io import FORMAT_VERSION, _digest, load_predictor, save_predictor

ALL_NB201 = [ae.format_nb201(c) for c in itertools.product(range(5), repeat=6)]


def _fitted(cls=FewShotLatencyPredictor, space="nb201"):
    rng = np.random.default_rng(3)
    if space == "nb201":
        archs = [ALL_NB201[i] for i in rng.choice(len(ALL_NB201), 300, replace=False)]
        codes = ae.nb201_codes(archs)
        cost = rng.uniform(0.1, 2.0, size=(3, 5))
    else:
        archs = rng.integers(0, 9, size=(300, 22))
        codes = archs
        cost = rng.uniform(0.1, 2.0, size=(3, 9))
    lat = (1.0 + cost[:, codes].sum(axis=2).T) * np.exp(0.02 * rng.standard_normal((300, 3)))
    table = SourceTable.from_archs(space, archs, lat[:, :2], ["dev_a", "dev_b"])
    model = cls(space=space).fit(archs[:60], lat[:60, 2], source=table)
    return model, archs


def _write_with_valid_checksum(path, document):
    """Write an edited document with a matching checksum: the content checks must catch it."""
    d = json.loads(json.dumps(document))
    d["sha256"] = _digest(d["payload"])
    path.write_text(json.dumps(d))


@pytest.mark.parametrize("cls, space", [(FewShotLatencyPredictor, "nb201"),
                                        (SourceRidgePredictor, "nb201"),
                                        (FewShotLatencyPredictor, "fbnet"),
                                        (CrossValidatedLatencyPredictor, "nb201"),
                                        (CrossValidatedLatencyPredictor, "fbnet")])
def test_fresh_process_load_gives_bit_identical_predictions(tmp_path, cls, space):
    model, archs = _fitted(cls, space)
    path = save_predictor(tmp_path / "m.json", model, target_column="dev_t")
    expected = model.predict(archs)
    np.save(tmp_path / "archs.npy", np.asarray(archs))
    script = (
        "import sys, numpy as np\n"
        "from hwsim.latency.predictor_io import load_predictor\n"
        "m = load_predictor(sys.argv[1])\n"
        "a = np.load(sys.argv[2])\n"
        "a = a.tolist() if a.dtype.kind == 'U' else a\n"
        "np.save(sys.argv[3], m.predict(a))\n")
    subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "archs.npy"),
                    str(tmp_path / "pred.npy")], check=True, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "pred.npy"), expected)


def test_file_is_plain_json_with_version_features_summary_and_metrics(tmp_path):
    model, _ = _fitted()
    path = save_predictor(tmp_path / "m.json", model, target_column="dev_t",
                          summary={"train_file": "train.csv"})
    doc = json.loads(path.read_text())
    assert doc["format_version"] == FORMAT_VERSION
    payload = doc["payload"]
    assert payload["kind"] == "few_shot_blend"
    assert payload["feature_definition"]["space"] == "nb201"
    assert payload["feature_definition"]["feature_names"] == ae.nb201_feature_names()
    summary = payload["training_summary"]
    assert summary["n_rows"] == 60 and summary["target_column"] == "dev_t"
    assert summary["source_columns"] == ["dev_a", "dev_b"]
    assert summary["train_file"] == "train.csv" and "numpy" in summary["versions"]
    assert 0 < payload["metrics"]["cv_loo"]["acc10"] <= 1
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_tampered_coefficient_is_rejected(tmp_path):
    model, _ = _fitted()
    path = save_predictor(tmp_path / "m.json", model, target_column="dev_t")
    doc = json.loads(path.read_text())
    doc["payload"]["fitted"]["components"][0]["coef"][0] += 1e-9
    path.write_text(json.dumps(doc))
    with pytest.raises(PredictorError, match="failed its SHA-256 check"):
        load_predictor(path)


def test_truncated_file_is_rejected(tmp_path):
    model, _ = _fitted()
    path = save_predictor(tmp_path / "m.json", model, target_column="dev_t")
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(PredictorError, match="not valid JSON .truncated or corrupted"):
        load_predictor(path)


def test_newer_format_unknown_kind_and_inconsistent_arrays_are_rejected(tmp_path):
    model, _ = _fitted()
    path = save_predictor(tmp_path / "m.json", model, target_column="dev_t")
    doc = json.loads(path.read_text())

    newer = dict(doc, format_version=FORMAT_VERSION + 1)
    path.write_text(json.dumps(newer))
    with pytest.raises(PredictorError, match="reads up to"):
        load_predictor(path)
    bad_kind = json.loads(json.dumps(doc))
    bad_kind["payload"]["kind"] = "pickled_forest"
    _write_with_valid_checksum(path, bad_kind)
    with pytest.raises(PredictorError, match="unknown predictor kind 'pickled_forest'"):
        load_predictor(path)
    short = json.loads(json.dumps(doc))
    short["payload"]["fitted"]["components"][1]["coef"].pop()
    _write_with_valid_checksum(path, short)
    with pytest.raises(PredictorError, match=r"components\[1\] arrays must have"):
        load_predictor(path)
    with pytest.raises(PredictorError, match="does not exist"):
        load_predictor(tmp_path / "absent.json")


def test_cv_select_file_keeps_the_selection_and_checks_additive_coefficients(tmp_path):
    model, archs = _fitted(CrossValidatedLatencyPredictor)
    path = save_predictor(tmp_path / "m.json", model, target_column="dev_t")
    doc = json.loads(path.read_text())
    fitted = doc["payload"]["fitted"]
    assert fitted["selection"]["chosen"].startswith("additive:")  # additive synthetic data
    assert [c["type"] for c in fitted["components"]] == ["nonneg_additive"]
    loaded = load_predictor(path)
    assert loaded.selection_ == model.selection_

    negative = json.loads(json.dumps(doc))
    negative["payload"]["fitted"]["components"][0]["intercept"] = -1.0
    _write_with_valid_checksum(path, negative)
    with pytest.raises(PredictorError, match="negative coefficient"):
        load_predictor(path)
    bad_cols = json.loads(json.dumps(doc))
    bad_cols["payload"]["fitted"]["components"][0]["arch_columns"] = [10 ** 6] * len(
        doc["payload"]["fitted"]["components"][0]["arch_coef"])
    _write_with_valid_checksum(path, bad_cols)
    with pytest.raises(PredictorError, match="arch_columns must be distinct feature indices"):
        load_predictor(path)


def test_component_without_type_field_loads_as_log_linear(tmp_path):
    model, archs = _fitted()
    path = save_predictor(tmp_path / "m.json", model, target_column="dev_t")
    doc = json.loads(path.read_text())
    for c in doc["payload"]["fitted"]["components"]:
        del c["type"]  # the layout of files written before cv_select
    _write_with_valid_checksum(path, doc)
    np.testing.assert_array_equal(load_predictor(path).predict(archs), model.predict(archs))


def _fitted_with_trees():
    """cv_select on a target with an op-pair interaction: the residual-tree candidate wins."""
    rng = np.random.default_rng(5)
    archs = [ALL_NB201[i] for i in rng.choice(len(ALL_NB201), 600, replace=False)]
    codes = ae.nb201_codes(archs)
    cost = rng.uniform(0.2, 3.0, size=(3, 5))
    cost[:, 0] = 0.0
    lat = 2.0 + cost[:, codes].sum(axis=2).T
    lat[:, 2] *= np.where((codes[:, 0] == 3) & (codes[:, 5] == 3), 1.8, 1.0)
    table = SourceTable.from_archs("nb201", archs, lat[:, :2], ["dev_a", "dev_b"])
    model = CrossValidatedLatencyPredictor(space="nb201", tree_min_rows=200).fit(
        archs[:400], lat[:400, 2], source=table)
    assert model.selection_["chosen"].startswith("log_blend + trees(")
    return model, archs


def test_residual_trees_survive_a_fresh_process_and_defects_are_rejected(tmp_path):
    model, archs = _fitted_with_trees()
    path = save_predictor(tmp_path / "m.json", model, target_column="dev_t")
    doc = json.loads(path.read_text())
    comps = doc["payload"]["fitted"]["components"]
    assert [c["type"] for c in comps] == ["log_linear", "log_linear", "residual_trees"]
    assert comps[2]["n_source"] == 2 and comps[2]["ensemble"]["model"] == "gradient_boosting"
    np.save(tmp_path / "archs.npy", np.asarray(archs))
    script = ("import sys, numpy as np\n"
              "from hwsim.latency.predictor_io import load_predictor\n"
              "m = load_predictor(sys.argv[1])\n"
              "np.save(sys.argv[3], m.predict(np.load(sys.argv[2]).tolist()))\n")
    subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "archs.npy"),
                    str(tmp_path / "pred.npy")], check=True, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "pred.npy"), model.predict(archs))

    backwards = json.loads(json.dumps(doc))
    tree = backwards["payload"]["fitted"]["components"][2]["ensemble"]["trees"][0]
    tree["left"][0] = 0  # a node that is its own child: a cycle
    _write_with_valid_checksum(path, backwards)
    with pytest.raises(PredictorError, match=r"components\[2\]\.ensemble\.trees\[0\]: child "
                                             r"indices must point forward"):
        load_predictor(path)
    wrong_width = json.loads(json.dumps(doc))
    wrong_width["payload"]["fitted"]["components"][2]["n_source"] = 5
    _write_with_valid_checksum(path, wrong_width)
    with pytest.raises(PredictorError, match=r"n_source is 5 for 2 source devices"):
        load_predictor(path)


def test_cv_select_file_from_before_the_tree_candidate_loads_with_tree_min_rows_none(tmp_path):
    model, archs = _fitted(CrossValidatedLatencyPredictor)
    path = save_predictor(tmp_path / "m.json", model, target_column="dev_t")
    doc = json.loads(path.read_text())
    assert doc["payload"]["hyper_parameters"]["tree_min_rows"] == 200
    del doc["payload"]["hyper_parameters"]["tree_min_rows"]
    _write_with_valid_checksum(path, doc)
    loaded = load_predictor(path)
    assert loaded.tree_min_rows is None
    np.testing.assert_array_equal(loaded.predict(archs), model.predict(archs))


def test_cv_select_file_from_before_tree_counts_loads_with_the_single_count_it_was_fitted_with(
        tmp_path):
    """Files written before ``tree_counts`` / ``tree_learning_rate`` existed had one tree
    candidate: 150 trees at learning rate 0.05."""
    model, archs = _fitted_with_trees()
    path = save_predictor(tmp_path / "m.json", model, target_column="dev_t")
    doc = json.loads(path.read_text())
    hyper = doc["payload"]["hyper_parameters"]
    assert hyper["tree_counts"] == list(model.tree_counts)
    del hyper["tree_counts"], hyper["tree_learning_rate"]
    _write_with_valid_checksum(path, doc)
    loaded = load_predictor(path)
    assert loaded.tree_counts == (150,) and loaded.tree_learning_rate == 0.05
    np.testing.assert_array_equal(loaded.predict(archs), model.predict(archs))
