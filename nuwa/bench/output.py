"""What every benchmark command prints and writes: its table on stdout, ``--json`` and ``--markdown`` files."""
from __future__ import annotations

import argparse

from nuwa.core.io import write_json, write_text


def add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", default=None, metavar="OUT", help="also write the result as JSON")
    p.add_argument("--markdown", default=None, metavar="OUT", help="also write the table as Markdown")


def emit(result: dict, table: str, args: argparse.Namespace) -> int:
    """Print ``table``; write ``result`` to ``args.json`` and ``table`` to ``args.markdown`` where given."""
    print(table)
    if args.json:
        write_json(args.json, result)
    if args.markdown:
        write_text(args.markdown, table + "\n")
    return 0
