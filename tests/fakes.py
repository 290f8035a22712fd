"""Test doubles for the train/generate CLIs: a tiny model family, tiny real (random) tokenizers, shards, datasets.

``UnigramFamily`` follows the :class:`nuwa.core.family.Family` protocol with the smallest model that can
learn something (one logit per code) and records every :class:`GenerationRequest` it gets; the
``taming`` variant refuses extending left or up as the real Taming baseline does.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from nuwa.commands.families import REGISTRY
from nuwa.core import checkpoint
from nuwa.core.errors import UserError
from nuwa.core.family import GenerationRequest
from nuwa.core.sampling import SamplingConfig, sample_logits
from nuwa.core.trainer import TrainConfig
from nuwa.data.tokens import save_shard
from nuwa.model.config import settings
from nuwa.tokenizer.config import DDConfig, VQGANArch
from nuwa.tokenizer.pg_vqgan import PGVQGAN
from nuwa.tokenizer.vqgan import VQGAN

CODES = 16
FACTOR = 4                      # tiny VQGAN: ch_mult (1, 1, 1)
PATCH = 2                       # --set nuwa.model.patch=2 -> alignment unit 8 pixels
UNIT = FACTOR * PATCH
SIZE = 16                       # training images 16x16 pixels -> 4x4 tokens
SETS = ["--set", f"nuwa.model.patch={PATCH}", "--set", f"nuwa.model.codebook={CODES}",
        "--set", "nuwa.train.epochs=2", "--set", "nuwa.train.batch_size=4", "--set", "nuwa.train.lr=0.1",
        "--set", "nuwa.train.checkpoint_every=1000"]


class Unigram(nn.Module):
    def __init__(self, codebook: int):
        super().__init__()
        self.codebook = codebook
        self.logits = nn.Parameter(torch.zeros(codebook))


@dataclasses.dataclass
class UnigramTrainable:
    module: Unigram

    def steps_per_batch(self) -> int:
        return 1

    def loss(self, net: nn.Module, batch: dict) -> torch.Tensor:
        tokens = batch["tokens"].flatten()
        return F.cross_entropy(net.logits.expand(tokens.numel(), -1), tokens)

    def training_step(self, net, batch, step) -> float:
        loss = self.loss(net, batch)
        step(loss)
        return loss.item()

    def validation_loss(self, net, batch) -> float:
        return self.loss(net, batch).item()


class UnigramFamily:
    def __init__(self, kind: str, refuse_left_up: bool = False):
        self.kind, self.refuse_left_up = kind, refuse_left_up
        self.requests: list[GenerationRequest] = []

    def build(self, cfg: dict) -> Unigram:
        return Unigram(settings(cfg).model.codebook)

    def model_config(self, module: Unigram) -> dict:
        return {"codebook": module.codebook}

    def from_config(self, model_config: dict) -> Unigram:
        return Unigram(model_config["codebook"])

    def trainable(self, module: Unigram, cfg: dict) -> UnigramTrainable:
        return UnigramTrainable(module)

    def train_config(self, cfg: dict) -> TrainConfig:
        return self._real().train_config(cfg)

    def sampling_config(self, cfg: dict) -> SamplingConfig:
        return self._real().sampling_config(cfg)

    def _real(self):
        """The family this fake stands in for, whose config sections it reads (families.get is patched)."""
        return importlib.import_module(REGISTRY[self.kind]).FAMILY

    def generate(self, module: Unigram, request: GenerationRequest) -> torch.Tensor:
        self.requests.append(request)
        mask = request.known_mask
        if self.refuse_left_up and mask is not None and not bool(mask[..., 0, 0].all()):
            raise UserError("taming generates in raster order and cannot extend left or up; use right or down")
        logits = module.logits.expand(request.batch, *request.grid, -1)
        ids, _ = sample_logits(logits, request.sampling, request.generator)
        return ids if mask is None else torch.where(mask, request.known, ids)


FAMILIES = {"nuwa": UnigramFamily("nuwa"), "taming": UnigramFamily("taming", refuse_left_up=True)}


def use_fakes(monkeypatch) -> dict[str, UnigramFamily]:
    """Route nuwa.commands.families.get to the fakes and register only the train/generate commands."""
    from nuwa.commands import cli, families

    fakes = {name: UnigramFamily(f.kind, f.refuse_left_up) for name, f in FAMILIES.items()}
    real_get = families.get
    monkeypatch.setattr(families, "get", lambda name: fakes[name] if name in fakes else real_get(name))
    monkeypatch.setattr(cli, "COMMANDS", ["nuwa.commands.train", "nuwa.commands.generate", "nuwa.commands.samples"])
    return fakes


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    from nuwa.commands import cli

    rc = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def tokenizer_arch() -> VQGANArch:
    return VQGANArch(ddconfig=DDConfig(ch=32, ch_mult=(1, 1, 1), z_channels=8, resolution=SIZE),
                     n_embed=CODES, embed_dim=8)


def save_tokenizers(root: Path) -> tuple[Path, Path]:
    """A random tiny VQGAN and PG-VQGAN in the format `nuwa tokenizer train` writes."""
    torch.manual_seed(0)
    arch = tokenizer_arch()
    paths = []
    for kind, cls in (("vqgan", VQGAN), ("pg_vqgan", PGVQGAN)):
        path = root / f"{kind}.pt"
        checkpoint.save(path, kind=kind, config=dataclasses.asdict(arch), model=cls(arch).state_dict())
        paths.append(path)
    return paths[0], paths[1]


def save_shards(root: Path, n_embed: int = CODES, frames: int = 1) -> tuple[Path, Path]:
    """Token shards whose codes follow a skewed unigram distribution (learnable by the fake model)."""
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.linspace(3, -3, n_embed), 0)
    paths = []
    for split, n in (("train", 32), ("test", 8)):
        tokens = torch.multinomial(probs, n * frames * 16, replacement=True, generator=g).reshape(n, frames, 4, 4)
        path = root / f"{split}.pt"
        save_shard(path, tokens, [f"a scene number {i}" for i in range(n)], world="toy", split=split,
                   n_embed=n_embed, image_size=(SIZE, SIZE), tokenizer="vqgan.pt")
        paths.append(path)
    return paths[0], paths[1]


def write_image(path: Path, width: int, height: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def write_dataset(root: Path, n: int = 3, frames: int = 0) -> Path:
    """A dataset folder in the layout of `nuwa data render` (images, or clips when ``frames``)."""
    split = root / "test"
    records = []
    for i in range(n):
        if frames:
            for t in range(frames):
                write_image(split / "clips" / f"{i:06d}" / f"{t:02d}.png", SIZE, SIZE, seed=10 * i + t)
            records.append({"file": f"clips/{i:06d}", "caption": f"clip {i}", "attrs": {}})
        else:
            write_image(split / "images" / f"{i:06d}.png", SIZE, SIZE, seed=i)
            records.append({"file": f"images/{i:06d}.png", "caption": f"scene {i}", "attrs": {}})
    (split / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root
