"""Named search spaces: ``get_space(name, **options)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hwsim.errors import SearchError
from hwsim.search.space import SearchSpace


def _proxyless(**kw: Any) -> SearchSpace:
    from hwsim.search.proxyless_space import ProxylessSpace

    return ProxylessSpace(**kw)


def _proxyless_digits(**kw: Any) -> SearchSpace:
    from hwsim.search.proxyless_space import ProxylessSpace

    # A small ProxylessNAS-style space for scikit-learn's digits at their native 8x8: 9
    # searchable blocks over 3 stages (8x8, 4x4, 2x2); a training step of batch 64 takes
    # ~0.15 s on one core of this machine (at 16x16 upsampled it took ~0.4 s).
    options = dict(name="proxyless-digits", input_size=8, in_channels=1, stem=16, stem_stride=1,
                   first_block=16, widths=(24, 48, 96), n_blocks=(3, 3, 3), strides=(1, 2, 2),
                   head=192, classes=10)
    options.update(kw)
    return ProxylessSpace(**options)


def _mnasnet(**kw: Any) -> SearchSpace:
    from hwsim.search.mnasnet_space import MnasNetSpace

    return MnasNetSpace(**kw)


def _fbnet(**kw: Any) -> SearchSpace:
    from hwsim.search.fbnet_space import FBNetSpace

    return FBNetSpace(**kw)


def _nb201(**kw: Any) -> SearchSpace:
    from hwsim.search.nb201_space import NB201Space

    return NB201Space(**kw)


SPACES: dict[str, Callable[..., SearchSpace]] = {
    "proxyless": _proxyless,
    "proxyless-digits": _proxyless_digits,
    "mnasnet": _mnasnet,
    "fbnet": _fbnet,
    "nb201": _nb201,
}


def get_space(name: str, **options: Any) -> SearchSpace:
    """The search space ``name`` (proxyless, proxyless-digits, mnasnet, fbnet, nb201); options
    go to its constructor (e.g. ``get_space("proxyless", widths=(32, 40, 80, 96, 192, 320))``)."""
    maker = SPACES.get(name)
    if maker is None:
        raise SearchError(f"unknown search space {name!r}; known: {', '.join(SPACES)}")
    try:
        return maker(**options)
    except TypeError as err:
        raise SearchError(f"search space {name!r}: bad option: {err}") from None
