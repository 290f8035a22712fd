"""Local decoders and the global patch loop (Algorithm 2), at the token level.

The global loop is the same for every local decoder: for each patch of the ADC plan, NCP.Select
gives the context, given patches are teacher-forced to fill NCP (image-condition pre-caching),
new patches are decoded by the local decoder, and NCP.Add / NCP.Remove follow. Local decoders:

* ``ar``   token by token with a KV cache: the start query is prefilled against the context, then
  each sampled token is fed once (its keys/values join the prefix); the last token is fed once
  more so its cache row exists (LlamaGen-style prefill/decode split). ``kv_cache=False``
  recomputes the whole prefix for every token instead (same tokens, for testing).
* ``pnar`` MaskGIT's parallel decoding: all M tokens start masked; at step s of S every masked
  token is sampled, and the least confident (Gumbel-perturbed log-probabilities, annealed choice
  temperature) are masked again so that nuwa.sampling.mask_schedule's count stays masked -- the
  same schedule and step as the MaskGIT baseline. Decided tokens never change; every step decides
  at least one, so with S > M only M steps run. ``nar`` is the same with one step: the whole
  patch in one pass. The patch's cache comes from a clean pass over the chosen tokens.

Samplers stay out of the model: logits become tokens through nuwa.sampling (temperature, top-k,
top-p, classifier-free guidance; with guidance the batch is [conditional; unconditional]).
"""
from __future__ import annotations

import logging

import torch
from einops import rearrange
from tqdm.auto import tqdm

from nuwa import adc
from nuwa.errors import UserError
from nuwa.family import GenerationRequest
from nuwa.model import NuwaInfinity, TextState
from nuwa.ncp import NCP, Memory, Positions, merge
from nuwa.sampling import SamplingConfig, choice_temperature, guide, mask_schedule, remask, sample_logits
from nuwa.text import tokenize

log = logging.getLogger(__name__)


class Context:
    """What every local decoder gets for one patch."""

    def __init__(self, model: NuwaInfinity, memory: Memory | None, text: TextState | None,
                 sampling: SamplingConfig, generator: torch.Generator | None, guided: bool):
        self.model, self.memory, self.text = model, memory, text
        self.sampling, self.generator, self.guided = sampling, generator, guided

    def sample(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, probabilities) for logits [B', ..., V]; with guidance both halves get the guided ids."""
        if not self.guided:
            return sample_logits(logits, self.sampling, self.generator)
        cond, uncond = logits.chunk(2)
        ids, prob = sample_logits(guide(cond.float(), uncond.float(), self.sampling.guidance), self.sampling, self.generator)
        return torch.cat([ids, ids]), torch.cat([prob, prob])

    def teacher(self, ids: torch.Tensor, pos: Positions) -> Memory:
        """NCP entry of a patch whose tokens Long[B', M] (writing order) are known: one clean pass."""
        full = torch.cat([torch.zeros_like(ids[:, :1]), ids], 1)
        return self.model.pool_entry(self.model(full, pos, self.memory, self.text).cache)


def decode_ar(ctx: Context, clean: Positions, kv_cache: bool = True) -> tuple[torch.Tensor, Memory]:
    """AR local decoder: tokens Long[B', M] in writing order and the patch's NCP entry."""
    tokens = clean.idx.shape[1] - 1
    ids = torch.zeros_like(clean.idx)
    if not kv_cache:
        for k in range(tokens):
            out = ctx.model(ids[:, :k + 1], clean[:k + 1], ctx.memory, ctx.text)
            ids[:, k + 1] = ctx.sample(out.logits[:, -1])[0]
        return ids[:, 1:], ctx.teacher(ids[:, 1:], clean)
    memory, steps = ctx.memory, []
    for k in range(tokens + 1):
        out = ctx.model(ids[:, k:k + 1], clean[k:k + 1], memory, ctx.text)
        steps.append(out.cache)
        memory = Memory(kv_pos=out.cache.kv_pos, kv=out.cache.kv) if memory is None else memory.extend(out.cache.kv_pos, out.cache.kv)
        if k < tokens:
            ids[:, k + 1] = ctx.sample(out.logits[:, -1])[0]
    return ids[:, 1:], ctx.model.pool_entry(merge(steps))


def decode_masked(ctx: Context, clean: Positions, query: Positions, steps: int) -> tuple[torch.Tensor, Memory]:
    """NAR (steps=1) / P-NAR local decoder: tokens Long[B', M] and the patch's NCP entry.

    MaskGIT's parallel decoding inside the patch: every step samples all masked tokens, keeps the
    sampled ones except the least confident, which are masked again as nuwa.sampling.mask_schedule
    prescribes; a decided token never changes."""
    tokens = query.idx.shape[1] - 1
    rows = query.idx.shape[0]
    half = rows // (2 if ctx.guided else 1)
    ids = torch.full_like(query.idx, ctx.model.mask_id)
    ids[:, 0] = 0
    masked = torch.ones(half, tokens, dtype=torch.bool, device=ids.device)
    for s, still_masked in enumerate(mask_schedule(tokens, steps)):
        sampled, prob = ctx.sample(ctx.model(ids, query, ctx.memory, ctx.text).logits[:, 1:])
        chosen = torch.where(masked, sampled[:half], ids[:half, 1:])
        temperature = choice_temperature(ctx.sampling.choice_temperature, s, steps)
        masked = remask(prob[:half], masked, still_masked, temperature, ctx.generator)
        ids[:, 1:] = chosen.masked_fill(masked, ctx.model.mask_id).repeat(rows // half, 1)
    return ids[:, 1:], ctx.teacher(ids[:, 1:], clean)


def local_steps(model: NuwaInfinity, sampling: SamplingConfig) -> int:
    """Parallel decoding steps per patch: 1 for NAR, ``sampling.steps`` for P-NAR (0 for AR)."""
    return {"ar": 0, "nar": 1, "pnar": sampling.steps}[model.cfg.local]


def local_decode(ctx: Context, clean: Positions, query: Positions, kv_cache: bool = True) -> tuple[torch.Tensor, Memory]:
    """Dispatch on the model's local decoder (config ``nuwa.model.local``)."""
    if ctx.model.cfg.local == "ar":
        return decode_ar(ctx, clean, kv_cache)
    return decode_masked(ctx, clean, query, local_steps(ctx.model, ctx.sampling))


def known_patches(mask: torch.Tensor, m: int) -> torch.Tensor:
    """Bool[F, H, W] patch grid of a token mask Bool[F, h, w]; a patch must be fully known or unknown."""
    per_patch = rearrange(mask, "f (hp m1) (wp m2) -> f hp wp (m1 m2)", m1=m, m2=m)
    full, some = per_patch.all(-1), per_patch.any(-1)
    if bool((some & ~full).any()):
        raise UserError(f"the given tokens cover patches only partly; align the input to the {m}x{m}-token patch grid")
    return full


def generate(model: NuwaInfinity, request: GenerationRequest, kv_cache: bool = True) -> tuple[torch.Tensor, NCP]:
    """Algorithm 2 over a token canvas: Long[B, F, h, w] (given tokens unchanged) and the NCP used."""
    m, device = model.cfg.patch, next(model.parameters()).device
    frames, h, w = request.grid
    if h % m or w % m or min(frames, h, w) < 1:
        raise UserError(f"canvas of {h}x{w} tokens is not a positive multiple of the {m}x{m}-token patch; "
                        f"choose a size whose token grid is divisible by {m}")
    mask = request.known_mask if request.known_mask is not None else torch.zeros(request.grid, dtype=torch.bool)
    if tuple(mask.shape) != tuple(request.grid):
        raise UserError(f"known mask {tuple(mask.shape)} does not match the canvas {tuple(request.grid)}")
    if mask.any() and request.known is None:
        raise ValueError("known_mask without known tokens")
    pre, new = adc.plan((frames, h // m, w // m), known_patches(mask.cpu(), m))
    steps = local_steps(model, request.sampling)
    run = len(mask_schedule(model.cfg.tokens_per_patch, steps))
    if model.cfg.local == "pnar" and run < steps:
        log.info("P-NAR: a %d-token patch is decoded after %d of the %d configured steps (each step decides "
                 "at least one token); the other steps are not run", model.cfg.tokens_per_patch, run, steps)
    plan = pre + new
    batch = request.batch
    guided = model.text is not None and request.sampling.guidance != 1.0
    state = None
    if model.text is not None:
        text = request.text if request.text is not None else tokenize([""] * batch)
        if guided:
            text = torch.cat([text, tokenize([""] * batch)])
        state = model.encode_text(text.to(device))
    rows = batch * (2 if guided else 1)
    coords = torch.tensor([p[:3] for p in plan], device=device).expand(rows, -1, -1)
    orders = torch.tensor([adc.ORDERS.index(p.order) for p in plan], device=device).expand(rows, -1)
    clean, query = model.positions(coords, orders, 0), model.positions(coords, orders, model.streams - 1)
    ncp = NCP(coords, model.cfg.extent)
    out = (request.known.clone() if request.known is not None
           else torch.zeros(batch, *request.grid, dtype=torch.long)).to(device)
    tokens = model.cfg.tokens_per_patch
    for n, p in enumerate(tqdm(plan, desc="patches", disable=not request.progress, leave=False)):
        ctx = Context(model, ncp.select(n), state, request.sampling, request.generator, guided)
        span = slice(n * (tokens + 1), (n + 1) * (tokens + 1))
        area = (slice(None), p.f, slice(p.r * m, (p.r + 1) * m), slice(p.c * m, (p.c + 1) * m))
        order = model.token_orders[adc.ORDERS.index(p.order)]
        if n < len(pre):
            ids = rearrange(out[area], "b m1 m2 -> b (m1 m2)")[:, order]
            entry = ctx.teacher(ids.repeat(rows // batch, 1), clean[span])
        else:
            ids, entry = local_decode(ctx, clean[span], query[span], kv_cache)
            flat = rearrange(out[area], "b m1 m2 -> b (m1 m2)").clone()
            flat[:, order] = ids[:batch]
            out[area] = rearrange(flat, "b (m1 m2) -> b m1 m2", m1=m)
        ncp.add(n, entry)
        ncp.remove(n)
    return out, ncp
