"""The tiny, real artifacts every fault scenario works on, made by the `nuwa` CLI itself.

A :class:`Lab` is a folder with a rendered LHQC dataset, a VQGAN, token shards, trained
NUWA-Infinity / Taming / MaskGIT checkpoints, proxy backbones, a sample folder and a metric JSON,
all at a size that trains in seconds (checkpoints every few steps, so kills have much to hit).
Commands run as subprocesses with one thread (bit-identical numbers on CPU) and are skipped when
their output exists, so scenarios share one build.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "config.yaml"

# every setting that makes the embedded default tiny; checkpoints every few steps, history rows often
SETTINGS = [
    "data.lhqc.n_train=32", "data.lhqc.n_test=8", "data.lhqc.wide_factor=1",
    # sample sets small enough that 8 test items still leave real ones to score them against (a valid plan)
    "experiments.n.t2i=4", "experiments.n.t2i_wide=4", "experiments.n.outpaint=4",
    "tokenizer.vqgan.model.ddconfig.ch=16", "tokenizer.vqgan.model.n_embed=64",
    "tokenizer.vqgan.train.steps=24", "tokenizer.vqgan.train.batch_size=4", "tokenizer.vqgan.train.warmup_steps=4",
    "tokenizer.vqgan.train.checkpoint_every=2", "tokenizer.vqgan.loss.disc_start=8", "tokenizer.vqgan.loss.restart_every=4",
    "nuwa.model.codebook=64", "nuwa.model.layers=1", "nuwa.model.dim=32", "nuwa.model.heads=2",
    "nuwa.model.text={dim: 16, layers: 1, heads: 2, context_length: 16, dropout_prob: 0.1}",
    "nuwa.train.epochs=2", "nuwa.train.batch_size=8", "nuwa.train.checkpoint_every=8", "nuwa.train.eval_every=2",
    *(f"baselines.{m}.train={{epochs: 6, batch_size: 8, checkpoint_every: 2, eval_every: 2}}" for m in ("taming", "maskgit")),
    "metrics.bootstrap=20", "metrics.batch_size=8",
    "metrics.proxies.image.train={epochs: 4, batch_size: 8, checkpoint_every: 2}",
    "metrics.proxies.clip.train={epochs: 1, batch_size: 8}",
]
MODELS = ("nuwa", "taming", "maskgit")


@dataclass
class Result:
    """One finished command: exit status, stderr and stdout text, wall seconds."""

    args: list[str]
    rc: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.stderr


def env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra}


def nuwa_command(args: list[str], *, settings: bool = True) -> list[str]:
    """`python -m bench.faults.child ARGS` (= `python -m nuwa ARGS` plus fault hooks) with the lab's config;
    the command's own ``--set`` options come after the lab's, so they win."""
    if not settings:
        return [sys.executable, "-m", "bench.faults.child", *args]
    own = [i for i, a in enumerate(args) if a == "--set"]
    sets = [x for i in own for x in args[i:i + 2]]
    rest = [a for i, a in enumerate(args) if i not in own and i - 1 not in own]
    lab = ["--config", str(CONFIG), *[a for s in SETTINGS for a in ("--set", s)]]
    return [sys.executable, "-m", "bench.faults.child", *rest, *lab, *sets]


def run(args: list[str], *, settings: bool = True, cwd: Path | None = None, timeout: float = 1800,
        **fault_env: str) -> Result:
    start = time.time()
    p = subprocess.run(nuwa_command(args, settings=settings), cwd=cwd or ROOT, env=env(**fault_env),
                       capture_output=True, text=True, timeout=timeout)
    return Result(args, p.returncode, p.stdout, p.stderr, time.time() - start)


def check(result: Result) -> Result:
    if result.rc != 0:
        raise RuntimeError(f"`nuwa {' '.join(result.args)}` failed ({result.rc}):\n{result.stderr[-3000:]}")
    return result


class Lab:
    """Paths of the lab's artifacts under ``root``; :meth:`build` makes the missing ones."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.data = self.root / "data" / "lhqc"
        self.vqgan = self.root / "tokenizer" / "vqgan.pt"
        self.shard = {s: self.root / "tokens" / f"{s}.pt" for s in ("train", "test")}
        self.model = {m: self.root / "runs" / m / "model.pt" for m in MODELS}
        self.history = {m: self.root / "runs" / m / "history.csv" for m in MODELS}
        self.proxy = {k: self.root / "proxies" / f"{k}.pt" for k in ("image", "clip")}
        self.samples = self.root / "samples" / "t2i"
        self.other_samples = self.root / "samples" / "t2i_seed1"
        self.metric = {m: self.root / "metrics" / f"{m}.json" for m in ("fid", "clip-sim")}
        self.workdir = self.root / "work"  # metrics' feature cache: work/features

    def build(self) -> Lab:
        steps = [
            (self.data, ["data", "render", "lhqc", "--out", str(self.data)]),
            (self.vqgan, self.train_args("vqgan", self.vqgan)),
            *((self.shard[s], ["tokenizer", "encode", "--tokenizer", str(self.vqgan), "--data", str(self.data),
                               "--split", s, "--out", str(self.shard[s])]) for s in ("train", "test")),
            *((self.model[m], self.train_args(m, self.model[m])) for m in MODELS),
            *((self.proxy[k], self.train_args(f"proxy_{k}", self.proxy[k])) for k in ("image", "clip")),
            (self.samples, self.generate_args(self.samples, seed=0)),
            (self.other_samples, self.generate_args(self.other_samples, seed=1)),
            (self.metric["fid"], self.fid_args(self.metric["fid"])),
            (self.metric["clip-sim"], self.clip_sim_args(self.metric["clip-sim"])),
        ]
        for out, args in steps:
            if not out.exists():
                check(run(args))
        return self

    # ------------------------------------------------------------ the commands (also the scenarios' targets)
    def train_args(self, target: str, out: Path) -> list[str]:
        """The training command of ``target``: a model family, ``vqgan`` or ``proxy_image``/``proxy_clip``."""
        if target == "vqgan":
            return ["tokenizer", "train", "vqgan", "--data", str(self.data), "--out", str(out)]
        if target.startswith("proxy_"):
            return ["eval", "train-backbone", target.removeprefix("proxy_"), "--data", str(self.data), "--out", str(out)]
        return ["train", "--model", target, "--train", str(self.shard["train"]), "--val", str(self.shard["test"]),
                "--out", str(out), "--history", str(out.with_name("history.csv"))]

    def generate_args(self, out: Path, seed: int, model: str = "nuwa", checkpoint: Path | None = None) -> list[str]:
        return ["generate", "t2i", "--model", model, "--checkpoint", str(checkpoint or self.model[model]),
                "--tokenizer", str(self.vqgan), "--data", str(self.data), "--split", "test", "--n", "8",
                "--seed", str(seed), "--quiet", "--out", str(out)]

    def fid_args(self, json_out: Path | None = None, workdir: Path | None = None) -> list[str]:
        args = ["eval", "fid", "--backbone", str(self.proxy["image"]), "--real", str(self.data / "test"),
                "--fake", str(self.samples / "images"), "--set", f"workdir={workdir or self.workdir}"]
        return args + (["--json", str(json_out)] if json_out else [])

    def clip_sim_args(self, json_out: Path | None = None, samples: Path | None = None) -> list[str]:
        args = ["eval", "clip-sim", "--backbone", str(self.proxy["clip"]), "--fake", str(samples or self.samples)]
        return args + (["--json", str(json_out)] if json_out else [])
