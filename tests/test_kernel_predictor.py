"""Kernel-level latency predictors: features, tree evaluation against scikit-learn, JSON files
(fresh-process round trip, tampering), the model-latency fallback and the CLI."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest

from hwsim.errors import LatencyError, MissingKeyError, PredictorError
from hwsim.graph.ir import Graph
from hwsim.latency import kernel_predictor as kp
from hwsim.latency import tree_ensemble
from hwsim.latency.fusion import FusionRules
from hwsim.latency.model_latency import model_latency
from hwsim.latency.op_cost import op_cost
from hwsim.latency.op_key import OpKey
from hwsim.latency.predictor_io import _digest, load_predictor, save_predictor
from hwsim.latency.table import LatencyRow, LatencyTable

SMALL = {"random_forest": {"n_estimators": 8, "min_samples_leaf": 2, "max_features": 0.6},
         "gradient_boosting": {"n_estimators": 20, "max_depth": 3, "learning_rate": 0.2,
                               "subsample": 0.8}}


def _synthetic_ms(key: OpKey, rng: np.random.Generator) -> float:
    """A made-up latency law (ms): fixed cost + MACs + bytes moved, 2 % noise."""
    cost = op_cost(key)
    ms = 2e-3 + cost.macs * 2e-8 + (cost.act_elems + cost.params) * 1e-7
    return float(ms * np.exp(0.02 * rng.standard_normal()))


@pytest.fixture(scope="module")
def data():
    keys = kp.random_kernel_keys(260, random.Random(1), types=("conv", "dwconv", "linear",
                                                               "pool", "elementwise"))
    rng = np.random.default_rng(0)
    return keys, np.array([_synthetic_ms(k, rng) for k in keys])


@pytest.fixture(scope="module")
def fitted(data):
    keys, y = data
    return kp.KernelLatencyPredictor(candidates=SMALL, min_rows=8).fit(keys[:200], y[:200])


def test_features_follow_the_declared_names_and_reject_unknown_ops():
    key = OpKey("conv", (28, 28, 32), (14, 14, 64), kernel=3, stride=2, act="relu6")
    ktype, feats = kp.kernel_features(key)
    assert ktype == "conv" and len(feats) == len(kp.FEATURE_NAMES["conv"])
    named = dict(zip(kp.FEATURE_NAMES["conv"], feats, strict=True))
    assert named["macs"] == 14 * 14 * 64 * 32 * 9 and named["act"] == kp.ACT_CODES["relu6"]
    assert named["ho"] == 14 and named["idskip"] == 0
    assert kp.kernel_type(OpKey("expanded_conv", (56, 56, 24), (56, 56, 24), expand=6,
                                kernel=3, stride=1, idskip=1)) is None
    with pytest.raises(LatencyError, match="no kernel predictor type"):
        kp.kernel_features(OpKey("concat", (7, 7, 8), (7, 7, 16)))


def test_tree_evaluation_matches_scikit_learn(data):
    keys, y = data
    x = np.array([kp.kernel_features(k)[1] for k in keys if k.op == "conv"], dtype=np.float64)
    y_log = np.log(y[[i for i, k in enumerate(keys) if k.op == "conv"]])
    for model in ("random_forest", "gradient_boosting"):
        ens, est = tree_ensemble.fit_ensemble(model, SMALL[model], x, y_log, seed=0)
        np.testing.assert_allclose(ens.predict_log(x), est.predict(x), rtol=0, atol=1e-12)


def test_fit_chooses_a_model_per_type_by_held_out_accuracy(fitted, data):
    keys, y = data
    assert set(fitted.models_) >= {"conv", "dwconv"}
    for tm in fitted.models_.values():
        assert tm.selection["chosen"] in tree_ensemble.MODEL_KINDS
        assert set(tm.selection["heldout"]) == set(SMALL)
    pred = fitted.predict(keys[200:])
    within = np.mean(np.abs(pred - y[200:]) / y[200:] <= 0.25)
    assert within > 0.7  # a smooth synthetic law is learnt from 200 rows


def test_predict_key_declines_uncovered_keys_and_predict_names_them(fitted):
    block = OpKey("expanded_conv", (56, 56, 24), (56, 56, 24), expand=6, kernel=3, stride=1,
                  idskip=1)
    assert fitted.predict_key(block) is None
    with pytest.raises(PredictorError, match="expanded_conv"):
        fitted.predict([block])


def test_fresh_process_load_gives_identical_predictions(tmp_path, fitted, data):
    keys, _ = data
    path = save_predictor(tmp_path / "k.json", fitted, target_column="latency_ms")
    expected = fitted.predict(keys)
    (tmp_path / "keys.txt").write_text("\n".join(str(k) for k in keys))
    script = ("import sys, numpy as np\n"
              "from hwsim.latency.op_key import OpKey\n"
              "from hwsim.latency.predictor_io import load_predictor\n"
              "m = load_predictor(sys.argv[1])\n"
              "keys = [OpKey.parse(t) for t in open(sys.argv[2]).read().split()]\n"
              "np.save(sys.argv[3], m.predict(keys))\n")
    subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "keys.txt"),
                    str(tmp_path / "pred.npy")], check=True, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "pred.npy"), expected)
    doc = json.loads(path.read_text())
    payload = doc["payload"]
    assert payload["kind"] == "kernel_trees"
    assert payload["feature_definition"]["feature_names"]["conv"] == list(
        kp.FEATURE_NAMES["conv"])
    assert set(payload["metrics"]["selection"]) == set(fitted.models_)
    assert payload["training_summary"]["rows_per_type"]["conv"] > 0


def test_tampered_or_truncated_file_is_rejected(tmp_path, fitted):
    path = save_predictor(tmp_path / "k.json", fitted, target_column="latency_ms")
    text = path.read_text()
    (tmp_path / "trunc.json").write_text(text[: len(text) // 2])
    with pytest.raises(PredictorError, match="not valid JSON"):
        load_predictor(tmp_path / "trunc.json")
    doc = json.loads(text)
    tree = doc["payload"]["fitted"]["models"]["conv"]["ensemble"]["trees"][0]
    inner = next(i for i, f in enumerate(tree["feature"]) if f >= 0)
    tree["threshold"][inner] += 1.0
    (tmp_path / "edit.json").write_text(json.dumps(doc))
    with pytest.raises(PredictorError, match="SHA-256"):
        load_predictor(tmp_path / "edit.json")
    # a structurally broken tree is rejected even with a recomputed checksum
    tree["left"][inner] = inner
    doc["sha256"] = _digest(doc["payload"])
    (tmp_path / "cycle.json").write_text(json.dumps(doc))
    with pytest.raises(PredictorError, match="child indices"):
        load_predictor(tmp_path / "cycle.json")


def test_changed_feature_definition_is_rejected(tmp_path, fitted):
    path = save_predictor(tmp_path / "k.json", fitted, target_column="latency_ms")
    doc = json.loads(path.read_text())
    doc["payload"]["feature_definition"]["feature_names"]["conv"].reverse()
    doc["sha256"] = _digest(doc["payload"])
    (tmp_path / "f.json").write_text(json.dumps(doc))
    with pytest.raises(PredictorError, match="feature definition"):
        load_predictor(tmp_path / "f.json")


# -- model latency fallback -------------------------------------------------------------------
def _conv_graph() -> tuple[Graph, list[OpKey]]:
    from hwsim.graph import load_model
    from hwsim.latency.onnx_builder import OnnxNetBuilder

    b = OnnxNetBuilder(seed=0)
    x = b.input((16, 14, 14), "x")
    y = b.act(b.conv(x, 32, 1, 1), "relu")
    y = b.conv(y, 32, 3, 1, groups=32)
    y = b.conv(y, 24, 1, 1)
    g = load_model(b.model([y]))
    keys = [OpKey("conv", (14, 14, 16), (14, 14, 32), kernel=1, stride=1, act="relu"),
            OpKey("dwconv", (14, 14, 32), (14, 14, 32), kernel=3, stride=1),
            OpKey("conv", (14, 14, 32), (14, 14, 24), kernel=1, stride=1)]
    return g, keys


def _rules() -> FusionRules:
    from hwsim.latency.fusion import FusionRule

    return FusionRules("test", "assumption", (FusionRule(("conv", "relu"), True),))


def test_fallback_rows_are_labelled_predicted_and_counted(fitted):
    g, keys = _conv_graph()
    table = LatencyTable.from_rows([LatencyRow(keys[0], 0.05, "measured", "test")])
    result = model_latency(g, table, _rules(), predictor=fitted, predictor_name="k.json")
    sources = [k.source for k in result.kernels]
    assert sources == ["table", "predicted", "predicted"]
    assert result.n_predicted == 2 and result.coverage["predicted"] == 2
    expected = 0.05 + fitted.predict(keys[1:]).sum()
    assert result.total_ms == pytest.approx(expected, rel=1e-12)
    d = result.to_dict()
    assert d["predictor"] == "k.json" and d["predicted_kernels"] == 2
    assert [k["source"] for k in d["kernels"]] == sources


def test_missing_keys_without_predictor_stay_an_error_naming_them():
    g, keys = _conv_graph()
    table = LatencyTable.from_rows([LatencyRow(keys[0], 0.05, "measured", "test")])
    with pytest.raises(MissingKeyError) as err:
        model_latency(g, table, _rules())
    assert str(keys[1]) in str(err.value) and str(keys[2]) in str(err.value)
    loose = model_latency(g, table, _rules(), strict=False)
    assert loose.total_ms is None and list(loose.missing) == keys[1:]


# -- adaptive sampling ------------------------------------------------------------------------
def test_adaptive_sampling_measures_neighbours_of_badly_predicted_rows(data):
    keys, y = data
    rng = np.random.default_rng(5)
    asked: list[OpKey] = []

    def measure(new_keys):
        asked.extend(new_keys)
        return {k: _synthetic_ms(k, rng) for k in new_keys}

    base = kp.KernelLatencyPredictor(candidates=SMALL, min_rows=8)
    model, all_keys, all_y, rounds = kp.adaptive_fit(base, keys[:120], y[:120], measure,
                                                     rounds=1, per_round=20, threshold=0.05)
    assert len(rounds) == 1 and rounds[0].n_above > 0
    assert 0 < len(asked) <= 20 and not set(asked) & set(keys[:120])
    assert len(all_keys) == 120 + rounds[0].n_measured == all_y.size
    assert set(model.train_keys_) == {str(k) for k in all_keys}


def test_neighbour_keys_keep_type_kernel_stride_and_activation():
    key = OpKey("dwconv", (28, 28, 144), (14, 14, 144), kernel=5, stride=2, act="relu6")
    for n in kp.neighbour_keys(key, 6, random.Random(0)):
        assert (n.op, n.kernel, n.stride, n.act) == ("dwconv", 5, 2, "relu6")
        assert n.input[2] == n.output[2] and n != key
        op_cost(n)  # a valid configuration


def test_cli_kernel_fit_predict_eval(tmp_path, data, capsys):
    from hwsim.cli.main import main

    keys, y = data
    rows = [LatencyRow(k, float(v), "measured", "synthetic") for k, v in zip(keys, y,
                                                                              strict=True)]
    LatencyTable.from_rows(rows[:200]).save(tmp_path / "train.csv")
    LatencyTable.from_rows(rows[200:]).save(tmp_path / "test.csv")
    assert main(["predictor", "fit", "--space", "kernels", "--train",
                 str(tmp_path / "train.csv"), "--out", str(tmp_path / "m.json")]) == 0
    (tmp_path / "keys.csv").write_text("key\n" + "\n".join(str(k) for k in keys[200:210]))
    assert main(["predictor", "predict", "--model", str(tmp_path / "m.json"), "--archs",
                 str(tmp_path / "keys.csv"), "--out", str(tmp_path / "pred.csv")]) == 0
    pred = (tmp_path / "pred.csv").read_text().splitlines()
    assert pred[0] == "key,latency_ms" and len(pred) == 11
    capsys.readouterr()
    assert main(["predictor", "eval", "--model", str(tmp_path / "m.json"), "--test",
                 str(tmp_path / "test.csv")]) == 0
    out = capsys.readouterr().out
    assert "+-10%" in out and "conv" in out and "0 training configurations excluded" in out


def test_cli_latency_labels_predicted_kernels(tmp_path, fitted, capsys):
    import onnx

    from hwsim.cli.main import main
    from hwsim.latency.onnx_builder import OnnxNetBuilder

    b = OnnxNetBuilder(seed=0)
    x = b.input((16, 14, 14), "x")
    y = b.conv(b.act(b.conv(x, 32, 1, 1), "relu"), 32, 3, 1, groups=32)
    onnx.save(b.model([y]), tmp_path / "m.onnx")
    first = OpKey("conv", (14, 14, 16), (14, 14, 32), kernel=1, stride=1, act="relu")
    LatencyTable.from_rows([LatencyRow(first, 0.05, "measured", "host-ort")]).save(
        tmp_path / "t.csv")
    save_predictor(tmp_path / "k.json", fitted, target_column="latency_ms")
    args = ["latency", "--device", "host-ort", "--table", str(tmp_path / "t.csv"),
            str(tmp_path / "m.onnx")]
    assert main([*args, "--predictor", str(tmp_path / "k.json"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [k["source"] for k in result["kernels"]] == ["table", "predicted"]
    assert result["predicted_kernels"] == 1 and result["total_ms"] > 0.05
    assert main([*args, "--predictor", str(tmp_path / "k.json")]) == 0
    assert "1 kernel(s) predicted by" in capsys.readouterr().out
    assert main(args) == 1  # custom table, no predictor: the missing key is an error
    assert "dwconv-input:14x14x32" in capsys.readouterr().err
