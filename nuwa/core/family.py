"""The model-family protocol behind `nuwa train/generate --model nuwa|taming|maskgit`.

Each family is a module-level object ``FAMILY`` implementing :class:`Family` (nuwa.commands.families
maps the CLI name to it), so NUWA-Infinity and the baselines share the CLI, checkpoints, training
loop and output files and the metrics cannot tell which model made an image.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from nuwa.core import checkpoint as ckpt_io
from nuwa.core.sampling import SamplingConfig
from nuwa.core.trainer import Trainable, TrainConfig


@dataclass
class GenerationRequest:
    """What to generate, in tokens. ``known``/``known_mask`` pin given tokens (outpainting, animation)."""

    grid: tuple[int, int, int]                 # (F, h, w) token grid to produce
    batch: int = 1
    text: torch.Tensor | None = None           # Long[B, 77] BPE ids, or None (unconditional)
    known: torch.Tensor | None = None          # Long[B, F, h, w] given tokens (values elsewhere ignored)
    known_mask: torch.Tensor | None = None     # Bool[F, h, w] True where ``known`` is given
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    generator: torch.Generator | None = None   # one random stream for the whole batch
    generators: list[torch.Generator] | None = None  # or one per sample (then ``generator`` is unused):
    #                                            a sample's tokens then do not depend on the batch it is in
    progress: bool = True
    compile: bool = False                      # decode steps under torch.compile (CUDA graphs on a GPU)


class Family(Protocol):
    kind: str  # checkpoint kind

    def build(self, cfg: dict) -> nn.Module:
        """A fresh model from the full config (the family reads its own section)."""

    def model_config(self, module: nn.Module) -> dict:
        """Everything needed to rebuild ``module``; stored in the checkpoint."""

    def from_config(self, model_config: dict) -> nn.Module:
        """Rebuild a model from :meth:`model_config` output (weights loaded by the caller)."""

    def trainable(self, module: nn.Module, cfg: dict) -> Trainable:
        """Training recipe; batches are {"tokens": Long[B, F, h, w], "text": Long[B, 77]}."""

    def train_config(self, cfg: dict) -> TrainConfig:
        """The training loop's settings from the full config (the family's own ``train`` section)."""

    def sampling_config(self, cfg: dict) -> SamplingConfig:
        """The family's configured sampling settings (its own ``sample`` section)."""

    def generate(self, module: nn.Module, request: GenerationRequest) -> torch.Tensor:
        """Long[B, F, h, w]; never changes tokens where ``known_mask`` is True.
        Raises UserError for what the method cannot do (e.g. Taming extending left/up)."""


def module_from_checkpoint(family: Family, ckpt: dict) -> nn.Module:
    """The model of a checkpoint written by ``nuwa train`` (``nuwa.core.checkpoint.load`` output), in eval mode."""
    module = family.from_config(ckpt["config"])
    module.load_state_dict(ckpt["model"])
    return module.eval()


def load_module(family: Family, path: str | Path) -> nn.Module:
    """The model of a ``nuwa train --model NAME`` checkpoint file (a missing or foreign file is one UserError line)."""
    return module_from_checkpoint(family, ckpt_io.load(path, family.kind))

