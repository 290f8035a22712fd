"""`nuwa samples merge`: join the shard folders of a sharded `nuwa generate` (nuwa.core.sample_folders.merge)."""
from __future__ import annotations

import argparse
from pathlib import Path

from nuwa.core.sample_folders import merge


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("samples", help="sample folders: join the shards of a sharded `nuwa generate`")
    cmds = p.add_subparsers(dest="samples_command", required=True, metavar="COMMAND")
    m = cmds.add_parser("merge", help="join `nuwa generate --shard I/N` folders into one sample folder",
                        description="join the N shard folders of one sample set into the folder one process writes")
    m.add_argument("--out", required=True, type=Path, help="sample folder to write (replaced atomically)")
    m.add_argument("shards", nargs="+", type=Path, help="the shard folders, any order")
    m.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    print(merge(args.shards, args.out))
    return 0
