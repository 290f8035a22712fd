"""NUWA-Infinity as a model family (nuwa.core.family.Family): build, training recipe, generation.

The recipe is Algorithm 1 (nuwa.model.train), generation Algorithm 2 (nuwa.model.generate).
"""
from __future__ import annotations

from dataclasses import asdict

import torch
from torch import nn

from nuwa.core.config import build
from nuwa.core.errors import UserError
from nuwa.core.family import GenerationRequest
from nuwa.core.sampling import SamplingConfig
from nuwa.model.config import ModelConfig, TrainSettings, settings
from nuwa.model.decoder import NuwaInfinity
from nuwa.model.generate import generate
from nuwa.model.train import NuwaTrainable


class NuwaFamily:
    kind = "nuwa"

    def build(self, cfg: dict) -> nn.Module:
        return NuwaInfinity(settings(cfg).model)

    def model_config(self, module: nn.Module) -> dict:
        return asdict(self._check(module).cfg)

    def from_config(self, model_config: dict) -> nn.Module:
        return NuwaInfinity(build(ModelConfig, model_config, "nuwa checkpoint config"))

    def trainable(self, module: nn.Module, cfg: dict) -> NuwaTrainable:
        return NuwaTrainable(self._check(module), settings(cfg))

    def train_config(self, cfg: dict) -> TrainSettings:
        return settings(cfg).train

    def sampling_config(self, cfg: dict) -> SamplingConfig:
        return settings(cfg).sample

    def generate(self, module: nn.Module, request: GenerationRequest) -> torch.Tensor:
        model = self._check(module)
        with torch.no_grad():
            return generate(model, request)[0]

    @staticmethod
    def _check(module: nn.Module) -> NuwaInfinity:
        if not isinstance(module, NuwaInfinity):
            raise UserError(f"expected a NUWA-Infinity model, got {type(module).__name__}; pass a checkpoint made with --model nuwa")
        return module


FAMILY = NuwaFamily()
