"""``hwsim`` command line: parse, call the library, print. Errors exit non-zero, no traceback."""

from __future__ import annotations

import argparse
import importlib
import sys

from hwsim.errors import HwsimError

# Each module defines ``register(subparsers)`` adding its verb; the handler is set with
# ``set_defaults(func=...)`` and returns an exit status.
_COMMAND_MODULES = [
    "hwsim.cli.devices_cmd",
    "hwsim.cli.emulate_cmd",
    "hwsim.cli.lut_cmd",
    "hwsim.cli.latency_cmd",
    "hwsim.cli.predictor_cmd",
    "hwsim.cli.search_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwsim",
        description="Hardware-aware quantization emulation and latency modeling.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except HwsimError as err:
        print(f"hwsim: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hwsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`: not an error of hwsim's
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
