"""``hwsim devices`` / ``hwsim devices show NAME`` and the summary functions behind them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hwsim.cli.main import main
from hwsim.devices.registry import list_devices, load_device_spec
from hwsim.devices.spec import (
    Arithmetic,
    FloatNumerics,
    MinifloatNumerics,
    PowerOfTwoNumerics,
    UniformNumerics,
)
from hwsim.devices.summary import (
    arithmetic_summary,
    device_detail,
    device_row,
    device_rows,
    numerics_summary,
)

DEVICES_DIR = Path(__file__).resolve().parents[1] / "devices"


def test_devices_table_lists_every_device_and_precision(capsys: pytest.CaptureFixture) -> None:
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "TITLE", "LIBRARY", "PRECISIONS", "SCHEME"]
    names = [line.split()[0] for line in lines[1:] if not line.startswith(" ")]
    assert names == list_devices()
    assert "int16: not publicly specified" in out  # NNIE 16-bit
    assert "int8: W/A uint8 asym per-tensor rhaz snpe_tf" in out
    assert "int8: W int8 sym per-tensor rhaz narrow pow2_lsq(5); A int8 sym per-tensor rhu " \
           "narrow pow2_lsq(5)" in out
    assert "fp16: W/A fp16 ftz(before_rounding) overflow=inf nan=propagate" in out
    # one line per precision: nart-arm has seven
    assert sum(1 for line in lines if ": W/A uint" in line and "asym per-tensor rne" in line) == 7


def test_devices_show_prints_numerics_sources_assumptions(capsys: pytest.CaptureFixture) -> None:
    assert main(["devices", "show", "nnie"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("nnie: HiSilicon")
    for text in ("precision int8", "weight: log8 base 2^(1/16) sign-magnitude rne",
                 "calibration: {method: ema_minmax, ema_decay: 0.9}",
                 "arithmetic: float, fp32 accumulation",
                 "precision int16: not publicly specified", "\nsources\n", "\nassumptions\n",
                 "\ncorrections\n  (none)", "mqbench/fake_quantize/nnie.py", "\nperformance\n",
                 "| 3559/3519/3516 | Hisilicon | NNIE | 8/16 | Log |"):
        assert text in out, text


def test_devices_show_prints_corrections(capsys: pytest.CaptureFixture) -> None:
    assert main(["devices", "show", "ascend310"]) == 0
    out = capsys.readouterr().out
    corrections = out.split("\ncorrections\n")[1].split("\nperformance\n")[0]
    assert "saturation mode" in corrections and "symmetric" in corrections
    assert "matmul_granularity: per_tensor" in out
    assert "peak MAC/s: {int8: 8000000000000.0, fp16: 4000000000000.0}" in out


def test_devices_show_accepts_a_yaml_path(capsys: pytest.CaptureFixture,
                                          tmp_path: Path) -> None:
    data = yaml.safe_load((DEVICES_DIR / "snpe.yaml").read_text())
    path = tmp_path / "snpe.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["devices", "show", str(path)]) == 0
    assert "scale_rule: snpe_tf" in capsys.readouterr().out


def test_unknown_device_exits_1_with_a_clear_message(capsys: pytest.CaptureFixture) -> None:
    assert main(["devices", "show", "tpu9"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "hwsim: error: unknown device 'tpu9'" in captured.err
    assert "'nnie'" in captured.err and "Traceback" not in captured.err


def test_invalid_spec_exits_1_naming_file_and_field(capsys: pytest.CaptureFixture,
                                                    tmp_path: Path) -> None:
    data = yaml.safe_load((DEVICES_DIR / "tensorrt.yaml").read_text())
    del data["precisions"]["int8"]["weight"]["axis"]
    path = tmp_path / "tensorrt.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["devices", "show", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "field 'precisions.int8.weight'" in err and "axis" in err


def test_devices_table_fails_cleanly_on_a_broken_spec_in_the_search_path(
        capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken.yaml").write_text("name: broken\ntitle: x\n")
    monkeypatch.setenv("HWSIM_DEVICES_PATH", str(tmp_path))
    assert main(["devices"]) == 1
    err = capsys.readouterr().err
    assert "broken.yaml" in err and "field 'precisions'" in err


# --- summary library ------------------------------------------------------------------------


def test_device_rows_follow_the_spec_order() -> None:
    rows = device_rows(["nart-arm", "tensorrt"])
    assert [r.name for r in rows] == ["nart-arm", "tensorrt"]
    assert rows[0].precisions == ("int8", "int7", "int6", "int5", "int4", "int3", "int2")
    assert [p for p, _ in rows[1].schemes] == ["int8", "fp16"]
    assert device_row(load_device_spec("vitis")).library == "Vitis-AI"


@pytest.mark.parametrize(("numerics", "expected"), [
    (UniformNumerics(bits=4, signed=True, symmetric=True, granularity="per_channel", axis=1,
                     narrow_range=True), "int4 sym per-channel(axis 1) rne narrow"),
    (UniformNumerics(bits=8, signed=False, symmetric=False, rounding="rhu"),
     "uint8 asym per-tensor rhu"),
    (UniformNumerics(bits=32, signed=True, symmetric=True, scale_rule="derived"),
     "int32 sym per-tensor rne derived"),
    (UniformNumerics(bits=8, signed=True, symmetric=True, scale_type="power_of_two",
                     scale_rule="derived"), "int8 sym per-tensor rne derived"),
    (MinifloatNumerics(bits=8, exp_bits=4), "minifloat8 e=4 rne"),
    (MinifloatNumerics(bits=8), "minifloat8 e=auto rne"),
    (PowerOfTwoNumerics(bits=4), "pow2 weights 2^[-8,-1] rne"),
    (FloatNumerics(bits=16, subnormals="flush", tininess="after_rounding", overflow="saturate",
                   nan="zero"), "fp16 ftz(after_rounding) overflow=saturate nan=zero"),
    (FloatNumerics(bits=32, format="fp32"), "fp32"),
])
def test_numerics_summary_names_every_choice(numerics: object, expected: str) -> None:
    assert numerics_summary(numerics) == expected


def test_numerics_summary_rejects_non_numerics() -> None:
    with pytest.raises(TypeError, match="not a numerics record: dict"):
        numerics_summary({"kind": "uniform"})


def test_arithmetic_summary() -> None:
    assert arithmetic_summary(Arithmetic(requant="shift", shift_rounding="rhu")) == \
        "acc32 wrap, requant shift (rhu)"
    assert arithmetic_summary(Arithmetic(requant="float", float_accumulation="fp16")) == \
        "float, fp16 accumulation"
    assert arithmetic_summary(Arithmetic(requant="fp32_multiply", accumulator_bits=16,
                                         accumulator_overflow="saturate",
                                         int16_pair_saturation=True)) == \
        "acc16 saturate, requant fp32_multiply, int16 pair saturation"


def test_device_detail_covers_every_precision_and_role() -> None:
    spec = load_device_spec("cvflow")
    sections = dict(device_detail(spec))
    for pname in spec.precisions:
        lines = sections[f"precision {pname}"]
        for role in ("weight", "activation", "bias", "arithmetic"):
            assert any(line.startswith(f"  {role}: ") for line in lines), (pname, role)
    assert sections["sources"] and sections["assumptions"]
