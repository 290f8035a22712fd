"""`nuwa train`: checkpoint + history CSV, exact resume, shard/model mismatches as one line."""
from __future__ import annotations

import csv
import math

import torch
from fakes import CODES, SETS, error_lines, run_cli, save_shards, use_fakes

from nuwa.core import checkpoint
from nuwa.core.trainer import resume_path


def train_args(tmp_path, train, val, out, *extra):
    return ["train", "--model", "nuwa", "--train", train, "--val", val, "--out", out, *SETS, *extra]


def test_train_writes_checkpoint_and_history(tmp_path, monkeypatch, capsys):
    use_fakes(monkeypatch)
    train, val = save_shards(tmp_path)
    out, hist = tmp_path / "model.pt", tmp_path / "history.csv"
    rc, stdout, _ = run_cli(train_args(tmp_path, train, val, out, "--history", hist, "--seed", "3"), capsys)
    assert rc == 0 and stdout.strip() == str(out)
    ckpt = checkpoint.load(out, "nuwa")
    assert ckpt["config"] == {"codebook": CODES} and ckpt["seed"] == 3
    assert ckpt["data"]["grid"] == [1, 4, 4] and ckpt["data"]["image_size"] == [16, 16]
    assert ckpt["data"]["n_embed"] == CODES
    rows = list(csv.DictReader(hist.open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[-1]["val_loss"]) < math.log(CODES) - 0.1  # it learned the skewed code distribution
    assert not resume_path(out).exists()


def test_stop_and_resume_gives_the_same_model(tmp_path, monkeypatch, capsys):
    use_fakes(monkeypatch)
    train, val = save_shards(tmp_path)
    full, part = tmp_path / "full.pt", tmp_path / "part.pt"
    assert run_cli(train_args(tmp_path, train, val, full), capsys)[0] == 0
    assert run_cli(train_args(tmp_path, train, val, part, "--stop-after", "5"), capsys)[0] == 0
    assert not part.exists() and resume_path(part).exists()
    assert run_cli(train_args(tmp_path, train, val, part), capsys)[0] == 0
    assert torch.equal(checkpoint.load(full, "nuwa")["model"]["logits"], checkpoint.load(part, "nuwa")["model"]["logits"])
    # --no-resume ignores a stale resume file and starts afresh
    assert run_cli(train_args(tmp_path, train, val, part, "--stop-after", "2"), capsys)[0] == 0
    assert run_cli(train_args(tmp_path, train, val, part, "--no-resume", "--stop-after", "1"), capsys)[0] == 0
    assert checkpoint.load(resume_path(part), "nuwa")["steps"] == 1


def test_codebook_mismatch_is_one_line(tmp_path, monkeypatch, capsys):
    use_fakes(monkeypatch)
    train, val = save_shards(tmp_path, n_embed=32)
    out = tmp_path / "model.pt"
    rc, _, err = run_cli(train_args(tmp_path, train, val, out), capsys)
    assert rc == 2 and len(error_lines(err)) == 1
    assert "32-code tokenizer" in err and f"{CODES}-code codebook" in err
    assert not out.exists() and not resume_path(out).exists()


def test_bad_model_and_missing_shard(tmp_path, monkeypatch, capsys):
    use_fakes(monkeypatch)
    train, val = save_shards(tmp_path)
    rc, _, err = run_cli(["train", "--model", "dalle", "--train", train, "--val", val, "--out", tmp_path / "m.pt"], capsys)
    assert rc == 2 and error_lines(err) == ["error: unknown model 'dalle'; choose one of nuwa, taming, maskgit"]
    rc, _, err = run_cli(train_args(tmp_path, tmp_path / "nope.pt", val, tmp_path / "m.pt"), capsys)
    assert rc == 2 and len(error_lines(err)) == 1 and "nope.pt" in err
    assert not (tmp_path / "m.pt").exists()
