"""NUWA-Infinity's vision decoder (paper Eq. 9-13) with the text encoder.

Each patch is a sequence of M+1 positions: a learned start query (one per writing order) and the M
tokens in writing order (token embedding + within-patch position embedding). Output i predicts
token i+1 (AR). NAR/P-NAR add a second stream per patch: masked copies of the tokens, which see
their own patch bidirectionally and the context, and predict the masked tokens; the clean stream
provides the cache.

One forward serves every use. The new positions attend to a :class:`~nuwa.ncp.Memory` (context
caches from NCP, the AR decoder's own prefix) and to themselves, under one mask rule:
key k is visible to query q when
  * same patch and stream, and (bidirectional or k is not after q), or
  * k is a token of the clean stream of an EARLIER patch inside q's extent (NCP.Select).
So the whole image in one pass (``parallel``: every patch, no memory) and the sequential NCP loop
give the same numbers. ADC.emb enters as an additive bias to the logits of
``scaled_dot_product_attention`` (pre- or post-feeding, see nuwa.adc).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from nuwa.adc import ORDERS, RelativePosition, token_order
from nuwa.ncp import Memory, Positions
from nuwa.settings import ModelConfig
from nuwa.text import TextEncoder



class TextState(NamedTuple):
    """An encoded caption, projected once per generation: per-layer cross-attention K/V."""

    valid: torch.Tensor                              # Bool[B, T]
    kv: list[tuple[torch.Tensor, torch.Tensor]]      # per layer ([B, h, T, dh], [B, h, T, dh])


class Output(NamedTuple):
    logits: torch.Tensor  # [B, S, codebook]
    cache: Memory         # per-layer inputs (Eq. 12) and per-layer K/V of the new positions


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, kv_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(kv_dim or dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(x, "b s (h d) -> b h s d", h=self.heads)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(x).chunk(2, dim=-1)
        return self.split(k), self.split(v)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(rearrange(out, "b h s d -> b s (h d)"))


class Block(nn.Module):
    """Pre-norm layer: self-attention over [memory; patch] (Eq. 9), cross-attention to text (Eq. 10), FFN (Eq. 11)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.attn = Attention(cfg.dim, cfg.heads)
        self.cross = Attention(cfg.dim, cfg.heads, cfg.text.dim) if cfg.text is not None else None
        self.norm2 = nn.LayerNorm(cfg.dim) if cfg.text is not None else None
        self.norm3 = nn.LayerNorm(cfg.dim)
        self.ffn = nn.Sequential(nn.Linear(cfg.dim, cfg.mlp_ratio * cfg.dim), nn.GELU(),
                                 nn.Linear(cfg.mlp_ratio * cfg.dim, cfg.dim))

    def forward(self, x: torch.Tensor, memory: Memory | None, layer: int, rel: RelativePosition,
                allowed: torch.Tensor, offset: torch.Tensor, tpos: torch.Tensor, text: TextState | None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h = self.norm1(x)
        q = self.attn.split(self.attn.q(h))
        k_new, v_new = self.attn.keys_values(h)
        pairs = []
        if memory is not None and memory.hidden is not None:  # Eq. 12: project the context's layer inputs now
            pairs.append(self.attn.keys_values(self.norm1(memory.layer_input(layer))))
        if memory is not None and memory.kv is not None:
            pairs.append(memory.kv[layer])
        pairs.append((k_new, v_new))
        mask = rel.bias(q, offset, tpos).to(q.dtype).masked_fill(~allowed[:, None], float("-inf"))
        keys, values = (torch.cat(t, 2) for t in zip(*pairs))
        x = x + self.attn.attend(q, keys, values, mask)
        if self.cross is not None and text is not None:
            k, v = text.kv[layer]
            cq = self.cross.split(self.cross.q(self.norm2(x)))
            x = x + self.cross.attend(cq, k, v, text.valid[:, None, None, :])
        x = x + self.ffn(self.norm3(x))
        return x, (k_new, v_new)


class NuwaInfinity(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        tokens = cfg.tokens_per_patch
        self.tok = nn.Embedding(cfg.codebook + 1, cfg.dim)  # the last id is [MASK] (NAR/P-NAR)
        self.start = nn.Embedding(len(ORDERS), cfg.dim)      # one start query per writing order
        self.pos = nn.Embedding(tokens + 1, cfg.dim)          # within-patch position (+ start slot)
        self.rel = RelativePosition(cfg.extent, tokens, cfg.dim, cfg.heads, cfg.pos_feed)
        self.text = TextEncoder(cfg.text) if cfg.text is not None else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.codebook)
        orders = torch.stack([token_order(cfg.patch, o) for o in ORDERS])
        self.register_buffer("token_orders", orders, persistent=False)  # [4, M] spatial index per writing step

    @property
    def mask_id(self) -> int:
        return self.cfg.codebook

    @property
    def bidirectional(self) -> bool:
        return self.cfg.local != "ar"

    @property
    def streams(self) -> int:
        return 1 if self.cfg.local == "ar" else 2

    def positions(self, coords: torch.Tensor, orders: torch.Tensor, stream: int | None = None) -> Positions:
        """Positions of patches coords Long[B, N, 3] (ranks 0..N-1) with writing orders Long[B, N]:
        per patch the M+1 positions of each stream (or only ``stream``), flattened to [B, S]."""
        b, n = orders.shape
        tokens = self.cfg.tokens_per_patch
        streams = torch.arange(self.streams, device=coords.device) if stream is None else torch.tensor([stream], device=coords.device)
        shape = (b, n, len(streams), tokens + 1)
        start = torch.full((b, n, 1), tokens, device=coords.device, dtype=torch.long)
        tpos = torch.cat([start, self.token_orders[orders]], -1)[:, :, None].expand(shape)
        idx = torch.arange(tokens + 1, device=coords.device).expand(shape)
        rank = torch.arange(n, device=coords.device)[None, :, None, None].expand(shape)
        per_patch = [coords[..., i][..., None, None].expand(shape) for i in range(3)] + [orders[..., None, None].expand(shape)]
        flat = [rearrange(t, "b n s t -> b (n s t)")
                for t in (rank, *per_patch, streams[None, None, :, None].expand(shape), idx, tpos)]
        return Positions(*flat, valid=torch.ones_like(flat[0], dtype=torch.bool))

    def attention_mask(self, q: Positions, k: Positions, from_hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(allowed Bool[B, Sq, Sk], ADC.emb offset index Long[B, Sq, Sk]) -- the one mask rule.
        ``from_hidden`` Bool[Sk] marks keys each layer projects from cached layer inputs (the context
        of training, and the w/o-caches context)."""
        def pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return a[:, :, None], b[:, None, :]
        qr, kr = pair(q.rank, k.rank)
        qs, ks = pair(q.stream, k.stream)
        qi, ki = pair(q.idx, k.idx)
        offset, inside = self.rel.offset(q.f[:, :, None] - k.f[:, None], k.r[:, None] - q.r[:, :, None],
                                          k.c[:, None] - q.c[:, :, None])
        own = (qr == kr) & (qs == ks) & ~from_hidden[None, None]
        if not self.bidirectional:
            own = own & (ki <= qi)
        context = (kr < qr) & (ks == 0) & (ki >= 1) & inside
        if not self.cfg.caches:  # w/o caches: context only through the layer-0 inputs
            context = context & from_hidden[None, None]
        return (own | context) & k.valid[:, None, :], offset

    def encode_text(self, text: torch.Tensor | None) -> TextState | None:
        if self.text is None or text is None:
            return None
        states, valid = self.text(text[:, :self.cfg.text.context_length])  # captions are short: truncate the 77-id rows
        return TextState(valid, [block.cross.keys_values(states) for block in self.blocks])

    def embed(self, ids: torch.Tensor, pos: Positions) -> torch.Tensor:
        x = self.tok(ids) + self.pos(pos.tpos)
        return torch.where((pos.idx == 0)[..., None], self.start(pos.order), x)

    def forward(self, ids: torch.Tensor, pos: Positions, memory: Memory | None = None,
                text: torch.Tensor | TextState | None = None, parallel: bool = False) -> Output:
        """Logits and cache of the positions ``pos`` with ids Long[B, S] (start slots ignored), seeing ``memory``.

        ``text``: BPE ids Long[B, 77] (encoded here) or an already encoded TextState.
        ``parallel``: ``pos`` holds every patch of the images (no memory): the whole layout in ONE
        forward, equal to the sequential NCP pass for fixed parameters (w/o caches, the clean
        tokens' layer-0 inputs become the memory)."""
        if parallel and not self.cfg.caches:
            keep = clean_tokens(pos)
            memory = Memory(hid_pos=pos[keep], hidden=self.embed(ids[:, keep], pos[keep])[None])
        state = self.encode_text(text) if isinstance(text, torch.Tensor) else text
        mem_pos = memory.positions() if memory is not None else None
        keys = pos if mem_pos is None else Positions.cat([mem_pos, pos])
        from_hidden = torch.zeros(keys.idx.shape[1], dtype=torch.bool, device=ids.device)
        if memory is not None:
            from_hidden[:memory.hidden_length] = True
        allowed, offset = self.attention_mask(pos, keys, from_hidden)
        x, inputs, kv = self.embed(ids, pos), [], []
        for layer, block in enumerate(self.blocks):
            inputs.append(x)
            x, new = block(x, memory, layer, self.rel, allowed, offset, keys.tpos, state)
            kv.append(new)
        return Output(self.head(self.norm(x)), Memory(pos, torch.stack(inputs), pos, kv))

    def pool_entry(self, cache: Memory, project: bool = True) -> Memory:
        """What NCP keeps of a finished patch: its clean token positions, as per-layer K/V
        (``project``: inference, parameters fixed) or as the layer inputs a_n of Eq. 12 (training:
        later patches project them with the current weights). w/o caches (Table 6): the layer-0
        inputs only."""
        pos = cache.kv_pos
        keep = clean_tokens(pos)
        if not self.cfg.caches:
            return Memory(hid_pos=pos[keep], hidden=cache.hidden[:1, :, keep])
        if not project:
            return Memory(hid_pos=pos[keep], hidden=cache.hidden[:, :, keep])
        return Memory(kv_pos=pos[keep], kv=[(k[:, :, keep], v[:, :, keep]) for k, v in cache.kv])


def clean_tokens(pos: Positions) -> torch.Tensor:
    """Indices of the clean-stream token positions (what a patch's cache keeps; no start slot)."""
    return ((pos.stream[0] == 0) & (pos.idx[0] >= 1)).nonzero().flatten()
