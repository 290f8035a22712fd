"""Taming Transformer [Esser et al. 2021]: a causal GPT over VQGAN tokens in raster (zeta) order.

Training: next-token prediction over the training window, a start-of-sequence token first and the
caption through cross-attention (text dropout for classifier-free guidance).

Sampling on the training window uses a static KV cache (nuwa.core.transformer: prefill the start token and
the given prefix, then decode one token at a time). Larger canvases use the original sliding window: for
every token a window of the training size is placed around it, clamped to the canvas (for even
sizes exactly taming's ``local_i``/``local_j`` rule), and the token is predicted from the window's
tokens before it in raster order; nothing is cached across window moves.

Outpainting follows raster order: the given tokens must be a left part of every row, no row
knowing more than the row above (down and right extension). Left, up and all-around extension
need tokens that come later in raster order and are refused (the paper's Table 4 "N/A").
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from tqdm.auto import tqdm

from baselines.common import (
    Conditioning,
    TokenTransformer,
    TransformerFamily,
    check_window_fit,
    drop_captions,
    single_frame,
    start_canvas,
)
from baselines.config import TransformerConfig
from nuwa.core import transformer
from nuwa.core.errors import UserError
from nuwa.core.family import GenerationRequest
from nuwa.core.sampling import Sampler
from nuwa.core.transformer import decode_n_tokens, prefill


@dataclass(frozen=True)
class Window:
    """The training-size window used to predict canvas token (row, col)."""

    top: int
    left: int
    local: int  # raster position of (row, col) inside the window


def window_start(i: int, size: int, window: int) -> int:
    """Start of the window along one axis: centred on ``i`` (``window // 2`` before it), clamped to the canvas."""
    return min(max(i - window // 2, 0), size - window)


def sliding_window(row: int, col: int, grid: tuple[int, int], window: tuple[int, int]) -> Window:
    top, left = window_start(row, grid[0], window[0]), window_start(col, grid[1], window[1])
    return Window(top, left, (row - top) * window[1] + (col - left))


def check_raster_known(known: torch.Tensor) -> None:
    """Given tokens must precede every generated token they need in raster order (right/down extension)."""
    lengths = known.sum(1)
    prefix = known == (torch.arange(known.shape[1], device=known.device)[None, :] < lengths[:, None])
    if not bool(prefix.all()) or bool((lengths[1:] > lengths[:-1]).any()):
        raise UserError("Taming generates in raster order, so it can only extend right or down (given tokens on the left "
                        "or top); left, up and all-around outpainting are N/A for it (paper Table 4) -- use --model maskgit or nuwa")


def cached_step(module: TokenTransformer, cond: Conditioning, rows: int, compile_step: bool = False) -> transformer.Step:
    """Taming's decode step over a fresh static KV cache: (tokens [B, S], slots [S]) -> guided logits [B, S, V]."""
    cache, step = module.new_cache(rows), module.step
    if compile_step:  # the same buffers for every generation of this batch
        key = ("window", rows, module.head.weight.dtype, module.head.weight.device)
        cache = transformer.static_cache(module, key, lambda: module.new_cache(rows))
        step = transformer.compiled(module.step, cache.k.device)
    def guided(tokens: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:  # eager: read only the slots it can see
        return cond.combine(step(cond.expand(tokens), slots, cache, cond.context, None if compile_step else int(slots[-1]) + 1))
    return guided


@torch.no_grad()
def sample_cached(module: TokenTransformer, canvas: torch.Tensor, known: torch.Tensor, cond: Conditioning,
                  sampler: Sampler, progress: bool = False, compile_step: bool = False) -> torch.Tensor:
    """Raster-order sampling of a training-size canvas [B, h, w] with a KV cache; given tokens are fed, not sampled.

    Slot 0 holds the start token, slot p+1 token p: prefill the start token and the given prefix, then
    decode_n_tokens (a given token later in raster order is sampled, so the random stream does not
    depend on it, and replaced by the given one)."""
    seq, given = rearrange(canvas, "b h w -> b (h w)").clone(), known.flatten()
    n = seq.shape[1]
    first = int(given.long().argmin()) if not bool(given.all()) else n
    if first == n:
        return canvas.clone()
    step = cached_step(module, cond, cond.batch * (2 if cond.guided else 1), compile_step)
    sos = torch.full_like(seq[:, :1], module.cfg.special)
    slots = torch.arange(n + 1, device=seq.device)
    logits = prefill(step, torch.cat([sos, seq[:, :first]], 1), slots[:first + 1])[:, -1]
    bar = tqdm(total=n - first, desc="taming (kv cache)", disable=not progress, leave=False)

    def sample(x: torch.Tensor) -> torch.Tensor:
        bar.update()
        return sampler(x)[0]
    seq[:, first:] = decode_n_tokens(step, logits, slots[first + 1:], sample, (given[first:], seq[:, first:]))
    bar.close()
    return rearrange(seq, "b (h w) -> b h w", h=canvas.shape[1])


@torch.no_grad()
def sample_sliding(module: TokenTransformer, canvas: torch.Tensor, known: torch.Tensor, cond: Conditioning,
                   sampler: Sampler, progress: bool = False) -> torch.Tensor:
    """Raster-order sampling of any canvas [B, h, w] >= the training window, one window forward per token."""
    canvas = canvas.clone()
    (h, w), (wh, ww) = canvas.shape[1:], module.cfg.window
    sos = torch.full_like(canvas[:, 0, :1], module.cfg.special)
    todo = [(r, c) for r in range(h) for c in range(w) if not known[r, c]]
    for r, c in tqdm(todo, desc="taming (sliding window)", disable=not progress, leave=False):
        win = sliding_window(r, c, (h, w), (wh, ww))
        tokens = rearrange(canvas[:, win.top:win.top + wh, win.left:win.left + ww], "b h w -> b (h w)")
        inputs = torch.cat([sos, tokens[:, :win.local]], 1)
        positions = torch.arange(win.local + 1, device=canvas.device)
        logits = module(cond.expand(inputs), cond.context, positions)[:, -1]
        canvas[:, r, c] = sampler(cond.combine(logits))[0]
    return canvas


class TamingFamily(TransformerFamily):
    name = "taming"
    causal = True

    def loss(self, net: nn.Module, spec: TransformerConfig, batch: dict, training: bool) -> torch.Tensor:
        tokens, text = self.window_tokens(spec, batch)
        inputs = torch.cat([torch.full_like(tokens[:, :1], spec.special), tokens[:, :-1]], 1)
        logits = net(inputs, drop_captions(text, spec, training))
        return F.cross_entropy(rearrange(logits, "b l v -> (b l) v").float(), tokens.flatten())

    def generate(self, module: nn.Module, request: GenerationRequest) -> torch.Tensor:
        h, w = single_frame(request, "Taming")
        check_window_fit(h, w, module.cfg.window, "Taming")
        device = next(module.parameters()).device
        canvas, known = start_canvas(request, h, w, device)
        check_raster_known(known)
        cond = Conditioning(module, request.text, request.batch, request.sampling.guidance)
        module.eval()
        sampler = Sampler.of(request)
        if (h, w) == module.cfg.window:
            out = sample_cached(module, canvas, known, cond, sampler, request.progress, request.compile)
        else:
            out = sample_sliding(module, canvas, known, cond, sampler, request.progress)
        return rearrange(out, "b h w -> b 1 h w")


FAMILY = TamingFamily()
