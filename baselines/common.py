"""What Taming and MaskGIT share: one text-conditioned token transformer and one family skeleton.

:class:`TokenTransformer` is a pre-norm transformer over a window of VQGAN tokens with a learned
absolute position table of the training window: nuwa.core.transformer's blocks (self-attention, causal for
Taming and bidirectional for MaskGIT -- the only difference, the ``causal`` flag -- cross-attention
to :class:`nuwa.core.text.TextEncoder` states, FFN), the same blocks as NUWA-Infinity's. ``forward``
computes a window at once; ``step`` is Taming's decode step over a static
:class:`nuwa.core.transformer.KVCache` (prefill a prefix, then one token at a time). A caption is encoded once
into a :class:`nuwa.core.transformer.TextKV`.

:class:`TransformerFamily` implements everything of the :class:`nuwa.core.family.Family` protocol that
does not depend on the method: building from config, checkpoint config, the trainer recipe and
classifier-free guidance. Subclasses supply ``loss`` and ``generate``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass

import torch
from einops import rearrange
from torch import nn

from baselines.config import TransformerConfig, resolve_model, sampling_config, train_config
from nuwa.core import transformer
from nuwa.core.config import build
from nuwa.core.errors import UserError
from nuwa.core.family import GenerationRequest
from nuwa.core.sampling import SamplingConfig, guide
from nuwa.core.text import TextEncoder, drop_text, guidance_captions
from nuwa.core.trainer import Stepper, TrainConfig
from nuwa.core.transformer import Block, Cached, Fresh, KVCache, TextKV

# checkpoints written before the blocks were shared with NUWA-Infinity named the norms differently
LEGACY_NAMES = {".norm_self.": ".norm1.", ".norm_cross.": ".norm2.", ".norm_ffn.": ".norm3."}


def rename_legacy_keys(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    for key in [k for k in state_dict if k.startswith(prefix) and any(old in k for old in LEGACY_NAMES)]:
        new = key
        for old, now in LEGACY_NAMES.items():
            new = new.replace(old, now)
        state_dict[new] = state_dict.pop(key)


class TokenTransformer(nn.Module):
    """Logits over the codebook for every input position of a token window."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.text = TextEncoder(cfg.text) if cfg.text is not None else None
        self.tok = nn.Embedding(cfg.n_embed + 1, cfg.dim)
        self.pos = nn.Parameter(torch.zeros(cfg.length, cfg.dim))
        nn.init.normal_(self.pos, std=0.02)
        text_dim = cfg.text.dim if cfg.text is not None else None
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, text_dim) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.n_embed)
        for module in [self.tok, self.blocks, self.head]:
            module.apply(self._init_weights)
        visible = torch.ones(cfg.length, cfg.length, dtype=torch.bool).tril()  # query slot i sees keys 0..i
        self.register_buffer("causal", transformer.additive(visible), persistent=False)
        self.register_load_state_dict_pre_hook(rename_legacy_keys)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """minGPT's initialisation (as in taming-transformers): N(0, 0.02) weights, zero biases."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def _run(self, tokens: torch.Tensor, positions: torch.Tensor, keys: transformer.Keys,
             text: torch.Tensor | TextKV | None) -> torch.Tensor:
        x = self.tok(tokens) + self.pos[positions]
        context = self.encode_text(text) if isinstance(text, torch.Tensor) else text
        for layer, block in enumerate(self.blocks):
            x = block(x, layer, keys, context)
        return self.head(self.norm(x))

    def forward(self, tokens: torch.Tensor, text: torch.Tensor | TextKV | None, positions: torch.Tensor | None = None
                ) -> torch.Tensor:
        """``tokens`` Long[B, L] (ids < n_embed or the special id) at window ``positions`` (default 0..L-1)
        -> logits [B, L, n_embed]. ``text``: Long[B, T] BPE ids or their encoding (None: no text encoder)."""
        length = tokens.shape[1]
        if positions is None:
            positions = torch.arange(length, device=tokens.device)
        mask = self.causal[:length, :length] if self.cfg.causal else None
        return self._run(tokens, positions, Fresh(mask), text)

    def new_cache(self, rows: int) -> KVCache:
        """A static KV cache of the training window for ``rows`` sequences (Taming's decoding)."""
        p = self.head.weight
        return KVCache(self.cfg.layers, rows, self.cfg.heads, self.cfg.length, self.cfg.dim // self.cfg.heads, p.dtype, p.device)

    def step(self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache, text: TextKV | None,
             length: int | None = None) -> torch.Tensor:
        """Decode step: feed ``tokens`` Long[B, S] at cache slots ``positions`` Long[S] (slot i: window position
        i, causal), writing their keys/values into ``cache`` in place -> logits [B, S, n_embed]. ``length``:
        attend over the first ``length`` slots only (> the last position; None: all, fixed shapes)."""
        return self._run(tokens, positions, Cached(cache, positions, self.causal[positions, :length], length), text)

    def encode_text(self, text: torch.Tensor | None) -> TextKV | None:
        if self.text is None or text is None:
            return None
        states, valid = self.text(text[:, : self.cfg.text.context_length])
        return transformer.encode_text(self.blocks, states, valid)


class Conditioning:
    """A batch's captions encoded once, doubled with empty captions when classifier-free guidance is on."""

    def __init__(self, module: TokenTransformer, text: torch.Tensor | None, batch: int, scale: float):
        self.batch, self.scale = batch, scale
        self.guided = module.text is not None and text is not None and scale != 1.0
        self.context = None
        if module.text is None:  # a model without text encoder (fresh benchmark models): unconditional
            return
        captions = guidance_captions(text, batch, self.guided, module.cfg.text.context_length)
        with torch.no_grad():
            self.context = module.encode_text(captions.to(next(module.parameters()).device))

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


def check_window_fit(h: int, w: int, window: tuple[int, int], method: str) -> None:
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
    """One optimizer step per batch on the family's loss (nuwa.core.trainer.Trainable)."""

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


def drop_captions(text: torch.Tensor, spec: TransformerConfig, training: bool) -> torch.Tensor | None:
    if spec.text is None:
        return None
    return drop_text(text, spec.text.dropout_prob) if training else text
