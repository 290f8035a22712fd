"""`nuwa config check`: validate a config against the schema and every package's own dataclasses.

The same check runs when the Snakefile is parsed, so a bad value fails before any work starts.
"""
from __future__ import annotations

import argparse
import importlib

from nuwa.core.errors import UserError

# every package that owns a config section exposes check_config(cfg) -> None (raises UserError)
CHECKERS = ("nuwa.data.config", "nuwa.tokenizer.config", "nuwa.model.config", "baselines.config", "metrics.config")


def check_all(cfg: dict) -> list[str]:
    """Run every package's check_config and resolve the experiments plan (each run's overrides included,
    and for NUWA-Infinity runs whether the patch tiles the token grid of the run's world)."""
    from nuwa.core.config import validate
    from nuwa.plan import Plan

    validate(cfg)
    for name in CHECKERS:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise UserError(f"cannot check the config: {name} does not import ({exc}); reinstall the suite") from exc
        module.check_config(cfg)
    from nuwa.plan import check_patch_grid

    plan = Plan(cfg)
    plan.check_reference_sets()
    for run in plan.runs.values():
        plan.model_settings(run)
        try:
            for name in CHECKERS:
                importlib.import_module(name).check_config(run.effective(cfg))
            if run.model == "nuwa":
                check_patch_grid(run.effective(cfg), run.world)
        except UserError as exc:
            raise UserError(f"experiments run {run.name!r} (--set {' '.join(run.overrides)}): {exc}") from exc
    return [*CHECKERS, f"experiments ({len(plan.runs)} runs)"]


def cmd_check(args: argparse.Namespace) -> int:
    from nuwa.core.config import config_from_args

    checked = check_all(config_from_args(args))
    print(f"config ok: schema, {', '.join(checked)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from nuwa.core.config import add_config_args

    parser = sub.add_parser("config", help="validate the configuration")
    commands = parser.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    check = commands.add_parser("check", help="schema + every package's check_config + every experiments run")
    add_config_args(check)
    check.set_defaults(func=cmd_check)
