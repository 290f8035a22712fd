"""FVD: the Fréchet distance between video-backbone features (I3D, or the proxy video net) of real and
generated clips; clip length (metrics.fvd_frames) and clip count (metrics.fvd_samples) from config."""
from __future__ import annotations

import numpy as np

from metrics.fid import fid


def fvd(real: np.ndarray, fake: np.ndarray, *, resamples: int, seed: int, ci: float, frames: int) -> dict:
    return {**fid(real, fake, resamples=resamples, seed=seed, ci=ci, metric="fvd"), "frames": frames}
