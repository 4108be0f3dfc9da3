"""Cross-validated policy accuracy: folds, fold data, per-image assembly, resume, errors."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import hwsim
from hwsim.emulate.emulator import Emulator
from hwsim.errors import GraphError, SearchError
from hwsim.graph.digits_demo import (
    N_TRAIN,
    demo_model,
    digits_images,
    train_demo_architecture,
)
from hwsim.graph.load import load_model
from hwsim.search.haq_cost import quantizable_layers
from hwsim.search.haq_run import digits_search_data, search_val_images
from hwsim.search.policy_crossval import (
    CrossvalRequest,
    crossval_correct,
    crossval_folds,
    fold_data,
)

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def test_folds_partition_the_pool_without_the_excluded_images():
    exclude = [3, 5, 5, 90]
    folds = crossval_folds(101, exclude, 4, seed=7)
    allidx = np.concatenate(folds)
    assert sorted(allidx.tolist()) == [i for i in range(101) if i not in {3, 5, 90}]
    assert {len(f) for f in folds} == {24, 25}
    assert all(np.all(np.diff(f) > 0) for f in folds)
    again = crossval_folds(101, exclude, 4, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again, strict=True))
    other = crossval_folds(101, exclude, 4, seed=8)
    assert not all(np.array_equal(a, b) for a, b in zip(folds, other, strict=True))


@pytest.mark.parametrize(("n_folds", "exclude", "match"), [
    (1, [], "n_folds must lie in 2..10"), (11, [], "n_folds must lie in 2..10"),
    (2, [10], "outside 0..9"), (2, [-1], "outside 0..9")])
def test_folds_refuse_bad_arguments(n_folds, exclude, match):
    with pytest.raises(SearchError, match=match):
        crossval_folds(10, exclude, n_folds, seed=0)


def test_fold_data_trains_on_the_complement_in_dataset_order():
    x = np.arange(20, dtype=np.float32).reshape(20, 1, 1, 1)
    y = np.arange(20) % 10
    test = np.array([2, 3, 11])
    d = fold_data(x, y, test, calib_size=4)
    train = [i for i in range(20) if i not in (2, 3, 11)]
    assert d.train_x.ravel().tolist() == train
    assert d.train_y.tolist() == [i % 10 for i in train]
    assert d.calib_x.ravel().tolist() == train[:4]
    assert d.test_x.ravel().tolist() == [2, 3, 11] == d.val_x.ravel().tolist()
    with pytest.raises(SearchError, match="calib_size must lie in 1..17"):
        fold_data(x, y, test, calib_size=18)


def test_search_val_images_are_the_searchs_validation_images():
    idx = search_val_images()
    x, y = digits_images(8)
    data = digits_search_data(8)
    assert len(idx) == len(data.val_y) == 160
    assert np.all(idx >= N_TRAIN)
    # the search's val split is in permuted order; compare as sets of (image, label)
    got = {(x[i].tobytes(), int(y[i])) for i in idx}
    want = {(a.tobytes(), int(b)) for a, b in zip(data.val_x, data.val_y, strict=True)}
    assert got == want


def test_train_demo_architecture_on_the_demo_split_gives_the_demo_model():
    x, y = digits_images(8)
    net = train_demo_architecture("digits_cnn", x[:N_TRAIN], y[:N_TRAIN])
    demo = demo_model("digits_cnn")
    for (k, a), (_, b) in zip(net.state_dict().items(), demo.model.state_dict().items(),
                              strict=True):
        assert torch.equal(a, b), k
    with pytest.raises(GraphError, match="unknown demo model"):
        train_demo_architecture("resnet", x, y)
    with pytest.raises(GraphError, match=r"\(N, 1, 8, 8\)"):
        train_demo_architecture("digits_cnn", x[:, :, :4], y)


@pytest.fixture(scope="module")
def fixed_model():
    """Every fold 'trains' the cached demo model: the test pins the fold bookkeeping."""
    model = demo_model("digits_cnn").model
    calls: list[int] = []

    def train(name, train_x, train_y):
        assert name == "digits_cnn"
        calls.append(len(train_y))
        return model
    return model, train, calls


def test_crossval_puts_each_fold_result_at_its_images(fixed_model, tmp_path):
    model, train, calls = fixed_model
    graph = load_model(model, torch.zeros(1, 1, 8, 8))
    n = len(quantizable_layers(graph))
    int8 = CrossvalRequest("bismo", ((8, 8),) * n, 0)
    low = CrossvalRequest("bismo", ((8, 8),) + ((2, 2),) * (n - 2) + ((8, 8),), 0)
    exclude = [0, 1, 2, 1000]
    res = crossval_correct("digits_cnn", [int8, low], n_folds=3, exclude=exclude,
                           fold_seed=1, cache_path=tmp_path / "cv.json", train=train)
    x, y = digits_images(8)
    assert res.images.tolist() == [i for i in range(len(y)) if i not in exclude]
    assert np.array_equal(res.labels, y[res.images])
    assert calls == [len(y) - np.sum(res.fold == k) for k in range(3)]
    # oracle: per fold, the plain int8 emulator calibrated on the first 128 images not in the
    # fold, run on the fold (W8A8 everywhere is the plain int8 emulator)
    dev = hwsim.load_device("bismo")
    want = np.zeros(len(y), bool)
    fold_ids = np.full(len(y), -1)
    for k in range(3):
        test = res.images[res.fold == k]
        fold_ids[test] = k
        train_idx = np.array([i for i in range(len(y)) if i not in set(test.tolist())])
        out = Emulator(graph, dev, "int8").calibrate(x[train_idx[:128]]).run(x[test]).output
        want[test] = out.argmax(1) == y[test]
    assert np.array_equal(res.correct[int8], want[res.images])
    assert res.accuracy(int8) == pytest.approx(want[res.images].mean())
    assert res.accuracy(low) < res.accuracy(int8) - 0.05
    with torch.no_grad():
        fp = model(torch.from_numpy(x[res.images])).argmax(1).numpy() == y[res.images]
    assert np.array_equal(res.fp_correct, fp)
    # folds are of the pool only, of sizes differing by at most one
    assert fold_ids[exclude].tolist() == [-1] * len(exclude)
    assert np.ptp(np.bincount(res.fold)) <= 1

    # resume: everything comes from the cache, nothing is trained or measured
    def no_train(*_):
        raise AssertionError("trained although every measurement is cached")
    lines: list[str] = []
    again = crossval_correct("digits_cnn", [low, int8], n_folds=3, exclude=exclude,
                             fold_seed=1, cache_path=tmp_path / "cv.json", train=no_train,
                             progress=lines.append)
    assert lines == []
    assert np.array_equal(again.correct[int8], res.correct[int8])
    assert np.array_equal(again.fp_correct, res.fp_correct)
    # another fold seed is another context: measured afresh
    calls.clear()
    crossval_correct("digits_cnn", [int8], n_folds=3, exclude=exclude, fold_seed=2,
                     cache_path=tmp_path / "cv.json", train=train)
    assert len(calls) == 3
    entries = json.loads((tmp_path / "cv.json").read_text())["entries"]
    # two contexts (fold seeds): (fp32 + 2 requests) x 3 folds and (fp32 + 1) x 3
    assert sorted(len(v) for v in entries.values()) == [3 * 2, 3 * 3]


def test_crossval_refuses_bad_requests_and_caches(fixed_model, tmp_path):
    _, train, _ = fixed_model
    ok = CrossvalRequest("bismo", ((8, 8),) * 5, 0)
    with pytest.raises(SearchError, match="not one of digits_cnn, digits_mbv2"):
        crossval_correct("my.onnx", [ok], train=train)
    with pytest.raises(SearchError, match="repeat"):
        crossval_correct("digits_cnn", [ok, ok], train=train)
    with pytest.raises(SearchError, match=r"policy of 3 layers.*5 quantizable layers \(conv1"):
        crossval_correct("digits_cnn", [CrossvalRequest("bismo", ((8, 8),) * 3, 0)],
                         n_folds=2, train=train)
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": 1, "entries": {}}')
    with pytest.raises(SearchError, match="cross-validation cache .*not format 2; delete it"):
        crossval_correct("digits_cnn", [ok], n_folds=2, cache_path=bad, train=train)
    crossval_correct("digits_cnn", [ok], n_folds=2, cache_path=tmp_path / "c.json", train=train)
    data = json.loads((tmp_path / "c.json").read_text())
    (context,) = data["entries"]
    key = next(iter(data["entries"][context]))
    data["entries"][context][key] = data["entries"][context][key][:-1]
    (tmp_path / "c.json").write_text(json.dumps(data))
    with pytest.raises(SearchError, match="not .* characters of 0/1"):
        crossval_correct("digits_cnn", [ok], n_folds=2, cache_path=tmp_path / "c.json",
                         train=train)


def test_tool_mcnemar_matches_the_exact_binomial_sum():
    sys.path.insert(0, str(TOOLS))
    try:
        from haq_significance import mcnemar
    finally:
        sys.path.remove(str(TOOLS))
    a = np.array([1, 1, 1, 1, 1, 1, 0, 0, 1, 0], bool)
    b = np.array([0, 0, 0, 0, 0, 1, 1, 0, 1, 0], bool)
    a_only, b_only, p = mcnemar(a, b)
    assert (a_only, b_only) == (5, 1)
    # two-sided exact: P(X <= 1) + P(X >= 5) for X ~ Binomial(6, 1/2)
    want = sum(math.comb(6, k) for k in (0, 1, 5, 6)) / 2 ** 6
    assert p == pytest.approx(want)
    assert mcnemar(a, a) == (0, 0, 1.0)


def test_tool_rows_verdicts_and_tests_from_pooled_correctness(tmp_path):
    sys.path.insert(0, str(TOOLS))
    try:
        import haq_crossval as tool
        from haq_significance import cells_from_csv
    finally:
        sys.path.remove(str(TOOLS))
    from hwsim.search.policy_crossval import CrossvalResult

    pol = {"haq": "8/8 5/7 4/5 4/6 8/8", "uniform-4": "8/8 4/4 4/4 4/4 8/8",
           "greedy": "8/8 7/8 4/4 8/8 8/8", "ilp": "8/8 8/8 4/4 6/2 8/8"}
    head = ("model,device,budget,method,cost_fraction,finetune_epochs,final_finetune_epochs,"
            "seed,test_accuracy,final_test_accuracy,policy_w/a\n")
    body = "".join(f"digits_cnn,bismo,0.5,{m},0.{i + 4},1,10,0,0.9{i},0.8{i},{p}\n"
                   for i, (m, p) in enumerate(pol.items()))
    (tmp_path / "t.csv").write_text(head + body)
    cells = cells_from_csv(tmp_path / "t.csv", dict.fromkeys(
        ("finetune_epochs", "final_finetune_epochs", "seed")))
    reqs = tool.requests_of(cells)["digits_cnn"]
    assert len(reqs) == 8 and {r.finetune_epochs for r in reqs} == {1, 10}

    def bits(s):
        return np.array([c == "1" for c in s])
    # e1: haq 8/10, uniform 7/10, greedy 9/10, ilp 8/10; e10: haq 10/10, the others 9/10
    e1 = {"haq": "1111111100", "uniform-4": "1111111000", "greedy": "0111111111",
          "ilp": "1111110110"}
    correct = {}
    for m, p in pol.items():
        policy = tuple(tuple(int(b) for b in item.split("/")) for item in p.split())
        correct[tool.CrossvalRequest("bismo", policy, 1)] = bits(e1[m])
        correct[tool.CrossvalRequest("bismo", policy, 10)] = bits(
            "1111111111" if m == "haq" else "1111111110")
    res = CrossvalResult(images=np.arange(10), labels=np.zeros(10, int), fold=np.arange(10) % 2,
                         n_dataset=12, correct=correct, fp_correct=np.ones(10, bool))
    rows = tool.cell_rows(cells[0], res)
    assert [r["cv_accuracy"] for r in rows] == pytest.approx([0.8, 0.7, 0.9, 0.8])
    assert [r["cv_final_accuracy"] for r in rows] == pytest.approx([1.0, 0.9, 0.9, 0.9])
    assert [r["split_test_accuracy"] for r in rows] == pytest.approx([0.90, 0.91, 0.92, 0.93])
    tests = tool.cell_tests(cells[0], res)
    greedy = next(t for t in tests if t["split"] == "cv" and t["baseline"] == "greedy")
    assert (greedy["haq_only"], greedy["baseline_only"]) == (1, 2)
    tool.add_holm(tests)
    # every raw p is 1 here (discordant splits 1:0, 1:2, 1:1), so Holm keeps them at 1
    assert [t["p"] for t in tests] == [1.0] * 6 and [t["p_holm"] for t in tests] == [1.0] * 6
    gaps = tool.cell_gaps(cells[0], res)
    assert [g["split"] for g in gaps] == ["cv", "cv_final"]
    assert gaps[0]["best"][0] == pytest.approx(-0.1)  # 0.8 - greedy's 0.9
    assert gaps[0]["uniform"][0] == pytest.approx(0.1)
    assert gaps[1]["best"][0] == pytest.approx(0.1)
    text = tool.markdown(tmp_path / "t.csv", [rows], tests, {"digits_cnn": res},
                         {"date": "d", "command": "c", "folds": 2, "fold_seed": 0,
                          "finetune_epochs": 1, "final_finetune_epochs": 10, "seed": 0,
                          "total_s": 1.0, "measured": 0,
                          "excluded": "160 held-out validation images"}, gaps)
    assert "After Holm's adjustment: 0 of 3." in text
    # cv: HAQ and greedy (the best) disagree on 3 images; HAQ needs 2 of the 3 to reach
    # greedy's 9: P(X >= 2), X ~ Binomial(3, 1/2) = 1/2.
    # cv_final: one discordant image against uniform-4 (first of the tied best): 1/2.
    assert [g["p_match_if_equal"] for g in gaps] == [0.5, 0.5]
    assert "in 0.5/1 cells on average, and in all 1 with probability 0.5" in text
    # cv_final: HAQ right on 10/10, each baseline on 9/10 (the same image), so a resample's
    # margin is 10 pp per draw of that image, K ~ Binomial(10, 0.1): P(K = 0) = 0.35 > 2.5%, and
    # P(K <= 2) = 0.930 < 97.5% <= P(K <= 3) = 0.987, so the interval is [0, 30] pp
    assert "| cv_final | +10.00 [+0.00, +30.00] | +10.00 [+0.00, +30.00] |" in text
    assert "- cv: HAQ >= best baseline in 0/1 cells, >= uniform in 1/1." in text
    assert "- cv_final: HAQ >= best baseline in 1/1 cells, >= uniform in 1/1." in text
    assert "no (-10.00 pp) / yes (+10.00 pp)" in text
    assert "other 7 images" in text  # 12 images, folds of 5
    # cv vs greedy: psi 3/10, delta -1/10: (1.95996 sqrt(0.3) + 0.84162 sqrt(0.29))^2 / 0.01
    # = 233.09 images; even 3:0 needs (1.07351 + 0.84162 sqrt(0.21))^2 / 0.09 = 23.7 > 10.
    # cv_final vs uniform-4: psi 1/10, delta +1/10: (0.61980 + 0.25249)^2 / 0.01 = 76.09
    assert [g["images_needed"] for g in gaps] == pytest.approx([233.09, 76.09], abs=0.01)
    assert [g["detectable"] for g in gaps] == [None, None]
    assert "| digits_cnn | bismo | 0.5 | cv | 3 of 10 | -10.00 | 234 | none |" in text
    assert "| digits_cnn | bismo | 0.5 | cv_final | 1 of 10 | +10.00 | 77 | none |" in text
    assert ("- cv: images needed: median 234, least 234; 0/1 cells with no difference at all; "
            "1/1 (those included) need more than the 12 images of the whole dataset. On the 10 "
            "images here no difference is found 80% of the time in 1/1 cells; |HAQ - best| "
            "median 10.00 pp."
            in text)


def test_tool_excludes_the_images_the_tables_reward_used(tmp_path):
    sys.path.insert(0, str(TOOLS))
    try:
        import haq_crossval as tool
        from haq_significance import cells_from_csv
    finally:
        sys.path.remove(str(TOOLS))
    head = ("model,device,budget,method,finetune_epochs,final_finetune_epochs,seed,"
            "test_accuracy,final_test_accuracy,policy_w/a{}\n")
    row = "digits_cnn,bismo,{},{},1,0,0,0.9,nan,8/8 4/4 4/4 4/4 8/8{}\n"
    settings = dict.fromkeys(("finetune_epochs", "final_finetune_epochs", "seed"))

    def cells(extra_head, budgets_and_data):
        text = head.format(extra_head) + "".join(
            row.format(b, m, d) for b, d in budgets_and_data for m in ("haq", "uniform-4"))
        (tmp_path / "t.csv").write_text(text)
        return cells_from_csv(tmp_path / "t.csv", settings)

    # a table written before the column: the 160 held-out validation images
    idx, what = tool.excluded_images(cells("", [(0.5, "")]), tmp_path / "t.csv")
    assert what == "160 held-out validation images"
    assert len(idx) == 160 and idx.min() >= N_TRAIN
    # reward_data=train: the documented third of the training split (seed-0 permutation)
    idx, what = tool.excluded_images(cells(",reward_data", [(0.5, ",train"), (0.6, ",train")]),
                                     tmp_path / "t.csv")
    assert idx.tolist() == sorted(np.random.default_rng(0).permutation(N_TRAIN)[:479])
    assert what.startswith("479 reward images")
    # reward_data=finetune: the fine-tune's two thirds, where HAQ's code measures its reward
    idx, what = tool.excluded_images(cells(",reward_data", [(0.5, ",finetune")]),
                                     tmp_path / "t.csv")
    assert idx.tolist() == sorted(np.random.default_rng(0).permutation(N_TRAIN)[479:])
    assert what.startswith("958 reward images (the fine-tune's")
    with pytest.raises(SystemExit, match=r"reward_data varies between cells \['heldout', "
                                         r"'train'\]"):
        tool.excluded_images(cells(",reward_data", [(0.5, ",train"), (0.6, ",heldout")]),
                             tmp_path / "t.csv")
    with pytest.raises(SystemExit, match="reward_data 'test'; allowed: heldout, train, finetune"):
        cells(",reward_data", [(0.5, ",test")])


def test_tool_holm_families_are_one_baseline_in_one_split(import_tool):
    tool = import_tool("haq_crossval")
    tests = [{"split": s, "baseline": b, "p": p} for s, b, p in [
        ("cv", "uniform-4", 0.01), ("cv", "greedy", 0.01), ("cv", "uniform-5", 0.04),
        ("cv_final", "uniform-4", 0.02), ("cv", "greedy", 0.3)]]
    tool.add_holm(tests)
    # cv/uniform: 0.01*2, max(0.02, 0.04*1); cv/greedy: 0.01*2, max(0.02, 0.3); cv_final alone
    assert [t["p_holm"] for t in tests] == pytest.approx([0.02, 0.02, 0.04, 0.02, 0.3])


def test_tool_resolution_compares_haq_with_the_first_most_accurate_baseline(import_tool):
    tool = import_tool("haq_crossval")
    haq = np.ones(2000, bool)
    haq[:100] = False                       # 95.0%
    first = np.ones(2000, bool)
    first[100:200] = False                  # 95.0%, disagrees with HAQ on 200 images
    second = haq.copy()                     # 95.0%, the same images as HAQ
    worse = np.zeros(2000, bool)
    got = tool.resolution(haq, [worse, first, second])
    assert got["n_images"] == 2000 and got["discordant"] == pytest.approx(0.1)
    assert got["difference"] == 0.0 and math.isinf(got["images_needed"])
    # 200 discordant images of 2000: a difference findable 80% of the time exists, and the
    # images it needs are the images here
    sig = import_tool("haq_significance")
    assert sig.mcnemar_images_needed(0.1, got["detectable"]) == pytest.approx(2000)
    lines = tool.resolution_lines([{"model": "m", "device": "d", "budget": 0.5, "split": "cv",
                                    "n_dataset": 2100, **got}])
    assert any("| cv | 200 of 2000 | +0.00 | never (equal) |" in line for line in lines)
    assert any("1/1 cells with no difference at all; 1/1 (those included) need more than the "
               "2,100 images" in line for line in lines)


def test_tool_resolution_accepts_every_discordant_image_going_one_way(import_tool):
    """95/100 right against 94/100 on a subset: 0.95 - 0.94 exceeds 0.01 in floating point, so
    shares taken from the two accuracies would be refused as impossible."""
    tool = import_tool("haq_crossval")
    haq = np.arange(100) < 95
    best = np.arange(100) < 94
    got = tool.resolution(haq, [best])
    assert got["discordant"] == got["difference"] == 0.01
    # psi = delta = 0.01: (1.95996 * 0.1 + 0.84162 * sqrt(0.0099))^2 / 1e-4 = 782.53 images
    assert got["images_needed"] == pytest.approx(782.53, abs=0.01)
    assert got["detectable"] is None
