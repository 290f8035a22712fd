"""The shared training loop: warm-up schedule, history CSV, exact resume after an interruption."""
from __future__ import annotations

import csv
import dataclasses

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from nuwa.core import checkpoint
from nuwa.core.errors import UserError
from nuwa.core.trainer import EpochSampler, TrainConfig, fit, lr_lambda, resume_path


class Noisy:
    """Regression with input noise drawn from the global RNG (so resume must restore RNG state)."""

    def __init__(self, steps_per_batch: int = 1):
        torch.manual_seed(0)
        self.module = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
        self.k = steps_per_batch

    def steps_per_batch(self) -> int:
        return self.k

    def _loss(self, net, batch):
        x, y = batch
        x = x + 0.1 * torch.randn_like(x)
        return ((net(x) - y) ** 2).mean()

    def training_step(self, net, batch, step):
        total = 0.0
        for _ in range(self.k):  # several optimizer steps per batch, like NUWA-Infinity's patch loss
            loss = self._loss(net, batch)
            step(loss)
            total += loss.item()
        return total / self.k

    def validation_loss(self, net, batch):
        x, y = batch
        return ((net(x) - y) ** 2).mean().item()


def data(n=64):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=g)
    return TensorDataset(x, x.sum(1, keepdim=True))


CFG = TrainConfig(epochs=3, batch_size=8, lr=1e-2, checkpoint_every=5)


def test_training_lowers_loss_and_writes_history(tmp_path):
    out, hist = tmp_path / "m.pt", tmp_path / "h.csv"
    fit(Noisy(), data(), data(16), CFG, out=out, kind="toy", model_config={}, history_csv=hist)
    rows = list(csv.DictReader(hist.open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["val_loss"]) < float(rows[0]["val_loss"])
    assert checkpoint.load(out, "toy")["steps"] == 3 * 8
    assert not resume_path(out).exists()


@pytest.mark.parametrize("stop_after", [3, 8, 13])  # mid-epoch, on an epoch boundary, mid second-epoch
def test_resume_after_kill_continues_the_same_run(tmp_path, stop_after):
    cfg = dataclasses.replace(CFG, eval_every=3)
    full = tmp_path / "full.pt"
    fit(Noisy(2), data(), data(16), cfg, out=full, kind="toy", model_config={})
    part = tmp_path / "part.pt"
    fit(Noisy(2), data(), data(16), cfg, out=part, kind="toy", model_config={}, stop_after=stop_after)
    assert not part.exists() and resume_path(part).exists()
    torch.manual_seed(123)  # a fresh process would have different global RNG state
    fit(Noisy(2), data(), data(16), cfg, out=part, kind="toy", model_config={})
    a, b = checkpoint.load(full, "toy"), checkpoint.load(part, "toy")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    # the running training loss survives the interruption: the history equals the uninterrupted run's
    assert a["history"] == b["history"]


def test_resume_of_another_run_is_refused(tmp_path):
    out = tmp_path / "m.pt"
    fit(Noisy(), data(), data(16), CFG, out=out, kind="toy", model_config={}, stop_after=3)
    with pytest.raises(UserError, match=r"belongs to another run \(train_config.lr was 0.01, now 0.02\)"):
        fit(Noisy(), data(), data(16), dataclasses.replace(CFG, lr=2e-2), out=out, kind="toy", model_config={})
    with pytest.raises(UserError, match="examples was 64, now 32"):
        fit(Noisy(), data(32), data(16), CFG, out=out, kind="toy", model_config={})
    fit(Noisy(), data(), data(16), dataclasses.replace(CFG, checkpoint_every=2), out=out, kind="toy", model_config={})
    assert out.is_file() and not resume_path(out).exists()


def test_validation_every_few_batches_counts_epochs_steps_and_examples(tmp_path):
    hist = tmp_path / "h.csv"
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-2, eval_every=3)
    fit(Noisy(2), data(), data(16), cfg, out=tmp_path / "m.pt", kind="toy", model_config={}, history_csv=hist)
    rows = list(csv.DictReader(hist.open()))
    assert [r["epoch"] for r in rows] == ["0.375", "0.75", "1", "1.375", "1.75", "2"]
    assert [int(r["examples"]) for r in rows] == [24, 48, 64, 88, 112, 128]
    assert [int(r["step"]) for r in rows] == [6, 12, 16, 22, 28, 32]  # 2 optimizer steps per batch


def test_sampler_skips_batches_and_reshuffles_each_epoch():
    s = EpochSampler(10, seed=3, rank=0, world=1, batch=2)
    full = list(s)
    assert sorted(full) == list(range(10)) and len(s) == 10
    s.set_epoch(0, start_batch=1)
    assert list(s) == full[2:] and len(s) == 8
    s.set_epoch(1)
    assert list(s) != full


@pytest.mark.parametrize("world", [2, 4])
def test_ranks_share_out_each_single_process_batch(world):
    """Step i of W ranks sees exactly batch i of one process; each epoch covers the full batches once."""
    one = EpochSampler(30, seed=5, rank=0, world=1, batch=8)
    ranks = [EpochSampler(30, seed=5, rank=r, world=world, batch=8) for r in range(world)]
    for epoch, start in ((0, 0), (2, 1)):
        for s in (one, *ranks):
            s.set_epoch(epoch, start)
        single, per_rank = one.indices(), [s.indices() for s in ranks]
        b = 8 // world
        for i in range(len(single) // 8):
            assert [j for r in per_rank for j in r[i * b:(i + 1) * b]] == single[i * 8:(i + 1) * 8]
        seen = [j for r in per_rank for j in r]
        assert len(seen) == len(set(seen)) == (3 - start) * 8 == len(ranks[0]) * world  # the tail (6) is dropped


def test_a_batch_that_does_not_split_over_the_processes_is_one_line():
    with pytest.raises(UserError, match=r"^batch_size 6 is the global batch and must split evenly over 4 processes; "
                                        r"set it to a multiple of 4$"):
        EpochSampler(30, seed=0, rank=0, world=4, batch=6)


def test_warmup_then_cosine():
    f = lr_lambda(total_steps=100, warmup_steps=10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)


def test_resume_written_by_another_process_count_reseeds_the_random_streams(tmp_path, caplog):
    """The data order does not depend on the process count, so such a resume goes on (with new random draws)."""
    out = tmp_path / "m.pt"
    fit(Noisy(), data(), data(16), CFG, out=out, kind="toy", model_config={}, stop_after=3)
    state = checkpoint.load(resume_path(out), "toy")
    checkpoint.save(resume_path(out), **{**state, "rng": state["rng"] * 2})  # as if 2 ranks had written it
    fit(Noisy(), data(), data(16), CFG, out=out, kind="toy", model_config={})
    assert "written by 2 process(es), now 1: per-rank random streams are reseeded" in caplog.text
    assert checkpoint.load(out, "toy")["steps"] == 3 * 8
