"""The ``nuwa:`` config section: NUWA-Infinity's model, training recipe and sampling settings.

Defaults are the embedded scale (64x64 images, VQGAN f=8 -> 8x8 tokens, 4x4-token patches,
~1M-parameter decoder). The paper's sizes are in config/paper.yaml.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from nuwa.core.config import build, section
from nuwa.core.errors import UserError
from nuwa.core.sampling import SamplingConfig
from nuwa.core.trainer import TrainConfig
from nuwa.core.transformer import TransformerSize


@dataclass
class ModelConfig(TransformerSize):
    """``nuwa.model``: the shared transformer sizes (codebook, layers, dim, heads, text) and NUWA-Infinity's own."""

    patch: int = 4                           # m: a patch is m x m tokens (M = m^2)
    extent: tuple[int, int, int] = (2, 2, 0)  # NCP context extent (e_w, e_h, e_f)
    pos_feed: Literal["pre", "post"] = "pre"  # ADC.emb added to keys (Eq. 9) or as a logit bias (Table 5)
    caches: bool = True                      # False: context = neighbours' token embeddings only (Table 6)
    local: Literal["ar", "nar", "pnar"] = "ar"  # local decoder (Table 7a)
    mlp_ratio: int = 4

    def __post_init__(self) -> None:
        if min(self.codebook, self.layers, self.dim, self.heads, self.patch, self.mlp_ratio) < 1:
            raise ValueError("codebook, layers, dim, heads, patch and mlp_ratio must be >= 1")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be divisible by heads {self.heads}")
        if min(self.extent) < 0:
            raise ValueError(f"extent {self.extent} must be >= 0 in every axis")

    @property
    def tokens_per_patch(self) -> int:
        return self.patch * self.patch

    def patches(self, grid: tuple[int, int, int]) -> int:
        """Patches of a (frames, h, w) token grid (the patch loss makes one optimizer step per patch)."""
        frames, h, w = grid
        return frames * (h // self.patch) * (w // self.patch)


@dataclass
class TrainSettings(TrainConfig):
    loss: Literal["patch", "accumulated"] = "patch"  # step after every patch, or once per image (Table 7c)


@dataclass
class NuwaSettings:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainSettings = field(default_factory=TrainSettings)
    sample: SamplingConfig = field(default_factory=SamplingConfig)


def settings(cfg: dict) -> NuwaSettings:
    """Build the ``nuwa:`` section of the full config (one-line UserError on a bad value)."""
    return build(NuwaSettings, section(cfg, "nuwa"), "nuwa")


def check_config(cfg: dict) -> None:
    model = settings(cfg).model
    n_embed = section(cfg, "tokenizer.vqgan.model").get("n_embed")
    if n_embed is not None and n_embed != model.codebook:
        raise UserError(f"nuwa.model.codebook is {model.codebook} but the tokenizer has {n_embed} codes; "
                        f"set nuwa.model.codebook={n_embed}")
