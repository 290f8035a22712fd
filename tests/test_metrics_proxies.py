"""Proxy backbones train from a dataset folder, checkpoint with their kind, and serve every metric command."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metrics.clip import square_crops
from metrics.config import metrics_config
from metrics.io import list_videos, read_video
from metrics.proxies import load_proxy, train_proxy
from nuwa.commands.cli import main
from nuwa.core.errors import UserError
from nuwa.core.io import read_rgb

SKY = {"red": (200, 60, 50), "blue": (60, 110, 220), "orange": (240, 160, 40)}
GROUND = {"green": (40, 150, 60), "brown": (120, 80, 40), "white": (230, 230, 230)}
TINY = {"proxies": {
    "image": {"size": 16, "channels": [8, 16], "dim": 16, "train": {"epochs": 2, "batch_size": 16, "lr": 0.003}},
    "clip": {"embed_dim": 16, "image_size": 16, "patch_size": 8, "vision_width": 32, "vision_layers": 1,
             "text_width": 32, "text_layers": 1, "heads": 2, "context_length": 16,
             "train": {"epochs": 1, "batch_size": 16, "lr": 0.002}},
    "video": {"size": 16, "frames": 4, "channels": [8, 16], "dim": 16, "train": {"epochs": 1, "batch_size": 8}}},
    "fvd_frames": 4, "bootstrap": 10, "cache": False, "is_splits": 4}
SETS = [f"metrics.proxies.{k}={json.dumps(v)}" for k, v in TINY["proxies"].items()] + \
       [f"metrics.{k}={v if not isinstance(v, bool) else str(v).lower()}" for k, v in TINY.items() if k != "proxies"]


def world(root: Path, frames: int = 0, n: dict | None = None, size: int = 32) -> Path:
    """A tiny lhqc/lhqv-like dataset: sky over ground, captions and attrs read off the scene."""
    rng = np.random.default_rng(0)
    for split, count in (n or {"train": 32, "test": 16}).items():
        d, rows = root / split, []
        for i in range(count):
            sky, ground = str(rng.choice(list(SKY))), str(rng.choice(list(GROUND)))
            horizon = int(rng.integers(size // 3, 2 * size // 3))

            def frame(shift: int) -> Image.Image:
                img = np.zeros((size, size, 3), np.float32)
                img[:horizon], img[horizon:] = SKY[sky], GROUND[ground]
                img += 25 * np.sin((np.arange(size) + shift) / 3.0)[None, :, None]
                return Image.fromarray((img + rng.normal(0, 8, img.shape)).clip(0, 255).astype(np.uint8))

            if frames:
                name = f"clips/{i:06d}"
                (d / name).mkdir(parents=True)
                for t in range(frames):
                    frame(3 * t).save(d / name / f"{t:02d}.png")
            else:
                name = f"images/{i:06d}.png"
                (d / "images").mkdir(parents=True, exist_ok=True)
                frame(0).save(d / name)
            rows.append({"file": name, "caption": f"a {sky} sky above {ground} ground", "attrs": {"sky": sky, "ground": ground}})
        (d / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def lhqc(tmp_path_factory) -> Path:
    return world(tmp_path_factory.mktemp("lhqc"))


def cfg():
    return metrics_config({"metrics": TINY})


def test_image_proxy_trains_deterministically_and_serves_fid_and_is(lhqc, tmp_path):
    a = train_proxy("image", lhqc, tmp_path / "a.pt", cfg(), seed=3)
    b = train_proxy("image", lhqc, tmp_path / "b.pt", cfg(), seed=3)
    sa, sb = torch.load(a, weights_only=False), torch.load(b, weights_only=False)
    assert sa["kind"] == "proxy_image" and all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"])
    assert sa["config"]["classes"] == {"ground": ["brown", "green", "white"], "sky": ["blue", "orange", "red"]}
    bb = load_proxy(a, "image")
    x = torch.stack([bb.prepare(read_rgb(p)) for p in sorted((lhqc / "test" / "images").glob("*.png"))[:4]])
    assert bb.features(x).shape == (4, 16) and bb.logits(x).shape == (4, 3)
    out = tmp_path / "is.json"
    assert main(["eval", "is", "--fake", str(lhqc / "test"), "--backbone", str(a), "--json", str(out),
                 *sum((["--set", s] for s in SETS), [])]) == 0
    result = json.loads(out.read_text())
    assert result["metric"] == "is" and 1.0 <= result["value"] <= 3.0 and result["backbone_sha256"] == bb.sha256
    with pytest.raises(UserError, match="proxy_clip"):
        load_proxy(a, "clip")


def test_clip_proxy_scores_clip_sim_on_captions(lhqc, tmp_path):
    ckpt = train_proxy("clip", lhqc, tmp_path / "clip.pt", cfg(), seed=0)
    out = tmp_path / "clip.json"
    assert main(["eval", "clip-sim", "--fake", str(lhqc / "test"), "--backbone", str(ckpt), "--json", str(out),
                 *sum((["--set", s] for s in SETS), [])]) == 0
    result = json.loads(out.read_text())
    assert -1.0 <= result["ci_low"] <= result["value"] <= result["ci_high"] <= 1.0 and result["n"] == 16


def test_video_proxy_serves_fvd(tmp_path):
    data = world(tmp_path / "lhqv", frames=5, n={"train": 16, "test": 8}, size=16)
    ckpt = train_proxy("video", data, tmp_path / "video.pt", cfg(), seed=0)
    assert "order" in torch.load(ckpt, weights_only=False)["config"]["classes"]
    out = tmp_path / "fvd.json"
    assert main(["eval", "fvd", "--real", str(data / "test"), "--fake", str(data / "train"), "--backbone", str(ckpt),
                 "--json", str(out), *sum((["--set", s] for s in SETS), [])]) == 0
    result = json.loads(out.read_text())
    assert result["metric"] == "fvd" and result["frames"] == 4 and result["n"] == 16 and result["n_real"] == 8


def test_square_crops_cover_wide_images():
    wide = torch.arange(64 * 256).view(1, 64, 256)
    crops = square_crops(wide)
    assert [c.shape[-1] for c in crops] == [64] * 4 and torch.equal(crops[-1], wide[..., 192:])
    assert len(square_crops(torch.zeros(1, 64, 100))) == 2 and len(square_crops(torch.zeros(1, 64, 64))) == 1


def test_io_errors_and_video_layouts(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(UserError, match="not a readable image .*; re-create or delete it"):
        read_rgb(bad)
    clip = tmp_path / "videos" / "000000"
    clip.mkdir(parents=True)
    for t in range(3):
        Image.fromarray(np.full((8, 8, 3), t * 50, np.uint8)).save(clip / f"{t:02d}.png")
    (tmp_path / "videos" / "000000.gif").write_bytes(b"GIF89a")  # the preview next to the frames is skipped
    assert list_videos(tmp_path / "videos") == [clip]
    assert read_video(clip, 2).shape == (2, 3, 8, 8)
    with pytest.raises(UserError, match="frames"):
        read_video(clip, 5)
    assert main(["eval", "fid", "--real", str(tmp_path / "missing"), "--fake", str(tmp_path), "--backbone", "inception"]) == 2


def test_proxy_name_depends_on_the_weights_not_the_training_log(tmp_path):
    from metrics.proxies import build_classifier, load_proxy
    from nuwa.core import checkpoint

    config = {"spatial_dims": 2, "channels": [4], "dim": 8, "size": 16, "frames": 1, "classes": {"sky": ["a", "b"]},
              "is_head": "sky"}
    weights = build_classifier(config).state_dict()
    for name, seconds in (("a.pt", 1.0), ("b.pt", 2.0)):
        checkpoint.save(tmp_path / name, kind="proxy_image", config=config, model=weights, history=[{"seconds": seconds}])
    a, b = load_proxy(tmp_path / "a.pt", "image"), load_proxy(tmp_path / "b.pt", "image")
    assert a.name == b.name and a.sha256 == b.sha256
    weights["encoder.0.bias"] += 1.0
    checkpoint.save(tmp_path / "c.pt", kind="proxy_image", config=config, model=weights)
    assert load_proxy(tmp_path / "c.pt", "image").name != a.name
