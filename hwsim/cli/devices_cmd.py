"""``hwsim devices`` (table of all device specs) and ``hwsim devices show NAME`` (full detail)."""

from __future__ import annotations

import argparse

from hwsim.cli.text_table import format_table
from hwsim.devices.registry import load_device_spec
from hwsim.devices.summary import device_detail, device_rows


def _list(args: argparse.Namespace) -> int:
    rows = [["NAME", "TITLE", "LIBRARY", "PRECISIONS", "SCHEME"]]
    for row in device_rows():
        for i, (prec, scheme) in enumerate(row.schemes):
            head = [row.name, row.title, row.library, ",".join(row.precisions)] if i == 0 \
                else ["", "", "", ""]
            rows.append([*head, f"{prec}: {scheme}"])
    print(format_table(rows))
    return 0


def _show(args: argparse.Namespace) -> int:
    spec = load_device_spec(args.name)
    out: list[str] = []
    for heading, lines in device_detail(spec):
        out.append(heading)
        out.extend(lines)
        out.append("")
    print("\n".join(out).rstrip())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``devices`` verb (and its ``show`` sub-verb)."""
    parser = subparsers.add_parser(
        "devices", help="list device specs, or show one in full",
        description="Without arguments: a table of every device spec with its precisions and "
                    "a scheme summary per precision. 'show NAME': the full numerics of every "
                    "precision, sources, assumptions, corrections and performance figures.")
    parser.set_defaults(func=_list)
    sub = parser.add_subparsers(dest="devices_command", metavar="SUBCOMMAND")
    show = sub.add_parser("show", help="full spec of one device")
    show.add_argument("name", help="device name (see 'hwsim devices') or a path to a YAML spec")
    show.set_defaults(func=_show)
