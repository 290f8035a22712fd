"""Benchmark presets: config overrides applied over the config files, before the user's ``--set``.

``paper-geometry`` is the paper's patch and window geometry (16x16-token patches, Taming / MaskGIT
windows of 16x16 tokens, extent (2, 2, 0)) with models of equal size small enough for a CPU: 4 layers,
d=256, 4 heads, codebook 1024, no text. ``--set nuwa.model.layers=...`` etc. resize all three models
(the baselines take their depth and width from ``nuwa.model``).
"""
from __future__ import annotations

import argparse

from nuwa.core.config import REPO_ROOT, load_config

PAPER_GEOMETRY = [
    "tokenizer.vqgan.model.n_embed=1024", "nuwa.model.codebook=1024",
    "nuwa.model.layers=4", "nuwa.model.dim=256", "nuwa.model.heads=4",
    "nuwa.model.patch=16", "nuwa.model.extent=[2, 2, 0]", "nuwa.model.text=null",
    "baselines.taming.model.window=[16, 16]", "baselines.maskgit.model.window=[16, 16]",
    "baselines.taming.model.text=null", "baselines.maskgit.model.text=null",
]
PRESETS = {"embedded": [], "paper-geometry": PAPER_GEOMETRY}


def preset_config(args: argparse.Namespace, preset: str, check: bool = True) -> dict:
    """The config files of ``args`` (default config/config.yaml), the preset's overrides, then ``args.overrides``
    (``check``: validate against the workflow's schema, which needs jsonschema)."""
    paths = args.config or [REPO_ROOT / "config" / "config.yaml"]
    return load_config(paths, PRESETS[preset] + list(args.overrides), check=check)
