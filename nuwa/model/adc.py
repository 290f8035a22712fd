"""Arbitrary Direction Controller (paper 3.1).

``split`` plans the order in which patches are generated: the four writing orders of Fig. 6 left
(omega: down each column, columns left->right; omega*: columns right->left; zeta: along each row,
rows top->bottom; zeta*: rows bottom->top), frames outermost, tokens inside a patch in the same
writing direction. ``plan`` composes them for a canvas with a known rectangle (outpainting, Fig. 6
right; animation): the known patches are pre-cached first, then the region right of the rectangle
grows in omega, the region left of it in omega*, the band below (full width) in zeta and the band
above in zeta*. Every new patch therefore starts next to an already generated neighbour, on the
side its writing direction starts from, and sees the same kind of context as in training.

``RelativePosition`` is ADC.emb: a learned table over relative patch offsets (df, dr, dc) inside the
NCP extent plus the key's within-patch token position. Pre-feeding adds it to the keys before QK^T
(Eq. 9), i.e. the logit of query q and key k gains q . e(offset, token) / sqrt(d_head);
post-feeding adds a learned per-head scalar for (offset, token) to the logits (Swin-style).
``bias`` serves a whole layout at once (training: queries of many patches); when one patch is
decoded every query has the same offset to a key, so ``per_key`` gives ADC.emb of its keys once
per patch: vectors added to the keys (pre) or a logit bias per key (post).
"""
from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from einops import rearrange
from torch import nn

from nuwa.core.errors import UserError

ORDERS = ("omega", "omega*", "zeta", "zeta*")


class Patch(NamedTuple):
    f: int
    r: int
    c: int
    order: str  # writing direction of the tokens inside this patch


def check_order(order: str) -> int:
    """Index of ``order`` in ORDERS; a one-line UserError for anything else."""
    if order not in ORDERS:
        raise UserError(f"unknown patch order {order!r}; choose one of {', '.join(ORDERS)}")
    return ORDERS.index(order)


def walk(frames: range, rows: range, cols: range, order: str) -> list[Patch]:
    """Visit the box frames x rows x cols in ``order`` (frames outermost)."""
    check_order(order)
    rows = rows[::-1] if order == "zeta*" else rows
    cols = cols[::-1] if order == "omega*" else cols
    if order.startswith("omega"):
        return [Patch(f, r, c, order) for f in frames for c in cols for r in rows]
    return [Patch(f, r, c, order) for f in frames for r in rows for c in cols]


def split(grid: tuple[int, int, int], order: str) -> list[Patch]:
    """ADC.Split (Eq. 2): the patches of an [F, H, W] patch grid in generation order."""
    frames, rows, cols = grid
    return walk(range(frames), range(rows), range(cols), order)


def token_order(m: int, order: str) -> torch.Tensor:
    """Spatial indices (row * m + col) of the m x m tokens of a patch in writing order."""
    return torch.tensor([p.r * m + p.c for p in split((1, m, m), order)], dtype=torch.long)


def known_rectangle(known: torch.Tensor, frame: int) -> tuple[int, int, int, int]:
    """(r0, r1, c0, c1) of the known patches of one frame; they must form one rectangle."""
    rows = known.any(1).nonzero().flatten()
    cols = known.any(0).nonzero().flatten()
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    if int(known.sum()) != (r1 - r0) * (c1 - c0):
        raise UserError(f"the known tokens of frame {frame} do not form one rectangle of whole patches; "
                        "give the input as a rectangle aligned to the patch grid")
    return r0, r1, c0, c1


def plan(grid: tuple[int, int, int], known: torch.Tensor, order: str = "omega") -> tuple[list[Patch], list[Patch]]:
    """(pre-cached known patches, patches to generate) for a canvas with known patches Bool[F, H, W].

    A frame with nothing known is generated in ``order``; a frame with a known rectangle is extended
    right (omega), left (omega*), down (zeta, full width) and up (zeta*, full width) in that sequence.
    """
    check_order(order)
    frames, rows, cols = grid
    if tuple(known.shape) != tuple(grid):
        raise ValueError(f"known mask {tuple(known.shape)} does not match the patch grid {grid}")
    pre: list[Patch] = []
    new: list[Patch] = []
    for f in range(frames):
        one = range(f, f + 1)
        if not known[f].any():
            new += walk(one, range(rows), range(cols), order)
            continue
        r0, r1, c0, c1 = known_rectangle(known[f], f)
        pre += walk(one, range(r0, r1), range(c0, c1), order)
        new += walk(one, range(r0, r1), range(c1, cols), "omega")
        new += walk(one, range(r0, r1), range(c0), "omega*")
        new += walk(one, range(r1, rows), range(cols), "zeta")
        new += walk(one, range(r0), range(cols), "zeta*")
    return pre, new


class RelativePosition(nn.Module):
    """ADC.emb (Eq. 3): relative patch offset (df, dr, dc) within the extent + key token position."""

    def __init__(self, extent: tuple[int, int, int], tokens: int, dim: int, heads: int,
                 feed: Literal["pre", "post"]):
        super().__init__()
        self.ew, self.eh, self.ef = extent
        self.heads, self.feed = heads, feed
        offsets = (self.ef + 1) * (2 * self.eh + 1) * (2 * self.ew + 1)
        width = dim if feed == "pre" else heads
        self.patch = nn.Parameter(torch.randn(offsets, width) * 0.02)
        self.token = nn.Parameter(torch.randn(tokens + 1, width) * 0.02)  # + the start query's slot

    def offset(self, df: torch.Tensor, dr: torch.Tensor, dc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(table index, inside-extent mask) of offsets df = f_q - f_k, dr = r_k - r_q, dc = c_k - c_q."""
        inside = (df >= 0) & (df <= self.ef) & (dr.abs() <= self.eh) & (dc.abs() <= self.ew)
        index = (df * (2 * self.eh + 1) + dr + self.eh) * (2 * self.ew + 1) + dc + self.ew
        return torch.where(inside, index, 0), inside

    def per_key(self, offset: torch.Tensor, tpos: torch.Tensor) -> torch.Tensor:
        """ADC.emb of one patch's keys (offset index Long[S] from the patch, token positions Long[S]):
        pre-feeding the vectors e [h, S, dh] added to the keys (Eq. 9: K = [p; c] W^k + e), post-feeding
        the per-head logit bias [h, 1, S]."""
        table = self.patch[offset] + self.token[tpos]
        if self.feed == "pre":
            return rearrange(table, "s (h d) -> h s d", h=self.heads)
        return rearrange(table, "s h -> h 1 s")

    def bias(self, q: torch.Tensor, offset: torch.Tensor, tpos: torch.Tensor) -> torch.Tensor:
        """Additive logit bias [B, h, Sq, Sk] for queries q [B, h, Sq, dh], offset index [B, Sq, Sk]
        and key token positions tpos [B, Sk]."""
        b, h, sq, _ = q.shape
        sk = tpos.shape[1]
        if self.feed == "post":
            return (rearrange(self.patch[offset], "b q k h -> b h q k")
                    + rearrange(self.token[tpos], "b k h -> b h 1 k"))
        scale = 1.0 / math.sqrt(q.shape[-1])
        per_offset = torch.einsum("bhqd,nhd->bhqn", q, rearrange(self.patch, "n (h d) -> n h d", h=h)) * scale
        per_token = torch.einsum("bhqd,nhd->bhqn", q, rearrange(self.token, "n (h d) -> n h d", h=h)) * scale
        return (per_offset.gather(-1, offset[:, None].expand(b, h, sq, sk))
                + per_token.gather(-1, tpos[:, None, None].expand(b, h, sq, sk)))
