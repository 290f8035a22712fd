"""VQGAN / PG-VQGAN modules: taming names and shapes, quantization, pixel guidance, taming import."""
from __future__ import annotations

import pytest
import torch
import yaml

from nuwa.core.errors import UserError
from nuwa.tokenizer import load_taming
from nuwa.tokenizer.config import DDConfig, VQGANArch, check_config
from nuwa.tokenizer.pg_vqgan import PGVQGAN
from nuwa.tokenizer.vqgan import VQGAN

TINY = VQGANArch(DDConfig(ch=32, ch_mult=(1, 1, 2), num_res_blocks=1, attn_resolutions=(4,), z_channels=8, resolution=16),
                 n_embed=16, embed_dim=4)
PAPER = VQGANArch(DDConfig(ch=128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(16,), z_channels=256,
                           resolution=256), n_embed=16384, embed_dim=256)


def taming_shapes(ch: int, ch_mult: tuple[int, ...], nrb: int, attn_res: tuple[int, ...], z: int, res: int,
                  n_embed: int, embed_dim: int) -> dict[str, tuple[int, ...]]:
    """taming's VQModel state_dict shapes, enumerated from taming's construction rules."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name, cin, cout, k):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (cout, cin, k, k), (cout,)

    def norm(name, c):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (c,), (c,)

    def resblock(name, cin, cout):
        norm(f"{name}.norm1", cin), conv(f"{name}.conv1", cin, cout, 3)
        norm(f"{name}.norm2", cout), conv(f"{name}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{name}.nin_shortcut", cin, cout, 1)

    def attn(name, c):
        norm(f"{name}.norm", c)
        for p in ("q", "k", "v", "proj_out"):
            conv(f"{name}.{p}", c, c, 1)

    def mid(name, c):
        resblock(f"{name}.block_1", c, c), attn(f"{name}.attn_1", c), resblock(f"{name}.block_2", c, c)

    n = len(ch_mult)
    conv("encoder.conv_in", 3, ch, 3)
    cur, block_in = res, ch
    for i in range(n):
        block_out = ch * ch_mult[i]
        for j in range(nrb):
            resblock(f"encoder.down.{i}.block.{j}", block_in, block_out)
            block_in = block_out
            if cur in attn_res:
                attn(f"encoder.down.{i}.attn.{j}", block_in)
        if i != n - 1:
            conv(f"encoder.down.{i}.downsample.conv", block_in, block_in, 3)
            cur //= 2
    mid("encoder.mid", block_in)
    norm("encoder.norm_out", block_in), conv("encoder.conv_out", block_in, z, 3)
    block_in, cur = ch * ch_mult[-1], res // 2 ** (n - 1)
    conv("decoder.conv_in", z, block_in, 3)
    mid("decoder.mid", block_in)
    for i in reversed(range(n)):
        block_out = ch * ch_mult[i]
        for j in range(nrb + 1):
            resblock(f"decoder.up.{i}.block.{j}", block_in, block_out)
            block_in = block_out
            if cur in attn_res:
                attn(f"decoder.up.{i}.attn.{j}", block_in)
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", block_in, block_in, 3)
            cur *= 2
    norm("decoder.norm_out", block_in), conv("decoder.conv_out", block_in, 3, 3)
    shapes["quantize.embedding.weight"] = (n_embed, embed_dim)
    conv("quant_conv", z, embed_dim, 1), conv("post_quant_conv", embed_dim, z, 1)
    return shapes


def test_paper_config_has_taming_names_and_shapes():
    with torch.device("meta"):
        model = VQGAN(PAPER)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == taming_shapes(128, (1, 1, 2, 2, 4), 2, (16,), 256, 256, 16384, 256)
    # spot checks against the public vqgan_imagenet_f16_16384 checkpoint
    assert got["encoder.down.2.block.0.nin_shortcut.weight"] == (256, 128, 1, 1)
    assert got["decoder.up.4.attn.2.k.weight"] == (512, 512, 1, 1)
    assert got["encoder.conv_out.weight"] == (256, 512, 3, 3)
    assert model.factor == 16


def tiny(cls=VQGAN, seed: int = 0):
    torch.manual_seed(seed)
    return cls(TINY).eval()


def test_tiny_config_matches_taming_rules_and_round_trips_shapes():
    model = tiny()
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == taming_shapes(32, (1, 1, 2), 1, (4,), 8, 16, 16, 4)
    x = torch.rand(2, 3, 16, 24) * 2 - 1  # fully convolutional: any multiple of f
    idx = model.encode_to_indices(x)
    assert idx.shape == (2, 4, 6) and idx.dtype == torch.long
    y = model.decode_indices(idx)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1


def test_indices_are_nearest_codes():
    model = tiny()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    z = model.quant_conv(model.encoder(x))
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    brute = torch.cdist(flat, model.quantize.embedding.weight).argmin(1).view(2, 4, 4)
    assert torch.equal(model.encode_to_indices(x), brute)


def test_user_errors():
    model = tiny()
    with pytest.raises(UserError, match="multiples of 4"):
        model.encode_to_indices(torch.zeros(1, 3, 10, 16))
    with pytest.raises(UserError, match="PG-VQGAN"):
        model.decode_indices(torch.zeros(1, 4, 4, dtype=torch.long), prev=torch.zeros(1, 3, 16, 16))
    with pytest.raises(UserError, match="different tokenizer"):
        model.decode_indices(torch.full((1, 4, 4), 16))
    with pytest.raises(UserError, match="tokenizer.vqgan.model.ddconfig.ch"):
        check_config({"tokenizer": {"vqgan": {"model": {"ddconfig": {"ch": "wide"}}}}})
    with pytest.raises(UserError, match="multiple of norm_groups"):
        check_config({"tokenizer": {"vqgan": {"model": {"ddconfig": {"ch": 48}}}}})
    with pytest.raises(UserError, match="perceptual_weights"):
        check_config({"tokenizer": {"pg_vqgan": {"loss": {"perceptual_weight": 1.0}}}})


def test_pg_vqgan_with_zero_pixel_branch_is_the_vqgan_decoder():
    vq = tiny()
    pg = PGVQGAN(TINY).eval()
    pg.load_state_dict({**pg.state_dict(), **vq.state_dict()})
    idx = torch.randint(0, 16, (2, 4, 4))
    prev = torch.rand(2, 3, 16, 16) * 2 - 1
    # freshly initialised: the pixel branch ends in zero convs
    assert torch.equal(pg.decode_indices(idx, prev=prev), vq.decode_indices(idx))
    torch.manual_seed(1)
    for p in pg.pixel_encoder.parameters():
        p.data.normal_(0, 0.1)
    guided = pg.decode_indices(idx, prev=prev)
    assert (guided - vq.decode_indices(idx)).abs().mean() > 1e-3
    assert (guided - pg.decode_indices(idx, prev=-prev)).abs().mean() > 1e-3  # depends on the previous frame
    assert torch.equal(pg.decode_indices(idx), vq.decode_indices(idx))  # first frame: no guidance
    for p in pg.pixel_encoder.parameters():
        p.data.zero_()
    assert torch.equal(pg.decode_indices(idx, prev=prev), vq.decode_indices(idx))
    with pytest.raises(UserError, match="previous frame"):
        pg.decode_indices(idx, prev=prev[:, :, :8])


def write_taming(tmp_path, model: VQGAN, arch: VQGANArch = TINY):
    dd = dict(vars(arch.ddconfig), ch_mult=list(arch.ddconfig.ch_mult), attn_resolutions=list(arch.ddconfig.attn_resolutions))
    params = {"embed_dim": arch.embed_dim, "n_embed": arch.n_embed, "monitor": "val/rec_loss", "ddconfig": dd,
              "lossconfig": {"target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator",
                             "params": {"disc_start": 250001, "disc_weight": 0.8, "codebook_weight": 1.0}}}
    yml = tmp_path / "model.yaml"
    yml.write_text(yaml.safe_dump({"model": {"base_learning_rate": 4.5e-6, "target": "taming.models.vqgan.VQModel",
                                             "params": params}}))
    state = {**model.state_dict(), "loss.logvar": torch.zeros(()),
             "loss.discriminator.main.0.weight": torch.randn(64, 3, 4, 4),
             "loss.perceptual_loss.lin0.model.1.weight": torch.randn(1, 64, 1, 1)}
    ckpt = tmp_path / "last.ckpt"
    torch.save({"epoch": 3, "global_step": 1000, "state_dict": state}, ckpt)
    return yml, ckpt


def test_taming_checkpoint_loads_and_round_trips(tmp_path):
    original = tiny(seed=3)
    yml, ckpt = write_taming(tmp_path, original)
    loaded = load_taming(yml, ckpt)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    idx = loaded.encode_to_indices(x)
    assert torch.equal(idx, original.encode_to_indices(x))
    assert torch.equal(loaded.decode_indices(idx), original.decode_indices(idx))
    assert loaded.factor == 4 and loaded.n_embed == 16


def test_taming_mismatch_is_one_line(tmp_path):
    other = VQGANArch(DDConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, z_channels=8, resolution=16), n_embed=16, embed_dim=4)
    yml, ckpt = write_taming(tmp_path, tiny(), other)
    with pytest.raises(UserError, match="does not match"):
        load_taming(yml, ckpt)
    with pytest.raises(UserError, match="not found"):
        load_taming(tmp_path / "missing.yaml", ckpt)
    yml, ckpt = write_taming(tmp_path, tiny())
    ckpt.write_bytes(b"garbage")
    with pytest.raises(UserError, match="unreadable"):
        load_taming(yml, ckpt)


def test_perceptual_loss_needs_weights_and_measures_difference(tmp_path):
    from torchvision.models.vgg import cfgs, make_layers

    from nuwa.tokenizer.losses import Perceptual

    with pytest.raises(UserError, match="vgg16"):
        Perceptual(str(tmp_path / "vgg16.pth"))
    torch.manual_seed(0)
    weights = {f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}
    torch.save({**weights, "classifier.0.weight": torch.zeros(2, 2)}, tmp_path / "vgg16.pth")
    lpips = Perceptual(str(tmp_path / "vgg16.pth"))
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).requires_grad_(True)
    d = lpips(x, y)
    assert lpips(x, x).item() == 0 and d.item() > 0
    d.backward()
    assert y.grad.abs().sum() > 0
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(UserError, match="not a torchvision vgg16"):
        Perceptual(str(tmp_path / "bad.pth"))
