"""Combining FID-type (jackknife) results: differences paired where sets are shared, independent where not,
over seeds, with KID alongside; every interval holds its value. Checked against direct recomputation."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import t

from metrics.fid import fid, fid_from_features
from metrics.stats import compare, difference, fake_key, jackknife_se, over_seeds
from nuwa.core.errors import UserError

STATS = dict(ci=0.95, groups=4, kid_subsets=5, kid_subset_size=1000)


def sets(seed: int, n: int, shift: float, dim: int = 3) -> np.ndarray:
    return shift + np.random.default_rng(seed).normal(size=(n, dim))


@pytest.fixture(scope="module")
def real() -> np.ndarray:
    return sets(0, 16, 0.0)


def test_difference_on_shared_real_set_and_prompts_is_the_jackknife_of_the_difference(real):
    """A and B (12 samples each, same seed: paired by index) against one real set: the difference's left-out
    values are FID(A) - FID(B) with the same real group / the same prompts' group left out."""
    a, b = sets(1, 12, 0.5), sets(2, 12, 0.9)
    ra, rb = fid(real, a, seed=0, **STATS), fid(real, b, seed=0, **STATS)
    d = difference(ra, rb)
    groups = lambda n, g: np.arange(n) % 4 != g  # noqa: E731 - the jackknife's groups: i mod 4
    real_out = [fid_from_features(real[groups(16, g)], a) - fid_from_features(real[groups(16, g)], b) for g in range(4)]
    fake_out = [fid_from_features(real, a[groups(12, g)]) - fid_from_features(real, b[groups(12, g)]) for g in range(4)]
    (fake_name, fake_vals), (real_key, real_vals) = sorted(d["jackknife"]["groups"].items())
    assert real_key.startswith("real:") and fake_name == fake_key(12, 0)
    assert real_vals == pytest.approx(real_out, rel=1e-7) and fake_vals == pytest.approx(fake_out, rel=1e-7)
    assert d["value"] == pytest.approx(ra["value"] - rb["value"], rel=1e-12)
    assert d["se"] == pytest.approx(jackknife_se({"r": real_out, "f": fake_out}), rel=1e-7)
    assert d["ci_low"] < d["value"] < d["ci_high"]
    assert d["kid"]["value"] == pytest.approx(ra["kid"]["value"] - rb["kid"]["value"], rel=1e-12)


def test_sets_of_different_n_are_independent_and_bias_corrected(real):
    """x4 minus x1: 8 vs 12 generated samples, one real set. Variances of the generated sets add; the real
    set stays paired; the values subtracted are the bias-corrected ones."""
    wide, narrow = fid(real, sets(3, 8, 1.0), seed=0, **STATS), fid(real, sets(4, 12, 0.5), seed=0, **STATS)
    d = difference(wide, narrow)
    assert d["value"] == pytest.approx(wide["value"] - narrow["value"])
    assert d["value"] != pytest.approx(wide["plugin"] - narrow["plugin"], rel=1e-3)
    assert set(d["jackknife"]["groups"]) == {next(k for k in wide["jackknife"]["groups"] if k.startswith("real")),
                                             fake_key(8, 0), fake_key(12, 0)}
    fake_se = [jackknife_se({k: v for k, v in r["jackknife"]["groups"].items() if k.startswith("fake")}) for r in (wide, narrow)]
    assert jackknife_se({k: v for k, v in d["jackknife"]["groups"].items() if k.startswith("fake")}) == pytest.approx(np.hypot(*fake_se))
    c = compare(narrow, wide, higher_is_better=False)
    assert c["ci_low"] <= c["advantage"] <= c["ci_high"] and c["advantage"] == pytest.approx(d["value"])


def test_over_seeds_averages_values_and_keeps_seeds_independent(real):
    results = [fid(real, sets(10 + s, 12, 0.5), seed=s, **STATS) for s in range(3)]
    r = over_seeds(results, ci=0.95)
    assert r["seeds"] == 3 and r["n"] == 36 and r["n_real"] == 16 and r["metric"] == "fid"
    assert r["value"] == pytest.approx(np.mean([x["value"] for x in results]))
    assert {fake_key(12, s) for s in range(3)} <= set(r["jackknife"]["groups"])
    assert r["kid"]["value"] == pytest.approx(np.mean([x["kid"]["value"] for x in results]))
    assert r["ci_low"] < r["value"] < r["ci_high"] and "plugin" not in r  # per-seed fields that differ are dropped


def test_bias_allowances_add_up_with_their_signs():
    a = {"value": 5.0, "bias_allowance": [1.0, 2.0], "ci": 0.95, "n": 4, "seeds": 1,
         "jackknife": {"center": 6.0, "groups": {"fake:n4:seed0": [6.0, 6.5, 5.5, 6.0]}}}
    b = {**a, "value": 3.0, "bias_allowance": [0.5, 0.0], "jackknife": {"center": 3.0, "groups": {"fake:n4:seed1": [3.0] * 4}}}
    d = difference(a, b)
    assert d["bias_allowance"] == [1.0, 2.5]  # a's lower allowance + b's upper one below, and vice versa
    assert d["ci_low"] == pytest.approx(2.0 - t.ppf(0.975, 3) * d["se"] - 1.0, rel=1e-9)


def test_jackknife_and_bootstrap_results_do_not_mix(real):
    boot = {"value": 1.0, "replicates": [1.0, 2.0], "ci": 0.95, "n": 12, "seeds": 1}
    with pytest.raises(UserError, match="jackknife"):
        compare(fid(real, sets(1, 12, 0.5), seed=0, **STATS), boot, higher_is_better=False)
