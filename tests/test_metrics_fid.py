"""FID agrees with pytorch-fid (CLI, legacy_pytorch) and clean-fid; Fréchet distance identities; the fast trace
term, left-out moments, jackknife bias correction and KID against direct recomputation; missing weights."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import t

from metrics.config import InceptionConfig
from metrics.fid import factor, fid, fid_from_features, frechet, frechet_distance, gaussian, left_out, trace_sqrt
from metrics.inception import WEIGHTS_NAME, InceptionBackbone
from metrics.kid import kid
from nuwa.commands.cli import main
from nuwa.core.errors import UserError


def test_fd_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(50, 8))
    assert abs(fid_from_features(x, x)) < 1e-8


def test_identity_covariances_give_squared_mean_distance():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    assert frechet_distance(mu1, np.eye(5), mu2, np.eye(5)) == pytest.approx(float(((mu1 - mu2) ** 2).sum()), rel=1e-9)


def test_fid_equals_cleanfid_fid_from_feats():
    from cleanfid.fid import fid_from_feats

    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(60, 6)), rng.normal(0.3, 1.2, size=(40, 6))
    assert fid_from_features(a, b) == pytest.approx(fid_from_feats(a, b), rel=1e-9)


STATS = dict(seed=7, ci=0.9, groups=64, kid_subsets=10, kid_subset_size=1000)


def correlated(n: int, dim: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return shift + rng.normal(size=(n, dim)) @ np.random.default_rng(99).normal(size=(dim, dim)) / np.sqrt(dim)


@pytest.mark.parametrize("n_fake", [40, 6])  # full rank, and n < D (a rank-5 covariance)
def test_fast_trace_term_equals_pytorch_fid(n_fake):
    real, fake = correlated(50, 8, 0), correlated(n_fake, 8, 1, 0.3)
    (mu_r, cov_r), (mu_f, cov_f) = gaussian(real), gaussian(fake)
    tol = 1e-9 if n_fake > 8 else 1e-6  # a singular covariance: round-off eigenvalues ~1e-16 contribute their sqrt
    ours = ((mu_r - mu_f) ** 2).sum() + np.trace(cov_r) + np.trace(cov_f) - 2 * trace_sqrt(factor(cov_r), cov_f)
    assert ours == pytest.approx(frechet_distance(mu_r, cov_r, mu_f, cov_f), rel=tol)
    assert trace_sqrt(factor(cov_r), cov_f) == pytest.approx(trace_sqrt(factor(cov_f), cov_r), rel=tol)  # singular: eigh


def test_left_out_moments_equal_those_of_the_remaining_rows():
    x, labels = correlated(11, 4, 2, 5.0), np.arange(11) % 3
    for g, (mean, cov) in enumerate(left_out(x, labels)):
        rest = x[labels != g]
        assert np.allclose(mean, rest.mean(axis=0), rtol=1e-12) and np.allclose(cov, np.cov(rest, rowvar=False), rtol=1e-10)


def test_jackknife_correction_and_se_equal_direct_recomputation():
    """Delete-1 (fake, 12 samples) and grouped (real, 20 samples in 5 groups) against FIDs recomputed by pytorch-fid."""
    real, fake = correlated(20, 3, 3), correlated(12, 3, 4, 0.8)
    r = frechet(real, fake, fake_set="fake:n12:seed0", groups=5, ci=0.95, fake_labels=np.arange(12))
    plug = fid_from_features(real, fake)
    loo_fake = [fid_from_features(real, np.delete(fake, i, axis=0)) for i in range(12)]
    loo_real = [fid_from_features(real[np.arange(20) % 5 != g], fake) for g in range(5)]
    bias = 11 * (np.mean(loo_fake) - plug) + 4 * (np.mean(loo_real) - plug)
    var = 11 / 12 * np.sum((loo_fake - np.mean(loo_fake)) ** 2) + 4 / 5 * np.sum((loo_real - np.mean(loo_real)) ** 2)
    assert r["jackknife"]["center"] == pytest.approx(plug, rel=1e-9)
    assert r["value"] == pytest.approx(plug - bias, rel=1e-8) and r["se"] == pytest.approx(np.sqrt(var), rel=1e-8)
    assert r["ci_low"] == pytest.approx(r["value"] - t.ppf(0.975, 4) * r["se"], rel=1e-9)  # t, fewest groups - 1


def test_bias_correction_removes_the_mean_terms_bias():
    """Identity covariances, known means: E[plug-in] = |mu|^2 + D/M + D/N, while the corrected value is unbiased."""
    rng, dim, m, n = np.random.default_rng(5), 4, 30, 10
    plug, value = [], []
    for _ in range(300):
        real, fake = rng.normal(size=(m, dim)), rng.normal(size=(n, dim)) + 1.0  # true FD = |mu|^2 = 4
        r = frechet(real, fake, fake_set="f", groups=64, ci=0.95)
        plug.append(r["jackknife"]["center"])
        value.append(r["value"])
    assert np.mean(plug) - 3 * np.std(plug) / np.sqrt(300) > 4 + dim / m + dim / n  # the mean term's bias, and more
    assert np.mean(value) == pytest.approx(4.0, abs=3 * np.std(value) / np.sqrt(300))


def test_fid_result_is_deterministic_and_its_intervals_contain_the_values():
    a, b = correlated(80, 4, 6), correlated(60, 4, 7, 0.5)
    r1, r2 = fid(a, b, **STATS), fid(a, b, **STATS)
    assert r1 == r2 and r1["n"] == 60 and r1["n_real"] == 80 and r1["reliable"]
    assert r1["plugin"] == pytest.approx(fid_from_features(a, b), rel=1e-12)
    for r in (r1, r1["kid"]):
        assert r["ci_low"] < r["value"] < r["ci_high"]


def test_too_few_samples_for_the_correction_widen_the_interval_to_the_bounds():
    """12 samples of 16-d isotropic features (16 effective dimensions): the interval reaches the plug-in value."""
    a, b = np.random.default_rng(8).normal(size=(200, 16)), np.random.default_rng(9).normal(size=(12, 16))
    r = frechet(a, b, fake_set="f", groups=64, ci=0.95)
    assert not r["reliable"] and r["effective_dims"] > 14
    assert r["bias_allowance"][1] == pytest.approx(r["jackknife"]["center"] - r["value"])
    assert r["ci_high"] == pytest.approx(r["jackknife"]["center"] + t.ppf(0.975, 11) * r["se"], rel=1e-9)
    assert r["ci_low"] <= r["value"] <= r["ci_high"]


def test_kid_is_torch_fidelitys_and_its_jackknife_is_the_u_statistics():
    from torch_fidelity.metric_kid import kid_features_to_metric

    real, fake = correlated(9, 5, 10), correlated(9, 5, 11, 0.4)
    r = kid(real, fake, fake_set="f", groups=64, subsets=1, subset_size=9, seed=3, ci=0.95)
    lib = kid_features_to_metric(torch.from_numpy(real), torch.from_numpy(fake), kid_subsets=1, kid_subset_size=9,
                                 rng_seed=3, verbose=False)["kernel_inception_distance_mean"]
    assert r["value"] == pytest.approx(lib, rel=1e-12)
    assert r["jackknife"]["center"] == pytest.approx(lib, rel=1e-10)  # one subset of everything = the full U-statistic

    def u_stat(x: np.ndarray, y: np.ndarray) -> float:
        k = lambda p, q: (p @ q.T / 5 + 1) ** 3  # noqa: E731 - the KID kernel, written out
        kxx, kyy = k(x, x), k(y, y)
        m, n = len(x), len(y)
        return (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * k(x, y).mean()

    real_out, fake_out = r["jackknife"]["groups"].values()
    assert real_out == pytest.approx([u_stat(np.delete(real, i, 0), fake) for i in range(9)], rel=1e-9)
    assert fake_out == pytest.approx([u_stat(real, np.delete(fake, i, 0)) for i in range(9)], rel=1e-9)


@pytest.fixture(autouse=True)
def random_weights_under_the_hub_name(monkeypatch):
    """The random test weights carry pytorch-fid's file name but not its hash: skip only that check
    (bench/faults/inputs.py checks that a wrong hash is refused)."""
    monkeypatch.setattr("metrics.inception.require_named_hash", lambda path, what: Path(path))


@pytest.fixture(scope="module")
def inception_home(tmp_path_factory) -> Path:
    """A TORCH_HOME holding a randomly initialised FID Inception under pytorch-fid's file name."""
    import torchvision
    from pytorch_fid import inception

    home = tmp_path_factory.mktemp("torch_home")
    torch.manual_seed(0)
    with mock.patch.object(inception, "load_state_dict_from_url", lambda *a, **k: None), \
            mock.patch.object(torchvision.models.Inception3, "load_state_dict", lambda self, sd: None):
        net = inception.fid_inception_v3()
    path = home / "hub" / "checkpoints" / WEIGHTS_NAME
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    return home


def image_folder(root: Path, n: int, seed: int, size: int = 24) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for i in range(n):
        base = rng.integers(0, 255, size=3)
        img = (base + rng.normal(0, 40 + 10 * seed, size=(size, size, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / f"{i:03d}.png")
    return root


def ours(real: Path, fake: Path, out: Path) -> dict:
    assert main(["eval", "fid", "--real", str(real), "--fake", str(fake), "--backbone", "inception",
                 "--set", "metrics.inception.mode=legacy_pytorch", "--set", "metrics.inception.dims=64",
                 "--set", "metrics.cache=false", "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_fid_matches_pytorch_fid_and_cleanfid(inception_home, tmp_path, monkeypatch):
    """Fast variant: pytorch-fid's calculate_fid_given_paths (what `python -m pytorch_fid` runs) in-process."""
    from cleanfid.fid import fid_from_feats
    from pytorch_fid.fid_score import calculate_fid_given_paths

    from metrics.features import image_features
    from metrics.io import list_images

    real, fake = image_folder(tmp_path / "real", 6, 0), image_folder(tmp_path / "fake", 6, 1)
    monkeypatch.setenv("TORCH_HOME", str(inception_home))
    expected = calculate_fid_given_paths([str(real), str(fake)], 50, "cpu", 64, num_workers=0)
    result = ours(real, fake, tmp_path / "fid.json")
    assert result["plugin"] > 0 and result["plugin"] == pytest.approx(expected, rel=1e-4)
    assert result["backbone"] == "inception-fid-64-legacy_pytorch" and len(result["backbone_sha256"]) == 64

    bb = InceptionBackbone.load(InceptionConfig(mode="legacy_pytorch", dims=64))
    a, b = (image_features(bb, list_images(d)) for d in (real, fake))
    assert fid_from_feats(a, b) == pytest.approx(result["plugin"], rel=1e-9)


@pytest.mark.slow
def test_fid_matches_python_m_pytorch_fid(inception_home, tmp_path, monkeypatch):
    real, fake = image_folder(tmp_path / "real", 6, 0), image_folder(tmp_path / "fake", 6, 1)
    env = {**os.environ, "TORCH_HOME": str(inception_home), "OMP_NUM_THREADS": "1"}
    ref = subprocess.run([sys.executable, "-m", "pytorch_fid", str(real), str(fake), "--device", "cpu",
                          "--dims", "64", "--num-workers", "0", "--batch-size", "50"],
                         env=env, capture_output=True, text=True, check=True).stdout
    expected = float(re.search(r"FID:\s+(\S+)", ref).group(1))
    monkeypatch.setenv("TORCH_HOME", str(inception_home))
    assert ours(real, fake, tmp_path / "fid.json")["plugin"] == pytest.approx(expected, rel=1e-4)


def test_clean_mode_resizes_with_clean_fid(inception_home):
    bb = InceptionBackbone.load(InceptionConfig(weights=str(inception_home / "hub" / "checkpoints" / WEIGHTS_NAME), dims=64))
    x = bb.prepare(torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8))
    assert x.shape == (3, 299, 299) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_missing_inception_weights_is_one_clear_line(tmp_path, capsys):
    missing = tmp_path / "nope.pth"
    with pytest.raises(UserError) as err:
        InceptionBackbone.load(InceptionConfig(weights=str(missing)))
    msg = str(err.value)
    assert "\n" not in msg and str(missing) in msg and "pytorch-fid" in msg and WEIGHTS_NAME in msg
    real = image_folder(tmp_path / "r", 2, 0)
    assert main(["eval", "fid", "--real", str(real), "--fake", str(real), "--backbone", "inception",
                 "--set", f"metrics.inception.weights={missing}"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
