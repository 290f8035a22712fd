"""VQGAN (paper §3.3 / Esser et al.) with taming-transformers' VQModel parameter names and shapes.

The architecture is configured exactly like taming's ``ddconfig``; building it from the same values
gives the same ``state_dict`` keys and shapes (``encoder.down.{i}.block.{j}.conv1``, ``quant_conv``,
``quantize.embedding.weight``, ...), so public ``last.ckpt`` files load unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from nuwa.core.errors import UserError
from nuwa.tokenizer.config import DDConfig, VQGANArch


def Normalize(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, dropout: float, groups: int):
        super().__init__()
        self.norm1 = Normalize(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.norm2 = Normalize(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        skip = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return skip + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1x1-conv projections (taming's AttnBlock)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = Normalize(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        q, k, v = (rearrange(f(h), "b c h w -> b 1 (h w) c") for f in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)
        out = rearrange(out, "b 1 (h w) c -> b c h w", h=x.shape[2])
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def level_stage(in_ch: int, out_ch: int, n_blocks: int, attn: bool, dd: DDConfig) -> nn.Module:
    """One resolution level: ``block`` (ResnetBlocks) and ``attn`` (AttnBlocks after each block, or none)."""
    stage = nn.Module()
    stage.block = nn.ModuleList(ResnetBlock(in_ch if j == 0 else out_ch, out_ch, dd.dropout, dd.norm_groups)
                                for j in range(n_blocks))
    stage.attn = nn.ModuleList(AttnBlock(out_ch, dd.norm_groups) for _ in range(n_blocks) if attn)
    return stage


def run_stage(stage: nn.Module, h: torch.Tensor) -> torch.Tensor:
    for j, block in enumerate(stage.block):
        h = block(h)
        if len(stage.attn):
            h = stage.attn[j](h)
    return h


def mid_stage(channels: int, dd: DDConfig) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = ResnetBlock(channels, channels, dd.dropout, dd.norm_groups)
    mid.attn_1 = AttnBlock(channels, dd.norm_groups)
    mid.block_2 = ResnetBlock(channels, channels, dd.dropout, dd.norm_groups)
    return mid


def run_mid(mid: nn.Module, h: torch.Tensor) -> torch.Tensor:
    return mid.block_2(mid.attn_1(mid.block_1(h)))


class Encoder(nn.Module):
    """Image [B, in_channels, H, W] -> features [B, z_channels, H/f, W/f], f = 2^(levels-1)."""

    def __init__(self, dd: DDConfig):
        super().__init__()
        chans = [dd.ch * m for m in dd.ch_mult]
        self.conv_in = nn.Conv2d(dd.in_channels, dd.ch, 3, 1, 1)
        self.down = nn.ModuleList()
        res, block_in = dd.resolution, dd.ch
        for i, block_out in enumerate(chans):
            stage = level_stage(block_in, block_out, dd.num_res_blocks, res in dd.attn_resolutions, dd)
            if i != len(chans) - 1:
                stage.downsample = Downsample(block_out)
                res //= 2
            self.down.append(stage)
            block_in = block_out
        self.mid = mid_stage(block_in, dd)
        self.norm_out = Normalize(block_in, dd.norm_groups)
        self.conv_out = nn.Conv2d(block_in, 2 * dd.z_channels if dd.double_z else dd.z_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            h = run_stage(stage, h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = run_mid(self.mid, h)
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    """Features [B, z_channels, h, w] -> image [B, out_ch, h*f, w*f].

    ``guide`` (PG-VQGAN) holds one feature map per level, finest first, shaped like that level's
    output; each is added element-wise to the level's output before it is upsampled.
    """

    def __init__(self, dd: DDConfig):
        super().__init__()
        chans = [dd.ch * m for m in dd.ch_mult]
        block_in = chans[-1]
        res = dd.resolution // 2 ** (len(chans) - 1)
        self.conv_in = nn.Conv2d(dd.z_channels, block_in, 3, 1, 1)
        self.mid = mid_stage(block_in, dd)
        up: list[nn.Module] = []
        for i in reversed(range(len(chans))):
            stage = level_stage(block_in, chans[i], dd.num_res_blocks + 1, res in dd.attn_resolutions, dd)
            if i != 0:
                stage.upsample = Upsample(chans[i])
                res *= 2
            up.insert(0, stage)
            block_in = chans[i]
        self.up = nn.ModuleList(up)
        self.norm_out = Normalize(block_in, dd.norm_groups)
        self.conv_out = nn.Conv2d(block_in, dd.out_ch, 3, 1, 1)

    def forward(self, z: torch.Tensor, guide: list[torch.Tensor] | None = None) -> torch.Tensor:
        h = run_mid(self.mid, self.conv_in(z))
        for i in reversed(range(len(self.up))):
            h = run_stage(self.up[i], h)
            if guide is not None:
                h = h + guide[i]
            if i != 0:
                h = self.up[i].upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Nearest-codebook-entry quantization with a straight-through gradient.

    Returns the quantized map, the codebook + ``beta`` * commitment loss and the indices [B, h, w].
    """

    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25):
        super().__init__()
        self.n_embed, self.embed_dim, self.beta = n_embed, embed_dim, beta
        self.embedding = nn.Embedding(n_embed, embed_dim)
        self.embedding.weight.data.uniform_(-1.0 / n_embed, 1.0 / n_embed)

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        flat = rearrange(z, "b c h w -> (b h w) c")
        e = self.embedding.weight
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.t() + e.pow(2).sum(1)[None]
        return rearrange(dist.argmin(1), "(b h w) -> b h w", b=z.shape[0], h=z.shape[2])

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        return rearrange(self.embedding(idx), "b h w c -> b c h w")

    @torch.no_grad()
    def restart(self, dead: torch.Tensor, z: torch.Tensor) -> None:
        """Move the ``dead`` codes (Bool[n_embed]) onto randomly chosen encodings ``z`` [B, C, h, w]."""
        flat = rearrange(z, "b c h w -> (b h w) c")
        n = int(dead.sum())
        pick = torch.randperm(flat.shape[0])[:n] if n <= flat.shape[0] else torch.randint(flat.shape[0], (n,))
        self.embedding.weight.data[dead] = flat[pick] + 1e-3 * flat.std() * torch.randn(n, flat.shape[1])

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = self.indices(z)
        z_q = self.lookup(idx)
        loss = F.mse_loss(z_q, z.detach()) + self.beta * F.mse_loss(z, z_q.detach())
        return z + (z_q - z).detach(), loss, idx


class VQGAN(nn.Module):
    """taming's VQModel: encoder -> quant_conv -> quantize -> post_quant_conv -> decoder."""

    def __init__(self, arch: VQGANArch):
        super().__init__()
        self.arch = arch
        dd = arch.ddconfig
        if dd.double_z:
            raise UserError("tokenizer ddconfig.double_z must be false for a VQGAN (taming's VQModel uses z_channels)")
        self.encoder = Encoder(dd)
        self.decoder = Decoder(dd)
        self.quantize = VectorQuantizer(arch.n_embed, arch.embed_dim, arch.beta)
        self.quant_conv = nn.Conv2d(dd.z_channels, arch.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(arch.embed_dim, dd.z_channels, 1)

    @property
    def factor(self) -> int:
        return 2 ** (len(self.arch.ddconfig.ch_mult) - 1)

    @property
    def n_embed(self) -> int:
        return self.arch.n_embed

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pre-quantization features -> (quantized, codebook loss, indices)."""
        self.check_size(x)
        return self.quantize(self.quant_conv(self.encoder(x)))

    def decode(self, quant: torch.Tensor, prev: torch.Tensor | None = None) -> torch.Tensor:
        if prev is not None:
            raise UserError("a plain VQGAN decodes frames independently; pass a PG-VQGAN tokenizer to use the previous frame")
        return self.decoder(self.post_quant_conv(quant))

    def forward(self, x: torch.Tensor, prev: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction, codebook loss, indices."""
        quant, qloss, idx = self.encode(x)
        return self.decode(quant, prev), qloss, idx

    def check_size(self, x: torch.Tensor) -> None:
        f = self.factor
        if x.dim() != 4 or x.shape[1] != self.arch.ddconfig.in_channels or x.shape[2] % f or x.shape[3] % f:
            raise UserError(f"tokenizer input must be [B, {self.arch.ddconfig.in_channels}, H, W] with H and W multiples of {f}, "
                            f"got {tuple(x.shape)}; resize or crop the images")

    @torch.no_grad()
    def encode_to_indices(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1], [B, 3, H, W] -> token indices Long[B, H/f, W/f]."""
        return self.encode(x)[2]

    @torch.no_grad()
    def decode_indices(self, idx: torch.Tensor, prev: torch.Tensor | None = None) -> torch.Tensor:
        """Token indices Long[B, h, w] -> images [B, 3, h*f, w*f] in [-1, 1]."""
        if idx.min() < 0 or idx.max() >= self.n_embed:
            raise UserError(f"token ids must lie in [0, {self.n_embed}); these tokens come from a different tokenizer")
        return self.decode(self.quantize.lookup(idx), prev).clamp(-1, 1)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())

    def last_layer(self) -> torch.Tensor:
        """The decoder's output weight (adaptive adversarial weight is computed against it)."""
        return self.decoder.conv_out.weight
