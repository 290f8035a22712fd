"""Token sampling shared by every generator: temperature, top-k, top-p, classifier-free guidance,
and the parallel (MaskGIT) decoding step of P-NAR and the MaskGIT baseline.

Samplers stay out of the models (as in Halton-MaskGIT): a model returns logits, these functions
turn logits into tokens. A :class:`Sampler` is the settings plus the random streams of one
generation: one ``torch.Generator`` shared by the whole batch, or one per sample, which makes a
sample's tokens independent of the batch it is generated in (sample i of a batch draws exactly
what it would draw alone; with one sample both are the same stream).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class SamplingConfig:
    temperature: float = 1.0
    top_k: int = 0          # 0 = off
    top_p: float = 1.0      # 1.0 = off
    guidance: float = 1.0   # classifier-free guidance scale; 1.0 = conditional logits only
    steps: int = 8          # iterative decoders (P-NAR, MaskGIT): unmasking steps
    choice_temperature: float = 4.5  # MaskGIT-style: Gumbel noise scale on confidences, annealed to 0

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.steps < 1:
            raise ValueError("steps must be >= 1")


def guide(cond: torch.Tensor, uncond: torch.Tensor | None, scale: float) -> torch.Tensor:
    """Classifier-free guidance: uncond + scale * (cond - uncond)."""
    if uncond is None or scale == 1.0:
        return cond
    return uncond + scale * (cond - uncond)


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Mask (to -inf) everything outside the top-k and the top-p nucleus, along the last dim."""
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, idx = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        remove = cum - sorted_logits.softmax(-1) > top_p  # keep the token that crosses top_p
        sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, idx, sorted_logits)
    return logits


def sample_logits(logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ids from ``logits[..., V]``; returns (ids[...], probability of the chosen id)."""
    return Sampler(cfg, generator)(logits)


def multinomial(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One id per distribution ``probs[..., V]``."""
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])


def multinomial_rows(probs: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """One id per distribution ``probs[B, ..., V]``, row b's from ``generators[b]``: the ids
    ``multinomial(probs[b:b+1], generators[b])`` gives, row by row, in one batched pass.

    torch.multinomial draws one sample as argmax(p / q) with q ~ Exp(1) of p's shape (the Gumbel-max
    trick); here only q is drawn row by row (each row's numbers from its own stream, in the order
    torch draws them for that row alone), and the check, the division and the argmax run once."""
    lo, hi = torch.aminmax(probs)
    if not bool((lo >= 0) & (hi < math.inf)):
        raise ValueError("probability tensor contains either inf, nan or element < 0")
    if not bool((probs.sum(-1) > 0).all()):
        raise ValueError("invalid multinomial distribution (sum of probabilities <= 0)")
    q = torch.empty(probs.shape, dtype=probs.dtype, device=probs.device)
    for row, generator in zip(q, generators):
        row.exponential_(generator=generator)
    return (probs / q).argmax(-1)


class Sampler:
    """Logits -> tokens for one generation: ``cfg`` and the random streams (``generators``: one per
    sample, rows of every draw; else ``generator`` shared by all rows)."""

    def __init__(self, cfg: SamplingConfig, generator: torch.Generator | None = None,
                 generators: list[torch.Generator] | None = None):
        self.cfg, self.generator, self.generators = cfg, generator, generators

    @classmethod
    def of(cls, request) -> Sampler:
        """The sampler of a nuwa.core.family.GenerationRequest (its per-sample streams when it has them)."""
        return cls(request.sampling, request.generator, request.generators)

    def _streams(self, x: torch.Tensor) -> list[torch.Generator]:
        """The per-sample streams, one per row of ``x``."""
        if len(self.generators) != x.shape[0]:
            raise ValueError(f"{len(self.generators)} random streams for {x.shape[0]} samples")
        return self.generators

    def _rows(self, draw, x: torch.Tensor) -> torch.Tensor:
        if self.generators is None:
            return draw(x, self.generator)
        return torch.cat([draw(x[i:i + 1], g) for i, g in enumerate(self._streams(x))])

    def __call__(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids [B, ...], probability of each) sampled from ``logits`` [B, ..., V]."""
        probs = filter_logits(logits.float() / self.cfg.temperature, self.cfg.top_k, self.cfg.top_p).softmax(-1)
        ids = (multinomial(probs, self.generator) if self.generators is None
               else multinomial_rows(probs, self._streams(probs)))
        return ids, probs.gather(-1, ids[..., None])[..., 0]

    def gumbel(self, like: torch.Tensor) -> torch.Tensor:
        """Gumbel noise shaped like ``like`` [B, ...], row b from sample b's stream."""
        return self._rows(lambda x, g: gumbel(x.shape, g, x.device), like)

    def remask(self, prob: torch.Tensor, masked: torch.Tensor, still_masked: int, temperature: float) -> torch.Tensor:
        """nuwa.core.sampling.remask with this generation's random streams."""
        return least_confident(prob, masked, still_masked, temperature * self.gumbel(prob))


def training_mask(shape: tuple[int, ...], generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Bool[shape]: MaskGIT's training mask over the last axis (N tokens). Per leading index a ratio
    r ~ U(0, 1) masks ceil(cos(pi/2 r) N) random tokens, at least one."""
    n = shape[-1]
    ratio = torch.cos(math.pi / 2 * torch.rand(shape[:-1], generator=generator, device=device))
    count = (ratio * n).ceil().clamp(1, n)
    ranks = torch.rand(shape, generator=generator, device=device).argsort(-1).argsort(-1)
    return ranks < count[..., None]


def mask_schedule(unknown: int, steps: int) -> list[int]:
    """MaskGIT's cosine schedule: how many of ``unknown`` masked tokens are still masked after each
    step that runs (Chang et al. 2022, parallel decoding).

    After step s: max(1, min(still masked - 1, floor(unknown * cos(pi/2 * (s+1)/steps)))); the last
    step unmasks the rest. Every step unmasks at least one token, so with steps > unknown the
    decoding is done after ``unknown`` steps and the extra steps are not run (the list is shorter)."""
    counts, masked = [], unknown
    for s in range(steps):
        if masked == 0:
            break
        target = math.floor(unknown * math.cos(math.pi / 2 * (s + 1) / steps))
        masked = 0 if s == steps - 1 or masked == 1 else max(1, min(masked - 1, target))
        counts.append(masked)
    return counts


def gumbel(shape: torch.Size | tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard Gumbel noise, drawn on the generator's device (a CPU generator also serves CUDA)."""
    where = generator.device if generator is not None else device
    u = torch.rand(shape, generator=generator, device=where).clamp_min(1e-20).to(device)
    return -torch.log(-torch.log(u))


def remask(prob: torch.Tensor, masked: torch.Tensor, still_masked: int, temperature: float,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Bool[B, N]: the ``still_masked`` tokens to mask again after a parallel decoding step.

    ``prob`` [B, N] is the probability of each freshly sampled token, ``masked`` [B, N] what was
    masked before the step. The least confident of those are masked again, confidence being
    log p + temperature * Gumbel noise (MaskGIT's annealed choice temperature); a token decided
    before the step (``masked`` False) is never masked again."""
    return least_confident(prob, masked, still_masked, temperature * gumbel(prob.shape, generator, prob.device))


def least_confident(prob: torch.Tensor, masked: torch.Tensor, still_masked: int, noise: torch.Tensor) -> torch.Tensor:
    """Bool[B, N]: the ``still_masked`` masked tokens of lowest confidence log p + ``noise``."""
    confidence = prob.clamp_min(1e-20).log() + noise
    lowest = confidence.masked_fill(~masked, math.inf).argsort(-1)[..., :still_masked]
    return torch.zeros_like(masked).scatter(-1, lowest, True)


def choice_temperature(scale: float, step: int, steps: int) -> float:
    """The Gumbel scale of parallel decoding step ``step`` of ``steps``: ``scale`` annealed linearly to 0."""
    return scale * (1.0 - (step + 1) / steps)
