"""`nuwa ...`: the console entry every workflow rule calls.

Each command group lives next to its logic and exposes ``register(subparsers)``; this module only
assembles them, sets up logging and turns :class:`nuwa.core.errors.UserError` into one line on stderr
and exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from nuwa.core.errors import UserError

OWN_LOGGERS = ("nuwa", "metrics", "baselines", "bench")  # log at INFO (DEBUG with --verbose)
# module path -> exposes register(subparsers); each adds one top-level command (group)
COMMANDS: list[str] = [
    "nuwa.data.cli",
    "nuwa.tokenizer.cli",
    "nuwa.commands.train",
    "nuwa.commands.generate",
    "nuwa.commands.samples",
    "metrics.cli",
    "nuwa.report.cli",
    "nuwa.commands.config",
    "nuwa.bench",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nuwa", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for path in COMMANDS:
        importlib.import_module(path).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks for the job; the others only warn
        level = logging.WARNING
    # the suite's own loggers at `level`; third-party ones (open_clip logs model creation at INFO on the
    # root logger) only warn unless --verbose, so a refused input stays one line on stderr
    logging.basicConfig(level=level if args.verbose else max(level, logging.WARNING),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
