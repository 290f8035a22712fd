"""One transformer core for NUWA-Infinity, Taming and MaskGIT: attention, block, static KV cache, decode steps.

* :class:`Block`: pre-norm self-attention, cross-attention to an encoded caption (when the model has
  text), FFN. Where a block's self-attention takes its keys from is a :class:`Keys` object: the
  new positions alone (:class:`Fresh`: training, MaskGIT, Taming's sliding window), or a
  :class:`KVCache` written in place (:class:`Cached`: decoding), or NUWA-Infinity's training
  memory (nuwa.model.decoder).
* :class:`KVCache`: per-layer keys and values in buffers allocated once per generation,
  ``update(layer, positions, k, v)`` writes the new positions in place (gpt-fast's static cache):
  no per-token ``torch.cat``, and a decode step whose shapes do not change from token to token.
* The named decode steps of LlamaGen: :func:`prefill` (several positions in one forward),
  :func:`decode_one_token`, :func:`decode_n_tokens` (sample, feed, repeat), over a model ``step``
  ``(ids [B, S], positions [S]) -> logits [B, S, V]``. :func:`compiled` wraps a step in
  ``torch.compile`` (CUDA graphs through mode="reduce-overhead" on a GPU).
* :class:`TransformerSize`: the sizes all three models share (codebook, depth, width, heads, text
  encoder); NUWA-Infinity's ``nuwa.model`` section sets them, and the baselines inherit them.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from nuwa.core.text import TextConfig

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TransformerSize:
    """The sizes of a token transformer that NUWA-Infinity and the baselines share (``nuwa.model``)."""

    codebook: int = 512                      # VQGAN codebook size (tokenizer n_embed)
    layers: int = 4
    dim: int = 128
    heads: int = 4
    text: TextConfig | None = field(default_factory=TextConfig)  # null: no text encoder (unconditional)


@dataclass
class TextKV:
    """A caption encoded once: per-layer cross-attention keys/values and the padding mask Bool[B, 1, 1, T]."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]
    mask: torch.Tensor


class KVCache:
    """Keys and values of ``layers`` layers, [L, B, heads, length, head_dim] each, preallocated."""

    def __init__(self, layers: int, batch: int, heads: int, length: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        shape = (layers, batch, heads, length, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)

    @property
    def length(self) -> int:
        return self.k.shape[3]

    def update(self, layer: int, positions: torch.Tensor, k: torch.Tensor, v: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v [B, H, S, dh] at ``positions`` Long[S] of one layer in place; that layer's whole buffers."""
        self.k[layer].index_copy_(2, positions, k)
        self.v[layer].index_copy_(2, positions, v)
        return self.k[layer], self.v[layer]

    def write(self, positions: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Write k, v [L, B, H, S, dh] of every layer at ``positions`` Long[S]."""
        self.k.index_copy_(3, positions, k)
        self.v.index_copy_(3, positions, v)

    def read(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [L, B, H, S, dh] at ``positions`` Long[S]."""
        return self.k.index_select(3, positions), self.v.index_select(3, positions)

    def view(self, length: int) -> KVCache:
        """The first ``length`` positions, sharing storage (the cache itself when that is all of it)."""
        if length == self.length:
            return self
        part = KVCache.__new__(KVCache)
        part.k, part.v = self.k[:, :, :, :length], self.v[:, :, :, :length]
        return part

    def per_position_bytes(self) -> int:
        return 2 * self.k[:, :, :, 0].numel() * self.k.element_size()

    def nbytes(self) -> int:
        return self.per_position_bytes() * self.length

    def static(self) -> KVCache:
        """Mark the buffers as fixed addresses for torch.compile / CUDA graphs (they are mutated in place)."""
        torch._dynamo.mark_static_address(self.k, guard=False)
        torch._dynamo.mark_static_address(self.v, guard=False)
        return self


_STATIC_CACHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def static_cache(owner: nn.Module, key: tuple, make: Callable[[], KVCache]) -> KVCache:
    """The KVCache ``make()`` built once per (``owner``, ``key``) and reused by every later generation of
    the same shapes, its buffers marked static: compiled steps and their CUDA graphs then see the same
    addresses every time (gpt-fast sets its caches up once per model likewise). Stale contents are
    harmless: every step's mask hides what the current generation has not written."""
    per_owner = _STATIC_CACHES.setdefault(owner, {})
    if key not in per_owner:
        per_owner[key] = make().static()
    return per_owner[key]


class Attention(nn.Module):
    """Multi-head attention of queries from ``x`` over keys/values projected from a source of width ``kv_dim``."""

    def __init__(self, dim: int, heads: int, kv_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(kv_dim or dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(x, "b s (h d) -> b h s d", h=self.heads)

    def keys_values(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(source).chunk(2, dim=-1)
        return self.split(k), self.split(v)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(rearrange(out, "b h s d -> b s (h d)"))


class Keys(Protocol):
    def __call__(self, layer: int, block: Block, h: torch.Tensor, q: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(keys, values, mask) that ``block`` (layer ``layer``) attends to with queries ``q``, given its normed
        new positions ``h``."""


@dataclass
class Fresh:
    """Keys of the new positions only; ``mask`` bool or additive, broadcast to [B, H, S, S] (None: all visible)."""

    mask: torch.Tensor | None = None

    def __call__(self, layer: int, block: Block, h: torch.Tensor, q: torch.Tensor):
        k, v = block.attn.keys_values(h)
        return k, v, self.mask


@dataclass
class Cached:
    """Write the new positions' keys/values into ``cache`` at ``positions`` and attend over the cache's
    first ``length`` positions (default: all; decoding passes the last visible one + 1 so that keys the
    mask would hide are not even read) under ``mask`` (additive, [.., S, length]; it hides what is not
    written yet; None: every key up to ``length`` is visible)."""

    cache: KVCache
    positions: torch.Tensor
    mask: torch.Tensor | None
    length: int | None = None

    def project(self, layer: int, block: Block, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values to write for the new positions."""
        return block.attn.keys_values(h)

    def __call__(self, layer: int, block: Block, h: torch.Tensor, q: torch.Tensor):
        keys, values = self.cache.update(layer, self.positions, *self.project(layer, block, h))
        if self.length is not None:
            keys, values = keys[:, :, :self.length], values[:, :, :self.length]
        return keys, values, self.mask


class Block(nn.Module):
    """Pre-norm layer: self-attention (Eq. 9), cross-attention to the caption (Eq. 10, when ``text_dim``), FFN (Eq. 11)."""

    def __init__(self, dim: int, heads: int, text_dim: int | None, mlp_ratio: int = 4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.cross = Attention(dim, heads, text_dim) if text_dim is not None else None
        self.norm2 = nn.LayerNorm(dim) if text_dim is not None else None
        self.norm3 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor, layer: int, keys: Keys, text: TextKV | None) -> torch.Tensor:
        h = self.norm1(x)
        q = self.attn.split(self.attn.q(h))
        k, v, mask = keys(layer, self, h, q)
        x = x + self.attn.attend(q, k, v, mask)
        if self.cross is not None and text is not None:
            ck, cv = text.kv[layer]
            x = x + self.cross.attend(self.cross.split(self.cross.q(self.norm2(x))), ck, cv, text.mask)
        return x + self.ffn(self.norm3(x))


def encode_text(blocks: nn.ModuleList, states: torch.Tensor, valid: torch.Tensor) -> TextKV:
    """Project caption states [B, T, d_text] (valid Bool[B, T]) once into every block's cross-attention keys/values."""
    return TextKV([block.cross.keys_values(states) for block in blocks], rearrange(valid, "b t -> b 1 1 t"))


def additive(visible: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An additive attention mask: 0 where ``visible``, -inf elsewhere."""
    return torch.zeros(visible.shape, dtype=dtype, device=visible.device).masked_fill(~visible, float("-inf"))


# ------------------------------------------------------------------ decode steps (LlamaGen's split)
def prefill(step: Step, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Feed several positions in one forward (a prompt, a known patch, a masked patch): logits [B, S, V]."""
    return step(ids, positions)


def decode_one_token(step: Step, token: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """Feed one token Long[B] at ``position`` Long[1]: the next logits [B, V]."""
    return step(token[:, None], position)[:, -1]


def decode_n_tokens(step: Step, logits: torch.Tensor, positions: torch.Tensor,
                    sample: Callable[[torch.Tensor], torch.Tensor], given: tuple[torch.Tensor, torch.Tensor] | None = None,
                    feed_last: bool = False) -> torch.Tensor:
    """Sample n = len(positions) tokens Long[B, n] one at a time from ``logits`` [B, V] on.

    Token i is sampled, then fed at ``positions[i]`` to get the logits of token i+1; the last one is
    fed too only with ``feed_last`` (to fill its cache row). ``given`` = (Bool[n], Long[B, n]): tokens
    that are sampled (the random stream stays the same) but replaced by the given ones."""
    tokens = torch.empty(logits.shape[0], len(positions), dtype=torch.long, device=logits.device)
    for i in range(len(positions)):
        token = sample(logits)
        if given is not None and bool(given[0][i]):
            token = given[1][:, i]
        tokens[:, i] = token
        if i + 1 < len(positions) or feed_last:
            logits = decode_one_token(step, token, positions[i:i + 1])
    return tokens


def compiled(step: Step, device: torch.device, mode: str | None = None) -> Step:
    """``step`` under torch.compile with static shapes; CUDA graphs (mode="reduce-overhead") by default on a GPU."""
    if mode is None:
        mode = "reduce-overhead" if device.type == "cuda" else "default"
    return torch.compile(step, mode=mode, dynamic=False)
