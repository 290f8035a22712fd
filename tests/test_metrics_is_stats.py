"""IS equals the OpenAI formula; bootstrap intervals and the paired held / not held / inconclusive verdicts."""
from __future__ import annotations

import numpy as np
import pytest

from metrics.inception_score import inception_score, inception_score_ci
from metrics.stats import bootstrap, compare, difference, over_seeds
from nuwa.core.errors import UserError


def openai_inception_score(logits: np.ndarray, splits: int) -> float:
    """improved-gan's get_inception_score, on logits instead of the TF graph."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    preds = e / e.sum(axis=1, keepdims=True)
    scores = []
    for i in range(splits):
        part = preds[i * (preds.shape[0] // splits):(i + 1) * (preds.shape[0] // splits)]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        scores.append(np.exp(np.mean(np.sum(kl, 1))))
    return float(np.mean(scores))


def test_is_equals_openai_formula_on_fixed_logits():
    logits = np.random.default_rng(0).normal(0, 3, size=(200, 1008))
    assert inception_score(logits, 10) == pytest.approx(openai_inception_score(logits, 10), rel=1e-10)


def test_is_of_confident_balanced_predictions_is_the_class_count():
    logits = np.full((100, 5), -50.0)
    logits[np.arange(100), np.arange(100) % 5] = 50.0
    assert inception_score(logits, 10) == pytest.approx(5.0, rel=1e-6)
    assert inception_score(np.zeros((100, 5)), 10) == pytest.approx(1.0)


def test_is_needs_enough_samples():
    with pytest.raises(UserError, match="splits"):
        inception_score(np.zeros((5, 3)), 10)


def test_is_ci_brackets_value():
    logits = np.random.default_rng(1).normal(0, 2, size=(100, 10))
    r = inception_score_ci(logits, splits=10, resamples=20, seed=0, ci=0.9)
    assert r["ci_low"] < r["value"] < r["ci_high"] and r["n"] == 100 and len(r["replicates"]) == 20
    assert r["ci_high"] - r["value"] == pytest.approx(1.644854 * np.std(r["replicates"], ddof=1), rel=1e-6)


def mean_result(x: np.ndarray, seed: int = 0) -> dict:
    return bootstrap(lambda idx: float(x[idx].mean()), len(x), resamples=200, seed=seed, ci=0.95)


def test_bootstrap_is_seeded_and_brackets_the_mean():
    x = np.random.default_rng(2).normal(1.0, 1.0, size=200)
    a, b = mean_result(x), mean_result(x)
    assert a == b and a["ci_low"] < x.mean() < a["ci_high"]
    assert a["se"] == pytest.approx(x.std(ddof=1) / np.sqrt(200), rel=0.15)  # the bootstrap se of a mean


def test_bootstrap_interval_of_a_mean_covers_it():
    """CLIP-SIM-like: the mean of 64 per-sample values, 200 data sets; the interval holds its value always."""
    rng, hits = np.random.default_rng(5), 0
    for seed in range(200):
        r = bootstrap(lambda idx, x=rng.normal(0.3, 0.1, size=64): float(x[idx].mean()), 64, resamples=100, seed=seed, ci=0.95)
        assert r["ci_low"] < r["value"] < r["ci_high"]
        hits += r["ci_low"] <= 0.3 <= r["ci_high"]
    assert hits >= 180


def test_paired_compare_verdicts():
    rng = np.random.default_rng(3)
    base = rng.normal(0, 1, size=300)  # per-prompt difficulty shared by both methods (paired)
    better, worse = mean_result(base + 0.5 + rng.normal(0, 0.1, 300)), mean_result(base)
    same = mean_result(base + rng.normal(0, 0.1, 300))
    assert compare(better, worse, higher_is_better=True)["verdict"] == "held"
    assert compare(worse, better, higher_is_better=True)["verdict"] == "not held"
    assert compare(better, worse, higher_is_better=False)["verdict"] == "not held"
    assert compare(same, worse, higher_is_better=True)["verdict"] == "inconclusive"
    c = compare(better, worse, higher_is_better=True)
    assert c["ci_low"] < c["advantage"] < c["ci_high"] and c["advantage"] == pytest.approx(better["value"] - worse["value"])


def test_unpaired_results_compare_as_independent():
    """Different n: different resampled indices, so the replicates are independent and the variances add."""
    rng = np.random.default_rng(6)
    a, b = mean_result(rng.normal(0, 1, 300)), mean_result(rng.normal(0, 1, 100), seed=1)
    d = difference(a, b)
    assert d["se"] == pytest.approx(np.hypot(a["se"], b["se"]), rel=0.2)
    with pytest.raises(UserError, match="no bootstrap replicates"):
        compare(bootstrap(lambda i: 1.0, 5, resamples=0, seed=0, ci=0.95), bootstrap(lambda i: 2.0, 5, resamples=0, seed=0, ci=0.95),
                higher_is_better=True)


def test_over_seeds_combines_values_and_counts():
    rng = np.random.default_rng(4)
    results = [mean_result(rng.normal(m, 1, size=100)) for m in (0.0, 0.2, 0.4)]
    r = over_seeds(results, ci=0.95)
    assert r["seeds"] == 3 and r["n"] == 300
    assert r["value"] == pytest.approx(np.mean([x["value"] for x in results]))
    assert r["se"] == pytest.approx(np.sqrt(sum(x["se"] ** 2 for x in results)) / 3, rel=0.2)
    assert r["ci_low"] < r["value"] < r["ci_high"]
