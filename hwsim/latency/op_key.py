"""Op keys: one canonical key per op configuration, and the published LUT key formats.

An ``OpKey`` names what a latency table row measures: the op type, input/output shapes (HxWxC,
or C alone for vectors) and the attributes that change its cost (kernel, stride, expansion,
groups, residual skip, squeeze-excite, fused activation, bit-widths). Attributes an op does not
have are ``None`` and are not written.

Formats:

canonical
    ``{op}-input:HxWxC-output:HxWxC[-expand:E][-mid:M][-kernel:K][-stride:S][-groups:G]
    [-idskip:0|1][-se:0|1][-act:NAME][-wbits:B][-abits:B]``; fields in exactly this order,
    absent fields omitted. ``OpKey.parse`` accepts only this form, so ``str(parse(k)) == k``.
proxyless
    ProxylessNAS YAML LUT keys (mit-han-lab/proxylessnas latency tools, OFA
    ``ProxylessNASLatencyTable``): ``Conv-input:224x224x3-output:112x112x32``, ``Conv_1-...``,
    ``Logits-input:7x7x1280-output:1000``, ``expanded_conv-input:..-output:..-expand:E-kernel:K-
    stride:S-idskip:0|1`` (E = expansion ratio).
ofa
    OFA ``MBv3LatencyTable`` keys: layer types ``Conv``, ``Conv_1``, ``Conv_2``, ``AvgPool2D``,
    ``Logits`` with input/output only, and ``expanded_conv-...-expand:M-kernel:K-stride:S-
    idskip:I-se:0|1-hs:0|1`` where ``expand`` is the middle channel count (stored as ``mid``)
    and ``hs:1`` means h-swish (stored as ``act: hswish``; ``hs:0`` as ``act: relu``).
fbnet
    HW-NAS-Bench FBNet op LUT keys: ``ConvBlock_H{}_W{}_Cin{}_Cout{}_exp{}_kernel{}_stride{}_
    group{}``, ``Skip_H{}_W{}_Cin{}_Cout{}_stride{}``, ``ConvNorm_H{}_W{}_Cin{}_Cout{}_kernel{}_
    stride{}_group{}``, ``AvgP_H{}_W{}_Cin{}_Cout{}_kernel{}_stride{}``, ``FC_Cin{}_Cout{}``.
    The output size is not in these keys; it is derived as HW-NAS-Bench does: H // stride for
    blocks (``h_in // 2`` at stride 2), (H - kernel) // stride + 1 for the unpadded pool.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Literal

from hwsim.errors import LatencyError

KeyFormat = Literal["canonical", "proxyless", "ofa", "fbnet"]
KEY_FORMATS: tuple[str, ...] = ("canonical", "proxyless", "ofa", "fbnet")

# Optional attribute fields in canonical order (written only when not None).
_OPTIONAL = ("expand", "mid", "kernel", "stride", "groups", "idskip", "se", "act", "wbits",
             "abits")
_INT_FIELDS = frozenset(("expand", "mid", "kernel", "stride", "groups", "idskip", "se", "wbits",
                         "abits"))
_BOOL_FIELDS = frozenset(("idskip", "se"))

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_ACT = re.compile(r"^[a-z][a-z0-9_]*$")
_INT = re.compile(r"^(0|[1-9][0-9]*)$")


class OpKeyError(LatencyError):
    """A latency key string cannot be parsed in the requested format."""


@dataclass(frozen=True, order=True)
class OpKey:
    """One op configuration. Shapes are (H, W, C) or (C,); sizes are positive integers.

    ``act`` is the activation fused into this op (``relu``, ``relu6``, ``hswish`` ...), ``idskip``
    whether a residual add is part of it, ``wbits``/``abits`` the weight/activation bit-widths
    (``None``: float32 as the backend runs it).
    """

    op: str
    input: tuple[int, ...]
    output: tuple[int, ...]
    expand: int | None = None
    mid: int | None = None
    kernel: int | None = None
    stride: int | None = None
    groups: int | None = None
    idskip: int | None = None
    se: int | None = None
    act: str | None = None
    wbits: int | None = None
    abits: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.op, str) or not _NAME.match(self.op):
            raise OpKeyError(f"op type {self.op!r} must match [A-Za-z][A-Za-z0-9_]*")
        for name in ("input", "output"):
            shape = getattr(self, name)
            if not isinstance(shape, tuple) or len(shape) not in (1, 3) or not all(
                    isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
                raise OpKeyError(f"op {self.op!r}: {name} shape must be (H, W, C) or (C,) of "
                                f"positive integers, got {shape!r}")
        for name in _INT_FIELDS:
            v = getattr(self, name)
            if v is None:
                continue
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise OpKeyError(f"op {self.op!r}: field {name!r} must be a non-negative "
                                f"integer, got {v!r}")
            if name in _BOOL_FIELDS and v not in (0, 1):
                raise OpKeyError(f"op {self.op!r}: field {name!r} must be 0 or 1, got {v!r}")
        if self.act is not None and (not isinstance(self.act, str) or not _ACT.match(self.act)):
            raise OpKeyError(f"op {self.op!r}: act {self.act!r} must match [a-z][a-z0-9_]*")

    # -- canonical text ----------------------------------------------------------------------
    def __str__(self) -> str:
        parts = [self.op, f"input:{_shape_text(self.input)}",
                 f"output:{_shape_text(self.output)}"]
        for name in _OPTIONAL:
            v = getattr(self, name)
            if v is not None:
                parts.append(f"{name}:{v}")
        return "-".join(parts)

    @classmethod
    def parse(cls, text: str) -> OpKey:
        """Parse a canonical key; anything but the exact canonical spelling is rejected."""
        if not isinstance(text, str):
            raise OpKeyError(f"a key must be a string, got {type(text).__name__}")
        parts = text.split("-")
        if len(parts) < 3 or not parts[1].startswith("input:") or not parts[2].startswith(
                "output:"):
            raise OpKeyError(f"key {text!r}: expected 'OP-input:HxWxC-output:HxWxC[-field:value"
                            f"...]'")
        values: dict[str, object] = {
            "op": parts[0],
            "input": _parse_shape(parts[1][len("input:"):], text),
            "output": _parse_shape(parts[2][len("output:"):], text),
        }
        for part in parts[3:]:
            name, sep, value = part.partition(":")
            if not sep or name not in _OPTIONAL:
                raise OpKeyError(f"key {text!r}: unknown field {part!r}; allowed fields: "
                                f"{', '.join(_OPTIONAL)}")
            if name in values:
                raise OpKeyError(f"key {text!r}: field {name!r} given twice")
            values[name] = _parse_int(value, name, text) if name in _INT_FIELDS else value
        key = cls(**values)  # type: ignore[arg-type]
        if str(key) != text:
            raise OpKeyError(f"key {text!r} is not in canonical form; canonical: {key}")
        return key

    def with_(self, **changes: object) -> OpKey:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def as_fields(self) -> dict[str, object]:
        """Field name -> value (shapes as 'HxWxC' text), for table columns."""
        out: dict[str, object] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = _shape_text(v) if f.name in ("input", "output") else v
        return out


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def _parse_int(value: str, name: str, text: str) -> int:
    if not _INT.match(value):
        raise OpKeyError(f"key {text!r}: field {name!r} must be a non-negative integer without "
                        f"leading zeros, got {value!r}")
    return int(value)


def _parse_shape(value: str, text: str) -> tuple[int, ...]:
    dims = value.split("x")
    if len(dims) not in (1, 3) or not all(_INT.match(d) and d != "0" for d in dims):
        raise OpKeyError(f"key {text!r}: shape {value!r} must be HxWxC or C (positive integers)")
    return tuple(int(d) for d in dims)


def parse_shape_text(value: str) -> tuple[int, ...]:
    """'HxWxC' or 'C' -> tuple of ints (table columns)."""
    return _parse_shape(value, value)


# -- ProxylessNAS / OFA --------------------------------------------------------------------------
_PROXYLESS_TYPES = ("Conv", "Conv_1", "Logits", "expanded_conv")
_OFA_TYPES = ("Conv", "Conv_1", "Conv_2", "AvgPool2D", "Logits", "expanded_conv")
_PROXYLESS_BLOCK_FIELDS = ("expand", "kernel", "stride", "idskip")
_OFA_BLOCK_FIELDS = ("expand", "kernel", "stride", "idskip", "se", "hs")


def _parse_mit(text: str, fmt: str) -> OpKey:
    types = _PROXYLESS_TYPES if fmt == "proxyless" else _OFA_TYPES
    block_fields = _PROXYLESS_BLOCK_FIELDS if fmt == "proxyless" else _OFA_BLOCK_FIELDS
    parts = text.split("-")
    if parts[0] not in types:
        raise OpKeyError(f"{fmt} key {text!r}: unknown layer type {parts[0]!r}; allowed: "
                        f"{', '.join(types)}")
    if len(parts) < 3 or not parts[1].startswith("input:") or not parts[2].startswith("output:"):
        raise OpKeyError(f"{fmt} key {text!r}: expected '{parts[0]}-input:HxWxC-output:...'")
    shape_in = _parse_shape(parts[1][len("input:"):], text)
    shape_out = _parse_shape(parts[2][len("output:"):], text)
    extra = parts[3:]
    if parts[0] != "expanded_conv":
        if extra:
            raise OpKeyError(f"{fmt} key {text!r}: layer {parts[0]!r} has only input and "
                            f"output; unexpected {'-'.join(extra)!r}")
        return OpKey(parts[0], shape_in, shape_out)
    got = [p.partition(":")[0] for p in extra]
    if got != list(block_fields):
        raise OpKeyError(f"{fmt} key {text!r}: expanded_conv needs fields "
                        f"{'-'.join(f + ':N' for f in block_fields)} in this order, got "
                        f"{'-'.join(got) or 'none'}")
    v = {name: _parse_int(p.partition(":")[2], name, text)
         for name, p in zip(got, extra, strict=True)}
    for flag in ("idskip", "se", "hs"):
        if flag in v and v[flag] not in (0, 1):
            raise OpKeyError(f"{fmt} key {text!r}: {flag} must be 0 or 1, got {v[flag]}")
    if fmt == "proxyless":
        return OpKey("expanded_conv", shape_in, shape_out, expand=v["expand"], kernel=v["kernel"],
                     stride=v["stride"], idskip=v["idskip"])
    return OpKey("expanded_conv", shape_in, shape_out, mid=v["expand"], kernel=v["kernel"],
                 stride=v["stride"], idskip=v["idskip"], se=v["se"],
                 act="hswish" if v["hs"] else "relu")


def _format_mit(key: OpKey, fmt: str) -> str:
    types = _PROXYLESS_TYPES if fmt == "proxyless" else _OFA_TYPES
    if key.op not in types:
        raise OpKeyError(f"op {key.op!r} has no {fmt} key; {fmt} layer types: {', '.join(types)}")
    head = f"{key.op}-input:{_shape_text(key.input)}-output:{_shape_text(key.output)}"
    set_fields = {n for n in _OPTIONAL if getattr(key, n) is not None}
    if key.op != "expanded_conv":
        if set_fields:
            raise OpKeyError(f"{key}: {fmt} layer {key.op!r} carries no attributes")
        return head
    if fmt == "proxyless":
        need = {"expand", "kernel", "stride", "idskip"}
        if set_fields != need:
            raise OpKeyError(f"{key}: a proxyless expanded_conv key has exactly the fields "
                            f"{sorted(need)}")
        return (f"{head}-expand:{key.expand}-kernel:{key.kernel}-stride:{key.stride}-"
                f"idskip:{key.idskip}")
    need = {"mid", "kernel", "stride", "idskip", "se", "act"}
    if set_fields != need or key.act not in ("hswish", "relu"):
        raise OpKeyError(f"{key}: an ofa expanded_conv key has exactly the fields {sorted(need)} "
                        f"with act hswish or relu")
    return (f"{head}-expand:{key.mid}-kernel:{key.kernel}-stride:{key.stride}-idskip:"
            f"{key.idskip}-se:{key.se}-hs:{1 if key.act == 'hswish' else 0}")


# -- HW-NAS-Bench FBNet ----------------------------------------------------------------------
_N = r"(0|[1-9][0-9]*)"
_FBNET = {
    "ConvBlock": re.compile(rf"^ConvBlock_H{_N}_W{_N}_Cin{_N}_Cout{_N}_exp{_N}_kernel{_N}"
                            rf"_stride{_N}_group{_N}$"),
    "Skip": re.compile(rf"^Skip_H{_N}_W{_N}_Cin{_N}_Cout{_N}_stride{_N}$"),
    "ConvNorm": re.compile(rf"^ConvNorm_H{_N}_W{_N}_Cin{_N}_Cout{_N}_kernel{_N}_stride{_N}"
                           rf"_group{_N}$"),
    "AvgP": re.compile(rf"^AvgP_H{_N}_W{_N}_Cin{_N}_Cout{_N}_kernel{_N}_stride{_N}$"),
    "FC": re.compile(rf"^FC_Cin{_N}_Cout{_N}$"),
}


def _fbnet_out_hw(h: int, w: int, stride: int, text: str) -> tuple[int, int]:
    if stride < 1 or h // stride < 1 or w // stride < 1:
        raise OpKeyError(f"fbnet key {text!r}: stride {stride} does not fit {h}x{w}")
    return h // stride, w // stride


def _parse_fbnet(text: str) -> OpKey:
    kind = text.split("_", 1)[0]
    pattern = _FBNET.get(kind)
    m = pattern.match(text) if pattern else None
    if m is None:
        raise OpKeyError(
            f"fbnet key {text!r}: expected one of "
            "ConvBlock_H{}_W{}_Cin{}_Cout{}_exp{}_kernel{}_stride{}_group{}, "
            "Skip_H{}_W{}_Cin{}_Cout{}_stride{}, ConvNorm_..._kernel{}_stride{}_group{}, "
            "AvgP_..._kernel{}_stride{}, FC_Cin{}_Cout{}")
    v = [int(g) for g in m.groups()]
    if kind == "FC":
        return OpKey("FC", (v[0],), (v[1],))
    h, w, cin, cout = v[:4]
    if min(h, w, cin, cout) < 1:
        raise OpKeyError(f"fbnet key {text!r}: sizes must be positive")
    if kind == "ConvBlock":
        e, k, s, g = v[4:]
        ho, wo = _fbnet_out_hw(h, w, s, text)
        return OpKey("ConvBlock", (h, w, cin), (ho, wo, cout), expand=e, kernel=k, stride=s,
                     groups=g)
    if kind == "Skip":
        ho, wo = _fbnet_out_hw(h, w, v[4], text)
        return OpKey("Skip", (h, w, cin), (ho, wo, cout), stride=v[4])
    if kind == "ConvNorm":
        k, s, g = v[4:]
        ho, wo = _fbnet_out_hw(h, w, s, text)
        return OpKey("ConvNorm", (h, w, cin), (ho, wo, cout), kernel=k, stride=s, groups=g)
    k, s = v[4:]
    if k < 1 or s < 1 or k > h or k > w:
        raise OpKeyError(f"fbnet key {text!r}: pool kernel {k} / stride {s} do not fit {h}x{w}")
    return OpKey("AvgP", (h, w, cin), ((h - k) // s + 1, (w - k) // s + 1, cout), kernel=k,
                 stride=s)


def _format_fbnet(key: OpKey) -> str:
    if key.op == "FC" and len(key.input) == 1:
        return f"FC_Cin{key.input[0]}_Cout{key.output[0]}"
    if key.op not in ("ConvBlock", "Skip", "ConvNorm", "AvgP") or len(key.input) != 3:
        raise OpKeyError(f"op {key.op!r} has no fbnet key; fbnet ops: ConvBlock, Skip, ConvNorm, "
                        f"AvgP, FC")
    h, w, cin = key.input
    cout = key.output[-1]
    base = f"{key.op}_H{h}_W{w}_Cin{cin}_Cout{cout}"
    if key.op == "ConvBlock":
        text = f"{base}_exp{key.expand}_kernel{key.kernel}_stride{key.stride}_group{key.groups}"
    elif key.op == "Skip":
        text = f"{base}_stride{key.stride}"
    elif key.op == "ConvNorm":
        text = f"{base}_kernel{key.kernel}_stride{key.stride}_group{key.groups}"
    else:
        text = f"{base}_kernel{key.kernel}_stride{key.stride}"
    if _parse_fbnet(text) != key:
        raise OpKeyError(f"{key}: not representable as an fbnet key (fields or output shape "
                        f"differ from what {text!r} means)")
    return text


def parse_key(text: str, fmt: KeyFormat = "canonical") -> OpKey:
    """Parse ``text`` written in format ``fmt`` (see module docstring)."""
    if fmt == "canonical":
        return OpKey.parse(text)
    if fmt in ("proxyless", "ofa"):
        return _parse_mit(text, fmt)
    if fmt == "fbnet":
        return _parse_fbnet(text)
    raise OpKeyError(f"unknown key format {fmt!r}; allowed: {', '.join(KEY_FORMATS)}")


def format_key(key: OpKey, fmt: KeyFormat = "canonical") -> str:
    """Write ``key`` in format ``fmt``; raises if the format cannot express it."""
    if fmt == "canonical":
        return str(key)
    if fmt in ("proxyless", "ofa"):
        return _format_mit(key, fmt)
    if fmt == "fbnet":
        return _format_fbnet(key)
    raise OpKeyError(f"unknown key format {fmt!r}; allowed: {', '.join(KEY_FORMATS)}")
