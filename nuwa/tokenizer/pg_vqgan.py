"""PG-VQGAN (paper §3.3, Fig. 9): a VQGAN whose decoder is guided by the previous frame's pixels.

Frame n-1 goes through a pixel encoder with as many levels as the decoder; level i's output has
the shape of decoder level i's output and is added to it element-wise. Each level ends in a
zero-initialised 1x1 convolution, so a freshly initialised PG-VQGAN decodes exactly like the VQGAN
it starts from, and training only has to learn what the previous frame adds.
"""
from __future__ import annotations

import torch
from torch import nn

from nuwa.core.errors import UserError
from nuwa.tokenizer.config import DDConfig, VQGANArch
from nuwa.tokenizer.vqgan import VQGAN, Downsample, ResnetBlock


class PixelEncoder(nn.Module):
    """Previous frame [B, 3, H, W] -> one guide map per decoder level (finest first)."""

    def __init__(self, dd: DDConfig):
        super().__init__()
        chans = [dd.ch * m for m in dd.ch_mult]
        self.conv_in = nn.Conv2d(dd.in_channels, dd.ch, 3, 1, 1)
        self.down = nn.ModuleList()
        block_in = dd.ch
        for i, block_out in enumerate(chans):
            level = nn.Module()
            level.block = ResnetBlock(block_in, block_out, dd.dropout, dd.norm_groups)
            level.out = nn.Conv2d(block_out, block_out, 1)
            nn.init.zeros_(level.out.weight)
            nn.init.zeros_(level.out.bias)
            if i != len(chans) - 1:
                level.downsample = Downsample(block_out)
            self.down.append(level)
            block_in = block_out

    def forward(self, prev: torch.Tensor) -> list[torch.Tensor]:
        h, guide = self.conv_in(prev), []
        for level in self.down:
            h = level.block(h)
            guide.append(level.out(h))
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        return guide


class PGVQGAN(VQGAN):
    """VQGAN + ``pixel_encoder``; ``decode(quant, prev)`` adds the previous frame's guide maps.

    Without ``prev`` (the first frame of a video) it is the plain VQGAN decoder.
    """

    def __init__(self, arch: VQGANArch):
        super().__init__(arch)
        self.pixel_encoder = PixelEncoder(arch.ddconfig)

    def decode(self, quant: torch.Tensor, prev: torch.Tensor | None = None) -> torch.Tensor:
        guide = None
        if prev is not None:
            expected = (quant.shape[0], self.arch.ddconfig.in_channels, quant.shape[2] * self.factor, quant.shape[3] * self.factor)
            if tuple(prev.shape) != expected:
                raise UserError(f"previous frame must be {expected} to guide these tokens, got {tuple(prev.shape)}")
            guide = self.pixel_encoder(prev)
        return self.decoder(self.post_quant_conv(quant), guide)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """PG-VQGAN training updates the pixel encoder only; the VQGAN underneath stays frozen."""
        return list(self.pixel_encoder.parameters())

    def last_layer(self) -> torch.Tensor:
        return self.pixel_encoder.down[0].out.weight
