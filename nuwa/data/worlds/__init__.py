"""The procedural worlds, one per paper dataset (the embedded default data).

Each world module exposes ``plan(cfg, seed) -> nuwa.data.folders.Plan``. Every sample is drawn
from its own generator keyed by (seed, world, split, index), so a sample does not depend on how
many others are rendered or in which order.
"""
from __future__ import annotations

import importlib
import zlib

import numpy as np

from nuwa.data.folders import Plan


def sample_rng(seed: int, world: str, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(world.encode()), zlib.crc32(split.encode()), index])


def plan(world: str, cfg, seed: int) -> Plan:
    """The procedural plan of ``world`` (lhqc, rqf, lhqv, peppa) for its config section."""
    return importlib.import_module(f"nuwa.data.worlds.{world}").plan(cfg, seed)
