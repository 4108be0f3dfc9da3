"""LatencyModel: batched predict vs a per-architecture dict loop, missing keys, E[LAT]."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import hwsim
from hwsim.errors import LatencyError, MissingKeyError, SearchError
from hwsim.latency.table import LatencyRow, LatencyTable
from hwsim.search import LatencyModel, expected_latency, get_space, masked_logits, space_keys

SPACES = ("proxyless", "mnasnet", "fbnet", "nb201")


def _table(space, seed: int = 0, drop: int = 0) -> tuple[LatencyTable, dict]:
    """A constructed table (source modeled) with random latencies for every key of space;
    the first ``drop`` non-fixed keys are left out."""
    rng = np.random.default_rng(seed)
    keys = space_keys(space)
    fixed = set(space.fixed_keys())
    dropped = [k for k in keys if k not in fixed][:drop]
    values = {k: float(rng.uniform(0.01, 2.0)) for k in keys if k not in dropped}
    table = LatencyTable.from_rows(
        LatencyRow(key=k, latency_ms=v, source="modeled", device="test", note="random")
        for k, v in values.items())
    return table, values


@pytest.mark.parametrize("name", SPACES)
def test_batched_predict_equals_a_per_architecture_dict_loop(name: str) -> None:
    space = get_space(name)
    table, values = _table(space)
    lm = LatencyModel("test", space, table=table)
    archs = space.sample(300, seed=1)
    # the reference: published-code style, one Python sum over the ops of each architecture
    ref = np.array([math.fsum(values[op.key] for op in space.ops(a)) for a in archs])
    np.testing.assert_allclose(lm.predict(archs), ref, rtol=1e-12)
    for dtype in (np.int8, np.int16, np.int32):
        np.testing.assert_array_equal(lm.predict(archs.astype(dtype)), lm.predict(archs))
    assert lm.report()["by_source"]["modeled"] == len(values)


def test_predict_rejects_bad_architectures() -> None:
    space = get_space("proxyless")
    lm = LatencyModel("test", space, table=_table(space)[0])
    archs = space.sample(5, seed=0)
    archs[3, 8] = space.choices[8].index("zero")  # first block of stage 3
    with pytest.raises(SearchError, match="row 3, slot 8"):
        lm.predict(archs)
    archs[3, 8] = 7
    with pytest.raises(SearchError, match="row 3, slot 8"):
        lm.predict(archs)
    with pytest.raises(SearchError, match=r"\(n, 21\)"):
        lm.predict(archs[:, :20])
    with pytest.raises(SearchError, match="integers"):
        lm.predict(archs.astype(float))


def test_missing_keys_are_reported_never_zero() -> None:
    space = get_space("fbnet")
    table, values = _table(space, drop=3)
    missing = [k for k in space_keys(space) if k not in values]
    with pytest.raises(MissingKeyError, match="3 key") as err:
        LatencyModel("test", space, table=table)
    assert str(missing[0]) in str(err.value)

    lm = LatencyModel("test", space, table=table, strict=False)
    assert set(lm.missing_keys) == set(missing)
    archs = space.sample(200, seed=2)
    uses = np.array([any(op.key in set(missing) for op in space.ops(a)) for a in archs])
    assert uses.any() and not uses.all()
    ok = archs[~uses]
    np.testing.assert_allclose(
        lm.predict(ok), [math.fsum(values[op.key] for op in space.ops(a)) for a in ok])
    with pytest.raises(MissingKeyError, match="without latency"):
        lm.predict(archs)

    calls = []

    def fallback(key):  # noqa: ANN001, ANN202
        calls.append(key)
        return 7.0

    lm = LatencyModel("test", space, table=table, fallback=fallback)
    assert set(calls) == set(missing)
    assert lm.report()["by_source"]["fallback"] == 3
    a = archs[uses][0]
    want = math.fsum(values.get(op.key, 7.0) for op in space.ops(a))
    assert lm.predict(a)[0] == pytest.approx(want, rel=1e-12)


def test_modeled_device_and_missing_host_table(tmp_path, monkeypatch) -> None:
    space = get_space("proxyless")
    lm = hwsim.LatencyModel(device="tensorrt", space=space)
    assert lm.report()["by_source"]["modeled"] == len(space_keys(space))
    assert (lm.predict(space.sample(10)) > 0).all()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HWSIM_LUT_PATH", str(tmp_path))
    table, _ = _table(space)
    from hwsim.latency.table import find_table

    if find_table("host-torch") is None:
        with pytest.raises(LatencyError, match="no latency table for 'host-torch'"):
            LatencyModel("host-torch", space)
    table.save(tmp_path / "host-torch.csv")
    assert LatencyModel("host-torch", space).report()["source"].endswith("host-torch.csv")


@pytest.mark.parametrize("name", ("proxyless", "fbnet"))
def test_gradient_of_expected_latency_is_the_table_entries(name: str) -> None:
    space = get_space(name)
    table, values = _table(space, seed=4)
    lm = LatencyModel("test", space, table=table)
    gen = torch.Generator().manual_seed(0)
    alpha = torch.randn(space.n_slots, space.n_ops, generator=gen, dtype=torch.float64)
    probs = torch.softmax(masked_logits(space, alpha), -1).requires_grad_()
    e = expected_latency(lm, probs)
    e.backward()
    analytic = np.zeros((space.n_slots, space.n_ops))
    for s in range(space.n_slots):
        for c in np.flatnonzero(space.mask[s]):
            key = (space.block_key(s, c) if name == "proxyless" else space.layer_key(s, c))
            identity = key is None or (key.op == "Skip" and key.input == key.output)
            analytic[s, c] = 0.0 if identity else values[key]
    np.testing.assert_allclose(probs.grad.numpy(), analytic, rtol=1e-12)
    fixed = math.fsum(values[k] for k in space.fixed_keys())
    expected = fixed + float((probs.detach().numpy() * analytic).sum())
    assert float(e.detach()) == pytest.approx(expected, rel=1e-12)


def test_expected_latency_of_nb201_is_the_exact_expectation() -> None:
    space = get_space("nb201")
    table, values = _table(space, seed=5)
    lm = LatencyModel("test", space, table=table)
    gen = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(6, 5, generator=gen, dtype=torch.float64), -1)
    p = probs.numpy()
    archs = np.array(list(itertools.product(range(5), repeat=6)))
    weight = np.prod(p[np.arange(6)[None, :], archs], axis=1)
    exact = float((weight * lm.predict(archs)).sum())
    assert float(expected_latency(lm, probs)) == pytest.approx(exact, rel=1e-10)


def test_expected_latency_refuses_mass_on_forbidden_ops() -> None:
    space = get_space("proxyless")
    lm = LatencyModel("test", space, table=_table(space)[0])
    probs = torch.softmax(torch.zeros(space.n_slots, space.n_ops), -1)
    with pytest.raises(SearchError, match="masked_logits"):
        expected_latency(lm, probs)
    with pytest.raises(SearchError, match="shape"):
        expected_latency(lm, probs[:, :6])
