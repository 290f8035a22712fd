"""Reconstruction report on a held-out split: PSNR, codebook usage and (given a metric backbone)
reconstruction FID, as JSON.

``reconstructions`` yields (real, reconstructed) batches. Videos are reconstructed frame by frame, a
PG-VQGAN guided by its own previous reconstruction, exactly as at generation time.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from nuwa.tokenizer.decode import quantize_pixels
from nuwa.tokenizer.train import open_split
from nuwa.tokenizer.vqgan import VQGAN

if TYPE_CHECKING:
    from metrics.backbone import Backbone


def psnr(real: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of [B, 3, H, W] images in [-1, 1] (peak = the [0, 1] range)."""
    mse = ((real - rec.clamp(-1, 1)) / 2).pow(2).flatten(1).mean(1)
    return -10 * torch.log10(mse.clamp_min(1e-10))


@torch.no_grad()
def reconstructions(tokenizer: VQGAN, data_dir: str | Path, split: str,
                    batch_size: int = 32) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(real [B, 3, H, W], reconstruction [B, 3, H, W], indices [B, h, w]) per batch of frames."""
    data, videos = open_split(data_dir, split)
    guided = hasattr(tokenizer, "pixel_encoder")
    for batch in tqdm(DataLoader(data, batch_size=batch_size, shuffle=False), desc=f"reconstruct {split}"):
        clips = batch["video"] if videos else batch["image"][:, None]
        prev = None
        for t in range(clips.shape[1]):
            real = clips[:, t]
            idx = tokenizer.encode_to_indices(real)
            rec = tokenizer.decode_indices(idx, prev=prev)
            prev = rec if guided else None
            yield real, rec, idx


def reconstruction_report(tokenizer: VQGAN, data_dir: str | Path, split: str = "test", batch_size: int = 32,
                          backbone: Backbone | None = None) -> dict:
    """PSNR and codebook statistics; with ``backbone`` also the FID of reconstructions against the originals."""
    scores, counts, frames = [], torch.zeros(tokenizer.n_embed), {"real": [], "rec": []}
    for real, rec, idx in reconstructions(tokenizer, data_dir, split, batch_size):
        scores.append(psnr(real, rec))
        counts += torch.bincount(idx.flatten(), minlength=tokenizer.n_embed).float()
        if backbone is not None:
            frames["real"] += list(quantize_pixels(real))
            frames["rec"] += list(quantize_pixels(rec))
    values = torch.cat(scores)
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
    out = {"split": split, "frames": int(values.numel()),
           "psnr": round(values.mean().item(), 3), "psnr_std": round(values.std().item(), 3) if values.numel() > 1 else 0.0,
           "codebook_usage": round((counts > 0).float().mean().item(), 4),
           "codebook_perplexity": round(math.exp(entropy), 2), "n_embed": tokenizer.n_embed}
    if backbone is not None:
        from metrics.backbone import extract
        from metrics.fid import fid_from_features

        feats = {k: extract(backbone, v, len(v), desc=f"{k} features") for k, v in frames.items()}
        out.update(rec_fid=round(fid_from_features(feats["real"], feats["rec"]), 4), rec_fid_backbone=backbone.name)
    return out
