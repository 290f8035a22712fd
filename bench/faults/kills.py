"""SIGKILL a training command at random moments, rerun it until it finishes, compare with an uninterrupted run.

Targets: `nuwa train` of NUWA-Infinity (patch loss), Taming and MaskGIT, the proxy image backbone
(`nuwa eval train-backbone image`) and the VQGAN (`nuwa tokenizer train vqgan`). Every third kill
lands in the middle of a checkpoint write (the child writes part of the file and kills itself, at its first or second save);
the others are a SIGKILL from outside at a random time within the first twelfth of an
uninterrupted run's training time after this process's first optimizer step, so that every
target takes all its kills before it can finish. The comparison is
exact: every tensor and value of the final checkpoint, the state of every optimizer at the end
and the bytes of the history CSV.
"""
from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.faults.lab import ROOT, Lab, check, env, nuwa_command, run

TARGETS = ("nuwa", "taming", "maskgit", "proxy_image", "vqgan")
KILLED = -signal.SIGKILL
# the lab's proxy trains 16 steps, too few for 10 kills that each make progress: train it 48 here
LONGER = {"proxy_image": ["--set", "metrics.proxies.image.train={epochs: 12, batch_size: 8, checkpoint_every: 2}"]}


@dataclass
class KillReport:
    target: str
    wanted: int
    kills: int = 0
    mid_write: int = 0
    timed: int = 0
    finished_before_kill: int = 0   # attempts whose run ended before the kill came (not counted as kills)
    weights_identical: bool = False
    optimizer_identical: bool = False
    history_identical: bool = False
    temp_files_left: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.kills == self.wanted and self.weights_identical and self.optimizer_identical
                and self.history_identical and not self.temp_files_left)


def same(a: Any, b: Any) -> bool:
    """Exact equality of nested checkpoint payloads (tensors bit for bit)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    return a == b or (a != a and b != b)  # NaN == NaN here


def load(path: Path) -> Any:
    from nuwa.core.io import torch_load

    return torch_load(path, "checkpoint")


def history_bytes(out: Path) -> bytes:
    path = out.with_name("history.csv")
    return path.read_bytes() if path.is_file() else b""


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".") and ".tmp" in p.name]


def kill_after_start(args: list[str], ready: Path, delay: float, timeout: float = 1800, **fault_env: str) -> int:
    """Run the child; SIGKILL it ``delay`` seconds after its first optimizer step. Returns its exit status."""
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen(nuwa_command(args), cwd=ROOT, env=env(FAULT_READY=str(ready), **fault_env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.time()
    while not ready.exists() and proc.poll() is None and time.time() - start < timeout:
        time.sleep(0.02)
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    return proc.wait()


def reference(lab: Lab, target: str, out: Path) -> tuple[float, Path]:
    """The uninterrupted run; returns its training seconds (first step to exit) and its optimizer dump."""
    out.parent.mkdir(parents=True, exist_ok=True)
    opt, ready = out.with_name("optimizers.pt"), out.with_name("ready")
    start = time.time()
    check(run(lab.train_args(target, out) + LONGER.get(target, []), FAULT_OPTIMIZERS=str(opt), FAULT_READY=str(ready)))
    return max(1.0, time.time() - max(start, ready.stat().st_mtime)), opt


def kill_series(lab: Lab, target: str, work: Path, rng: np.random.Generator, kills: int) -> KillReport:
    report, start = KillReport(target, kills), time.time()
    active, ref_opt = reference(lab, target, work / "reference" / "model.pt")
    out = work / "killed" / "model.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    args, opt = lab.train_args(target, out) + LONGER.get(target, []), out.with_name("optimizers.pt")
    while report.kills < kills:  # each attempt dumps the optimizers if it happens to finish
        if report.kills % 3 == 2:
            rc = run(args, FAULT_KILL_AT_SAVE=str(int(rng.integers(1, 3))), FAULT_OPTIMIZERS=str(opt),
                     FAULT_KILL_FRACTION=f"{rng.uniform(0.05, 0.95):.3f}").rc
            kind = "mid_write"
        else:
            rc = kill_after_start(args, out.with_name("ready"), float(rng.uniform(0.0, active / 12)),
                                  FAULT_OPTIMIZERS=str(opt))
            kind = "timed"
        if rc != KILLED:
            check_finished(rc, target)
            report.finished_before_kill += 1
            break
        report.kills += 1
        setattr(report, kind, getattr(report, kind) + 1)
    if not report.finished_before_kill:
        check(run(args, FAULT_OPTIMIZERS=str(opt)))
    report.weights_identical = same(load(work / "reference" / "model.pt"), load(out))
    report.optimizer_identical = same(torch.load(ref_opt, weights_only=False), torch.load(opt, weights_only=False))
    report.history_identical = history_bytes(work / "reference" / "model.pt") == history_bytes(out)
    report.temp_files_left = len(temp_files(out.parent))
    report.seconds = round(time.time() - start, 1)
    return report


def check_finished(rc: int, target: str) -> None:
    if rc != 0:
        raise RuntimeError(f"{target}: an interrupted run exited with {rc} instead of being killed or finishing")


def run_kills(lab: Lab, work: Path, seed: int, kills: int = 10, targets: tuple[str, ...] = TARGETS) -> list[dict]:
    """One kill series per target; the kill moments come from ``numpy.random.default_rng([seed, i])``."""
    rows = []
    for i, target in enumerate(targets):
        report = kill_series(lab, target, work / target, np.random.default_rng([seed, i]), kills)
        rows.append({**asdict(report), "ok": report.ok})
        print(f"kills {target}: {report.kills} kills ({report.mid_write} mid-write, {report.timed} timed), "
              f"weights {report.weights_identical}, optimizer {report.optimizer_identical}, "
              f"history {report.history_identical}, temp files left {report.temp_files_left} ({report.seconds} s)",
              flush=True)
    return rows
