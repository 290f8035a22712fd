"""The `metrics:` config section: backbones, metric settings, proxy backbones and statistics."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from nuwa.core.config import build
from nuwa.core.trainer import TrainConfig


@dataclass
class InceptionConfig:
    weights: str = ""  # '' -> $TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth (pytorch-fid)
    mode: Literal["clean", "legacy_pytorch"] = "clean"  # clean-fid's PIL bicubic resize, or pytorch-fid's bilinear
    dims: Literal[64, 192, 768, 2048] = 2048  # pytorch-fid feature block (IS needs 2048)


@dataclass
class ClipConfig:
    model: str = "ViT-B-32-quickgelu"
    weights: str = ""  # '' -> OpenAI weights from open_clip's Hugging Face hub cache (offline)


@dataclass
class I3DConfig:
    weights: str = ""  # StyleGAN-V's i3d_torchscript.pt (or a TorchScript detector with the same call)


@dataclass
class ProxyImageConfig:
    """Attribute classifier: penultimate features for FID/Block-FID, one head's posterior for IS."""
    size: int = 32
    channels: tuple[int, ...] = (16, 32, 64)
    dim: int = 64
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3, batch_size=64, lr=3e-3))

    def __post_init__(self) -> None:
        if self.size < 8 or self.dim < 2 or not self.channels:
            raise ValueError("size >= 8, dim >= 2 and at least one conv stage are required")


@dataclass
class ProxyVideoConfig:
    """Small 3D CNN classifying attributes and temporal order; penultimate features for FVD."""
    size: int = 32
    frames: int = 5
    channels: tuple[int, ...] = (16, 32, 64)
    dim: int = 64
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=6, batch_size=16, lr=3e-3))

    def __post_init__(self) -> None:
        if self.size < 8 or self.frames < 2 or self.dim < 2 or not self.channels:
            raise ValueError("size >= 8, frames >= 2, dim >= 2 and at least one conv stage are required")


@dataclass
class ProxyClipConfig:
    """Tiny open_clip model (registered with open_clip as a custom model config)."""
    embed_dim: int = 64
    image_size: int = 64
    patch_size: int = 8
    vision_width: int = 64
    vision_layers: int = 2
    text_width: int = 64
    text_layers: int = 2
    heads: int = 2
    context_length: int = 32
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=8, batch_size=32, lr=2e-3))

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError("image_size must be a multiple of patch_size")
        if self.vision_width % self.heads or self.text_width % self.heads:
            raise ValueError("vision_width and text_width must be divisible by heads")
        if not 2 <= self.context_length <= 77:
            raise ValueError("context_length must be in [2, 77]")


@dataclass
class ProxiesConfig:
    image: ProxyImageConfig = field(default_factory=ProxyImageConfig)
    clip: ProxyClipConfig = field(default_factory=ProxyClipConfig)
    video: ProxyVideoConfig = field(default_factory=ProxyVideoConfig)


@dataclass
class MetricsConfig:
    backbone: Literal["proxy", "reference"] = "proxy"  # proxy: {workdir}/proxies/{image,clip,video}.pt
    batch_size: int = 32
    block: int = 64  # Block-FID block side in pixels (the training resolution)
    block_pooled: bool = False  # False: mean of per-position FIDs; True: one FID over all blocks
    is_splits: int = 10
    fvd_frames: int = 5  # clip length fed to the video backbone (first frames of each clip)
    fvd_samples: int = 0  # clips per set (0: all)
    bootstrap: int = 100  # bootstrap resamples per IS / CLIP-SIM / speed number
    jackknife_groups: int = 64  # FID-type: each set left out in at most this many groups (one sample each below)
    kid_subsets: int = 50  # KID: torch-fidelity's random subset pairs per number
    kid_subset_size: int = 1000  # KID: subset size (at most the smaller set)
    ci: float = 0.95
    cache: bool = True  # cache features per folder/backbone under {workdir}/features
    inception: InceptionConfig = field(default_factory=InceptionConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    i3d: I3DConfig = field(default_factory=I3DConfig)
    proxies: ProxiesConfig = field(default_factory=ProxiesConfig)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.block < 8 or self.is_splits < 1:
            raise ValueError("batch_size >= 1, block >= 8 and is_splits >= 1 are required")
        if self.fvd_frames < 1 or self.fvd_samples < 0 or self.bootstrap < 0:
            raise ValueError("fvd_frames >= 1, fvd_samples >= 0 and bootstrap >= 0 are required")
        if self.jackknife_groups < 2 or self.kid_subsets < 1 or self.kid_subset_size < 2:
            raise ValueError("jackknife_groups >= 2, kid_subsets >= 1 and kid_subset_size >= 2 are required")
        if not 0.0 < self.ci < 1.0:
            raise ValueError("ci must be in (0, 1)")


def metrics_config(cfg: dict) -> MetricsConfig:
    return build(MetricsConfig, cfg.get("metrics"), "metrics")


def check_config(cfg: dict) -> None:
    """Build every dataclass of the `metrics:` section; a bad value raises UserError."""
    metrics_config(cfg)
