"""Tokenizer training (exact resume, PG-VQGAN), encoding to shards, streamed decoding, report, CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nuwa.commands.cli import main
from nuwa.core import checkpoint as ckpt_io
from nuwa.core.config import build
from nuwa.data.tokens import load_shard
from nuwa.tokenizer import load
from nuwa.tokenizer.config import PGVQGANConfig, VQGANConfig
from nuwa.tokenizer.decode import decode_strips, decode_tokens, decode_video
from nuwa.tokenizer.encode import encode_split
from nuwa.tokenizer.report import psnr, reconstruction_report
from nuwa.tokenizer.train import restart_dead_codes, train_pg_vqgan, train_vqgan

TINY_MODEL = {"ddconfig": {"ch": 32, "ch_mult": [1, 1, 1], "num_res_blocks": 1, "z_channels": 8, "resolution": 16},
              "n_embed": 16, "embed_dim": 4}
TRAIN = {"steps": 6, "batch_size": 4, "warmup_steps": 1, "checkpoint_every": 2}
TINY = build(VQGANConfig, {"model": TINY_MODEL, "train": TRAIN,
                           "loss": {"disc_start": 2, "disc_ch": 8, "restart_every": 2}}, "test")
TINY_PG = build(PGVQGANConfig, {"train": {**TRAIN, "steps": 3}}, "test")


def scene(rng: np.random.Generator, h: int, w: int, shift: int = 0) -> np.ndarray:
    """A smooth random picture (sky gradient, horizon), shifted by ``shift`` columns."""
    y, x = np.mgrid[0:h, 0:w + shift]
    horizon = h // 2 + 2 * np.sin(x / 3 + rng.uniform(0, 6))
    sky = rng.uniform(0, 255, 3) * (1 - y[..., None] / h)
    ground = rng.uniform(0, 255, 3) * np.ones_like(sky)
    img = np.where((y < horizon)[..., None], sky, ground)[:, shift:]
    return img.clip(0, 255).astype(np.uint8)


def write_folder(root: Path, split: str, n: int, frames: int = 0, size: tuple[int, int] = (16, 16)) -> Path:
    rng = np.random.default_rng(len(split) + n)
    d = root / split
    records = []
    for i in range(n):
        if frames:
            clip = d / "clips" / f"{i:06d}"
            clip.mkdir(parents=True)
            for t in range(frames):
                Image.fromarray(scene(np.random.default_rng(i), *size, shift=t)).save(clip / f"{t:02d}.png")
            records.append({"file": f"clips/{i:06d}", "caption": f"clip {i}", "attrs": {}})
        else:
            (d / "images").mkdir(parents=True, exist_ok=True)
            Image.fromarray(scene(rng, *size)).save(d / "images" / f"{i:06d}.png")
            records.append({"file": f"images/{i:06d}.png", "caption": f"scene {i}", "attrs": {}})
    (d / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (root / "meta.json").write_text(json.dumps({"world": root.name}))
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lhqc")
    write_folder(root, "train", 12)
    write_folder(root, "test", 5)
    write_folder(root, "test_wide", 2, size=(16, 64))
    return root


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lhqv")
    write_folder(root, "train", 4, frames=3)
    write_folder(root, "test", 2, frames=3)
    return root


@pytest.fixture(scope="module")
def vqgan_ckpt(images, tmp_path_factory) -> Path:
    return train_vqgan(images, tmp_path_factory.mktemp("ckpt") / "vqgan.pt", TINY, seed=0)


@pytest.mark.parametrize("stop_after", [3, 4])  # an epoch boundary; mid-epoch, where a dead-code restart follows
def test_resume_after_kill_is_bit_identical(images, vqgan_ckpt, tmp_path, stop_after):
    out = tmp_path / "resumed.pt"
    assert train_vqgan(images, out, TINY, seed=0, stop_after=stop_after) == out.with_name("resumed.pt.resume")
    assert not out.exists()
    train_vqgan(images, out, TINY, seed=0)  # crosses an epoch boundary, GAN on from step 2
    assert not out.with_name("resumed.pt.resume").exists()
    a, b = ckpt_io.load(vqgan_ckpt, "vqgan"), ckpt_io.load(out, "vqgan")
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["history"] == b["history"]
    other = train_vqgan(images, tmp_path / "seed1.pt", TINY, seed=1)
    assert not torch.equal(ckpt_io.load(other, "vqgan")["model"]["decoder.conv_out.weight"], a["model"]["decoder.conv_out.weight"])


def test_dead_codes_move_onto_encodings():
    torch.manual_seed(0)
    model = load_tiny_model()
    model.quantize.embedding.weight.data[:] = 100.0  # every code far away: one code wins everything
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    assert model.encode_to_indices(x).unique().numel() == 1
    last_used = torch.full((16,), -1)
    restart_dead_codes(model, x, step=0, window=2, last_used=last_used)
    assert model.encode_to_indices(x).unique().numel() > 8


def load_tiny_model():
    from nuwa.tokenizer.vqgan import VQGAN

    return VQGAN(TINY.model)


def test_pg_vqgan_trains_pixel_encoder_only(videos, vqgan_ckpt, tmp_path):
    pg_path = train_pg_vqgan(videos, vqgan_ckpt, tmp_path / "pg.pt", TINY_PG, seed=0)
    vq, pg = load(vqgan_ckpt), load(pg_path)
    pg_state = pg.state_dict()
    assert all(torch.equal(v, pg_state[k]) for k, v in vq.state_dict().items())  # VQGAN frozen: same tokens
    assert pg.pixel_encoder.down[0].out.weight.abs().sum() > 0  # zero init moved
    with pytest.raises(Exception, match="VQGAN checkpoint"):
        train_pg_vqgan(videos, pg_path, tmp_path / "again.pt", TINY_PG)


def test_encode_to_shard_images_wide_and_videos(images, videos, vqgan_ckpt, tmp_path):
    tok = load(vqgan_ckpt)
    tokens = encode_split(tok, images, "test", tmp_path / "test.pt", tokenizer_path=str(vqgan_ckpt), batch_size=2)
    shard = load_shard(tmp_path / "test.pt")
    assert shard["tokens"].shape == (5, 1, 4, 4) and shard["captions"][3] == "scene 3"
    assert shard["world"] == images.name and shard["n_embed"] == 16 and tuple(shard["image_size"]) == (16, 16)
    from nuwa.data import ImageFolder

    assert torch.equal(tokens[3, 0], tok.encode_to_indices(ImageFolder(images, "test")[3]["image"][None])[0])
    wide = encode_split(tok, images, "test_wide", tmp_path / "wide.pt")
    assert wide.shape == (2, 1, 4, 16)
    vid = encode_split(tok, videos, "test", tmp_path / "vid.pt")
    assert vid.shape == (2, 3, 4, 4)


def test_strip_decoding_matches_whole_decoding(images, vqgan_ckpt):
    from nuwa.data import ImageFolder

    tok = load(vqgan_ckpt)
    idx = tok.encode_to_indices(ImageFolder(images, "test_wide")[0]["image"][None])[0]  # 4 x 16 tokens
    whole = ((tok.decode_indices(idx[None])[0] + 1) * 127.5).round().permute(1, 2, 0).numpy()
    out = np.zeros((16, 64, 3), np.uint8)
    decode_strips(tok, idx, out, strip=3, margin=16)  # every strip sees the whole grid: exact
    assert np.abs(out.astype(float) - whole).max() <= 1
    errors = []
    for margin in (0, 2, 4):  # real streaming: the error shrinks as the context margin grows
        decode_strips(tok, idx, out, strip=4, margin=margin)
        errors.append(np.abs(out.astype(float) - whole).mean())
    assert errors[2] < errors[1] < errors[0] and errors[2] < 0.5 * errors[0]


def test_decode_tokens_and_guided_video(vqgan_ckpt, videos, tmp_path):
    tok = load(vqgan_ckpt)
    decode_tokens(tok, torch.randint(0, 16, (2, 1, 4, 6)), tmp_path / "img", strip=2, margin=1)
    assert Image.open(tmp_path / "img" / "000001.png").size == (24, 16)
    pg_path = train_pg_vqgan(videos, vqgan_ckpt, tmp_path / "pg.pt", TINY_PG, seed=0)
    pg = load(pg_path)
    for p in pg.pixel_encoder.parameters():
        p.data.normal_(0, 0.2)
    idx = torch.randint(0, 16, (3, 4, 4), generator=torch.Generator().manual_seed(1))
    decode_video(pg, idx, tmp_path / "vid")
    decode_video(tok, idx, tmp_path / "plain")
    frames = [np.asarray(Image.open(tmp_path / d / "01.png")).astype(float) for d in ("vid", "plain")]
    assert sorted(p.name for p in (tmp_path / "vid").iterdir()) == ["00.png", "01.png", "02.png"]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "vid" / "00.png")), np.asarray(Image.open(tmp_path / "plain" / "00.png")))
    assert np.abs(frames[0] - frames[1]).mean() > 1  # frame 1 is guided by frame 0


def test_psnr_and_report(images, vqgan_ckpt):
    x = torch.zeros(2, 3, 4, 4)
    assert torch.allclose(psnr(x, x + 0.2), torch.full((2,), 20.0), atol=1e-4)  # mse 0.01 in [0, 1] units
    rep = reconstruction_report(load(vqgan_ckpt), images, "test")
    assert rep["frames"] == 5 and 0 < rep["codebook_usage"] <= 1 and rep["psnr"] > 5
    assert "rec_fid" not in rep


def test_reconstruction_fid_scores_reconstructions_against_originals(images, vqgan_ckpt, monkeypatch):
    from metrics.proxies import ClassifierBackbone, build_classifier

    config = {"spatial_dims": 2, "channels": [4], "dim": 8, "size": 16, "frames": 1, "classes": {"sky": ["a", "b"]}}
    torch.manual_seed(0)
    backbone = ClassifierBackbone(build_classifier(config), config, "proxy-image-test", "")
    rep = reconstruction_report(load(vqgan_ckpt), images, "test", backbone=backbone)
    assert rep["rec_fid_backbone"] == "proxy-image-test" and rep["rec_fid"] > 0
    # a perfect tokenizer: reconstructions are the originals, FID 0
    monkeypatch.setattr("nuwa.tokenizer.report.reconstructions",
                        lambda *a, **k: iter([(x, x, torch.zeros(x.shape[0], 1, 1, dtype=torch.long))
                                              for x in [torch.rand(5, 3, 16, 16) * 2 - 1]]))
    assert reconstruction_report(load(vqgan_ckpt), images, "test", backbone=backbone)["rec_fid"] < 1e-6


def test_cli_train_encode_report_and_errors(images, tmp_path, capsys):
    tiny = [f"--set=tokenizer.vqgan.model={json.dumps(TINY_MODEL)}", "--set=tokenizer.vqgan.train.steps=2",
            "--set=tokenizer.vqgan.train.batch_size=4"]
    ckpt = tmp_path / "v.pt"
    assert main(["tokenizer", "train", "vqgan", "--data", str(images), "--out", str(ckpt), *tiny]) == 0
    assert main(["tokenizer", "encode", "--tokenizer", str(ckpt), "--data", str(images), "--split", "test",
                 "--out", str(tmp_path / "s.pt")]) == 0
    assert main(["tokenizer", "decode", "--tokenizer", str(ckpt), "--tokens", str(tmp_path / "s.pt"),
                 "--out", str(tmp_path / "dec"), "--limit", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "dec").iterdir()) == ["000000.png", "000001.png"]
    assert main(["tokenizer", "report", "--tokenizer", str(ckpt), "--data", str(images), "--out", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["frames"] == 5
    capsys.readouterr()
    bad = [(["train", "vqgan", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.pt"), *tiny], "nowhere"),
           (["train", "pg_vqgan", "--data", str(images), "--out", str(tmp_path / "x.pt")], "--init"),
           (["train", "vqgan", "--data", str(images), "--out", str(tmp_path / "x.pt"), "--set=tokenizer.vqgan.train.lr=-1"], "learning rates"),
           (["encode", "--tokenizer", str(tmp_path / "none.pt"), "--data", str(images), "--split", "test", "--out", str(tmp_path / "x.pt")], "not found")]
    for argv, needle in bad:
        assert main(["tokenizer", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and needle in err and "\n" not in err
    assert not (tmp_path / "x.pt").exists()
