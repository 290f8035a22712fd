"""Datasets: procedural worlds (embedded default), real-folder adapters, the on-disk layout, token shards.

``make_plan(world, cfg, seed)`` picks the procedural world or the folder adapter from the config
(``data.<world>.source``); ``write_dataset(plan, out)`` writes it in the layout of docs/contracts.md,
which ``ImageFolder`` and ``VideoFolder`` read.
"""
from __future__ import annotations

from nuwa.data.config import check_config, world_config
from nuwa.data.folders import ImageFolder, Plan, Sample, VideoFolder, write_dataset, write_preview

__all__ = ["ImageFolder", "VideoFolder", "Plan", "Sample", "make_plan", "write_dataset", "write_preview",
           "check_config"]


def make_plan(world: str, cfg: dict, seed: int) -> Plan:
    """The plan for ``world`` under the full config ``cfg`` (procedural or real folder)."""
    wcfg = world_config(cfg, world)
    if wcfg.source == "folder":
        from nuwa.data import adapters

        return adapters.plan(world, wcfg, seed)
    from nuwa.data import worlds

    return worlds.plan(world, wcfg, seed)
