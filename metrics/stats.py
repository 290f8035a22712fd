"""Statistics: a calibrated interval for every number, and the comparisons behind the claims report.

A result carries its sampling error in one of two forms (docs/metrics.md#statistics):

* ``jackknife`` (FID, Block-FID, FVD and the KID beside each): ``center``, the statistic on all
  samples, and ``groups``, the statistic recomputed with each group of samples left out, one list
  per set of samples. A set is named by a key: ``real:<hash of its features>`` (the real test set)
  or ``fake:n<N>:seed<S>`` (generated samples, index i = prompt i). Two results holding a set with
  the same key share those samples or pair them by index (method A and B on the same prompts in
  the same order), so a difference of two results is paired where it can be and independent where
  it cannot, from the two JSONs alone -- also between sets of different n (Block-FID(x4) - Block-FID).
  The bias correction and the standard error both come from these lists (:func:`jackknife_bias`,
  :func:`jackknife_se`).
* ``replicates`` (IS, CLIP-SIM, speed): the statistic on ``bootstrap`` resamples of the sample
  indices, drawn by a generator seeded with ``bootstrap_seed``; results with the same seed and n
  resample the same indices, so their replicates are paired.

Every interval is ``value +- z * se`` (z: the quantile of ``ci``, Student t with G - 1 degrees of
freedom for jackknife results, normal for bootstrap ones), widened by ``bias_allowance = [below,
above]`` where a bias correction is not trusted (metrics/fid.py); it therefore always contains its value.
"""
from __future__ import annotations

import hashlib
from typing import Callable, Literal

import numpy as np
from scipy.special import ndtri, stdtrit
from tqdm.auto import tqdm

from nuwa.core.errors import UserError

Verdict = Literal["held", "not held", "inconclusive"]
STAT_KEYS = ("value", "se", "ci_low", "ci_high", "ci", "bias_allowance", "jackknife", "subset_variance",
             "replicates", "n", "seeds")


def z_score(ci: float, df: int | None = None) -> float:
    """The two-sided quantile of confidence level ``ci``: normal (1.96 for 0.95), or Student t with ``df``."""
    return float(ndtri((1 + ci) / 2) if df is None else stdtrit(df, (1 + ci) / 2))  # scipy.stats' norm/t ppf, without its import


def summary(value: float, se: float, ci: float, allowance: tuple[float, float] = (0.0, 0.0), df: int | None = None) -> dict:
    """``value`` with its standard error and the interval value -+ (z * se + allowance), z as :func:`z_score`."""
    z = z_score(ci, df)
    return {"value": float(value), "se": float(se), "ci_low": float(value - z * se - allowance[0]),
            "ci_high": float(value + z * se + allowance[1]), "ci": ci,
            "bias_allowance": [float(allowance[0]), float(allowance[1])]}


def bootstrap(stat: Callable[[np.ndarray], float], n: int, *, resamples: int, seed: int, ci: float,
              desc: str = "bootstrap") -> dict:
    """``stat(indices)`` on all n samples and on ``resamples`` resamples; se = their standard deviation."""
    value = float(stat(np.arange(n)))
    rng = np.random.default_rng(seed)
    reps = np.array([stat(rng.integers(0, n, n)) for _ in tqdm(range(resamples), desc=desc, leave=False)], dtype=np.float64)
    se = float(reps.std(ddof=1)) if resamples > 1 else 0.0
    return {**summary(value, se, ci), "n": n, "seeds": 1, "bootstrap": resamples, "bootstrap_seed": seed,
            "replicates": reps.tolist()}


def group_labels(n: int, groups: int) -> np.ndarray:
    """The jackknife group of each of n samples: sample i alone while n <= ``groups``, else i mod ``groups``."""
    return np.arange(n) % min(n, groups)


def real_key(feats: np.ndarray) -> str:
    """The key of a real set: a hash of its features (two results hold the same real set iff it matches)."""
    return "real:" + hashlib.sha256(np.ascontiguousarray(feats, dtype=np.float64).tobytes()).hexdigest()[:16]


def fake_key(n: int, seed: int) -> str:
    """The key of a generated set: sample i of any set with this key was made for prompt i."""
    return f"fake:n{n}:seed{seed}"


def jackknife_bias(center: float, groups: dict[str, list[float]]) -> float:
    """Estimated bias of ``center``: sum over sets of (G - 1) (mean of the G left-out values - center).

    The 1/n term of the bias, exactly: a set of n samples in G groups is extrapolated linearly in 1/n
    from n - n/G samples (every group left out once) through n to infinitely many.
    """
    return float(sum((len(v) - 1) * (np.mean(v) - center) for v in groups.values()))


def jackknife_se(groups: dict[str, list[float]]) -> float:
    """Standard error: sqrt of the sum over sets of (G - 1) / G * sum of squared deviations of the left-out values."""
    return float(np.sqrt(sum((len(v) - 1) / len(v) * np.sum((np.asarray(v) - np.mean(v)) ** 2) for v in groups.values())))


def jackknife(center: float, groups: dict[str, list[float]], *, ci: float, value: float | None = None,
              allowance: tuple[float, float] = (0.0, 0.0), subset_variance: float = 0.0) -> dict:
    """A jackknife result: ``value`` (default: ``center`` minus its estimated bias) and its interval, with
    Student t quantiles of G - 1 degrees of freedom, G the fewest groups of any set.

    ``subset_variance``: variance the value has on top of the jackknife's (KID's random subsets).
    """
    if value is None:
        value = center - jackknife_bias(center, groups)
    se = np.sqrt(jackknife_se(groups) ** 2 + subset_variance)
    df = min(len(v) for v in groups.values()) - 1
    return {**summary(value, se, ci, allowance, df), "subset_variance": float(subset_variance),
            "jackknife": {"center": float(center), "groups": {k: [float(x) for x in v] for k, v in groups.items()}}}


def kind(result: dict) -> str:
    if "jackknife" in result:
        return "jackknife"
    if "replicates" in result:
        return "bootstrap"
    raise UserError(f"result {result.get('metric', '')!r} carries neither jackknife values nor bootstrap replicates; rescore it")


def _linear_jackknife(results: list[dict], weights: list[float], ci: float) -> dict:
    centers = [r["jackknife"]["center"] for r in results]
    keys = sorted({k for r in results for k in r["jackknife"]["groups"]})
    groups = {}
    for key in keys:
        sizes = {len(r["jackknife"]["groups"][key]) for r in results if key in r["jackknife"]["groups"]}
        if len(sizes) > 1:
            raise UserError(f"cannot combine these results: set {key} has {sorted(sizes)} jackknife groups; score them with the same metrics.jackknife_groups")
        groups[key] = sum(w * (np.asarray(r["jackknife"]["groups"][key]) if key in r["jackknife"]["groups"] else c)
                          for r, w, c in zip(results, weights, centers))
    below = sum(w * r["bias_allowance"][0] if w > 0 else -w * r["bias_allowance"][1] for r, w in zip(results, weights))
    above = sum(w * r["bias_allowance"][1] if w > 0 else -w * r["bias_allowance"][0] for r, w in zip(results, weights))
    return jackknife(float(np.dot(weights, centers)), groups, ci=ci, value=float(np.dot(weights, [r["value"] for r in results])),
                     allowance=(below, above), subset_variance=sum(w * w * r.get("subset_variance", 0.0) for r, w in zip(results, weights)))


def _linear_bootstrap(results: list[dict], weights: list[float], ci: float) -> dict:
    lengths = {len(r["replicates"]) for r in results}
    if len(lengths) > 1:
        raise UserError(f"cannot combine these results: {sorted(lengths)} bootstrap replicates; score them with the same metrics.bootstrap")
    reps = sum(w * np.asarray(r["replicates"], dtype=np.float64) for r, w in zip(results, weights))
    value = float(np.dot(weights, [r["value"] for r in results]))
    se = float(np.std(reps, ddof=1)) if np.size(reps) > 1 else 0.0
    return {**summary(value, se, ci), "replicates": np.atleast_1d(reps).tolist()}


def linear(results: list[dict], weights: list[float], ci: float) -> dict:
    """sum_k weights[k] * results[k] with its interval (the statistical fields only).

    Jackknife results: left-out values add up per set key (a set absent from a result counts as
    that result's center), allowances add up with their signs. Bootstrap results: replicates add up
    index by index (paired where they resampled the same indices, independent otherwise).
    """
    kinds = {kind(r) for r in results}
    if len(kinds) > 1:
        raise UserError("cannot combine a jackknife result (FID-type) with a bootstrap result (IS, CLIP-SIM, speed)")
    combined = (_linear_jackknife if kinds == {"jackknife"} else _linear_bootstrap)(results, weights, ci)
    if all("kid" in r for r in results):
        kids = [r["kid"] for r in results]
        combined["kid"] = {**shared(kids), **linear(kids, weights, ci)}
    return combined


def shared(results: list[dict]) -> dict:
    """The descriptive fields (metric, backbone, n_real, ...) every result has with the same value."""
    first = results[0]
    return {k: v for k, v in first.items() if k not in STAT_KEYS and k != "kid" and all(r.get(k) == v for r in results)}


def difference(a: dict, b: dict, ci: float | None = None) -> dict:
    """a - b with its interval: bias-corrected values, paired where a and b share sets of samples.

    Valid between results of different n (Block-FID(x4) - Block-FID, 32 vs 64 images): each value is
    bias-corrected on its own, sets of different n are independent, a shared real set is paired.
    """
    ci = a["ci"] if ci is None else ci
    return {**shared([a, b]), **linear([a, b], [1.0, -1.0], ci), "n": a["n"], "seeds": a["seeds"]}


def over_seeds(results: list[dict], ci: float) -> dict:
    """Combine one result per sampling seed: the mean value, its interval, n and seeds summed."""
    if not results:
        raise UserError("no results to combine over seeds")
    return {**shared(results), **linear(results, [1.0 / len(results)] * len(results), ci),
            "n": int(sum(r["n"] for r in results)), "seeds": int(sum(r["seeds"] for r in results))}


def compare(a: dict, b: dict, *, higher_is_better: bool, ci: float = 0.95) -> dict:
    """Is A better than B? advantage = A - B signed so that > 0 is better; held / not held / inconclusive
    as its interval lies above 0 / below 0 / across 0."""
    d = difference(a, b, ci)
    if kind(a) == "bootstrap" and not d["replicates"]:
        raise UserError("results carry no bootstrap replicates (metrics.bootstrap=0); rescore with bootstrap > 0")
    sign = 1.0 if higher_is_better else -1.0
    lo, hi = sorted((sign * d["ci_low"], sign * d["ci_high"]))
    verdict: Verdict = "held" if lo > 0 else "not held" if hi < 0 else "inconclusive"
    return {"verdict": verdict, "advantage": sign * d["value"], "ci_low": lo, "ci_high": hi, "ci": ci}
