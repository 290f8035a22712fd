"""Real-data adapters: same layout as the procedural worlds, skipped inputs counted, one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from nuwa.commands.cli import main
from nuwa.core.config import REPO_ROOT, load_config
from nuwa.core.errors import UserError
from nuwa.data import ImageFolder, VideoFolder, check_config, make_plan, write_dataset

CONFIG = REPO_ROOT / "config" / "config.yaml"


def cfg(*overrides: str) -> dict:
    return load_config([CONFIG], list(overrides))


def solid(path, size, colour):
    Image.new("RGB", size, colour).save(path)


@pytest.fixture
def lhq(tmp_path):
    root = tmp_path / "lhq"
    root.mkdir()
    lines = []
    for i in range(6):
        solid(root / f"{i:03d}.png", (80, 80), (40 * i, 100, 50))
        lines.append(json.dumps({"file": f"{i:03d}.png", "caption": f"landscape {i}"}))
    wide = Image.new("RGB", (128, 64), (255, 0, 0))       # red sides, blue centre square
    wide.paste((0, 0, 255), (32, 0, 96, 64))
    wide.save(root / "006.jpg")
    lines.append(json.dumps({"file": "006.jpg", "caption": "a wide one"}))
    (root / "007.png").write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    lines.append(json.dumps({"file": "007.png", "caption": "corrupt"}))
    (root / "notes.txt").write_text("unsupported")
    (tmp_path / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def lhq_cfg(base, *extra):
    return cfg("data.lhqc.source=folder", f"data.lhqc.root={base / 'lhq'}",
               f"data.lhqc.captions={base / 'captions.jsonl'}", "data.lhqc.n_test=2", *extra)


def test_corrupt_image_stops_with_one_line_naming_it_and_writes_nothing(lhq, tmp_path):
    with pytest.raises(UserError, match=r"007\.png: unreadable or corrupt.*skip_bad=true") as err:
        write_dataset(make_plan("lhqc", lhq_cfg(lhq), 0), tmp_path / "out")
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()


def test_lhqc_folder_skips_corrupt_image_with_count_and_keeps_the_layout(lhq, tmp_path):
    out = tmp_path / "out"
    counts = write_dataset(make_plan("lhqc", lhq_cfg(lhq, "data.lhqc.skip_bad=true"), 0), out)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["source"] == "folder" and sum(meta["skipped"].values()) == 1 and meta["unsupported_files"] == 1
    assert [s["input"] for s in meta["skipped_inputs"]] == ["007.png"]
    assert counts["train"] + counts["test"] == 7
    procedural = tmp_path / "proc"
    write_dataset(make_plan("lhqc", cfg("data.lhqc.n_train=2", "data.lhqc.n_test=2"), 0), procedural)
    for split in ("train", "test"):
        real, fake = ImageFolder(out, split), ImageFolder(procedural, split)
        assert real[0]["image"].shape == fake[0]["image"].shape == (3, 64, 64)
        assert set(real.records[0]) == set(fake.records[0])
        assert sorted(p.name for p in (out / split).iterdir()) == sorted(p.name for p in (procedural / split).iterdir())
    captions = {r["caption"]: r for s in ("train", "test") for r in ImageFolder(out, s).records}
    assert "corrupt" not in captions and "landscape 3" in captions


def test_non_square_image_is_centre_cropped_not_squashed(lhq, tmp_path):
    out = tmp_path / "out"
    write_dataset(make_plan("lhqc", lhq_cfg(lhq, "data.lhqc.skip_bad=true"), 0), out)
    for split in ("train", "test"):
        ds = ImageFolder(out, split)
        for i, rec in enumerate(ds.records):
            if rec["caption"] == "a wide one":
                px = ds[i]["image"]
                inner = px[:, :, 2:-2]  # the resampling filter may touch the crop border
                assert inner[2].min() > 0.9 and inner[0].max() < -0.9  # only the blue centre remains


def test_missing_captions_file_is_one_line_error_and_no_output(lhq, tmp_path):
    bad = lhq_cfg(lhq, f"data.lhqc.captions={tmp_path / 'nope.jsonl'}")
    with pytest.raises(UserError, match="captions file"):
        write_dataset(make_plan("lhqc", bad, 0), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def frame_folder(path, n, size=(48, 32)):
    path.mkdir(parents=True)
    for i in range(n):
        solid(path / f"{i:04d}.png", size, (10 * i, 0, 0))


def video_cfg(base, *extra):
    return cfg("data.peppa.source=folder", f"data.peppa.root={base / 'videos'}",
               f"data.peppa.captions={base / 'captions.tsv'}", "data.peppa.source_fps=10.0", "data.peppa.n_test=1",
               "data.peppa.upscale=true",
               *extra)


@pytest.fixture
def videos(tmp_path):
    root = tmp_path / "videos"
    frame_folder(root / "a", 12)
    frame_folder(root / "b", 10)
    frames = [Image.new("RGB", (32, 32), (10 * i, 0, 0)) for i in range(10)]
    frames[0].save(root / "c.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)  # 10 fps
    (root / "d.gif").write_bytes(b"GIF89a broken")
    (tmp_path / "captions.tsv").write_text("a\ta pink pig jumps\nb\ta sheep walks\nc\ta rabbit waves\nd\tbroken\n")
    return tmp_path


def test_video_folder_resampled_to_fps_and_clip_length(videos, tmp_path):
    out = tmp_path / "out"
    counts = write_dataset(make_plan("peppa", video_cfg(videos, "data.peppa.skip_bad=true"), 0), out)
    assert counts["train"] + counts["test"] == 3  # a, b, c; d is corrupt
    assert sum(json.loads((out / "meta.json").read_text())["skipped"].values()) == 1
    clips = [VideoFolder(out, s)[i] for s in ("train", "test") for i in range(len(VideoFolder(out, s)))]
    for clip in clips:
        assert clip["video"].shape == (5, 3, 64, 64)
        red = ((clip["video"][:, 0, 32, 32] + 1) * 127.5).round()
        assert red.tolist() == [0, 20, 40, 60, 80]  # 10 fps source -> every second frame at 5 fps
    assert {c["caption"] for c in clips} == {"a pink pig jumps", "a sheep walks", "a rabbit waves"}


def test_short_video_is_one_line_error_naming_it_and_no_output(videos, tmp_path):
    (videos / "videos" / "d.gif").unlink()
    frame_folder(videos / "videos" / "e", 3)
    with open(videos / "captions.tsv", "a") as f:
        f.write("e\ttoo short\n")
    with pytest.raises(UserError, match=r"too short for a 5-frame clip at 5 fps.*\(1\): e: too short: 0\.30 s") as err:
        write_dataset(make_plan("peppa", video_cfg(videos, "data.peppa.n_test=2"), 0), tmp_path / "out")
    assert "\n" not in str(err.value) and "skip_bad=true" in str(err.value)
    assert not (tmp_path / "out").exists()
    out = tmp_path / "skipped"
    counts = write_dataset(make_plan("peppa", video_cfg(videos, "data.peppa.skip_bad=true"), 0), out)
    meta = json.loads((out / "meta.json").read_text())
    assert counts["train"] + counts["test"] == 3 and meta["skipped"] == {"scan": 1}
    assert meta["skipped_inputs"][0]["input"] == "e" and "too short" in meta["skipped_inputs"][0]["reason"]


def test_rqf_long_image_is_resized_and_cut_into_overlapping_squares(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 800, 3), dtype=np.uint8)).save(tmp_path / "scroll.png")
    c = cfg("data.rqf.source=folder", f"data.rqf.image={tmp_path / 'scroll.png'}", "data.rqf.height=32",
            "data.rqf.crop=32", "data.rqf.stride=16", "data.rqf.test_width=64")
    plan = make_plan("rqf", c, 0)
    scroll = plan.extras["scroll.png"]()
    assert scroll.shape == (32, 640, 3)  # aspect kept: 800 * 32 / 40
    crops = [s.pixels for s in plan.splits["train"][1]()]
    assert len(crops) == (640 - 64 - 32) // 16 + 1
    assert all(np.array_equal(a[:, 16:], b[:, :16]) for a, b in zip(crops, crops[1:]))
    (tmp_path / "bad.png").write_bytes(b"garbage")
    with pytest.raises(UserError, match="unreadable"):
        make_plan("rqf", cfg("data.rqf.source=folder", f"data.rqf.image={tmp_path / 'bad.png'}"), 0)


@pytest.mark.parametrize("override, message", [
    ("data.lhqc.width=-64", "width"),
    ("data.rqf.stride=128", "stride"),
    ("data.lhqv.fps=0", "fps"),
    ("data.peppa.colour=red", "unknown config key"),
    ("data.lhqc.source=web", "source"),
])
def test_bad_config_value_is_one_line_error(override, message):
    with pytest.raises(UserError, match=message) as err:
        check_config(load_config([CONFIG], [override], check=False))
    assert "\n" not in str(err.value)


def test_cli_render_and_error_exit(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["data", "render", "peppa", "--out", str(out), "--set", "data.peppa.n_train=2",
                 "--set", "data.peppa.n_test=1"]) == 0
    assert len(VideoFolder(out, "train")) == 2
    assert main(["data", "preview", "peppa", "--out", str(tmp_path / "p"), "--n", "2"]) == 0
    assert (tmp_path / "p" / "peppa_test_01.gif").is_file() and (tmp_path / "p" / "captions.txt").is_file()
    capsys.readouterr()
    assert main(["data", "render", "lhqc", "--out", str(tmp_path / "x"), "--set", "data.lhqc.source=folder"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and not (tmp_path / "x").exists()


def test_a_captions_file_that_is_not_utf8_is_one_line_naming_it(tmp_path):
    from nuwa.data.adapters import read_manifest

    path = tmp_path / "caps.jsonl"
    path.write_bytes(b'{"file": "a.png", "caption": "caf\xe9"}\n')  # Latin-1, not UTF-8
    with pytest.raises(UserError, match=rf"captions file \(data.lhqc.captions\) {path} is not UTF-8 text \(byte 33\); save it as UTF-8") as exc:
        read_manifest(str(path), "lhqc")
    assert "\n" not in str(exc.value)
