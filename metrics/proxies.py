"""Proxy backbones for the embedded default, where no pretrained weights exist, and their training.

- image: an attribute classifier (one head per key of the ``attrs`` dict in captions.jsonl); its
  penultimate features serve FID/Block-FID, the posterior of its ``is_head`` (the attribute with
  the most classes) serves IS.
- clip: a tiny open_clip model (a custom model config registered with open_clip), trained with
  open_clip's own ClipLoss on caption pairs; serves CLIP-SIM.
- video: the same classifier with 3D convolutions on clips, with an extra ``order`` head (frames in
  order or shuffled) so its features see motion; penultimate features serve FVD.
Each is trained with nuwa.core.trainer.fit and checkpointed as proxy_image / proxy_clip / proxy_video.
"""
from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from metrics.backbone import Backbone, Kind, clean_resize, weights_sha256
from metrics.clip import OpenClipBackbone
from metrics.config import MetricsConfig, ProxyClipConfig
from metrics.io import captioned, read_video
from nuwa.core import checkpoint
from nuwa.core.errors import UserError
from nuwa.core.io import read_rgb
from nuwa.core.text import VOCAB_SIZE, tokenize
from nuwa.core.trainer import IGNORE, fit

ORDER = "order"  # the video net's temporal-order head: 0 = frames in order, 1 = shuffled


class Classifier(nn.Module):
    """Strided conv stages (2D for images, 3D for clips) -> pooled penultimate features -> one head per attribute."""

    def __init__(self, spatial_dims: Literal[2, 3], channels: tuple[int, ...], dim: int, classes: dict[str, list[str]]):
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        pool = nn.AdaptiveAvgPool2d(1) if spatial_dims == 2 else nn.AdaptiveAvgPool3d(1)
        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            layers += [conv(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(min(8, c), c), nn.SiLU()]
            c_in = c
        self.encoder = nn.Sequential(*layers, pool, nn.Flatten(), nn.Linear(c_in, dim))
        self.heads = nn.ModuleDict({k: nn.Linear(dim, len(v)) for k, v in classes.items()})

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = F.silu(self.encoder(x))
        return {k: head(h) for k, head in self.heads.items()}


class ClassifierBackbone(Backbone):
    def __init__(self, net: Classifier, config: dict, name: str, sha256: str):
        self.net, self.config = net.eval(), config
        self.name, self.sha256 = name, sha256
        self.size = (config["size"], config["size"])

    def prepare(self, sample: torch.Tensor) -> torch.Tensor:
        if sample.dim() == 3:  # image [3, H, W]
            return clean_resize(sample, self.size) / 127.5 - 1.0
        frames = sample[: self.config["frames"]]  # clip [T, 3, H, W] -> [3, T, h, w]
        return rearrange(torch.stack([clean_resize(f, self.size) for f in frames]) / 127.5 - 1.0, "t c h w -> c t h w")

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        return self.net.features(batch)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        head = self.config.get("is_head")
        if head is None:
            raise UserError(f"backbone {self.name} has no IS head; use a proxy image backbone or the inception")
        return self.net(batch)[head]


# ---------------------------------------------------------------- models from configs
def classifier_config(kind: Kind, cfg: MetricsConfig, classes: dict[str, list[str]]) -> dict:
    pc = cfg.proxies.image if kind == "image" else cfg.proxies.video
    out = {"spatial_dims": 2 if kind == "image" else 3, "channels": list(pc.channels), "dim": pc.dim,
           "size": pc.size, "frames": getattr(pc, "frames", 1), "classes": classes}
    if kind == "image" and classes:
        out["is_head"] = max(sorted(classes), key=lambda k: len(classes[k]))
    return out


def build_classifier(config: dict) -> Classifier:
    return Classifier(config["spatial_dims"], tuple(config["channels"]), config["dim"], config["classes"])


_CONFIG_DIR: Path | None = None


def register_clip_config(pc: ProxyClipConfig) -> str:
    """Register the tiny model with open_clip (a custom model config file); returns its model name."""
    global _CONFIG_DIR
    import open_clip

    model_cfg = {
        "embed_dim": pc.embed_dim,
        "vision_cfg": {"image_size": pc.image_size, "patch_size": pc.patch_size, "width": pc.vision_width,
                       "layers": pc.vision_layers, "head_width": pc.vision_width // pc.heads},
        "text_cfg": {"context_length": pc.context_length, "vocab_size": VOCAB_SIZE, "width": pc.text_width,
                     "heads": pc.heads, "layers": pc.text_layers},
    }
    name = "nuwa-tiny-clip-" + hashlib.sha256(json.dumps(model_cfg, sort_keys=True).encode()).hexdigest()[:8]
    if name not in open_clip.list_models():
        if _CONFIG_DIR is None:
            _CONFIG_DIR = Path(tempfile.mkdtemp(prefix="nuwa-open_clip-"))
            atexit.register(shutil.rmtree, _CONFIG_DIR, True)
        path = _CONFIG_DIR / f"{name}.json"
        path.write_text(json.dumps(model_cfg))
        open_clip.add_model_config(path)
    return name


def build_clip(pc: ProxyClipConfig) -> nn.Module:
    import open_clip

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # open_clip warns "no pretrained weights loaded": the proxy's come from its checkpoint
    try:
        return open_clip.create_model(register_clip_config(pc))
    finally:
        root.setLevel(level)


def clip_proxy_config(cfg: ProxyClipConfig) -> dict:
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k != "train"}


# ---------------------------------------------------------------- loading
def load_proxy(path: str | Path, kind: Kind) -> Backbone:
    want = f"proxy_{kind}"
    ckpt = checkpoint.load(path, ("proxy_image", "proxy_clip", "proxy_video"))
    if ckpt["kind"] != want:
        raise UserError(f"{path} is a {ckpt['kind']} backbone but this metric needs {want}; pass the checkpoint of `nuwa eval train-backbone {kind}`")
    sha = weights_sha256(ckpt["config"], ckpt["model"])  # the same weights always get the same name
    if kind == "clip":
        pc = ProxyClipConfig(**ckpt["config"])
        model = build_clip(pc)
        model.load_state_dict(ckpt["model"])
        return OpenClipBackbone(model, f"proxy-clip-{sha[:8]}", sha, pc.context_length)
    net = build_classifier(ckpt["config"])
    net.load_state_dict(ckpt["model"])
    return ClassifierBackbone(net, ckpt["config"], f"proxy-{kind}-{sha[:8]}", sha)


# ---------------------------------------------------------------- training data
class Samples(Dataset):
    """Prepared inputs held in memory with their labels (class ids per head) or caption tokens."""

    def __init__(self, items: list[dict]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def load_split(data: Path, split: str, kind: Kind, backbone: Backbone, frames: int) -> list[tuple[torch.Tensor, dict]]:
    folder = data / split
    pairs = captioned(folder, folder / "captions.jsonl")
    read = (lambda p: read_video(p, frames)) if kind == "video" else read_rgb
    return [(backbone.prepare(read(p)), row) for p, row in tqdm(pairs, desc=f"load {split}", leave=False)]


def attribute_classes(rows: list[dict]) -> dict[str, list[str]]:
    keys = sorted({k for r in rows for k in r.get("attrs", {})})
    return {k: sorted({str(r["attrs"][k]) for r in rows if k in r.get("attrs", {})}) for k in keys}


def labelled(split: list[tuple[torch.Tensor, dict]], classes: dict[str, list[str]]) -> Samples:
    index = {k: {v: i for i, v in enumerate(vals)} for k, vals in classes.items()}

    def label(row: dict, k: str) -> int:
        return index[k].get(str(row.get("attrs", {}).get(k)), IGNORE)

    return Samples([{"x": x, "labels": {k: torch.tensor(label(row, k)) for k in classes if k != ORDER}}
                    for x, row in split])


def captioned_samples(split: list[tuple[torch.Tensor, dict]], context_length: int) -> Samples:
    tokens = tokenize([row.get("caption", "") for _, row in split], context_length)
    return Samples([{"x": x, "text": t} for (x, _), t in zip(split, tokens)])


# ---------------------------------------------------------------- training recipes
class OneLossPerBatch:
    """The `nuwa.core.trainer` protocol for recipes that take one optimizer step on ``self.loss`` per batch."""

    def steps_per_batch(self) -> int:
        return 1

    def training_step(self, net: nn.Module, batch: dict, step) -> float:
        loss = self.loss(net, batch)
        step(loss)
        return loss.item()

    @torch.no_grad()
    def validation_loss(self, net: nn.Module, batch: dict) -> float:
        return self.loss(net, batch).item()


@dataclasses.dataclass
class ClassifierTrainable(OneLossPerBatch):
    module: Classifier
    temporal: bool

    def loss(self, net: nn.Module, batch: dict) -> torch.Tensor:
        x, labels = batch["x"], dict(batch["labels"])
        if self.temporal:  # shuffle the frames of half the clips; the order head tells them apart
            flags = torch.rand(x.shape[0]) < 0.5
            perms = torch.stack([torch.randperm(x.shape[2]) if f else torch.arange(x.shape[2]) for f in flags])
            x = torch.stack([clip[:, p] for clip, p in zip(x, perms)])
            labels[ORDER] = flags.long().to(x.device)
        out = net(x)
        losses = [F.cross_entropy(out[k], labels[k], ignore_index=IGNORE) for k in out if (labels[k] != IGNORE).any()]
        return torch.stack(losses).sum()


@dataclasses.dataclass
class ClipTrainable(OneLossPerBatch):
    module: nn.Module

    def __post_init__(self) -> None:
        from open_clip.loss import ClipLoss

        self.clip_loss = ClipLoss()

    def loss(self, net: nn.Module, batch: dict) -> torch.Tensor:
        image = net.encode_image(batch["x"], normalize=True)
        text = net.encode_text(batch["text"], normalize=True)
        return self.clip_loss(image, text, net.logit_scale.exp())


def train_proxy(kind: Kind, data: str | Path, out: str | Path, cfg: MetricsConfig, seed: int = 0) -> Path:
    """Train one proxy backbone on DATA/train (validated on DATA/test) and checkpoint it to ``out``."""
    data = Path(data)
    checkpoint.seed_everything(seed)
    if kind == "clip":
        pc = cfg.proxies.clip
        shell = OpenClipBackbone(build_clip(pc), "proxy-clip", "", pc.context_length)
        train, test = (captioned_samples(load_split(data, s, kind, shell, 1), pc.context_length) for s in ("train", "test"))
        return fit(ClipTrainable(shell.model.train()), train, test, pc.train, out=out, kind="proxy_clip",
                   model_config=clip_proxy_config(pc), seed=seed, desc="proxy clip")
    frames = cfg.proxies.video.frames
    probe = classifier_config(kind, cfg, {})
    shell = ClassifierBackbone(build_classifier(probe), probe, f"proxy-{kind}", "")
    train_split, test_split = (load_split(data, s, kind, shell, frames) for s in ("train", "test"))
    classes = attribute_classes([row for _, row in train_split])
    if kind == "video":
        classes[ORDER] = ["in_order", "shuffled"]
    if not classes:
        raise UserError(f"{data}/train/captions.jsonl has no 'attrs' to classify; the image proxy needs categorical attributes per image")
    config = classifier_config(kind, cfg, classes)
    net = build_classifier(config)
    pc = cfg.proxies.image if kind == "image" else cfg.proxies.video
    return fit(ClassifierTrainable(net, temporal=kind == "video"), labelled(train_split, classes), labelled(test_split, classes),
               pc.train, out=out, kind=f"proxy_{kind}", model_config=config, seed=seed, desc=f"proxy {kind}")
