"""IS, the OpenAI formula: exp(E_x KL(p(y|x) || p(y))) per split, mean over splits, no shuffling.

Computed by torch-fidelity (softmax in float64) on the backbone's logits: the FID Inception's 1008
logits without the fc bias, or the proxy image classifier's ``is_head`` posterior.
"""
from __future__ import annotations

import numpy as np
import torch

from metrics.stats import bootstrap
from nuwa.core.errors import UserError


def inception_score(logits: np.ndarray, splits: int) -> float:
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, isc_features_to_metric

    if logits.shape[0] < splits:
        raise UserError(f"IS with {splits} splits needs at least {splits} samples, got {logits.shape[0]} (lower metrics.is_splits)")
    return isc_features_to_metric(torch.from_numpy(logits).double(), splits=splits, shuffle=False)[KEY_METRIC_ISC_MEAN]


def inception_score_ci(logits: np.ndarray, *, splits: int, resamples: int, seed: int, ci: float) -> dict:
    result = bootstrap(lambda idx: inception_score(logits[idx], splits), logits.shape[0],
                       resamples=resamples, seed=seed, ci=ci, desc="is")
    return {"metric": "is", **result, "splits": splits}
