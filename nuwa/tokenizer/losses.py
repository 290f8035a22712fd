"""VQGAN training losses: reconstruction, codebook (in the quantizer), perceptual, PatchGAN hinge.

The perceptual term is LPIPS-style (unit-normalised VGG16 features, squared differences averaged
over space and summed over five stages); it needs a local torchvision ``vgg16`` state dict and is
off in the embedded default. The adversarial term switches on at ``disc_start`` with taming's
adaptive weight (ratio of the reconstruction and generator gradient norms at the last layer).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nuwa.core.errors import UserError
from nuwa.core.io import require_file, require_named_hash, torch_load
from nuwa.tokenizer.config import LossConfig

VGG_STAGES = (3, 8, 15, 22, 29)  # torchvision vgg16.features indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def reconstruction_loss(x: torch.Tensor, rec: torch.Tensor, kind: str) -> torch.Tensor:
    return F.l1_loss(rec, x) if kind == "l1" else F.mse_loss(rec, x)


class Perceptual(nn.Module):
    """LPIPS-style distance on frozen VGG16 features loaded from ``weights`` (no download)."""

    def __init__(self, weights: str):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        path = require_file(weights, "perceptual-loss VGG16 weights",
                            "put torchvision's vgg16-397923af.pth there or set tokenizer.*.loss.perceptual_weight: 0")
        state = torch_load(require_named_hash(path, "VGG16 weights"), "VGG16 weights")
        features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        net = make_layers(cfgs["D"])[:VGG_STAGES[-1] + 1]  # vgg16.features without building the classifier
        try:
            net.load_state_dict(features)
        except RuntimeError as exc:
            raise UserError(f"{path} is not a torchvision vgg16 state dict ({str(exc).splitlines()[0]})") from exc
        self.net = net.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, out = ((x + 1) / 2 - self.mean) / self.std, []
        for i, layer in enumerate(self.net):
            h = layer(h)
            if i in VGG_STAGES:
                out.append(F.normalize(h, dim=1, eps=1e-10))
        return out

    def forward(self, x: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
        return sum((a - b).pow(2).sum(1).mean() for a, b in zip(self.features(x), self.features(rec)))


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix): strided 4x4 convs, BatchNorm, LeakyReLU; one logit per image patch."""

    def __init__(self, in_channels: int = 3, ch: int = 32, layers: int = 2):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(in_channels, ch, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        c = ch
        for n in range(1, layers + 1):
            c_out = ch * min(2 ** n, 8)
            mods += [nn.Conv2d(c, c_out, 4, 2 if n < layers else 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, True)]
            c = c_out
        mods.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.main = nn.Sequential(*mods)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def adaptive_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """Scale that gives the adversarial gradient the reconstruction gradient's norm at ``last_layer``."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (rec_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()


class VQLoss(nn.Module):
    """Generator and discriminator objectives for one batch (taming's VQLPIPSWithDiscriminator)."""

    def __init__(self, cfg: LossConfig, in_channels: int = 3):
        super().__init__()
        self.cfg = cfg
        self.perceptual = Perceptual(cfg.perceptual_weights) if cfg.perceptual_weight > 0 else None
        self.discriminator = PatchDiscriminator(in_channels, cfg.disc_ch, cfg.disc_layers)

    @property
    def adversarial(self) -> bool:
        return self.cfg.disc_weight > 0

    def gan_active(self, step: int) -> bool:
        return self.adversarial and step >= self.cfg.disc_start

    def generator(self, x: torch.Tensor, rec: torch.Tensor, qloss: torch.Tensor, step: int,
                  last_layer: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.cfg
        nll = c.rec_weight * reconstruction_loss(x, rec, c.rec)
        if self.perceptual is not None:
            nll = nll + c.perceptual_weight * self.perceptual(x, rec)
        loss = nll + c.codebook_weight * qloss
        logs = {"rec": nll.item(), "q": qloss.item()}
        if self.gan_active(step):
            g_loss = -self.discriminator(rec).mean()
            weight = c.disc_weight * adaptive_weight(nll, g_loss, last_layer)
            loss = loss + weight * g_loss
            logs["g"] = g_loss.item()
        return loss, logs

    def discriminator_loss(self, x: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
        return hinge_d_loss(self.discriminator(x), self.discriminator(rec.detach()))
