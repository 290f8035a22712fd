"""Local decoders and the global patch loop (Algorithm 2), at the token level.

The global loop is the same for every local decoder: for each patch of the ADC plan, NCP.Select
gives the context and ADC.emb its position embeddings (once per patch, ``Session.begin``), given
patches are teacher-forced to fill NCP (``precache``: image-condition pre-caching), new patches are
decoded by the local decoder, and NCP.Add / NCP.Remove follow (``Session.end``). Keys and values
live in static caches of nuwa.engine: the NCP pool (a slot per cached patch) and the patch's
attention cache (its context, then its own positions), both written in place.

Local decoders (``nuwa.model.local``):

* ``ar``   token by token: the start query is prefilled against the context, then each sampled
  token is fed once (LlamaGen's prefill / decode_n_tokens); the last token is fed too so that its
  keys/values reach the NCP slot. ``kv_cache=False`` recomputes the whole prefix for every token
  instead (same tokens, for testing).
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

import functools
import logging

import torch
from einops import rearrange
from tqdm.auto import tqdm

from nuwa import adc, engine
from nuwa.engine import TextKV, decode_n_tokens, prefill
from nuwa.errors import UserError
from nuwa.family import GenerationRequest
from nuwa.model import NuwaInfinity, PatchState
from nuwa.ncp import SlotPool
from nuwa.sampling import Sampler, choice_temperature, guide, mask_schedule
from nuwa.text import tokenize

log = logging.getLogger(__name__)


class Session:
    """One generation's decoding state: the plan, the NCP pool, the patch attention cache, the caption."""

    def __init__(self, model: NuwaInfinity, plan: list[adc.Patch], rows: int, text: TextKV | None,
                 compile_step: bool = False, static: bool = False):
        self.model, self.plan, self.text, self.rows = model, plan, text, rows
        self.compiled, self.static = compile_step, static or compile_step  # static: every patch the same shapes
        tokens = model.cfg.tokens_per_patch
        coords = torch.tensor([p[:3] for p in plan])[None]
        self.ncp = SlotPool(coords, model.cfg.extent, tokens, lambda length: self.new_cache(length, "pool"))
        self.widest = max(len(s) for s in self.ncp.selects) * tokens
        self.cache = self.new_cache(self.widest + tokens + 1, "patch")
        self.decode = engine.compiled(model.decode, self.cache.k.device) if compile_step else model.decode

    def new_cache(self, length: int, name: str) -> engine.KVCache:
        """A KV cache of ``length`` positions; compiled, the same buffers for every generation of these shapes."""
        if not self.compiled:
            return self.model.new_cache(self.rows, length)
        weight = self.model.head.weight
        key = (name, self.rows, length, weight.dtype, weight.device)
        return engine.static_cache(self.model, key, lambda: self.model.new_cache(self.rows, length))

    def begin(self, n: int) -> PatchState:
        """NCP.Select and ADC.emb for the n-th patch of the plan (computed once for the whole patch)."""
        context = self.ncp.select(n)
        slot = self.ncp.reserve(n)
        patches = [self.plan[m] for m in self.ncp.selects[n]]
        return self.model.begin_patch(self.plan[n], patches, context, self.ncp.kv, self.cache, slot, self.text,
                                      self.widest if self.static else None, self.static)

    def end(self, n: int) -> None:
        """NCP.Add and NCP.Remove after the n-th patch."""
        self.ncp.add(n)
        self.ncp.remove(n)


class Context:
    """What every local decoder gets for one patch."""

    def __init__(self, session: Session, patch: PatchState, sampler: Sampler, guided: bool):
        self.model, self.session, self.patch = session.model, session, patch
        self.sampler, self.guided = sampler, guided
        self.index = torch.arange(self.model.cfg.tokens_per_patch + 1, device=patch.slot.device)

    def step(self, stream: int = 0, record: bool = False, logits: bool = True) -> engine.Step:
        """The model step (ids, positions) -> logits of this patch (nuwa.engine.Step)."""
        return functools.partial(self.session.decode, state=self.patch, stream=stream, record=record, logits=logits)

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


def decode_ar(ctx: Context, kv_cache: bool = True) -> torch.Tensor:
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


def decode_masked(ctx: Context, steps: int) -> torch.Tensor:
    """NAR (steps=1) / P-NAR local decoder: tokens Long[B', M]; the patch's NCP slot is filled.

    MaskGIT's parallel decoding inside the patch: every step samples all masked tokens, keeps the
    sampled ones except the least confident, which are masked again as nuwa.sampling.mask_schedule
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


def local_decode(ctx: Context, kv_cache: bool = True) -> torch.Tensor:
    """Dispatch on the model's local decoder (config ``nuwa.model.local``)."""
    if ctx.model.cfg.local == "ar":
        return decode_ar(ctx, kv_cache)
    return decode_masked(ctx, local_steps(ctx.model, ctx.sampler.cfg))


def known_patches(mask: torch.Tensor, m: int) -> torch.Tensor:
    """Bool[F, H, W] patch grid of a token mask Bool[F, h, w]; a patch must be fully known or unknown."""
    per_patch = rearrange(mask, "f (hp m1) (wp m2) -> f hp wp (m1 m2)", m1=m, m2=m)
    full, some = per_patch.all(-1), per_patch.any(-1)
    if bool((some & ~full).any()):
        raise UserError(f"the given tokens cover patches only partly; align the input to the {m}x{m}-token patch grid")
    return full


class Canvas:
    """The token canvas Long[B, F, h, w]; a patch's tokens read and written in its writing order."""

    def __init__(self, model: NuwaInfinity, tokens: torch.Tensor):
        self.model, self.tokens = model, tokens

    def _area(self, p: adc.Patch) -> tuple:
        m = self.model.cfg.patch
        return slice(None), p.f, slice(p.r * m, (p.r + 1) * m), slice(p.c * m, (p.c + 1) * m)

    def read(self, p: adc.Patch) -> torch.Tensor:
        order = self.model.token_orders[adc.ORDERS.index(p.order)]
        return rearrange(self.tokens[self._area(p)], "b m1 m2 -> b (m1 m2)")[:, order]

    def write(self, p: adc.Patch, ids: torch.Tensor) -> None:
        order = self.model.token_orders[adc.ORDERS.index(p.order)]
        flat = rearrange(self.tokens[self._area(p)], "b m1 m2 -> b (m1 m2)").clone()
        flat[:, order] = ids
        self.tokens[self._area(p)] = rearrange(flat, "b (m1 m2) -> b m1 m2", m1=self.model.cfg.patch)


def precache(session: Session, known: list[adc.Patch], canvas: Canvas, rows: int) -> None:
    """Algorithm 2, image-condition pre-caching: the known patches, teacher-forced, fill NCP."""
    for n, p in enumerate(known):
        patch = session.begin(n)
        ids = canvas.read(p)
        Context(session, patch, None, False).teacher(ids.repeat(rows // ids.shape[0], 1))
        session.end(n)


def encode_caption(model: NuwaInfinity, request: GenerationRequest, guided: bool, device: torch.device) -> TextKV | None:
    """The captions (empty ones when there are none), doubled with empty captions under guidance."""
    if model.text is None:
        return None
    text = request.text if request.text is not None else tokenize([""] * request.batch)
    if guided:
        text = torch.cat([text, tokenize([""] * request.batch)])
    return model.encode_text(text.to(device))


def generate(model: NuwaInfinity, request: GenerationRequest, kv_cache: bool = True,
             static: bool = False) -> tuple[torch.Tensor, SlotPool]:
    """Algorithm 2 over a token canvas: Long[B, F, h, w] (given tokens unchanged) and the NCP used.

    ``static``: every patch attends over the widest context of the plan (the gap masked), so every
    decode step has the same shapes -- what torch.compile / CUDA graphs want (``request.compile``
    implies it); same tokens."""
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
    known, new = adc.plan((frames, h // m, w // m), known_patches(mask.cpu(), m))
    steps = local_steps(model, request.sampling)
    run = len(mask_schedule(model.cfg.tokens_per_patch, steps))
    if model.cfg.local == "pnar" and run < steps:
        log.info("P-NAR: a %d-token patch is decoded after %d of the %d configured steps (each step decides "
                 "at least one token); the other steps are not run", model.cfg.tokens_per_patch, run, steps)
    guided = model.text is not None and request.sampling.guidance != 1.0
    rows = request.batch * (2 if guided else 1)
    session = Session(model, known + new, rows, encode_caption(model, request, guided, device), request.compile, static)
    canvas = Canvas(model, (request.known.clone() if request.known is not None
                            else torch.zeros(request.batch, *request.grid, dtype=torch.long)).to(device))
    precache(session, known, canvas, rows)
    sampler = Sampler.of(request)
    for n, p in enumerate(tqdm(new, desc="patches", disable=not request.progress, leave=False), start=len(known)):
        ids = local_decode(Context(session, session.begin(n), sampler, guided), kv_cache)
        canvas.write(p, ids[:request.batch])
        session.end(n)
    return canvas.tokens, session.ncp
