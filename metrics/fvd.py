"""FVD: the Fréchet distance between video-backbone features (I3D, or the proxy video net) of real and
generated clips; clip length (metrics.fvd_frames) and clip count (metrics.fvd_samples) from config."""
from __future__ import annotations

import numpy as np

from metrics.fid import fid


def fvd(real: np.ndarray, fake: np.ndarray, *, frames: int, **stats) -> dict:
    """``stats``: as :func:`metrics.fid.fid` (seed, ci, groups, kid_subsets, kid_subset_size)."""
    return {**fid(real, fake, **stats, metric="fvd"), "frames": frames}
