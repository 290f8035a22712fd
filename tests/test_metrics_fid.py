"""FID agrees with pytorch-fid (CLI, legacy_pytorch) and clean-fid; Fréchet distance identities; missing weights."""
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

from metrics.config import InceptionConfig
from metrics.fid import fid, fid_from_features, frechet_distance
from metrics.inception import WEIGHTS_NAME, InceptionBackbone
from nuwa.cli import main
from nuwa.errors import UserError


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


def test_bootstrap_ci_brackets_fid_and_is_deterministic():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(80, 4)), rng.normal(0.5, 1.0, size=(80, 4))
    r1, r2 = fid(a, b, resamples=30, seed=7, ci=0.9), fid(a, b, resamples=30, seed=7, ci=0.9)
    assert r1 == r2 and r1["ci_low"] <= r1["value"] <= r1["ci_high"] and r1["n"] == 80


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
                 "--set", "metrics.bootstrap=0", "--set", "metrics.cache=false", "--json", str(out)]) == 0
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
    assert result["value"] > 0 and result["value"] == pytest.approx(expected, rel=1e-4)
    assert result["backbone"] == "inception-fid-64-legacy_pytorch" and len(result["backbone_sha256"]) == 64

    bb = InceptionBackbone.load(InceptionConfig(mode="legacy_pytorch", dims=64))
    a, b = (image_features(bb, list_images(d)) for d in (real, fake))
    assert fid_from_feats(a, b) == pytest.approx(result["value"], rel=1e-9)


@pytest.mark.slow
def test_fid_matches_python_m_pytorch_fid(inception_home, tmp_path, monkeypatch):
    real, fake = image_folder(tmp_path / "real", 6, 0), image_folder(tmp_path / "fake", 6, 1)
    env = {**os.environ, "TORCH_HOME": str(inception_home), "OMP_NUM_THREADS": "1"}
    ref = subprocess.run([sys.executable, "-m", "pytorch_fid", str(real), str(fake), "--device", "cpu",
                          "--dims", "64", "--num-workers", "0", "--batch-size", "50"],
                         env=env, capture_output=True, text=True, check=True).stdout
    expected = float(re.search(r"FID:\s+(\S+)", ref).group(1))
    monkeypatch.setenv("TORCH_HOME", str(inception_home))
    assert ours(real, fake, tmp_path / "fid.json")["value"] == pytest.approx(expected, rel=1e-4)


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
