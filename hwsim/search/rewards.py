"""NAS latency rewards and losses (DESIGN.md B8); latencies and targets in milliseconds.

- MnasNet (Tan et al., CVPR'19): reward = ACC * (LAT / T) ** w, w = alpha if LAT <= T else
  beta; soft constraint alpha = beta = -0.07, hard constraint alpha = 0, beta = -1.
- ProxylessNAS (Cai et al., ICLR'19; ``mit-han-lab/proxylessnas`` search code): expected
  latency E[LAT] = fixed + sum over slots of sum_i p_i * F(op_i) (dE/dp_i = F(op_i), the table
  entry), the ``mul#log`` loss alpha * CE * (log E[LAT] / log T) ** beta (alpha 0.2, beta 0.3),
  the ``add#linear`` loss CE + lambda * (E[LAT] - T) / T (lambda 0.1), and the RL reward
  acc * (T / LAT) ** 0.1.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwsim.errors import SearchError

MNAS_SOFT = (-0.07, -0.07)
MNAS_HARD = (0.0, -1.0)


def _positive(value: Any, name: str) -> None:
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise SearchError(f"{name} must be finite and > 0 (milliseconds), got {value!r}")


def mnas_reward(acc: Any, lat_ms: Any, target_ms: float, alpha: float = -0.07,
                beta: float = -0.07) -> Any:
    """ACC * (LAT / T) ** w with w = alpha if LAT <= T else beta (scalars or arrays)."""
    _positive(lat_ms, "lat_ms")
    _positive(target_ms, "target_ms")
    acc_arr = np.asarray(acc, dtype=np.float64)
    if not np.all(np.isfinite(acc_arr)) or np.any(acc_arr < 0):
        raise SearchError(f"acc must be finite and >= 0, got {acc!r}")
    ratio = np.asarray(lat_ms, dtype=np.float64) / float(target_ms)
    w = np.where(ratio <= 1.0, alpha, beta)
    out = acc_arr * ratio ** w
    return float(out) if out.ndim == 0 else out


def proxyless_rl_reward(acc: Any, lat_ms: Any, target_ms: float, exponent: float = 0.1) -> Any:
    """ProxylessNAS REINFORCE reward acc * (T / LAT) ** exponent."""
    _positive(lat_ms, "lat_ms")
    _positive(target_ms, "target_ms")
    out = np.asarray(acc, dtype=np.float64) * (float(target_ms) / np.asarray(
        lat_ms, dtype=np.float64)) ** exponent
    return float(out) if out.ndim == 0 else out


def expected_latency(lm: Any, probs: Any) -> Any:
    """E[LAT] in ms under independent per-slot choice probabilities ``probs`` (torch tensor
    (n_slots, n_ops)); differentiable. Probabilities of ops a slot does not allow must be 0
    (mask the logits with ``masked_logits``); for per-slot spaces dE/dp = the table entries."""
    import torch

    space = lm.space
    if not isinstance(probs, torch.Tensor) or probs.shape != (space.n_slots, space.n_ops):
        raise SearchError(f"{space.name}: probs must be a torch tensor of shape "
                          f"({space.n_slots}, {space.n_ops}), got "
                          f"{getattr(probs, 'shape', type(probs).__name__)}")
    plan = _torch_plan(lm, probs.dtype, probs.device)
    flat = probs.reshape(-1)
    if plan.invalid is not None and _forbidden_mass(probs.detach(), plan) > 1e-12:
        raise SearchError(f"{space.name}: probs put mass on ops a slot does not allow "
                          f"(e.g. zero as a stage's first block); mask them: "
                          f"torch.softmax(hwsim.search.masked_logits(space, alpha), -1)")
    total = torch.dot(flat, plan.unary) + lm.fixed_ms
    for term, cost in zip(lm.terms, plan.terms, strict=True):
        operands: list[Any] = [cost, list(range(len(term.slots)))]
        for axis, s in enumerate(term.slots):
            operands += [probs[s, :cost.shape[axis]], [axis]]
        total = total + torch.einsum(*operands, [])
    return total


@dataclass(frozen=True)
class _TorchPlan:
    unary: Any          # (n_slots * n_ops,) costs, 0 where not allowed
    terms: list[Any]    # term cost tensors
    invalid: Any        # (n_slots * n_ops,) 1.0 where the op is not allowed, or None
    invalid_idx: Any    # flat indices of the ops not allowed (numpy)
    invalid_idx_list: list[int]


def _forbidden_mass(held: Any, plan: _TorchPlan) -> float:
    """Largest |p| on an op its slot does not allow. This runs every search step: on CPU
    float tensors the tensor's memory is read in place through numpy, and a few forbidden
    entries (ProxylessNAS: one per stage) are read one by one, which measured cheaper here
    between torch calls than a numpy reduction (tools/bench_latency_queries.py)."""
    import torch

    if held.device.type == "cpu" and held.dtype in (torch.float32, torch.float64):
        flat = held.numpy().reshape(-1)
        if len(plan.invalid_idx) <= 32:
            return max(abs(float(flat[i])) for i in plan.invalid_idx_list)
        return float(np.abs(flat[plan.invalid_idx]).max())
    return float(torch.dot(held.reshape(-1).abs(), plan.invalid))


def _torch_plan(lm: Any, dtype: Any, device: Any) -> _TorchPlan:
    import torch

    key = ("plan", dtype, str(device))
    cache = lm._torch_cache
    plan = cache.get(key)
    if plan is None:
        unary, terms = lm.torch_costs(dtype, device)
        invalid = ~lm.space.mask.reshape(-1)
        plan = _TorchPlan(unary.reshape(-1), terms,
                          torch.as_tensor(invalid, dtype=dtype, device=device)
                          if invalid.any() else None, np.flatnonzero(invalid),
                          np.flatnonzero(invalid).tolist())
        cache[key] = plan
    return plan


_FORBIDDEN: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def masked_logits(space: Any, alpha: Any) -> Any:
    """``alpha`` (n_slots, n_ops) with -inf where the slot does not allow the op."""
    import torch

    if tuple(alpha.shape) != space.mask.shape:
        raise SearchError(f"{space.name}: logits must have shape {space.mask.shape}, got "
                          f"{tuple(alpha.shape)}")
    per_device = _FORBIDDEN.setdefault(space, {})
    forbidden = per_device.get(str(alpha.device))
    if forbidden is None:  # built once per space and device (the mask is read-only)
        forbidden = torch.as_tensor(~space.mask, device=alpha.device)
        per_device[str(alpha.device)] = forbidden
    return alpha.masked_fill(forbidden, float("-inf"))


def mul_log_loss(ce: Any, expected_lat: Any, target: float, alpha: float = 0.2,
                 beta: float = 0.3) -> Any:
    """ProxylessNAS ``mul#log``: alpha * CE * (log E[LAT] / log T) ** beta.

    The ratio of logarithms depends on the unit: ProxylessNAS uses ms with T = 80; both
    latency and target must be > 1 in the unit passed (scale sub-millisecond targets, e.g. to
    microseconds, before calling)."""
    import torch

    if not target > 1.0:
        raise SearchError(f"mul#log needs a target > 1 in its unit (log T > 0), got {target}; "
                          f"pass latencies in a smaller unit (e.g. microseconds)")
    e = torch.as_tensor(expected_lat)
    if float(e.detach().min()) <= 1.0:
        raise SearchError(f"mul#log needs E[LAT] > 1 in the unit used, got {float(e)}")
    return alpha * ce * (torch.log(e) / math.log(target)) ** beta


def add_linear_loss(ce: Any, expected_lat: Any, target: float, lam: float = 0.1) -> Any:
    """ProxylessNAS ``add#linear``: CE + lambda * (E[LAT] - T) / T."""
    _positive(target, "target")
    return ce + lam * (expected_lat - target) / target
