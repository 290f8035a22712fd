"""Block-FID: k identical blocks per image give the FID of those blocks; regions and masks; bad sizes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import error_lines
from PIL import Image

from metrics.block_fid import REGIONS, blocks, mask_box
from metrics.config import MetricsConfig
from metrics.proxies import build_classifier, classifier_config
from nuwa.commands.cli import main
from nuwa.core import checkpoint
from nuwa.core.errors import UserError

SIZE = 16


@pytest.fixture(scope="module")
def proxy(tmp_path_factory) -> Path:
    """A randomly initialised proxy image backbone (fast; the metric code does not care)."""
    torch.manual_seed(0)
    cfg = classifier_config("image", MetricsConfig(), {"sky": ["a", "b", "c"]})
    cfg.update(size=SIZE, channels=[8, 16], dim=8)
    path = tmp_path_factory.mktemp("proxy") / "image.pt"
    checkpoint.save(path, kind="proxy_image", config=cfg, model=build_classifier(cfg).state_dict())
    return path


def arrays(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 255, size=3) + rng.normal(0, 30, size=(SIZE, SIZE, 3))).clip(0, 255).astype(np.uint8)
            for _ in range(n)]


def save(folder: Path, images: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    for i, a in enumerate(images):
        Image.fromarray(a).save(folder / f"{i:03d}.png")
    return folder


def score(command: str, real: Path, fake: Path, proxy: Path, out: Path, *extra: str) -> dict:
    assert main(["eval", command, "--real", str(real), "--fake", str(fake), "--backbone", str(proxy),
                 "--set", "metrics.cache=false", "--set", f"metrics.block={SIZE}",
                 "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_block_fid_of_repeated_real_blocks_equals_their_fid(proxy, tmp_path):
    real, tiles = save(tmp_path / "real", arrays(20, 0)), arrays(20, 1)
    k = 4
    wide = save(tmp_path / "wide", [np.concatenate([t] * k, axis=1) for t in tiles])
    plain = score("fid", real, save(tmp_path / "tiles", tiles), proxy, tmp_path / "fid.json")
    block = score("block-fid", real, wide, proxy, tmp_path / "block.json")
    assert block["positions"] == k and block["plugin"] > 0
    for key in ("value", "plugin", "se", "ci_low", "ci_high"):  # k identical positions: their mean is the FID
        assert block[key] == pytest.approx(plain[key], rel=1e-9), key
    assert block["kid"]["value"] == pytest.approx(plain["kid"]["value"], rel=1e-9) and block["kid"]["library"] == "torch-fidelity"
    assert block["per_position"] == pytest.approx([plain["value"]] * k, rel=1e-9)
    pooled = score("block-fid", real, wide, proxy, tmp_path / "pooled.json", "--pooled")
    # pooled: the same blocks k times over -> same mean, covariance scaled by k(N-1)/(kN-1), so close but not equal
    assert pooled["pooled"] and pooled["plugin"] == pytest.approx(plain["plugin"], rel=0.2) and pooled["n"] == 20


def test_region_scores_only_the_extended_half(proxy, tmp_path):
    real_imgs, gen = arrays(20, 2), arrays(20, 3)
    # generated images whose right half is copied from real test images: the right half scores like real data
    mixed = [np.concatenate([g[:, : SIZE // 2], r[:, SIZE // 2:]], axis=1) for g, r in zip(gen, real_imgs)]
    real, fake = save(tmp_path / "real", real_imgs), save(tmp_path / "fake", mixed)
    right = score("block-fid", real, fake, proxy, tmp_path / "r.json", "--region", "right-half")
    left = score("block-fid", real, fake, proxy, tmp_path / "l.json", "--region", "left-half")
    assert abs(right["plugin"]) < 1e-6 < left["plugin"]
    masks = torch.zeros(20, 4, 4, dtype=torch.bool)
    masks[:, :, 2:] = True
    torch.save(masks, tmp_path / "masks.pt")
    assert mask_box(tmp_path / "masks.pt") == REGIONS["right-half"]
    by_mask = score("block-fid", real, fake, proxy, tmp_path / "m.json", "--masks", str(tmp_path / "masks.pt"))
    assert by_mask["plugin"] == pytest.approx(right["plugin"], abs=1e-9)
    assert by_mask["value"] == pytest.approx(right["value"], abs=1e-9)


def test_blocks_cut_row_major_and_reject_partial_blocks():
    image = torch.arange(2 * 3 * 4, dtype=torch.uint8).view(1, 2 * 2, 3 * 2).expand(3, -1, -1)
    parts = blocks(image, REGIONS["all"], 2)
    assert len(parts) == 6 and torch.equal(parts[1], image[:, 0:2, 2:4]) and torch.equal(parts[3], image[:, 2:4, 0:2])
    with pytest.raises(UserError, match="whole number"):
        blocks(torch.zeros(3, 4, 5, dtype=torch.uint8), REGIONS["all"], 2)


def test_masks_with_different_regions_are_rejected(tmp_path):
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, :, 2:] = True
    masks[1, 2:, :] = True
    torch.save(masks, tmp_path / "masks.pt")
    with pytest.raises(UserError, match="different regions"):
        mask_box(tmp_path / "masks.pt")


def conditioned_samples(folder: Path, images: list[np.ndarray], sources: list[Path]) -> Path:
    """A sample folder as `nuwa generate --data` writes it: sample i was conditioned on ``sources[i]``."""
    from nuwa.core.sample_folders import write_index

    save(folder / "images", images)
    records = [{"file": f"images/{i:03d}.png", "caption": "", "seed": i, "task": "outpaint", "model": "nuwa",
                "width": SIZE, "height": SIZE, "frames": 1, "seconds": 0.0, "conditioned_on": str(src)}
               for i, src in enumerate(sources)]
    write_index(folder, records, torch.zeros(len(images), 1, 2, 2), {"task": "outpaint"})
    return folder


def test_real_items_the_samples_were_conditioned_on_are_left_out(proxy, tmp_path):
    """Scored against the real folder, a conditional set equals the same set scored against only the real
    items it was not made from (generated and real sets independent: docs/metrics.md)."""
    real_images = arrays(30, 1)
    real = save(tmp_path / "real", real_images)
    sources = sorted(real.glob("*.png"))[:10]
    fake = conditioned_samples(tmp_path / "fake", arrays(10, 2), sources)
    rest = save(tmp_path / "rest", real_images[10:])
    left_out = score("fid", real, fake, proxy, tmp_path / "a.json")
    disjoint = score("fid", rest, fake, proxy, tmp_path / "b.json")
    assert left_out["real_left_out"] == 10 and disjoint["real_left_out"] == 0
    assert left_out["n_real"] == disjoint["n_real"] == 20
    assert left_out["value"] == pytest.approx(disjoint["value"], rel=1e-12)
    assert left_out["ci_high"] == pytest.approx(disjoint["ci_high"], rel=1e-12)


def test_too_few_real_items_left_is_one_line(proxy, tmp_path, capsys):
    real = save(tmp_path / "real", arrays(4, 1))
    fake = conditioned_samples(tmp_path / "fake", arrays(3, 2), sorted(real.glob("*.png"))[:3])
    code = main(["eval", "fid", "--real", str(real), "--fake", str(fake), "--backbone", str(proxy),
                 "--set", "metrics.cache=false", "--json", str(tmp_path / "out.json")])
    err = error_lines(capsys.readouterr().err)
    assert code != 0 and not (tmp_path / "out.json").exists()
    assert len(err) == 1 and "only 1 real items remain after leaving out the 3" in err[0]


def test_conditioning_items_that_do_not_exist_from_here_are_a_warning(proxy, tmp_path, caplog):
    real = save(tmp_path / "real", arrays(8, 1))
    fake = conditioned_samples(tmp_path / "fake", arrays(4, 2), [Path("elsewhere") / f"{i}.png" for i in range(4)])
    with caplog.at_level("WARNING", logger="metrics.io"):
        result = score("fid", real, fake, proxy, tmp_path / "out.json")
    assert result["real_left_out"] == 0 and result["n_real"] == 8
    assert "cannot be left out of the real set" in caplog.text
