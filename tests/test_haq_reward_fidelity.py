"""tools/haq_reward_fidelity.py: agreement of reward scores with cross-validated accuracy."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def tool(import_tool):
    return import_tool("haq_reward_fidelity")


def test_identical_ranking_agrees_everywhere(tool):
    f = tool.fidelity([[3, 2, 1, 0]], [[0.9, 0.8, 0.7, 0.6]])
    assert f == {"best": 1.0, "tau": pytest.approx(1.0), "concordance": 1.0, "pairs": 6}


def test_reversed_ranking_and_ties_counted_by_hand(tool):
    # cell 1 reversed: best wrong, tau -1, 0 of 6 pairs
    # cell 2: scores tie at the top between a cv-best and a cv-worse policy -> best 1/2;
    #   cv (0.9, 0.9, 0.5): pairs with different cv: (0,2) and (1,2);
    #   scores (2, 2, 1): both ordered alike -> 2 of 2
    f = tool.fidelity([[0, 1, 2, 3], [2, 2, 1]], [[0.9, 0.8, 0.7, 0.6], [0.9, 0.9, 0.5]])
    assert f["best"] == 1.0  # 0 + 1 (both tied top policies are cv-best)
    assert f["pairs"] == 8 and f["concordance"] == pytest.approx(2 / 8)
    f = tool.fidelity([[2, 2, 1]], [[0.9, 0.5, 0.4]])
    assert f["best"] == 0.5
    # pairs (0,1): score tie -> 1/2; (0,2), (1,2): alike -> 2.5 of 3
    assert f["concordance"] == pytest.approx(2.5 / 3)


def test_kendall_tau_b_matches_the_count_written_out(tool):
    # scores (1, 3, 2, 4) vs cv (1, 2, 3, 4): 5 concordant, 1 discordant pair, no ties
    f = tool.fidelity([[1, 3, 2, 4]], [[0.1, 0.2, 0.3, 0.4]])
    assert f["tau"] == pytest.approx((5 - 1) / 6)
    assert f["concordance"] == pytest.approx(5 / 6)


def test_constant_cells_have_no_tau(tool):
    f = tool.fidelity([[1, 1, 1]], [[0.5, 0.6, 0.7]])
    assert f["tau"] != f["tau"]  # nan: undefined without spread
    assert f["best"] == pytest.approx(1 / 3) and f["concordance"] == 0.5


def test_crossval_csv_needs_its_columns(tool, tmp_path):
    bad = tmp_path / "cv.csv"
    bad.write_text("model,device,budget,method\nm,d,0.5,haq\n")
    with pytest.raises(SystemExit, match="not a haq_crossval.py CSV"):
        tool.cv_accuracies(bad)
    good = tmp_path / "cv2.csv"
    good.write_text("model,device,budget,method,cv_accuracy\nm,d,0.5,haq,0.75\n")
    assert tool.cv_accuracies(good) == {("m", "d", 0.5, "haq"): 0.75}


@pytest.mark.parametrize("epochs", [0, 1])
def test_tool_measures_each_design_and_checks_the_tables_val_accuracy(tool, tmp_path, epochs):
    from hwsim.quant.device import load_device
    from hwsim.search.haq_accuracy import PolicyEvaluator
    from hwsim.search.haq_cost import quantizable_layers
    from hwsim.search.haq_run import digits_search_data, load_search_model

    graph = load_search_model("digits_cnn")
    ev = PolicyEvaluator(graph, load_device("bismo"), quantizable_layers(graph),
                         digits_search_data(8), finetune_epochs=epochs)
    wide, narrow = [(8, 8)] * 5, [(8, 8), (3, 3), (3, 3), (3, 3), (8, 8)]
    val = [ev.accuracy(wide), ev.accuracy(narrow)]
    head = ("model,device,budget,method,finetune_epochs,final_finetune_epochs,seed,val_accuracy,"
            "test_accuracy,final_test_accuracy,policy_w/a\n")

    def table(vals):
        (tmp_path / "t.csv").write_text(head + "".join(
            f"digits_cnn,bismo,0.5,{m},{epochs},0,0,{v!r},0.9,nan,{p}\n" for m, v, p in
            (("haq", vals[0], "8/8 8/8 8/8 8/8 8/8"), ("uniform-3", vals[1],
                                                      "8/8 3/3 3/3 3/3 8/8"))))
        return tmp_path / "t.csv"
    (tmp_path / "cv.csv").write_text("model,device,budget,method,cv_accuracy\n"
                                     "digits_cnn,bismo,0.5,haq,0.99\n"
                                     "digits_cnn,bismo,0.5,uniform-3,0.5\n")
    out = tmp_path / "r.md"
    assert tool.main([str(table(val)), str(tmp_path / "cv.csv"), "--out", str(out)]) == 0
    text = out.read_text()
    # the 8-bit policy has the lower NLL on any images: both NLL designs rank as the reference
    assert "| heldout nll | digits_cnn | 1/1 | +1.00 | 100% of 1 |" in text
    assert "| train nll | digits_cnn | 1/1 | +1.00 | 100% of 1 |" in text
    # the running score of the fine-tune on its own images (HAQ's code), only with a fine-tune
    if epochs:
        assert "| finetune nll | digits_cnn | 1/1 | +1.00 | 100% of 1 |" in text
    else:
        assert "finetune" not in text.split("Reference")[1]
    # a table whose val acc is not what its policies measure is refused
    assert tool.main([str(table([val[0], val[1] + 0.5])), str(tmp_path / "cv.csv")]) == 1
