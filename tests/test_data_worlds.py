"""Procedural worlds: determinism, captions vs pixels, mirror reflections, wide renders, RQF crops, layout."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from nuwa.core.config import REPO_ROOT, load_config
from nuwa.data import ImageFolder, VideoFolder, make_plan, write_dataset
from nuwa.data.worlds import lhqc, lhqv, peppa, rqf, sample_rng

SMALL = ["data.lhqc.n_train=3", "data.lhqc.n_test=2", "data.lhqv.n_train=2", "data.lhqv.n_test=2",
         "data.peppa.n_train=2", "data.peppa.n_test=2", "data.rqf.width=2048", "data.rqf.test_width=256"]


def small_cfg(*extra: str) -> dict:
    return load_config([REPO_ROOT / "config" / "config.yaml"], SMALL + list(extra))


def first(world: str, seed: int, n: int = 2) -> list[np.ndarray]:
    _, make = make_plan(world, small_cfg(), seed).splits["train"]
    return [s.pixels for s, _ in zip(make(), range(n))]


@pytest.mark.parametrize("world", ["lhqc", "rqf", "lhqv", "peppa"])
def test_world_is_deterministic_per_seed(world):
    a, b, c = first(world, 0), first(world, 0), first(world, 1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    assert not np.array_equal(a[0], a[1])  # samples differ from one another


def scenes(n: int, **fixed) -> list[lhqc.Landscape]:
    out = []
    for i in range(n):
        rng = sample_rng(7, "lhqc-test", "x", i)
        attrs = {**lhqc.sample_attrs(rng), **fixed}
        attrs["sun"] = attrs["sky"] == "sunset" or (attrs["sky"] == "clear" and attrs["sun"])
        out.append(lhqc.sample_scene(rng, attrs))
    return out


def test_captions_name_the_scene_attributes():
    for i in range(200):
        a = lhqc.sample_attrs(sample_rng(0, "lhqc", "train", i))
        text = lhqc.caption(a)
        assert ("lake" in text) == (a["water"] == "lake")
        assert ("trees" in text) == a["has_trees"]
        assert ("mountains" in text) == (a["mountains"] != "none")
        assert {"grassland": "green", "desert": "desert", "canyon": "canyon"}[a["terrain"]] in text
        assert {"clear": "clear", "cloudy": "cloudy", "sunset": "sunset"}[a["sky"]] in text
    assert lhqc.caption({"sky": "clear", "sun": False, "terrain": "grassland", "water": "lake", "has_trees": False,
                         "mountains": "none"}) == "a large lake surrounded by green vegetation under a clear blue sky"


@pytest.mark.parametrize("terrain", lhqc.TERRAINS)
def test_ground_colour_matches_terrain(terrain):
    for s in scenes(8, terrain=terrain):
        bottom = lhqc.render(s, 64, 64)[-3:].reshape(-1, 3).mean(0) / 255
        r, g, b = bottom
        if terrain == "grassland":
            assert g > r and g > b
        elif terrain == "desert":  # sand: yellow-brown
            assert r > g > b and g > 0.6 * r
        else:                      # canyon: red rock
            assert r > 1.5 * g and g > b * 0.9


@pytest.mark.parametrize("sky", lhqc.SKIES)
def test_sky_colour_matches_caption(sky):
    for s in scenes(8, sky=sky):
        r, g, b = lhqc.render(s, 64, 64)[:3].reshape(-1, 3).mean(0) / 255
        if sky == "clear":
            assert b > r + 0.15
        elif sky == "sunset":
            assert r > b
        else:
            assert max(r, g, b) - min(r, g, b) < 0.15  # grey clouds


def test_lake_makes_water_bluer_below_the_horizon():
    for s in scenes(10, water="lake"):
        dry = dataclasses.replace(s, lake=None)
        r_h = round(s.horizon * 64)
        band = slice(r_h + 1, r_h + int((s.lake["depth"] - s.lake["amp"]) * 64) - 1)
        wet_px = lhqc.render(s, 64, 64)[band].astype(float)
        dry_px = lhqc.render(dry, 64, 64)[band].astype(float)
        assert (wet_px[..., 2] - wet_px[..., 0]).mean() > (dry_px[..., 2] - dry_px[..., 0]).mean() + 10


def test_reflection_is_a_mirror_of_the_scene_above_the_waterline():
    for s in scenes(10, water="lake", mountains="layered", has_trees=True):
        img = lhqc.render(s, 64, 64).astype(float) / 255
        r_h = round(s.horizon * 64)
        depth = int((s.lake["depth"] - s.lake["amp"]) * 64) - 1  # rows fully inside the water
        water = img[r_h:r_h + depth]
        above = img[r_h - depth:r_h][::-1]
        alpha = s.lake["alpha"]
        expected = alpha * above + (1 - alpha) * np.asarray(lhqc.WATER_TINT)
        assert np.abs(water - expected).max() <= 1.5 / 255
        # and it is a mirror, not a copy: un-flipped rows do not match where the scene has structure
        unflipped = alpha * img[r_h - depth:r_h] + (1 - alpha) * np.asarray(lhqc.WATER_TINT)
        assert np.abs(water - unflipped).max() > 10 / 255


def test_wide_render_extends_the_narrow_scene():
    for s in scenes(6):
        narrow, wide = lhqc.render(s, 64, 64), lhqc.render(s, 256, 64)
        assert wide.shape == (64, 256, 3)
        assert np.abs(narrow.astype(int) - wide[:, :64]).max() <= 1
        assert not np.array_equal(wide[:, :64], wide[:, 64:128])  # the panorama goes on, not a tiling


def test_lhqc_plan_test_wide_is_the_test_scenes():
    plan = make_plan("lhqc", small_cfg(), 0)
    tests = list(plan.splits["test"][1]())
    wides = list(plan.splits["test_wide"][1]())
    assert [t.caption for t in tests] == [w.caption for w in wides]
    assert all(np.abs(t.pixels.astype(int) - w.pixels[:, :64]).max() <= 1 for t, w in zip(tests, wides))


def test_rqf_crops_overlap_as_specified():
    cfg = small_cfg().get("data")["rqf"]
    plan = make_plan("rqf", small_cfg(), 0)
    scroll = plan.extras["scroll.png"]()
    assert scroll.shape == (64, 2048, 3) and scroll.shape[1] >= 32 * scroll.shape[0]
    crops = [s.pixels for s in plan.splits["train"][1]()]
    stride, crop = cfg["stride"], cfg["crop"]
    assert len(crops) == plan.splits["train"][0] == (2048 - 256 - crop) // stride + 1
    for i in range(len(crops) - 1):
        assert np.array_equal(crops[i][:, stride:], crops[i + 1][:, :crop - stride])
    assert np.array_equal(crops[5], scroll[:, 5 * stride:5 * stride + crop])
    test = [s.pixels for s in plan.splits["test"][1]()]
    assert np.array_equal(test[0], scroll[:, 2048 - 256:2048 - 256 + crop])  # held-out tail, no train overlap


def test_rqf_content_changes_along_the_scroll_and_the_river_is_continuous():
    sc = rqf.render_scroll(sample_rng(0, "rqf", "scroll", 0), 2048, 64)
    attrs = [rqf.crop_attrs(sc, x0, 64) for x0 in range(0, 2048 - 64, 64)]
    assert len({a["zone"] for a in attrs}) >= 3
    assert any(a["has_houses"] for a in attrs) and any(not a["has_houses"] for a in attrs)
    top, bottom = rqf.river_banks(sample_rng(0, "rqf", "scroll", 0), 2048, 64)
    assert np.all(bottom > top) and np.abs(np.diff(top)).max() < 1.0  # no jumps: one meandering band
    assert len({tuple(sorted(a)) for a in attrs}) == 1


def test_lhqv_clips_move_and_pan():
    still = lhqv.sample_clip(sample_rng(3, "lhqv", "x", 0), 64)
    still = dataclasses.replace(still, pan=0.0, lake=None)
    frames = lhqv.render_clip(still, 64, 64, 5, 5.0)
    r_h = round(still.horizon * 64)
    assert np.array_equal(frames[0, r_h + 2:], frames[4, r_h + 2:])  # ground holds still
    assert not np.array_equal(frames[0, :r_h], frames[4, :r_h])      # clouds drift
    panning = dataclasses.replace(still, pan=0.2)
    moved = lhqv.render_clip(panning, 64, 64, 5, 5.0)
    assert not np.array_equal(moved[0, r_h + 2:], moved[4, r_h + 2:])


def skin_columns(frame: np.ndarray) -> np.ndarray:
    f = frame.astype(float) / 255
    pink = (f[..., 0] > 0.9) & (np.abs(f[..., 1] - 0.68) < 0.08) & (np.abs(f[..., 2] - 0.76) < 0.08)
    return np.nonzero(pink)


@pytest.mark.parametrize("action", ["walks_left", "walks_right", "jumps"])
def test_peppa_pig_does_the_captioned_action(action):
    attrs = {"character": "pig", "action": action, "hill": "green", "weather": "sunny", "puddle": False}
    assert peppa.caption(attrs).startswith("a pink pig ")
    clip = peppa.render_clip(attrs, sample_rng(0, "peppa", "x", 1), 64, 64, 5)
    rows0, cols0 = skin_columns(clip[0])
    rows1, cols1 = skin_columns(clip[1])
    rows4, cols4 = skin_columns(clip[4])
    assert len(cols0) > 20  # a pink pig is on screen
    if action == "walks_right":
        assert cols4.mean() > cols0.mean() + 5
    elif action == "walks_left":
        assert cols4.mean() < cols0.mean() - 5
    else:
        assert rows1.mean() < rows0.mean() - 4 and abs(cols1.mean() - cols0.mean()) < 1
    green_hill = clip[0][-5:].reshape(-1, 3).mean(0)
    assert green_hill[1] > green_hill[0] and green_hill[1] > green_hill[2]


@pytest.mark.parametrize("world", ["lhqc", "rqf", "lhqv", "peppa"])
def test_layout_on_disk_and_datasets(world, tmp_path):
    out = tmp_path / world
    counts = write_dataset(make_plan(world, small_cfg(), 0), out)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["world"] == world and meta["source"] == "procedural" and meta["counts"] == counts
    assert set(counts) == {"train", "test"} | ({"test_wide"} if world == "lhqc" else set())
    records = [json.loads(line) for line in (out / "train" / "captions.jsonl").read_text().splitlines()]
    assert len(records) == counts["train"] and all(set(r) == {"file", "caption", "attrs"} for r in records)
    assert len({tuple(sorted(r["attrs"])) for r in records}) == 1  # same attribute keys for every sample
    if world in ("lhqc", "rqf"):
        item = ImageFolder(out, "train")[0]
        assert item["image"].shape == (3, 64, 64)
        x = item["image"]
    else:
        item = VideoFolder(out, "train")[0]
        assert item["video"].shape == (5, 3, 64, 64) and (out / "train" / "clips" / "000000" / "04.png").is_file()
        x = item["video"]
    assert x.dtype == torch.float32 and -1 <= x.min() < x.max() <= 1
    assert item["caption"] == records[0]["caption"]
    assert (world in ("lhqc", "peppa")) == bool(item["caption"])
    if world == "lhqc":
        assert ImageFolder(out, "test_wide")[0]["image"].shape == (3, 64, 256)
    if world == "rqf":
        assert (out / "scroll.png").is_file()


def test_failed_render_leaves_no_output(tmp_path):
    plan = make_plan("lhqc", small_cfg(), 0)

    def broken():
        yield from plan.splits["train"][1]()
        raise RuntimeError("interrupted")

    plan.splits["train"] = (3, broken)
    with pytest.raises(RuntimeError):
        write_dataset(plan, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
