"""Real-data adapters (``source: folder``): import real images/videos into the dataset layout.

- LHQC: an image folder + a captions file (a *manifest*). Each image, or each crop box the manifest
  names, is centre-cropped to the target aspect ratio and resized (never stretched). ``wide_root``
  (optional) holds real panoramas for test_wide.
- RQF: one long image (or the ``box`` of it), resized to ``height`` keeping its aspect ratio, cut
  into ``crop`` squares every ``stride`` columns (the last ``test_width`` columns give the test crops).
- LHQ-V / PeppaPig: a folder of video files (decoded with PyAV: AVI, MP4, MOV, MKV, WEBM, GIF, ...)
  or of frame folders, resampled to ``fps`` by taking the source frame nearest in time to each target
  time (the frames' own timestamps, so variable-rate files come out right) and cut into clips of
  ``frames`` frames; PeppaPig needs captions, LHQ-V may have a manifest (start times, crop boxes).

Manifest / captions files: ``.jsonl`` lines ``{"file": NAME, "caption": TEXT[, "split": "train"|"test"]
[, "box": [left, top, right, bottom]][, "start": SECONDS][, "attrs": {...}]}`` or ``.tsv`` lines
``NAME<TAB>TEXT[<TAB>SPLIT]``. NAME is the path relative to ``root``, the bare file name, or the file
name without its extension. One line is one sample: a file may be named on several lines (several
crops of one photo, several clips of one video). Without a split column the test split is ``n_test``
samples drawn with the seed. ``attrs`` (categorical labels) go to captions.jsonl unchanged; the
proxy image backbone learns them.

Images: any Pillow-readable file (JPEG incl. progressive and CMYK, PNG incl. RGBA, palette, 16-bit
and grayscale, WebP, BMP, TIFF). EXIF orientation is applied; transparency is composited onto
white; 16-bit samples are scaled to 8 bits. An input smaller than the target (after the aspect
crop) is refused unless ``upscale: true``.

Bad inputs (unreadable, corrupt, too small, a video too short for one clip): by default the import
stops with one line naming the file and the fix, and writes nothing; with ``skip_bad: true`` they
are skipped, counted (``skipped`` in meta.json) and named (``skipped_inputs``). Files without a
caption are left out and counted (``uncaptioned``); files of other types are counted
(``unsupported_files``).
"""
from __future__ import annotations

import contextlib
import heapq
import json
import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image, ImageOps

from nuwa.core.errors import UserError
from nuwa.core.io import read_text, require_file
from nuwa.data.config import LHQCConfig, RQFConfig, VideoConfig
from nuwa.data.folders import Plan, Sample

log = logging.getLogger(__name__)

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif", ".m4v", ".mpg", ".mpeg", ".ogv", ".wmv"}
TEXT_WORLDS = {"lhqc", "peppa"}
BACKGROUND = (255, 255, 255)  # transparent pixels are composited onto white
MAX_LISTED = 50               # skipped inputs named in meta.json (all are counted)
REORDER = 16                  # frames whose timestamps may come out of order (B-frames in AVI)
Box = tuple[int, int, int, int]


class BadInput(Exception):
    """One input that cannot be used (unreadable, too small, too short): skipped or a UserError."""


# ---------------------------------------------------------------- images
def to_rgb(image: Image.Image) -> Image.Image:
    """RGB 8-bit of any Pillow image: EXIF orientation applied, alpha over white, 16-bit scaled."""
    image = ImageOps.exif_transpose(image) or image
    mode = image.mode
    if mode.startswith("I") or mode == "F":  # 16/32-bit integer or float grey: scale, don't clip
        a = np.asarray(image, dtype=np.float64)
        if mode == "F" and a.size and a.max() <= 1.0:
            a = a * 255.0
        elif not mode.startswith("I;8"):
            a = a / 257.0  # 16-bit range (PNG, TIFF) onto 0..255
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8)).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK (incl. Adobe-inverted), YCbCr, RGB


def open_image(path: Path) -> Image.Image:
    """The decoded RGB image; raises BadInput naming the reason when it is unreadable."""
    try:
        with Image.open(path) as im:
            im.load()
            return to_rgb(im)
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError, EOFError) as exc:
        raise BadInput(f"unreadable or corrupt image ({type(exc).__name__}: {exc})") from exc


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) after EXIF orientation, from the header only; BadInput when unreadable."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90 degrees
                w, h = h, w
            return w, h
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError, EOFError) as exc:
        raise BadInput(f"unreadable or corrupt image ({type(exc).__name__}: {exc})") from exc


def aspect_box(region: Box, width: int, height: int) -> Box:
    """The centred sub-box of ``region`` with the aspect ratio ``width:height``."""
    l, t, r, b = region
    w, h = r - l, b - t
    if w * height > h * width:  # too wide: crop the sides
        cw, ch = round(h * width / height), h
    else:                       # too tall: crop top and bottom
        cw, ch = w, round(w * height / width)
    left, top = l + (w - cw) // 2, t + (h - ch) // 2
    return left, top, left + cw, top + ch


def check_region(size: tuple[int, int], box: Box | None, width: int, height: int, upscale: bool) -> Box:
    """The aspect-cropped region of an input of ``size``; BadInput when it is smaller than the target."""
    region = box or (0, 0, *size)
    if box and (box[2] > size[0] or box[3] > size[1]):
        raise BadInput(f"box {list(box)} reaches outside the {size[0]}x{size[1]} input")
    crop = aspect_box(region, width, height)
    cw, ch = crop[2] - crop[0], crop[3] - crop[1]
    if (cw < width or ch < height) and not upscale:
        raise BadInput(f"{cw}x{ch} px after cropping to {width}:{height}, smaller than the {width}x{height} target "
                       "(remove it, or set upscale=true to upscale small inputs)")
    return crop


def fit(image: Image.Image, width: int, height: int, box: Box | None = None, upscale: bool = True) -> np.ndarray:
    """Crop ``image`` to ``box`` (default: all of it), centre-crop that to the aspect ratio
    ``width:height``, then resize (Lanczos): uint8 [H, W, 3]. Never stretches."""
    crop = check_region(image.size, box, width, height, upscale)
    return np.asarray(image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS, box=crop))


# ---------------------------------------------------------------- manifests (captions files)
@dataclass(frozen=True)
class Entry:
    """One line of a manifest: one sample of ``file`` (optionally a crop box / a start time)."""
    file: str
    caption: str = ""
    split: str | None = None
    box: Box | None = None
    start: float = 0.0
    attrs: dict = field(default_factory=dict, hash=False, compare=False)
    line: int = 0


@dataclass(frozen=True)
class Item:
    name: str      # path relative to root
    entry: Entry

    @property
    def label(self) -> str:
        extra = [f"box {list(self.entry.box)}" if self.entry.box else "",
                 f"from {self.entry.start:g} s" if self.entry.start else ""]
        return self.name + "".join(f" ({e})" for e in extra if e)


def _bad_line(p: Path, n: int, why: str) -> UserError:
    return UserError(f"captions file {p} line {n}: {why}; expected {{\"file\": ..., \"caption\": ...[, \"split\", "
                     "\"box\": [l, t, r, b], \"start\": s, \"attrs\": {...}]}} (.jsonl) or NAME<TAB>CAPTION[<TAB>SPLIT] (.tsv)")


def read_manifest(path: str, world: str) -> list[Entry]:
    """The entries of a .jsonl or .tsv captions file (one sample per line)."""
    if not path:
        raise UserError(f"data.{world}.captions is not set; point it at a captions file (.jsonl or .tsv)")
    p, content = Path(path), read_text(path, f"captions file (data.{world}.captions)", "fix the path or create the file")
    out = []
    for n, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        try:
            if p.suffix == ".jsonl":
                rec = json.loads(line)
                name, text = rec["file"], rec.get("caption", "")
                split, box, start, attrs = rec.get("split"), rec.get("box"), rec.get("start", 0.0), rec.get("attrs", {})
            else:
                name, text, *rest = line.split("\t")
                split, box, start, attrs = (rest[0].strip() if rest else None), None, 0.0, {}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _bad_line(p, n, f"malformed ({exc})") from exc
        if split not in (None, "train", "test"):
            raise _bad_line(p, n, f"split {split!r} must be train or test")
        if box is not None and not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, int) for v in box)
                                    and 0 <= box[0] < box[2] and 0 <= box[1] < box[3]):
            raise _bad_line(p, n, f"box {box!r} must be [left, top, right, bottom] integers with left < right, top < bottom")
        if not isinstance(start, (int, float)) or isinstance(start, bool) or start < 0:
            raise _bad_line(p, n, f"start {start!r} must be a number of seconds >= 0")
        if not isinstance(attrs, dict) or not all(isinstance(v, (str, bool, int)) for v in attrs.values()):
            raise _bad_line(p, n, f"attrs {attrs!r} must map names to categorical values (strings, booleans, integers)")
        out.append(Entry(str(name), str(text), split, tuple(box) if box else None, float(start), dict(attrs), n))
    return out


def match_entries(names: list[str], entries: list[Entry] | None, where: str) -> tuple[list[Item], dict]:
    """Items (input, manifest line) sorted by input; counts of inputs without a line and lines without an input."""
    if entries is None:  # no manifest: one sample per input, no text
        return [Item(n, Entry(n)) for n in names], {"uncaptioned": 0, "unmatched_lines": 0}
    keys: dict[str, list[str]] = defaultdict(list)
    for n in names:
        for k in {n, Path(n).name, Path(n).stem}:
            keys[k].append(n)
    by_name: dict[str, list[Entry]] = defaultdict(list)
    unmatched = []
    for e in entries:
        found = keys.get(e.file, [])
        if len(found) > 1:
            raise UserError(f"captions line {e.line}: {e.file!r} matches {len(found)} files in {where} "
                            f"({', '.join(found[:3])}); write the path relative to the root")
        if found:
            by_name[found[0]].append(e)
        else:
            unmatched.append(e.file)
    if unmatched:
        log.warning("%s: %d captions lines name no file there (e.g. %s)", where, len(unmatched), unmatched[0])
    uncaptioned = [n for n in names if n not in by_name]
    if uncaptioned:
        log.warning("%s: left out %d inputs without a caption (e.g. %s)", where, len(uncaptioned), uncaptioned[0])
    items = [Item(n, e) for n in names for e in by_name.get(n, [])]
    return items, {"uncaptioned": len(uncaptioned), "unmatched_lines": len(unmatched)}


def split_items(items: list[Item], n_test: int, seed: int, where: str) -> dict[str, list[Item]]:
    """Train/test lists: the manifest's split column, or ``n_test`` items drawn with ``seed``."""
    if not items:
        raise UserError(f"no usable inputs in {where} (none has a supported type, a caption and is readable); "
                        "check the path and the captions file")
    if any(i.entry.split is not None for i in items):
        splits = {s: [i for i in items if (i.entry.split or "train") == s] for s in ("train", "test")}
        for s, chosen in splits.items():
            if not chosen:
                raise UserError(f"the {s} split of {where} is empty (no usable input has split {s!r} in the captions "
                                "file); mark some inputs for it")
        return splits
    if n_test >= len(items):
        raise UserError(f"{where} has {len(items)} usable inputs but n_test={n_test}; lower n_test")
    order = np.random.default_rng(seed).permutation(len(items))
    test = set(order[:n_test].tolist())
    return {"train": [it for k, it in enumerate(items) if k not in test],
            "test": [it for k, it in enumerate(items) if k in test]}


def list_inputs(root: str, world: str, exts: set[str], dirs: bool = False) -> tuple[Path, list[str], int]:
    """Sorted inputs below ``root`` (relative names) and the count of unsupported files."""
    if not root:
        raise UserError(f"data.{world}.root is not set; point it at the folder of real data")
    base = Path(root)
    if not base.is_dir():
        raise UserError(f"data folder not found: {base} (fix data.{world}.root, or install the data it names: "
                        "docs/data.md, 'Real data')")
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
    if unsupported:
        log.warning("%s: %d files of unsupported type ignored", base, unsupported)
    return base, names, unsupported


# ---------------------------------------------------------------- bad inputs: stop or skip
class BadInputs:
    """What to do with a bad input: stop with one line naming it (default) or skip it and count it."""

    def __init__(self, world: str, skip: bool, info: dict):
        self.world, self.skip, self.info = world, skip, info
        info.setdefault("skipped", {})
        info.setdefault("skipped_inputs", [])

    def fix(self) -> str:
        return f"fix or remove it, or set data.{self.world}.skip_bad=true to skip bad inputs"

    def __call__(self, where: str, label: str, reason: str) -> None:
        if not self.skip:
            raise UserError(f"bad input {label}: {reason}; {self.fix()}")
        self.info["skipped"][where] = self.info["skipped"].get(where, 0) + 1
        if len(self.info["skipped_inputs"]) < MAX_LISTED:
            self.info["skipped_inputs"].append({"input": label, "reason": reason})
        log.warning("skipped %s: %s", label, reason)

    def many(self, where: str, bad: list[tuple[str, str]], what: str) -> None:
        """Several bad inputs found at once: one line naming them all (or skip them all)."""
        if not bad:
            return
        if not self.skip:
            shown = "; ".join(f"{label}: {reason}" for label, reason in bad[:5])
            more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise UserError(f"{what} ({len(bad)}): {shown}{more}; fix or remove them, or set "
                            f"data.{self.world}.skip_bad=true to skip them")
        for label, reason in bad:
            self(where, label, reason)

    def summary(self, base: Path) -> None:
        n = sum(self.info["skipped"].values())
        if n:
            log.warning("%s: skipped %d bad inputs (named in meta.json, skipped_inputs)", base, n)


# ---------------------------------------------------------------- LHQC: images
def scan_images(base: Path, items: list[Item], width: int, height: int, upscale: bool, bad: BadInputs) -> list[Item]:
    """Items whose file opens and whose region is big enough (headers only); the rest go to ``bad``."""
    sizes: dict[str, tuple[int, int] | str] = {}
    problems, keep = [], []
    for it in items:
        if it.name not in sizes:
            try:
                sizes[it.name] = image_size(base / it.name)
            except BadInput as exc:
                sizes[it.name] = str(exc)
        size = sizes[it.name]
        try:
            if isinstance(size, str):
                raise BadInput(size)
            check_region(size, it.entry.box, width, height, upscale)
        except BadInput as exc:
            if it.entry.box and "outside" in str(exc):
                raise UserError(f"captions line {it.entry.line}: {it.label}: {exc}; fix the box") from exc
            problems.append((it.label, str(exc)))
            continue
        keep.append(it)
    bad.many("scan", problems, f"bad images in {base}")
    return keep


def image_samples(base: Path, files: list[Item], width: int, height: int, upscale: bool, bad: BadInputs,
                  split: str) -> Iterator[Sample]:
    cache: dict[str, Image.Image | str] = {}
    for it in files:
        if it.name not in cache:
            cache.clear()  # items are grouped by file: keep one decoded image
            try:
                cache[it.name] = open_image(base / it.name)
            except BadInput as exc:
                cache[it.name] = str(exc)
        image = cache[it.name]
        try:
            if isinstance(image, str):
                raise BadInput(image)
            pixels = fit(image, width, height, it.entry.box, upscale)
        except BadInput as exc:
            bad(split, it.label, str(exc))
            continue
        yield Sample(pixels, it.entry.caption, dict(it.entry.attrs))


def lhqc_plan(cfg: LHQCConfig, seed: int) -> Plan:
    base, names, unsupported = list_inputs(cfg.root, "lhqc", IMAGE_EXTS)
    items, counts = match_entries(names, read_manifest(cfg.captions, "lhqc"), str(base))
    info: dict = {"unsupported_files": unsupported, "root": str(base), "captions": cfg.captions, **counts}
    bad = BadInputs("lhqc", cfg.skip_bad, info)
    items = scan_images(base, items, cfg.width, cfg.height, cfg.upscale, bad)
    splits = split_items(items, cfg.n_test, seed, str(base))

    def images(split: str, folder: Path, files: list[Item], width: int) -> Iterator[Sample]:
        yield from image_samples(folder, files, width, cfg.height, cfg.upscale, bad, split)
        bad.summary(folder)

    plan_splits = {s: (len(f), lambda s=s, f=f: images(s, base, f, cfg.width)) for s, f in splits.items()}
    if cfg.wide_root:
        wide_base, wide_names, _ = list_inputs(cfg.wide_root, "lhqc", IMAGE_EXTS)
        wide = cfg.width * cfg.wide_factor
        wide_items = scan_images(wide_base, [Item(n, Entry(n)) for n in wide_names], wide, cfg.height, cfg.upscale, bad)
        plan_splits["test_wide"] = (len(wide_items), lambda: images("test_wide", wide_base, wide_items, wide))
    return Plan(world="lhqc", source="folder", kind="image", width=cfg.width, height=cfg.height, frames=1, fps=0.0,
                seed=seed, splits=plan_splits, info=info)


# ---------------------------------------------------------------- RQF: one long image
@contextlib.contextmanager
def no_pixel_limit() -> Iterator[None]:
    """The scroll is one trusted, very large image (the Qingming print is 570 Mpx): lift Pillow's bomb check."""
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def rqf_plan(cfg: RQFConfig, seed: int) -> Plan:
    from nuwa.data.worlds.rqf import crop_starts

    path = require_file(cfg.image, "RQF scroll image (data.rqf.image)",
                        "set data.rqf.image to the long image, or install the data it names: docs/data.md")
    try:
        with no_pixel_limit():
            image = open_image(path)
    except BadInput as exc:
        raise UserError(f"RQF scroll image {path}: {exc}; replace it with a valid PNG/JPEG") from exc
    box = tuple(cfg.box) if cfg.box else (0, 0, *image.size)
    if box[2] > image.size[0] or box[3] > image.size[1]:
        raise UserError(f"data.rqf.box {list(box)} reaches outside the {image.size[0]}x{image.size[1]} image {path}; "
                        "fix the box")
    bw, bh = box[2] - box[0], box[3] - box[1]
    if bh < cfg.height and not cfg.upscale:
        raise UserError(f"RQF scroll {path} is {bh} px tall{' in data.rqf.box' if cfg.box else ''}, less than "
                        f"data.rqf.height={cfg.height}; lower the height or set data.rqf.upscale=true")
    width = round(bw * cfg.height / bh)
    if width < cfg.test_width + cfg.crop:
        raise UserError(f"RQF scroll {path} is only {width} px wide at height {cfg.height}; "
                        f"need at least test_width + crop = {cfg.test_width + cfg.crop}")
    scroll = np.asarray(image.resize((width, cfg.height), Image.Resampling.LANCZOS, box=box))
    cut = width - cfg.test_width
    ranges = {"train": (0, cut), "test": (cut, width)}

    def crops(split: str) -> Iterator[Sample]:
        for x0 in crop_starts(*ranges[split], cfg.crop, cfg.stride):
            yield Sample(np.ascontiguousarray(scroll[:, x0:x0 + cfg.crop]), "", {})

    return Plan(world="rqf", source="folder", kind="image", width=cfg.crop, height=cfg.height, frames=1, fps=0.0,
                seed=seed, splits={k: (len(crop_starts(*r, cfg.crop, cfg.stride)), lambda k=k: crops(k))
                                   for k, r in ranges.items()},
                extras={"scroll.png": lambda: scroll},
                info={"scroll_width": width, "stride": cfg.stride, "test_from": cut, "image": str(path),
                      "box": list(box)})


# ---------------------------------------------------------------- videos
@dataclass
class Probe:
    """What a video holds, from its header (files) or its listing (frame folders)."""
    size: tuple[int, int]
    fps: float            # source frame rate (nominal)
    last: float | None    # time of the last frame in seconds (None: unknown until decoded)

    def describe(self) -> str:
        return f"{self.last + 1 / self.fps:.2f} s at {self.fps:g} fps" if self.last is not None else "unknown length"


def frame_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."))


def probe_video(path: Path, source_fps: float) -> Probe:
    if path.is_dir():
        files = frame_files(path)
        if not files:
            raise BadInput("frame folder holds no image files")
        return Probe(image_size(files[0]), source_fps, (len(files) - 1) / source_fps)
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise BadInput("has no video stream")
            s = container.streams.video[0]
            rate = float(s.average_rate or s.guessed_rate or 0) or source_fps
            duration = (float(s.duration * s.time_base) if s.duration and s.time_base else
                        container.duration / 1e6 if container.duration else None)
            size = (s.codec_context.width, s.codec_context.height)
    except BadInput:
        raise
    except Exception as exc:  # av.error.* for missing, truncated or unsupported files
        raise BadInput(f"unreadable or corrupt video ({type(exc).__name__}: {exc})") from exc
    if not size[0] or not size[1]:
        raise BadInput("video stream has no frame size")
    return Probe(size, rate, None if duration is None else max(0.0, duration - 1.0 / rate))


def decoded_frames(path: Path, source_fps: float) -> tuple[Iterator[tuple[float, Callable[[], np.ndarray]]], float]:
    """(time in seconds from the first frame, lazy RGB array) per source frame, and the nominal rate."""
    if path.is_dir():
        files = frame_files(path)

        def load(f: Path) -> Callable[[], np.ndarray]:
            return lambda: np.asarray(open_image(f))
        return ((k / source_fps, load(f)) for k, f in enumerate(files)), source_fps
    import av

    container = av.open(str(path))
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    rate = float(stream.average_rate or stream.guessed_rate or 0) or source_fps

    def frames() -> Iterator[tuple[float, Callable[[], np.ndarray]]]:
        # The decoder gives frames in display order, but some containers (AVI with B-frames) stamp them with
        # the packets' decode-order times: hand the smallest pending time to each frame in turn (a small
        # reorder window, as ffmpeg's best-effort timestamps do), so times increase with the frames.
        pending: list[Callable[[], np.ndarray]] = []
        times: list[float] = []
        t0 = None
        try:
            for k, frame in enumerate(container.decode(stream)):
                heapq.heappush(times, frame.time if frame.time is not None else k / rate)
                pending.append(lambda f=frame: f.to_ndarray(format="rgb24"))
                if len(pending) > REORDER:
                    t = heapq.heappop(times)
                    t0 = t if t0 is None else t0
                    yield t - t0, pending.pop(0)
            while pending:
                t = heapq.heappop(times)
                t0 = t if t0 is None else t0
                yield t - t0, pending.pop(0)
        finally:
            container.close()
    return frames(), rate


def nearest_frames(frames: Iterable[tuple[float, Callable[[], np.ndarray]]], targets: list[float], tolerance: float
                   ) -> Iterator[tuple[int, np.ndarray]]:
    """(index into the sorted ``targets``, the source frame nearest in time), in order. A target after the last
    frame is served only within ``tolerance`` (half a source frame period); ties take the earlier frame."""
    j, prev, memo = 0, None, {}

    def array(t: float, get: Callable[[], np.ndarray]) -> np.ndarray:
        if t not in memo:
            memo.clear()
            memo[t] = get()
        return memo[t]

    for t, get in frames:
        while j < len(targets) and targets[j] <= t:
            use = prev if prev is not None and targets[j] - prev[0] <= t - targets[j] else (t, get)
            yield j, array(*use)
            j += 1
        if j == len(targets):
            return
        prev = (t, get)
    while prev is not None and j < len(targets) and targets[j] <= prev[0] + tolerance:
        yield j, array(*prev)
        j += 1


def clip_times(start: float, frames: int, fps: float, clips: int) -> list[float]:
    return [start + k / fps for k in range(frames * clips)]


def clips_that_fit(last: float, start: float, frames: int, fps: float, clips: int, src_fps: float) -> int:
    """How many consecutive clips from ``start`` end before the video does (within half a source frame)."""
    usable = last + 0.5 / src_fps - start
    return 0 if usable < -1e-9 else min(clips, int(math.floor((usable + 1e-9) * fps + 1)) // frames)


def video_plan(world: str, cfg: VideoConfig, seed: int) -> Plan:
    base, names, unsupported = list_inputs(cfg.root, world, VIDEO_EXTS, dirs=True)
    entries = read_manifest(cfg.captions, world) if world in TEXT_WORLDS or cfg.captions else None
    items, counts = match_entries(names, entries, str(base))
    info: dict = {"unsupported_files": unsupported, "root": str(base), "captions": cfg.captions, **counts}
    bad = BadInputs(world, cfg.skip_bad, info)
    need = (cfg.frames - 1) / cfg.fps

    def too_short(it: Item, what: str) -> str:
        return (f"too short: {what}, but a clip needs {need:g} s from {it.entry.start:g} s ({cfg.frames} frames at "
                f"{cfg.fps:g} fps); lower data.{world}.frames or an earlier start")

    probes: dict[str, Probe | str] = {}
    unreadable, short, keep = [], [], []
    for it in items:
        if it.name not in probes:
            try:
                probes[it.name] = probe_video(base / it.name, cfg.source_fps)
            except BadInput as exc:
                probes[it.name] = str(exc)
        probe = probes[it.name]
        if isinstance(probe, str):
            unreadable.append((it.label, probe))
            continue
        try:
            check_region(probe.size, it.entry.box, cfg.width, cfg.height, cfg.upscale)
        except BadInput as exc:
            if it.entry.box and "outside" in str(exc):
                raise UserError(f"captions line {it.entry.line}: {it.label}: {exc}; fix the box") from exc
            unreadable.append((it.label, str(exc)))
            continue
        if probe.last is not None and not clips_that_fit(probe.last, it.entry.start, cfg.frames, cfg.fps,
                                                         cfg.clips_per_video, probe.fps):
            short.append((it.label, too_short(it, probe.describe())))
            continue
        keep.append(it)
    bad.many("scan", unreadable, f"unreadable videos in {base}")
    bad.many("scan", short, f"videos too short for a {cfg.frames}-frame clip at {cfg.fps:g} fps in {base}")
    splits = split_items(keep, cfg.n_test, seed, str(base))

    def clips(split: str, files: list[Item]) -> Iterator[Sample]:
        groups: dict[str, list[Item]] = defaultdict(list)
        for it in files:
            groups[it.name].append(it)
        for name, group in groups.items():  # one decoding pass per video serves all its items
            times = [clip_times(it.entry.start, cfg.frames, cfg.fps, cfg.clips_per_video) for it in group]
            users: dict[float, list[int]] = defaultdict(list)
            for g, ts in enumerate(times):
                for t in ts:
                    users[t].append(g)
            want = sorted(users)
            got: dict[tuple[int, float], np.ndarray] = {}
            try:
                source, rate = decoded_frames(base / name, cfg.source_fps)
                for k, frame in nearest_frames(source, want, 0.5 / rate):
                    image = Image.fromarray(frame)
                    for g in users[want[k]]:
                        got[g, want[k]] = fit(image, cfg.width, cfg.height, group[g].entry.box, cfg.upscale)
            except Exception as exc:  # a corrupt frame or stream in the middle of a video
                reason = str(exc) if isinstance(exc, BadInput) else f"corrupt video stream ({type(exc).__name__}: {exc})"
                for it in group:
                    bad(split, it.label, reason)
                continue
            for g, it in enumerate(group):
                found = [[got.get((g, t)) for t in times[g][c * cfg.frames:(c + 1) * cfg.frames]]
                         for c in range(cfg.clips_per_video)]
                full = [np.stack(c) for c in found if all(f is not None for f in c)]
                if not full:
                    have = sum(f is not None for c in found for f in c)
                    bad(split, it.label, too_short(it, f"only {have} of its {len(times[g])} frames at {cfg.fps:g} fps exist"))
                    continue
                for clip in full:
                    yield Sample(clip, it.entry.caption, dict(it.entry.attrs))
        bad.summary(base)

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
