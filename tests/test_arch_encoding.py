"""Architecture encoders: hand-computed features of small cases and clear input errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hwsim.errors import LatencyError
from hwsim.latency import arch_encoding as ae

NAMES = ae.nb201_feature_names()


def _feat(arch: str) -> dict[str, float]:
    return dict(zip(NAMES, ae.encode_nb201([arch])[0], strict=True))


def test_nb201_parse_format_round_trip_over_whole_space():
    canonical = ae._nb201_canonical()
    assert len(canonical) == 5 ** 6
    for s, codes in list(canonical.items())[::97]:
        assert ae.parse_nb201(s) == codes
        assert ae.format_nb201(codes) == s


def test_nb201_features_of_a_fully_live_cell_match_hand_count():
    f = _feat("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+"
              "|none~0|avg_pool_3x3~1|nor_conv_3x3~2|")
    assert ae.encode_nb201(["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"]).shape == (
        1, len(NAMES))
    assert f["edge0_nor_conv_3x3"] == 1 and f["edge3_none"] == 1 and f["edge0_none"] == 0
    assert [f[f"count_{op}"] for op in ae.NB201_OPS] == [1, 1, 1, 2, 1]
    assert [f[f"live_count_{op}"] for op in ae.NB201_OPS] == [0, 1, 1, 2, 1]
    assert f["disconnected"] == 0
    # paths 0-1-3 (pool), 0-1-2-3, 0-2-3: longest 3 edges, 3 convs (conv3,conv1,conv3)
    assert f["depth_edges"] == 3 and f["depth_convs"] == 3 and f["n_live_paths"] == 3
    assert f["cell_mmacs"] == pytest.approx(32 * 32 * 16 * 16 * (9 * 2 + 1) * 15 / 1e6)


def test_nb201_dead_edge_is_not_live_and_disconnected_cell_is_flagged():
    f = _feat("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    assert f["count_nor_conv_3x3"] == 1 and f["live_count_nor_conv_3x3"] == 0
    assert f["depth_edges"] == 1 and f["depth_convs"] == 0 and f["disconnected"] == 0
    assert f["live_cell_mmacs"] == 0 and f["cell_mmacs"] > 0
    g = _feat("|none~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|")
    assert g["disconnected"] == 1 and g["n_live_paths"] == 0 and g["live_count_nor_conv_3x3"] == 0


def test_nb201_bad_strings_name_the_row_and_value():
    ok = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    with pytest.raises(LatencyError, match=r"row 1: .*unknown NB201 op 'conv_7x7'"):
        ae.encode_nb201([ok, ok.replace("none~2", "conv_7x7~2")])
    with pytest.raises(LatencyError, match=r"row 0: malformed NB201 arch_str"):
        ae.encode_nb201(["|none~0|+|none~0|"])
    with pytest.raises(LatencyError, match="must be a string"):
        ae.encode_nb201([float("nan")])


def test_fbnet_layers_follow_the_space_definition():
    layers = ae.fbnet_layers()
    assert len(layers) == 22
    assert layers[0] == ae.FBNetLayer(16, 16, 1, 32)
    assert layers[1] == ae.FBNetLayer(16, 24, 1, 32)
    assert layers[5] == ae.FBNetLayer(24, 32, 2, 32)
    assert layers[-1] == ae.FBNetLayer(184, 352, 1, 4)


def test_fbnet_macs_match_hand_computation():
    k3_e1, k3_e1_g2, k5_e6, skip = (ae.FBNET_OPS[i] for i in (0, 1, 7, 8))
    layers = ae.fbnet_layers()
    # 1x1 16->16, dw 3x3 on 16, 1x1 16->16 at 32x32
    assert ae.fbnet_layer_cost(layers[0], k3_e1) == (1024 * (256 + 144 + 256), 256 + 144 + 256)
    assert ae.fbnet_layer_cost(layers[0], k3_e1_g2)[0] == 1024 * (128 + 144 + 128)
    assert ae.fbnet_layer_cost(layers[0], skip) == (0.0, 0.0)
    assert ae.fbnet_layer_cost(layers[1], skip) == (1024 * 16 * 24, 16 * 24)
    # 24 -> 144 at 32x32, dw 5x5 stride 2 -> 16x16, 144 -> 32 at 16x16
    assert ae.fbnet_layer_cost(layers[5], k5_e6)[0] == 1024 * 24 * 144 + 256 * (144 * 25 + 144 * 32)


def test_fbnet_encoding_layout_and_totals():
    codes = np.zeros((2, 22), dtype=int)
    codes[1, :] = 8
    codes[1, 3] = 7
    x = ae.encode_fbnet(codes)
    names = ae.fbnet_feature_names()
    assert x.shape == (2, len(names)) == (2, 22 * 9 + 22 + 22 + 9 + 2)
    assert x[0, : 22 * 9].reshape(22, 9)[:, 0].sum() == 22
    col = dict(zip(names, x[1], strict=True))
    assert col["layer3_k5_e6"] == 1 and col["layer3_skip"] == 0 and col["count_skip"] == 21
    per_layer = [col[f"layer{i}_mmacs"] for i in range(22)]
    assert col["total_mmacs"] == pytest.approx(sum(per_layer))


@pytest.mark.parametrize("bad, where", [(9, "column op4"), (-1, "column op4"), (2.5, "column op4")])
def test_fbnet_bad_op_index_names_row_column_value(bad, where):
    codes = np.zeros((3, 22), dtype=float)
    codes[2, 4] = bad
    with pytest.raises(LatencyError, match=rf"row 2, {where}: FBNet op index {float(bad)!r} "):
        ae.encode_fbnet(codes)


def test_fbnet_non_numeric_and_wrong_shape_are_rejected():
    codes = np.zeros((1, 22), dtype=object)
    codes[0, 21] = "k3"
    with pytest.raises(LatencyError, match=r"row 0, column op21: FBNet op index 'k3'"):
        ae.encode_fbnet(codes)
    with pytest.raises(LatencyError, match=r"\(n, 22\) array .* got shape \(2, 21\)"):
        ae.encode_fbnet(np.zeros((2, 21)))


def test_keys_are_op_digits_for_both_spaces():
    s = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|none~2|"
    assert ae.arch_keys("nb201", [s]).tolist() == ["312040"]
    codes = np.arange(22) % 9
    assert ae.arch_keys("fbnet", codes[None, :]).tolist() == ["".join(str(c) for c in codes)]
    with pytest.raises(LatencyError, match="unknown architecture space 'kernels'"):
        ae.encode("kernels", [])


def test_additive_minimum_is_exact_on_both_spaces():
    rng = np.random.default_rng(1)
    nb_cols = np.concatenate([ae.additive_feature_columns("nb201", b)
                              for b in ("counts", "positions")])
    every = [ae.format_nb201(c) for c in itertools.product(range(5), repeat=6)]
    all_feats = ae.encode("nb201", every)  # brute force over the space, via arch strings
    for _ in range(3):
        coef = rng.uniform(-1, 1, nb_cols.size)
        assert ae.additive_minimum("nb201", nb_cols, coef) == pytest.approx(
            (all_feats[:, nb_cols] @ coef).min(), abs=1e-12)
    # FBNet (9^22 architectures): the minimum rests on the additive features being sums of
    # per-layer terms; check that property on random architectures, then that the per-layer
    # argmin architecture attains the value returned.
    fb_cols = np.concatenate([ae.additive_feature_columns("fbnet", b)
                              for b in ("counts", "positions")])
    coef = rng.uniform(-1, 1, fb_cols.size)

    def f(codes):
        return ae.encode_fbnet(np.atleast_2d(codes))[:, fb_cols] @ coef

    base = f(np.zeros(22, dtype=int))[0]
    delta = np.array([[f(np.eye(22, dtype=int)[i] * k)[0] - base for k in range(9)]
                      for i in range(22)])
    archs = rng.integers(0, 9, size=(200, 22))
    np.testing.assert_allclose(f(archs), base + delta[np.arange(22), archs].sum(axis=1),
                               rtol=0, atol=1e-9)
    best = delta.argmin(axis=1)
    assert ae.additive_minimum("fbnet", fb_cols, coef) == pytest.approx(f(best)[0], abs=1e-9)
    assert f(archs).min() >= f(best)[0] - 1e-9
    with pytest.raises(LatencyError, match="not an additive feature"):
        ae.additive_minimum("fbnet", np.array([ae.feature_names("fbnet").index("total_mmacs")]),
                            np.ones(1))
