"""Algorithm 2: NUWA-Infinity's global patch loop over a token canvas.

For each patch of the ADC plan, NCP.Select gives the context and ADC.emb its position embeddings
(once per patch, ``Session.begin``); given patches are teacher-forced to fill NCP (:func:`precache`:
image-condition pre-caching), new patches are decoded by the local decoder (nuwa.model.local), and
NCP.Add / NCP.Remove follow (``Session.end``). Keys and values live in static caches of
nuwa.core.transformer: the NCP pool (a slot per cached patch) and the patch's attention cache (its
context, then its own positions), both written in place.
"""
from __future__ import annotations

import logging

import torch
from einops import rearrange
from tqdm.auto import tqdm

from nuwa.core import transformer
from nuwa.core.errors import UserError
from nuwa.core.family import GenerationRequest
from nuwa.core.sampling import Sampler, mask_schedule
from nuwa.core.text import guidance_captions
from nuwa.core.transformer import TextKV
from nuwa.model import adc
from nuwa.model.decoder import NuwaInfinity, PatchState
from nuwa.model.local import PatchDecoding, local_decode, local_steps
from nuwa.model.ncp import SlotPool

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
        self.decode = transformer.compiled(model.decode, self.cache.k.device) if compile_step else model.decode

    def new_cache(self, length: int, name: str) -> transformer.KVCache:
        """A KV cache of ``length`` positions; compiled, the same buffers for every generation of these shapes."""
        if not self.compiled:
            return self.model.new_cache(self.rows, length)
        weight = self.model.head.weight
        key = (name, self.rows, length, weight.dtype, weight.device)
        return transformer.static_cache(self.model, key, lambda: self.model.new_cache(self.rows, length))

    def begin(self, n: int) -> PatchState:
        """NCP.Select and ADC.emb for the n-th patch of the plan (computed once for the whole patch)."""
        context = self.ncp.select(n)
        slot = self.ncp.reserve(n)
        patches = [self.plan[m] for m in self.ncp.selects[n]]
        return self.model.begin_patch(self.plan[n], patches, context, self.ncp.kv, self.cache, slot, self.text,
                                      self.widest if self.static else None, self.static)

    def decoding(self, n: int, sampler: Sampler | None, guided: bool) -> PatchDecoding:
        """The n-th patch, begun, as the local decoders take it."""
        return PatchDecoding(self.model, self.decode, self.begin(n), sampler, guided)

    def end(self, n: int) -> None:
        """NCP.Add and NCP.Remove after the n-th patch."""
        self.ncp.add(n)
        self.ncp.remove(n)


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
        ids = canvas.read(p)
        session.decoding(n, None, False).teacher(ids.repeat(rows // ids.shape[0], 1))
        session.end(n)


def encode_caption(model: NuwaInfinity, request: GenerationRequest, guided: bool, device: torch.device) -> TextKV | None:
    """The captions (empty ones when there are none), doubled with empty captions under guidance."""
    if model.text is None:
        return None
    return model.encode_text(guidance_captions(request.text, request.batch, guided).to(device))


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
        ids = local_decode(session.decoding(n, sampler, guided), kv_cache)
        canvas.write(p, ids[:request.batch])
        session.end(n)
    return canvas.tokens, session.ncp
