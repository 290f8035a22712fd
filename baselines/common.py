"""What Taming and MaskGIT share: one text-conditioned token transformer and one family skeleton.

:class:`TokenTransformer` is a pre-norm transformer over a window of VQGAN tokens with a learned
absolute position table of the training window, self-attention (causal for Taming, bidirectional
for MaskGIT — the only difference, the ``causal`` flag), cross-attention to :class:`nuwa.text.TextEncoder`
states and an FFN. Self-attention keys/values can be kept in an explicit :class:`KVCache` (prefill a
prefix, then decode one token at a time); a caption is encoded once into a :class:`TextContext`.

:class:`TransformerFamily` implements everything of the :class:`nuwa.family.Family` protocol that
does not depend on the method: building from config, checkpoint config, the trainer recipe and
classifier-free guidance. Subclasses supply ``loss`` and ``generate``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from baselines.config import TransformerConfig, resolve_model, sampling_config, train_config
from nuwa.config import build
from nuwa.errors import UserError
from nuwa.family import GenerationRequest
from nuwa.sampling import SamplingConfig, guide
from nuwa.text import TextEncoder, drop_text, tokenize
from nuwa.trainer import Stepper, TrainConfig


class KVCache:
    """Per-layer self-attention keys/values of the tokens fed so far."""

    def __init__(self, layers: int):
        self.self_kv: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * layers
        self.length = 0


@dataclass
class TextContext:
    """A caption encoded once: per-layer cross-attention keys/values and the padding mask."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]
    mask: torch.Tensor  # Bool[B, 1, 1, T]


class Attention(nn.Module):
    """Multi-head attention of ``x`` over keys/values projected from a source of width ``kv_dim``."""

    def __init__(self, dim: int, heads: int, kv_dim: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(kv_dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def keys_values(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = rearrange(self.kv(source), "b l (two h d) -> two b h l d", two=2, h=self.heads)
        return k, v

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q = rearrange(self.q(x), "b l (h d) -> b h l d", h=self.heads)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(rearrange(out, "b h l d -> b l (h d)"))


class Block(nn.Module):
    """Self-attention over the token window, cross-attention to the caption, FFN (all pre-norm)."""

    def __init__(self, dim: int, heads: int, text_dim: int):
        super().__init__()
        self.norm_self, self.attn = nn.LayerNorm(dim), Attention(dim, heads, dim)
        self.norm_cross, self.cross = nn.LayerNorm(dim), Attention(dim, heads, text_dim)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, self_mask: torch.Tensor | None, self_kv: tuple | None,
                text_kv: tuple[torch.Tensor, torch.Tensor], text_mask: torch.Tensor
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h = self.norm_self(x)
        k, v = self.attn.keys_values(h)
        if self_kv is not None:
            k, v = torch.cat([self_kv[0], k], 2), torch.cat([self_kv[1], v], 2)
        x = x + self.attn(h, k, v, self_mask)
        x = x + self.cross(self.norm_cross(x), *text_kv, text_mask)
        return x + self.ffn(self.norm_ffn(x)), (k, v)


class TokenTransformer(nn.Module):
    """Logits over the codebook for every input position of a token window."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.text = TextEncoder(cfg.text)
        self.tok = nn.Embedding(cfg.n_embed + 1, cfg.dim)
        self.pos = nn.Parameter(torch.zeros(cfg.length, cfg.dim))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, cfg.text.dim) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.n_embed)
        for module in [self.tok, self.blocks, self.head]:
            module.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """minGPT's initialisation (as in taming-transformers): N(0, 0.02) weights, zero biases."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor, text: torch.Tensor | TextContext, positions: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        """``tokens`` Long[B, L] (ids < n_embed or the special id) at window ``positions`` (default: the
        next L after the cache) -> logits [B, L, n_embed]. ``text``: Long[B, T] BPE ids or their encoding."""
        offset = cache.length if cache is not None else 0
        if positions is None:
            positions = torch.arange(offset, offset + tokens.shape[1], device=tokens.device)
        x = self.tok(tokens) + self.pos[positions]
        context = text if isinstance(text, TextContext) else self.encode_text(text)
        self_mask = self._causal_mask(tokens.shape[1], offset, tokens.device) if self.cfg.causal else None
        for i, block in enumerate(self.blocks):
            past = cache.self_kv[i] if cache is not None else None
            x, kv = block(x, self_mask, past, context.kv[i], context.mask)
            if cache is not None:
                cache.self_kv[i] = kv
        if cache is not None:
            cache.length += tokens.shape[1]
        return self.head(self.norm(x))

    def encode_text(self, text: torch.Tensor) -> TextContext:
        states, valid = self.text(text[:, : self.cfg.text.context_length])
        return TextContext([block.cross.keys_values(states) for block in self.blocks],
                           rearrange(valid, "b t -> b 1 1 t"))

    @staticmethod
    def _causal_mask(length: int, offset: int, device: torch.device) -> torch.Tensor:
        """Query i (at offset + i) sees keys 0 .. offset + i."""
        q = torch.arange(length, device=device)[:, None] + offset
        return torch.arange(offset + length, device=device)[None, :] <= q


class Conditioning:
    """A batch's captions encoded once, doubled with empty captions when classifier-free guidance is on."""

    def __init__(self, module: TokenTransformer, text: torch.Tensor | None, batch: int, scale: float):
        device = next(module.parameters()).device
        length = module.cfg.text.context_length if text is None else text.shape[1]
        empty = tokenize([""], length).to(device).expand(batch, -1)
        self.batch, self.scale = batch, scale
        self.guided = text is not None and scale != 1.0
        text = empty if text is None else text.to(device)
        if text.shape[0] != batch:
            raise UserError(f"got {text.shape[0]} captions for a batch of {batch}; pass one caption per sample")
        with torch.no_grad():
            self.context = module.encode_text(torch.cat([text, empty]) if self.guided else text)

    def expand(self, tokens: torch.Tensor) -> torch.Tensor:
        """Repeat model inputs for the unconditional half."""
        return torch.cat([tokens, tokens]) if self.guided else tokens

    def combine(self, logits: torch.Tensor) -> torch.Tensor:
        """Guided logits for the batch from the (possibly doubled) model output."""
        if not self.guided:
            return logits
        return guide(logits[: self.batch], logits[self.batch:], self.scale)


def single_frame(request: GenerationRequest, method: str) -> tuple[int, int]:
    """(h, w) of an image request; videos are refused (the baselines are image models)."""
    frames, h, w = request.grid
    if frames != 1:
        raise UserError(f"{method} generates images only, got a {frames}-frame grid; use --model nuwa for videos")
    return h, w


def check_canvas(h: int, w: int, window: tuple[int, int], method: str) -> None:
    if h < window[0] or w < window[1]:
        raise UserError(f"{method} needs a canvas of at least its training window {window[0]}x{window[1]} tokens, "
                        f"got {h}x{w}; ask for a larger --width/--height")


def start_canvas(request: GenerationRequest, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens Long[B, h, w] with the given tokens filled in, known Bool[h, w])."""
    canvas = torch.zeros(request.batch, h, w, dtype=torch.long, device=device)
    if request.known_mask is None:
        return canvas, torch.zeros(h, w, dtype=torch.bool, device=device)
    if request.known is None or tuple(request.known_mask.shape) != (1, h, w):
        raise UserError(f"known tokens/mask must cover the {h}x{w} canvas; pass both with shape [*, 1, {h}, {w}]")
    known = request.known_mask[0].to(device)
    canvas[:, known] = request.known[:, 0].to(device)[:, known]
    return canvas, known


@dataclass
class LossTrainable:
    """One optimizer step per batch on the family's loss (nuwa.trainer.Trainable)."""

    module: TokenTransformer
    family: "TransformerFamily"

    def steps_per_batch(self) -> int:
        return 1

    def training_step(self, net: nn.Module, batch: dict, step: Stepper) -> float:
        with step.autocast():
            loss = self.family.loss(net, self.module.cfg, batch, training=True)
        step(loss)
        return loss.item()

    def validation_loss(self, net: nn.Module, batch: dict) -> float:
        return self.family.loss(net, self.module.cfg, batch, training=False).item()


class TransformerFamily(ABC):
    """The config/checkpoint/training half of a baseline family; ``name`` is its config section."""

    name: str
    causal: bool

    @property
    def kind(self) -> str:
        return self.name

    def model_spec(self, cfg: dict) -> TransformerConfig:
        return resolve_model(cfg, self.name, self.causal)

    def build(self, cfg: dict) -> TokenTransformer:
        return TokenTransformer(self.model_spec(cfg))

    def model_config(self, module: nn.Module) -> dict:
        return asdict(module.cfg)

    def from_config(self, model_config: dict) -> TokenTransformer:
        return TokenTransformer(build(TransformerConfig, model_config, f"{self.name} checkpoint config"))

    def train_config(self, cfg: dict) -> TrainConfig:
        return train_config(cfg, self.name)

    def sampling_config(self, cfg: dict) -> SamplingConfig:
        return sampling_config(cfg, self.name)

    def trainable(self, module: nn.Module, cfg: dict) -> LossTrainable:
        return LossTrainable(module, self)

    @abstractmethod
    def loss(self, net: nn.Module, spec: TransformerConfig, batch: dict, training: bool) -> torch.Tensor:
        """Mean training loss of one batch (text dropout only when ``training``)."""

    @abstractmethod
    def generate(self, module: nn.Module, request: GenerationRequest) -> torch.Tensor:
        """Long[B, 1, h, w]; given tokens are kept."""

    def window_tokens(self, spec: TransformerConfig, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens Long[B, h*w] in raster order, caption ids) of a training batch; text dropped when training."""
        tokens = batch["tokens"]
        if tokens.dim() != 4 or tokens.shape[1] != 1 or tuple(tokens.shape[2:]) != spec.window:
            raise UserError(f"{self.name} trains on single images of {spec.window[0]}x{spec.window[1]} tokens, got "
                            f"grids {tuple(tokens.shape[1:])}; set baselines.{self.name}.model.window to the data's token grid")
        if int(tokens.max()) >= spec.n_embed:
            raise UserError(f"token id {int(tokens.max())} is outside the {spec.n_embed}-code codebook of the {self.name} model; "
                            f"set tokenizer.vqgan.model.n_embed (or baselines.{self.name}.model.n_embed) to the tokenizer's size")
        return rearrange(tokens, "b 1 h w -> b (h w)"), batch["text"]


def drop_captions(text: torch.Tensor, spec: TransformerConfig, training: bool) -> torch.Tensor:
    return drop_text(text, spec.text.dropout_prob) if training else text
