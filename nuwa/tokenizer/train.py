"""Tokenizer training: a GAN loop with two optimizers, checkpoints and exact resume.

VQGAN trains on single images (an image world's images or every frame of a video world).
PG-VQGAN starts from a trained VQGAN, keeps it frozen (so its tokens stay valid) and trains the
pixel encoder on consecutive frame pairs (n-1, n) of a video world.

A resume file ``<out>.resume`` (weights, both optimizers, code-usage clock, RNG state) is written
every ``checkpoint_every`` steps; rerunning the same command continues the run bit for bit (the
data loader draws its worker seed from its own generator, so a resume does not shift the global
RNG that dead-code restarts use). A resume file of other settings, architecture or data is refused.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from nuwa.core import checkpoint as ckpt_io
from nuwa.core.errors import UserError
from nuwa.core.trainer import EpochSampler, check_same_run, lr_lambda, resume_path
from nuwa.tokenizer import arch_dict, load
from nuwa.tokenizer.config import OptimConfig, PGVQGANConfig, VQGANConfig
from nuwa.tokenizer.losses import VQLoss
from nuwa.tokenizer.pg_vqgan import PGVQGAN
from nuwa.tokenizer.vqgan import VQGAN

log = logging.getLogger(__name__)


def open_split(data_dir: str | Path, split: str) -> tuple[Dataset, bool]:
    """The split as ``nuwa.data.ImageFolder`` / ``VideoFolder``, and whether it holds videos."""
    from nuwa.data import ImageFolder, VideoFolder

    root = Path(data_dir) / split
    if (root / "images").is_dir():
        return ImageFolder(data_dir, split), False
    if (root / "clips").is_dir():
        return VideoFolder(data_dir, split), True
    raise UserError(f"{root} holds neither images/ nor clips/; render or import the dataset first (`nuwa data render`)")


class Frames(Dataset):
    """Single frames [3, H, W]: the images of an image split, every frame of a video split."""

    def __init__(self, data: Dataset, videos: bool):
        self.data, self.videos = data, videos
        self.per_item = data[0]["video"].shape[0] if videos else 1

    def __len__(self) -> int:
        return len(self.data) * self.per_item

    def __getitem__(self, i: int) -> torch.Tensor:
        item = self.data[i // self.per_item]
        return item["video"][i % self.per_item] if self.videos else item["image"]


class FramePairs(Dataset):
    """Consecutive frames [2, 3, H, W] = (n-1, n) of a video split, for PG-VQGAN."""

    def __init__(self, data: Dataset):
        self.data = data
        self.per_item = data[0]["video"].shape[0] - 1
        if self.per_item < 1:
            raise UserError("PG-VQGAN needs clips of at least 2 frames; render or import longer clips")

    def __len__(self) -> int:
        return len(self.data) * self.per_item

    def __getitem__(self, i: int) -> torch.Tensor:
        t = i % self.per_item
        return self.data[i // self.per_item]["video"][t:t + 2]


def train_vqgan(data_dir: str | Path, out: str | Path, cfg: VQGANConfig, *, seed: int = 0,
                stop_after: int | None = None) -> Path:
    ckpt_io.seed_everything(seed)
    model = VQGAN(cfg.model)
    data, videos = open_split(data_dir, "train")
    return run(model, Frames(data, videos), VQLoss(cfg.loss, cfg.model.ddconfig.in_channels), cfg.train,
               out=out, kind="vqgan", seed=seed, restart_every=cfg.loss.restart_every, stop_after=stop_after)


def train_pg_vqgan(data_dir: str | Path, init: str | Path, out: str | Path, cfg: PGVQGANConfig, *, seed: int = 0,
                   stop_after: int | None = None) -> Path:
    ckpt_io.seed_everything(seed)
    model = pg_from_vqgan(load(init))
    data, videos = open_split(data_dir, "train")
    if not videos:
        raise UserError(f"PG-VQGAN trains on consecutive frames; {data_dir} is an image dataset, pass a video world")
    return run(model, FramePairs(data), VQLoss(cfg.loss, model.arch.ddconfig.in_channels), cfg.train,
               out=out, kind="pg_vqgan", seed=seed, restart_every=0, stop_after=stop_after)


def pg_from_vqgan(vqgan: VQGAN) -> PGVQGAN:
    """A PG-VQGAN that shares ``vqgan``'s weights, with the VQGAN part frozen."""
    if isinstance(vqgan, PGVQGAN):
        raise UserError("--init must be a VQGAN checkpoint (kind 'vqgan'), not a PG-VQGAN")
    model = PGVQGAN(vqgan.arch)
    model.load_state_dict({**model.state_dict(), **vqgan.state_dict()})
    model.requires_grad_(False)
    for p in model.trainable_parameters():
        p.requires_grad_(True)
    return model


def run(model: VQGAN, data: Dataset, loss: VQLoss, opt: OptimConfig, *, out: str | Path, kind: str, seed: int,
        restart_every: int, stop_after: int | None = None) -> Path:
    """The GAN loop. Batches are images [B, 3, H, W] or frame pairs [B, 2, 3, H, W]."""
    out = Path(out)
    n_batches = len(data) // opt.batch_size
    if n_batches < 1:
        raise UserError(f"the training split has {len(data)} samples, fewer than one batch of {opt.batch_size}; "
                        "render more data or lower tokenizer.*.train.batch_size")
    params = model.trainable_parameters()
    opt_g = torch.optim.Adam(params, lr=opt.lr, betas=(opt.beta1, opt.beta2))
    opt_d = torch.optim.Adam(loss.discriminator.parameters(), lr=opt.disc_lr, betas=(opt.beta1, opt.beta2))
    sched = torch.optim.lr_scheduler.LambdaLR(opt_g, lr_lambda(opt.steps, opt.warmup_steps))
    last_used = torch.full((model.n_embed,), -1, dtype=torch.long)  # step at which each code was last chosen
    step, history = 0, []

    run_settings = {"config": arch_dict(model.arch), "train_config": dataclasses.asdict(opt), "seed": seed,
                    "examples": len(data), "restart_every": restart_every}
    rpath = resume_path(out)
    if rpath.is_file():
        state = ckpt_io.load(rpath, kind)
        check_same_run(rpath, state, run_settings)
        model.load_state_dict(state["model"])
        loss.discriminator.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        sched.load_state_dict(state["scheduler"])
        step, history, last_used = state["step"], state["history"], state["last_used"]
        ckpt_io.set_rng_state(state["rng"])
        log.info("resuming %s from %s at step %d", kind, rpath, step)

    def save_resume() -> None:
        ckpt_io.save(rpath, kind=kind, model=model.state_dict(),
                     discriminator=loss.discriminator.state_dict(), opt_g=opt_g.state_dict(), opt_d=opt_d.state_dict(),
                     scheduler=sched.state_dict(), step=step, history=history, last_used=last_used,
                     rng=ckpt_io.rng_state(), **run_settings)

    model.train()
    loss.train()
    sampler = EpochSampler(len(data), seed, rank=0, world=1, batch=opt.batch_size)
    bar = tqdm(total=opt.steps, initial=step, desc=f"train {kind}")
    while step < opt.steps:
        epoch, start = divmod(step, n_batches)
        sampler.set_epoch(epoch, start)
        loader = DataLoader(data, batch_size=opt.batch_size, sampler=sampler, drop_last=True,
                            generator=torch.Generator().manual_seed(seed + epoch))  # keeps the global RNG untouched
        for batch in loader:
            logs = train_step(model, loss, batch, step, opt_g, opt_d, restart_every, last_used)
            sched.step()
            step += 1
            bar.update(1)
            bar.set_postfix(rec=f"{logs['rec']:.4f}", usage=f"{logs['usage']:.2f}")
            if step % 50 == 0 or step == opt.steps:
                history.append({"step": step, **logs})
            if step == stop_after:
                save_resume()
                bar.close()
                log.info("stopped after %d steps; rerun the same command to resume", step)
                return rpath
            if step % opt.checkpoint_every == 0:
                save_resume()
            if step >= opt.steps:
                break
    bar.close()
    ckpt_io.save(out, kind=kind, config=arch_dict(model.arch), model=model.state_dict(), history=history,
                 train_config=dataclasses.asdict(opt), seed=seed, steps=step)
    rpath.unlink(missing_ok=True)
    return out


def train_step(model: VQGAN, loss: VQLoss, batch: torch.Tensor, step: int, opt_g: torch.optim.Optimizer,
               opt_d: torch.optim.Optimizer, restart_every: int, last_used: torch.Tensor) -> dict[str, Any]:
    """One generator step, one discriminator step once the GAN is on, dead-code restarts."""
    prev, x = (batch[:, 0], batch[:, 1]) if batch.dim() == 5 else (None, batch)
    if restart_every and step % restart_every == 0:
        restart_dead_codes(model, x, step, restart_every, last_used)
    rec, qloss, idx = model(x, prev)
    g_loss, logs = loss.generator(x, rec, qloss, step, model.last_layer())
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()
    if loss.gan_active(step):
        d_loss = loss.discriminator_loss(x, rec)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        logs["d"] = d_loss.item()
    used = idx.unique()
    last_used[used] = step
    logs["usage"] = used.numel() / model.n_embed
    return logs


@torch.no_grad()
def restart_dead_codes(model: VQGAN, x: torch.Tensor, step: int, window: int, last_used: torch.Tensor) -> None:
    """Codes unused for ``window`` steps (all of them at step 0) move onto this batch's encodings."""
    dead = (last_used < 0) | (step - last_used >= window)
    if dead.any():
        model.quantize.restart(dead, model.quant_conv(model.encoder(x)))
        log.debug("step %d: restarted %d dead codes", step, int(dead.sum()))
