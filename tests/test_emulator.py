"""Whole-model emulation: every device runs the demo, dumps validate, fp16 accumulation is exact,
and the codes of the integer engine stay inside each tensor's code range."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
from oracles.nonuniform_oracle import round_to_binary

import hwsim
from hwsim.emulate.emulator import Emulator, plan_steps
from hwsim.emulate.fp16_accumulate import fp16_gemm
from hwsim.emulate.job import emulate_job, validate_job
from hwsim.errors import NotSpecifiedError

N_DEMO = 96  # demo inputs per device in the default run


def _device_precisions() -> list[tuple[str, str]]:
    return [(name, p) for name in hwsim.list_devices()
            for p in hwsim.load_device(name).precisions]


@pytest.fixture(scope="module")
def demo_graph():
    job = emulate_job("snpe", limit=8)
    return job.emulator.graph


@pytest.mark.parametrize(("device", "precision"), _device_precisions())
def test_every_device_emulates_the_demo_and_reports_accuracy(device, precision):
    job = emulate_job(device, precision, limit=N_DEMO)
    rep = job.report
    assert rep.device == device and rep.precision == precision
    assert 0.0 <= rep.emulated_accuracy <= 1.0 and 0.0 <= rep.agreement <= 1.0
    assert rep.fp32_accuracy > 0.9  # the demo model itself
    emu = job.emulator
    for step in emu.steps_:
        codes = job.result.codes[step.name]
        qp = emu.qparams_[step.output].to_dict()
        if "qmin" in qp:  # integer codes stay in the tensor's declared code range
            assert codes.min() >= qp["qmin"] and codes.max() <= qp["qmax"], step.name
    assert len(rep.layers) == len(emu.steps_)


def test_high_precision_devices_keep_demo_accuracy():
    # 16-bit and fp16 numerics must not change a single prediction of the demo (a sanity
    # check that the engines compute the model, not a bit-exactness oracle)
    for device, precision in (("sigmastar", "int16"), ("ascend310", "fp16"),
                              ("tensorrt", "fp16")):
        rep = emulate_job(device, precision).report
        assert rep.agreement == 1.0, (device, precision)


def test_relu_is_fused_into_conv_linear_and_add(demo_graph):
    labels = [s.label for s in plan_steps(demo_graph)]
    assert "conv2d+relu" in labels and "add+relu" in labels
    assert "relu" not in labels


def test_nnie_int16_is_a_clear_not_specified_error():
    with pytest.raises(NotSpecifiedError, match="nnie.*int16"):
        emulate_job("nnie", "int16", limit=4)


def test_validate_passes_on_exact_dump_and_names_first_flipped_layer(tmp_path):
    out = tmp_path / "dump"
    emulate_job("snpe", limit=32, dump=out)
    assert validate_job("snpe", None, out).report.ok
    manifest = json.loads((out / "manifest.json").read_text())
    target = manifest["layers"][3]
    arr = np.load(out / target["file"])
    arr.flat[5] = arr.flat[5] ^ 1
    np.save(out / target["file"], arr)
    rep = validate_job("snpe", None, out).report
    assert not rep.ok
    assert rep.first_different == target["name"]
    bad = [c for c in rep.layers if c.status == "different"]
    assert [c.name for c in bad][0] == target["name"] and bad[0].n_different == 1
    assert bad[0].max_code_difference == 1


def test_validate_reads_raw_binary_dumps_with_sidecars(tmp_path):
    out = tmp_path / "dump"
    job = emulate_job("tensorrt", limit=16, dump=out)
    raw = tmp_path / "device"
    raw.mkdir()
    np.save(raw / "input.npy", np.load(out / "input.npy"))
    for step in job.emulator.steps_:
        codes = job.result.codes[step.name].astype(np.int8)
        codes.tofile(raw / f"{step.name}.bin")
        (raw / f"{step.name}.json").write_text(json.dumps(
            {"layer": step.name, "dtype": "int8", "shape": list(codes.shape)}))
    rep = validate_job("tensorrt", None, raw, calib=job.emulator_calib
                       if hasattr(job, "emulator_calib") else None).report
    assert rep.ok, rep.to_dict()


def test_validate_fixed_qparams_reproduce_a_dump_calibrated_elsewhere(tmp_path):
    # the dump's qparams (as a device toolchain would fix them) win over recalibration
    out = tmp_path / "dump"
    emulate_job("ascend310", "int8", limit=24, dump=out)
    job = validate_job("ascend310", None, out)
    assert job.qparams_source == "from the golden manifest"
    assert job.report.ok


# --------------------------------------------------------------------- fp16 accumulation

def _fp16_round_exact(v: Fraction, flush: bool) -> Fraction:
    """Independent oracle: exact rational v rounded to fp16 (RNE), IEEE or flush-before."""
    if v == 0:
        return Fraction(0)
    neg = v < 0
    a = -v if neg else v
    if flush and a < Fraction(1, 2 ** 14):
        return Fraction(0)
    r = round_to_binary(a, 11, -14)
    if r > 65504:
        raise OverflowError
    return -r if neg else r


@pytest.mark.parametrize("flush", [False, True])
def test_fp16_accumulation_matches_exact_sequential_oracle(flush):
    rng = np.random.default_rng(3 + flush)
    scale = 2.0 ** rng.integers(-16, 2, size=(6, 40))
    cols = (rng.standard_normal((6, 40)) * scale).astype(np.float16).astype(np.float32)
    w = (rng.standard_normal((3, 40)) * 0.3).astype(np.float16).astype(np.float32)
    b = (rng.standard_normal(3) * 0.01).astype(np.float16).astype(np.float32)
    got = fp16_gemm(cols, w, b, subnormals="flush" if flush else "keep",
                    tininess="before_rounding" if flush else None, overflow="inf",
                    nan="propagate")
    for p in range(cols.shape[0]):
        for o in range(w.shape[0]):
            acc = _fp16_round_exact(Fraction(float(b[o])), flush)
            for k in range(cols.shape[1]):
                prod = _fp16_round_exact(Fraction(float(cols[p, k])) * Fraction(float(w[o, k])),
                                         flush)
                acc = _fp16_round_exact(acc + prod, flush)
            assert Fraction(float(got[p, o])) == acc, (p, o)


def test_emulator_rejects_wrong_input_shape(demo_graph):
    emu = Emulator(demo_graph, hwsim.load_device("snpe"))
    with pytest.raises(hwsim.HwsimError, match=r"expected shape \(N, 1, 8, 8\)"):
        emu.calibrate(np.zeros((4, 3, 8, 8), np.float32))
