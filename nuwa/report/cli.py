"""`nuwa report ...`: tables, figures, claims and provenance from the files the workflow wrote."""
from __future__ import annotations

import argparse
from pathlib import Path

TABLE_CHOICES = ("table1", "table2", "table3", "table4", "table5", "table6", "table7a", "table7b", "table7c")


def cmd_table(args: argparse.Namespace) -> int:
    from nuwa.core.config import REPO_ROOT, config_from_args, load_config
    from nuwa.plan import Plan
    from nuwa.report import tables

    cfg = config_from_args(args)
    if args.table == "table1":
        paper = args.paper_config or [REPO_ROOT / "config" / "config.yaml", REPO_ROOT / "config" / "paper.yaml"]
        tables.write_table1(load_config(paper), cfg, args.out)
    else:
        tables.write_table(Plan(cfg), args.table, args.out)
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.md')}")
    return 0


def cmd_figure(args: argparse.Namespace) -> int:
    from nuwa.core.config import config_from_args
    from nuwa.plan import Plan
    from nuwa.report.figures import write_figure

    write_figure(Plan(config_from_args(args)), args.figure, args.out)
    print(f"wrote {args.out}")
    return 0


def cmd_claims(args: argparse.Namespace) -> int:
    from nuwa.core.config import config_from_args
    from nuwa.plan import Plan
    from nuwa.report.claims import write_claims

    write_claims(Plan(config_from_args(args)), args.out)
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.md')}")
    return 0


def cmd_provenance(args: argparse.Namespace) -> int:
    from nuwa.core.config import config_from_args
    from nuwa.report.provenance import write_provenance

    write_provenance(config_from_args(args), args.out)
    print(f"wrote {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from nuwa.core.config import add_config_args

    parser = sub.add_parser("report", help="tables, figures, claims and provenance of the paper's reproduction")
    commands = parser.add_subparsers(dest="report_command", required=True, metavar="COMMAND")

    table = commands.add_parser("table", help="one table as CSV (+ .md and .json beside it)")
    table.add_argument("table", choices=TABLE_CHOICES)
    table.add_argument("--out", required=True, type=Path, help="CSV path, e.g. results/table2.csv")
    table.add_argument("--paper-config", action="append", default=None, metavar="YAML",
                       help="table1 only: the paper-scale config files, merged left to right "
                            "(default: config/config.yaml config/paper.yaml)")
    table.set_defaults(func=cmd_table)

    figure = commands.add_parser("figure", help="one figure as PNG (sweeps also write their data CSV in results/)")
    figure.add_argument("figure", help="figure16, figure17a, figure17b, figure_scroll, figure_outpaint, "
                                       "figure_t2i_wide, figure_animate, figure14, figure_t2v, figure_ncp")
    figure.add_argument("--out", required=True, type=Path, help="PNG path, e.g. results/figures/figure16.png")
    figure.set_defaults(func=cmd_figure)

    claims = commands.add_parser("claims", help="results/claims.csv + .md: every quantitative claim and its verdict")
    claims.add_argument("--out", required=True, type=Path)
    claims.set_defaults(func=cmd_claims)

    prov = commands.add_parser("provenance", help="git sha, config hash, packages, device")
    prov.add_argument("--out", required=True, type=Path)
    prov.set_defaults(func=cmd_provenance)

    for p in (table, figure, claims, prov):
        add_config_args(p)
