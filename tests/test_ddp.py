"""`nuwa train` under torchrun (gloo, CPU): 2 processes on a global batch are the 1-process run, and resume after a kill.

Taming with caption dropout off is used because its loss draws no random numbers, so the two runs
may differ only by float summation order (recipes with random masks or orders draw them per rank).
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fakes import CODES, save_shards

from nuwa.core import checkpoint
from nuwa.core.trainer import resume_path

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
TINY = [f"nuwa.model.{k}" for k in ("layers=2", "dim=32", "heads=2", "text.dim=32", "text.layers=1", "text.heads=2",
                                    "text.context_length=8", "text.dropout_prob=0", f"codebook={CODES}")]
TINY += [f"tokenizer.vqgan.model.n_embed={CODES}", "baselines.taming.model.window=[4,4]",
         "baselines.taming.train.batch_size=4", "baselines.taming.train.eval_every=3"]  # 8 steps/epoch, 2 val batches


def torchrun(nproc: int, tmp_path: Path, out: Path, *sets: str) -> subprocess.Popen:
    train, val = tmp_path / "train.pt", tmp_path / "test.pt"
    if not train.exists():
        save_shards(tmp_path)
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "nuwa",
            "train", "--model", "taming", "--train", train, "--val", val, "--out", out,
            "--history", out.with_suffix(".csv")]
    for item in (*TINY, *sets):
        args += ["--set", item]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([str(a) for a in args], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen) -> str:
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, output[-3000:]
    return output


def history(out: Path) -> list[dict]:
    return list(csv.DictReader(out.with_suffix(".csv").open()))


def test_two_processes_train_like_one_process_on_the_same_global_batch(tmp_path):
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    finish(torchrun(1, tmp_path, one))
    log = finish(torchrun(2, tmp_path, two))
    assert log.count("2 process(es) x 2 examples = global batch 4, 8 steps per epoch") == 1  # rank 0 logs alone
    assert log.count("train taming epoch 1:") == 1 and log.splitlines()[-1] == str(two)
    a, b = history(one), history(two)
    assert [(r["epoch"], r["step"], r["examples"]) for r in a] == [(r["epoch"], r["step"], r["examples"]) for r in b]
    for key in ("train_loss", "val_loss"):  # same data per step, the same curve up to float summation order
        assert [float(r[key]) for r in b] == pytest.approx([float(r[key]) for r in a], rel=1e-5, abs=0)
    ma, mb = checkpoint.load(one, "taming")["model"], checkpoint.load(two, "taming")["model"]
    assert max((ma[k] - mb[k]).abs().max().item() for k in ma) < 1e-5


def rank_pid(launcher: subprocess.Popen, rank: int) -> int:
    """The worker of ``rank`` among torchrun's children (by its RANK environment variable)."""
    for child in Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split():
        if f"RANK={rank}".encode() in Path(f"/proc/{child}/environ").read_bytes().split(b"\0"):
            return int(child)
    raise AssertionError(f"no worker of rank {rank} under torchrun {launcher.pid}")


def test_a_run_whose_rank_is_killed_resumes_to_the_uninterrupted_run(tmp_path):
    sets = ("baselines.taming.train.epochs=4", "baselines.taming.train.checkpoint_every=3")
    full, part = tmp_path / "full.pt", tmp_path / "part.pt"
    finish(torchrun(2, tmp_path, full, *sets))
    proc = torchrun(2, tmp_path, part, *sets)
    while not resume_path(part).exists():  # the first resume checkpoint (step 3, mid-epoch) is on disk
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.02)
    os.kill(rank_pid(proc, 1), signal.SIGKILL)
    proc.communicate(timeout=600)
    assert proc.returncode != 0 and not part.exists()  # torchrun stops the other rank and fails the job
    log = finish(torchrun(2, tmp_path, part, *sets))
    assert "resuming train taming" in log
    a, b = checkpoint.load(full, "taming"), checkpoint.load(part, "taming")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["history"] == b["history"] and history(full) == history(part)
