"""Op keys: canonical form and the published ProxylessNAS / OFA / HW-NAS-Bench FBNet formats."""

from __future__ import annotations

import pytest

from hwsim.errors import LatencyError
from hwsim.latency.op_key import OpKey, format_key, parse_key

# Keys as they appear in the published LUTs (ProxylessNAS pixel_trim.yaml, OFA
# MBv3LatencyTable.query, HW-NAS-Bench fbnet lookup tables).
PROXYLESS_KEYS = [
    "Conv-input:224x224x3-output:112x112x32",
    "Conv_1-input:7x7x320-output:7x7x1280",
    "Logits-input:7x7x1280-output:1000",
    "expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:3-stride:2-idskip:0",
    "expanded_conv-input:14x14x80-output:14x14x80-expand:6-kernel:7-stride:1-idskip:1",
]
OFA_KEYS = [
    "Conv-input:224x224x3-output:112x112x16",
    "AvgPool2D-input:7x7x960-output:1x1x960",
    "Conv_2-input:1x1x960-output:1x1x1280",
    "Logits-input:1x1x1280-output:1000",
    "expanded_conv-input:56x56x24-output:56x56x24-expand:72-kernel:3-stride:1-idskip:1-se:0-hs:0",
    "expanded_conv-input:28x28x40-output:14x14x80-expand:240-kernel:5-stride:2-idskip:0-se:1-hs:1",
]
FBNET_KEYS = [
    "ConvBlock_H32_W32_Cin16_Cout24_exp3_kernel5_stride2_group1",
    "ConvBlock_H8_W8_Cin112_Cout112_exp1_kernel3_stride1_group2",
    "Skip_H16_W16_Cin24_Cout32_stride2",
    "ConvNorm_H32_W32_Cin3_Cout16_kernel3_stride1_group1",
    "ConvNorm_H4_W4_Cin352_Cout1504_kernel1_stride1_group1",
    "AvgP_H4_W4_Cin1504_Cout1504_kernel4_stride1",
    "FC_Cin1504_Cout100",
]


@pytest.mark.parametrize("fmt,keys", [("proxyless", PROXYLESS_KEYS), ("ofa", OFA_KEYS),
                                      ("fbnet", FBNET_KEYS)])
def test_published_keys_round_trip_and_canonical_round_trip(fmt, keys):
    for text in keys:
        key = parse_key(text, fmt)
        assert format_key(key, fmt) == text
        assert OpKey.parse(str(key)) == key
        assert parse_key(str(key)) == key


def test_proxyless_key_fields():
    key = parse_key(PROXYLESS_KEYS[3], "proxyless")
    assert (key.op, key.input, key.output) == ("expanded_conv", (112, 112, 16), (56, 56, 24))
    assert (key.expand, key.kernel, key.stride, key.idskip) == (3, 3, 2, 0)
    assert key.mid is None and key.act is None
    assert parse_key(PROXYLESS_KEYS[2], "proxyless").output == (1000,)


def test_ofa_expand_is_mid_channels_and_hs_is_hswish():
    key = parse_key(OFA_KEYS[5], "ofa")
    assert key.mid == 240 and key.expand is None
    assert key.se == 1 and key.act == "hswish"
    assert parse_key(OFA_KEYS[4], "ofa").act == "relu"


def test_fbnet_output_size_is_derived_from_stride():
    key = parse_key(FBNET_KEYS[0], "fbnet")
    assert key.output == (16, 16, 24) and key.groups == 1 and key.expand == 3
    assert parse_key(FBNET_KEYS[5], "fbnet").output == (1, 1, 1504)


def test_canonical_key_omits_absent_fields_in_fixed_order():
    key = OpKey("conv", (56, 56, 24), (56, 56, 144), kernel=1, stride=1, act="relu6")
    assert str(key) == "conv-input:56x56x24-output:56x56x144-kernel:1-stride:1-act:relu6"


@pytest.mark.parametrize("text", [
    "conv-input:56x56x24-output:56x56x144-stride:1-kernel:1",  # field order
    "conv-input:56x56x24-output:56x56x144-kernel:01",           # leading zero
    "conv-input:56x56x24-output:56x56x144-colour:1",            # unknown field
    "conv-input:56x56-output:56x56x144",                        # 2-D shape
    "conv-input:0x56x24-output:56x56x144",                      # zero size
    "conv-input:56x56x24-output:56x56x144-idskip:2",            # flag not 0/1
    "conv-output:56x56x144-input:56x56x24",
])
def test_non_canonical_or_malformed_keys_are_rejected(text):
    with pytest.raises(LatencyError):
        OpKey.parse(text)


@pytest.mark.parametrize("fmt,text", [
    ("proxyless", "expanded_conv-input:112x112x16-output:56x56x24-kernel:3-expand:3-stride:2-"
                  "idskip:0"),
    ("proxyless", "MBConv-input:112x112x16-output:56x56x24"),
    ("proxyless", "Conv-input:224x224x3-output:112x112x32-kernel:3"),
    ("ofa", "expanded_conv-input:56x56x24-output:56x56x24-expand:72-kernel:3-stride:1-idskip:1"),
    ("ofa", "expanded_conv-input:56x56x24-output:56x56x24-expand:72-kernel:3-stride:1-idskip:1"
            "-se:0-hs:2"),
    ("fbnet", "ConvBlock_H32_W32_Cin16_Cout24_exp3_kernel5_stride2"),
    ("fbnet", "Pool_H32_W32_Cin16_Cout24_stride2"),
])
def test_published_format_errors(fmt, text):
    with pytest.raises(LatencyError):
        parse_key(text, fmt)


def test_format_refuses_keys_the_format_cannot_express():
    conv = OpKey("conv", (56, 56, 24), (56, 56, 24), kernel=3, stride=1)
    for fmt in ("proxyless", "ofa", "fbnet"):
        with pytest.raises(LatencyError):
            format_key(conv, fmt)
    ofa_block = parse_key(OFA_KEYS[4], "ofa")
    with pytest.raises(LatencyError):
        format_key(ofa_block, "proxyless")
