"""NUWA-Infinity's vision decoder (paper Eq. 9-13) with the text encoder.

Each patch is a sequence of M+1 positions: a learned start query (one per writing order) and the M
tokens in writing order (token embedding + within-patch position embedding). Output i predicts
token i+1 (AR). NAR/P-NAR add a second stream per patch: masked copies of the tokens, which see
their own patch bidirectionally and the context, and predict the masked tokens; the clean stream
provides the cache.

Layers are nuwa.core.transformer's :class:`~nuwa.core.transformer.Block`, shared with the baselines. Two ways in:

* ``forward`` (training, evaluation): the new positions attend to a :class:`~nuwa.model.ncp.Memory`
  (context caches from NCP) and to themselves, under one mask rule: key k is visible to query q when
    - same patch and stream, and (bidirectional or k is not after q), or
    - k is a token of the clean stream of an EARLIER patch inside q's extent (NCP.Select).
  So the whole image in one pass (``parallel``: every patch, no memory) and the sequential NCP loop
  give the same numbers. ADC.emb enters as an additive bias to the logits of
  ``scaled_dot_product_attention`` (pre- or post-feeding, see nuwa.model.adc).
* ``begin_patch`` / ``decode`` (generation, nuwa.model.generate): once per patch the context's keys and
  values are read from the NCP pool into the patch's static KV cache with ADC.emb added to the keys
  (Eq. 9, pre-feeding) or as a logit bias (post-feeding), and the attention masks of both streams
  are built; then ``decode`` feeds one or more positions of the patch (prefill, one token, a
  masked pass), writing their keys/values in place -- and, for the clean stream, into the patch's
  NCP slot. Nothing about the context is recomputed per token.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from einops import rearrange
from torch import nn

from nuwa.core import transformer
from nuwa.core.text import TextEncoder
from nuwa.core.transformer import Block, Cached, KVCache, TextKV
from nuwa.model.adc import ORDERS, Patch, RelativePosition, token_order
from nuwa.model.config import ModelConfig
from nuwa.model.ncp import Memory, Positions


class Output(NamedTuple):
    logits: torch.Tensor  # [B, S, codebook]
    cache: Memory         # per-layer inputs (Eq. 12) and per-layer K/V of the new positions


@dataclass
class MemoryKeys:
    """Training keys: the memory's layer inputs projected with the current weights (Eq. 12) and its
    projected K/V, then the new positions; ADC.emb as a logit bias per (query, key) pair. The new
    positions' keys/values are kept in ``new`` (they become the patch's projected cache)."""

    memory: Memory | None
    rel: RelativePosition
    allowed: torch.Tensor  # Bool[B, Sq, Sk]
    offset: torch.Tensor   # Long[B, Sq, Sk]
    tpos: torch.Tensor     # Long[B, Sk]
    new: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    def __call__(self, layer: int, block: Block, h: torch.Tensor, q: torch.Tensor):
        k_new, v_new = block.attn.keys_values(h)
        self.new.append((k_new, v_new))
        pairs = []
        if self.memory is not None and self.memory.hidden is not None:  # Eq. 12: project the context's layer inputs now
            pairs.append(block.attn.keys_values(block.norm1(self.memory.layer_input(layer))))
        if self.memory is not None and self.memory.kv is not None:
            pairs.append(self.memory.kv[layer])
        pairs.append((k_new, v_new))
        mask = self.rel.bias(q, self.offset, self.tpos).to(q.dtype).masked_fill(~self.allowed[:, None], float("-inf"))
        keys, values = (torch.cat(t, 2) for t in zip(*pairs))
        return keys, values, mask


@dataclass
class PatchState:
    """One patch being generated, set up once by ``NuwaInfinity.begin_patch``."""

    cache: KVCache                 # its attention keys/values: the context (K + e, V), then its own M+1 positions
    own: int                       # where its own positions start in ``cache`` (the context length)
    masks: tuple[torch.Tensor, torch.Tensor]  # additive [1, 1 or h, M+1, own+M+1]: clean (causal), masked stream
    key_emb: torch.Tensor | None   # [h, M+1, dh] ADC.emb of its own positions, added to their keys (pre-feeding)
    tpos: torch.Tensor             # Long[M+1] spatial token position of each within-patch index (start query: M)
    order: torch.Tensor            # Long[1] its writing order (selects the start query)
    slot: torch.Tensor             # Long[M+1] its slot in the NCP pool
    pool: KVCache                  # the NCP pool (nuwa.model.ncp.SlotPool.kv)
    text: TextKV | None
    static: bool = False           # every step attends over the whole cache (fixed shapes, for torch.compile)
    gapless: bool = False          # no gap after the context and no post-fed bias: a step's mask can hide only
    #                                own positions it may not see yet

    def mask(self, stream: int, index: torch.Tensor, length: int | None) -> torch.Tensor | None:
        """The additive mask of positions ``index`` of ``stream`` over the first ``length`` keys, or None when
        it hides nothing there: one causal step over the keys up to its own position, or the bidirectional
        stream (SDPA then reads no mask; the result is the same, adding zeros changes no bit)."""
        if self.gapless and (stream == 1 or len(index) == 1):
            return None
        return self.masks[stream][:, :, index, :length]


@dataclass
class PatchKeys(Cached):
    """Decoding keys of one patch: the new positions' keys + ADC.emb go into the patch's cache (Eq. 9:
    K = [p_n; c_n] W^k + e_n); with ``pool`` their plain keys/values also go into the patch's NCP slot."""

    key_emb: torch.Tensor | None = None
    pool: KVCache | None = None
    slot: torch.Tensor | None = None

    def project(self, layer: int, block: Block, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = block.attn.keys_values(h)
        if self.pool is not None:
            self.pool.update(layer, self.slot, k, v)
        return (k if self.key_emb is None else k + self.key_emb), v


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
        text_dim = cfg.text.dim if cfg.text is not None else None
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, text_dim, cfg.mlp_ratio) for _ in range(cfg.layers))
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

    def encode_text(self, text: torch.Tensor | None) -> TextKV | None:
        if self.text is None or text is None:
            return None
        states, valid = self.text(text[:, :self.cfg.text.context_length])  # captions are short: truncate the 77-id rows
        return transformer.encode_text(self.blocks, states, valid)

    def embed(self, ids: torch.Tensor, pos: Positions) -> torch.Tensor:
        x = self.tok(ids) + self.pos(pos.tpos)
        return torch.where((pos.idx == 0)[..., None], self.start(pos.order), x)

    def forward(self, ids: torch.Tensor, pos: Positions, memory: Memory | None = None,
                text: torch.Tensor | TextKV | None = None, parallel: bool = False) -> Output:
        """Logits and cache of the positions ``pos`` with ids Long[B, S] (start slots ignored), seeing ``memory``.

        ``text``: BPE ids Long[B, 77] (encoded here) or an already encoded TextKV.
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
        attention = MemoryKeys(memory, self.rel, allowed, offset, keys.tpos)
        x, inputs = self.embed(ids, pos), []
        for layer, block in enumerate(self.blocks):
            inputs.append(x)
            x = block(x, layer, attention, state)
        return Output(self.head(self.norm(x)), Memory(pos, torch.stack(inputs), pos, attention.new))

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


    # ------------------------------------------------------------------ generation
    def new_cache(self, rows: int, length: int) -> KVCache:
        """An empty KV cache of every layer for ``rows`` sequences of ``length`` positions."""
        p = self.head.weight
        return KVCache(self.cfg.layers, rows, self.cfg.heads, length, self.cfg.dim // self.cfg.heads, p.dtype, p.device)

    def context_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """w/o caches (Table 6): every layer's keys/values [L, B, h, S, dh] of the token embeddings ``x``."""
        pairs = [block.attn.keys_values(block.norm1(x)) for block in self.blocks]
        return torch.stack([k for k, _ in pairs]), torch.stack([v for _, v in pairs])

    def begin_patch(self, patch: Patch, context: list[Patch], context_kv: torch.Tensor, pool: KVCache,
                    cache: KVCache, slot: torch.Tensor, text: TextKV | None, own: int | None = None,
                    static: bool = False) -> PatchState:
        """Set up the decoding of ``patch``: NCP.Select gave the ``context`` patches and the pool positions
        ``context_kv`` Long[C] of their tokens; ADC.emb (Eq. 8) and the masks are computed here once.

        The context's keys/values are copied from ``pool`` into the first C positions of ``cache`` (with
        ADC.emb added to the keys when pre-feeding); the patch's own M+1 positions follow at ``own``
        (default C; a fixed ``own`` >= every C gives every patch the same shapes, masking the gap).
        ``static``: the decode steps attend over the whole cache, also the positions not written yet."""
        m, device = self.cfg.tokens_per_patch, context_kv.device
        c = len(context) * m
        own = c if own is None else own
        order = ORDERS.index(patch.order)
        offsets = torch.tensor([self._offset(patch, p) for p in context for _ in range(m)]
                               + [self._offset(patch, patch)] * (m + 1), device=device, dtype=torch.long)
        own_tpos = torch.cat([torch.tensor([m], device=device), self.token_orders[order]])
        tpos = torch.cat([self.token_orders[ORDERS.index(p.order)] for p in context] + [own_tpos])
        emb = self.rel.per_key(offsets, tpos)  # over the C context keys, then the own M+1
        view = cache.view(own + m + 1)
        k, v = pool.read(context_kv)
        if self.cfg.pos_feed == "pre":
            k = k + emb[:, :c]
        view.write(torch.arange(c, device=device), k, v)
        context_visible = (torch.arange(own, device=device) < c).expand(m + 1, own)
        causal = torch.ones(m + 1, m + 1, dtype=torch.bool, device=device).tril()
        visible = [torch.cat([context_visible, own_keys], 1) for own_keys in (causal, torch.ones_like(causal))]
        bias = 0
        if self.cfg.pos_feed == "post":
            gap = emb.new_zeros(emb.shape[0], 1, own - c)
            bias = torch.cat([emb[..., :c], gap, emb[..., c:]], -1)
        masks = tuple((transformer.additive(sees, k.dtype)[None] + bias)[None] for sees in visible)  # 4-d: SDPA's fused CPU kernel
        return PatchState(view, own, masks, emb[:, c:] if self.cfg.pos_feed == "pre" else None, own_tpos,
                          torch.tensor([order], device=device), slot, pool, text, static,
                          gapless=own == c and self.cfg.pos_feed == "pre" and not static)

    def _offset(self, query: Patch, key: Patch) -> int:
        """ADC.emb's table index of ``key``'s offset from ``query``."""
        index, _ = self.rel.offset(*(torch.tensor(d) for d in (query.f - key.f, key.r - query.r, key.c - query.c)))
        return int(index)

    def decode(self, ids: torch.Tensor, index: torch.Tensor, state: PatchState, stream: int = 0,
               record: bool = False, logits: bool = True) -> torch.Tensor | None:
        """Feed positions ``index`` Long[S] (0: start query, i: token i in writing order) of the patch with
        ids Long[B, S] of ``stream`` (0: clean, causal; 1: masked, bidirectional): logits [B, S, V].

        ``record``: these are the patch's final clean positions; their keys/values go into its NCP slot
        (the layer inputs' projections; w/o caches the token embeddings' projections by every layer)."""
        x = torch.where((index == 0)[:, None], self.start(state.order), self.tok(ids) + self.pos(state.tpos[index]))
        if record and not self.cfg.caches:
            state.pool.write(state.slot[index], *self.context_kv(x))
        length = None if state.static else state.own + int(index[-1]) + 1  # the keys a causal step can see
        keys = PatchKeys(state.cache, state.own + index, state.mask(stream, index, length), length,
                         None if state.key_emb is None else state.key_emb[:, index],
                         state.pool if record and self.cfg.caches else None, state.slot[index])
        for layer, block in enumerate(self.blocks):
            x = block(x, layer, keys, state.text)
        return self.head(self.norm(x)) if logits else None


def clean_tokens(pos: Positions) -> torch.Tensor:
    """Indices of the clean-stream token positions (what a patch's cache keeps; no start slot)."""
    return ((pos.stream[0] == 0) & (pos.idx[0] >= 1)).nonzero().flatten()
