"""Accuracy of a mixed-precision policy under the device's own numerics (HAQ's reward input).

A policy gives each quantizable layer (``haq_cost.quantizable_layers``) a pair (w, a): w-bit
weights and a-bit **input** activations (HAQ's convention). The emulator is told per step
(``Emulator(layer_precisions=...)``): the layer's step gets weight precision ``int<w>``; the
step producing the layer's input tensor (found through pass-through steps such as reshape or
maxpool) gets activation precision ``int<a>``. Tensors no layer reads (the logits, a projection
output only an add reads) and graph inputs keep ``base_precision``.

``accuracy(policy)``: calibrate the emulator, optionally fine-tune (HAQ: one epoch, SGD lr 1e-3,
momentum 0.9) a fake-quant copy of the graph with the emulator's qparams held fixed for the epoch
(re-calibrated before every further epoch) and a straight-through estimator
(``fake_quant_net``), put the fine-tuned weights back into the graph, calibrate again and run
the emulator: the accuracy is what the device's numerics give.
Deterministic: the fine-tune's batch order comes from ``seed`` and the policy only, and the
fine-tune runs on one torch thread whatever the caller's setting. (Float sums in training depend
on the thread count, and numba's first parallel kernel launch resets torch's OpenMP thread
count: without the fixed count, a policy's accuracy depended on which evaluations ran before it
in the process.)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from hwsim.emulate.emulator import Emulator, plan_steps
from hwsim.emulate.float_reference import run_float
from hwsim.errors import SearchError
from hwsim.graph.ir import Graph
from hwsim.quant.device import Device
from hwsim.search.fake_quant_net import FakeQuantNet, with_weights
from hwsim.search.haq_cost import QuantLayer

Policy = Sequence[tuple[int, int]]


@dataclass(frozen=True, eq=False)
class SearchData:
    """Arrays for the search: fine-tune (train), reward (val), report (test), calibration."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    calib_x: np.ndarray


def input_producers(graph: Graph, layers: Sequence[QuantLayer]) -> list[str | None]:
    """Per layer, the step whose output qparams its input uses (None: a graph input)."""
    steps = plan_steps(graph)
    by_output = {s.output: s for s in steps}
    passing = {s.output for s in steps if s.fused is None and s.node.op.value in
               ("maxpool", "reshape", "channel_shuffle", "relu")}
    out: list[str | None] = []
    for layer in layers:
        tensor = layer.input_tensor
        while tensor in passing:
            tensor = by_output[tensor].node.inputs[0]
        if tensor in graph.inputs:
            out.append(None)
        elif tensor in by_output:
            out.append(by_output[tensor].name)
        else:
            raise SearchError(f"layer {layer.name!r}: its input {tensor!r} is not the output of "
                              "an emulated step (a fused activation's input?)")
    return out


def layer_precisions(graph: Graph, layers: Sequence[QuantLayer], policy: Policy,
                     base_bits: int) -> dict[str, tuple[str | None, str | None]]:
    """The emulator's ``layer_precisions`` for ``policy`` (module docstring)."""
    if len(policy) != len(layers):
        raise SearchError(f"policy has {len(policy)} layers, the model {len(layers)}")
    producers = input_producers(graph, layers)
    w_prec: dict[str, str] = {}
    a_prec: dict[str, str] = {}
    for layer, (w, a), prod in zip(layers, policy, producers, strict=True):
        w_prec[layer.name] = f"int{w}"
        if prod is None:
            if a != base_bits:
                raise SearchError(f"layer {layer.name!r} reads a graph input, which is quantized "
                                  f"at the base {base_bits} bits; its activation bits must be "
                                  f"{base_bits}, got {a}")
            continue
        if prod in a_prec and a_prec[prod] != f"int{a}":
            raise SearchError(f"layers reading the output of {prod!r} ask for different "
                              f"activation bits ({a_prec[prod]} and int{a}); tie them")
        a_prec[prod] = f"int{a}"
    return {name: (w_prec.get(name), a_prec.get(name)) for name in {**w_prec, **a_prec}}


def _correct(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.argmax(logits.reshape(len(y), -1), axis=1) == y


def _top1(logits: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(_correct(logits, y)))


def _nll(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood (nats) of the labels under softmax(logits), in float64."""
    z = np.asarray(logits, dtype=np.float64).reshape(len(y), -1)
    zmax = z.max(axis=1, keepdims=True)
    lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(y)), y]))


FINETUNE_TORCH_THREADS = 1


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block on ``n`` torch threads; the caller's count is restored afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class PolicyEvaluator:
    """Accuracy of policies on ``device`` (see module docstring). Accuracies are fractions."""

    def __init__(self, graph: Graph, device: Device, layers: Sequence[QuantLayer],
                 data: SearchData, base_precision: str = "int8", finetune_epochs: int = 1,
                 finetune_lr: float = 1e-3, batch_size: int = 64, seed: int = 0) -> None:
        self.graph = graph
        self.device = device
        self.layers = list(layers)
        self.data = data
        self.base_precision = base_precision
        self.base_bits = int(base_precision.removeprefix("int"))
        self.finetune_epochs = finetune_epochs
        self.finetune_lr = finetune_lr
        self.batch_size = batch_size
        self.seed = seed
        if finetune_epochs < 0:
            raise SearchError(f"finetune_epochs must be >= 0, got {finetune_epochs}")
        # the last fine-tune (graph, running top-1, running NLL): the val and test accuracy of
        # one policy share a fine-tune
        self._last_finetune: tuple[tuple[tuple[int, int], ...],
                                   tuple[Graph, float, float]] | None = None

    def fp_accuracy(self, split: str = "val") -> float:
        return self.fp_evaluate(split)[0]

    def fp_evaluate(self, split: str = "val") -> tuple[float, float]:
        """(top-1 accuracy, mean NLL in nats) of the float model on ``split``."""
        x, y = self._split(split)
        logits = run_float(self.graph, x)[self.graph.outputs[0]]
        return _top1(logits, y), _nll(logits, y)

    def _split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        d = self.data
        splits = {"val": (d.val_x, d.val_y), "test": (d.test_x, d.test_y),
                  "train": (d.train_x, d.train_y)}
        if split not in splits:
            raise SearchError(f"unknown split {split!r}; allowed: {', '.join(splits)}")
        return splits[split]

    def emulator(self, graph: Graph, policy: Policy) -> Emulator:
        lp = layer_precisions(self.graph, self.layers, policy, self.base_bits)
        return Emulator(graph, self.device, self.base_precision, lp).calibrate(self.data.calib_x)

    def finetuned_graph(self, policy: Policy) -> Graph:
        """The graph after the STE fine-tune of ``policy`` (the graph itself with 0 epochs)."""
        if self.finetune_epochs == 0:
            return self.graph
        return self._finetuned(policy)[0]

    def finetune_running(self, policy: Policy) -> tuple[float, float]:
        """(top-1 fraction, NLL in nats) of the fine-tune's fake-quant network on its own
        training batches while it trains (each epoch's mean over its images, taken before each
        batch's update; the best epoch: highest top-1, lowest NLL). HAQ's released code rewards
        this top-1 (``_finetune`` returns it) against the float model's on the same images
        (:meth:`fp_evaluate` with ``"train"``). Needs ``finetune_epochs`` >= 1."""
        if self.finetune_epochs == 0:
            raise SearchError("finetune_running needs finetune_epochs >= 1 (there is no "
                              "fine-tune to measure)")
        _, top1, nll = self._finetuned(policy)
        return top1, nll

    def _finetuned(self, policy: Policy) -> tuple[Graph, float, float]:
        key_policy = tuple((int(w), int(a)) for w, a in policy)
        if self._last_finetune is not None and self._last_finetune[0] == key_policy:
            return self._last_finetune[1]
        done = self._finetune(policy)
        self._last_finetune = (key_policy, done)
        return done

    def _finetune(self, policy: Policy) -> tuple[Graph, float, float]:
        """``finetune_epochs`` epochs of STE training; before each epoch the device's
        quantizers are calibrated afresh on the current weights (and calibration images) and
        held fixed for that epoch, with a fresh SGD state. Holding the first calibration over
        several epochs lets the weights drift from the scales they were trained under, and the
        re-calibrated device model then loses what the training gained (measured 2026-12-06:
        a 2..8-bit digits_mbv2 policy on bitfusion fell from 91.5 % to 41 % test top-1 over 10
        epochs with fixed scales, and stayed at 92-94.5 % with per-epoch calibration)."""
        key = [self.seed] + [b for pair in policy for b in pair]
        rng = np.random.default_rng(key)
        xs = torch.from_numpy(np.ascontiguousarray(self.data.train_x, np.float32))
        ys = torch.from_numpy(np.asarray(self.data.train_y, np.int64))
        graph = self.graph
        best_top1, best_nll = -math.inf, math.inf
        for _ in range(self.finetune_epochs):
            emu = self.emulator(graph, policy)
            wq = {name: lp.weight_qparams for name, lp in emu.layers_.items()}
            net = FakeQuantNet(graph, wq, dict(emu.qparams_))
            opt = torch.optim.SGD(net.parameters(), lr=self.finetune_lr, momentum=0.9)
            net.train()
            order = rng.permutation(len(xs))
            right, nll_sum = 0, 0.0
            with torch_threads(FINETUNE_TORCH_THREADS):  # set after the emulator's numba calls
                for start in range(0, len(xs), self.batch_size):
                    idx = torch.from_numpy(order[start:start + self.batch_size])
                    opt.zero_grad()
                    logits = net(xs[idx])
                    loss = F.cross_entropy(logits, ys[idx])
                    loss.backward()
                    opt.step()
                    right += int((logits.detach().argmax(1) == ys[idx]).sum())
                    nll_sum += float(loss.detach()) * len(idx)
            best_top1 = max(best_top1, right / len(xs))
            best_nll = min(best_nll, nll_sum / len(xs))
            graph = with_weights(self.graph, net.trained_weights())
        return graph, best_top1, best_nll

    def accuracy(self, policy: Policy, split: str = "val") -> float:
        """Top-1 accuracy (fraction) of ``policy`` on ``split`` under the device's numerics."""
        return self.evaluate(policy, split)[0]

    def evaluate(self, policy: Policy, split: str = "val") -> tuple[float, float]:
        """(top-1 accuracy, mean NLL in nats of the dequantized logits) of ``policy`` on
        ``split`` under the device's numerics, from one run."""
        logits, y = self._logits(policy, split)
        return _top1(logits, y), _nll(logits, y)

    def correct(self, policy: Policy, split: str = "test") -> np.ndarray:
        """Per image of ``split``: whether ``policy``'s top-1 under the device's numerics is
        the label (bool array; its mean is :meth:`accuracy`). For paired tests between
        policies on the same images."""
        return _correct(*self._logits(policy, split))

    def _logits(self, policy: Policy, split: str) -> tuple[np.ndarray, np.ndarray]:
        x, y = self._split(split)
        emu = self.emulator(self.finetuned_graph(policy), policy)
        return emu.run(x).output, y
