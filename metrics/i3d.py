"""The I3D video detector for FVD: StyleGAN-V's TorchScript export of the TF-Hub Kinetics-400 I3D.

Loaded from a local file (``metrics.i3d.weights``); any TorchScript detector with the same call
(videos [B, 3, T, H, W] in [0, 255], rescale/resize/return_features keywords) works, e.g. a
content-debiased export. Features are the 400-d pre-softmax logits, as in StyleGAN-V's FVD.
"""
from __future__ import annotations

from pathlib import Path

import torch
from einops import rearrange

from metrics.backbone import Backbone, file_sha256
from metrics.config import I3DConfig
from nuwa.core.errors import UserError

URL = "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt"
KWARGS = dict(rescale=True, resize=True, return_features=True)  # StyleGAN-V's detector_kwargs for FVD


class I3DBackbone(Backbone):
    def __init__(self, detector: torch.jit.ScriptModule, sha256: str, frames: int):
        self.detector, self.frames = detector.eval(), frames
        self.name, self.sha256 = "i3d-stylegan-v-torchscript", sha256

    @classmethod
    def load(cls, cfg: I3DConfig, frames: int) -> "I3DBackbone":
        if not cfg.weights or not Path(cfg.weights).is_file():
            raise UserError(f"I3D detector {cfg.weights or '(unset)'} not found: download StyleGAN-V's i3d_torchscript.pt "
                            f"({URL}) and set metrics.i3d.weights to its path")
        try:
            detector = torch.jit.load(cfg.weights, map_location="cpu")
        except RuntimeError as exc:
            raise UserError(f"{cfg.weights} is not a TorchScript I3D detector ({str(exc).splitlines()[0]}); replace it") from exc
        return cls(detector, file_sha256(cfg.weights), frames)

    def prepare(self, sample: torch.Tensor) -> torch.Tensor:
        return rearrange(sample[: self.frames].float(), "t c h w -> c t h w")

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        return self.detector(batch, **KWARGS)
