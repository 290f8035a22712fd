"""Every metric command on precomputed features (--real R.npz --fake F.npz): the same numbers as on arrays;
a bad features file is one error line naming it, a non-zero exit and no JSON."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from metrics.block_fid import block_fid
from metrics.clip_sim import clip_sim
from metrics.fid import fid
from metrics.inception_score import inception_score_ci
from nuwa.commands.cli import main

FAST = ["--set", "metrics.kid_subsets=5", "--set", "metrics.bootstrap=20"]
JACK = dict(seed=3, ci=0.95, groups=64, kid_subsets=5, kid_subset_size=1000)


def npz(path: Path, feats: np.ndarray, name: str = "feats") -> Path:
    np.savez(path, **{name: feats})
    return path


def run(tmp_path: Path, *argv: str) -> tuple[int, dict | None]:
    out = tmp_path / "out.json"
    code = main(["eval", *argv, "--json", str(out), "--seed", "3", *FAST])
    return code, json.loads(out.read_text()) if out.exists() else None


@pytest.fixture()
def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"real": rng.normal(size=(40, 6)), "fake": rng.normal(0.3, 1.0, size=(20, 6)),
            "blocks": rng.normal(0.3, 1.0, size=(20, 3, 6)), "logits": rng.normal(0, 2, size=(20, 5)),
            "pairs": rng.normal(size=(20, 2, 6))}


@pytest.mark.parametrize("metric", ["fid", "fvd"])
def test_fid_and_fvd_of_npz_features_equal_the_functions(tmp_path, arrays, metric):
    real, fake = npz(tmp_path / "r.npz", arrays["real"]), npz(tmp_path / "f.npz", arrays["fake"].astype(np.float32))
    code, result = run(tmp_path, metric, "--real", str(real), "--fake", str(fake))
    expected = fid(arrays["real"], arrays["fake"].astype(np.float32).astype(np.float64), **JACK)
    assert code == 0 and result["backbone"] == "precomputed features (.npz)" and result["fake"] == str(fake)
    for key in ("value", "plugin", "se", "ci_low", "ci_high"):
        assert result[key] == pytest.approx(expected[key], rel=1e-12), key
    assert result["kid"]["value"] == pytest.approx(expected["kid"]["value"], rel=1e-12)


@pytest.mark.parametrize("real_shape", ["[M, D]", "[M, P, D]"])
def test_block_fid_of_npz_features_equals_the_function(tmp_path, arrays, real_shape):
    real = arrays["real"] if real_shape == "[M, D]" else arrays["real"].reshape(20, 2, 6)
    code, result = run(tmp_path, "block-fid", "--real", str(npz(tmp_path / "r.npz", real)),
                       "--fake", str(npz(tmp_path / "f.npz", arrays["blocks"])))
    expected = block_fid(arrays["real"], arrays["blocks"], pooled=False, **JACK)
    assert code == 0 and result["positions"] == 3 and "block" not in result
    assert result["value"] == pytest.approx(expected["value"], rel=1e-12)
    assert result["per_position"] == pytest.approx(expected["per_position"], rel=1e-12)


def test_is_and_clip_sim_of_npz_features_equal_the_functions(tmp_path, arrays):
    code, result = run(tmp_path, "is", "--fake", str(npz(tmp_path / "l.npz", arrays["logits"])))
    assert code == 0 and result["value"] == pytest.approx(
        inception_score_ci(arrays["logits"], splits=10, resamples=20, seed=3, ci=0.95)["value"], rel=1e-12)
    pairs = arrays["pairs"]
    code, result = run(tmp_path, "clip-sim", "--fake", str(npz(tmp_path / "p.npz", pairs)))
    unit = pairs / np.linalg.norm(pairs, axis=-1, keepdims=True)
    sims = (unit[:, 0] * unit[:, 1]).sum(-1)
    expected = clip_sim(sims, resamples=20, seed=3, ci=0.95)
    assert code == 0 and result["value"] == pytest.approx(sims.mean(), rel=1e-12)
    assert result["ci_low"] == pytest.approx(expected["ci_low"], rel=1e-12) and result["ci_low"] < result["value"]


def test_too_few_samples_per_dimension_warn_and_widen(tmp_path, caplog):
    """10 images x 2 positions of isotropic 16-d features: the correction is not trusted, the command says so."""
    rng = np.random.default_rng(2)
    real, fake = npz(tmp_path / "r.npz", rng.normal(size=(100, 16))), npz(tmp_path / "f.npz", rng.normal(size=(10, 2, 16)))
    code, result = run(tmp_path, "block-fid", "--real", str(real), "--fake", str(fake))
    assert code == 0 and not result["reliable"] and result["effective_dims"] > 12
    assert result["ci_low"] < result["value"] < result["plugin"] < result["ci_high"]  # reaches the plug-in bound
    assert "too few samples for the bias correction" in caplog.text


def bad_files(tmp_path: Path, arrays: dict[str, np.ndarray]) -> dict[str, tuple[list[str], Path, str]]:
    """case -> (command line, the file the message must name, a word the message must hold)."""
    real = npz(tmp_path / "real.npz", arrays["real"])
    nan = arrays["fake"].copy()
    nan[4, 2] = np.nan
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    (tmp_path / "folder").mkdir()
    files = {
        "no feats array": (npz(tmp_path / "named.npz", arrays["fake"], name="features"), "'feats'"),
        "wrong ndim": (npz(tmp_path / "flat.npz", arrays["fake"].ravel()), "shape"),
        "integer dtype": (npz(tmp_path / "int.npz", (arrays["fake"] * 10).astype(np.int64)), "dtype"),
        "NaN": (npz(tmp_path / "nan.npz", nan), "NaN"),
        "inf": (npz(tmp_path / "inf.npz", np.where(nan != nan, np.inf, nan)), "inf"),
        "other feature size": (npz(tmp_path / "wide.npz", np.random.default_rng(1).normal(size=(20, 7))), "7-d"),
        "too few samples": (npz(tmp_path / "two.npz", arrays["fake"][:2]), "at least 3"),
        "not a zip": (garbage, "readable"),
        "missing": (tmp_path / "missing.npz", "not found"),
    }
    cases = {name: (["fid", "--real", str(real), "--fake", str(f)], f, word) for name, (f, word) in files.items()}
    cases["mixed with a folder"] = (["fid", "--real", str(tmp_path / "folder"), "--fake", str(real)], real, "not a mix")
    cases["with --backbone"] = (["fid", "--real", str(real), "--fake", str(real), "--backbone", "inception"], real, "--backbone")
    blocks = npz(tmp_path / "blocks.npz", arrays["blocks"])
    cases["block-fid fake [N, D]"] = (["block-fid", "--real", str(real), "--fake", str(real)], real, "[N, P, D]")
    cases["block-fid with --masks"] = (["block-fid", "--real", str(real), "--fake", str(blocks), "--masks", "m.pt"], blocks, "--masks")
    cases["is with too few samples for the splits"] = (["is", "--fake", str(files["too few samples"][0])], files["too few samples"][0], "at least 10")
    cases["clip-sim [N, 3, D]"] = (["clip-sim", "--fake", str(blocks)], blocks, "[N, 2, D]")
    return cases


CASES = ["no feats array", "wrong ndim", "integer dtype", "NaN", "inf", "other feature size", "too few samples", "not a zip",
         "missing", "mixed with a folder", "with --backbone", "block-fid fake [N, D]", "block-fid with --masks",
         "is with too few samples for the splits", "clip-sim [N, 3, D]"]


@pytest.mark.parametrize("case", CASES)
def test_bad_features_file_is_one_line_naming_it(tmp_path, arrays, capsys, case):
    argv, named, word = bad_files(tmp_path, arrays)[case]
    code, result = run(tmp_path, *argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and result is None
    assert err.startswith("error: ") and "\n" not in err and str(named) in err and word in err, err
