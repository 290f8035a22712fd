"""FID: the Fréchet distance between Gaussian fits of real and generated features, bias-corrected.

``plugin`` is pytorch-fid's value (float64) on all samples: the number the literature reports, and
biased upwards in the sample sizes (by about tr(Sigma)/n for the means alone). ``value`` is the
jackknife bias-corrected distance: each set (real and generated) is cut into G groups and the
plug-in distance recomputed with each group left out; extrapolating linearly in 1/n (FID-infinity,
Chong & Forsyth 2020, with every subset of size n - n/G instead of random ones) removes the 1/n
term of the bias for both sets. The same left-out values give the standard error.

The 1/n expansion needs enough samples per effective dimension of the features. Where a set has
fewer than RELIABLE * r samples (r = (sum sqrt(lambda))^2 / sum(lambda) of the covariance
eigenvalues, the dimensions the trace term sees) the correction is not trusted: the interval is
widened to reach the two bounds whose expectations bracket the true distance, the unbiased mean
term (below) and the plug-in value (above). docs/metrics.md has the calibration.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from metrics.kid import kid
from metrics.stats import fake_key, group_labels, jackknife, real_key
from nuwa.core.errors import UserError

MIN_SAMPLES = 3  # a left-out sample still leaves a covariance with one degree of freedom
RELIABLE = 2.0  # samples per effective dimension from which the bias correction is trusted (measured)


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


def factor(cov: np.ndarray) -> np.ndarray:
    """F with F F^T = cov: the Cholesky factor, or V sqrt(Lambda) where cov is singular."""
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        lam, vec = np.linalg.eigh(cov)
        return vec * np.sqrt(np.clip(lam, 0.0, None))


def trace_sqrt(factor_a: np.ndarray, b: np.ndarray) -> float:
    """tr sqrt(A^1/2 B A^1/2) = sum of the square roots of the eigenvalues of A B = of F^T B F for
    F F^T = A (pytorch-fid's tr_covmean; negative round-off clipped to 0)."""
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(factor_a.T @ b @ factor_a), 0.0, None)).sum())


def effective_dims(cov: np.ndarray) -> float:
    """(sum sqrt(lambda))^2 / sum(lambda) of the eigenvalues of ``cov``: the dimensions the trace term sees."""
    lam = np.clip(np.linalg.eigvalsh(cov), 0.0, None)
    return float(np.sqrt(lam).sum() ** 2 / lam.sum()) if lam.sum() > 0 else 0.0


def left_out(feats: np.ndarray, labels: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Mean and covariance (ddof 1) of ``feats`` without each group of ``labels`` in turn."""
    mean = feats.mean(axis=0)
    z = feats - mean  # centred once, so the group updates do not cancel digits
    scatter, n = z.T @ z, feats.shape[0]
    for g in range(int(labels.max()) + 1):
        zg = z[labels == g]
        k = n - zg.shape[0]
        shift = -zg.sum(axis=0) / k  # mean without the group, minus the full mean
        yield mean + shift, (scatter - zg.T @ zg - k * np.outer(shift, shift)) / (k - 1)


def distance(mu_r: np.ndarray, cov_r: np.ndarray, mu_f: np.ndarray, cov_f: np.ndarray, cross: float) -> float:
    return float(((mu_r - mu_f) ** 2).sum() + np.trace(cov_r) + np.trace(cov_f) - 2.0 * cross)


def frechet(real: np.ndarray, fake: np.ndarray, *, fake_set: str, groups: int, ci: float,
            fake_labels: np.ndarray | None = None) -> dict:
    """Bias-corrected Fréchet distance of ``real`` [M, D] and ``fake`` [N, D] with its jackknife interval.

    ``fake_labels`` (default: :func:`group_labels`) say which fake rows leave together (the blocks
    of one image in pooled Block-FID). The real set is keyed by its content hash.
    """
    for name, x in (("real", real), ("generated", fake)):
        if x.shape[0] < MIN_SAMPLES:
            raise UserError(f"FID needs at least {MIN_SAMPLES} {name} samples, got {x.shape[0]}; score more samples")
    real, fake = real.astype(np.float64), fake.astype(np.float64)
    fake_labels = group_labels(fake.shape[0], groups) if fake_labels is None else fake_labels
    (mu_r, cov_r), (mu_f, cov_f) = gaussian(real), gaussian(fake)
    factor_r = factor(cov_r)  # the trace term factors the real side: full rank more often than the generated one
    center = distance(mu_r, cov_r, mu_f, cov_f, trace_sqrt(factor_r, cov_f))
    sets = {real_key(real): [distance(m, c, mu_f, cov_f, trace_sqrt(factor(c), cov_f))
                             for m, c in left_out(real, group_labels(real.shape[0], groups))],
            fake_set: [distance(mu_r, cov_r, m, c, trace_sqrt(factor_r, c)) for m, c in left_out(fake, fake_labels)]}
    result = jackknife(center, sets, ci=ci)
    dims = max(effective_dims(cov_r), effective_dims(cov_f))
    reliable = min(real.shape[0], fake.shape[0]) >= RELIABLE * dims
    if not reliable:  # E[lower] = |mu_r - mu_f|^2 <= FD <= E[plug-in]
        lower = float(((mu_r - mu_f) ** 2).sum() - np.trace(cov_r) / real.shape[0] - np.trace(cov_f) / fake.shape[0])
        value = result["value"]
        result = jackknife(center, sets, ci=ci, allowance=(max(0.0, value - lower), max(0.0, center - value)))
    return {**result, "n": int(fake.shape[0]), "n_real": int(real.shape[0]), "seeds": 1, "effective_dims": dims,
            "reliable": bool(reliable)}


def fid(real: np.ndarray, fake: np.ndarray, *, seed: int, ci: float, groups: int, kid_subsets: int,
        kid_subset_size: int, metric: str = "fid", fake_labels: np.ndarray | None = None) -> dict:
    """FID (bias-corrected, with its interval) and KID beside it, of ``real`` [M, D] and ``fake`` [N, D].

    ``fake_labels``: the generated sample each fake row belongs to (default: row i = sample i).
    """
    labels = np.arange(fake.shape[0]) if fake_labels is None else fake_labels
    n = int(labels.max()) + 1
    jack = dict(fake_set=fake_key(n, seed), groups=groups, ci=ci, fake_labels=labels % min(n, groups))
    return {"metric": metric, **frechet(real, fake, **jack), "n": n, "plugin": fid_from_features(real, fake),
            "kid": {**kid(real, fake, **jack, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed), "n": n}}
