"""Device specs in devices/: every file validates, matches the seed hardware table, carries its
provenance, and the schema rejects malformed or impossible specs naming the file and field."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import hwsim
from hwsim.devices.registry import list_devices, load_device_spec
from hwsim.devices.spec import DeviceSpec, load_spec
from hwsim.errors import NotSpecifiedError, SpecError, UnknownDeviceError

DEVICES_DIR = Path(__file__).resolve().parents[1] / "devices"
DEVICE_FILES = sorted(DEVICES_DIR.glob("*.yaml"))

# The seed lecture's "Hardware Quantization Scheme" table (15 rows, 12 devices; names as in
# DESIGN.md B1): the precisions each device must have.
SEED_TABLE_PRECISIONS = {
    "tensorrt": {"int8", "fp16"},
    "nart-gpu": {"int4", "int8"},
    "nnie": {"int8", "int16"},
    "ceva": {"int8", "int16"},
    "snpe": {"int8"},
    "adreno": {"fp16"},
    "nart-arm": {f"int{b}" for b in range(2, 9)},
    "wuqi": {"int8", "int16"},
    "sigmastar": {"int8", "int16"},
    "ascend310": {"int8", "fp16"},
    "cvflow": {"int8", "int16", "fp16"},
    "vitis": {"int8"},
}
# Bit-flexible accelerators modeled for the HAQ search (issue 7), beside the seed table's devices.
HAQ_MODEL_PRECISIONS = {name: {f"int{b}" for b in range(2, 9)} for name in ("bitfusion", "bismo")}
ALL_DEVICE_PRECISIONS = {**SEED_TABLE_PRECISIONS, **HAQ_MODEL_PRECISIONS}


def _bitwidth_cell_precisions(cell: str) -> set[str]:
    """Precisions named by one Bit-width cell of the seed table: '8', '4/8', '2-8', 'FP16',
    'Int8'."""
    cell = cell.strip().lower()
    if cell == "fp16":
        return {"fp16"}
    cell = cell.removeprefix("int")
    if re.fullmatch(r"\d+-\d+", cell):
        lo, hi = (int(v) for v in cell.split("-"))
        return {f"int{b}" for b in range(lo, hi + 1)}
    return {f"int{int(b)}" for b in cell.split("/")}


def _table_row_precisions(table_row: str) -> set[str]:
    out: set[str] = set()
    for line in table_row.strip().splitlines():
        cells = line.strip().strip("|").split("|")
        out |= _bitwidth_cell_precisions(cells[3])  # Hardware | Company | Library | Bit-width
    return out


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# --- every shipped spec ---------------------------------------------------------------------


def test_devices_dir_holds_exactly_the_seed_table_devices() -> None:
    assert {p.stem for p in DEVICE_FILES} == set(ALL_DEVICE_PRECISIONS)
    assert set(list_devices()) >= set(ALL_DEVICE_PRECISIONS)


@pytest.mark.parametrize("path", DEVICE_FILES, ids=lambda p: p.stem)
def test_every_device_yaml_loads_and_validates(path: Path) -> None:
    spec = load_spec(path)
    assert isinstance(spec, DeviceSpec)
    assert spec.name == path.stem
    assert load_device_spec(spec.name) == spec  # the registry finds the same file


@pytest.mark.parametrize("path", DEVICE_FILES, ids=lambda p: p.stem)
def test_precisions_match_the_seed_table_bit_widths(path: Path) -> None:
    spec = load_spec(path)
    expected = ALL_DEVICE_PRECISIONS[spec.name]
    assert set(spec.precisions) == expected
    assert _table_row_precisions(spec.table_row) == expected  # the verbatim rows agree
    assert {f"int{b}" if isinstance(b, int) else b for b in spec.bits} == expected


@pytest.mark.parametrize("path", DEVICE_FILES, ids=lambda p: p.stem)
def test_every_device_yaml_states_its_provenance(path: Path) -> None:
    spec = load_spec(path)
    assert spec.sources and all(s.strip() for s in spec.sources)
    assert all(a.strip() for a in spec.assumptions + spec.corrections)
    perf = spec.performance
    assert perf is not None, "every device needs a performance section (figures or why not)"
    assert perf.assumptions, "performance figures need their assumptions stated"
    if perf.peak_macs_per_s:
        assert set(perf.peak_macs_per_s) <= set(spec.precisions)
        assert perf.sources or perf.assumptions


@pytest.mark.parametrize("path", DEVICE_FILES, ids=lambda p: p.stem)
def test_table_row_is_verbatim_from_the_seed_table(path: Path) -> None:
    for line in load_spec(path).table_row.strip().splitlines():
        assert line.startswith("| ") and line.endswith(" |") and line.count("|") == 6


def test_nnie_int16_raises_not_specified_naming_device_and_precision() -> None:
    spec = load_device_spec("nnie")
    assert spec.specified_precisions == ["int8"]
    with pytest.raises(NotSpecifiedError, match=r"device 'nnie' precision 'int16'"):
        spec.precision("int16")
    with pytest.raises(NotSpecifiedError, match=r"'nnie'.*'int16'"):
        hwsim.load_device("nnie").quantizer("weight", precision="int16")


def test_unknown_precision_and_device_are_spec_errors() -> None:
    with pytest.raises(SpecError, match=r"no precision 'int4'.*allowed: \['int8', 'fp16'\]"):
        load_device_spec("tensorrt").precision("int4")
    with pytest.raises(UnknownDeviceError, match=r"unknown device 'tpu9'.*known devices"):
        load_device_spec("tpu9")


# --- facts of DESIGN.md B1-B5 that the specs must carry ---------------------------------------


def test_ascend310_follows_ppq_and_cann_not_the_table() -> None:
    spec = load_device_spec("ascend310")
    w, a = spec.precision("int8").weight, spec.precision("int8").activation
    assert (w.symmetric, w.granularity.value, w.axis, w.matmul_granularity.value) == (
        True, "per_channel", 0, "per_tensor")
    assert (a.symmetric, a.granularity.value) == (False, "per_tensor")
    assert w.rounding.value == a.rounding.value == "rhaz"
    fp16 = spec.precision("fp16").activation
    assert (fp16.overflow, fp16.nan) == ("saturate", "zero")
    assert len(spec.corrections) >= 2


def test_vitis_is_power_of_two_symmetric_with_rhaz_weights_and_rhu_activations() -> None:
    spec = load_device_spec("vitis")
    prec = spec.precision("int8")
    for num in (prec.weight, prec.activation, prec.bias):
        assert (num.symmetric, num.signed, num.narrow_range, num.granularity.value) == (
            True, True, True, "per_tensor")
        assert (num.scale_type, num.scale_rule, num.pow2_search_steps) == (
            "power_of_two", "pow2_lsq", 5)
    assert prec.weight.rounding.value == prec.bias.rounding.value == "rhaz"
    assert prec.activation.rounding.value == "rhu"
    assert spec.corrections


def test_snpe_uses_tf_nudging_with_rhaz() -> None:
    a = load_device_spec("snpe").precision("int8").activation
    assert (a.signed, a.symmetric, a.scale_rule, a.min_range) == (False, False, "snpe_tf", 0.01)
    assert (a.zero_point_add, a.rounding.value, a.zero_point_rounding.value) == (
        "before_rounding", "rhaz", "rhaz")


def test_adreno_fp16_flushes_subnormals_with_a_stated_tininess() -> None:
    spec = load_device_spec("adreno")
    num = spec.precision("fp16").activation
    assert (num.subnormals, num.overflow, num.nan) == ("flush", "inf", "propagate")
    assert num.tininess in ("before_rounding", "after_rounding")
    assert any("tininess" in a.lower() for a in spec.assumptions)


def test_nnie_int8_is_log_with_mqbench_calibration() -> None:
    prec = load_device_spec("nnie").precision("int8")
    assert prec.weight.kind == prec.activation.kind == "log"
    assert prec.weight.calibration.method.value == "absmax"
    assert (prec.activation.calibration.method.value, prec.activation.calibration.ema_decay) == (
        "ema_minmax", 0.9)


@pytest.mark.parametrize("name", ["wuqi", "cvflow"])
def test_ristretto_devices_use_dynamic_fixed_point_and_shift_requant(name: str) -> None:
    spec = load_device_spec(name)
    for pname in ("int8", "int16"):
        prec = spec.precision(pname)
        assert (prec.weight.il_rule, prec.activation.il_rule, prec.bias.il_rule) == (
            "weight", "activation", "weight")
        assert prec.arithmetic.requant == "shift"


def test_yaml_merge_keys_give_independent_precisions() -> None:
    spec = load_device_spec("nart-arm")
    for b in range(2, 9):
        prec = spec.precision(f"int{b}")
        assert prec.weight.bits == prec.activation.bits == b
        assert prec.bias.bits == 32


# --- schema rejection: message names the file and the field ----------------------------------


@pytest.fixture()
def tensorrt_data() -> dict[str, Any]:
    return _load(DEVICES_DIR / "tensorrt.yaml")


def _write(tmp_path: Path, data: dict[str, Any] | str, name: str = "tensorrt") -> Path:
    path = tmp_path / f"{name}.yaml"
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def _reject(tmp_path: Path, data: dict[str, Any], field: str, *fragments: str) -> str:
    path = _write(tmp_path, data)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    msg = str(info.value)
    assert str(path) in msg
    assert f"field '{field}'" in msg, msg
    for fragment in fragments:
        assert fragment in msg, msg
    return msg


def _int8(data: dict[str, Any], role: str) -> dict[str, Any]:
    return data["precisions"]["int8"][role]


def test_rejects_unknown_key_in_numerics(tmp_path: Path, tensorrt_data: dict) -> None:
    _int8(tensorrt_data, "weight")["rounding_mode"] = "rne"
    _reject(tmp_path, tensorrt_data, "precisions.int8.weight.rounding_mode", "unknown key")


def test_rejects_unknown_top_level_key(tmp_path: Path, tensorrt_data: dict) -> None:
    tensorrt_data["latency"] = {}
    _reject(tmp_path, tensorrt_data, "latency", "unknown key")


def test_rejects_wrong_type(tmp_path: Path, tensorrt_data: dict) -> None:
    _int8(tensorrt_data, "weight")["bits"] = "eight"
    _reject(tmp_path, tensorrt_data, "precisions.int8.weight.bits", "integer")


def test_rejects_unknown_enum_value_listing_allowed(tmp_path: Path, tensorrt_data: dict) -> None:
    _int8(tensorrt_data, "activation")["rounding"] = "nearest"
    _reject(tmp_path, tensorrt_data, "precisions.int8.activation.rounding", "'rne'", "'nearest'")


def test_rejects_unknown_numerics_kind(tmp_path: Path, tensorrt_data: dict) -> None:
    _int8(tensorrt_data, "weight")["kind"] = "ternary"
    _reject(tmp_path, tensorrt_data, "precisions.int8.weight", "ternary", "'uniform'")


def test_rejects_log_with_per_channel(tmp_path: Path, tensorrt_data: dict) -> None:
    _int8(tensorrt_data, "weight").clear()
    _int8(tensorrt_data, "weight").update(kind="log", bits=8, granularity="per_channel")
    _int8(tensorrt_data, "activation").clear()
    _int8(tensorrt_data, "activation").update(kind="log", bits=8)
    tensorrt_data["precisions"]["int8"]["arithmetic"] = {"requant": "float",
                                                         "float_accumulation": "fp32"}
    _reject(tmp_path, tensorrt_data, "precisions.int8.weight", "per_tensor")


def test_rejects_bits_outside_the_device_list(tmp_path: Path, tensorrt_data: dict) -> None:
    tensorrt_data["precisions"]["int4"] = copy.deepcopy(tensorrt_data["precisions"]["int8"])
    for role in ("weight", "activation"):
        tensorrt_data["precisions"]["int4"][role]["bits"] = 4
    _reject(tmp_path, tensorrt_data, "precisions.int4", "allowed: ['int8', 'fp16']")


def test_rejects_listed_bits_without_a_precision(tmp_path: Path, tensorrt_data: dict) -> None:
    tensorrt_data["bits"] = [8, 16, "fp16"]
    _reject(tmp_path, tensorrt_data, "bits", "int16", "unspecified")


def test_rejects_precision_name_not_matching_its_bits(tmp_path: Path,
                                                      tensorrt_data: dict) -> None:
    _int8(tensorrt_data, "weight")["bits"] = 4
    _int8(tensorrt_data, "activation")["bits"] = 4
    _reject(tmp_path, tensorrt_data, "precisions.int8", "must be 8")


def test_rejects_per_channel_without_axis(tmp_path: Path, tensorrt_data: dict) -> None:
    del _int8(tensorrt_data, "weight")["axis"]
    _reject(tmp_path, tensorrt_data, "precisions.int8.weight", "needs 'axis'")


def test_rejects_stochastic_rounding_without_seed(tmp_path: Path, tensorrt_data: dict) -> None:
    _int8(tensorrt_data, "activation")["rounding"] = "stochastic"
    _reject(tmp_path, tensorrt_data, "precisions.int8.activation", "'seed'")


def test_rejects_fp16_flush_without_tininess(tmp_path: Path, tensorrt_data: dict) -> None:
    tensorrt_data["precisions"]["fp16"]["activation"] = {
        "kind": "float", "bits": 16, "format": "fp16", "subnormals": "flush"}
    _reject(tmp_path, tensorrt_data, "precisions.fp16.activation", "tininess")


def test_rejects_tininess_with_subnormals_kept(tmp_path: Path, tensorrt_data: dict) -> None:
    tensorrt_data["precisions"]["fp16"]["weight"] = {
        "kind": "float", "bits": 16, "subnormals": "keep", "tininess": "after_rounding"}
    _reject(tmp_path, tensorrt_data, "precisions.fp16.weight", "tininess")


def test_rejects_shift_requant_with_float_scales(tmp_path: Path, tensorrt_data: dict) -> None:
    tensorrt_data["precisions"]["int8"]["arithmetic"] = {"requant": "shift",
                                                         "shift_rounding": "rhaz"}
    _reject(tmp_path, tensorrt_data, "precisions.int8", "power-of-two scales")


def test_rejects_integer_requant_of_log_codes(tmp_path: Path) -> None:
    data = _load(DEVICES_DIR / "nnie.yaml")
    data["precisions"]["int8"]["arithmetic"] = {"requant": "fp32_multiply"}
    path = _write(tmp_path, data, "nnie")
    with pytest.raises(SpecError, match=r"nnie\.yaml(.|\n)*field 'precisions\.int8'(.|\n)*log"):
        load_spec(path)


def test_rejects_float_accumulation_with_integer_requant(tmp_path: Path,
                                                         tensorrt_data: dict) -> None:
    tensorrt_data["precisions"]["int8"]["arithmetic"]["float_accumulation"] = "fp32"
    _reject(tmp_path, tensorrt_data, "precisions.int8.arithmetic", "float_accumulation")


def test_rejects_pair_saturation_without_uint8_activations(tmp_path: Path,
                                                           tensorrt_data: dict) -> None:
    tensorrt_data["precisions"]["int8"]["arithmetic"]["int16_pair_saturation"] = True
    _reject(tmp_path, tensorrt_data, "precisions.int8", "uint8 activations")


def test_rejects_narrow_range_on_unsigned_codes(tmp_path: Path) -> None:
    data = _load(DEVICES_DIR / "snpe.yaml")
    data["precisions"]["int8"]["activation"]["narrow_range"] = True
    path = _write(tmp_path, data, "snpe")
    with pytest.raises(SpecError, match=r"field 'precisions\.int8\.activation'.*signed"):
        load_spec(path)


def test_rejects_matmul_granularity_repeating_granularity(tmp_path: Path,
                                                          tensorrt_data: dict) -> None:
    _int8(tensorrt_data, "weight")["matmul_granularity"] = "per_channel"
    _reject(tmp_path, tensorrt_data, "precisions.int8.weight", "matmul_granularity")


def test_rejects_fp32_format_with_conversion_options(tmp_path: Path, tensorrt_data: dict) -> None:
    tensorrt_data["precisions"]["fp16"]["bias"] = {"kind": "float", "bits": 32, "format": "fp32",
                                                   "overflow": "saturate"}
    _reject(tmp_path, tensorrt_data, "precisions.fp16.bias", "fp32")


def test_rejects_unspecified_default_precision(tmp_path: Path) -> None:
    data = _load(DEVICES_DIR / "nnie.yaml")
    data["default_precision"] = "int16"
    path = _write(tmp_path, data, "nnie")
    with pytest.raises(SpecError, match=r"field 'default_precision'.*\['int8'\]"):
        load_spec(path)


def test_rejects_too_short_unspecified_reason(tmp_path: Path) -> None:
    data = _load(DEVICES_DIR / "nnie.yaml")
    data["precisions"]["int16"] = {"unspecified": "n/a"}
    path = _write(tmp_path, data, "nnie")
    with pytest.raises(SpecError, match=r"field 'precisions\.int16\.unspecified'"):
        load_spec(path)


def test_rejects_name_different_from_file_name(tmp_path: Path, tensorrt_data: dict) -> None:
    path = _write(tmp_path, tensorrt_data, "gpu")
    with pytest.raises(SpecError, match=r"gpu\.yaml: field 'name' is 'tensorrt'"):
        load_spec(path)


def test_rejects_invalid_yaml_and_non_mapping(tmp_path: Path) -> None:
    bad = _write(tmp_path, "name: [unclosed\n", "bad")
    with pytest.raises(SpecError, match=r"bad\.yaml: not valid YAML"):
        load_spec(bad)
    scalar = _write(tmp_path, "just text\n", "scalar")
    with pytest.raises(SpecError, match=r"scalar\.yaml: a device spec must be a mapping"):
        load_spec(scalar)


def test_rejects_16_bit_log_as_not_specified(tmp_path: Path) -> None:
    data = _load(DEVICES_DIR / "nnie.yaml")
    data["precisions"]["int16"] = copy.deepcopy(data["precisions"]["int8"])
    for role in ("weight", "activation"):
        data["precisions"]["int16"][role]["bits"] = 16
    path = _write(tmp_path, data, "nnie")
    with pytest.raises(NotSpecifiedError, match=r"nnie\.yaml: .*only for 8 bits"):
        load_spec(path)


def test_float32_bias_is_never_handed_to_the_fp16_quantizer() -> None:
    bias = load_device_spec("nnie").precision("int8").bias
    assert (bias.kind, bias.format, bias.bits) == ("float", "fp32", 32)
    qz = hwsim.load_device("nnie").quantizer("bias", precision="int8")
    b = np.array([1.0 + 2.0 ** -20, 70000.0, 3e-8, -0.0, np.inf], dtype=np.float32)
    qp = qz.calibrate(b)
    out = qz.fake_quant(b, qp)
    # fp16 would round all but the last two; the device keeps float32 exactly
    assert out.dtype == np.float32
    assert np.array_equal(out.view(np.uint32), b.view(np.uint32))
