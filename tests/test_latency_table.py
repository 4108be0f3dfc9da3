"""Latency tables: CSV round trip, validation with file:line errors, published YAML import."""

from __future__ import annotations

import math

import pytest

from hwsim.errors import LatencyError, MissingKeyError
from hwsim.latency.op_key import OpKey
from hwsim.latency.table import LatencyRow, LatencyTable, export_published, import_published

# An excerpt of ProxylessNAS's published Pixel 1 LUT (pixel_trim.yaml), values as published.
PIXEL_EXCERPT = """\
Conv-input:224x224x3-output:112x112x32:
  count: 949
  mean: 4.397037934668071
  var: 0.1562765530967112
Conv_1-input:7x7x320-output:7x7x1280:
  count: 949
  mean: 6.28499578503688
  var: 0.43429750694010927
Logits-input:7x7x1280-output:1000:
  count: 949
  mean: 0.9348261327713382
  var: 0.1500926595152672
expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:3-stride:2-idskip:0:
  count: 156
  mean: 5.608820512820512
  var: 0.08784284387615103
"""


def _row(key: OpKey, ms: float, **kw) -> LatencyRow:
    base = dict(source="measured", device="host-ort", backend="host-ort", threads=1,
                p10_ms=ms * 0.9, p90_ms=ms * 1.1, std_ms=ms * 0.05, samples=20,
                versions="onnxruntime=1", date="2025-01-01T00:00:00+00:00")
    base.update(kw)
    return LatencyRow(key=key, latency_ms=ms, **base)


def _table() -> LatencyTable:
    return LatencyTable.from_rows([
        _row(OpKey("conv", (56, 56, 24), (56, 56, 144), kernel=1, stride=1, act="relu6"),
             0.3608123456789),
        _row(OpKey("linear", (1280,), (1000,)), 0.0771, note="a, note with commas"),
        _row(OpKey("add", (7, 7, 320), (7, 7, 320)), 1e-3),
    ])


def test_csv_round_trip_is_exact(tmp_path):
    t = _table()
    t.save(tmp_path / "t.csv")
    again = LatencyTable.load(tmp_path / "t.csv")
    assert again == t
    again.save(tmp_path / "t2.csv")
    assert (tmp_path / "t.csv").read_text() == (tmp_path / "t2.csv").read_text()


def test_lookup_of_missing_key_raises_never_zero():
    with pytest.raises(MissingKeyError, match="conv-input:7x7x1-output:7x7x1"):
        _table().lookup(OpKey("conv", (7, 7, 1), (7, 7, 1), kernel=1, stride=1))


def _write(tmp_path, text: str):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


def test_missing_latency_column_is_rejected(tmp_path):
    path = _write(tmp_path, "key,source,device\nadd-input:7x7x3-output:7x7x3,measured,x\n")
    with pytest.raises(LatencyError, match="latency_ms"):
        LatencyTable.load(path)


@pytest.mark.parametrize("column,fix", [("latency_us", "microseconds"), ("latency", "no unit")])
def test_columns_in_other_units_are_rejected_with_the_fix(tmp_path, column, fix):
    path = _write(tmp_path, f"key,{column},source,device\n")
    with pytest.raises(LatencyError, match=fix):
        LatencyTable.load(path)


@pytest.mark.parametrize("value", ["-0.5", "nan", "inf", "abc"])
def test_bad_latency_values_name_file_and_line(tmp_path, value):
    path = _write(tmp_path, "key,latency_ms,source,device\n"
                            "add-input:7x7x3-output:7x7x3,0.1,measured,x\n"
                            f"relu-input:7x7x3-output:7x7x3,{value},measured,x\n")
    with pytest.raises(LatencyError, match=r"bad\.csv:3"):
        LatencyTable.load(path)


def test_duplicate_keys_unknown_columns_and_field_mismatch(tmp_path):
    dup = _write(tmp_path, "key,latency_ms,source,device\n"
                           "add-input:7x7x3-output:7x7x3,0.1,measured,x\n"
                           "add-input:7x7x3-output:7x7x3,0.2,measured,x\n")
    with pytest.raises(LatencyError, match="already on line 2"):
        LatencyTable.load(dup)
    with pytest.raises(LatencyError, match="unknown column 'colour'"):
        LatencyTable.load(_write(tmp_path, "key,latency_ms,source,device,colour\n"))
    mismatch = _write(tmp_path, "key,op,latency_ms,source,device\n"
                                "add-input:7x7x3-output:7x7x3,relu,0.1,measured,x\n")
    with pytest.raises(LatencyError, match=":2: column op"):
        LatencyTable.load(mismatch)
    with pytest.raises(LatencyError, match="source"):
        LatencyTable.load(_write(tmp_path, "key,latency_ms,source,device\n"
                                           "add-input:7x7x3-output:7x7x3,0.1,guessed,x\n"))


def test_published_yaml_imports_and_round_trips(tmp_path):
    src = tmp_path / "pixel.yaml"
    src.write_text(PIXEL_EXCERPT)
    t = import_published(src, "proxyless", "pixel1")
    assert len(t) == 4
    row = t.lookup(OpKey("Conv", (224, 224, 3), (112, 112, 32)))
    assert row.latency_ms == 4.397037934668071 and row.samples == 949
    assert row.std_ms == math.sqrt(0.1562765530967112) and row.source == "imported"
    # load -> save -> load unchanged
    t.save(tmp_path / "pixel.csv")
    assert LatencyTable.load(tmp_path / "pixel.csv") == t
    # export in the published format and import again: same rows
    export_published(t, tmp_path / "again.yaml", "proxyless")
    t2 = import_published(tmp_path / "again.yaml", "proxyless", "pixel1")
    assert [(r.key, r.latency_ms, r.std_ms, r.samples) for r in t2] == sorted(
        (r.key, r.latency_ms, r.std_ms, r.samples) for r in t)


def test_import_errors_name_the_line(tmp_path):
    unknown = tmp_path / "u.yaml"
    unknown.write_text(PIXEL_EXCERPT + "MBConv-input:7x7x3-output:7x7x3:\n  mean: 1.0\n")
    with pytest.raises(LatencyError, match=r"u\.yaml:17: .*unknown layer type 'MBConv'"):
        import_published(unknown, "proxyless", "pixel1")
    bad = tmp_path / "b.yaml"
    bad.write_text(PIXEL_EXCERPT.replace("mean: 5.608820512820512", "mean: fast"))
    with pytest.raises(LatencyError, match=r"b\.yaml:13: .*mean must be a finite number"):
        import_published(bad, "proxyless", "pixel1")
    extra = tmp_path / "e.yaml"
    extra.write_text(PIXEL_EXCERPT.replace("count: 156", "count: 156\n  median: 5.0"))
    with pytest.raises(LatencyError, match=r"e\.yaml:13: .*unknown field\(s\) median"):
        import_published(extra, "proxyless", "pixel1")
    dup = tmp_path / "d.yaml"
    dup.write_text(PIXEL_EXCERPT + "Conv_1-input:7x7x320-output:7x7x1280:\n  mean: 1.0\n")
    with pytest.raises(LatencyError, match=r"d\.yaml:17: .*already on line 5"):
        import_published(dup, "proxyless", "pixel1")


def test_fbnet_table_with_plain_numbers(tmp_path):
    src = tmp_path / "fb.yaml"
    src.write_text("ConvBlock_H32_W32_Cin16_Cout24_exp3_kernel5_stride2_group1: 0.52\n"
                   "FC_Cin1504_Cout100: 0.03\n")
    t = import_published(src, "fbnet", "edgegpu")
    assert [r.latency_ms for r in t] == [0.52, 0.03]
    assert all(r.std_ms is None and r.samples is None for r in t)


def test_summary_counts_ops_sources_and_spread():
    s = _table().summary()
    assert s["rows"] == 3 and s["ops"] == {"add": 1, "conv": 1, "linear": 1}
    assert s["sources"] == {"measured": 3}
    assert s["relative_spread"]["median"] == pytest.approx(0.2)
