"""The ``nuwa:`` config section: NUWA-Infinity's model, training recipe and sampling settings.

Defaults are the embedded scale (64x64 images, VQGAN f=8 -> 8x8 tokens, 4x4-token patches,
~1M-parameter decoder). The paper's sizes are in config/paper.yaml.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from nuwa.config import build, section
from nuwa.errors import UserError
from nuwa.sampling import SamplingConfig
from nuwa.text import TextConfig
from nuwa.trainer import TrainConfig


@dataclass
class ModelConfig:
    codebook: int = 512                      # VQGAN codebook size (tokenizer n_embed)
    layers: int = 4
    dim: int = 128
    heads: int = 4
    patch: int = 4                           # m: a patch is m x m tokens (M = m^2)
    extent: tuple[int, int, int] = (2, 2, 0)  # NCP context extent (e_w, e_h, e_f)
    pos_feed: Literal["pre", "post"] = "pre"  # ADC.emb added to keys (Eq. 9) or as a logit bias (Table 5)
    caches: bool = True                      # False: context = neighbours' token embeddings only (Table 6)
    local: Literal["ar", "nar", "pnar"] = "ar"  # local decoder (Table 7a)
    mlp_ratio: int = 4
    text: TextConfig | None = field(default_factory=TextConfig)  # null: no text encoder (unconditional)

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


def token_grid(cfg: dict, world: str) -> tuple[int, int]:
    """(h, w) tokens of one training image of ``world``: its size over the VQGAN factor (one line if not whole)."""
    from nuwa.data.config import world_config
    from nuwa.tokenizer.config import vqgan_config

    wc = world_config(cfg, world)
    width = getattr(wc, "crop", None) or wc.width
    factor = 2 ** (len(vqgan_config(cfg).model.ddconfig.ch_mult) - 1)
    if wc.height % factor or width % factor:
        raise UserError(f"data.{world} images are {width}x{wc.height} pixels, not a multiple of the VQGAN factor "
                        f"{factor} (tokenizer.vqgan.model.ddconfig.ch_mult); use sizes divisible by {factor}")
    return wc.height // factor, width // factor


def check_patch_grid(cfg: dict, world: str) -> None:
    """nuwa.model.patch must tile the token grid of ``world``'s images exactly (NUWA-Infinity runs)."""
    patch = settings(cfg).model.patch
    h, w = token_grid(cfg, world)
    if h % patch or w % patch:
        fits = [m for m in range(1, min(h, w) + 1) if h % m == 0 and w % m == 0]
        raise UserError(f"nuwa.model.patch={patch} does not divide the {h}x{w} token grid of data.{world} "
                        f"(image size / VQGAN factor); set nuwa.model.patch to one of {fits}")


def check_config(cfg: dict) -> None:
    model = settings(cfg).model
    n_embed = section(cfg, "tokenizer.vqgan.model").get("n_embed")
    if n_embed is not None and n_embed != model.codebook:
        raise UserError(f"nuwa.model.codebook is {model.codebook} but the tokenizer has {n_embed} codes; "
                        f"set nuwa.model.codebook={n_embed}")
