"""`nuwa data render|preview WORLD --out DIR`: write a dataset, or a few preview samples."""
from __future__ import annotations

import argparse

from nuwa.core.config import add_config_args, config_from_args
from nuwa.data.config import WORLDS


def _plan(args: argparse.Namespace):
    from nuwa.data import make_plan

    cfg = config_from_args(args)
    seed = cfg.get("seed", 0) if args.seed is None else args.seed
    return make_plan(args.world, cfg, int(seed))


def render(args: argparse.Namespace) -> int:
    from nuwa.data import write_dataset

    counts = write_dataset(_plan(args), args.out)
    print(f"{args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def preview(args: argparse.Namespace) -> int:
    from nuwa.data import write_preview

    names = write_preview(_plan(args), args.out, args.n)
    print(f"{args.out}: {len(names)} samples + captions.txt")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="render procedural worlds or import real data")
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    for name, func, help_ in (("render", render, "write a dataset in the layout of docs/contracts.md"),
                              ("preview", preview, "write a few test samples as PNG/GIF + captions.txt")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("world", choices=WORLDS)
        p.add_argument("--out", required=True, help="output directory (replaced atomically)")
        p.add_argument("--seed", type=int, default=None, help="seed (default: the config's seed)")
        if name == "preview":
            p.add_argument("--n", type=int, default=8, help="number of samples")
        add_config_args(p)
        p.set_defaults(func=func)
