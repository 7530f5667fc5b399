"""Command-line options shared by every subcommand that builds an `Engine` (`rethined inpaint`, `demo`, `video`,
`batch`): --style and repeatable --set KEY=VALUE, turned into `Engine` keyword arguments."""
from __future__ import annotations

import argparse

from .config import STYLES, parse_settings


def add_engine_settings(parser: argparse.ArgumentParser) -> None:
    """--style and --set, the Engine's settings, on a subcommand that inpaints (its --device and --weights: its own)."""
    parser.add_argument("--style", choices=sorted(STYLES), default=None,
                        help="inference style (default: the weights' own, realistic; docs/quality.md#settings)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="one Engine setting, e.g. --set copy_detail_weight=0.03 (repeatable; "
                        "docs/quality.md#settings)")


def engine_kwargs(args: argparse.Namespace) -> dict:
    """`Engine` keyword arguments of a subcommand: --device and --weights where given, --style, the --set settings."""
    try:
        settings = parse_settings(args.settings)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    given = (("device", args.device), ("weights", args.weights), ("style", args.style))
    return {**{key: value for key, value in given if value is not None}, **settings}
