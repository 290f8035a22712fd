"""Real-data adapters (``source: folder``): import real images/videos into the dataset layout.

- LHQC: an image folder + a captions file. Each image is centre-cropped to the target aspect ratio
  and resized (never stretched). ``wide_root`` (optional) holds real panoramas for test_wide.
- RQF: one long image, resized to ``height`` keeping its aspect ratio, cut into ``crop`` squares
  every ``stride`` columns (the last ``test_width`` columns give the test crops).
- LHQ-V / PeppaPig: a folder of video files (anything imageio reads) or of frame folders, resampled
  to ``fps`` (nearest frame in time) and cut into clips of ``frames`` frames; PeppaPig needs captions.

Captions files: ``.jsonl`` lines ``{"file": NAME, "caption": TEXT[, "split": "train"|"test"]}`` or
``.tsv`` lines ``NAME<TAB>TEXT[<TAB>SPLIT]``; NAME is the path relative to ``root``, the bare file
name, or the file name without its extension. Without a split column the test split is ``n_test`` items drawn with the seed.
Unreadable or unsupported files (and files without a caption) are skipped and counted in the log
and in meta.json; a missing captions file, a video shorter than one clip, a bad value or an
unreadable single RQF image stop the import with one line, and nothing is written.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from nuwa.data.config import LHQCConfig, RQFConfig, VideoConfig
from nuwa.data.folders import Plan, Sample
from nuwa.errors import UserError
from nuwa.io import require_file

log = logging.getLogger(__name__)

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif"}
TEXT_WORLDS = {"lhqc", "peppa"}


def fit(image: Image.Image, width: int, height: int) -> np.ndarray:
    """Centre-crop ``image`` to the aspect ratio ``width:height``, then resize: uint8 [H, W, 3]."""
    w, h = image.size
    if w * height > h * width:  # too wide: crop the sides
        cw, ch = round(h * width / height), h
    else:                       # too tall: crop top and bottom
        cw, ch = w, round(w * height / width)
    left, top = (w - cw) // 2, (h - ch) // 2
    box = (left, top, left + cw, top + ch)
    return np.asarray(image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS, box=box))


def open_image(path: Path) -> Image.Image | None:
    """The decoded image, or None when it is unreadable."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        return None


def read_captions(path: str, world: str) -> dict[str, dict]:
    """NAME -> {"caption", "split"} from a .jsonl or .tsv captions file."""
    if not path:
        raise UserError(f"data.{world}.captions is not set; point it at a captions file (.jsonl or .tsv)")
    p = require_file(path, f"captions file (data.{world}.captions)", "fix the path or create the file")
    out = {}
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            if p.suffix == ".jsonl":
                rec = json.loads(line)
                name, text, split = rec["file"], rec["caption"], rec.get("split")
            else:
                name, text, *rest = line.split("\t")
                split = rest[0] if rest else None
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"captions file {p} line {n} is malformed ({exc}); expected "
                            '{"file": ..., "caption": ...} (.jsonl) or NAME<TAB>CAPTION (.tsv)') from exc
        if split not in (None, "train", "test"):
            raise UserError(f"captions file {p} line {n}: split {split!r} must be train or test")
        out[str(name)] = {"caption": str(text), "split": split}
    return out


def caption_of(name: str, captions: dict[str, dict] | None) -> dict | None:
    if captions is None:
        return {"caption": "", "split": None}
    return captions.get(name) or captions.get(Path(name).name) or captions.get(Path(name).stem)


def split_items(names: list[str], captions: dict | None, n_test: int, seed: int, where: str) -> dict[str, list[str]]:
    """Train/test lists: the captions' split column, or ``n_test`` names drawn with ``seed``."""
    named = [n for n in names if caption_of(n, captions) is not None]
    if len(named) < len(names):
        log.warning("%s: skipped %d inputs without a caption", where, len(names) - len(named))
    if not named:
        raise UserError(f"no usable inputs in {where} (none has a supported type and a caption); check the path")
    marked = {n: caption_of(n, captions)["split"] for n in named}
    if any(s is not None for s in marked.values()):
        return {s: [n for n in named if (marked[n] or "train") == s] for s in ("train", "test")}
    if n_test >= len(named):
        raise UserError(f"{where} has {len(named)} inputs but n_test={n_test}; lower n_test")
    order = np.random.default_rng(seed).permutation(len(named))
    test = set(order[:n_test].tolist())
    return {"train": [n for i, n in enumerate(named) if i not in test],
            "test": [n for i, n in enumerate(named) if i in test]}


def list_inputs(root: str, world: str, exts: set[str], dirs: bool = False) -> tuple[Path, list[str], int]:
    """Sorted inputs below ``root`` (relative names) and the count of unsupported files."""
    if not root:
        raise UserError(f"data.{world}.root is not set; point it at the folder of real data")
    base = Path(root)
    if not base.is_dir():
        raise UserError(f"data folder not found: {base} (fix data.{world}.root)")
    names, unsupported = [], 0
    for p in sorted(base.iterdir() if dirs else base.rglob("*")):
        if p.name.startswith("."):
            continue
        if p.is_file() and p.suffix.lower() in exts:
            names.append(str(p.relative_to(base)))
        elif dirs and p.is_dir():
            names.append(p.name)
        elif p.is_file():
            unsupported += 1
    return base, names, unsupported


def report(info: dict, split: str, skipped: int, where: str) -> None:
    info.setdefault("skipped", {})[split] = skipped
    if skipped:
        log.warning("%s: skipped %d unreadable or uncaptioned inputs in %s", where, skipped, split)


def lhqc_plan(cfg: LHQCConfig, seed: int) -> Plan:
    base, names, unsupported = list_inputs(cfg.root, "lhqc", IMAGE_EXTS)
    captions = read_captions(cfg.captions, "lhqc")
    splits = split_items(names, captions, cfg.n_test, seed, str(base))
    info: dict = {"unsupported_files": unsupported, "root": str(base)}
    if unsupported:
        log.warning("%s: %d files of unsupported type ignored", base, unsupported)

    def images(split: str, folder: Path, files: list[str], width: int) -> Iterator[Sample]:
        skipped = 0
        for name in files:
            image = open_image(folder / name)
            if image is None:
                skipped += 1
                continue
            text = caption_of(name, captions)
            yield Sample(fit(image, width, cfg.height), text["caption"] if text else "", {})
        report(info, split, skipped, str(folder))

    plan_splits = {s: (len(f), lambda s=s, f=f: images(s, base, f, cfg.width)) for s, f in splits.items()}
    if cfg.wide_root:
        wide_base, wide_names, _ = list_inputs(cfg.wide_root, "lhqc", IMAGE_EXTS)
        wide = cfg.width * cfg.wide_factor
        plan_splits["test_wide"] = (len(wide_names), lambda: images("test_wide", wide_base, wide_names, wide))
    return Plan(world="lhqc", source="folder", kind="image", width=cfg.width, height=cfg.height, frames=1, fps=0.0,
                seed=seed, splits=plan_splits, info=info)


def rqf_plan(cfg: RQFConfig, seed: int) -> Plan:
    from nuwa.data.worlds.rqf import crop_starts

    path = require_file(cfg.image, "RQF scroll image (data.rqf.image)", "set data.rqf.image to the long image")
    image = open_image(path)
    if image is None:
        raise UserError(f"RQF scroll image {path} is unreadable or corrupt; replace it with a valid PNG/JPEG")
    w, h = image.size
    width = round(w * cfg.height / h)
    if width < cfg.test_width + cfg.crop:
        raise UserError(f"RQF scroll {path} is only {width} px wide at height {cfg.height}; "
                        f"need at least test_width + crop = {cfg.test_width + cfg.crop}")
    scroll = np.asarray(image.resize((width, cfg.height), Image.Resampling.LANCZOS))
    cut = width - cfg.test_width
    ranges = {"train": (0, cut), "test": (cut, width)}

    def crops(split: str) -> Iterator[Sample]:
        for x0 in crop_starts(*ranges[split], cfg.crop, cfg.stride):
            yield Sample(np.ascontiguousarray(scroll[:, x0:x0 + cfg.crop]), "", {})

    return Plan(world="rqf", source="folder", kind="image", width=cfg.crop, height=cfg.height, frames=1, fps=0.0,
                seed=seed, splits={k: (len(crop_starts(*r, cfg.crop, cfg.stride)), lambda k=k: crops(k))
                                   for k, r in ranges.items()},
                extras={"scroll.png": lambda: scroll},
                info={"scroll_width": width, "stride": cfg.stride, "test_from": cut, "image": str(path)})


def iter_frames(path: Path, default_fps: float) -> tuple[Iterator[np.ndarray], float] | None:
    """Lazy RGB frames of a video file or a frame folder, and its frame rate; None when unreadable."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)

        def frames() -> Iterator[np.ndarray]:
            for f in files:
                image = open_image(f)
                if image is None:
                    raise ValueError(f"unreadable frame {f}")
                yield np.asarray(image)
        return frames(), default_fps
    import imageio.v3 as iio

    try:
        meta = iio.immeta(path)
        fps = float(meta["fps"]) if meta.get("fps") else 1000.0 / meta["duration"] if meta.get("duration") else default_fps
        return (rgb(f) for f in iio.imiter(path)), fps
    except Exception:  # imageio raises many types for unreadable or unsupported files
        return None


def rgb(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=-1)
    return frame[..., :3]


def resample(frames: Iterator[np.ndarray], src_fps: float, fps: float, n: int, clips: int
             ) -> tuple[list[np.ndarray], int]:
    """Up to ``clips`` consecutive clips of ``n`` frames at ``fps`` (nearest source frame in time).

    Returns the clips found and the number of source frames read.
    """
    wanted = [int(round(k / fps * src_fps)) for k in range(n * clips)]
    picked: dict[int, np.ndarray] = {}
    targets = set(wanted)
    seen = 0
    for i, frame in enumerate(frames):
        seen = i + 1
        if i in targets:
            picked[i] = frame
        if i >= wanted[-1]:
            break
    full = sum(all(w in picked for w in wanted[c * n:(c + 1) * n]) for c in range(clips))
    return [np.stack([picked[w] for w in wanted[c * n:(c + 1) * n]]) for c in range(full)], seen


def video_plan(world: str, cfg: VideoConfig, seed: int) -> Plan:
    base, names, unsupported = list_inputs(cfg.root, world, VIDEO_EXTS, dirs=True)
    captions = read_captions(cfg.captions, world) if world in TEXT_WORLDS or cfg.captions else None
    splits = split_items(names, captions, cfg.n_test, seed, str(base))
    info: dict = {"unsupported_files": unsupported, "root": str(base)}
    need = (cfg.frames - 1) / cfg.fps

    def clips(split: str, files: list[str]) -> Iterator[Sample]:
        skipped = 0
        for name in files:
            source = iter_frames(base / name, cfg.source_fps)
            try:
                found, seen = resample(source[0], source[1], cfg.fps, cfg.frames, cfg.clips_per_video) if source else ([], -1)
            except Exception:  # a corrupt frame or stream in the middle of a video
                found, seen = [], -1
            if seen < 0:
                skipped += 1
                continue
            if not found:
                raise UserError(f"video {base / name} is too short: {seen} frames at {source[1]:g} fps, but a clip "
                                f"needs {need:g} s ({cfg.frames} frames at {cfg.fps:g} fps); remove it or lower "
                                f"data.{world}.frames")
            text = caption_of(name, captions)
            for clip in found:
                yield Sample(np.stack([fit(Image.fromarray(f), cfg.width, cfg.height) for f in clip]),
                             text["caption"], {})
        report(info, split, skipped, str(base))

    return Plan(world=world, source="folder", kind="video", width=cfg.width, height=cfg.height, frames=cfg.frames,
                fps=cfg.fps, seed=seed, splits={s: (len(f) * cfg.clips_per_video, lambda s=s, f=f: clips(s, f))
                                                for s, f in splits.items()}, info=info)


def plan(world: str, cfg: LHQCConfig | RQFConfig | VideoConfig, seed: int) -> Plan:
    """The folder plan of ``world`` for its config section."""
    if world == "lhqc":
        return lhqc_plan(cfg, seed)
    if world == "rqf":
        return rqf_plan(cfg, seed)
    return video_plan(world, cfg, seed)
