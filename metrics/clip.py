"""open_clip models as a backbone for CLIP-SIM: the reference ViT-B-32-quickgelu (OpenAI weights) or a tiny proxy.

Reference weights come from ``metrics.clip.weights`` or open_clip's Hugging Face hub cache; nothing
is downloaded. Wide (or tall) images are scored as the mean over square crops of side min(H, W),
evenly spaced so they cover the whole image (one crop for a square image).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from metrics.backbone import Backbone, clean_resize, file_sha256
from metrics.config import ClipConfig
from nuwa.core.errors import UserError
from nuwa.core.text import tokenize

WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class OpenClipBackbone(Backbone):
    def __init__(self, model: torch.nn.Module, name: str, sha256: str, context_length: int):
        from open_clip.model import get_model_preprocess_cfg

        self.model = model.eval()
        pre = get_model_preprocess_cfg(model)
        size = pre["size"]
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.mean = torch.tensor(pre["mean"]).view(3, 1, 1)
        self.std = torch.tensor(pre["std"]).view(3, 1, 1)
        self.name, self.sha256, self.context_length = name, sha256, context_length

    def prepare(self, sample: torch.Tensor) -> torch.Tensor:
        return (clean_resize(sample, self.size) / 255.0 - self.mean) / self.std

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(batch, normalize=True)

    @torch.inference_mode()
    def embed_texts(self, captions: list[str]) -> torch.Tensor:
        return self.model.encode_text(tokenize(captions, self.context_length), normalize=True)


def square_crops(image: torch.Tensor) -> list[torch.Tensor]:
    """Square crops of side min(H, W), evenly spaced along the long side, covering all of it."""
    h, w = image.shape[-2:]
    side, length = min(h, w), max(h, w)
    n = math.ceil(length / side)
    starts = [round(i * (length - side) / max(1, n - 1)) for i in range(n)]
    if w >= h:
        return [image[..., :, s:s + side] for s in starts]
    return [image[..., s:s + side, :] for s in starts]


def find_reference_weights(cfg: ClipConfig) -> Path:
    if cfg.weights:
        path = Path(cfg.weights)
        if not path.is_file():
            raise UserError(f"CLIP weights {path} not found (metrics.clip.weights); point it at open_clip's {cfg.model} OpenAI weights file")
        return path
    from huggingface_hub import try_to_load_from_cache
    from open_clip.pretrained import get_pretrained_cfg

    repo = get_pretrained_cfg(cfg.model, "openai").get("hf_hub", "").rstrip("/")
    for name in WEIGHT_FILES:
        hit = try_to_load_from_cache(repo, name) if repo else None
        if isinstance(hit, str):
            return Path(hit)
    raise UserError(f"open_clip {cfg.model} OpenAI weights not in the Hugging Face hub cache (repo {repo or '?'}, "
                    f"{' or '.join(WEIGHT_FILES)}): download them once with open_clip or set metrics.clip.weights to a local file")


def reference_clip(cfg: ClipConfig) -> OpenClipBackbone:
    import open_clip

    path = find_reference_weights(cfg)
    try:
        model = open_clip.create_model(cfg.model, pretrained=str(path))
    except RuntimeError as exc:
        raise UserError(f"CLIP weights {path} do not fit open_clip's {cfg.model} ({str(exc).splitlines()[0]}); use its OpenAI weights") from exc
    return OpenClipBackbone(model, f"open_clip-{cfg.model}-openai", file_sha256(path), model.context_length)
