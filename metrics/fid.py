"""FID: Fréchet distance (pytorch-fid's, float64) between Gaussian fits of real and generated features.

The CI resamples the generated set only (the real statistics are fixed): features are computed once
and each resample only recomputes a mean and covariance.
"""
from __future__ import annotations

import numpy as np

from nuwa.errors import UserError
from metrics.stats import bootstrap


def gaussian(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if feats.shape[0] < 2:
        raise UserError(f"FID needs at least 2 samples per set, got {feats.shape[0]}")
    feats = feats.astype(np.float64)
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    from pytorch_fid.fid_score import calculate_frechet_distance

    return float(calculate_frechet_distance(mu1, np.atleast_2d(sigma1), mu2, np.atleast_2d(sigma2)))


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    return frechet_distance(*gaussian(real), *gaussian(fake))


def fid(real: np.ndarray, fake: np.ndarray, *, resamples: int, seed: int, ci: float, metric: str = "fid") -> dict:
    """FID with a bootstrap CI over the generated samples."""
    mu_r, sigma_r = gaussian(real)
    result = bootstrap(lambda idx: frechet_distance(mu_r, sigma_r, *gaussian(fake[idx])), fake.shape[0],
                       resamples=resamples, seed=seed, ci=ci, desc=metric)
    return {"metric": metric, **result, "n_real": int(real.shape[0])}
