"""Nearby Context Pool (paper 3.2): select / add / remove over per-layer patch caches.

Patches are identified by their rank in the generation order; ``coords[b, n]`` is where sample
b's n-th patch lies (training draws an order per sample, so the same rank can sit at different
places). ``select(n)`` returns the caches of earlier patches with |dr| <= e_h, |dc| <= e_w and
0 <= df <= e_f for any sample (the attention mask re-checks the extent per sample), ``add`` stores
a finished patch's cache and ``remove(n)`` drops every cache no patch after n can select, using
each patch's last use precomputed from the known order. Memory is bounded by the extent: in
omega order over H patch rows at most (e_w + 1) * H caches are alive.

A cache holds the patch's M clean token positions in one of two forms. In training it is the
layer inputs a_n of Eq. 12 (``hidden``: the input of every layer, detached), which each layer of a
later patch projects with its CURRENT W^k / W^v, so those weights and the pre-attention norm get
gradients through the context. At inference the parameters are fixed, so the projected per-layer
keys and values (``kv``) are the same numbers and cheaper. In the "w/o caches" mode (Table 6) it is
only the first-layer input (the token embeddings), which every layer projects itself.

At inference (:class:`SlotPool`) the caches live in one preallocated nuwa.core.transformer.KVCache, a slot
per cached patch, written in place while the patch is decoded -- the same structure as every
other KV cache of the engine; the number of slots is the peak number of live caches, known from
the plan before generation starts.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from itertools import product
from typing import Callable

import torch

from nuwa.core.transformer import KVCache

KV = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Positions:
    """Where each sequence position sits, all [B, S]: patch rank and grid coordinates, the patch's
    writing order, the stream (0: clean tokens, the cache; 1: masked queries of NAR/P-NAR), the
    index inside the patch sequence (0 = start query, 1..M tokens in writing order), the spatial
    token position inside the patch (M for the start query) and whether the position is real."""

    rank: torch.Tensor
    f: torch.Tensor
    r: torch.Tensor
    c: torch.Tensor
    order: torch.Tensor
    stream: torch.Tensor
    idx: torch.Tensor
    tpos: torch.Tensor
    valid: torch.Tensor

    def __getitem__(self, index: slice | torch.Tensor) -> Positions:
        return Positions(*(getattr(self, k.name)[:, index] for k in fields(self)))

    @staticmethod
    def cat(parts: list[Positions]) -> Positions:
        return Positions(*(torch.cat([getattr(p, k.name) for p in parts], 1) for k in fields(Positions)))


@dataclass
class Memory:
    """Keys the new positions attend to besides themselves: layer inputs that each layer projects
    itself (``hidden``), or already projected per-layer K/V (``kv``), or both (hidden first).

    ``hidden`` is [L, B, S_h, d] (Eq. 12: the input of each of the L layers) or [1, B, S_h, d] (w/o
    caches: the token embeddings, which every layer reads)."""

    hid_pos: Positions | None = None
    hidden: torch.Tensor | None = None
    kv_pos: Positions | None = None
    kv: KV | None = None  # per layer ([B, h, S_k, dh], [B, h, S_k, dh])

    def positions(self) -> Positions | None:
        parts = [p for p in (self.hid_pos, self.kv_pos) if p is not None]
        return Positions.cat(parts) if parts else None

    @property
    def hidden_length(self) -> int:
        return 0 if self.hidden is None else self.hidden.shape[2]

    def layer_input(self, layer: int) -> torch.Tensor:
        """The hidden states layer ``layer`` projects: its own input, or the shared token embeddings."""
        return self.hidden[layer if self.hidden.shape[0] > 1 else 0]

    def detach(self) -> Memory:
        kv = None if self.kv is None else [(k.detach(), v.detach()) for k, v in self.kv]
        return Memory(self.hid_pos, None if self.hidden is None else self.hidden.detach(), self.kv_pos, kv)

    def nbytes(self) -> int:
        tensors = ([self.hidden] if self.hidden is not None else []) + [t for kv in self.kv or [] for t in kv]
        return sum(t.numel() * t.element_size() for t in tensors)


def merge(parts: list[Memory]) -> Memory | None:
    """Concatenate memories along the sequence (their hidden parts and their kv parts)."""
    if not parts:
        return None
    first = parts[0]
    hid_pos = hidden = kv_pos = kv = None
    if first.hidden is not None:
        hid_pos, hidden = Positions.cat([p.hid_pos for p in parts]), torch.cat([p.hidden for p in parts], 2)
    if first.kv is not None:
        kv_pos = Positions.cat([p.kv_pos for p in parts])
        kv = [(torch.cat([p.kv[i][0] for p in parts], 2), torch.cat([p.kv[i][1] for p in parts], 2))
              for i in range(len(first.kv))]
    return Memory(hid_pos, hidden, kv_pos, kv)


def neighbours(coords: torch.Tensor, extent: tuple[int, int, int]) -> list[list[int]]:
    """For every rank n, the earlier ranks inside the extent of n for at least one sample.

    coords: Long[B, N, 3] (f, r, c) of each sample's n-th patch."""
    ew, eh, ef = extent
    n_patches = coords.shape[1]
    found: list[set[int]] = [set() for _ in range(n_patches)]
    for layout in torch.unique(coords, dim=0).tolist():
        rank = {tuple(p): n for n, p in enumerate(layout)}
        box = list(product(range(ef + 1), range(-eh, eh + 1), range(-ew, ew + 1)))
        for n, (f, r, c) in enumerate(layout):
            for df, dr, dc in box:
                m = rank.get((f - df, r + dr, c + dc))
                if m is not None and m < n:
                    found[n].add(m)
    return [sorted(s) for s in found]


class NCP:
    """The pool for one generation (or one training pass) over a known patch order."""

    def __init__(self, coords: torch.Tensor, extent: tuple[int, int, int]):
        self.selects = neighbours(coords, extent)
        self.last_use = [-1] * coords.shape[1]
        for n, chosen in enumerate(self.selects):
            for m in chosen:
                self.last_use[m] = max(self.last_use[m], n)
        self.pool: dict[int, Memory] = {}
        self.peak, self.peak_bytes = 0, 0

    def select(self, n: int) -> Memory | None:
        """NCP.Select (Eq. 5): the context caches of the n-th patch."""
        missing = [m for m in self.selects[n] if m not in self.pool]
        if missing:
            raise RuntimeError(f"patch {n} needs the caches of patches {missing}, which were never added")
        return merge([self.pool[m] for m in self.selects[n]])

    def add(self, n: int, cache: Memory) -> None:
        """NCP.Add (Eq. 4)."""
        self.pool[n] = cache
        self.peak = max(self.peak, len(self.pool))
        self.peak_bytes = max(self.peak_bytes, self.held_bytes())

    def held_bytes(self) -> int:
        return sum(c.nbytes() for c in self.pool.values())

    def expired(self, n: int) -> list[int]:
        """The caches no patch after n selects."""
        return [m for m in self.pool if self.last_use[m] <= n]

    def remove(self, n: int) -> None:
        """NCP.Remove: after patch n, drop every cache no later patch selects."""
        for m in self.expired(n):
            del self.pool[m]

    def live_peak(self) -> int:
        """The most caches alive at once over the whole order (after an add, before its remove)."""
        alive: set[int] = set()
        peak = 0
        for n in range(len(self.selects)):
            alive.add(n)
            peak = max(peak, len(alive))
            alive = {m for m in alive if self.last_use[m] > n}
        return peak

    def __len__(self) -> int:
        return len(self.pool)


class SlotPool(NCP):
    """NCP at inference: the caches are slots of one preallocated KVCache (``kv``), each ``tokens + 1``
    positions (the patch's start query, then its M tokens; only the tokens are ever selected).

    ``reserve(n)`` gives patch n a free slot before it is decoded (the decoder writes its keys and
    values there in place), ``add(n)`` makes it selectable, ``select(n)`` returns the KV positions
    of n's context, ``remove(n)`` frees the slots no later patch selects."""

    def __init__(self, coords: torch.Tensor, extent: tuple[int, int, int], tokens: int,
                 new_cache: Callable[[int], KVCache]):
        super().__init__(coords, extent)
        self.tokens = tokens
        self.free = list(range(self.live_peak()))
        self.kv = new_cache(len(self.free) * (tokens + 1))
        self.reserved: dict[int, int] = {}

    def _positions(self, slot: int, first: int) -> torch.Tensor:
        start = slot * (self.tokens + 1)
        return torch.arange(start + first, start + self.tokens + 1, device=self.kv.k.device)

    def reserve(self, n: int) -> torch.Tensor:
        """KV positions Long[M + 1] of patch n's slot (start query, then its tokens)."""
        self.reserved[n] = self.free.pop(0)
        return self._positions(self.reserved[n], 0)

    def select(self, n: int) -> torch.Tensor:
        """NCP.Select (Eq. 5): KV positions Long[C] of the tokens of n's context, patch by patch in rank order."""
        missing = [m for m in self.selects[n] if m not in self.pool]
        if missing:
            raise RuntimeError(f"patch {n} needs the caches of patches {missing}, which were never added")
        parts = [self._positions(self.pool[m], 1) for m in self.selects[n]]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long, device=self.kv.k.device)

    def add(self, n: int, cache: None = None) -> None:
        """NCP.Add: patch n's slot (written while it was decoded) becomes selectable."""
        super().add(n, self.reserved.pop(n))

    def held_bytes(self) -> int:
        return len(self.pool) * self.tokens * self.kv.per_position_bytes()

    def remove(self, n: int) -> None:
        for m in self.expired(n):
            self.free.append(self.pool.pop(m))
