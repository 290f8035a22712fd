"""pytorch-fid's FID Inception (the TF-FID weights) as a backbone: pool features for FID, 1008 logits for IS.

Weights come from an explicit path or the torch hub cache where pytorch-fid itself looks
($TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth); nothing is downloaded.
Resizing is clean-fid's "clean" mode (PIL bicubic, float) by default; "legacy_pytorch" feeds the
network exactly as `python -m pytorch_fid` does (bilinear interpolation inside torch).
"""
from __future__ import annotations

from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

from metrics.backbone import Backbone, clean_resize, file_sha256
from metrics.config import InceptionConfig
from nuwa.core.errors import UserError
from nuwa.core.io import require_named_hash, torch_load

WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
INPUT = (299, 299)


def default_weights() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_NAME


def build_network(state: dict, dims: int):
    """pytorch-fid's InceptionV3 (FID variant, no input resizing) holding ``state``."""
    from pytorch_fid import inception

    with mock.patch.object(inception, "load_state_dict_from_url", lambda *a, **k: state):
        net = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[dims]], resize_input=False)
    return net.eval()


class InceptionBackbone(Backbone):
    def __init__(self, state: dict, sha256: str, mode: str, dims: int):
        self.net = build_network(state, dims)
        self.fc = state["fc.weight"].double()  # [1008, 2048]; IS uses the logits without the bias
        self.mode, self.dims = mode, dims
        self.name = f"inception-fid-{dims}-{mode}"
        self.sha256 = sha256

    @classmethod
    def load(cls, cfg: InceptionConfig) -> "InceptionBackbone":
        path = Path(cfg.weights) if cfg.weights else default_weights()
        if not path.is_file():
            raise UserError(f"FID Inception weights {path} not found: download pytorch-fid's {WEIGHTS_NAME} "
                            f"(github.com/mseitzer/pytorch-fid releases) to that path or set metrics.inception.weights")
        state = torch_load(require_named_hash(path, "FID Inception weights"), "FID Inception weights")
        if not isinstance(state, dict) or "fc.weight" not in state:
            raise UserError(f"{path} is not pytorch-fid's FID Inception state dict ({WEIGHTS_NAME}); replace it")
        return cls(state, file_sha256(path), cfg.mode, cfg.dims)

    def prepare(self, sample: torch.Tensor) -> torch.Tensor:
        if self.mode == "clean":
            return clean_resize(sample, INPUT) / 255.0
        x = sample.float()[None] / 255.0  # as torchvision's ToTensor in pytorch-fid
        return F.interpolate(x, size=INPUT, mode="bilinear", align_corners=False)[0]

    def _pool(self, batch: torch.Tensor) -> torch.Tensor:
        out = self.net(batch)[0]
        if out.shape[-2:] != (1, 1):  # blocks below 2048 are average-pooled, as pytorch-fid does
            out = F.adaptive_avg_pool2d(out, (1, 1))
        return out.flatten(1)

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        return self._pool(batch)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        if self.dims != 2048:
            raise UserError("IS needs the 2048-d pool features: set metrics.inception.dims=2048")
        return self._pool(batch).double() @ self.fc.T
