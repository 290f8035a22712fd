"""Block-FID (paper §4.3): cut each generated image into blocks of the training resolution, compute FID
per block position against the real test set, and average over positions (``pooled``: one FID over
all blocks instead). Block-FID(x4) is the same on 4x-wide images.

For outpainting, a region (``right-half`` ... or the token mask OUT/masks.pt of `nuwa generate`) is
cut out of both the generated and the real images first, so only the extended area is scored
against the same area of the real test images; blocks are then min(block, region side).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from metrics.fid import fid
from metrics.stats import linear, shared
from nuwa.core.errors import UserError
from nuwa.core.io import torch_load

Box = tuple[float, float, float, float]  # top, left, bottom, right as fractions of the image
REGIONS: dict[str, Box] = {"all": (0, 0, 1, 1), "right-half": (0, 0.5, 1, 1), "left-half": (0, 0, 1, 0.5),
                           "bottom-half": (0.5, 0, 1, 1), "top-half": (0, 0, 0.5, 1)}


def mask_box(path: str | Path) -> Box:
    """The generated region of a masks.pt (Bool[N, h, w], True = generated), the same for every sample."""
    masks = torch_load(path, "outpainting mask file")
    masks = masks["masks"] if isinstance(masks, dict) else masks
    if not isinstance(masks, torch.Tensor) or masks.dim() != 3 or not masks.any():
        raise UserError(f"{path} is not a Bool[N, h, w] outpainting mask with generated tokens (OUT/masks.pt of `nuwa generate outpaint`)")
    boxes = set()
    for m in masks.bool():
        rows, cols = m.any(1).nonzero()[:, 0], m.any(0).nonzero()[:, 0]
        boxes.add((int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1))
    if len(boxes) != 1:
        raise UserError(f"{path}: samples extend different regions; score each outpainting direction separately")
    (t, l, b, r), (h, w) = boxes.pop(), masks.shape[1:]
    return t / h, l / w, b / h, r / w


def crop(image: torch.Tensor, box: Box) -> torch.Tensor:
    h, w = image.shape[-2:]
    t, l, b, r = round(box[0] * h), round(box[1] * w), round(box[2] * h), round(box[3] * w)
    return image[..., t:b, l:r]


def block_shape(region: torch.Tensor, block: int) -> tuple[int, int]:
    h, w = region.shape[-2:]
    bh, bw = min(block, h), min(block, w)
    if h % bh or w % bw:
        raise UserError(f"scored region {w}x{h} px is not a whole number of {bw}x{bh} blocks; set metrics.block to the training resolution")
    return bh, bw


def blocks(image: torch.Tensor, box: Box, block: int) -> list[torch.Tensor]:
    """The blocks of ``box`` of ``image``, row-major (one list entry per block position)."""
    region = crop(image, box)
    bh, bw = block_shape(region, block)
    cut = rearrange(region, "c (r bh) (q bw) -> (r q) c bh bw", bh=bh, bw=bw)
    return list(cut)


def position_mean(per: list[dict], ci: float) -> dict:
    """Block-FID from per-position results (same real set, image i at index i of every position): their
    mean, its interval (positions paired by image) and the per-position values."""
    return {**shared(per), **linear(per, [1.0 / len(per)] * len(per), ci), "n": per[0]["n"], "seeds": 1,
            "pooled": False, "positions": len(per), "per_position": [r["value"] for r in per],
            "reliable": all(r["reliable"] for r in per), "effective_dims": max(r["effective_dims"] for r in per)}


def block_fid(real: np.ndarray, fake: np.ndarray, *, pooled: bool, metric: str = "block_fid", **stats) -> dict:
    """``real`` [M, D] real block features, ``fake`` [N, P, D] per generated image and block position.

    The mean over positions of FID (bias-corrected) and KID per position; ``pooled``: one FID over all
    N * P blocks, an image's blocks left out together. ``stats``: as :func:`metrics.fid.fid`.
    """
    n, positions = fake.shape[:2]
    if pooled:
        labels = np.repeat(np.arange(n), positions)
        return {**fid(real, fake.reshape(-1, fake.shape[-1]), **stats, metric=metric, fake_labels=labels),
                "pooled": True, "positions": positions}
    per = [fid(real, fake[:, p], **stats) for p in range(positions)]
    plugin = [r["plugin"] for r in per]
    return {**position_mean(per, stats["ci"]), "metric": metric, "plugin": float(np.mean(plugin)), "per_position_plugin": plugin}
