"""``hwsim search <sub-verb>``: NAS and mixed-precision searches.

Each sub-verb lives in its own module with ``register(subparsers)``; add the module name to
``_SUBVERB_MODULES`` to add a sub-verb (``hwsim search haq`` goes here the same way).
"""

from __future__ import annotations

import argparse
import importlib

_SUBVERB_MODULES = [
    "hwsim.cli.search_nas_cmd",
    "hwsim.cli.search_haq_cmd",
]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``search`` verb and its sub-verbs."""
    p = subparsers.add_parser("search", help="NAS / mixed-precision search",
                              description="Hardware-aware searches.")
    sub = p.add_subparsers(dest="search_command", metavar="SUBCOMMAND")
    for name in _SUBVERB_MODULES:
        importlib.import_module(name).register(sub)

    def _help(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=_help)
