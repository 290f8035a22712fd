"""The FID-type intervals cover the true distance and comparisons are calibrated, on synthetic Gaussian
features with a closed-form true distance at the suite's set and feature sizes (metrics/calibration.py).

Default suite: 40 trials with bounds a broken method cannot pass (the old percentile bootstrap fails the
same coverage bound). ``-m slow``: the full 200 trials of docs/metrics.md for every case.
"""
from __future__ import annotations

import numpy as np
import pytest

from metrics.calibration import CASES, World, coverage, detectable, verdicts
from metrics.fid import frechet_distance

TRIALS = 40
# docs/metrics.md#power-analysis: power to detect a 10 % larger distance at the recommended sizes
STATED_POWER = {"recommended-x1": 0.70, "recommended-x4": 0.75}


def test_world_hits_its_true_distances():
    world = World(CASES["block-fid-x4"])
    per = [frechet_distance(np.zeros(64), world.cov, mu, r @ r.T) for mu, r in world.params]
    assert per == pytest.approx(CASES["block-fid-x4"].distances, rel=1e-6)
    fake = world.fake(np.random.default_rng(0))
    assert fake.shape == (32, 4, 64) and np.corrcoef(fake[:, 0, 0], fake[:, 1, 0])[0, 1] > 0.2  # blocks of one image


def test_block_fid_x4_intervals_cover_and_the_old_bootstrap_does_not():
    """32 images x 4 positions against 256 real blocks, 64-d: >= 34 of 40 intervals hold the true Block-FID.
    A method covering 70 % passes this with probability 2 %, one covering 60 % with 0.06 %; the old
    percentile bootstrap covers none."""
    r = coverage(CASES["block-fid-x4"], TRIALS, old=30)
    assert r["coverage"] >= 34 / TRIALS
    assert r["old_coverage"] < 34 / TRIALS


def test_two_sets_of_one_distribution_are_inconclusive():
    """64 generated images per set (x1): >= 37 of 40 comparisons inconclusive; a comparison that calls 20 %
    of such pairs held or not held passes this with probability 3 %."""
    assert verdicts(CASES["fid-x1"], TRIALS, factor=1.0)["inconclusive"] >= 37 / TRIALS


# the negative control: scoring conditional samples against the real items they were made from, which
# `nuwa eval` no longer does; its intervals are documented to miss (docs/metrics.md: 56.5 % coverage)
MISCALIBRATED = ("paired-fvd-same-items",)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in CASES if n not in MISCALIBRATED])
def test_coverage_200_trials(name):
    assert coverage(CASES[name], 200)["coverage"] >= 0.90


@pytest.mark.slow
@pytest.mark.parametrize("name", MISCALIBRATED)
def test_the_negative_control_undercovers_200_trials(name):
    assert coverage(CASES[name], 200)["coverage"] < 0.75


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_null_inconclusive_200_trials(name):
    assert verdicts(CASES[name], 200, factor=1.0)["inconclusive"] >= 0.95


@pytest.mark.slow
@pytest.mark.parametrize("name", list(STATED_POWER))
def test_power_for_a_10_percent_difference_200_trials(name):
    v = verdicts(CASES[name], 200, factor=1.1)
    assert v["held"] >= STATED_POWER[name] and v["not held"] == 0


@pytest.mark.slow
def test_power_analysis_agrees_with_the_measured_power():
    """The normal approximation of the power analysis table against the verdicts at the recommended x4 sizes."""
    from scipy.stats import norm

    case = CASES["recommended-x4"]
    d = detectable(case, 50)
    predicted = norm.cdf(0.1 * np.mean(case.distances) / d["se"] - 1.959964)
    assert verdicts(case, 200, factor=1.1)["held"] == pytest.approx(predicted, abs=0.12)


def test_conditional_sets_cover_only_against_real_items_they_were_not_made_from():
    """Animations made from the first frames of 128 of 384 real clips (latent correlation 0.98 with them) at a
    small true distance (1.0, like Table 3's NAR clips): scored against all 384 the bias correction
    over-corrects and half the intervals miss (Table 3's FVD below 0 at c2cf482); against the other 256
    (what `nuwa eval` does) >= 34 of 40 cover."""
    same = coverage(CASES["paired-fvd-same-items"], TRIALS)
    disjoint = coverage(CASES["paired-fvd-disjoint"], TRIALS)
    assert disjoint["coverage"] >= 34 / TRIALS
    assert same["coverage"] < 30 / TRIALS
