"""Tokenizer configuration: the ``tokenizer:`` section, ``{vqgan: {...}, pg_vqgan: {...}}``.

``ddconfig`` mirrors taming-transformers' field for field, so a taming ``model.yaml`` maps onto it
unchanged. Defaults are the embedded scale (64x64 images, f=8 -> 8x8 tokens, CPU minutes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from nuwa.core.config import build, section
from nuwa.core.errors import UserError


@dataclass
class DDConfig:
    ch: int = 32
    ch_mult: tuple[int, ...] = (1, 1, 2, 2)  # f = 2^(len - 1) = 8
    num_res_blocks: int = 1
    attn_resolutions: tuple[int, ...] = ()
    z_channels: int = 32
    resolution: int = 64
    in_channels: int = 3
    out_ch: int = 3
    dropout: float = 0.0
    double_z: bool = False
    norm_groups: int = 32  # GroupNorm groups (taming: 32); the embedded ch=32 needs fewer, 32 would normalise every channel alone

    def __post_init__(self) -> None:
        chans = [self.ch * m for m in self.ch_mult]
        if not self.ch_mult or min(self.ch_mult) < 1 or self.num_res_blocks < 1:
            raise ValueError("ch_mult needs at least one positive entry and num_res_blocks must be >= 1")
        if self.norm_groups < 1 or any(c % self.norm_groups for c in chans):
            raise ValueError(f"every level's channels ch*ch_mult ({chans}) must be a multiple of norm_groups ({self.norm_groups})")
        if self.z_channels < 1 or not 0.0 <= self.dropout < 1.0:
            raise ValueError("z_channels must be >= 1 and dropout in [0, 1)")


@dataclass
class VQGANArch:
    """What taming calls ``model.params``: ddconfig + codebook size and code dimension."""
    ddconfig: DDConfig = field(default_factory=DDConfig)
    n_embed: int = 256
    embed_dim: int = 32
    beta: float = 0.25  # commitment weight

    def __post_init__(self) -> None:
        if self.n_embed < 2 or self.embed_dim < 1 or self.beta < 0:
            raise ValueError("n_embed must be >= 2, embed_dim >= 1, beta >= 0")


@dataclass
class LossConfig:
    rec: Literal["l1", "l2"] = "l1"
    rec_weight: float = 1.0
    codebook_weight: float = 1.0
    perceptual_weight: float = 0.0
    perceptual_weights: str | None = None  # torchvision vgg16 state dict (.pth); needed when perceptual_weight > 0
    disc_start: int = 200  # generator step at which the adversarial loss switches on
    disc_weight: float = 0.1  # multiplies the adaptive (gradient-balanced) adversarial weight; 0: no GAN
    disc_layers: int = 2
    disc_ch: int = 32
    restart_every: int = 50  # replace codes unused for this many steps with batch encodings; 0: off

    def __post_init__(self) -> None:
        if min(self.rec_weight, self.codebook_weight, self.perceptual_weight, self.disc_weight) < 0:
            raise ValueError("loss weights must be >= 0")
        if self.perceptual_weight > 0 and not self.perceptual_weights:
            raise ValueError("perceptual_weight > 0 needs perceptual_weights: path to a vgg16 state dict")
        if self.disc_start < 0 or self.disc_layers < 1 or self.disc_ch < 1 or self.restart_every < 0:
            raise ValueError("disc_start and restart_every must be >= 0, disc_layers and disc_ch >= 1")


@dataclass
class OptimConfig:
    steps: int = 300
    batch_size: int = 8
    lr: float = 2e-3
    disc_lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.9
    warmup_steps: int = 50
    checkpoint_every: int = 200

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0 or self.disc_lr <= 0:
            raise ValueError("steps and batch_size must be >= 1 and learning rates > 0")
        if self.warmup_steps < 0 or self.checkpoint_every < 1:
            raise ValueError("warmup_steps must be >= 0 and checkpoint_every >= 1")


@dataclass
class VQGANConfig:
    model: VQGANArch = field(default_factory=VQGANArch)
    loss: LossConfig = field(default_factory=LossConfig)
    train: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class PGVQGANConfig:
    """PG-VQGAN: a pixel encoder over frame n-1 trained on top of the frozen VQGAN (same architecture)."""
    loss: LossConfig = field(default_factory=lambda: LossConfig(disc_start=0, disc_weight=0.0, restart_every=0))
    train: OptimConfig = field(default_factory=lambda: OptimConfig(steps=100, lr=1e-3, warmup_steps=10))


def vqgan_config(cfg: dict) -> VQGANConfig:
    return build(VQGANConfig, section(cfg, "tokenizer.vqgan"), "tokenizer.vqgan")


def pg_vqgan_config(cfg: dict) -> PGVQGANConfig:
    return build(PGVQGANConfig, section(cfg, "tokenizer.pg_vqgan"), "tokenizer.pg_vqgan")


def check_config(cfg: dict) -> None:
    """Build every dataclass of the ``tokenizer`` section; a bad value is a one-line UserError."""
    unknown = sorted(set(section(cfg, "tokenizer")) - {"vqgan", "pg_vqgan"})
    if unknown:
        raise UserError(f"unknown config key tokenizer.{unknown[0]} (known: pg_vqgan, vqgan)")
    vqgan_config(cfg)
    pg_vqgan_config(cfg)
