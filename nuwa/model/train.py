"""Algorithm 1: NUWA-Infinity's training recipe (loss, teacher-forced patch layout, optimizer steps).

Training draws one of the four ADC orders per sample. ``patch`` loss runs the patches in order
through NCP and makes an optimizer step after every patch (paper 4.5.3). The caches NCP keeps
are the patches' detached layer inputs a_n (Eq. 12), which every later patch projects with the
current W^k / W^v, so those weights learn through the context too; ``accumulated`` loss computes
the whole image in one forward (the parallel form, exact for fixed parameters) and makes one step
per image. Validation uses the parallel form with a fixed order per sample (sample i gets order
i mod 4) and fixed masks, so epochs compare.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from nuwa.core.errors import UserError
from nuwa.core.sampling import training_mask
from nuwa.core.text import drop_text
from nuwa.core.trainer import IGNORE, Stepper
from nuwa.model import adc
from nuwa.model.config import NuwaSettings
from nuwa.model.decoder import NuwaInfinity
from nuwa.model.ncp import NCP, Positions


@dataclass
class Layout:
    """A batch of token grids laid out for the decoder: all patches, all streams, flattened."""

    ids: torch.Tensor      # Long[B, S] inputs (start slots 0, masked copies [MASK])
    pos: Positions         # [B, S]
    targets: torch.Tensor  # Long[B, S] token each output predicts, IGNORE where none
    coords: torch.Tensor   # Long[B, N, 3] patch coordinates in each sample's order

    @property
    def patches(self) -> int:
        return self.coords.shape[1]


def patch_masks(shape: tuple[int, int, int], local_kind: str, generator: torch.Generator | None) -> torch.Tensor:
    """Bool[B, N, M] tokens to mask: all for NAR; MaskGIT's cosine-schedule ratio per patch for P-NAR."""
    if local_kind == "nar":
        return torch.ones(shape, dtype=torch.bool)
    return training_mask(shape, generator)


def teacher_layout(model: NuwaInfinity, tokens: torch.Tensor, orders: torch.Tensor,
                   generator: torch.Generator | None = None) -> Layout:
    """Lay out token grids Long[B, F, h, w], sample b split in order ORDERS[orders[b]]."""
    m, codebook = model.cfg.patch, model.cfg.codebook
    b, frames, h, w = tokens.shape
    if h % m or w % m:
        raise UserError(f"token grid {h}x{w} is not divisible by the patch size {m}; set nuwa.model.patch to a divisor")
    if int(tokens.min()) < 0 or int(tokens.max()) >= codebook:
        raise UserError(f"token ids exceed the codebook of {codebook}; set nuwa.model.codebook to the tokenizer's n_embed")
    grid = (frames, h // m, w // m)
    plans = [adc.split(grid, adc.ORDERS[o]) for o in range(len(adc.ORDERS))]
    coords = torch.tensor([[p[:3] for p in plans[int(o)]] for o in orders], device=tokens.device)
    per_sample = orders[:, None].expand(-1, coords.shape[1])
    patches = rearrange(tokens, "b f (hp m1) (wp m2) -> b f hp wp (m1 m2)", m1=m, m2=m)
    rows = torch.arange(b, device=tokens.device)[:, None]
    seq = patches[rows, coords[..., 0], coords[..., 1], coords[..., 2]].gather(-1, model.token_orders[per_sample])
    pad = torch.zeros_like(seq[..., :1])
    clean = torch.cat([pad, seq], -1)
    if model.cfg.local == "ar":
        ids, targets = clean, torch.cat([seq, pad + IGNORE], -1)
    else:
        mask = patch_masks(tuple(seq.shape), model.cfg.local, generator).to(tokens.device)
        query = torch.cat([pad, seq.masked_fill(mask, model.mask_id)], -1)
        wanted = torch.cat([pad + IGNORE, seq.masked_fill(~mask, IGNORE)], -1)
        ids = torch.stack([clean, query], 2)
        targets = torch.stack([torch.full_like(clean, IGNORE), wanted], 2)
    flat = "b n s t -> b (n s t)" if ids.dim() == 4 else "b n t -> b (n t)"
    return Layout(rearrange(ids, flat), model.positions(coords, per_sample), rearrange(targets, flat), coords)


def loss_of(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(rearrange(logits, "b s v -> (b s) v").float(), targets.flatten(), ignore_index=IGNORE)


def sequential(net: nn.Module, model: NuwaInfinity, layout: Layout, text: torch.Tensor | None,
               step: Callable[[torch.Tensor], None] | None = None,
               autocast: Callable[[], Any] = contextlib.nullcontext) -> tuple[torch.Tensor, list[float]]:
    """Algorithm 1 patch by patch through NCP: logits [B, S, V] and each patch's loss.

    ``step`` (patch loss) is called with every patch's loss. NCP keeps each patch's layer inputs
    (Eq. 12), detached, and the next patches project them with the weights of that moment."""
    ncp = NCP(layout.coords, model.cfg.extent)
    per = layout.ids.shape[1] // layout.patches
    logits, losses = [], []
    for n in range(layout.patches):
        span = slice(n * per, (n + 1) * per)
        with autocast():
            out = net(layout.ids[:, span], layout.pos[span], ncp.select(n), text)
            loss = loss_of(out.logits, layout.targets[:, span])
        if step is not None:
            step(loss)
        logits.append(out.logits.detach())
        losses.append(loss.item())
        ncp.add(n, model.pool_entry(out.cache, project=False).detach())
        ncp.remove(n)
    return torch.cat(logits, 1), losses


class NuwaTrainable:
    """Trainable for nuwa.trainer.fit; batches are {"tokens": Long[B, F, h, w], "text": Long[B, 77]}.

    ``grid`` (the training token grid F, h, w) must be set before fit for the patch loss, which
    makes one optimizer step per patch."""

    def __init__(self, module: NuwaInfinity, cfg: NuwaSettings, grid: tuple[int, int, int] | None = None):
        self.module, self.cfg, self.grid = module, cfg, grid

    def steps_per_batch(self) -> int:
        if self.cfg.train.loss == "accumulated":
            return 1
        if self.grid is None:
            raise RuntimeError("NuwaTrainable.grid must be set to the training token grid before fit (patch loss)")
        return self.module.cfg.patches(self.grid)

    def _text(self, batch: dict, train: bool) -> torch.Tensor | None:
        if self.module.text is None:
            return None
        return drop_text(batch["text"], self.module.cfg.text.dropout_prob) if train else batch["text"]

    def training_step(self, net: nn.Module, batch: dict, step: Stepper) -> float:
        tokens = batch["tokens"]
        orders = torch.randint(len(adc.ORDERS), (tokens.shape[0],)).to(tokens.device)
        layout = teacher_layout(self.module, tokens, orders)
        text = self._text(batch, train=True)
        if self.cfg.train.loss == "patch":
            _, losses = sequential(net, self.module, layout, text, step, step.autocast)
            return sum(losses) / len(losses)
        with step.autocast():
            loss = loss_of(net(layout.ids, layout.pos, None, text, parallel=True).logits, layout.targets)
        step(loss)
        return loss.item()

    def validation_loss(self, net: nn.Module, batch: dict) -> float:
        tokens = batch["tokens"]
        orders = torch.arange(tokens.shape[0], device=tokens.device) % len(adc.ORDERS)
        layout = teacher_layout(self.module, tokens, orders, torch.Generator().manual_seed(0))
        return loss_of(net(layout.ids, layout.pos, None, self._text(batch, train=False), parallel=True).logits, layout.targets).item()
