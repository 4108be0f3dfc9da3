"""Throughput of batched latency queries and the cost of a differentiable E[LAT] (issue 6).

For the ProxylessNAS (21 slots x 7 ops) and FBNet (22 x 9) spaces, the same random
architectures are priced, side by side in one run, on ONE thread (numba, OpenMP, MKL and torch
threads set to 1 before anything is imported):

- ``dict loop``: the way published search code prices a candidate (ProxylessNAS
  ``LatencyEstimator``, HW-NAS-Bench's FBNet tabular model): per architecture, per block, look
  the block's key string up in a dict and sum. Key strings are precomputed per (slot, op), so
  this is the loop's best case (no string formatting inside it).
- ``ops() + dict``: the same, building the op list and keys of each architecture
  (``LatencyModel.predict_dict``); measured on fewer architectures.
- ``numpy gather``: ``unary[arange(n_slots), archs].sum(1) + fixed`` over int64 indices.
- ``LatencyModel.predict``: the library's numba kernel (bounds and NaN checks included), on
  int64 and int8 index arrays.

Every method's result is checked against ``LatencyModel.predict`` before it is timed. Latency
values come from a table of random latencies for every key of the space (throughput does not
depend on them). Times are CPU time of the benchmarking thread (``time.thread_time``; every
method runs in that one thread), so the time the shared machine gives to other jobs is not
counted, and each figure is the best of ``--repeats`` runs. Then E[LAT] =
``expected_latency(lm, softmax(alpha))`` forward + backward to the architecture logits for
the full ProxylessNAS space, per call, beside the floor of torch's autograd (one dot
product forward + backward), interleaved.

Prints ratios to the dict loop; asserts nothing about absolute times.

Usage: python tools/bench_latency_queries.py [--n 2000000] [--repeats 5]
"""

from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hwsim.latency.table import LatencyRow, LatencyTable  # noqa: E402
from hwsim.search import (  # noqa: E402
    LatencyModel,
    expected_latency,
    get_space,
    masked_logits,
    space_keys,
)


def random_model(space_name: str, seed: int = 0) -> LatencyModel:
    space = get_space(space_name)
    rng = np.random.default_rng(seed)
    table = LatencyTable.from_rows(
        LatencyRow(key=k, latency_ms=float(rng.uniform(0.01, 2.0)), source="modeled",
                   device="bench", note="random") for k in space_keys(space))
    return LatencyModel("bench", space, table=table)


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Least CPU time of this thread (s) over ``repeats`` calls of ``fn``."""
    best = math.inf
    for _ in range(repeats):
        t0 = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t0)
    return best


def dict_loop_pricer(lm: LatencyModel) -> Callable[[np.ndarray], np.ndarray]:
    """Published-code style: per architecture, sum dict[key string] over its blocks."""
    space = lm.space
    lut = {str(k): v for k, v in lm.key_ms.items()}
    fixed = math.fsum(lut[str(k)] for k in space.fixed_keys())
    # (slot, op) -> key strings of that choice ('' = runs nothing, e.g. zero / identity skip)
    keys = [[tuple(str(k) for k in (term.cell_keys((c,)) or ()))
             for c in range(int(space.n_choices[term.slots[0]]))]
            for term in space.cost_terms()]

    def price(archs: np.ndarray) -> np.ndarray:
        out = []
        for arch in archs.tolist():
            total = fixed
            for slot, c in enumerate(arch):
                for key in keys[slot][c]:
                    total += lut[key]
            out.append(total)
        return np.array(out)

    return price


def numpy_gather_pricer(lm: LatencyModel) -> Callable[[np.ndarray], np.ndarray]:
    unary, fixed = np.nan_to_num(lm.unary_ms), lm.fixed_ms
    slots = np.arange(lm.space.n_slots)

    def price(archs: np.ndarray) -> np.ndarray:
        return unary[slots, archs].sum(axis=1) + fixed

    return price


def bench_space(name: str, n: int, repeats: int) -> list[tuple[str, str, int, float]]:
    lm = random_model(name)
    if lm.terms:
        raise SystemExit(f"{name}: the dict loop here covers per-slot spaces only")
    archs64 = lm.space.sample(n, seed=1).astype(np.int64)
    archs8 = archs64.astype(np.int8)
    small = archs64[:max(1, n // 200)]
    ref = lm.predict(archs64)
    methods = [
        ("dict loop", dict_loop_pricer(lm), archs64[:max(1, n // 10)]),
        ("ops() + dict", lm.predict_dict, small),
        ("numpy gather", numpy_gather_pricer(lm), archs64),
        ("predict int64", lm.predict, archs64),
        ("predict int8", lm.predict, archs8),
    ]
    rows = []
    for label, fn, batch in methods:
        got = fn(batch)
        np.testing.assert_allclose(got, ref[:len(batch)], rtol=1e-9)
        seconds = best_time(lambda fn=fn, batch=batch: fn(batch), repeats)
        rows.append((name, label, len(batch), len(batch) / seconds))
    return rows


def bench_expected_latency(rounds: int, calls: int = 200) -> dict[str, float]:
    """Per-call microseconds (best burst of ``calls`` calls over ``rounds`` interleaved rounds)
    of E[LAT] forward + backward, and of the bare autograd floor (one dot product of the same
    size, forward + backward) measured in the same rounds."""
    lm = random_model("proxyless")
    space = lm.space
    alpha = torch.zeros(space.n_slots, space.n_ops, requires_grad=True)
    probs_leaf = torch.softmax(masked_logits(space, alpha.detach()), -1).requires_grad_()
    costs = torch.as_tensor(np.nan_to_num(lm.unary_ms).reshape(-1), dtype=torch.float32)

    def full() -> None:  # logits -> masked softmax -> E[LAT] -> backward to the logits
        for _ in range(calls):
            alpha.grad = None
            expected_latency(lm, torch.softmax(masked_logits(space, alpha), -1)).backward()

    def core() -> None:  # E[LAT] of given probabilities -> backward to them
        for _ in range(calls):
            probs_leaf.grad = None
            expected_latency(lm, probs_leaf).backward()

    def floor() -> None:  # the least autograd can do: dot(p, c) forward + backward
        for _ in range(calls):
            probs_leaf.grad = None
            torch.dot(probs_leaf.reshape(-1), costs).backward()

    core()
    # sanity: dE/dp is the table entries (tests/test_latency_model.py pins this exactly)
    np.testing.assert_allclose(probs_leaf.grad.numpy(), np.nan_to_num(lm.unary_ms), rtol=1e-6)
    best = {"full": math.inf, "core": math.inf, "floor": math.inf}
    fns = {"full": full, "core": core, "floor": floor}
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = min(best[name], best_time(fn, 1) / calls * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2_000_000, help="architectures per batch")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import numba

    numba.set_num_threads(1)
    print(f"threads: numba {numba.get_num_threads()}, torch {torch.get_num_threads()}; "
          f"thread CPU time, best of {args.repeats} runs; load1 {os.getloadavg()[0]:.2f}")
    print(f"{'space':<10} {'method':<14} {'archs':>9} {'archs/s':>12} {'x dict loop':>11}")
    for name in ("proxyless", "fbnet"):
        rows = bench_space(name, args.n, args.repeats)
        base = rows[0][3]
        for space, label, count, rate in rows:
            print(f"{space:<10} {label:<14} {count:>9} {rate:>12,.0f} {rate / base:>11.2f}")
    e = bench_expected_latency(rounds=10 * args.repeats)
    print("E[LAT] proxyless (21 x 7 probabilities), float32, forward + backward, per call:")
    for label, key in (("from the logits (masked softmax included)", "full"),
                       ("from the probabilities", "core"),
                       ("autograd floor: dot(p, c) fwd+bwd", "floor")):
        print(f"  {label:<42} {e[key]:7.1f} us  ({e[key] / e['floor']:.2f} x floor)")


if __name__ == "__main__":
    main()
