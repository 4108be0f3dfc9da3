"""``hwsim search haq`` from the command line: outputs of a tiny run, budget errors (exit 2)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from hwsim.cli.main import main

FIELDS = ("policy", "cost", "budget", "accuracy", "val_accuracy", "fp_accuracy")


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _bismo_with(tmp_path: Path, bits: tuple[int, ...] = (6, 8)) -> Path:
    """BISMO's spec with only the precisions of ``bits`` (absmax/minmax calibration): few
    candidate pairs, so the baselines need few evaluations."""
    spec = yaml.safe_load((Path(__file__).parents[1] / "devices" / "bismo.yaml").read_text())
    spec["name"] = "bismo-" + "-".join(map(str, bits))
    spec["bits"] = list(bits)
    spec["precisions"] = {f"int{b}": spec["precisions"][f"int{b}"] for b in bits}
    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_tiny_run_writes_result_episodes_and_plot(capsys, tmp_path):
    out_dir = tmp_path / "haq"
    argv = ("search", "haq", "--device", str(_bismo_with(tmp_path)), "--model", "digits_cnn",
            "--budget", "latency=0.75", "--episodes", "3", "--finetune-epochs", "0", "--seed",
            "1", "--out", str(out_dir), "--no-progress")
    code, out, _ = _run(capsys, *argv)
    assert code == 0
    assert "haq" in out and "ilp" in out and "greedy" in out and "uniform-6" in out
    res = json.loads((out_dir / "result.json").read_text())
    for f in FIELDS + ("unit",):
        assert f in res
    assert res["unit"] == "ms" and res["metric"] == "latency" and res["device"] == "bismo-6-8"
    assert res["budget"] == pytest.approx(0.75 * res["cost_8bit"])
    layers = ["conv1", "conv2", "dw", "pw", "fc"]
    assert list(res["policy"]) == layers
    assert res["policy"]["conv1"] == {"weight_bits": 8, "activation_bits": 8}
    assert res["policy"]["fc"] == {"weight_bits": 8, "activation_bits": 8}
    assert set(res["baselines"]) == {"uniform-8", "uniform-6", "greedy", "ilp"}
    for name, entry in [("haq", res)] + list(res["baselines"].items()):
        for f in FIELDS:
            assert f in entry, (name, f)
        assert 0.0 <= entry["accuracy"] <= 1.0
        assert list(entry["policy"]) == layers
        if not name.startswith("uniform"):
            assert entry["cost"] <= entry["budget"], name
    assert res["baselines"]["uniform-8"]["fits_budget"] is False
    assert res["baselines"]["uniform-6"]["cost"] < res["baselines"]["uniform-8"]["cost"]
    assert res["sensitivity"]["evaluations"] == 1 + 3 * 2  # conv2, dw, pw: w and a, one width
    with (out_dir / "episodes.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["episode"]) for r in rows] == [0, 1, 2]
    assert all(float(r["cost"]) <= res["budget"] for r in rows)
    assert (out_dir / "accuracy_vs_cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # rerun with the same folder: the search resumes from its checkpoint, same answer, and
    # every accuracy comes from the cache
    code, _, _ = _run(capsys, *argv)
    assert code == 0
    again = json.loads((out_dir / "result.json").read_text())
    assert again["policy"] == res["policy"] and again["accuracy"] == res["accuracy"]
    assert again["evaluations"]["measured_this_run"] == 0


def test_final_finetune_is_applied_alike_to_every_reported_policy(capsys, tmp_path):
    from hwsim.quant.device import load_device
    from hwsim.search.haq_accuracy import PolicyEvaluator
    from hwsim.search.haq_cost import quantizable_layers
    from hwsim.search.haq_run import digits_search_data, image_size, load_search_model

    device = _bismo_with(tmp_path)
    out_dir = tmp_path / "haq"
    code, out, _ = _run(capsys, "search", "haq", "--device", str(device), "--model",
                        "digits_cnn", "--budget", "latency=0.75", "--episodes", "2",
                        "--finetune-epochs", "0", "--final-finetune-epochs", "1", "--out",
                        str(out_dir), "--no-progress")
    assert code == 0 and "TEST ACC +1 EP" in out
    res = json.loads((out_dir / "result.json").read_text())
    assert res["final_finetune_epochs"] == 1
    reported = {"haq": res, "uniform-6": res["baselines"]["uniform-6"],
                "greedy": res["baselines"]["greedy"], "ilp": res["baselines"]["ilp"]}
    assert "final_finetune" not in res["baselines"]["uniform-8"]  # over the budget
    graph = load_search_model("digits_cnn")
    layers = quantizable_layers(graph)
    ev = PolicyEvaluator(graph, load_device(str(device)), layers,
                         digits_search_data(image_size(graph)), finetune_epochs=1, seed=0)
    for name, entry in reported.items():
        final = entry["final_finetune"]
        assert final["epochs"] == 1, name
        policy = [(p["weight_bits"], p["activation_bits"]) for p in entry["policy"].values()]
        assert final["accuracy"] == ev.accuracy(policy, "test"), name
        assert final["val_accuracy"] == ev.accuracy(policy, "val"), name
    # the search's and the final fine-tune's accuracies share one cache file; a rerun finds both
    cache = json.loads((out_dir / "accuracy_cache.json").read_text())["entries"]
    assert len(cache) == 2 and all(cache.values())
    code, _, _ = _run(capsys, "search", "haq", "--device", str(device), "--model",
                      "digits_cnn", "--budget", "latency=0.75", "--episodes", "2",
                      "--finetune-epochs", "0", "--final-finetune-epochs", "1", "--out",
                      str(out_dir), "--no-progress")
    assert code == 0
    assert json.loads((out_dir / "result.json").read_text())["evaluations"][
        "measured_this_run"] == 0


def test_nll_reward_metric_drives_reward_and_sensitivities(capsys, tmp_path):
    from hwsim.quant.device import load_device
    from hwsim.search.haq_accuracy import PolicyEvaluator
    from hwsim.search.haq_cost import quantizable_layers
    from hwsim.search.haq_run import digits_search_data, image_size, load_search_model

    device = _bismo_with(tmp_path)
    out_dir = tmp_path / "haq"
    code, _, _ = _run(capsys, "search", "haq", "--device", str(device), "--model", "digits_cnn",
                      "--budget", "latency=0.75", "--episodes", "2", "--finetune-epochs", "0",
                      "--reward-metric", "nll", "--out", str(out_dir), "--no-progress")
    assert code == 0
    res = json.loads((out_dir / "result.json").read_text())
    assert res["reward_metric"] == "nll"
    graph = load_search_model("digits_cnn")
    ev = PolicyEvaluator(graph, load_device(str(device)), quantizable_layers(graph),
                         digits_search_data(image_size(graph)), finetune_epochs=0)
    from hwsim.emulate.float_reference import run_float

    # the float model's NLL computed here by hand (float64 softmax), apart from haq_accuracy
    data = ev.data
    logits = np.asarray(run_float(graph, data.val_x)[graph.outputs[0]], np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    fp_nll = float(-np.mean(np.log(p[np.arange(len(data.val_y)), data.val_y])))
    # the sensitivities' reference is the int8 policy's NLL (plumbing: same evaluator)
    assert res["sensitivity"]["reference_val_negative_nll"] == pytest.approx(
        -ev.evaluate([(8, 8)] * 5, "val")[1], abs=1e-12)
    with (out_dir / "episodes.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:  # HAQ's reward 0.1 * 100 * (score_q - score_fp) with score = -NLL
        assert float(r["reward"]) == pytest.approx(10.0 * (fp_nll - float(r["val_nll"])),
                                                   rel=1e-9, abs=1e-9)
        assert 0.0 <= float(r["val_accuracy"]) <= 1.0
    assert res["val_nll"] > 0 and "val_nll" in res["baselines"]["ilp"]


@pytest.mark.parametrize("budget, message", [
    ("latency", "must be METRIC=FRACTION"),
    ("speed=0.5", "unknown metric 'speed'; allowed: latency, energy, size"),
    ("latency=fast", "'fast' is not a number"),
    ("latency=60", "must lie in (0, 1]"),
    ("size=0", "must lie in (0, 1]"),
])
def test_bad_budget_strings_exit_2(capsys, tmp_path, budget, message):
    code, _, err = _run(capsys, "search", "haq", "--device", "bismo", "--model", "digits_cnn",
                        "--budget", budget, "--out", str(tmp_path / "o"), "--no-progress")
    assert code == 2
    assert message in err
    assert not (tmp_path / "o").exists()


def test_infeasible_budget_exits_2_naming_the_minimum_cost(capsys, tmp_path):
    code, _, err = _run(capsys, "search", "haq", "--device", "bismo", "--model", "digits_cnn",
                        "--budget", "latency=0.1", "--out", str(tmp_path / "o"),
                        "--no-progress")
    assert code == 2
    assert "below the minimum achievable cost" in err and "use at least latency=0.2" in err
    assert not (tmp_path / "o").exists()


def test_metric_without_a_model_is_a_clear_error(capsys, tmp_path):
    # bismo's configurations give no energy figures
    code, _, err = _run(capsys, "search", "haq", "--device", "bismo", "--model", "digits_cnn",
                        "--budget", "energy=0.5", "--out", str(tmp_path / "o"),
                        "--no-progress")
    assert code == 1
    assert "gives no energy figures" in err


def test_unknown_model_is_a_clear_error(capsys, tmp_path):
    code, _, err = _run(capsys, "search", "haq", "--device", "bismo", "--model", "resnet.pt",
                        "--budget", "latency=0.6", "--out", str(tmp_path / "o"),
                        "--no-progress")
    assert code == 1
    assert "neither a digits demo model" in err and "export the model to ONNX" in err


def test_onnx_model_that_is_not_a_digits_classifier_is_a_clear_error(capsys, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 2, 1, 1], [1.0, 0.5, -0.5, 1.0])
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
                              "tiny", [x], [y], [w])
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    code, _, err = _run(capsys, "search", "haq", "--device", "bismo", "--model", str(path),
                        "--budget", "latency=0.6", "--out", str(tmp_path / "o"),
                        "--no-progress")
    assert code == 1
    assert "input shape (1, 2, 4, 4) is not (N, 1, S, S)" in err


def test_train_reward_data_measures_the_reward_on_a_third_of_the_training_split(capsys,
                                                                                 tmp_path):
    from hwsim.emulate.float_reference import run_float
    from hwsim.graph.digits_demo import N_TRAIN, digits_images
    from hwsim.search.haq_run import load_search_model

    device = _bismo_with(tmp_path)
    out_dir = tmp_path / "haq"
    code, _, _ = _run(capsys, "search", "haq", "--device", str(device), "--model", "digits_cnn",
                      "--budget", "latency=0.75", "--episodes", "2", "--finetune-epochs", "0",
                      "--final-finetune-epochs", "1", "--reward-metric", "nll",
                      "--reward-data", "train", "--out", str(out_dir), "--no-progress")
    assert code == 0
    res = json.loads((out_dir / "result.json").read_text())
    assert res["data"] == {"train": 958, "val": 479, "test": 200, "calib": 128,
                           "split_seed": 0, "reward_data": "train",
                           "final_finetune_train": N_TRAIN}
    # the documented reward images, chosen here from the whole dataset: the first third of a
    # seed-0 permutation of the 1437 training images
    x, y = digits_images(8)
    idx = np.random.default_rng(0).permutation(N_TRAIN)[:N_TRAIN // 3]
    graph = load_search_model("digits_cnn")
    logits = np.asarray(run_float(graph, x[idx])[graph.outputs[0]], np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    fp_nll = float(-np.mean(np.log(p[np.arange(len(idx)), y[idx]])))
    assert res["fp_val_accuracy"] == pytest.approx(float(np.mean(logits.argmax(1) == y[idx])))
    with (out_dir / "episodes.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2
    for r in rows:
        assert float(r["reward"]) == pytest.approx(10.0 * (fp_nll - float(r["val_nll"])),
                                                   rel=1e-9, abs=1e-9)
    assert res["final_finetune"]["epochs"] == 1


def test_finetune_reward_data_rewards_the_finetunes_running_top1(capsys, tmp_path):
    from hwsim.emulate.float_reference import run_float
    from hwsim.graph.digits_demo import N_TRAIN, digits_images
    from hwsim.quant.device import load_device
    from hwsim.search.haq_accuracy import PolicyEvaluator
    from hwsim.search.haq_cost import quantizable_layers
    from hwsim.search.haq_run import digits_search_data, load_search_model

    device = _bismo_with(tmp_path, (2, 8))  # 2-bit layers cost the fine-tune accuracy
    out_dir = tmp_path / "haq"
    code, _, _ = _run(capsys, "search", "haq", "--device", str(device), "--model", "digits_cnn",
                      "--budget", "latency=0.6", "--episodes", "3", "--reward-data", "finetune",
                      "--out", str(out_dir), "--no-progress")
    assert code == 0
    res = json.loads((out_dir / "result.json").read_text())
    assert res["data"] == {"train": 958, "val": 479, "test": 200, "calib": 128,
                           "split_seed": 0, "reward_data": "finetune",
                           "final_finetune_train": N_TRAIN}
    assert res["selection"]["tie_break"] == "lowest fine-tune running NLL, then earliest"
    # the float model's top-1 on the documented fine-tune images (the two thirds of the
    # training split outside the seed-0 permutation's first third), from the dataset directly
    x, y = digits_images(8)
    idx = sorted(np.random.default_rng(0).permutation(N_TRAIN)[N_TRAIN // 3:])
    graph = load_search_model("digits_cnn")
    logits = np.asarray(run_float(graph, x[idx])[graph.outputs[0]], np.float64)
    fp = float(np.mean(logits.argmax(1) == y[idx]))
    assert res["fp_finetune_images"]["accuracy"] == pytest.approx(fp, abs=1e-12)
    # every episode: the running top-1 of a separate evaluator's fine-tune of its policy
    ev = PolicyEvaluator(graph, load_device(str(device)), quantizable_layers(graph),
                         digits_search_data(8, reward_data="finetune"), seed=0)
    with (out_dir / "episodes.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3
    for r in rows:
        policy = [tuple(map(int, p.split("/"))) for p in r["policy_w/a"].split()]
        top1, nll = ev.finetune_running(policy)
        assert (float(r["running_accuracy"]), float(r["running_nll"])) == (top1, nll)
        assert float(r["reward"]) == pytest.approx(10.0 * (top1 - fp), abs=1e-9)
        assert float(r["val_accuracy"]) == ev.accuracy(policy, "val")
    assert any(float(r["reward"]) < 0 for r in rows)  # 2-bit layers cost running accuracy
    best = max(rows, key=lambda r: float(r["reward"]))
    assert res["finetune_running"]["accuracy"] == float(best["running_accuracy"])


def test_finetune_reward_data_needs_a_finetune(capsys, tmp_path):
    code, _, err = _run(capsys, "search", "haq", "--device", "bismo", "--model", "digits_cnn",
                        "--budget", "latency=0.75", "--reward-data", "finetune",
                        "--finetune-epochs", "0", "--out", str(tmp_path / "o"), "--no-progress")
    assert code == 1
    assert "finetune_epochs must be >= 1, got 0" in err
    assert not (tmp_path / "o").exists()


def test_unknown_reward_data_is_refused_naming_the_choices(capsys, tmp_path):
    with pytest.raises(SystemExit):
        _run(capsys, "search", "haq", "--device", "bismo", "--model", "digits_cnn",
             "--budget", "latency=0.75", "--reward-data", "test", "--out", str(tmp_path))
    err = capsys.readouterr().err
    assert "invalid choice: 'test' (choose from 'heldout', 'train', 'finetune')" in err
