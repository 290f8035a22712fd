"""Text encoder shared by NUWA-Infinity and the baselines.

Captions are tokenized with open_clip's bundled BPE tokenizer (77 tokens, no download) and
encoded by a small transformer trained from scratch with the generator. ``drop_text`` replaces
captions by the empty caption with a given probability (text dropout), which is what classifier-
free guidance needs at sampling time.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nuwa.core.errors import UserError

CONTEXT_LENGTH = 77
VOCAB_SIZE = 49408


@dataclass
class TextConfig:
    dim: int = 128
    layers: int = 2
    heads: int = 4
    context_length: int = CONTEXT_LENGTH
    dropout_prob: float = 0.1  # probability of training on the empty caption (for guidance)

    def __post_init__(self) -> None:
        if not 1 <= self.context_length <= CONTEXT_LENGTH:
            raise ValueError(f"context_length must be in [1, {CONTEXT_LENGTH}]")
        if self.dim % self.heads:
            raise ValueError("text dim must be divisible by heads")


def tokenize(captions: list[str], context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
    """BPE ids [B, context_length] from open_clip's bundled tokenizer (SOT ... EOT, zero padded)."""
    from open_clip.tokenizer import tokenize as clip_tokenize

    return clip_tokenize(list(captions), context_length=context_length)


def guidance_captions(text: torch.Tensor | None, batch: int, guided: bool, length: int = CONTEXT_LENGTH) -> torch.Tensor:
    """BPE ids [B, T] of a batch's captions (empty ones when there are none, ``length`` ids), followed under
    classifier-free guidance by B empty captions (the unconditional half): [2B, T]."""
    if text is not None and text.shape[0] != batch:
        raise UserError(f"got {text.shape[0]} captions for a batch of {batch}; pass one caption per sample")
    empty = tokenize([""], length if text is None else text.shape[1]).expand(batch, -1)
    text = empty if text is None else text
    return torch.cat([text, empty.to(text.device)]) if guided else text


def drop_text(tokens: torch.Tensor, prob: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each row by the empty caption with probability ``prob``."""
    if prob <= 0:
        return tokens
    empty = tokenize([""], tokens.shape[1]).to(tokens.device)
    drop = torch.rand(tokens.shape[0], generator=generator, device="cpu").to(tokens.device) < prob
    return torch.where(drop[:, None], empty, tokens)


class TextEncoder(nn.Module):
    """Token + position embedding and a pre-norm transformer encoder; padding is masked."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(VOCAB_SIZE, cfg.dim)
        self.pos = nn.Parameter(torch.zeros(cfg.context_length, cfg.dim))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, 4 * cfg.dim, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (states [B, T, dim], valid [B, T] bool); valid marks SOT..EOT positions."""
        valid = tokens != 0
        valid[:, 0] = True  # SOT is always there; keeps all-masked rows impossible
        h = self.tok(tokens) + self.pos[: tokens.shape[1]]
        h = self.encoder(h, src_key_padding_mask=~valid)
        return self.norm(h), valid
