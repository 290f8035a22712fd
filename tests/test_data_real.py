"""The folder adapters on real photos and videos installed from Debian packages (no network).

mate-backgrounds gives JPEG photos (baseline and progressive, up to 5640x3172); opencv-doc gives
sample videos (vtest.avi: MS-MPEG4 at 10 fps; tree.avi: Cinepak with irregular timestamps;
Megamind.avi: MPEG-4 at 23.976 fps). Every other format of the matrix (CMYK and EXIF-rotated JPEG,
RGBA / palette / 16-bit / grayscale PNG, WebP, MP4, WebM, frame folders, small, truncated and
garbage files) is made here from those real pixels. Skipped, with the install command as the
reason, where a package is not installed.
"""
from __future__ import annotations

import json
import struct
import zlib
from fractions import Fraction
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nuwa.core.config import REPO_ROOT, load_config
from nuwa.core.errors import UserError
from nuwa.data import ImageFolder, VideoFolder, make_plan, write_dataset
from nuwa.data.adapters import fit, open_image
from nuwa.data.realsets import manifests

CONFIG = REPO_ROOT / "config" / "config.yaml"
REAL = REPO_ROOT / "config" / "real.yaml"
MATE = Path("/usr/share/backgrounds/mate")
OPENCV = Path("/usr/share/doc/opencv-doc/examples/data")
needs_mate = pytest.mark.skipif(not (MATE / "nature" / "Dune.jpg").is_file(),
                                reason="real photos: Debian package mate-backgrounds is not installed "
                                       "(apt-get install mate-backgrounds)")
needs_opencv = pytest.mark.skipif(not (OPENCV / "vtest.avi").is_file(),
                                  reason="real videos: Debian package opencv-doc is not installed "
                                         "(apt-get install opencv-doc)")
SIDE = 96  # target size of the image matrix: big enough to see detail, small enough to be fast


def cfg(*overrides: str, files=(CONFIG,)) -> dict:
    return load_config(list(files), list(overrides))


def write_png16(path: Path, a: np.ndarray) -> None:
    """A 16-bit PNG (RGB or grey) written by hand: Pillow cannot write 16-bit RGB."""
    a = np.asarray(a, dtype=">u2")
    h, w = a.shape[:2]
    raw = b"".join(b"\x00" + a[r].tobytes() for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", w, h, 16, 2 if a.ndim == 3 else 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# ---------------------------------------------------------------- images
@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A real photo (Dune.jpg, 1680x1050 baseline JPEG), cut to 480x300 to keep the matrix fast."""
    with Image.open(MATE / "nature" / "Dune.jpg") as im:
        return im.convert("RGB").resize((480, 300), Image.Resampling.LANCZOS)


def import_one(tmp_path: Path, name: str, *extra: str) -> tuple[np.ndarray, dict]:
    """Import ``tmp_path/src/name`` as a one-image-per-split LHQC folder; its pixels and meta.json."""
    (tmp_path / "caps.jsonl").write_text(
        json.dumps({"file": name, "caption": "test image", "split": "train"}) + "\n"
        + json.dumps({"file": "ref.png", "caption": "reference", "split": "test"}) + "\n")
    out = tmp_path / "out"
    write_dataset(make_plan("lhqc", cfg("data.lhqc.source=folder", f"data.lhqc.root={tmp_path / 'src'}",
                                        f"data.lhqc.captions={tmp_path / 'caps.jsonl'}", f"data.lhqc.width={SIDE}",
                                        f"data.lhqc.height={SIDE}", *extra), 0), out)
    ds = ImageFolder(out, "train")
    pixels = ((ds[0]["image"].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.int16)
    return pixels, json.loads((out / "meta.json").read_text())


def reference(photo: Image.Image) -> np.ndarray:
    return fit(photo, SIDE, SIDE).astype(np.int16)


def make_variant(kind: str, photo: Image.Image, path_dir: Path) -> tuple[str, np.ndarray]:
    """Write ``photo`` in one format of the matrix; return its name and the pixels the import must give."""
    ref = reference(photo)
    a = np.asarray(photo)
    if kind == "jpeg-baseline":
        photo.save(path_dir / "v.jpg", quality=95)
        return "v.jpg", ref
    if kind == "jpeg-progressive":
        photo.save(path_dir / "v.jpg", quality=95, progressive=True)
        assert Image.open(path_dir / "v.jpg").info.get("progressive")
        return "v.jpg", ref
    if kind == "jpeg-cmyk":
        photo.convert("CMYK").save(path_dir / "v.jpg", quality=95)
        assert Image.open(path_dir / "v.jpg").mode == "CMYK"
        return "v.jpg", ref
    if kind.startswith("jpeg-exif"):
        orientation = int(kind.rsplit("-", 1)[1])
        # store the pixels as a camera would (rotated / mirrored) and tag how to show them upright
        stored = {3: photo.transpose(Image.Transpose.ROTATE_180), 6: photo.transpose(Image.Transpose.ROTATE_90),
                  8: photo.transpose(Image.Transpose.ROTATE_270), 2: photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                  }[orientation]
        exif = Image.Exif()
        exif[0x0112] = orientation
        stored.save(path_dir / "v.jpg", quality=95, exif=exif.tobytes())
        return "v.jpg", ref
    if kind == "png-rgb":
        photo.save(path_dir / "v.png")
        return "v.png", ref
    if kind == "png-rgba":  # left half transparent over junk red: must come out white, not red or black
        rgba = np.dstack([a, np.full(a.shape[:2], 255, np.uint8)])
        rgba[:, : a.shape[1] // 2] = (255, 0, 0, 0)
        Image.fromarray(rgba, "RGBA").save(path_dir / "v.png")
        want = a.copy()
        want[:, : a.shape[1] // 2] = 255
        return "v.png", fit(Image.fromarray(want), SIDE, SIDE).astype(np.int16)
    if kind == "png-palette":
        pal = photo.quantize(256)
        pal.save(path_dir / "v.png")
        assert Image.open(path_dir / "v.png").mode == "P"
        return "v.png", fit(pal.convert("RGB"), SIDE, SIDE).astype(np.int16)
    if kind == "png-palette-transparent":
        pal = photo.quantize(255)
        data = np.asarray(pal).copy()
        data[:, : a.shape[1] // 2] = 255  # index 255: transparent
        p = Image.fromarray(data, "P")
        p.putpalette(pal.getpalette()[: 255 * 3] + [255, 0, 0])
        p.save(path_dir / "v.png", transparency=255)
        want = np.asarray(pal.convert("RGB")).copy()
        want[:, : a.shape[1] // 2] = 255
        return "v.png", fit(Image.fromarray(want), SIDE, SIDE).astype(np.int16)
    if kind == "png-16bit-rgb":
        write_png16(path_dir / "v.png", a.astype(np.uint16) * 257)
        return "v.png", ref
    if kind == "png-16bit-grey":
        grey = np.asarray(photo.convert("L"))
        write_png16(path_dir / "v.png", grey.astype(np.uint16) * 257)
        assert Image.open(path_dir / "v.png").mode.startswith("I")
        return "v.png", fit(photo.convert("L"), SIDE, SIDE).astype(np.int16)
    if kind == "png-grey":
        photo.convert("L").save(path_dir / "v.png")
        return "v.png", fit(photo.convert("L"), SIDE, SIDE).astype(np.int16)
    if kind == "webp-lossless":
        photo.save(path_dir / "v.webp", lossless=True)
        return "v.webp", ref
    if kind == "webp-lossy":
        photo.save(path_dir / "v.webp", quality=90)
        return "v.webp", ref
    raise AssertionError(kind)


# exact: lossless formats must give the reference bit for bit (up to 1 for the 16 -> 8 bit rounding)
MATRIX = {"jpeg-baseline": 4.0, "jpeg-progressive": 4.0, "jpeg-cmyk": 5.0, "jpeg-exif-3": 4.0, "jpeg-exif-6": 4.0,
          "jpeg-exif-8": 4.0, "jpeg-exif-2": 4.0, "png-rgb": 0.0, "png-rgba": 0.0, "png-palette": 0.0,
          "png-palette-transparent": 0.0, "png-16bit-rgb": 0.0, "png-16bit-grey": 0.0, "png-grey": 0.0,
          "webp-lossless": 0.0, "webp-lossy": 5.0}


@needs_mate
@pytest.mark.parametrize("kind", sorted(MATRIX))
def test_image_format_matrix_on_a_real_photo(kind, photo, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    name, want = make_variant(kind, photo, src)
    photo.save(src / "ref.png")
    got, meta = import_one(tmp_path, name)
    assert got.shape == (SIDE, SIDE, 3)
    err = np.abs(got - want).mean()
    assert err <= MATRIX[kind] + 1e-9, f"{kind}: mean abs error {err:.2f} > {MATRIX[kind]}"
    if MATRIX[kind] == 0.0:
        assert np.abs(got - want).max() <= 1
    assert meta["skipped"] == {} and meta["counts"] == {"train": 1, "test": 1}


@needs_mate
def test_installed_progressive_jpeg_and_exif_tagged_photos_import(tmp_path):
    """As installed: FreshFlower.jpg is progressive, Storm.jpg carries an EXIF orientation tag."""
    flower, storm = MATE / "nature" / "FreshFlower.jpg", MATE / "nature" / "Storm.jpg"
    assert Image.open(flower).info.get("progressive") and Image.open(storm).getexif().get(0x0112) == 1
    for path in (flower, storm):
        image = open_image(path)
        assert image.mode == "RGB" and image.size == Image.open(path).size
        assert fit(image, SIDE, SIDE).std() > 10  # a real picture, not a blank


@needs_mate
def test_image_smaller_than_the_target_is_refused_upscaled_or_skipped(photo, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    photo.resize((60, 40)).save(src / "small.jpg")
    photo.save(src / "ref.png")
    with pytest.raises(UserError, match=r"small\.jpg: 40x40 px after cropping to 96:96, smaller than the 96x96 "
                                        r"target.*upscale=true") as err:
        import_one(tmp_path, "small.jpg")
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()
    got, _ = import_one(tmp_path, "small.jpg", "data.lhqc.upscale=true")
    assert got.shape == (SIDE, SIDE, 3) and got.std() > 10
    with pytest.raises(UserError, match="the train split of .* is empty"):  # skipped: nothing left to train on
        import_one(tmp_path, "small.jpg", "data.lhqc.skip_bad=true")


@needs_mate
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_real_jpeg_is_named_in_one_line_or_skipped_and_counted(damage, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    data = (MATE / "nature" / "Dune.jpg").read_bytes()
    (src / "bad.jpg").write_bytes(data[: len(data) // 3] if damage == "truncated" else b"\xff\xd8 not a jpeg" * 10)
    for i in range(4):
        (src / f"ok{i}.jpg").write_bytes(data)
    (tmp_path / "caps.tsv").write_text("".join(f"{n}\ta dune\n" for n in ("bad", "ok0", "ok1", "ok2", "ok3")))
    base = ("data.lhqc.source=folder", f"data.lhqc.root={src}", f"data.lhqc.captions={tmp_path / 'caps.tsv'}",
            "data.lhqc.n_test=1")
    with pytest.raises(UserError, match=r"bad\.jpg: unreadable or corrupt image.*skip_bad=true") as err:
        write_dataset(make_plan("lhqc", cfg(*base), 0), tmp_path / "out")
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()
    counts = write_dataset(make_plan("lhqc", cfg(*base, "data.lhqc.skip_bad=true"), 0), tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert counts["train"] + counts["test"] == 4 and sum(meta["skipped"].values()) == 1
    assert meta["skipped_inputs"][0]["input"] == "bad.jpg"


@needs_mate
def test_rqf_scroll_from_a_band_of_the_largest_real_jpeg(tmp_path):
    """Fig. 1's setting on a real 5640x3172 progressive JPEG: one image -> a 16:1 band -> overlapping crops."""
    image = MATE / "abstract" / "Elephants_5640x3172.jpg"
    c = cfg("data.rqf.source=folder", f"data.rqf.image={image}", "data.rqf.box=[0, 1300, 5640, 1652]",
            "data.rqf.stride=8", "data.rqf.test_width=128")
    plan = make_plan("rqf", c, 0)
    scroll = plan.extras["scroll.png"]()
    assert scroll.shape == (64, 1025, 3) and scroll.std() > 10
    crops = [s.pixels for s in plan.splits["train"][1]()]
    assert len(crops) == (1025 - 128 - 64) // 8 + 1 == plan.splits["train"][0]
    assert np.array_equal(crops[0][:, 8:], crops[1][:, :-8])
    with pytest.raises(UserError, match="352 px tall in data.rqf.box, less than data.rqf.height=512"):
        make_plan("rqf", cfg(*(f"{k}" for k in ("data.rqf.source=folder", f"data.rqf.image={image}",
                                                "data.rqf.box=[0, 1300, 5640, 1652]", "data.rqf.height=512",
                                                "data.rqf.crop=512", "data.rqf.stride=256",
                                                "data.rqf.test_width=512"))), 0)


# ---------------------------------------------------------------- videos
def decoded(path: Path, until: float = 1e9) -> list[tuple[float, np.ndarray]]:
    """The frames of a video (up to about ``until`` s) with their times from the first frame, straight from
    PyAV: the test's own oracle."""
    import av

    frames = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            if f.time > until + 1.0:
                break
            frames.append((f.time, f.to_ndarray(format="rgb24")))
    times = sorted(t for t, _ in frames)  # display order; AVI B-frames carry decode-order stamps
    return [(t - times[0], a) for t, (_, a) in zip(times, frames)]


def nearest(frames: list[tuple[float, np.ndarray]], t: float) -> np.ndarray:
    times = np.array([ft for ft, _ in frames])
    return frames[int(np.argmin(np.abs(times - t)))][1]  # argmin takes the earlier frame on a tie


def video_cfg(root: Path, manifest: Path, *extra: str) -> dict:
    return cfg("data.lhqv.source=folder", f"data.lhqv.root={root}", f"data.lhqv.captions={manifest}",
               "data.lhqv.width=64", "data.lhqv.height=64", *extra)


def import_clips(tmp_path: Path, root: Path, lines: list[dict], *extra: str) -> tuple[list[np.ndarray], dict]:
    manifest = tmp_path / "clips.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out"
    write_dataset(make_plan("lhqv", video_cfg(root, manifest, *extra), 0), out)
    clips = []
    for split in ("train", "test"):
        ds = VideoFolder(out, split)
        for i in range(len(ds)):
            clips.append(((ds[i]["video"].permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().astype(np.int16))
    return clips, json.loads((out / "meta.json").read_text())


@needs_opencv
@pytest.mark.parametrize("name, start", [("vtest.avi", 2.0), ("tree.avi", 3.0), ("Megamind.avi", 1.0),
                                         ("Megamind_bugy.avi", 1.0)])
def test_real_avi_resampled_to_5_fps_by_nearest_frame_in_time(name, start, tmp_path):
    """MS-MPEG4 at 10 fps, Cinepak with irregular timestamps (~2.5 decoded frames/s), MPEG-4 at 23.976 and 30 fps."""
    clips, meta = import_clips(tmp_path, OPENCV, [{"file": name, "start": start, "split": "train"},
                                                  {"file": name, "start": 0.0, "split": "test"}])
    assert meta["counts"] == {"train": 1, "test": 1} and meta["skipped"] == {}
    frames = decoded(OPENCV / name, until=start + 1.0)
    if name.startswith("Megamind"):  # constant-rate MPEG-4: display times are the frame index over the rate
        rate = 23.976 if name == "Megamind.avi" else 30.0
        assert all(abs(t - k / rate) < 1e-3 for k, (t, _) in enumerate(frames))
    for clip, s in zip(clips, (start, 0.0)):
        assert clip.shape == (5, 64, 64, 3)
        for k in range(5):
            want = fit(Image.fromarray(nearest(frames, s + k / 5.0)), 64, 64).astype(np.int16)
            assert np.array_equal(clip[k], want), f"{name} frame {k} is not the source frame nearest {s + k / 5:g} s"


@needs_opencv
def test_frame_folder_gives_the_same_clip_as_the_video_file(tmp_path):
    frames = decoded(OPENCV / "vtest.avi", until=2.0)[:25]
    root = tmp_path / "videos"
    (root / "vtest_frames").mkdir(parents=True)
    for i, (_, a) in enumerate(frames):
        Image.fromarray(a).save(root / "vtest_frames" / f"{i:04d}.png", compress_level=1)
    (root / "vtest.avi").symlink_to(OPENCV / "vtest.avi")
    clips, _ = import_clips(tmp_path, root, [{"file": "vtest_frames", "start": 1.0, "split": "train"},
                                             {"file": "vtest.avi", "start": 1.0, "split": "test"}],
                            "data.lhqv.source_fps=10.0")
    assert np.array_equal(clips[0], clips[1])


def encode(path: Path, frames: list[np.ndarray], codec: str, fps: int) -> None:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height = frames[0].shape[1], frames[0].shape[0]
        s.pix_fmt = "yuv420p"
        s.time_base = Fraction(1, fps)
        for a in frames:
            for packet in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)


@needs_opencv
@pytest.mark.parametrize("suffix, codec", [(".mp4", "libx264"), (".webm", "libvpx-vp9"), (".mkv", "mpeg4")])
def test_mp4_webm_mkv_made_from_real_frames(suffix, codec, tmp_path):
    frames = [a[:, 96:672] for _, a in decoded(OPENCV / "vtest.avi", until=3.0)[:30]]  # 3 s of 576x576 at 10 fps
    root = tmp_path / "videos"
    root.mkdir()
    encode(root / f"clip{suffix}", frames, codec, 10)
    clips, meta = import_clips(tmp_path, root, [{"file": f"clip{suffix}", "start": 0.5, "split": "train"},
                                                {"file": f"clip{suffix}", "start": 2.0, "split": "test"}])
    assert meta["counts"] == {"train": 1, "test": 1}
    for clip, start in zip(clips, (0.5, 2.0)):
        for k in range(5):
            want = fit(Image.fromarray(frames[round((start + k / 5) * 10)]), 64, 64).astype(np.int16)
            assert np.abs(clip[k] - want).mean() < 6  # lossy codec: close to the source frame
    with pytest.raises(UserError, match=r"too short for a 5-frame clip at 5 fps.*clip" + suffix.replace(".", r"\.")
                       + r" \(from 2\.5 s\): too short: 3\.00 s at 10 fps") as err:
        import_clips(tmp_path, root, [{"file": f"clip{suffix}", "start": 2.5, "split": "train"},
                                      {"file": f"clip{suffix}", "start": 0.0, "split": "test"}])
    assert "\n" not in str(err.value) and "skip_bad=true" in str(err.value)


@needs_opencv
def test_short_truncated_and_garbage_videos_named_or_skipped(tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    frames = [a for _, a in decoded(OPENCV / "vtest.avi", until=0.5)[:5]]
    encode(root / "short.mp4", frames, "libx264", 10)                          # 0.5 s: too short for 0.8 s
    (root / "cut.avi").write_bytes((OPENCV / "vtest.avi").read_bytes()[:60_000])  # header + a few frames
    (root / "junk.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 50)
    (root / "good.avi").symlink_to(OPENCV / "vtest.avi")
    lines = [{"file": n, "split": s} for n, s in (("short.mp4", "train"), ("cut.avi", "train"), ("junk.mp4", "train"),
                                                  ("good.avi", "train"), ("good.avi", "test"))]
    with pytest.raises(UserError, match=r"junk\.mp4: unreadable or corrupt video") as err:
        import_clips(tmp_path, root, lines)
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()
    clips, meta = import_clips(tmp_path, root, lines, "data.lhqv.skip_bad=true")
    assert len(clips) == 2 and sum(meta["skipped"].values()) == 3
    reasons = {s["input"]: s["reason"] for s in meta["skipped_inputs"]}
    assert set(reasons) == {"short.mp4", "cut.avi", "junk.mp4"}
    assert "too short" in reasons["short.mp4"] and "unreadable" in reasons["junk.mp4"]


@needs_opencv
def test_gif_made_from_real_frames(tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    frames = [Image.fromarray(a).resize((128, 96)) for _, a in decoded(OPENCV / "vtest.avi", until=1.2)[:12]]
    frames[0].save(root / "walk.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    clips, _ = import_clips(tmp_path, root, [{"file": "walk.gif", "split": "train"}, {"file": "walk.gif", "start": 0.2,
                                                                                      "split": "test"}])
    assert len(clips) == 2 and clips[0].shape == (5, 64, 64, 3) and clips[0].std() > 10


# ---------------------------------------------------------------- config/real.yaml
def test_committed_manifests_are_what_realsets_writes():
    for path, text in manifests().items():
        assert path.read_text() == text, f"{path} is stale: run python -m nuwa.data.realsets"


@needs_mate
@needs_opencv
@pytest.mark.parametrize("world", ["lhqc", "rqf", "lhqv"])
def test_real_overlay_plans_every_world_and_its_first_samples(world, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # the overlay's manifest paths are relative to the repository
    c = cfg(files=(CONFIG, REAL))
    plan = make_plan(world, c, int(c["seed"]))
    assert plan.source == "folder" and plan.info.get("skipped", {}) == {}
    expected = {"lhqc": (884, 256), "rqf": (105, 9), "lhqv": (258, 35)}[world]
    assert (plan.splits["train"][0], plan.splits["test"][0]) == expected
    first = list(islice(plan.splits["test"][1](), 3))
    assert len(first) == 3 and all(s.pixels.dtype == np.uint8 and s.pixels.std() > 5 for s in first)
    if world != "rqf":
        assert all(s.caption and s.attrs for s in first)


def test_real_overlay_passes_every_check_and_plans_tables_2_3_4_and_the_scroll():
    import os
    import subprocess
    import sys

    from nuwa.commands.config import check_all

    check_all(cfg(files=(CONFIG, REAL)))
    targets = ["results/table2.csv", "results/table3.csv", "results/table4.csv", "results/figures/figure_scroll.png"]
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-F", "--configfile=config/real.yaml", *targets],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr + r.stdout
    assert "work/real/data/lhqc" in r.stdout and "config/real/lhqc.jsonl" in r.stdout  # the manifest is an input
    for rule, n in (("render", 3), ("vqgan", 2), ("pg_vqgan", 1), ("proxy_backbone", 3), ("train", 7),
                    ("check_backbones", 1), ("table", 3), ("sample_figure", 1)):
        assert f"\n{rule} " in r.stdout and any(line.split() == [rule, str(n)] for line in r.stdout.splitlines()), rule
