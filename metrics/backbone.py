"""One backbone interface for every metric: name, weights hash, features, IS logits, text embeddings.

A backbone turns one uint8 sample (image [3, H, W] or video [T, 3, H, W]) into network input with
``prepare`` and a batch of those into features with ``features`` (and ``logits`` for IS,
``embed_texts`` for CLIP-SIM). The metric code never knows which backbone it reads, so the same code
scores the reference backbones (FID Inception, OpenAI CLIP, I3D) and the proxies of the embedded
default. Its ``name`` and ``sha256`` are written next to every number.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from nuwa.core.errors import UserError

Kind = Literal["image", "clip", "video"]
Head = Literal["features", "logits"]


class Backbone:
    name: str = ""
    sha256: str = ""

    def prepare(self, sample: torch.Tensor) -> torch.Tensor:
        """One uint8 sample -> one float network input."""
        raise NotImplementedError

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        """[B, D] features (FID / FVD) or image embeddings (CLIP-SIM)."""
        raise NotImplementedError

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        raise UserError(f"backbone {self.name} has no classifier head for IS; use the inception or a proxy image backbone")

    def embed_texts(self, captions: list[str]) -> torch.Tensor:
        raise UserError(f"backbone {self.name} has no text tower for CLIP-SIM; use the clip or a proxy clip backbone")

    def describe(self) -> dict:
        return {"backbone": self.name, "backbone_sha256": self.sha256}


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(config: dict, state: dict[str, torch.Tensor]) -> str:
    """Hash of a network's config and weights only (not of the checkpoint file, whose training log varies)."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())  # any dtype
    return digest.hexdigest()


def clean_resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """clean-fid's "clean" resize (PIL bicubic on float channels, no quantisation): uint8 [3,H,W] -> float [3,h,w] in [0,255]."""
    from cleanfid.resize import make_resizer

    if tuple(image.shape[-2:]) == tuple(size):
        return image.float()
    resize = make_resizer("PIL", False, "bicubic", (size[1], size[0]))
    out = resize(image.permute(1, 2, 0).numpy().astype(np.float32))
    return torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)


@torch.inference_mode()
def extract(backbone: Backbone, samples: Iterable[torch.Tensor], total: int | None = None, *,
            head: Head = "features", batch_size: int = 32, desc: str = "features") -> np.ndarray:
    """Run ``backbone`` over uint8 ``samples`` in batches; float64 [N, D]."""
    fn = backbone.features if head == "features" else backbone.logits
    out, buf = [], []
    for sample in tqdm(samples, total=total, desc=f"{desc} [{backbone.name}]", leave=False):
        buf.append(backbone.prepare(sample))
        if len(buf) == batch_size:
            out.append(fn(torch.stack(buf)).double().numpy())
            buf = []
    if buf:
        out.append(fn(torch.stack(buf)).double().numpy())
    if not out:
        raise UserError("no samples to score (empty input)")
    return np.concatenate(out)
