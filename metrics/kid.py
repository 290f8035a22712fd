"""KID (Bińkowski et al. 2018) beside every Fréchet distance: the unbiased MMD^2 of real and generated
features under the cubic polynomial kernel k(x, y) = (x.y / D + 1)^3.

``value`` is torch-fidelity's KID (``kid_features_to_metric``: the mean over ``subsets`` random pairs
of equal-size subsets, drawn with ``seed``). It is unbiased at any n, so it needs no correction and
sets of different n compare directly. Its interval: the jackknife over groups of samples of the
all-pairs U-statistic that the subset mean estimates (kernel values from torch-fidelity's
``kernel_poly``), plus the variance of the mean over random subsets (``subset_variance``).
"""
from __future__ import annotations

import numpy as np
import torch

from metrics.stats import group_labels, jackknife, real_key

KERNEL = {"kid_kernel": "poly", "kid_kernel_poly_degree": 3, "kid_kernel_poly_gamma": None, "kid_kernel_poly_coef0": 1}


def one_hot(labels: np.ndarray) -> np.ndarray:
    return (labels[:, None] == np.arange(labels.max() + 1)[None, :]).astype(np.float64)


def group_sums(kernel: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """[G_rows, G_cols] sums of ``kernel`` over the row and column groups."""
    return one_hot(rows).T @ kernel @ one_hot(cols)


def within_left_out(kernel: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean off-diagonal kernel value of one set, on all samples and with each group left out."""
    np.fill_diagonal(kernel, 0.0)
    blocks = group_sums(kernel, labels, labels)
    n, sizes = kernel.shape[0], np.bincount(labels)
    total = blocks.sum()
    rest = n - sizes
    return total / (n * (n - 1)), (total - 2 * blocks.sum(axis=1) + np.diag(blocks)) / (rest * (rest - 1))


def kid(real: np.ndarray, fake: np.ndarray, *, fake_set: str, groups: int, subsets: int, subset_size: int,
        seed: int, ci: float, fake_labels: np.ndarray | None = None) -> dict:
    """KID of ``real`` [M, D] and ``fake`` [N, D] (torch-fidelity) with its jackknife interval.

    ``fake_labels``: the jackknife group of each fake row (default: :func:`group_labels`).
    """
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kernel_poly, kid_features_to_metric

    size = min(real.shape[0], fake.shape[0], subset_size)
    lib = kid_features_to_metric(torch.from_numpy(real.astype(np.float64)), torch.from_numpy(fake.astype(np.float64)),
                                 kid_subsets=subsets, kid_subset_size=size, rng_seed=seed, verbose=False, **KERNEL)
    rl = group_labels(real.shape[0], groups)
    fl = group_labels(fake.shape[0], groups) if fake_labels is None else fake_labels
    rr, rr_out = within_left_out(kernel_poly(real, real, **KERNEL), rl)
    ff, ff_out = within_left_out(kernel_poly(fake, fake, **KERNEL), fl)
    cross = group_sums(kernel_poly(real, fake, **KERNEL), rl, fl)
    m, n = real.shape[0], fake.shape[0]
    m_out, n_out = m - np.bincount(rl), n - np.bincount(fl)
    center = rr + ff - 2 * cross.sum() / (m * n)
    sets = {real_key(real): rr_out + ff - 2 * (cross.sum() - cross.sum(axis=1)) / (m_out * n),
            fake_set: rr + ff_out - 2 * (cross.sum() - cross.sum(axis=0)) / (m * n_out)}
    return {"metric": "kid", **jackknife(center, sets, ci=ci, value=lib[KEY_METRIC_KID_MEAN],
                                         subset_variance=lib[KEY_METRIC_KID_STD] ** 2 / subsets),
            "n": int(n), "n_real": int(m), "seeds": 1, "subsets": subsets, "subset_size": size, "library": "torch-fidelity"}
