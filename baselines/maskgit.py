"""MaskGIT [Chang et al. 2022]: a bidirectional transformer over VQGAN tokens, decoded by iterative unmasking.

Training: a mask ratio r ~ U(0, 1) per image, ceil(cos(pi/2 r) * N) tokens (at least one) replaced
by [MASK], cross-entropy on the masked tokens; the caption through cross-attention with text dropout.

Decoding (Chang et al., Alg. 1): for steps t = 0 .. T-1 predict every masked token, sample it,
and re-mask the least confident ones as nuwa.core.sampling.mask_schedule prescribes (the reference
code's max(1, min(unknown - 1, floor(N cos(pi/2 (t+1)/T)))), none after the last step; at least one
fewer each step). Confidence is log p(sampled token) plus Gumbel noise scaled by the annealed
choice temperature ``choice_temperature * (1 - (t+1)/T)`` (nuwa.core.sampling.remask, shared with
NUWA-Infinity's P-NAR). Given and already decoded tokens are never re-masked.

Canvases larger than the training window (wider images, outpainting in any direction) are decoded
window by window: windows of the training size on a grid with half-window stride; the next window is
the one that already holds the most decoded tokens (ties: raster order), and it decodes its remaining
tokens conditioned on everything decoded inside it.
"""
from __future__ import annotations

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
from nuwa.core.family import GenerationRequest
from nuwa.core.sampling import Sampler, choice_temperature, mask_schedule, training_mask


@torch.no_grad()
def decode_window(module: TokenTransformer, tokens: torch.Tensor, fixed: torch.Tensor, cond: Conditioning,
                  sampler: Sampler) -> torch.Tensor:
    """Iteratively unmask a training-size window ``tokens`` [B, N]; positions where ``fixed`` [N] stay as given."""
    masked = (~fixed).expand_as(tokens).clone()
    positions = torch.arange(tokens.shape[1], device=tokens.device)
    steps = sampler.cfg.steps
    for t, still_masked in enumerate(mask_schedule(int(masked[0].sum()), steps)):
        inputs = tokens.masked_fill(masked, module.cfg.special)
        logits = cond.combine(module(cond.expand(inputs), cond.context, positions))
        ids, prob = sampler(logits)
        tokens = torch.where(masked, ids, tokens)
        temperature = choice_temperature(sampler.cfg.choice_temperature, t, steps)
        masked = sampler.remask(prob, masked, still_masked, temperature)
    return tokens


def window_starts(size: int, window: int) -> list[int]:
    """Window starts along one axis: half-window stride, the last window flush with the canvas edge."""
    return sorted(set(range(0, size - window, max(1, window // 2))) | {size - window})


@torch.no_grad()
def decode_canvas(module: TokenTransformer, canvas: torch.Tensor, known: torch.Tensor, cond: Conditioning,
                  sampler: Sampler, progress: bool = False) -> torch.Tensor:
    """Windowed iterative decoding of ``canvas`` [B, h, w] (>= the training window); ``known`` [h, w] is kept."""
    canvas, decoded = canvas.clone(), known.clone()
    (h, w), (wh, ww) = canvas.shape[1:], module.cfg.window
    windows = [(top, left) for top in window_starts(h, wh) for left in window_starts(w, ww)]
    bar = tqdm(total=int((~decoded).sum()), desc="maskgit (windows)", disable=not progress, leave=False)
    while not bool(decoded.all()):
        open_windows = [(top, left) for top, left in windows if not bool(decoded[top:top + wh, left:left + ww].all())]
        top, left = max(open_windows, key=lambda tl: int(decoded[tl[0]:tl[0] + wh, tl[1]:tl[1] + ww].sum()))
        region = (slice(top, top + wh), slice(left, left + ww))
        fixed = decoded[region].flatten()
        tokens = decode_window(module, rearrange(canvas[(slice(None), *region)], "b h w -> b (h w)"), fixed,
                               cond, sampler)
        canvas[(slice(None), *region)] = rearrange(tokens, "b (h w) -> b h w", h=wh)
        decoded[region] = True
        bar.update(int((~fixed).sum()))
    bar.close()
    return canvas


class MaskGITFamily(TransformerFamily):
    name = "maskgit"
    causal = False

    def loss(self, net: nn.Module, spec: TransformerConfig, batch: dict, training: bool) -> torch.Tensor:
        tokens, text = self.window_tokens(spec, batch)
        generator = None if training else torch.Generator(tokens.device).manual_seed(0)  # fixed validation masks
        masked = training_mask(tuple(tokens.shape), generator, tokens.device)
        logits = net(tokens.masked_fill(masked, spec.special), drop_captions(text, spec, training))
        return F.cross_entropy(logits[masked].float(), tokens[masked])

    def generate(self, module: nn.Module, request: GenerationRequest) -> torch.Tensor:
        h, w = single_frame(request, "MaskGIT")
        check_window_fit(h, w, module.cfg.window, "MaskGIT")
        device = next(module.parameters()).device
        canvas, known = start_canvas(request, h, w, device)
        cond = Conditioning(module, request.text, request.batch, request.sampling.guidance)
        module.eval()
        out = decode_canvas(module, canvas, known, cond, Sampler.of(request), request.progress)
        return rearrange(out, "b h w -> b 1 h w")


FAMILY = MaskGITFamily()
