"""The local decoders of NUWA-Infinity: how one patch's M tokens are decoded (Table 7a).

Each decoder gets a :class:`PatchDecoding` -- the model's decode step bound to the patch's state
(its NCP context and ADC position embeddings, computed once per patch by
nuwa.model.generate.Session.begin), the sampler and whether guidance doubles the batch -- and
returns the patch's tokens in writing order, with the patch's NCP slot filled.

* ``ar``   token by token: the start query is prefilled against the context, then each sampled
  token is fed once (LlamaGen's prefill / decode_n_tokens); the last token is fed too so that its
  keys/values reach the NCP slot. ``kv_cache=False`` recomputes the whole prefix for every token
  instead (same tokens, for testing).
* ``pnar`` MaskGIT's parallel decoding: all M tokens start masked; at step s of S every masked
  token is sampled, and the least confident (Gumbel-perturbed log-probabilities, annealed choice
  temperature) are masked again so that nuwa.core.sampling.mask_schedule's count stays masked -- the
  same schedule and step as the MaskGIT baseline. Decided tokens never change; every step decides
  at least one, so with S > M only M steps run. ``nar`` is the same with one step: the whole
  patch in one pass. The patch's cache comes from a clean pass over the chosen tokens.

Samplers stay out of the model: logits become tokens through nuwa.core.sampling (temperature, top-k,
top-p, classifier-free guidance; with guidance the batch is [conditional; unconditional]).
"""
from __future__ import annotations

import functools
from typing import Callable

import torch

from nuwa.core import transformer
from nuwa.core.sampling import Sampler, choice_temperature, guide, mask_schedule
from nuwa.core.transformer import decode_n_tokens, prefill
from nuwa.model.decoder import NuwaInfinity, PatchState


class PatchDecoding:
    """What every local decoder gets for one patch: ``decode`` is the model's decode step
    (NuwaInfinity.decode, or its compiled version) and ``patch`` the patch's state."""

    def __init__(self, model: NuwaInfinity, decode: Callable[..., torch.Tensor], patch: PatchState,
                 sampler: Sampler | None, guided: bool):
        self.model, self.decode, self.patch = model, decode, patch
        self.sampler, self.guided = sampler, guided
        self.index = torch.arange(self.model.cfg.tokens_per_patch + 1, device=patch.slot.device)

    def step(self, stream: int = 0, record: bool = False, logits: bool = True) -> transformer.Step:
        """The model step (ids, positions) -> logits of this patch (nuwa.core.transformer.Step)."""
        return functools.partial(self.decode, state=self.patch, stream=stream, record=record, logits=logits)

    def sample(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, probabilities) for logits [B', ..., V]; with guidance both halves get the guided ids."""
        if not self.guided:
            return self.sampler(logits)
        cond, uncond = logits.chunk(2)
        ids, prob = self.sampler(guide(cond.float(), uncond.float(), self.sampler.cfg.guidance))
        return torch.cat([ids, ids]), torch.cat([prob, prob])

    def teacher(self, ids: torch.Tensor) -> None:
        """Fill the patch's NCP slot from its known tokens Long[B', M] (writing order): one clean pass."""
        full = torch.cat([torch.zeros_like(ids[:, :1]), ids], 1)
        prefill(self.step(record=True, logits=False), full, self.index)


def decode_ar(ctx: PatchDecoding, kv_cache: bool = True) -> torch.Tensor:
    """AR local decoder: tokens Long[B', M] in writing order; the patch's NCP slot is filled."""
    tokens = len(ctx.index) - 1
    start = torch.zeros(ctx.patch.cache.k.shape[1], 1, dtype=torch.long, device=ctx.index.device)
    if not kv_cache:
        ids = start.repeat(1, tokens + 1)
        for k in range(tokens):
            ids[:, k + 1] = ctx.sample(prefill(ctx.step(), ids[:, :k + 1], ctx.index[:k + 1])[:, -1])[0]
        ctx.teacher(ids[:, 1:])
        return ids[:, 1:]
    step = ctx.step(record=True)
    logits = prefill(step, start, ctx.index[:1])[:, -1]
    return decode_n_tokens(step, logits, ctx.index[1:], lambda x: ctx.sample(x)[0], feed_last=True)


def decode_masked(ctx: PatchDecoding, steps: int) -> torch.Tensor:
    """NAR (steps=1) / P-NAR local decoder: tokens Long[B', M]; the patch's NCP slot is filled.

    MaskGIT's parallel decoding inside the patch: every step samples all masked tokens, keeps the
    sampled ones except the least confident, which are masked again as nuwa.core.sampling.mask_schedule
    prescribes; a decided token never changes."""
    tokens, rows = len(ctx.index) - 1, ctx.patch.cache.k.shape[1]
    half = rows // (2 if ctx.guided else 1)
    ids = torch.full((rows, tokens + 1), ctx.model.mask_id, dtype=torch.long, device=ctx.index.device)
    ids[:, 0] = 0
    masked = torch.ones(half, tokens, dtype=torch.bool, device=ids.device)
    step = ctx.step(stream=1)
    for s, still_masked in enumerate(mask_schedule(tokens, steps)):
        sampled, prob = ctx.sample(prefill(step, ids, ctx.index)[:, 1:])
        chosen = torch.where(masked, sampled[:half], ids[:half, 1:])
        temperature = choice_temperature(ctx.sampler.cfg.choice_temperature, s, steps)
        masked = ctx.sampler.remask(prob[:half], masked, still_masked, temperature)
        ids[:, 1:] = chosen.masked_fill(masked, ctx.model.mask_id).repeat(rows // half, 1)
    ctx.teacher(ids[:, 1:])
    return ids[:, 1:]


def local_steps(model: NuwaInfinity, sampling) -> int:
    """Parallel decoding steps per patch: 1 for NAR, ``sampling.steps`` for P-NAR (0 for AR)."""
    return {"ar": 0, "nar": 1, "pnar": sampling.steps}[model.cfg.local]


def local_decode(ctx: PatchDecoding, kv_cache: bool = True) -> torch.Tensor:
    """Dispatch on the model's local decoder (config ``nuwa.model.local``)."""
    if ctx.model.cfg.local == "ar":
        return decode_ar(ctx, kv_cache)
    return decode_masked(ctx, local_steps(ctx.model, ctx.sampler.cfg))
