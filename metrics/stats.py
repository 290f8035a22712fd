"""Bootstrap statistics: a confidence interval for every number, and paired comparisons for claims.

``bootstrap`` resamples the n samples with a numpy generator seeded by ``seed``; two metrics computed
with the same seed and the same n therefore resample the *same* indices, so their stored
replicates are paired (method A and B scored on the same prompts, in the same order) and
``compare`` can test a claim from the two JSON results alone.
"""
from __future__ import annotations

from typing import Callable, Literal

import numpy as np
from tqdm.auto import tqdm

from nuwa.errors import UserError

Verdict = Literal["held", "not held", "inconclusive"]


def interval(replicates: np.ndarray, ci: float) -> tuple[float, float]:
    lo, hi = np.quantile(replicates, [(1 - ci) / 2, (1 + ci) / 2])
    return float(lo), float(hi)


def bootstrap(stat: Callable[[np.ndarray], float], n: int, *, resamples: int, seed: int, ci: float,
              desc: str = "bootstrap") -> dict:
    """``stat(indices)`` on all n samples and on ``resamples`` resamples; percentile CI."""
    value = float(stat(np.arange(n)))
    rng = np.random.default_rng(seed)
    reps = np.array([stat(rng.integers(0, n, n)) for _ in tqdm(range(resamples), desc=desc, leave=False)], dtype=np.float64)
    lo, hi = interval(reps, ci) if resamples else (value, value)
    return {"value": value, "ci_low": lo, "ci_high": hi, "ci": ci, "n": n, "seeds": 1,
            "bootstrap": resamples, "bootstrap_seed": seed, "replicates": reps.tolist()}


def over_seeds(results: list[dict], ci: float, seed: int = 0) -> dict:
    """Combine one result per sampling seed: mean value; CI from resampling seeds and, within each, samples."""
    if not results:
        raise UserError("no results to combine over seeds")
    reps = np.array([r["replicates"] for r in results], dtype=np.float64)  # [seeds, B]
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(results), size=reps.shape)  # a resampled seed per (seed slot, replicate)
    combined = np.take_along_axis(reps, pick, axis=0).mean(axis=0) if reps.size else reps
    value = float(np.mean([r["value"] for r in results]))
    lo, hi = interval(combined, ci) if combined.size else (value, value)
    return {**results[0], "value": value, "ci_low": lo, "ci_high": hi, "ci": ci, "seeds": len(results),
            "n": int(sum(r["n"] for r in results)), "replicates": combined.tolist()}


def compare(a: dict, b: dict, *, higher_is_better: bool, ci: float = 0.95) -> dict:
    """Paired bootstrap test of the claim "A is better than B" from two results with paired replicates."""
    for key in ("n", "bootstrap", "bootstrap_seed", "seeds"):
        if a.get(key) != b.get(key):
            raise UserError(f"cannot pair these results: {key} differs ({a.get(key)} vs {b.get(key)}); score both on the same samples with the same bootstrap settings")
    sign = 1.0 if higher_is_better else -1.0
    diff = sign * (np.asarray(a["replicates"]) - np.asarray(b["replicates"]))
    if diff.size == 0:
        raise UserError("results carry no bootstrap replicates (metrics.bootstrap=0); rescore with bootstrap > 0")
    lo, hi = interval(diff, ci)
    verdict: Verdict = "held" if lo > 0 else "not held" if hi < 0 else "inconclusive"
    return {"verdict": verdict, "advantage": sign * (a["value"] - b["value"]), "ci_low": lo, "ci_high": hi, "ci": ci}
