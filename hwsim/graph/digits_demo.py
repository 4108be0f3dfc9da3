"""Demo models on scikit-learn's digits (8x8 grayscale, 10 classes), trained once and cached.

Two models:

- ``digits_cnn``: conv3x3(1->16)+BN+ReLU, conv3x3(16->32, stride 2)+BN+ReLU, a residual
  depthwise-separable block (depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN, add, ReLU), global
  average pool, linear 32->10. Input (N, 1, 8, 8).
- ``digits_mbv2``: a narrow MobileNetV2 (inverted residual blocks: expand 1x1, depthwise 3x3,
  project 1x1, ReLU6, residual adds) on the digits upsampled bilinearly to 16x16. Input
  (N, 1, 16, 16).

Pixels are scaled from 0..16 to [0, 1]. Split: the first 1437 images train, the last 360 test
(the dataset's order, no shuffling; no randomness in the split). Training is deterministic:
fixed seed, one thread, full-batch-order permutations from a seeded generator, fixed epochs;
the torch RNG state and thread count of the caller are restored afterwards.

Weights are cached as ``<cache>/<name>-v<version>.npz`` (numpy arrays only, no pickle, written
to a temporary file and renamed), where ``<cache>`` is ``$HWSIM_CACHE_DIR`` or
``platformdirs.user_cache_dir("hwsim")``. A cache file that cannot be read or does not match
the architecture is retrained and replaced.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import platformdirs
import torch
import torch.nn.functional as F
from torch import nn

from hwsim.errors import GraphError

N_TRAIN = 1437  # 1797 digits: first 1437 train, last 360 test
N_CALIB = 256   # calibration images: the first N_CALIB training images
_SEED = 0
_FORMAT_VERSION = 1


class DemoModel(NamedTuple):
    """A trained demo model (eval mode) with its calibration and test data (numpy)."""

    model: nn.Module
    calib_x: np.ndarray   # (N_CALIB, 1, H, W) float32 in [0, 1]
    test_x: np.ndarray    # (360, 1, H, W) float32 in [0, 1]
    test_y: np.ndarray    # (360,) int64 class labels
    fp32_accuracy: float  # top-1 of the float32 model on test_x


class DigitsCNN(nn.Module):
    """Small CNN for 8x8 digits with a depthwise-separable residual block."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False)
        self.bn_dw = nn.BatchNorm2d(32)
        self.pw = nn.Conv2d(32, 32, 1, bias=False)
        self.bn_pw = nn.BatchNorm2d(32)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        y = F.relu(self.bn_dw(self.dw(x)))
        y = self.bn_pw(self.pw(y))
        x = F.relu(x + y)
        return self.fc(torch.flatten(self.pool(x), 1))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: expand 1x1 + ReLU6, depthwise 3x3 + ReLU6, project 1x1 (linear)."""

    def __init__(self, cin: int, cout: int, expand: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        self.use_residual = stride == 1 and cin == cout
        self.expand = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid),
                                    nn.ReLU6())
        self.depthwise = nn.Sequential(
            nn.Conv2d(mid, mid, 3, stride=stride, padding=1, groups=mid, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU6())
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.use_residual else y


class DigitsMobileNetV2(nn.Module):
    """Narrow MobileNetV2 for 16x16 digits (for mixed-precision experiments)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(16), nn.ReLU6())
        self.blocks = nn.Sequential(
            InvertedResidual(16, 16, 2, 1),
            InvertedResidual(16, 24, 4, 2),
            InvertedResidual(24, 24, 4, 1),
            InvertedResidual(24, 32, 4, 2),
            InvertedResidual(32, 32, 4, 1),
        )
        self.head = nn.Sequential(nn.Conv2d(32, 64, 1, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class _Recipe(NamedTuple):
    build: Callable[[], nn.Module]
    image_size: int
    epochs: int
    lr: float
    version: int  # bump when the architecture or recipe changes (new cache file)


DEMO_MODELS: dict[str, _Recipe] = {
    "digits_cnn": _Recipe(DigitsCNN, 8, 30, 3e-3, 1),
    "digits_mbv2": _Recipe(DigitsMobileNetV2, 16, 20, 3e-3, 1),
}


def demo_cache_dir() -> Path:
    """``$HWSIM_CACHE_DIR`` if set, else the user's cache directory for hwsim."""
    env = os.environ.get("HWSIM_CACHE_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir("hwsim"))


def digits_images(image_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits in the dataset's order: x float32 (N, 1, S, S) in [0, 1], y int64.

    ``image_size`` 8 is the original; larger sizes are bilinear upsamplings
    (``torch.nn.functional.interpolate``, align_corners=False).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None]
    y = digits.target.astype(np.int64)
    if image_size != 8:
        x = F.interpolate(torch.from_numpy(x), size=(image_size, image_size), mode="bilinear",
                          align_corners=False).numpy()
    return x, y


def digits_data(image_size: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_x, train_y, test_x, test_y): the demo split of :func:`digits_images`."""
    x, y = digits_images(image_size)
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy (fraction in [0, 1]) of ``model`` in float32 on numpy inputs."""
    with torch.no_grad():
        pred = model(torch.from_numpy(np.ascontiguousarray(x, np.float32))).argmax(1).numpy()
    return float(np.mean(pred == y))


def train_demo_architecture(name: str, train_x: np.ndarray, train_y: np.ndarray) -> nn.Module:
    """A fresh ``name`` architecture trained with its demo recipe on the given images (eval
    mode, not cached): deterministic, as the demo models are. ``train_x`` (N, 1, S, S) float32
    at the recipe's image size; ``train_y`` (N,) int64 labels 0..9."""
    recipe = DEMO_MODELS.get(name)
    if recipe is None:
        raise GraphError(f"unknown demo model {name!r}; available: {', '.join(DEMO_MODELS)}")
    x = np.ascontiguousarray(train_x, np.float32)
    y = np.ascontiguousarray(train_y, np.int64)
    want = (1, recipe.image_size, recipe.image_size)
    if x.ndim != 4 or x.shape[1:] != want or y.shape != (len(x),) or len(x) == 0:
        raise GraphError(f"{name}: training images must be (N, {', '.join(map(str, want))}) "
                         f"with N labels, N > 0; got x {x.shape}, y {y.shape}")
    return _train(recipe, x, y)


def _train(recipe: _Recipe, train_x: np.ndarray, train_y: np.ndarray) -> nn.Module:
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        torch.set_num_threads(1)
        try:
            model = recipe.build()
            opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe.epochs)
            gen = torch.Generator().manual_seed(_SEED)
            xs, ys = torch.from_numpy(train_x), torch.from_numpy(train_y)
            model.train()
            for _ in range(recipe.epochs):
                order = torch.randperm(len(xs), generator=gen)
                for start in range(0, len(xs), 64):
                    idx = order[start:start + 64]
                    opt.zero_grad()
                    F.cross_entropy(model(xs[idx]), ys[idx]).backward()
                    opt.step()
                sched.step()
        finally:
            torch.set_num_threads(threads)
    return model.eval()


def _save(path: Path, model: nn.Module, meta: dict[str, object]) -> None:
    arrays = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    arrays["__meta__"] = np.array(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _load(path: Path, recipe: _Recipe) -> tuple[nn.Module, dict[str, object]] | None:
    """The cached model, or None when the file is missing, unreadable or does not fit."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["__meta__"]))
            state = {k: torch.from_numpy(data[k].copy()) for k in data.files if k != "__meta__"}
        model = recipe.build()
        model.load_state_dict(state, strict=True)
    except (OSError, ValueError, KeyError, RuntimeError, json.JSONDecodeError):
        return None
    if meta.get("format") != _FORMAT_VERSION:
        return None
    return model.eval(), meta


def demo_model(name: str = "digits_cnn", *, retrain: bool = False) -> DemoModel:
    """A trained demo model with calibration and test data; trains and caches on first use.

    ``name``: one of :data:`DEMO_MODELS`. ``retrain``: ignore the cache and train again.
    """
    recipe = DEMO_MODELS.get(name)
    if recipe is None:
        raise GraphError(f"unknown demo model {name!r}; available: {', '.join(DEMO_MODELS)}")
    train_x, train_y, test_x, test_y = digits_data(recipe.image_size)
    path = demo_cache_dir() / f"{name}-v{recipe.version}.npz"
    cached = None if retrain else _load(path, recipe)
    if cached is None:
        model = _train(recipe, train_x, train_y)
        meta: dict[str, object] = {"format": _FORMAT_VERSION, "name": name,
                                   "version": recipe.version, "torch": torch.__version__,
                                   "fp32_test_accuracy": accuracy(model, test_x, test_y)}
        try:
            _save(path, model, meta)
        except OSError as err:
            raise GraphError(f"cannot write the demo model cache {str(path)!r}: {err} (set "
                             "HWSIM_CACHE_DIR to a writable directory)") from err
    else:
        model, meta = cached
    for p in model.parameters():
        p.requires_grad_(False)
    return DemoModel(model, train_x[:N_CALIB].copy(), test_x, test_y,
                     accuracy(model, test_x, test_y))
