"""Device specs: the validated form of ``devices/<name>.yaml``.

A spec says, for every precision a device supports, how weights, activations and biases are
represented (``TensorNumerics``) and how the integer/float arithmetic of a layer is carried out
(``Arithmetic``). Everything device-specific is data here; code never branches on device names.

Validation is strict: unknown keys, wrong types and impossible combinations are rejected with a
message naming the file, the field and what is allowed (see ``load_spec``).
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from hwsim.errors import NotSpecifiedError, SpecError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Rounding(str, Enum):
    """Rounding of a real value to an integer.

    rne: half to even (IEEE default, ``np.rint``); rhaz: half away from zero (C ``round``);
    rhu: half up, ``floor(x + 0.5)``; stochastic: ``floor(x + U[0,1))`` with a seeded generator.
    """

    RNE = "rne"
    RHAZ = "rhaz"
    RHU = "rhu"
    STOCHASTIC = "stochastic"


class Granularity(str, Enum):
    PER_TENSOR = "per_tensor"
    PER_CHANNEL = "per_channel"


class CalibrationMethod(str, Enum):
    """How the range of a tensor is estimated from calibration data.

    minmax: running min/max over all batches; ema_minmax: exponential moving average of per-batch
    min/max (``ema_decay``); percentile: the ``percentile``-th percentile of |x| (or of each tail
    for asymmetric); mse: the clip minimising quantization mean squared error; kl: the clip
    minimising KL divergence of the histogram (TensorRT entropy calibration); absmax: max |x|;
    haq_kl: HAQ's threshold search (J-divergence of the CDF of |x| against its 2^(bits-1)-level
    interpolation; ``hwsim.quant.calibration``).
    """

    MINMAX = "minmax"
    EMA_MINMAX = "ema_minmax"
    PERCENTILE = "percentile"
    MSE = "mse"
    KL = "kl"
    ABSMAX = "absmax"
    HAQ_KL = "haq_kl"


class Calibration(_Strict):
    method: CalibrationMethod = CalibrationMethod.MINMAX
    percentile: float | None = Field(default=None, gt=50.0, le=100.0)
    ema_decay: float | None = Field(default=None, gt=0.0, lt=1.0)
    bins: int | None = Field(default=None, ge=128, le=1 << 16)

    @model_validator(mode="after")
    def _params_match_method(self) -> Calibration:
        if self.method is CalibrationMethod.PERCENTILE and self.percentile is None:
            raise ValueError("calibration method 'percentile' needs 'percentile' (e.g. 99.99)")
        if self.method is not CalibrationMethod.PERCENTILE and self.percentile is not None:
            raise ValueError("'percentile' is only allowed with calibration method 'percentile'")
        if self.method is CalibrationMethod.EMA_MINMAX and self.ema_decay is None:
            raise ValueError("calibration method 'ema_minmax' needs 'ema_decay' (e.g. 0.9)")
        if self.method is not CalibrationMethod.EMA_MINMAX and self.ema_decay is not None:
            raise ValueError("'ema_decay' is only allowed with calibration method 'ema_minmax'")
        if self.bins is not None and self.method not in (CalibrationMethod.KL,
                                                          CalibrationMethod.MSE):
            raise ValueError("'bins' is only allowed with calibration methods 'kl' and 'mse'")
        return self


class _NumericsBase(_Strict):
    bits: int = Field(ge=1, le=48)
    rounding: Rounding = Rounding.RNE
    seed: int | None = Field(default=None, description="seed of stochastic rounding")
    calibration: Calibration = Calibration()
    note: str | None = None

    @model_validator(mode="after")
    def _seed_iff_stochastic(self) -> _NumericsBase:
        if self.rounding is Rounding.STOCHASTIC and self.seed is None:
            raise ValueError("rounding 'stochastic' needs an integer 'seed' (reproducibility)")
        if self.rounding is not Rounding.STOCHASTIC and self.seed is not None:
            raise ValueError("'seed' is only allowed with rounding 'stochastic'")
        return self


class UniformNumerics(_NumericsBase):
    """Uniform affine integer codes: ``q = clamp(round(x / s) + zp, qmin, qmax)``.

    scale_rule:
      standard: symmetric s = amax / qmax_pos; asymmetric s = (max - min) / (qmax - qmin) with the
        range widened to contain 0 and zp = qmin - round(min / s) (``zero_point_rounding``).
      snpe_tf: SNPE/AIMET "tf" nudging (min range ``min_range``, zero point RHAZ, range shifted so
        0 is exact, inputs clamped to the nudged range; DESIGN.md B3).
      pow2_lsq: Vitis AI: scale 2^-fp, fp searched in floor(log2(1/s0)) .. +4 by least squared
        error of the quantized tensor (``pow2_search_steps``).
      derived: the scale is given by the layer (bias: s_in * s_w), zero point 0.
    scaling: divide (x / s, ONNX Runtime) or reciprocal_multiply (x * (1 / s), PyTorch fbgemm).
    zero_point_add: after_rounding (round(x/s) + zp; ORT, torch fake_quantize), before_rounding
      (round(fl32(x/s) + zp); SNPE/AIMET, torch quantize_per_channel) or fused_before_rounding
      (round(fl32(x * (1/s) + zp)) rounded once; torch quantize_per_tensor's fused multiply-add).
    matmul_granularity: granularity of fully-connected / MatMul weights when it differs from
      ``granularity`` (Ascend AMCT: per-channel conv weights, per-tensor MatMul weights).
    narrow_range: signed codes only, [-(2^(b-1)-1), 2^(b-1)-1].
    """

    kind: Literal["uniform"] = "uniform"
    signed: bool
    symmetric: bool
    granularity: Granularity = Granularity.PER_TENSOR
    axis: int | None = None
    narrow_range: bool = False
    scale_type: Literal["float", "power_of_two"] = "float"
    scale_rule: Literal["standard", "snpe_tf", "pow2_lsq", "derived"] = "standard"
    scaling: Literal["divide", "reciprocal_multiply"] = "divide"
    zero_point_add: Literal["after_rounding", "before_rounding",
                            "fused_before_rounding"] = "after_rounding"
    zero_point_rounding: Rounding = Rounding.RNE
    min_range: float | None = Field(default=None, gt=0.0)
    pow2_search_steps: int | None = Field(default=None, ge=1, le=16)
    matmul_granularity: Granularity | None = None

    @model_validator(mode="after")
    def _consistent(self) -> UniformNumerics:
        if self.narrow_range and not self.signed:
            raise ValueError("'narrow_range: true' needs signed codes (signed: true); unsigned "
                             "codes always use [0, 2^bits - 1]")
        if self.matmul_granularity is not None and self.matmul_granularity is self.granularity:
            raise ValueError(f"'matmul_granularity' ({self.matmul_granularity.value}) repeats "
                             "'granularity'; give it only when MatMul weights differ")
        if (self.matmul_granularity is Granularity.PER_CHANNEL
                and self.granularity is Granularity.PER_TENSOR):
            raise ValueError("'matmul_granularity: per_channel' needs an 'axis'; use it only "
                             "with granularity 'per_channel' (and matmul_granularity "
                             "'per_tensor')")
        # biases at the accumulator scale may be wider than 32 bits (TFLite 16x8 keeps int64
        # biases); 48 bits keeps every code exact in float64
        max_bits = 48 if self.scale_rule == "derived" else 32
        if not 2 <= self.bits <= max_bits:
            raise ValueError(f"uniform bits must be in 2..{max_bits} (scale_rule "
                             f"{self.scale_rule!r}), got {self.bits}")
        if self.granularity is Granularity.PER_CHANNEL and self.axis is None:
            raise ValueError("granularity 'per_channel' needs 'axis' (e.g. 0 for conv weights)")
        if self.granularity is Granularity.PER_TENSOR and self.axis is not None:
            raise ValueError("'axis' is only allowed with granularity 'per_channel'")
        if self.symmetric and self.zero_point_add != "after_rounding":
            raise ValueError(f"'zero_point_add: {self.zero_point_add}' needs an asymmetric "
                             "scheme")
        if self.zero_point_add == "fused_before_rounding" and self.scaling != "reciprocal_multiply":
            raise ValueError("'zero_point_add: fused_before_rounding' (one rounding of "
                             "x * (1/s) + zp, a fused multiply-add) needs scaling "
                             "'reciprocal_multiply'")
        if self.scale_type == "power_of_two" and self.scale_rule not in ("pow2_lsq", "derived"):
            raise ValueError("scale_type 'power_of_two' needs scale_rule 'pow2_lsq' or 'derived'")
        if self.scale_rule == "pow2_lsq":
            if self.scale_type != "power_of_two" or not self.symmetric:
                raise ValueError("scale_rule 'pow2_lsq' needs scale_type 'power_of_two' and "
                                 "symmetric: true")
            if self.pow2_search_steps is None:
                raise ValueError("scale_rule 'pow2_lsq' needs 'pow2_search_steps' (Vitis: 5)")
        elif self.pow2_search_steps is not None:
            raise ValueError("'pow2_search_steps' is only allowed with scale_rule 'pow2_lsq'")
        if self.scale_rule == "snpe_tf":
            if self.symmetric or self.signed:
                raise ValueError("scale_rule 'snpe_tf' is unsigned asymmetric (signed: false, "
                                 "symmetric: false)")
            if self.min_range is None:
                raise ValueError("scale_rule 'snpe_tf' needs 'min_range' (SNPE: 0.01)")
        elif self.min_range is not None:
            raise ValueError("'min_range' is only allowed with scale_rule 'snpe_tf'")
        if self.scale_rule == "derived" and not self.symmetric:
            raise ValueError("scale_rule 'derived' (bias) has zero point 0: symmetric: true")
        if self.symmetric and not self.signed and self.scale_rule != "derived":
            raise ValueError("a symmetric scheme needs signed codes (signed: true)")
        return self


class LogNumerics(_NumericsBase):
    """Logarithmic codes (NNIE): value = +-2^((k + z) / levels_per_octave), sign-magnitude code.

    z = RNE(levels_per_octave * log2(c)) - (2^(bits-1) - 1) from the clip c (DESIGN.md B2).
    Log codes have one clip per tensor and no zero point.
    """

    kind: Literal["log"] = "log"
    levels_per_octave: int = Field(default=16, ge=1, le=256)
    code: Literal["sign_magnitude"] = "sign_magnitude"
    granularity: Granularity = Granularity.PER_TENSOR
    positive_threshold: Literal["inclusive", "exclusive"] = "inclusive"

    @model_validator(mode="after")
    def _consistent(self) -> LogNumerics:
        if self.granularity is not Granularity.PER_TENSOR:
            raise ValueError("log numerics have a single clip per tensor: granularity must be "
                             "'per_tensor' (per-channel zero points do not exist in log codes)")
        if self.bits != 8:
            raise NotSpecifiedError(
                f"log numerics are specified only for 8 bits (MQBench NNIE); got {self.bits}")
        return self


class DynamicFixedPointNumerics(_NumericsBase):
    """Ristretto dynamic fixed point: value = q * 2^-fl, q in [-2^(bits-1), 2^(bits-1) - 1].

    Saturate first, then round. il_rule: weight il = ceil(log2(max|W|) + 1); activation
    il = ceil(log2(max|x|)); fl = bits - il (DESIGN.md B5).
    """

    kind: Literal["dynamic_fixed_point"] = "dynamic_fixed_point"
    il_rule: Literal["weight", "activation"]
    granularity: Granularity = Granularity.PER_TENSOR

    @model_validator(mode="after")
    def _consistent(self) -> DynamicFixedPointNumerics:
        if self.granularity is not Granularity.PER_TENSOR:
            raise ValueError("Ristretto dynamic fixed point is per layer: granularity must be "
                             "'per_tensor'")
        if not 2 <= self.bits <= 32:
            raise ValueError(f"dynamic fixed point bits must be in 2..32, got {self.bits}")
        return self


class MinifloatNumerics(_NumericsBase):
    """Ristretto minifloat: 1 sign bit, ``exp_bits`` exponent, bits-1-exp_bits mantissa; bias
    2^(exp_bits-1) - 1; no inf/NaN codes; underflow to 0; overflow saturates.

    exp_bits 'auto' applies Ristretto's rule e = max(4, ceil(log2(log2(max) - 1) + 1)).
    """

    kind: Literal["minifloat"] = "minifloat"
    exp_bits: int | Literal["auto"] = "auto"

    @model_validator(mode="after")
    def _consistent(self) -> MinifloatNumerics:
        if isinstance(self.exp_bits, int) and not 1 <= self.exp_bits <= self.bits - 2:
            raise ValueError(f"exp_bits must be in 1..bits-2 = 1..{self.bits - 2}")
        return self


class PowerOfTwoNumerics(_NumericsBase):
    """Ristretto power-of-two weights: sign * 2^clamp(round(log2|w|), exp_min, exp_max);
    w = 0 becomes +2^exp_min (Ristretto's behaviour)."""

    kind: Literal["power_of_two"] = "power_of_two"
    exp_min: int = -8
    exp_max: int = -1

    @model_validator(mode="after")
    def _consistent(self) -> PowerOfTwoNumerics:
        if self.exp_min > self.exp_max:
            raise ValueError(f"exp_min ({self.exp_min}) must be <= exp_max ({self.exp_max})")
        if (self.exp_max - self.exp_min + 1) * 2 > 2 ** self.bits:
            raise ValueError(f"{self.exp_max - self.exp_min + 1} exponents with a sign do not "
                             f"fit in {self.bits} bits")
        return self


class FloatNumerics(_NumericsBase):
    """IEEE-style binary floating point (fp16; fp32 for tensors a device keeps in float32,
    e.g. unquantized biases), produced from float32 by rounding (fp32: unchanged).

    subnormals: keep (IEEE) or flush (inputs DAZ, results FTZ); tininess: whether a result is
    judged below 2^-14 before or after rounding (only with flush); overflow: inf (IEEE) or
    saturate (+-max finite); nan: propagate (quiet NaN) or zero (Ascend saturation mode).
    """

    kind: Literal["float"] = "float"
    format: Literal["fp16", "fp32"] = "fp16"
    subnormals: Literal["keep", "flush"] = "keep"
    tininess: Literal["before_rounding", "after_rounding"] | None = None
    overflow: Literal["inf", "saturate"] = "inf"
    nan: Literal["propagate", "zero"] = "propagate"
    signed_zero_on_flush: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> FloatNumerics:
        format_bits = {"fp16": 16, "fp32": 32}[self.format]
        if self.bits != format_bits:
            raise ValueError(f"format {self.format} has {format_bits} bits, got bits: "
                             f"{self.bits}")
        if self.format == "fp32" and (self.subnormals, self.overflow, self.nan) != (
                "keep", "inf", "propagate"):
            raise ValueError("format fp32 is the input format itself: subnormals 'keep', "
                             "overflow 'inf', nan 'propagate' (no conversion happens)")
        if self.rounding is not Rounding.RNE:
            raise ValueError("float formats round to nearest even (rounding: rne)")
        if self.subnormals == "flush" and self.tininess is None:
            raise ValueError("subnormals 'flush' needs 'tininess': before_rounding or "
                             "after_rounding")
        if self.subnormals == "keep" and self.tininess is not None:
            raise ValueError("'tininess' is only meaningful with subnormals 'flush'")
        return self


TensorNumerics = Annotated[
    UniformNumerics | LogNumerics | DynamicFixedPointNumerics | MinifloatNumerics
    | PowerOfTwoNumerics | FloatNumerics,
    Field(discriminator="kind"),
]

NUMERICS_KINDS = ("uniform", "log", "dynamic_fixed_point", "minifloat", "power_of_two", "float")


class Arithmetic(_Strict):
    """How a layer computes from quantized inputs.

    accumulator_bits / accumulator_overflow: width of integer sums and what happens past it.
    requant: how the accumulator becomes the output code:
      fp32_multiply: float32(acc) * float32(float32(s_x*s_w)/s_y), RNE (ONNX Runtime);
      q31_double_rounding: frexp multiplier in q31, SaturatingRoundingDoublingHighMul then
        RoundingDivideByPOT (TFLite/gemmlowp conv reference);
      double_multiply_rhaz: round_half_away(double(acc) * M) (TFLite fully-connected reference);
      shift: power-of-two scales, arithmetic right shift with ``shift_rounding``;
      float: dequantize, compute in float (``float_accumulation``), requantize (log, float and
        fixed-point-float devices).
    int16_pair_saturation: adjacent pairs of u8*s8 products saturate to int16 before summing
      (x86 AVX2 ``vpmaddubsw``; ONNX Runtime on CPUs without VNNI).
    """

    accumulator_bits: int = Field(default=32, ge=16, le=64)
    accumulator_overflow: Literal["wrap", "saturate"] = "wrap"
    requant: Literal["fp32_multiply", "q31_double_rounding", "double_multiply_rhaz", "shift",
                     "float"]
    shift_rounding: Rounding | None = None
    int16_pair_saturation: bool = False
    float_accumulation: Literal["fp16", "fp32", "fp64"] | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Arithmetic:
        if self.requant == "shift" and self.shift_rounding is None:
            raise ValueError("requant 'shift' needs 'shift_rounding' (rne, rhaz or rhu)")
        if self.requant != "shift" and self.shift_rounding is not None:
            raise ValueError("'shift_rounding' is only allowed with requant 'shift'")
        if self.requant == "float" and self.float_accumulation is None:
            raise ValueError("requant 'float' needs 'float_accumulation' (fp16, fp32 or fp64)")
        if self.requant != "float" and self.float_accumulation is not None:
            raise ValueError("'float_accumulation' is only allowed with requant 'float' "
                             "(integer requantization accumulates in 'accumulator_bits')")
        return self


class Precision(_Strict):
    """Numerics of one precision (``int8``, ``fp16`` ...) of a device.

    ``input``: numerics of the network input when they differ from other activations (Vitis
    rounds the input RHAZ, activations RHU); absent means the input is an activation.
    """

    weight: TensorNumerics
    activation: TensorNumerics
    bias: TensorNumerics
    arithmetic: Arithmetic
    input: TensorNumerics | None = None
    note: str | None = None

    @property
    def input_numerics(self):
        """The numerics of the network input (``input``, else ``activation``)."""
        return self.input if self.input is not None else self.activation

    @model_validator(mode="after")
    def _arithmetic_fits_numerics(self) -> Precision:
        kinds = {self.weight.kind, self.activation.kind}
        requant = self.arithmetic.requant
        if requant in ("fp32_multiply", "q31_double_rounding", "double_multiply_rhaz"):
            if kinds != {"uniform"}:
                raise ValueError(f"arithmetic.requant '{requant}' rescales uniform integer codes; "
                                 f"weight/activation kinds are {sorted(kinds)} (use 'float' or "
                                 "'shift')")
        elif requant == "shift":
            for role in ("weight", "activation"):
                num = getattr(self, role)
                pow2 = num.kind in ("dynamic_fixed_point", "power_of_two") or (
                    num.kind == "uniform" and num.scale_type == "power_of_two")
                if not pow2:
                    raise ValueError(f"arithmetic.requant 'shift' needs power-of-two scales, but "
                                     f"{role} is kind '{num.kind}'"
                                     + (" with scale_type 'float'" if num.kind == "uniform"
                                        else ""))
        if self.arithmetic.int16_pair_saturation:
            w, a = self.weight, self.activation
            if not (w.kind == a.kind == "uniform" and w.bits == a.bits == 8 and w.signed
                    and not a.signed):
                raise ValueError("'int16_pair_saturation' models u8 x s8 pair products "
                                 "(vpmaddubsw): it needs uint8 activations and int8 weights")
        return self


class UnspecifiedPrecision(_Strict):
    """A precision the device has but no public source specifies; using it raises."""

    unspecified: str = Field(min_length=10, description="why, and what would be needed")


class BitFlexibleConfiguration(_Strict):
    """One instance of a bit-flexible accelerator (array size, clock, memory, energy).

    array_rows x array_cols: processing elements (bit_brick: Fusion Units; bit_serial: BISMO's
    Dm x Dn dot-product units). dot_product_bits: bit_serial only, BISMO's Dk (binary products
    summed per unit per cycle). batch: images per inference the latency is given for.
    energy_pj_per_unit_op: one BitBrick product (bit_brick) or one binary product (bit_serial);
    energy_pj_per_dram_byte: one byte moved to or from DRAM. Give both energy figures or none.
    """

    batch: int = Field(ge=1)
    array_rows: int = Field(ge=1)
    array_cols: int = Field(ge=1)
    dot_product_bits: int | None = Field(default=None, ge=1)
    clock_mhz: float = Field(gt=0.0)
    memory_bandwidth_gb_s: float = Field(gt=0.0)
    energy_pj_per_unit_op: float | None = Field(default=None, gt=0.0)
    energy_pj_per_dram_byte: float | None = Field(default=None, gt=0.0)
    note: str | None = None

    @model_validator(mode="after")
    def _energy_pair(self) -> BitFlexibleConfiguration:
        if (self.energy_pj_per_unit_op is None) != (self.energy_pj_per_dram_byte is None):
            raise ValueError("give both 'energy_pj_per_unit_op' and 'energy_pj_per_dram_byte', "
                             "or neither")
        return self


class BitFlexible(_Strict):
    """Cost model of a bit-flexible accelerator (HAQ's targets; DESIGN.md B9), a **model**.

    model:
      bit_brick (BitFusion): a product of a w-bit weight and an a-bit activation takes
        (w'/brick_bits) * (a'/brick_bits) BitBricks, w' and a' the widths rounded up to the next
        entry of ``operand_bits``; each Fusion Unit has ``bricks_per_unit`` bricks working every
        cycle: cycles = ceil(batch * MACs * bricks per product / (rows * cols * bricks_per_unit)).
      bit_serial (BISMO): a layer is a GEMM per group (M output channels, K = inputs per output,
        N = batch * output pixels) run as w' * a' binary GEMMs on a Dm x Dn array of Dk-bit
        dot-product units: cycles = groups * ceil(M/Dm) * ceil(N/Dn) * ceil(K/Dk) * w' * a'.
    Latency = max(cycles / clock, DRAM bytes / bandwidth) (compute and transfers overlap); DRAM
    bytes = weights at w bits once per batch + the input activation written and read once at a
    bits per image. operand_bits: widths the hardware computes (sorted, unique).
    """

    model: Literal["bit_brick", "bit_serial"]
    operand_bits: list[int] = Field(min_length=1)
    brick_bits: int | None = Field(default=None, ge=1)
    bricks_per_unit: int | None = Field(default=None, ge=1)
    configurations: dict[str, BitFlexibleConfiguration] = Field(min_length=1)
    default_configuration: str

    @model_validator(mode="after")
    def _consistent(self) -> BitFlexible:
        bits = self.operand_bits
        if bits != sorted(set(bits)) or bits[0] < 1:
            raise ValueError(f"'operand_bits' must be positive, sorted and unique, got {bits}")
        if self.default_configuration not in self.configurations:
            raise ValueError(f"'default_configuration' {self.default_configuration!r} is not one "
                             f"of the configurations {sorted(self.configurations)}")
        if self.model == "bit_brick":
            if self.brick_bits is None or self.bricks_per_unit is None:
                raise ValueError("model 'bit_brick' needs 'brick_bits' (BitFusion: 2) and "
                                 "'bricks_per_unit' (BitFusion: 16)")
            bad = [b for b in bits if b % self.brick_bits]
            if bad:
                raise ValueError(f"model 'bit_brick': operand_bits {bad} are not multiples of "
                                 f"brick_bits {self.brick_bits}")
            for name, cfg in self.configurations.items():
                if cfg.dot_product_bits is not None:
                    raise ValueError(f"configurations.{name}: 'dot_product_bits' is only for "
                                     "model 'bit_serial'")
        else:
            if self.brick_bits is not None or self.bricks_per_unit is not None:
                raise ValueError("'brick_bits' and 'bricks_per_unit' are only for model "
                                 "'bit_brick'")
            if bits != list(range(bits[0], bits[-1] + 1)):
                raise ValueError(f"model 'bit_serial' computes every width from its smallest to "
                                 f"its largest: operand_bits must be contiguous, got {bits}")
            for name, cfg in self.configurations.items():
                if cfg.dot_product_bits is None:
                    raise ValueError(f"configurations.{name}: model 'bit_serial' needs "
                                     "'dot_product_bits' (BISMO's Dk)")
        return self


class Performance(_Strict):
    """Roofline-style performance figures for modeled latency (ms), with their provenance.

    ``bit_flexible``: optional cost model of a bit-flexible accelerator (``BitFlexible``);
    used for per-layer (weight bits, activation bits) costs by the mixed-precision search.
    """

    peak_macs_per_s: dict[str, float] = Field(default_factory=dict)
    memory_bandwidth_gb_s: float | None = Field(default=None, gt=0.0)
    op_overhead_us: float = Field(default=0.0, ge=0.0)
    efficiency: dict[str, float] = Field(default_factory=dict)
    energy_pj_per_mac: dict[str, float] = Field(default_factory=dict)
    energy_pj_per_byte: float | None = Field(default=None, gt=0.0)
    bit_flexible: BitFlexible | None = None
    sources: list[str] = Field(default_factory=list)
    assumptions: list[str] = Field(default_factory=list)


_PRECISION_NAME = re.compile(r"^(int(\d+)|fp16)$")


def _precision_tag(value: Any) -> str:
    """A precision entry with an ``unspecified`` key is an UnspecifiedPrecision."""
    if isinstance(value, dict):
        return "UnspecifiedPrecision" if "unspecified" in value else "Precision"
    return "UnspecifiedPrecision" if isinstance(value, UnspecifiedPrecision) else "Precision"


PrecisionEntry = Annotated[
    Annotated[Precision, Tag("Precision")]
    | Annotated[UnspecifiedPrecision, Tag("UnspecifiedPrecision")],
    Discriminator(_precision_tag),
]


class DeviceSpec(_Strict):
    """One target device: identity, supported precisions and their numerics, provenance."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    title: str
    vendor: str
    library: str
    table_row: str = Field(description="the seed hardware table's row(s), verbatim")
    bits: list[int | Literal["fp16"]] = Field(min_length=1)
    precisions: dict[str, PrecisionEntry] = Field(min_length=1)
    default_precision: str
    sources: list[str] = Field(min_length=1)
    assumptions: list[str] = Field(default_factory=list)
    corrections: list[str] = Field(default_factory=list)
    performance: Performance | None = None

    @model_validator(mode="after")
    def _consistent(self) -> DeviceSpec:
        allowed = [f"int{b}" if isinstance(b, int) else b for b in self.bits]
        for pname, prec in self.precisions.items():
            m = _PRECISION_NAME.match(pname)
            if m is None:
                raise ValueError(f"field 'precisions.{pname}': precision name {pname!r} must be "
                                 "'int<bits>' or 'fp16'")
            if pname not in allowed:
                raise ValueError(f"field 'precisions.{pname}': precision {pname!r} is not in the "
                                 f"device's bits; allowed: {allowed}")
            if isinstance(prec, UnspecifiedPrecision):
                continue
            if m.group(2) is not None:
                bits = int(m.group(2))
                if prec.activation.kind == "float" or prec.weight.kind == "float":
                    raise ValueError(f"field 'precisions.{pname}': precision {pname!r} is "
                                     "integer-coded but uses float numerics; name it 'fp16'")
                if max(prec.weight.bits, prec.activation.bits) != bits:
                    raise ValueError(
                        f"field 'precisions.{pname}': the wider of weight bits "
                        f"({prec.weight.bits}) and activation bits ({prec.activation.bits}) "
                        f"must be {bits}")
            elif prec.activation.kind != "float":
                raise ValueError(f"field 'precisions.{pname}': precision {pname!r} needs float "
                                 "activation numerics")
        flex = self.performance.bit_flexible if self.performance is not None else None
        if flex is not None:
            widest = flex.operand_bits[-1]
            for pname in self.specified_precisions:
                prec = self.precisions[pname]
                need = max(prec.weight.bits, prec.activation.bits)
                if need > widest:
                    raise ValueError(f"field 'performance.bit_flexible.operand_bits': precision "
                                     f"{pname!r} needs up to {need} bits; the widest operand "
                                     f"is {widest}")
        missing = [p for p in allowed if p not in self.precisions]
        if missing:
            raise ValueError(f"field 'bits': {missing} listed but no precision entry for them "
                             "(add one, or an 'unspecified:' entry saying why)")
        if self.default_precision not in self.precisions or isinstance(
                self.precisions[self.default_precision], UnspecifiedPrecision):
            raise ValueError(f"field 'default_precision': {self.default_precision!r} must name a "
                             f"specified precision: {self.specified_precisions}")
        return self

    @property
    def specified_precisions(self) -> list[str]:
        return [p for p, v in self.precisions.items() if isinstance(v, Precision)]

    def precision(self, name: str | None = None) -> Precision:
        """The numerics of precision ``name`` (default: ``default_precision``).

        Raises NotSpecifiedError for a precision no public source specifies, SpecError for an
        unknown one.
        """
        name = self.default_precision if name is None else name
        if name not in self.precisions:
            raise SpecError(f"device {self.name!r} has no precision {name!r}; "
                            f"allowed: {self.specified_precisions}")
        prec = self.precisions[name]
        if isinstance(prec, UnspecifiedPrecision):
            raise NotSpecifiedError(f"device {self.name!r} precision {name!r} is not specified "
                                    f"by any public source: {prec.unspecified}")
        return prec


# Union tags pydantic inserts into error locations; no schema field has one of these names
# (numerics kinds are values of 'kind', never keys).
_UNION_TAGS = frozenset({"Precision", "UnspecifiedPrecision", *NUMERICS_KINDS})


def _field_path(loc: tuple[Any, ...]) -> str:
    """``precisions.int8.weight.axis`` from pydantic's location (union tags removed)."""
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and p in _UNION_TAGS))


def _format_validation_error(path: Path | str, err: ValidationError) -> str:
    lines = [f"{path}: invalid device spec"]
    for e in err.errors():
        loc = _field_path(e["loc"])
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not part of the device spec schema)"
        elif e["type"] == "literal_error" or e["type"] == "enum":
            msg = f"{msg}; got {e.get('input')!r}"
        elif e["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        # Cross-field checks of the whole spec have no location; their message names the field.
        lines.append(f"  field '{loc}': {msg}" if loc else f"  {msg}")
    return "\n".join(lines)


def parse_spec(data: Any, source: Path | str = "<dict>") -> DeviceSpec:
    """Validate a mapping (already parsed YAML) as a DeviceSpec; errors name ``source``."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a device spec must be a mapping, got {type(data).__name__}")
    try:
        return DeviceSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(_format_validation_error(source, err)) from None
    except NotSpecifiedError as err:
        raise NotSpecifiedError(f"{source}: {err}") from None


def load_spec(path: Path | str) -> DeviceSpec:
    """Read and validate one device YAML (``yaml.safe_load``; anchors and merge keys allowed)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SpecError(f"{path}: cannot read device spec: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {err}") from None
    spec = parse_spec(data, path)
    if spec.name != path.stem:
        raise SpecError(f"{path}: field 'name' is {spec.name!r} but the file is named "
                        f"{path.name!r}; they must match")
    return spec
