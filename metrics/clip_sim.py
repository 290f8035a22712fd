"""CLIP-SIM: raw cosine similarity between the normalised image and caption embeddings (not x100),
mean over samples. A non-square image scores the mean over its square crops (see metrics/clip.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from metrics.backbone import Backbone, extract
from metrics.clip import square_crops
from metrics.stats import bootstrap
from nuwa.core.io import read_rgb


def similarities(backbone: Backbone, files: list[Path], captions: list[str], batch_size: int = 32) -> np.ndarray:
    """Per-sample CLIP similarity [N] (mean over the square crops of each image)."""
    counts = [len(square_crops(read_rgb(f))) for f in files]
    crops = (c for f in files for c in square_crops(read_rgb(f)))
    image = extract(backbone, crops, sum(counts), batch_size=batch_size, desc="clip images")
    text = np.concatenate([backbone.embed_texts(captions[i:i + batch_size]).double().numpy()
                           for i in range(0, len(captions), batch_size)])
    owner = np.repeat(np.arange(len(files)), counts)
    return np.bincount(owner, weights=cosine(image, text[owner])) / np.asarray(counts)


def cosine(image: np.ndarray, text: np.ndarray) -> np.ndarray:
    """Per-row cosine similarity [N] of image and caption embeddings [N, D] (normalised here)."""
    return np.einsum("nd,nd->n", image, text) / (np.linalg.norm(image, axis=1) * np.linalg.norm(text, axis=1))


def clip_sim(sims: np.ndarray, *, resamples: int, seed: int, ci: float) -> dict:
    result = bootstrap(lambda idx: float(sims[idx].mean()), sims.shape[0], resamples=resamples, seed=seed, ci=ci, desc="clip_sim")
    return {"metric": "clip_sim", **result}


def shuffled(captions: list[str], seed: int) -> list[str]:
    """Captions in a seeded random order (the mismatched pairs of the proxy check)."""
    order = np.random.default_rng(seed).permutation(len(captions))
    return [captions[i] for i in order]
