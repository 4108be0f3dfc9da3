"""Search spaces: round trips, masks, published architectures, keys, importable networks."""

from __future__ import annotations

import random

import numpy as np
import pytest

from hwsim.errors import SearchError
from hwsim.graph import load_model
from hwsim.latency.mbnet import mbnet_block_keys, proxyless_net
from hwsim.latency.op_key import format_key
from hwsim.search import get_space
from hwsim.search.latency_model import space_keys

SPACE_NAMES = ("proxyless", "proxyless-digits", "mnasnet", "fbnet", "nb201")

# ProxylessNAS-Mobile, blocks of proxyless_mobile.config (hanlab.mit.edu/files/proxylessNAS/,
# the net config mit-han-lab/proxylessnas model_zoo.py loads; read from the copy in
# zhengxiawu/pytorch_image_classification models/proxyless/network_config/), and checked
# against the independent transcription in osmr/imgclsmob proxylessnas.py (version "mobile":
# init 32, channels 16 | 32x4 | 40x4 | 80x4 96x4 | 192x4 320, kernels 3 | 5 3 3 3 | 7 3 5 5 |
# 7 5 5 5 5 5 5 5 | 7 7 7 7 7, expansions 1 | 3 3 3 3 | 3 3 3 3 | 6 3 3 3 6 3 3 3 | 6 6 3 3 6,
# stage-1 blocks 3 and 4 without a conv (zero), head 1280). Per block:
# (layer, in, out, kernel, stride, expand); shortcuts are IdentityLayer exactly where stride 1
# and in == out.
PROXYLESS_MOBILE_BLOCKS = [
    ("MB", 32, 16, 3, 1, 1),
    ("MB", 16, 32, 5, 2, 3), ("MB", 32, 32, 3, 1, 3), ("Zero", 32, 32, 0, 1, 0),
    ("Zero", 32, 32, 0, 1, 0),
    ("MB", 32, 40, 7, 2, 3), ("MB", 40, 40, 3, 1, 3), ("MB", 40, 40, 5, 1, 3),
    ("MB", 40, 40, 5, 1, 3),
    ("MB", 40, 80, 7, 2, 6), ("MB", 80, 80, 5, 1, 3), ("MB", 80, 80, 5, 1, 3),
    ("MB", 80, 80, 5, 1, 3),
    ("MB", 80, 96, 5, 1, 6), ("MB", 96, 96, 5, 1, 3), ("MB", 96, 96, 5, 1, 3),
    ("MB", 96, 96, 5, 1, 3),
    ("MB", 96, 192, 7, 2, 6), ("MB", 192, 192, 7, 1, 6), ("MB", 192, 192, 7, 1, 3),
    ("MB", 192, 192, 7, 1, 3),
    ("MB", 192, 320, 7, 1, 6),
]
PROXYLESS_MOBILE_WIDTHS = (32, 40, 80, 96, 192, 320)  # released net: stage 1 has 32, not 24

# MnasNet-B1 and -A1, tensorflow/tpu models/official/mnasnet/mnasnet_models.py (the B1 strings
# read again from two copies of that file: mnasnet_b1 blocks_args, stem 32, 224 input).
MNASNET_B1 = ["r1_k3_s11_e1_i32_o16_noskip", "r3_k3_s22_e3_i16_o24", "r3_k5_s22_e3_i24_o40",
              "r3_k5_s22_e6_i40_o80", "r2_k3_s11_e6_i80_o96", "r4_k5_s22_e6_i96_o192",
              "r1_k3_s11_e6_i192_o320_noskip"]
MNASNET_A1 = ["r1_k3_s11_e1_i32_o16_noskip", "r2_k3_s22_e6_i16_o24",
              "r3_k5_s22_e3_i24_o40_se0.25", "r4_k3_s22_e6_i40_o80",
              "r2_k3_s11_e6_i80_o112_se0.25", "r3_k5_s22_e6_i112_o160_se0.25",
              "r1_k3_s11_e6_i160_o320"]
# MnasNet-B1 as a layer table (in, out, kernel, stride, expand, feature size in), from the
# block strings above and the 224 input / stride-2 stem of mnasnet_model.py.
MNASNET_B1_LAYERS = (
    [(32, 16, 3, 1, 1, 112)]
    + [(16, 24, 3, 2, 3, 112), (24, 24, 3, 1, 3, 56), (24, 24, 3, 1, 3, 56)]
    + [(24, 40, 5, 2, 3, 56), (40, 40, 5, 1, 3, 28), (40, 40, 5, 1, 3, 28)]
    + [(40, 80, 5, 2, 6, 28), (80, 80, 5, 1, 6, 14), (80, 80, 5, 1, 6, 14)]
    + [(80, 96, 3, 1, 6, 14), (96, 96, 3, 1, 6, 14)]
    + [(96, 192, 5, 2, 6, 14)] + [(192, 192, 5, 1, 6, 7)] * 3
    + [(192, 320, 3, 1, 6, 7)])


def _mobile_config() -> dict:
    blocks = []
    for kind, cin, cout, k, s, e in PROXYLESS_MOBILE_BLOCKS:
        conv = ({"name": "ZeroLayer", "stride": s} if kind == "Zero" else
                {"name": "MBInvertedConvLayer", "in_channels": cin, "out_channels": cout,
                 "kernel_size": k, "stride": s, "expand_ratio": e})
        shortcut = ({"name": "IdentityLayer", "in_channels": cin, "out_channels": cout}
                    if s == 1 and cin == cout else None)
        blocks.append({"name": "MobileInvertedResidualBlock", "mobile_inverted_conv": conv,
                       "shortcut": shortcut})
    return {"name": "ProxylessNASNets", "blocks": blocks}


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_sample_encode_decode_round_trip(name: str) -> None:
    space = get_space(name)
    archs = space.sample(40, seed=3)
    assert archs.shape == (40, space.n_slots)
    assert np.array_equal(archs, space.sample(40, seed=3))
    assert space.mask[np.arange(space.n_slots), archs].all()
    for arch in archs:
        assert np.array_equal(space.decode(space.encode(arch)), arch)


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_sample_covers_every_valid_op(name: str) -> None:
    space = get_space(name)
    archs = space.sample(4000, seed=0)
    seen = np.zeros_like(space.mask)
    seen[np.arange(space.n_slots)[None, :].repeat(len(archs), 0), archs] = True
    assert np.array_equal(seen, space.mask)


def test_zero_only_where_the_block_can_be_an_identity() -> None:
    space = get_space("proxyless")
    zero = space.choices[0].index("zero")
    first_of_stage = [0, 4, 8, 12, 16, 20]
    assert not space.mask[first_of_stage, zero].any()
    assert space.mask[[s for s in range(21) if s not in first_of_stage], zero].all()
    arch = space.sample(1, seed=0)[0]
    arch[4] = zero
    with pytest.raises(SearchError, match="slot 4 .*not allowed"):
        space.check(arch)


def test_published_proxyless_mobile_decodes_to_its_block_table() -> None:
    space = get_space("proxyless", widths=PROXYLESS_MOBILE_WIDTHS)
    arch = space.decode(_mobile_config())
    assert space.choice_names(arch) == [
        "k5e3", "k3e3", "zero", "zero", "k7e3", "k3e3", "k5e3", "k5e3", "k7e6", "k5e3", "k5e3",
        "k5e3", "k5e6", "k5e3", "k5e3", "k5e3", "k7e6", "k7e6", "k7e3", "k7e3", "k7e6"]
    blocks = [op.key for op in space.ops(arch) if op.key.op == "expanded_conv"]
    want = [b for b in PROXYLESS_MOBILE_BLOCKS if b[0] == "MB"]
    assert [(k.input[2], k.output[2], k.kernel, k.stride, k.expand) for k in blocks] == \
        [b[1:] for b in want]
    assert [k.input[0] for k in blocks] == [112, 112, 56, 56, 28, 28, 28, 28, 14, 14, 14, 14,
                                            14, 14, 14, 14, 7, 7, 7, 7]
    assert space.encode(arch) == _mobile_config()["blocks"]
    # the search-default space has 24 channels in stage 1: the released net does not fit it
    with pytest.raises(SearchError, match="block 1"):
        get_space("proxyless").decode(_mobile_config())


def test_mnasnet_b1_decodes_to_its_layer_table() -> None:
    space = get_space("mnasnet")
    arch = space.decode(MNASNET_B1)
    layers = [op.key for op in space.ops(arch) if op.key.op == "expanded_conv"]
    got = [(k.input[2], k.output[2], k.kernel, k.stride, k.mid // k.input[2], k.input[0])
           for k in layers]
    assert got == MNASNET_B1_LAYERS
    assert not any(k.se for k in layers)
    # residual exactly on stride-1 equal-width layers of blocks without noskip
    assert [k.idskip for k in layers] == [0, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 0, 1, 1, 1, 0]
    assert space.encode(arch) == MNASNET_B1
    ops = space.ops(arch)
    assert str(ops[0].key) == "conv-input:224x224x3-output:112x112x32-kernel:3-stride:2-act:relu"
    assert ops[-2].key.input == (7, 7, 320) and ops[-1].key.output == (1000,)
    a1 = space.decode(MNASNET_A1)
    assert space.encode(a1) == MNASNET_A1
    assert sum(op.key.se or 0 for op in space.ops(a1)) == 3 + 2 + 3


def test_mnasnet_decode_names_the_bad_block() -> None:
    space = get_space("mnasnet")
    bad = list(MNASNET_B1)
    bad[3] = "r3_k5_s22_e6_i40_o88"  # 88 is outside [48, 80]
    with pytest.raises(SearchError, match="block 3 .*output filters 88"):
        space.decode(bad)


def test_proxyless_keys_agree_with_the_latency_layer_networks() -> None:
    space = get_space("proxyless")
    rng = random.Random(0)
    for arch in space.sample(20, seed=rng.randrange(1000)):
        net = proxyless_net(space.choice_names(arch))
        assert [op.key for op in space.ops(arch)] == mbnet_block_keys(net)
    assert {str(op.key) for op in space.ops(space.sample(1)[0])} <= {
        str(k) for k in space_keys(space)}


def test_fbnet_keys_are_hw_nas_bench_keys() -> None:
    space = get_space("fbnet")
    arch = space.decode(["k3_e1"] * 22)
    texts = [op.table_key for op in space.ops(arch)]
    assert texts[0] == "ConvNorm_H32_W32_Cin3_Cout16_kernel3_stride1_group1"
    assert texts[1] == "ConvBlock_H32_W32_Cin16_Cout16_exp1_kernel3_stride1_group1"
    assert texts[6] == "ConvBlock_H32_W32_Cin24_Cout32_exp1_kernel3_stride2_group1"
    assert texts[-3:] == ["ConvNorm_H4_W4_Cin352_Cout1504_kernel1_stride1_group1",
                          "AvgP_H4_W4_Cin1504_Cout1504_kernel4_stride1", "FC_Cin1504_Cout100"]
    skip = space.decode(["skip"] * 22)
    assert [op.table_key for op in space.ops(skip) if op.slot is not None] == [
        "Skip_H32_W32_Cin16_Cout24_stride1", "Skip_H32_W32_Cin24_Cout32_stride2",
        "Skip_H16_W16_Cin32_Cout64_stride2", "Skip_H8_W8_Cin64_Cout112_stride1",
        "Skip_H8_W8_Cin112_Cout184_stride2", "Skip_H4_W4_Cin184_Cout352_stride1"]
    # the HELP / HW-NAS-Bench data columns decode as op indices
    assert np.array_equal(space.decode(list(range(9)) * 2 + [8, 7, 6, 5]),
                          np.array(list(range(9)) * 2 + [8, 7, 6, 5]))


def test_nb201_arch_str_and_dead_nodes() -> None:
    space = get_space("nb201")
    text = "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"
    arch = space.decode(text)
    assert space.encode(arch) == text
    assert list(arch) == [3, 0, 4, 1, 0, 2]
    with pytest.raises(SearchError, match="arch_str"):
        space.decode("|conv~0|")
    dead = space.decode("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    keys = [op.key.op for op in space.ops(dead)]
    assert keys.count("clip") == 2 * 15  # nodes 1 and 2 have no input in all 15 cells


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_built_network_imports_into_the_graph_ir(name: str) -> None:
    import torch

    space = get_space(name)
    arch = space.sample(1, seed=7)[0]
    model = space.build(arch)
    x = torch.randn(space.example_input().shape, generator=torch.Generator().manual_seed(0))
    graph = load_model(model, x)
    assert graph.nodes
    out_shape = graph.shape(graph.outputs[0])
    assert out_shape == (1, space.classes)
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()


def test_ops_formats_keys_in_the_space_format() -> None:
    space = get_space("mnasnet")
    op = [o for o in space.ops(space.decode(MNASNET_B1)) if o.key.op == "expanded_conv"][1]
    assert op.table_key == format_key(op.key, "ofa")
    assert op.table_key.startswith("expanded_conv-input:112x112x16-output:56x56x24-expand:48-")


def test_proxyless_search_space_matches_design_b8() -> None:
    """DESIGN.md B8: widths 24,40,80,96,192,320 with 4,4,4,4,4,1 slots and first strides
    2,2,2,1,2,1; stem conv3x3 s2 -> 32, MBConv1 k3 -> 16; head 1x1 -> 1280, FC; candidates
    MBConv expand {3,6} x kernel {3,5,7} plus zero."""
    space = get_space("proxyless")
    assert space.n_slots == 21
    firsts = [0, 4, 8, 12, 16, 20]
    assert [space.layout[s][2:] for s in firsts] == [(24, 2), (40, 2), (80, 2), (96, 1),
                                                     (192, 2), (320, 1)]
    assert all(space.layout[s][3] == 1 for s in range(21) if s not in firsts)
    assert sorted(space.choices[0]) == sorted(
        [f"k{k}e{e}" for k in (3, 5, 7) for e in (3, 6)] + ["zero"])
    stem, first, head, fc = (str(k) for k in space.fixed_keys())
    assert stem == "Conv-input:224x224x3-output:112x112x32"
    assert first == ("expanded_conv-input:112x112x32-output:112x112x16-expand:1-kernel:3-"
                     "stride:1-idskip:0")
    assert head == "Conv_1-input:7x7x320-output:7x7x1280"
    assert fc == "Logits-input:7x7x1280-output:1000"
